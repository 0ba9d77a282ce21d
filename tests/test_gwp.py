"""GWP100 tables, species matching (CAS, en / zh names) and the climate-change method."""

from __future__ import annotations

from pathlib import Path

import pytest

from lca.errors import NotFound
from lca.gwp import (
    GWPSet,
    characterisation_method,
    classify_origin,
    match_species,
    method_from_lcia,
    normalise_cas,
)
from lca.io.ilcd import read_ilcd
from lca.model import Bundle, CharacterisationFactor, Flow, LCIAMethod

TIANGONG = Path(__file__).resolve().parent / "data" / "tiangong_sample" / "ILCD"

AIR = ["Emissions", "Emissions to air", "Emissions to air, unspecified"]
WATER = ["Emissions", "Emissions to water", "Emissions to water, unspecified"]
FROM_AIR = ["Resources", "Resources from air", "Renewable material resources from air"]


def elementary(uuid: str, name: str | dict[str, str], compartment: list[str] | None = None, **kw: object) -> Flow:
    names = {"en": name} if isinstance(name, str) else name
    return Flow(uuid=uuid, name=names, flow_type="elementary", compartment=compartment or AIR, **kw)  # type: ignore[arg-type]


# -- tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("species", "ar5", "ar6"),
    [("N2O", 265, 273), ("SF6", 23500, 25200), ("NF3", 16100, 17400), ("HFC134a", 1300, 1530), ("CF4", 6630, 7380)],
)
def test_gwp100_values_are_those_of_ar5_and_ar6(species: str, ar5: float, ar6: float) -> None:
    assert GWPSet.load("AR5").gwp(species) == ar5
    assert GWPSet.load("AR6").gwp(species) == ar6


def test_methane_depends_on_origin_in_ar6_but_not_in_ar5() -> None:
    ar5, ar6 = GWPSet.load("AR5"), GWPSet.load("AR6")
    assert [ar5.gwp("CH4", o) for o in ("fossil", "biogenic", "land_use")] == [28, 28, 28]
    # Land-use CH4 is not short-cycle carbon: the fossil value, as in EF 3.1.
    assert [ar6.gwp("CH4", o) for o in ("fossil", "biogenic", "land_use")] == [29.8, 27.0, 29.8]


def test_carbon_dioxide_is_one_in_every_set_and_a_missing_value_is_none() -> None:
    assert GWPSet.load("AR5").gwp("CO2") == GWPSet.load("AR6").gwp("CO2") == 1.0
    # cC3F6 has an AR5 value and no AR6 value in the CSV.
    assert GWPSet.load("AR5").gwp("cC3F6") == 9200
    assert GWPSet.load("AR6").gwp("cC3F6") is None


def test_unknown_gwp_set_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(NotFound, match="AR5, AR6"):
        GWPSet.load("AR7")


# -- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cas", "species"),
    [("124-38-9", "CO2"), ("000074-82-8", "CH4"), ("10024-97-2", "N2O"), ("2551-62-4", "SF6"),
     ("7783-54-2", "NF3"), ("75-73-0", "CF4"), ("76-16-4", "C2F6"), ("811-97-2", "HFC134a"),
     ("75-46-7", "HFC23"), ("75-10-5", "HFC32"), ("354-33-6", "HFC125"), ("420-46-2", "HFC143a"),
     ("75-37-6", "HFC152a")],
)
def test_species_is_matched_by_cas_number_whatever_the_name(cas: str, species: str) -> None:
    flow = elementary("f", "some gas as named by its supplier", cas=cas)
    found = match_species(flow)
    assert found is not None and found.key == species


def test_a_cas_number_of_another_substance_decides_over_synonyms() -> None:
    # Toluene's CAS index synonym "Methane, phenyl-" must not make it methane.
    toluene = elementary("f", "toluene", cas="108-88-3", synonyms={"en": ["Methane, phenyl-", "Benzene, methyl-"]})
    assert match_species(toluene) is None
    assert match_species(elementary("g", "toluene", synonyms={"en": ["Methane, phenyl-"]})) is None


@pytest.mark.parametrize(
    ("name", "species"),
    [("二氧化碳", "CO2"), ("甲烷", "CH4"), ("氧化亚氮", "N2O"), ("一氧化二氮", "N2O"), ("六氟化硫", "SF6"),
     ("三氟化氮", "NF3"), ("四氟化碳", "CF4"), ("1,1,1,2-四氟乙烷", "HFC134a"), ("二氟甲烷", "HFC32"),
     ("甲烷（生物源）", "CH4"), ("二氧化碳，化石", "CO2")],
)
def test_species_is_matched_by_chinese_name(name: str, species: str) -> None:
    found = match_species(elementary("f", {"zh": name}))
    assert found is not None and found.key == species


@pytest.mark.parametrize(
    ("name", "species"),
    [("Carbon dioxide, fossil", "CO2"), ("carbon dioxide (biogenic)", "CO2"), ("Methane, non-fossil", "CH4"),
     ("Dinitrogen monoxide", "N2O"), ("Sulphur hexafluoride", "SF6"), ("Ethane, 1,1,1,2-tetrafluoro-, HFC-134a", "HFC134a"),
     ("Methane, tetrafluoro-, R-14", "CF4"), ("HFC-23", "HFC23"), ("CO₂", "CO2")],
)
def test_species_is_matched_by_english_name_or_trade_code(name: str, species: str) -> None:
    found = match_species(elementary("f", name))
    assert found is not None and found.key == species


def test_species_is_matched_by_formula_when_the_name_says_nothing() -> None:
    found = match_species(elementary("f", "insulating gas of switchgear", formula="SF6"))
    assert found is not None and found.key == "SF6"


def test_normalise_cas_strips_zero_padding_and_rejects_malformed_numbers() -> None:
    assert normalise_cas(" 000124-38-9") == "124-38-9"
    assert normalise_cas("124-38") is None
    assert normalise_cas("") is None


@pytest.mark.parametrize(
    ("name", "origin"),
    [("carbon dioxide (fossil)", "fossil"), ("Carbon dioxide", "fossil"), ("carbon dioxide (biogenic)", "biogenic"),
     ("Methane, non-fossil", "biogenic"), ("Carbon dioxide, from soil or biomass stock", "land_use"),
     ("carbon dioxide (land use change)", "land_use"), ("Carbon dioxide, land transformation", "land_use"),
     ("甲烷（生物源）", "biogenic"), ("二氧化碳（土地利用变化）", "land_use"), ("二氧化碳（化石）", "fossil")],
)
def test_origin_is_classified_from_the_flow_name(name: str, origin: str) -> None:
    assert classify_origin(elementary("f", name)) == origin


# -- the method -----------------------------------------------------------------------------


def _bundle(*flows: Flow) -> Bundle:
    b = Bundle()
    for f in flows:
        b.add(f)
    return b


def test_method_counts_emissions_to_air_and_carbon_dioxide_taken_from_air_as_minus_one() -> None:
    b = _bundle(
        elementary("co2-air", "carbon dioxide (fossil)", cas="124-38-9"),
        elementary("co2-water", "carbon dioxide", WATER, cas="124-38-9"),
        elementary("co2-uptake", "Carbon dioxide, in air", ["natural resource", "in air"], cas="124-38-9"),
        elementary("ch4-bio", "Methane, non-fossil", cas="74-82-8"),
        elementary("ch4-zh", {"zh": "甲烷"}, ["排放", "排放到大气"]),
        elementary("co", "carbon monoxide (fossil)", cas="630-08-0"),
        Flow(uuid="steel", name={"en": "steel"}, flow_type="product"),
    )
    m = characterisation_method(b, "AR6")
    got = {cf.flow: (cf.value, cf.species, cf.origin) for cf in m.factors}
    assert got == {
        "co2-air": (1.0, "CO2", "fossil"),
        "co2-uptake": (-1.0, "CO2", "biogenic"),
        "ch4-bio": (27.0, "CH4", "biogenic"),
        "ch4-zh": (29.8, "CH4", "fossil"),
    }
    assert m.gwp_set == "AR6"
    assert characterisation_method(b).gwp_set == "AR5"
    assert {cf.value for cf in characterisation_method(b).factors if cf.species == "CH4"} == {28.0}


def test_method_uuid_identifies_the_gwp_set() -> None:
    b = _bundle(elementary("co2", "carbon dioxide"))
    assert characterisation_method(b, "AR5").uuid == characterisation_method(Bundle(), "AR5").uuid
    assert characterisation_method(b, "AR5").uuid != characterisation_method(b, "AR6").uuid


def test_imported_method_is_used_as_it_is_and_labelled_by_gas_and_origin() -> None:
    b = _bundle(elementary("ch4", "methane (biogenic)", cas="74-82-8"), elementary("odd", "propane"))
    b.add(LCIAMethod(
        uuid="m1", name={"en": "Climate change"}, description={"en": "Baseline model of the IPCC 2021"},
        factors=[CharacterisationFactor(flow="ch4", value=27.0), CharacterisationFactor(flow="odd", value=0.02)],
    ))
    m = method_from_lcia(b, "M1")
    assert [(cf.value, cf.species, cf.origin) for cf in m.factors] == [(27.0, "CH4", "biogenic"), (0.02, None, "fossil")]
    assert m.gwp_set == "AR6"
    with pytest.raises(NotFound, match="m1"):
        method_from_lcia(b, "nope")


# -- TianGong -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiangong() -> Bundle:
    bundle, _ = read_ilcd(TIANGONG)
    return bundle


def test_tiangong_greenhouse_gas_flows_are_characterised(tiangong: Bundle) -> None:
    m = characterisation_method(tiangong, "AR5")
    by_name = {(tiangong.flows[cf.flow].display_name(), tiangong.flows[cf.flow].compartment[-1]): cf for cf in m.factors}
    assert by_name[("methane (biogenic)", "Emissions to air, unspecified")].value == 28
    assert by_name[("nitrous oxide", "Emissions to lower stratosphere and upper troposphere")].value == 265
    uptake = by_name[("Carbon dioxide (fossil)", "Renewable material resources from air")]
    assert (uptake.value, uptake.origin) == (-1.0, "biogenic")
    names = {name for name, _ in by_name}
    assert names == {"carbon dioxide (fossil)", "carbon dioxide (biogenic)", "Carbon dioxide (fossil)",
                     "methane (fossil)", "methane (biogenic)", "nitrous oxide"}


def test_tiangong_ef31_method_keeps_its_values(tiangong: Bundle) -> None:
    ef = method_from_lcia(tiangong, "6209b35f-9447-40b5-b68c-a1099e3674a0")
    assert len(ef.factors) == len(tiangong.methods["6209b35f-9447-40b5-b68c-a1099e3674a0"].factors)
    ch4 = {(cf.origin, cf.value) for cf in ef.factors if cf.species == "CH4"}
    assert ch4 == {("fossil", 29.8), ("biogenic", 27.0)}
