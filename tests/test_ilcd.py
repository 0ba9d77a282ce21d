"""Tests of the ILCD reader and writer on the real TianGong sample and on derived broken copies."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from lca.errors import Diagnostic, ImportFailed
from lca.io.ilcd import (
    COMMON_NS,
    MODULE_NS,
    PCF_NS,
    detect_gwp_set,
    read_ilcd,
    read_locations,
    write_ilcd,
)
from lca.model import (
    Bundle,
    CharacterisationFactor,
    Classification,
    Contact,
    DataQuality,
    Exchange,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    LCIAMethod,
    LifeCycleModel,
    ModelLink,
    Process,
    Source,
    Uncertainty,
    Unit,
    UnitGroup,
)

SHARED_DATA = Path(__file__).resolve().parent / "data"
TIANGONG = SHARED_DATA / "tiangong_sample" / "ILCD"
TIANGONG_ZIP = SHARED_DATA / "tiangong_sample" / "tiangong_sample_ilcd.zip"

AVIATION_FUEL = "0092e030-a689-412a-9636-18dd5e427e4e"
"""Biomass aviation fuel bio-oil hydrogenation: 9 exchanges, reference exchange 0."""
DIESEL = "55a4c166-2eb6-43a3-9a13-2e4f2c4fee60"
P = f"{{{MODULE_NS['process']}}}"


@pytest.fixture(scope="module")
def tiangong() -> tuple[Bundle, list[Diagnostic]]:
    return read_ilcd(TIANGONG)


@pytest.fixture(scope="module")
def round_tripped(tiangong: tuple[Bundle, list[Diagnostic]], tmp_path_factory: pytest.TempPathFactory) -> tuple[
        Bundle, list[Diagnostic], Path]:
    out = tmp_path_factory.mktemp("ilcd") / "roundtrip.zip"
    write_ilcd(tiangong[0], out)
    bundle, diags = read_ilcd(out)
    return bundle, diags, out


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "ILCD"
    shutil.copytree(TIANGONG, target)
    return target


def _edit(file: Path, change: Callable[[etree._Element], None]) -> None:
    tree = etree.parse(str(file))
    change(tree.getroot())
    tree.write(str(file), xml_declaration=True, encoding="UTF-8")


def _first(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, {"p": MODULE_NS["process"], "c": COMMON_NS})
    assert found is not None, path
    return found


# --------------------------------------------------------------------------- real data


def test_tiangong_counts_match_the_data_readme(tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    bundle, diags = tiangong
    assert bundle.counts() == {
        "process": 40, "flow": 224, "flow_property": 23, "unit_group": 8,
        "lcia_method": 4, "source": 58, "contact": 21, "model": 0,
    }
    assert [d for d in diags if d.severity == "error"] == []


def test_zip_and_folder_give_the_same_bundle(tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    from_zip, zip_diags = read_ilcd(TIANGONG_ZIP, strict=True)  # warnings only: strict does not raise
    assert from_zip == tiangong[0]
    assert [(d.rule, d.location, d.value) for d in zip_diags] == [(d.rule, d.location, d.value) for d in tiangong[1]]
    assert all("tiangong_sample_ilcd.zip!ILCD/" in (d.file or "") for d in zip_diags)


def test_known_exchange_amount_unit_and_chinese_name_are_read_exactly(
        tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    process = tiangong[0].processes[AVIATION_FUEL]
    assert process.name == {"en": "Biomass aviation fuel bio-oil hydrogenation", "zh": "生物质航空燃油生物油脂加氢"}
    assert process.version == "00.01.005"
    assert process.location == "CN"
    assert process.reference_exchanges == ["0"]
    assert len(process.exchanges) == 9
    electricity, diesel = process.exchanges[0], process.exchanges[1]
    assert electricity.amount == 0.039599999999999996
    assert electricity.unit == "MJ"
    assert electricity.direction == "input"
    assert electricity.data_source == "primary"  # dataDerivationTypeStatus Calculated
    assert diesel.flow == DIESEL and diesel.amount == 5.04e-05
    assert process.exchanges[4].comment == {"en": "hydrocracking", "zh": "加氢裂解"}
    assert process.classifications == [Classification(
        system="ILCD", path=["Unit processes", "Energy carriers and technologies", "Renewable fuels"])]
    assert process.sources == ["af753136-fc41-4eae-81e7-b7978effc96f"]
    assert "f4b4c314-8c4c-4c83-968f-5b3c7724f6a8" in process.contacts


def test_flows_units_and_methods_are_read(tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    bundle = tiangong[0]
    potassium = bundle.flows["041ff933-6556-11dd-ad8b-0800200c9a66"]
    assert potassium.flow_type == "elementary"
    assert potassium.cas == "7440-09-7"
    assert potassium.compartment == ["Resources", "Resources from ground", "Non-renewable element resources from ground"]
    assert "Kalium" in potassium.synonyms["en"]
    fuel_oil = bundle.flows["4f19a2f7-7b3b-11dd-ad8b-0800200c9a66"]
    assert fuel_oil.name == {"en": "heavy fuel oil; from crude oil; consumption mix, at refinery"}
    assert fuel_oil.reference_property() == "93a60a56-a3c8-11da-a746-0800200b9a66"
    assert [p.factor for p in fuel_oil.properties] == [1.0, 40.44, 42.95, 0.001015]
    mass = bundle.unit_groups["93a60a57-a4c8-11da-a746-0800200c9a66"]
    assert mass.reference_unit == "kg" and mass.factor("t") == 1000.0
    assert {m.gwp_set for m in bundle.methods.values()} == {"AR6"}
    total = next(m for m in bundle.methods.values() if m.name == {"en": "Climate change"})
    assert total.reference_unit == "kg CO2 Equivalents"  # the others spell it "kg CO2-Equivalents"
    assert total.reference_property == "93a60a56-a3c8-11da-a746-0800200b9a66"
    uptake = [f for f in total.factors if f.direction == "input" and f.value == -1.0]
    assert uptake, "the CO2 uptake factors are inputs"


def test_round_trip_gives_an_equal_bundle(
        tiangong: tuple[Bundle, list[Diagnostic]], round_tripped: tuple[Bundle, list[Diagnostic], Path]) -> None:
    original, again = tiangong[0], round_tripped[0]
    assert len(again.processes) == 40 and len(again.flows) == 224
    for uid, process in original.processes.items():
        assert again.processes[uid] == process, uid
    for uid, flow in original.flows.items():
        assert again.flows[uid] == flow, uid
    assert again == original
    zh_names = sum(1 for p in again.processes.values() if p.name.get("zh"))
    assert zh_names == 40
    assert [d for d in round_tripped[1] if d.severity == "error"] == []
    assert [d for d in round_tripped[1] if d.rule == "xsd-deviation" and d.field != "CASNumber"] == []


def test_written_zip_is_ilcd_layout_with_ilcd_namespaces(round_tripped: tuple[Bundle, list[Diagnostic], Path]) -> None:
    with zipfile.ZipFile(round_tripped[2]) as zf:
        names = zf.namelist()
        folders = {n.split("/")[1] for n in names}
        assert all(n.startswith("ILCD/") for n in names)
        assert folders == {"processes", "flows", "flowproperties", "unitgroups", "lciamethods", "sources", "contacts"}
        root = etree.fromstring(zf.read(f"ILCD/processes/{AVIATION_FUEL}.xml"))
    assert root.tag == P + "processDataSet"
    assert root.nsmap["common"] == COMMON_NS
    qref = _first(root, "p:processInformation/p:quantitativeReference")
    assert [etree.QName(c).localname for c in qref] == ["referenceToReferenceFlow"]
    assert _first(root, "p:administrativeInformation/p:publicationAndOwnership/c:dataSetVersion").text == "00.01.005"
    assert _first(root, "p:exchanges/p:exchange/p:meanAmount").text == "0.039599999999999996"


def test_xsd_deviations_are_warnings_with_file_and_xpath(tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    diags = [d for d in tiangong[1] if d.file and d.file.endswith(f"processes/{AVIATION_FUEL}.xml")]
    by_field = {d.field: d for d in diags}
    order = by_field["referenceToReferenceFlow"]
    assert order.severity == "warning" and order.rule == "xsd-deviation"
    assert order.location == "/processDataSet/processInformation/quantitativeReference/referenceToReferenceFlow"
    approach = by_field["LCIMethodApproach"]
    assert approach.location == "/processDataSet/modellingAndValidation/LCIMethodAndAllocation/LCIMethodApproach"
    assert approach.value == "Allocation - gross calorific value"
    others = {d.location: d.value for d in diags if d.field == "other"}
    assert others["/processDataSet/administrativeInformation/dataGenerator/other[1]"] == "zhangyixuan0444@igsnrr.ac.cn"
    assert "/processDataSet/administrativeInformation/dataGenerator/other[2]" in others
    versions = [d for d in tiangong[1] if d.field == "dataSetVersion"]
    assert len(versions) == 104 and {d.value for d in versions} == {"00.01.05"}
    assert all(d.severity == "warning" for d in tiangong[1])


def test_tiangong_location_codes_are_kept_and_named(tiangong: tuple[Bundle, list[Diagnostic]]) -> None:
    names = read_locations(TIANGONG / "ILCDLocations.xml")
    assert names["SZ-JS-CN"] == {"en": "Suzhou, Jiangsu, China", "zh": "中国江苏苏州"}
    assert names["CN"] == {"en": "China"}
    assert names["RLA"] == {"en": "Latin America & the Caribbean"}
    codes = {p.location for p in tiangong[0].processes.values()}
    assert {"SZ-JS-CN", "YL-GX-CN", "HAIN-CN"} <= codes
    assert codes <= set(names)
    assert not [d for d in tiangong[1] if d.rule == "unknown-location"]


def test_gwp_set_is_detected_from_the_method_texts() -> None:
    assert detect_gwp_set("Climate change", "Baseline model of the IPCC 2021") == "AR6"
    assert detect_gwp_set("EF 3.1 Climate change") == "AR6"
    assert detect_gwp_set("EF 3.0 Climate change") == "AR5"
    assert detect_gwp_set("IPCC 2013 GWP 100a") == "AR5"
    assert detect_gwp_set("GWP100 (AR4)") == "AR4"
    assert detect_gwp_set("Acidification") is None


# --------------------------------------------------------------------------- broken copies


def test_non_numeric_mean_amount_is_an_error_naming_file_xpath_field_and_value(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    target = folder / "processes" / f"{AVIATION_FUEL}.xml"
    _edit(target, lambda r: setattr(r.findall(f".//{P}meanAmount")[1], "text", "5.04e-05 kg"))

    bundle, diags = read_ilcd(folder)

    errors = [d for d in diags if d.severity == "error"]
    assert len(errors) == 1
    err = errors[0]
    assert err.rule == "unparsable-number"
    assert err.file == str(target)
    assert err.location == "/processDataSet/exchanges/exchange[2]/meanAmount"
    assert err.field == "meanAmount" and err.value == "5.04e-05 kg"
    assert len(bundle.processes) == 40  # the rest is still read
    assert [e.internal_id for e in bundle.processes[AVIATION_FUEL].exchanges][:2] == ["0", "2"]
    with pytest.raises(ImportFailed) as raised:
        read_ilcd(folder, strict=True)
    assert [d for d in raised.value.diagnostics if d.severity == "error"] == errors
    assert "5.04e-05 kg" in str(raised.value)


@pytest.mark.parametrize("text", ["NaN", "INF", "-INF", "inf", "Infinity"])
def test_nan_or_infinite_mean_amount_is_refused_naming_file_xpath_field_and_value(tmp_path: Path, text: str) -> None:
    folder = _copy(tmp_path)
    target = folder / "processes" / f"{AVIATION_FUEL}.xml"
    _edit(target, lambda r: setattr(r.findall(f".//{P}meanAmount")[1], "text", text))

    bundle, diags = read_ilcd(folder)

    [err] = [d for d in diags if d.severity == "error"]
    assert (err.rule, err.file, err.location, err.field, err.value) == (
        "non-finite-number", str(target), "/processDataSet/exchanges/exchange[2]/meanAmount", "meanAmount", text)
    assert "finite" in err.message
    assert [e.internal_id for e in bundle.processes[AVIATION_FUEL].exchanges][:2] == ["0", "2"]
    with pytest.raises(ImportFailed):
        read_ilcd(folder, strict=True)


def test_written_nan_reads_back_as_an_error_not_a_number(tmp_path: Path) -> None:
    bundle, _ = read_ilcd(TIANGONG)
    process = bundle.processes[AVIATION_FUEL]
    process.exchanges[1].amount = float("nan")
    out = tmp_path / "nan.zip"
    write_ilcd(bundle, out)

    again, diags = read_ilcd(out)

    [err] = [d for d in diags if d.severity == "error"]
    assert (err.rule, err.field, err.value) == ("non-finite-number", "meanAmount", "NaN")
    assert err.file == f"{out}!ILCD/processes/{AVIATION_FUEL}.xml"
    assert len(again.processes[AVIATION_FUEL].exchanges) == len(process.exchanges) - 1


def test_missing_flow_file_is_an_error_at_each_exchange_that_names_it(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "flows" / f"{DIESEL}.xml").unlink()

    bundle, diags = read_ilcd(folder)

    errors = [d for d in diags if d.severity == "error"]
    assert errors and all(d.rule == "unresolved-reference" and d.value == DIESEL for d in errors)
    mine = [d for d in errors if d.file == str(folder / "processes" / f"{AVIATION_FUEL}.xml")]
    assert [d.location for d in mine] == ["/processDataSet/exchanges/exchange[2]/referenceToFlowDataSet"]
    assert mine[0].field == "refObjectId"
    assert bundle.processes[AVIATION_FUEL].exchanges[1].unit == ""


def test_unparsable_file_and_missing_uuid_are_errors_naming_the_file(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    broken = folder / "sources" / "04b619f5-3b6a-4cce-9bca-09783c55d2f9.xml"
    broken.write_bytes(broken.read_bytes()[:500])
    no_uuid = folder / "contacts" / "f4b4c314-8c4c-4c83-968f-5b3c7724f6a8.xml"
    _edit(no_uuid, lambda r: r[0][0].remove(r[0][0][0]))

    bundle, diags = read_ilcd(folder)

    errors = {d.file: d for d in diags if d.severity == "error"}
    assert errors[str(broken)].rule == "unparsable-file"
    assert errors[str(broken)].location.startswith("line ")
    assert errors[str(no_uuid)].rule == "missing-uuid"
    assert errors[str(no_uuid)].location == "/contactDataSet/contactInformation/dataSetInformation"
    assert len(bundle.sources) == 57 and len(bundle.contacts) == 20


def test_a_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    bundle, diags = read_ilcd(tmp_path / "nothing.zip")
    assert bundle == Bundle()
    assert [(d.severity, d.rule, d.file) for d in diags] == [("error", "missing-file", str(tmp_path / "nothing.zip"))]


def test_unknown_location_code_is_a_warning(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _edit(folder / "processes" / f"{AVIATION_FUEL}.xml",
          lambda r: _first(r, "p:processInformation/p:geography/p:locationOfOperationSupplyOrProduction").set(
              "location", "XX-YY-CN"))
    bundle, diags = read_ilcd(folder)
    assert bundle.processes[AVIATION_FUEL].location == "XX-YY-CN"
    found = [d for d in diags if d.rule == "unknown-location"]
    assert [(d.severity, d.value, d.field) for d in found] == [("warning", "XX-YY-CN", "location")]
    assert found[0].file == str(folder / "processes" / f"{AVIATION_FUEL}.xml")
    assert found[0].location == "/processDataSet/processInformation/geography/locationOfOperationSupplyOrProduction"


def test_ilcd_quality_uncertainty_and_allocation_elements_are_mapped(tmp_path: Path) -> None:
    folder = _copy(tmp_path)

    def change(root: etree._Element) -> None:
        review = _first(root, "p:modellingAndValidation/p:validation/p:review")
        dqis = etree.Element(f"{{{COMMON_NS}}}dataQualityIndicators")
        review.insert(0, dqis)
        for name, value in [("Technological representativeness", "Very good"),
                            ("Time representativeness", "Poor"), ("Precision", "Not evaluated / unknown")]:
            etree.SubElement(dqis, f"{{{COMMON_NS}}}dataQualityIndicator", name=name, value=value)
        exchanges = root.findall(f"{P}exchanges/{P}exchange")
        lognormal, normal = exchanges[1], exchanges[2]
        for ex, dist, rsd in [(lognormal, "log-normal", "2.25"), (normal, "normal", "10")]:
            at = ex.index(ex.find(f"{P}resultingAmount")) + 1
            ex.insert(at, etree.Element(f"{P}uncertaintyDistributionType"))
            ex[at].text = dist
            ex.insert(at + 1, etree.Element(f"{P}relativeStandardDeviation95In"))
            ex[at + 1].text = rsd
        allocs = etree.Element(f"{P}allocations")
        etree.SubElement(allocs, f"{P}allocation", internalReferenceToCoProduct="0", allocatedFraction="33.333")
        ex = exchanges[3]
        ex.insert(ex.index(ex.find(f"{P}resultingAmount")) + 1, allocs)
        ex.find(f"{P}dataDerivationTypeStatus").text = "Estimated"

    _edit(folder / "processes" / f"{AVIATION_FUEL}.xml", change)
    bundle, diags = read_ilcd(folder)

    process = bundle.processes[AVIATION_FUEL]
    assert process.data_quality == DataQuality(technological=1, temporal=4)
    lognormal = process.exchanges[1].uncertainty
    assert lognormal is not None and lognormal.distribution == "lognormal"
    assert lognormal.geosd == 1.5 and lognormal.geomean == 5.04e-05
    normal = process.exchanges[2].uncertainty
    assert normal is not None and normal.sd == pytest.approx(0.0052 * 0.05)
    assert process.exchanges[3].allocation == {"0": pytest.approx(0.33333)}
    assert process.exchanges[3].data_source == "secondary"
    assert not [d for d in diags if d.file and d.file.endswith(f"{AVIATION_FUEL}.xml") and "exchange[" in (
        d.location or "") and d.rule == "xsd-deviation"]


# --------------------------------------------------------------------------- writer on a full bundle

MASS_GROUP = "93a60a57-a4c8-11da-a746-0800200c9a66"
MASS = "93a60a56-a3c8-11da-a746-0800200b9a66"
STEEL = "5c1f8e3a-0000-4000-8000-000000000001"
CO2 = "5c1f8e3a-0000-4000-8000-000000000002"
ORE = "5c1f8e3a-0000-4000-8000-000000000003"
MILL = "5c1f8e3a-0000-4000-8000-0000000000a1"
MINE = "5c1f8e3a-0000-4000-8000-0000000000a2"


def _full_bundle() -> Bundle:
    """One data set of each module with every model field set, including those ILCD lacks."""
    b = Bundle()
    b.add(UnitGroup(uuid=MASS_GROUP, version="03.00.003", name={"en": "Units of mass", "zh": "质量单位"},
                    units=[Unit(name="kg", factor=1.0), Unit(name="t", factor=1000.0, description={"en": "tonne"})],
                    reference_unit="kg", classifications=[Classification(system="ILCD", path=["Technical unit groups"])]))
    b.add(FlowProperty(uuid=MASS, name={"en": "Mass"}, unit_group=MASS_GROUP, description={"en": "mass"}))
    b.add(Flow(uuid=STEEL, name={"en": "steel; hot rolled", "zh": "热轧钢"}, flow_type="product",
               properties=[FlowPropertyFactor(flow_property=MASS, factor=1.0, reference=True)],
               classifications=[Classification(system="CPC", code="41211", path=["Basic metals", "Steel"])],
               location="CN"))
    b.add(Flow(uuid=ORE, name={"en": "iron ore"}, flow_type="product",
               properties=[FlowPropertyFactor(flow_property=MASS, reference=True)]))
    b.add(Flow(uuid=CO2, name={"en": "carbon dioxide (fossil)"}, flow_type="elementary", cas="124-38-9",
               formula="CO2", compartment=["Emissions", "Emissions to air", "Emissions to air, unspecified"],
               synonyms={"en": ["CO2", "carbonic anhydride"], "zh": ["二氧化碳"]},
               properties=[FlowPropertyFactor(flow_property=MASS, reference=True)]))
    b.add(Source(uuid="5c1f8e3a-0000-4000-8000-0000000000b1", name={"en": "Plant survey 2024"},
                 citation="Survey of 12 mills, 2024", url="https://example.org/survey.pdf",
                 description={"en": "questionnaire"}))
    b.add(Contact(uuid="5c1f8e3a-0000-4000-8000-0000000000c1", name={"en": "Steel association", "zh": "钢铁协会"},
                  email="lca@example.org", url="https://example.org", address={"zh": "北京"}))
    b.add(Process(
        uuid=MILL, version="01.00.002", name={"en": "steel production", "zh": "钢生产"},
        description={"en": "blast furnace route"}, location="CN", sub_location="SZ-JS-CN", reference_year=2024,
        valid_until=2026, reference_exchanges=["out-1", "out-2"], annual_production=1.25e6,
        classifications=[Classification(system="GB/T 4754-2017", code="3120")],
        data_quality=DataQuality(technological=1, geographical=2, temporal=3, completeness=4, precision=5),
        sources=["5c1f8e3a-0000-4000-8000-0000000000b1"], contacts=["5c1f8e3a-0000-4000-8000-0000000000c1"],
        technology={"en": "BF-BOF", "zh": "高炉-转炉"},
        exchanges=[
            Exchange(internal_id="out-1", flow=STEEL, direction="output", amount=1.0, unit="t", data_source="primary",
                     allocation={"out-1": 2 / 3, "out-2": 1 / 3}),
            Exchange(internal_id="out-2", flow=STEEL, direction="output", amount=0.1, unit="kg",
                     flow_property=MASS, allocation={"out-1": 2 / 3, "out-2": 1 / 3}),
            Exchange(internal_id="in-ore", flow=ORE, direction="input", amount=1.6, unit="t", provider=MINE,
                     data_source="secondary", comment={"en": "from the mine", "zh": "来自矿山"}, location="AU",
                     uncertainty=Uncertainty(distribution="lognormal", geomean=1.6, geosd=1.1),
                     data_quality=DataQuality(precision=2)),
            Exchange(internal_id="co2", flow=CO2, direction="output", amount=1850.000000000001, unit="kg",
                     uncertainty=Uncertainty(distribution="triangular", minimum=1700.0, mode=1850.0, maximum=2100.0)),
        ],
    ))
    b.add(Process(uuid=MINE, name={"en": "iron ore mining"}, process_type="lci_result", reference_exchanges=["0"],
                  exchanges=[Exchange(internal_id="0", flow=ORE, direction="output", amount=1.0, unit="kg",
                                      uncertainty=Uncertainty(distribution="normal", sd=0.05,
                                                              relative_sd_percent=10.0))]))
    b.add(LCIAMethod(uuid="5c1f8e3a-0000-4000-8000-0000000000d1", name={"en": "GWP100 AR5"}, gwp_set="AR5",
                     factors=[CharacterisationFactor(flow=CO2, value=1.0, direction="output", species="CO2",
                                                     origin="fossil", unit="kg", flow_property=MASS)]))
    b.add(LifeCycleModel(uuid="5c1f8e3a-0000-4000-8000-0000000000e1", name={"en": "steel model"},
                         reference_process=MILL, processes=[MILL, MINE], location="CN",
                         links=[ModelLink(provider=MINE, flow=ORE, recipient=MILL)]))
    return b


def test_full_bundle_round_trip_is_lossless(tmp_path: Path) -> None:
    bundle = _full_bundle()
    out = tmp_path / "full.zip"

    write_ilcd(bundle, out)
    again, diags = read_ilcd(out)

    assert [d for d in diags if d.severity != "info"] == []
    for kind in ("process", "flow", "flow_property", "unit_group", "lcia_method", "source", "contact", "model"):
        assert again.collection(kind) == bundle.collection(kind), kind
    assert again == bundle


def test_writer_uses_ilcd_ids_reference_units_and_percent_allocation(tmp_path: Path) -> None:
    out = tmp_path / "full.zip"
    write_ilcd(_full_bundle(), out)
    with zipfile.ZipFile(out) as zf:
        root = etree.fromstring(zf.read(f"ILCD/processes/{MILL}.xml"))
    refs = root.findall(f"{P}processInformation/{P}quantitativeReference/{P}referenceToReferenceFlow")
    assert [r.text for r in refs] == ["0", "1"]
    first = root.find(f"{P}exchanges/{P}exchange")
    assert first.get("dataSetInternalID") == "0"
    assert first.find(f"{P}meanAmount").text == "1000.0"  # 1 t in the flow's reference unit kg
    assert first.find(f"{P}dataSourceType").text == "Primary"
    fractions = [a.get("allocatedFraction") for a in first.iter(f"{P}allocation")]
    assert fractions == ["66.667", "33.333"]
    assert first.find(f"{{{COMMON_NS}}}other/{{{PCF_NS}}}unit").text == "t"
    lognormal = root.findall(f"{P}exchanges/{P}exchange")[2]
    assert lognormal.find(f"{P}uncertaintyDistributionType").text == "log-normal"
    assert float(lognormal.find(f"{P}relativeStandardDeviation95In").text) == pytest.approx(1.21)
    annual = root.find(f"{P}processInformation/{P}dataSetInformation/{{{COMMON_NS}}}other/{{{PCF_NS}}}annualProduction")
    assert annual.text == "1250000.0"
    dqi = root.findall(f".//{{{COMMON_NS}}}dataQualityIndicator")
    assert (dqi[0].get("name"), dqi[0].get("value")) == ("Technological representativeness", "Very good")
