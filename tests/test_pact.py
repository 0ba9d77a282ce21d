"""Tests of the PACT v3 wire models and host-system API (token, footprints, events) on a real uvicorn server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pact_test_app import CLIENT_ID, CLIENT_SECRET, FACTORS, IN_PROCESS_BASE, in_process
from pydantic import ValidationError

from aggregator.pact import (
    PactError,
    TokenExpired,
    TokenInvalid,
    all_footprints,
    issue_token,
    parse_list_query,
    token_key,
    verify_token,
)
from protocols.pact import (
    EVENT_PUBLISHED,
    EVENT_REQUEST_CREATED,
    EVENT_REQUEST_FULFILLED,
    EVENT_REQUEST_REJECTED,
    CarbonFootprint,
    ProductFootprint,
    footprint_id,
    format_decimal,
    parse_event,
    product_footprint,
    response_event,
)

AL_CN_V1, AL_CN_V2, AL_YN, AL_GD, CLINKER = FACTORS
AL_URN = "urn:pact:productclassification:gb-t-4754-2017:3216"
CLINKER_URN = "urn:pact:productclassification:gb-t-4754-2017:3011"
BY_NAME = {"cn1": AL_CN_V1, "cn2": AL_CN_V2, "yn": AL_YN, "gd": AL_GD, "clinker": CLINKER}
ALL = set(BY_NAME)


# ------------------------------------------------------------------------------ models (no server)


def test_decimals_are_written_as_plain_strings() -> None:
    assert format_decimal(Decimal("1.2500E+3")) == "1250"
    assert format_decimal(Decimal("0.000010")) == "0.00001"
    assert format_decimal(Decimal("-0.0")) == "0"


def test_numbers_sent_as_json_numbers_are_refused() -> None:
    pf = product_footprint(AL_YN, company_name="A", company_ids=["urn:a:b"]).model_dump(mode="json", exclude_none=True)
    pf["pcf"]["pcfExcludingBiogenicUptake"] = 12.5

    with pytest.raises(ValidationError, match="decimal string"):
        ProductFootprint.model_validate(pf)


def test_footprint_of_a_factor_uses_v3_names_units_and_geography() -> None:
    pf = product_footprint(AL_YN, company_name="Assoc", company_ids=["urn:pcf-dataspace:assoc"])
    data = pf.model_dump(mode="json", exclude_none=True)
    pcf = data["pcf"]

    assert data["specVersion"] == "3.0.0" and data["status"] == "Active"
    assert data["id"] == str(footprint_id(AL_YN.factor_id, "01.00.000"))
    assert pcf["declaredUnitOfMeasurement"] == "kilogram" and pcf["declaredUnitAmount"] == "1000"
    assert pcf["productMassPerDeclaredUnit"] == "1000"
    assert pcf["geographyCountrySubdivision"] == "CN-YN" and "geographyCountry" not in pcf
    assert Decimal(pcf["pcfExcludingBiogenicUptake"]) == Decimal(repr(AL_YN.value))
    assert pcf["ipccCharacterizationFactors"] == ["AR5"]
    assert pcf["referencePeriodStart"] == "2024-01-01T00:00:00Z" and pcf["referencePeriodEnd"] == "2025-01-01T00:00:00Z"
    assert data["validityPeriodStart"] == "2025-01-01T00:00:00Z"
    assert data["productClassifications"] == [AL_URN]
    assert f"urn:pcf-dataspace:factor:{AL_YN.factor_id}" in data["productIds"]
    assert data["extensions"][0]["data"]["nParticipants"] == 4
    # The JSON validates against the wire model again.
    assert ProductFootprint.model_validate(data) == pf


def test_older_versions_are_deprecated_and_preceded() -> None:
    pfs = {pf.id: pf for pf in all_footprints(FACTORS, company_name="A", company_ids=["urn:a:b"])}
    v1 = pfs[footprint_id(AL_CN_V1.factor_id, "01.00.000")]
    v2 = pfs[footprint_id(AL_CN_V2.factor_id, "01.00.001")]

    assert len(pfs) == 5
    assert v1.status == "Deprecated" and v1.precedingPfIds is None
    assert v2.status == "Active" and v2.precedingPfIds == [v1.id]


def test_region_finer_than_a_subdivision_is_cut_to_it() -> None:
    pf = CarbonFootprint.model_validate(
        {**product_footprint(AL_YN, company_name="A", company_ids=["urn:a:b"]).pcf.model_dump(mode="json")}
    )
    assert pf.geographyCountrySubdivision == "CN-YN"
    with pytest.raises(ValidationError):
        CarbonFootprint.model_validate({**pf.model_dump(mode="json"), "geographyCountrySubdivision": "CN-YN-KM"})


def test_tokens_verify_expire_and_refuse_alteration() -> None:
    key = token_key(CLIENT_SECRET)
    token = issue_token("c1", key, now=1000.0, lifetime=60)

    assert verify_token(token, key, now=1059.0) == "c1"
    with pytest.raises(TokenExpired):
        verify_token(token, key, now=1060.0)
    prefix, body, mac = token.split(".")
    for forged in (f"{prefix}.{body}x.{mac}", f"{prefix}.{body}.{mac[:-2]}AA", "garbage", ""):
        with pytest.raises(TokenInvalid):
            verify_token(forged, key, now=1000.0)
    with pytest.raises(TokenInvalid):
        verify_token(token, token_key("another secret"), now=1000.0)


def test_list_query_accepts_dollar_names_and_repeats_and_refuses_bad_values() -> None:
    criteria, limit, offset = parse_list_query(
        [("$geography", "CN"), ("geography", "DE"), ("status", "active"), ("limit", "5"), ("x-acme-id", "1")]
    )

    assert criteria.geography == ["CN", "DE"] and criteria.status == "Active" and (limit, offset) == (5, 0)
    for bad in ([("limit", "0")], [("limit", "ten")], [("validOn", "yesterday")], [("status", "Gone")],
                [("offset", "-1")], [("limit", "1"), ("limit", "2")]):  # fmt: skip
        with pytest.raises(PactError) as exc:
            parse_list_query(bad)
        assert exc.value.status_code == 400 and exc.value.code == "BadRequest"


def test_events_are_validated_by_type() -> None:
    base = {"specversion": "1.0", "id": "e1", "source": "//recipient.example/3/events", "time": "2025-03-05T17:31:00Z"}

    _, data = parse_event(
        {**base, "type": EVENT_PUBLISHED, "data": {"pfIds": ["079e425a-464f-528d-341d-4a944a1dfd70"]}}
    )
    assert data.pfIds == ["079e425a-464f-528d-341d-4a944a1dfd70"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        parse_event({**base, "type": EVENT_PUBLISHED, "data": {"pfIds": []}})
    with pytest.raises(ValidationError):
        parse_event({**base, "type": EVENT_REQUEST_REJECTED, "data": {"requestEventId": "e0"}})
    with pytest.raises(ValueError, match="not a PACT v3 event"):
        parse_event({**base, "type": "org.example.Other", "data": {}})


def test_request_is_answered_with_the_matching_footprints_or_rejected() -> None:
    pfs = all_footprints(FACTORS, company_name="A", company_ids=["urn:a:b"])
    envelope = {"specversion": "1.0", "source": "//recipient.example/3/events", "time": "2025-03-05T17:31:00Z"}
    when = datetime(2025, 3, 6, tzinfo=UTC)
    yunnan, _ = parse_event(
        {**envelope, "id": "q1", "type": EVENT_REQUEST_CREATED, "data": {"geography": ["CN-YN"], "status": "Active"}}
    )
    legacy, _ = parse_event(
        {**envelope, "id": "q2", "type": EVENT_REQUEST_CREATED,
         "data": {"pf": {"productIds": [f"urn:pcf-dataspace:factor:{CLINKER.factor_id}"]}}}
    )  # fmt: skip
    nothing, _ = parse_event({**envelope, "id": "q3", "type": EVENT_REQUEST_CREATED, "data": {"geography": ["DE"]}})

    fulfilled = response_event(yunnan, pfs, source="//assoc.example/3/events", event_id="a1", now=when)
    by_fragment = response_event(legacy, pfs, source="//assoc.example/3/events", event_id="a2", now=when)
    rejected = response_event(nothing, pfs, source="//assoc.example/3/events", event_id="a3", now=when)

    assert fulfilled.type == EVENT_REQUEST_FULFILLED and fulfilled.data["requestEventId"] == "q1"
    assert [pf["id"] for pf in fulfilled.data["pfs"]] == [str(footprint_id(AL_YN.factor_id, AL_YN.version))]
    assert [pf["id"] for pf in by_fragment.data["pfs"]] == [str(footprint_id(CLINKER.factor_id, CLINKER.version))]
    assert rejected.type == EVENT_REQUEST_REJECTED and rejected.data["error"]["code"] == "NotFound"
    # The answers are themselves valid events.
    assert parse_event(fulfilled.model_dump(mode="json"))[0].id == "a1"


# ----------------------------------------------------------------------------------- live server


@pytest.fixture(scope="module")
def base_url() -> str:
    return IN_PROCESS_BASE


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with in_process() as c:
        yield c


@pytest.fixture(scope="module")
def token(client: httpx.Client) -> str:
    response = client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _list(client: httpx.Client, auth: dict[str, str], params: Any = None) -> list[dict[str, Any]]:
    response = client.get("/3/footprints", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_token_with_good_client_credentials(client: httpx.Client) -> None:
    response = client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    body = response.json()

    assert response.status_code == 200 and body["token_type"] == "bearer" and body["expires_in"] == 600
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("credentials", [(CLIENT_ID, "wrong-secret"), ("intruder", CLIENT_SECRET), None])
def test_token_with_bad_client_credentials_is_invalid_client(client: httpx.Client, credentials: Any) -> None:
    response = client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=credentials)

    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def test_token_needs_the_client_credentials_grant(client: httpx.Client) -> None:
    missing = client.post("/auth/token", data={}, auth=(CLIENT_ID, CLIENT_SECRET))
    other = client.post("/auth/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET))

    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    assert (other.status_code, other.json()["error"]) == (400, "unsupported_grant_type")


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_missing_or_invalid_token_is_bad_request(client: httpx.Client, header: str | None) -> None:
    headers = {"authorization": header} if header else {}
    for response in (
        client.get("/3/footprints", headers=headers),
        client.get(f"/3/footprints/{footprint_id(AL_YN.factor_id, '01.00.000')}", headers=headers),
        client.post("/3/events", headers=headers, json={}),
    ):
        assert response.status_code == 400 and response.json()["code"] == "BadRequest"


def test_expired_token_is_token_expired(client: httpx.Client) -> None:
    stale = issue_token(CLIENT_ID, token_key(CLIENT_SECRET), now=time.time() - 3600, lifetime=600)
    response = client.get("/3/footprints", headers={"authorization": f"Bearer {stale}"})

    assert response.status_code == 401 and response.json()["code"] == "TokenExpired"


def test_list_returns_every_version_with_decimals_as_strings(client: httpx.Client, auth: dict[str, str]) -> None:
    response = client.get("/3/footprints", headers=auth)
    data = response.json()["data"]

    assert len(data) == 5 and "link" not in response.headers
    assert sorted(pf["status"] for pf in data) == ["Active"] * 4 + ["Deprecated"]
    assert '"pcfExcludingBiogenicUptake":"' in response.text
    for pf in data:
        pcf = pf["pcf"]
        for name in ("declaredUnitAmount", "pcfExcludingBiogenicUptake", "pcfIncludingBiogenicUptake",
                     "fossilGhgEmissions", "exemptedEmissionsPercent", "primaryDataShare"):  # fmt: skip
            assert isinstance(pcf[name], str) and Decimal(pcf[name]).is_finite()
        assert all(isinstance(v, str) for v in pcf["dqi"].values())


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"geography": "CN-YN"}, {"yn"}),
        ({"geography": ["CN-YN", "CN-GD"]}, {"yn", "gd"}),  # OR within a filter
        ({"geography": "cn"}, ALL),  # a country contains its subdivisions
        ({"geography": "Eastern Asia"}, ALL),
        ({"geography": "DE"}, set()),
        ({"classification": CLINKER_URN}, {"clinker"}),
        ({"classification": [CLINKER_URN, AL_URN]}, ALL),
        ({"classification": AL_URN, "geography": "CN-YN"}, {"yn"}),  # AND across filters
        ({"productId": f"urn:pcf-dataspace:factor:{AL_CN_V2.factor_id}"}, {"cn1", "cn2"}),
        ({"$productId": f"URN:PCF-DATASPACE:FLOW:{CLINKER.product_flow.upper()}"}, {"clinker"}),
        ({"companyId": "urn:pcf-dataspace:association:test"}, ALL),
        ({"companyId": "urn:other:company"}, set()),
        ({"status": "Deprecated"}, {"cn1"}),
        ({"status": "Active", "productId": f"urn:pcf-dataspace:factor:{AL_CN_V2.factor_id}"}, {"cn2"}),
        ({"validOn": "2024-06-01T00:00:00Z"}, {"cn1"}),
        ({"validOn": "2025-06-01T08:00:00+08:00"}, {"cn2", "yn", "gd", "clinker"}),
        ({"validAfter": "2024-12-31T00:00:00Z"}, {"cn2", "yn", "gd", "clinker"}),
        ({"validBefore": "2025-01-01T00:00:00Z"}, {"cn1"}),
    ],
)
def test_list_filters(client: httpx.Client, auth: dict[str, str], params: dict[str, Any], expected: set[str]) -> None:
    ids = {pf["id"] for pf in _list(client, auth, params)}

    assert ids == {str(footprint_id(f.factor_id, f.version)) for f in (BY_NAME[n] for n in expected)}


def test_pagination_link_is_absolute_followable_and_keeps_the_filters(
    client: httpx.Client, auth: dict[str, str], base_url: str
) -> None:
    seen: list[str] = []
    url: str | None = f"{base_url}/3/footprints?geography=CN&limit=2"
    pages = 0
    while url is not None:
        response = client.get(url, headers=auth)
        assert response.status_code == 200
        page = response.json()["data"]
        assert len(page) <= 2
        seen += [pf["id"] for pf in page]
        pages += 1
        link = response.headers.get("link")
        if link is None:
            url = None
            continue
        assert link.startswith(f"<{base_url}/3/footprints?") and link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
        assert parse_qs(urlsplit(url).query)["geography"] == ["CN"]

    assert pages == 3 and len(seen) == len(set(seen)) == 5


def test_pagination_link_uses_the_host_the_request_named(client: httpx.Client, auth: dict[str, str]) -> None:
    response = client.get("/3/footprints", params={"limit": 4}, headers={**auth, "host": "pact.example.org"})

    assert response.headers["link"].startswith("<http://pact.example.org/3/footprints?limit=4&offset=4>")


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "abc"}, {"limit": "-3"}, {"validOn": "yesterday"}, {"validAfter": "2025-13-01"},
     {"status": "Retired"}],
)  # fmt: skip
def test_bad_list_parameters_are_bad_request_not_422(
    client: httpx.Client, auth: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/3/footprints", params=params, headers=auth)

    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest" and response.json()["message"]


def test_get_footprint_returns_it_even_when_deprecated(client: httpx.Client, auth: dict[str, str]) -> None:
    pf_id = footprint_id(AL_CN_V1.factor_id, AL_CN_V1.version)
    response = client.get(f"/3/footprints/{pf_id}", headers=auth)

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == str(pf_id) and data["status"] == "Deprecated"
    assert isinstance(data["pcf"]["pcfIncludingBiogenicUptake"], str)


@pytest.mark.parametrize("pf_id", [str(uuid.UUID(int=7)), "non-existent-id"])
def test_unknown_footprint_is_not_found(client: httpx.Client, auth: dict[str, str], pf_id: str) -> None:
    response = client.get(f"/3/footprints/{pf_id}", headers=auth)

    assert response.status_code == 404 and response.json()["code"] == "NotFound"


def _event(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": type_,
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "//national-db.example/3/events",
        "time": "2025-03-05T17:31:00Z",
        "data": data,
    }


@pytest.mark.parametrize(
    "event",
    [
        _event(
            EVENT_REQUEST_CREATED,
            {"productId": [f"urn:pcf-dataspace:factor:{AL_YN.factor_id}"], "geography": ["CN-YN"]},
        ),
        _event(EVENT_REQUEST_CREATED, {"pf": {"productIds": ["urn:gtin:4712345060507"]}, "comment": "this year"}),
        _event(EVENT_PUBLISHED, {"pfIds": [str(uuid.UUID(int=1))]}),
        _event(EVENT_REQUEST_REJECTED, {"requestEventId": "r1", "error": {"code": "NotFound", "message": "none"}}),
        _event(EVENT_REQUEST_FULFILLED, {"requestEventId": "r1", "pfs": [{"id": str(uuid.UUID(int=2))}]}),
    ],
)
def test_well_formed_events_are_accepted_with_an_empty_body(
    client: httpx.Client, auth: dict[str, str], event: dict[str, Any]
) -> None:
    response = client.post(
        "/3/events",
        content=json.dumps(event),
        headers={**auth, "content-type": "application/cloudevents+json; charset=UTF-8"},
    )

    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({k: v for k, v in _event(EVENT_PUBLISHED, {"pfIds": ["x"]}).items() if k != "specversion"}),
        json.dumps({**_event(EVENT_PUBLISHED, {"pfIds": ["x"]}), "specversion": "0.3"}),
        json.dumps(_event("org.wbcsd.pact.ProductFootprint.Unknown.3", {})),
        json.dumps(_event(EVENT_PUBLISHED, {"pfIds": []})),
        json.dumps(_event(EVENT_REQUEST_CREATED, {"validOn": "soon"})),
        json.dumps(_event(EVENT_REQUEST_FULFILLED, {"requestEventId": "r1"})),
        json.dumps([1, 2, 3]),
    ],
)
def test_malformed_events_are_bad_request(client: httpx.Client, auth: dict[str, str], body: str) -> None:
    response = client.post("/3/events", content=body, headers={**auth, "content-type": "application/cloudevents+json"})

    assert response.status_code == 400 and response.json()["code"] == "BadRequest"


def test_openapi_documents_the_pact_routes(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    listing = spec["paths"]["/3/footprints"]["get"]

    assert {p["name"] for p in listing["parameters"]} >= {"productId", "geography", "validOn", "limit", "status"}
    assert listing["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert spec["paths"]["/3/footprints/{id}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/Error")
    assert (
        spec["components"]["securitySchemes"]["BearerAuth"]["flows"]["clientCredentials"]["tokenUrl"] == "/auth/token"
    )
    assert "application/x-www-form-urlencoded" in spec["paths"]["/auth/token"]["post"]["requestBody"]["content"]
