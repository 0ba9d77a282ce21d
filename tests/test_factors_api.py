"""Tests of the seed factor API, in process (the deployed server is proven by the aggregator HTTP tests)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pact_test_app import FACTORS, in_process

from lca.io.ilcd import read_ilcd
from lca.io.jsonld import read_jsonld

AL_CN_V1, AL_CN_V2, AL_YN, AL_GD, CLINKER = FACTORS


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with in_process() as client:
        yield client


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {row["factor_id"] for row in response.json()}


def test_list_returns_the_newest_version_of_each_factor_with_the_seed_fields(api: httpx.Client) -> None:
    rows = api.get("/api/v1/factors").json()

    assert len(rows) == 4
    row = next(r for r in rows if r["factor_id"] == AL_CN_V2.factor_id)
    assert row["version"] == "01.00.001"
    assert row["name"] == {"zh": "原铝（铝锭）", "en": "Primary aluminium, ingot"}
    assert row["unit"] == "kgCO2e/t" and row["value"] == AL_CN_V2.value
    assert row["validity_period"] == "2025-01-01/2025-12-31"
    assert row["data_source"] == "industry_average_secure_aggregation"
    assert row["n_participants"] == 4 and row["dqr"] == pytest.approx(AL_CN_V2.dqr)


def test_lang_returns_names_in_that_language(api: httpx.Client) -> None:
    names = {r["name"] for r in api.get("/api/v1/factors", params={"lang": "zh"}).json()}

    assert names == {"原铝（铝锭）", "水泥熟料"}
    assert api.get("/api/v1/factors", params={"lang": "fr"}).status_code == 422


@pytest.mark.parametrize(
    ("industry", "expected"),
    [("32", {"al-cn", "al-yn", "al-gd"}), ("3216", {"al-cn", "al-yn", "al-gd"}), ("C3011", {"clinker"}),
     ("30", {"clinker"}), ("C", {"al-cn", "al-yn", "al-gd", "clinker"}), ("D", set()), ("44", set())],
)  # fmt: skip
def test_industry_filters_by_gbt4754_code_prefix_or_section(
    api: httpx.Client, industry: str, expected: set[str]
) -> None:
    names = {"al-cn": AL_CN_V2, "al-yn": AL_YN, "al-gd": AL_GD, "clinker": CLINKER}

    assert _ids(api.get("/api/v1/factors", params={"industry": industry})) == {names[n].factor_id for n in expected}


def test_malformed_industry_is_a_bad_request_with_the_error_body(api: httpx.Client) -> None:
    response = api.get("/api/v1/factors", params={"industry": "3x"})

    assert response.status_code == 400
    assert response.json()["error"] == "bad-request" and "'3x'" in response.json()["detail"]


def test_region_matches_exactly_and_includes_subregions_only_when_asked(api: httpx.Client) -> None:
    assert _ids(api.get("/api/v1/factors", params={"region": "CN"})) == {AL_CN_V2.factor_id, CLINKER.factor_id}
    assert _ids(api.get("/api/v1/factors", params={"region": "cn-yn"})) == {AL_YN.factor_id}
    assert len(_ids(api.get("/api/v1/factors", params={"region": "CN", "include_subregions": "true"}))) == 4
    assert _ids(api.get("/api/v1/factors", params={"region": "CN-YN", "include_subregions": "true"})) == {
        AL_YN.factor_id
    }


@pytest.mark.parametrize("q", ["铝", "原铝", "aluminum", "aluminium", "Primary Aluminium", "ＡＬＵＭＩＮＵＭ"])
def test_synonym_search_finds_aluminium_in_both_languages(api: httpx.Client, q: str) -> None:
    assert _ids(api.get("/api/v1/factors", params={"q": q})) == {AL_CN_V2.factor_id, AL_YN.factor_id, AL_GD.factor_id}


@pytest.mark.parametrize("q", ["水泥熟料", "熟料", "clinker", "cement clinker"])
def test_synonym_search_finds_clinker_in_both_languages(api: httpx.Client, q: str) -> None:
    assert _ids(api.get("/api/v1/factors", params={"q": q})) == {CLINKER.factor_id}


def test_filters_combine_with_and(api: httpx.Client) -> None:
    params = {"q": "铝", "region": "CN", "include_subregions": "true", "library_level": "regional"}

    assert _ids(api.get("/api/v1/factors", params=params)) == {AL_YN.factor_id, AL_GD.factor_id}
    assert _ids(api.get("/api/v1/factors", params={"q": "熟料", "region": "CN-YN"})) == set()


def test_product_filter_takes_the_flow_uuid_or_name_text(api: httpx.Client) -> None:
    by_flow = _ids(api.get("/api/v1/factors", params={"product": CLINKER.product_flow}))
    by_text = _ids(api.get("/api/v1/factors", params={"product": "ingot"}))

    assert by_flow == {CLINKER.factor_id}
    assert by_text == {AL_CN_V2.factor_id, AL_YN.factor_id, AL_GD.factor_id}


def test_dataset_is_the_newest_version_or_the_one_asked_for(api: httpx.Client) -> None:
    url = f"/api/v1/factors/{AL_CN_V2.factor_id}"
    newest = api.get(url).json()
    first = api.get(url, params={"version": "01.00.000"}).json()

    assert newest["version"] == "01.00.001" and newest["value"] == AL_CN_V2.value
    assert first["value"] == AL_CN_V1.value != AL_CN_V2.value
    assert api.get(url, params={"version": "1"}).json()["version"] == "01.00.000"
    assert newest["unit_process"]["uuid"] == AL_CN_V2.factor_id
    assert newest["provenance"]["round_id"] == "cn-al-2024" and newest["cross_check"]["agree"] is True


def test_unknown_factor_or_version_is_404_with_the_error_body(api: httpx.Client) -> None:
    unknown = api.get("/api/v1/factors/00000000-0000-0000-0000-000000000000")
    no_version = api.get(f"/api/v1/factors/{AL_YN.factor_id}", params={"version": "01.00.007"})
    bad_version = api.get(f"/api/v1/factors/{AL_YN.factor_id}", params={"version": "v2"})

    assert unknown.status_code == 404 and unknown.json()["error"] == "not-found"
    assert no_version.status_code == 404 and "01.00.007" in no_version.json()["detail"]
    assert bad_version.status_code == 400
    assert api.get("/api/v1/factors/00000000-0000-0000-0000-000000000000/versions").status_code == 404


def test_versions_lists_every_publication_oldest_first(api: httpx.Client) -> None:
    rows = api.get(f"/api/v1/factors/{AL_CN_V2.factor_id}/versions").json()

    assert [(r["version"], r["revision"], r["round_id"]) for r in rows] == [
        ("01.00.000", 1, "cn-al-2023"),
        ("01.00.001", 2, "cn-al-2024"),
    ]
    assert rows[0]["value"] == AL_CN_V1.value


def test_ilcd_download_is_a_zip_of_the_unit_process_with_its_flows(api: httpx.Client, tmp_path: Path) -> None:
    response = api.get(f"/api/v1/factors/{AL_CN_V2.factor_id}/ilcd", params={"version": "01.00.000"})

    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert f"ILCD/processes/{AL_CN_V1.factor_id}.xml" in names
    path = tmp_path / "f.zip"
    path.write_bytes(response.content)
    bundle, _ = read_ilcd(path)
    process = bundle.processes[AL_CN_V1.factor_id]
    assert process.version == "01.00.000"
    assert f"{AL_CN_V1.value:.6g} kgCO2e/t" in process.description["en"]
    amounts = {e.flow: e.amount for e in process.exchanges}
    assert all(amounts[s.flow] == pytest.approx(s.weighted_mean) for s in AL_CN_V1.exchange_statistics)


def test_jsonld_download_is_a_zip_that_reads_back_to_the_same_process(api: httpx.Client, tmp_path: Path) -> None:
    response = api.get(f"/api/v1/factors/{CLINKER.factor_id}/jsonld")

    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    path = tmp_path / "f.zip"
    path.write_bytes(response.content)
    bundle, _ = read_jsonld(path)
    process = bundle.processes[CLINKER.factor_id]
    assert process.version == CLINKER.version and process.name["zh"] == CLINKER.unit_process.name["zh"]
    assert f"{CLINKER.value:.6g} kgCO2e/t" in process.description["en"]
    assert api.get("/api/v1/factors/00000000-0000-0000-0000-000000000000/jsonld").status_code == 404


def test_openapi_declares_response_and_error_models(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    get_one = spec["paths"]["/api/v1/factors/{factor_id}"]["get"]["responses"]

    assert get_one["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PublishedFactor")
    assert get_one["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    listing = spec["paths"]["/api/v1/factors"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"industry", "region", "product", "q", "lang"}
    assert "application/zip" in spec["paths"]["/api/v1/factors/{factor_id}/ilcd"]["get"]["responses"]["200"]["content"]
