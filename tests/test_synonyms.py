"""Tests of the bilingual synonym index over flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from lca.model import Bundle, Flow
from lca.synonyms import SynonymIndex, name_head, normalise

TIANGONG = Path(__file__).resolve().parent / "data" / "tiangong_sample" / "ILCD"
CO2_FOSSIL = "08a91e70-3ddc-11dd-923d-0050c2490048"
CH4_FOSSIL = "fe0acd60-3ddc-11dd-a8e6-0050c2490048"


@pytest.fixture(scope="module")
def tiangong() -> Bundle:
    from lca.io.ilcd import read_ilcd

    bundle, _diagnostics = read_ilcd(TIANGONG)
    return bundle


@pytest.fixture(scope="module")
def tiangong_index(tiangong: Bundle) -> SynonymIndex:
    return SynonymIndex.from_bundle(tiangong)


def _flow(uuid: str, en: str, zh: str | None = None, **extra: object) -> Flow:
    names = {"en": en} | ({"zh": zh} if zh else {})
    return Flow(uuid=uuid, name=names, flow_type="product", **extra)  # type: ignore[arg-type]


def test_normalise_folds_case_width_subscripts_spaces_and_punctuation() -> None:
    assert normalise("ＣＯ₂") == normalise("co2") == normalise("CO(2)") == "co2"
    assert normalise("Carbon  Dioxide") == normalise("carbon-dioxide") == "carbondioxide"
    assert normalise("124-38-9") == "124389"
    assert normalise("  二氧化碳 ") == "二氧化碳"


def test_name_head_cuts_qualifiers_in_both_languages() -> None:
    assert name_head("carbon dioxide (fossil)") == "carbon dioxide"
    assert name_head("Electricity, medium voltage; grid mix") == "Electricity"
    assert name_head("二氧化碳（化石）") == "二氧化碳"


@pytest.mark.parametrize("query", ["CO2", "二氧化碳", "carbon dioxide", "124-38-9", "ＣＯ₂"])
def test_every_name_of_carbon_dioxide_finds_it_in_tiangong(
    tiangong_index: SynonymIndex, tiangong: Bundle, query: str
) -> None:
    found = tiangong_index.search(query)

    assert CO2_FOSSIL in found
    assert "carbon dioxide" in tiangong.flows[found[0]].display_name().lower()


@pytest.mark.parametrize("query", ["CH4", "甲烷", "methane", "74-82-8"])
def test_every_name_of_methane_finds_it_in_tiangong(tiangong_index: SynonymIndex, query: str) -> None:
    assert CH4_FOSSIL in tiangong_index.search(query)


@pytest.mark.parametrize("query", ["N2O", "氧化亚氮", "一氧化二氮", "nitrous oxide", "10024-97-2"])
def test_every_name_of_nitrous_oxide_finds_it_in_tiangong(
    tiangong_index: SynonymIndex, tiangong: Bundle, query: str
) -> None:
    found = tiangong_index.search(query)

    assert found and tiangong.flows[found[0]].display_name() == "nitrous oxide"


@pytest.mark.parametrize("query", ["electricity", "电力", "电", "Electric Power"])
def test_electricity_is_found_in_chinese_and_english(
    tiangong_index: SynonymIndex, tiangong: Bundle, query: str
) -> None:
    found = tiangong_index.search(query)

    assert found and tiangong.flows[found[0]].display_name().lower().startswith("electricity")


def test_group_members_rank_before_flows_that_only_list_the_term_as_a_synonym() -> None:
    index = SynonymIndex.from_flows(
        [
            _flow("00000000-0000-0000-0000-000000000001", "dry ice pellets", synonyms={"en": ["CO2"]}),
            _flow("00000000-0000-0000-0000-000000000002", "carbon dioxide, liquid", cas="124-38-9"),
        ]
    )

    assert index.search("二氧化碳") == ["00000000-0000-0000-0000-000000000002"]
    assert index.search("CO2") == ["00000000-0000-0000-0000-000000000002", "00000000-0000-0000-0000-000000000001"]


def test_expanded_terms_match_exactly_while_the_literal_query_matches_substrings() -> None:
    power = _flow("00000000-0000-0000-0000-00000000000a", "electricity", "电力")
    carbide = _flow("00000000-0000-0000-0000-00000000000b", "calcium carbide", "电石")
    index = SynonymIndex.from_flows([carbide, power])

    # "electricity" expands to 电 among others, which must not pull in 电石.
    assert index.search("electricity") == [power.uuid]
    # The literal 电 is in both names; the exact group member comes first.
    assert index.search("电") == [power.uuid, carbide.uuid]
    assert index.search("电", substring=False) == [power.uuid]


def test_aluminium_spellings_find_primary_aluminium_by_its_chinese_name() -> None:
    ingot = _flow("00000000-0000-0000-0000-0000000000a1", "Primary aluminium ingot", "原铝")
    index = SynonymIndex.from_flows([ingot])

    for query in ("aluminum", "aluminium", "铝", "原铝", "7429-90-5"):
        assert index.search(query) == [ingot.uuid], query


def test_empty_and_unknown_queries_find_nothing() -> None:
    index = SynonymIndex.from_flows([_flow("00000000-0000-0000-0000-0000000000c1", "cement clinker", "水泥熟料")])

    assert index.search("") == []
    assert index.search("  ") == []
    assert index.search("zinc") == []
    assert index.search("熟料") == ["00000000-0000-0000-0000-0000000000c1"]
