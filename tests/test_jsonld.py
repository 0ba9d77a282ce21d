"""Tests of the openLCA JSON-LD reader and writer (lca.io.jsonld)."""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import olca_schema as o
import pytest
from olca_schema import zipio

from lca.errors import Diagnostic
from lca.io.jsonld import (
    CATEGORY_SYSTEM,
    IMPACT_METHOD_SYSTEM,
    read_jsonld,
    write_jsonld,
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

USLCI = Path(__file__).resolve().parent / "data" / "uslci_jsonld_v1_sample"
BROKEN_PROCESS = "008a4c75-ff57-309e-b052-c9368f46d53e"

_OLCA_TYPES = [
    o.Actor,
    o.DQSystem,
    o.Flow,
    o.FlowProperty,
    o.ImpactCategory,
    o.ImpactMethod,
    o.Location,
    o.Process,
    o.ProductSystem,
    o.Source,
    o.UnitGroup,
]


def _errors(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity == "error"]


@pytest.fixture(scope="module")
def uslci() -> tuple[Bundle, list[Diagnostic]]:
    return read_jsonld(USLCI)


def _raw_processes() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((USLCI / "processes").glob("*.json"))}


def _copy_sample(dst: Path) -> Path:
    """A writable copy of the USLCI sample (the repository copy must stay untouched)."""
    for src in USLCI.rglob("*.json"):
        target = dst / src.relative_to(USLCI)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dst


def _olca_rewrite(src: Path, dst: Path) -> None:
    """Read every entity with olca_schema's own reader and write it again with its writer."""
    with zipio.ZipReader(src) as reader, zipio.ZipWriter(dst) as writer:
        for t in _OLCA_TYPES:
            for entity in reader.read_each(t):
                writer.write(entity)


# --------------------------------------------------------------------------- v1 sample


def test_uslci_v1_sample_reads_every_dataset_without_errors_and_says_v1(uslci):
    bundle, diags = uslci

    assert bundle.counts() == {
        "process": 12,
        "flow": 94,
        "flow_property": 6,
        "unit_group": 6,
        "lcia_method": 0,
        "source": 0,
        "contact": 0,
        "model": 0,
    }
    assert _errors(diags) == []
    assert [d.rule for d in diags if d.rule == "jsonld-v1-layout"] == ["jsonld-v1-layout"]
    # the sample leaves out the sources and actors its processes name: said, not fatal
    missing = [d for d in diags if d.rule == "unresolved-reference"]
    assert missing and all(d.severity == "info" for d in missing)


def test_v1_input_and_quantitative_reference_are_read_from_the_raw_json(uslci):
    bundle, _ = uslci

    for uid, raw in _raw_processes().items():
        process = bundle.processes[uid]
        raw_inputs = sum(1 for e in raw["exchanges"] if e["input"])
        raw_outputs = sum(1 for e in raw["exchanges"] if not e["input"])
        assert sum(e.direction == "input" for e in process.exchanges) == raw_inputs
        assert sum(e.direction == "output" for e in process.exchanges) == raw_outputs
        assert raw_inputs > 0 and raw_outputs > 0
        marked = [i for i, e in enumerate(raw["exchanges"]) if e.get("quantitativeReference")]
        assert len(marked) == 1
        assert process.reference_exchanges == [str(marked[0] + 1)]
        ref = process.reference_exchange()
        assert ref is not None
        assert ref.flow == raw["exchanges"][marked[0]]["flow"]["@id"]
        assert ref.direction == "output"


def test_v1_exchanges_keep_flow_amount_unit_and_property_in_file_order(uslci):
    bundle, _ = uslci

    for uid, raw in _raw_processes().items():
        process = bundle.processes[uid]
        for i, ex in enumerate(raw["exchanges"]):
            ours = process.exchange(str(i + 1))
            assert ours is not None
            assert (ours.flow, ours.amount, ours.unit, ours.flow_property) == (
                ex["flow"]["@id"],
                ex["amount"],
                ex["unit"]["name"],
                ex["flowProperty"]["@id"],
            )


def test_v1_processes_map_location_years_category_and_documentation(uslci):
    bundle, _ = uslci
    process = bundle.processes[BROKEN_PROCESS]

    assert process.name == {"en": "Transport, intercity bus, diesel powered, Southwest"}
    assert process.location == "RNA"
    assert (process.reference_year, process.valid_until) == (2010, 2010)
    assert process.classifications == [
        Classification(system=CATEGORY_SYSTEM, path=["Interurban and Rural Bus Transportation"])
    ]
    assert process.technology == {"en": "Combustion of diesel in an intercity bus."}
    assert len(process.sources) == 10
    assert process.contacts == ["46308ae8-5bc9-3e99-9f16-03367fa3ea27"]


def test_v1_flows_and_unit_groups_keep_reference_property_and_reference_unit(uslci):
    bundle, _ = uslci

    mass = bundle.unit_groups["93a60a57-a4c8-11da-a746-0800200c9a66"]
    assert mass.reference_unit == "kg"
    assert mass.factor("kg") == 1.0
    transport = bundle.unit_groups["11d161f0-37e3-4d49-bf7a-ff4f31a9e5c7"]
    assert transport.factor("p*mi") == 1.6
    for flow in bundle.flows.values():
        assert sum(p.reference for p in flow.properties) == 1
    nox = bundle.flows["e8244140-0551-38e9-8143-4bb8be8488e9"]
    assert nox.flow_type == "elementary"
    assert nox.compartment == ["unspecified"]
    assert nox.classifications == []


# --------------------------------------------------------------------------- round trips


def test_uslci_round_trip_through_a_v2_zip_gives_an_equal_bundle(uslci, tmp_path):
    bundle, _ = uslci
    out = tmp_path / "uslci_v2.zip"

    write_jsonld(bundle, out)
    again, diags = read_jsonld(out)

    assert again == bundle
    assert _errors(diags) == []
    assert not [d for d in diags if d.rule in ("jsonld-v1-layout", "jsonld-v1-keys")]
    with zipfile.ZipFile(out) as z:
        assert json.loads(z.read("olca-schema.json")) == {"version": 2}
        raw = json.loads(z.read(f"processes/{BROKEN_PROCESS}.json"))
    first = raw["exchanges"][0]
    assert (first["internalId"], first["isInput"], first["isQuantitativeReference"]) == (1, False, True)
    assert "input" not in first and "quantitativeReference" not in first
    # openLCA's reference-data unit ids are kept, so the zip links to an openLCA database's units
    assert first["unit"]["@id"] == "fe8da65d-f0ea-4496-b13e-1955aaa412d7"


def test_uslci_round_trip_survives_olca_schemas_own_reader_and_writer(uslci, tmp_path):
    bundle, _ = uslci
    ours, theirs = tmp_path / "ours.zip", tmp_path / "theirs.zip"

    write_jsonld(bundle, ours)
    _olca_rewrite(ours, theirs)
    again, diags = read_jsonld(theirs)

    assert again == bundle
    assert _errors(diags) == []


P_STEEL = "6a1d1d0e-0000-4000-8000-000000000001"
P_COAL = "6a1d1d0e-0000-4000-8000-000000000002"
F_STEEL = "6a1d1d0e-0000-4000-8000-000000000011"
F_COAL = "6a1d1d0e-0000-4000-8000-000000000012"
F_CO2 = "6a1d1d0e-0000-4000-8000-000000000013"
F_SLAG = "6a1d1d0e-0000-4000-8000-000000000014"
F_GANGUE = "6a1d1d0e-0000-4000-8000-000000000015"
FP_MASS = "6a1d1d0e-0000-4000-8000-000000000021"
UG_MASS = "6a1d1d0e-0000-4000-8000-000000000031"
SOURCE = "6a1d1d0e-0000-4000-8000-000000000041"
CONTACT = "6a1d1d0e-0000-4000-8000-000000000051"
METHOD = "6a1d1d0e-0000-4000-8000-000000000061"
EF_METHOD = "6a1d1d0e-0000-4000-8000-000000000062"
MODEL = "6a1d1d0e-0000-4000-8000-000000000071"


def _zh_bundle() -> Bundle:
    """A small bundle with Chinese and English texts and the fields openLCA has no place for."""
    b = Bundle()
    b.add(
        UnitGroup(
            uuid=UG_MASS,
            name={"en": "Units of mass", "zh": "质量单位"},
            units=[
                Unit(name="kg", factor=1.0, description={"en": "kilogram", "zh": "千克"}),
                Unit(name="t", factor=1000.0, description={"zh": "吨"}),
            ],
            reference_unit="kg",
        )
    )
    b.add(FlowProperty(uuid=FP_MASS, name={"en": "Mass", "zh": "质量"}, unit_group=UG_MASS))
    mass = [FlowPropertyFactor(flow_property=FP_MASS, factor=1.0, reference=True)]
    b.add(
        Flow(
            uuid=F_STEEL,
            name={"en": "Steel, hot rolled", "zh": "热轧钢材"},
            flow_type="product",
            synonyms={"en": ["HR steel", "hot-rolled coil"], "zh": ["热轧板"]},
            properties=mass,
            classifications=[
                Classification(system=CATEGORY_SYSTEM, path=["C", "24 Basic metals"]),
                Classification(system="ISIC Rev.5", code="2410", path=["C", "24", "241"]),
            ],
        )
    )
    b.add(Flow(uuid=F_COAL, name={"zh": "原煤"}, flow_type="product", properties=mass, location="CN-SX"))
    b.add(
        Flow(
            uuid=F_CO2,
            name={"en": "Carbon dioxide, fossil", "zh": "二氧化碳，化石"},
            flow_type="elementary",
            cas="124-38-9",
            formula="CO2",
            compartment=["Emissions", "Emissions to air"],
            properties=mass,
        )
    )
    b.add(Flow(uuid=F_SLAG, name={"en": "Slag", "zh": "矿渣"}, flow_type="product", properties=mass))
    b.add(Flow(uuid=F_GANGUE, name={"en": "Gangue"}, flow_type="waste", properties=mass))
    b.add(
        Process(
            uuid=P_STEEL,
            version="01.02.003",
            name={"en": "Hot rolling of steel; Jiangsu", "zh": "钢材热轧；江苏"},
            description={"en": "Gate to gate, 2022.", "zh": "从大门到大门，2022年。"},
            classifications=[Classification(system=CATEGORY_SYSTEM, path=["Manufacturing", "Steel"])],
            location="CN-JS",
            sub_location="SZ-JS-CN",
            reference_year=2022,
            valid_until=2024,
            technology={"zh": "电弧炉，热轧"},
            annual_production=1.2e6,
            data_quality=DataQuality(technological=2, geographical=1, completeness=3, precision=2),
            sources=[SOURCE],
            contacts=[CONTACT],
            reference_exchanges=["1"],
            exchanges=[
                Exchange(
                    internal_id="1", flow=F_STEEL, direction="output", amount=1.0, unit="t", flow_property=FP_MASS
                ),
                Exchange(
                    internal_id="2",
                    flow=F_SLAG,
                    direction="output",
                    amount=120.0,
                    unit="kg",
                    flow_property=FP_MASS,
                    comment={"zh": "副产品"},
                ),
                Exchange(
                    internal_id="3",
                    flow=F_COAL,
                    direction="input",
                    amount=600.0,
                    unit="kg",
                    flow_property=FP_MASS,
                    provider=P_COAL,
                    uncertainty=Uncertainty(distribution="lognormal", geomean=600.0, geosd=1.1),
                    data_quality=DataQuality(precision=1, completeness=2, temporal=3, geographical=4, technological=5),
                    allocation={"1": 0.9, "2": 0.1},
                ),
                Exchange(
                    internal_id="4",
                    flow=F_CO2,
                    direction="output",
                    amount=1.8e3,
                    unit="kg",
                    flow_property=FP_MASS,
                    data_source="primary",
                    comment={"en": "measured", "zh": "实测"},
                    uncertainty=Uncertainty(distribution="normal", sd=90.0),
                    allocation={"1": 0.8, "2": 0.2},
                    location="CN-JS",
                ),
                Exchange(
                    internal_id="e-5",
                    flow=F_CO2,
                    direction="output",
                    amount=2.0,
                    unit="kg",
                    uncertainty=Uncertainty(distribution="normal", relative_sd_percent=5.0),
                    allocation={"1": 1.0},
                ),
            ],
        )
    )
    b.add(
        Process(
            uuid=P_COAL,
            name={"zh": "原煤开采"},
            location="CN-SX",
            reference_exchanges=["1"],
            exchanges=[
                Exchange(
                    internal_id="1", flow=F_COAL, direction="output", amount=1.0, unit="kg", flow_property=FP_MASS
                ),
                Exchange(
                    internal_id="2", flow=F_GANGUE, direction="input", amount=0.2, unit="kg", flow_property=FP_MASS
                ),
                Exchange(
                    internal_id="3",
                    flow=F_CO2,
                    direction="output",
                    amount=0.1,
                    unit="kg",
                    flow_property=FP_MASS,
                    uncertainty=Uncertainty(distribution="triangular", minimum=0.05, mode=0.1, maximum=0.2),
                    allocation={"1": 0.95, "2": 0.05},
                ),
                Exchange(
                    internal_id="4",
                    flow=F_STEEL,
                    direction="input",
                    amount=0.001,
                    unit="kg",
                    flow_property=FP_MASS,
                    uncertainty=Uncertainty(distribution="uniform", minimum=0.0005, maximum=0.002),
                    allocation={"1": 0.95, "2": 0.05},
                ),
            ],
        )
    )
    b.add(
        Source(
            uuid=SOURCE,
            name={"en": "GB/T 24067-2024", "zh": "温室气体 产品碳足迹 量化要求和指南"},
            citation="GB/T 24067-2024",
            url="https://openstd.samr.gov.cn/",
        )
    )
    b.add(
        Contact(
            uuid=CONTACT,
            name={"en": "Suzhou Steel, Ltd.", "zh": "苏州钢铁, 有限公司"},
            email="lca@example.cn",
            address={"zh": "江苏省苏州市, 100% 工业园", "en": "Suzhou, Jiangsu"},
        )
    )
    b.add(
        LCIAMethod(
            uuid=METHOD,
            name={"en": "Climate change, GWP100", "zh": "气候变化"},
            gwp_set="AR6",
            classifications=[Classification(system=IMPACT_METHOD_SYSTEM, code=EF_METHOD, path=["EF 3.1"])],
            factors=[CharacterisationFactor(flow=F_CO2, value=1.0, flow_property=FP_MASS, unit="kg")],
        )
    )
    b.add(
        LifeCycleModel(
            uuid=MODEL,
            name={"en": "Steel, cradle to gate", "zh": "钢材，摇篮到大门"},
            reference_process=P_STEEL,
            processes=[P_STEEL, P_COAL],
            links=[ModelLink(provider=P_COAL, flow=F_COAL, recipient=P_STEEL)],
            location="CN",
        )
    )
    return b


def test_zh_and_en_texts_and_extra_fields_round_trip_to_an_equal_bundle(tmp_path):
    bundle = _zh_bundle()
    out = tmp_path / "zh.zip"

    write_jsonld(bundle, out)
    again, diags = read_jsonld(out)

    assert _errors(diags) == []
    for kind in bundle.counts():
        assert again.collection(kind) == bundle.collection(kind), kind
    assert again == bundle
    assert again.processes[P_STEEL].name == {"en": "Hot rolling of steel; Jiangsu", "zh": "钢材热轧；江苏"}
    assert again.processes[P_COAL].name == {"zh": "原煤开采"}


def test_written_names_put_english_in_the_name_field_and_other_languages_in_tags(tmp_path):
    out = tmp_path / "zh.zip"

    write_jsonld(_zh_bundle(), out)

    with zipfile.ZipFile(out) as z:
        steel = json.loads(z.read(f"processes/{P_STEEL}.json"))
        coal = json.loads(z.read(f"processes/{P_COAL}.json"))
        contact = json.loads(z.read(f"actors/{CONTACT}.json"))
    assert steel["name"] == "Hot rolling of steel; Jiangsu"
    assert "pcf:name@zh=钢材热轧；江苏" in steel["tags"]
    assert coal["name"] == "原煤开采"
    assert "pcf:name-lang=zh" in coal["tags"]
    # openLCA keeps tags joined by commas, so commas in a text are percent-encoded
    assert "pcf:name@zh=苏州钢铁%2C 有限公司" in contact["tags"]
    assert all("," not in tag for tag in contact["tags"])


def test_zh_bundle_survives_olca_schemas_own_reader_and_writer(tmp_path):
    bundle = _zh_bundle()
    ours, theirs = tmp_path / "ours.zip", tmp_path / "theirs.zip"

    write_jsonld(bundle, ours)
    _olca_rewrite(ours, theirs)
    again, diags = read_jsonld(theirs)

    assert again == bundle
    assert _errors(diags) == []


def test_uniform_allocation_is_written_as_physical_and_varying_as_causal(tmp_path):
    out = tmp_path / "zh.zip"

    write_jsonld(_zh_bundle(), out)

    with zipfile.ZipFile(out) as z:
        coal = json.loads(z.read(f"processes/{P_COAL}.json"))
        steel = json.loads(z.read(f"processes/{P_STEEL}.json"))
    assert coal["defaultAllocationMethod"] == "PHYSICAL_ALLOCATION"
    assert sorted((f["product"]["@id"], f["value"]) for f in coal["allocationFactors"]) == [
        (F_COAL, 0.95),
        (F_GANGUE, 0.05),
    ]
    assert steel["defaultAllocationMethod"] == "CAUSAL_ALLOCATION"
    assert all("exchange" in f for f in steel["allocationFactors"])


# --------------------------------------------------------------------------- openLCA v2 data


def _ref(kind: o.RefType, uid: str, name: str = "") -> o.Ref:
    return o.Ref(ref_type=kind, id=uid, name=name or None)


def _openlca_v2_zip(path: Path, *, dq_system: o.DQSystem | None = None) -> None:
    """A zip as openLCA 2 writes it: v2 keys, allocation of two types, dq entries, LCIA, a product system."""
    kg = o.Unit(id="20aadc24-a391-41cf-b340-3e4529f44bde", name="kg", conversion_factor=1.0, is_ref_unit=True)
    g = o.Unit(id="5beb6eed-33a9-47b8-9ede-1dfe8f679159", name="g", conversion_factor=0.001, is_ref_unit=False)
    group = o.UnitGroup(id=UG_MASS, name="Units of mass", units=[kg, g])
    mass = o.FlowProperty(id=FP_MASS, name="Mass", unit_group=_ref(o.RefType.UnitGroup, UG_MASS))
    loc = o.Location(id="0b3b97fa-6688-3c56-88ba-a1e3b7b2bf4f", name="China", code="CN")

    def flow(uid: str, name: str, kind: o.FlowType, category: str) -> o.Flow:
        return o.Flow(
            id=uid,
            name=name,
            flow_type=kind,
            category=category,
            flow_properties=[
                o.FlowPropertyFactor(
                    flow_property=_ref(o.RefType.FlowProperty, FP_MASS),
                    conversion_factor=1.0,
                    is_ref_flow_property=True,
                )
            ],
        )

    flows = [
        flow(F_STEEL, "steel", o.FlowType.PRODUCT_FLOW, "C/24"),
        flow(F_SLAG, "slag", o.FlowType.PRODUCT_FLOW, "C/24"),
        flow(F_COAL, "coal", o.FlowType.PRODUCT_FLOW, "B/05"),
        flow(F_CO2, "Carbon dioxide, fossil", o.FlowType.ELEMENTARY_FLOW, "Elementary flows/Emission to air"),
    ]

    def ex(iid: int, f: str, amount: float, *, is_input: bool = False, unit: o.Unit = kg, **kw) -> o.Exchange:
        return o.Exchange(
            internal_id=iid,
            flow=_ref(o.RefType.Flow, f),
            amount=amount,
            is_input=is_input,
            unit=_ref(o.RefType.Unit, unit.id, unit.name),
            flow_property=_ref(o.RefType.FlowProperty, FP_MASS),
            **kw,
        )

    steel = o.Process(
        id=P_STEEL,
        name="steel making",
        category="Manufacturing/Steel",
        process_type=o.ProcessType.UNIT_PROCESS,
        location=_ref(o.RefType.Location, loc.id),
        process_documentation=o.ProcessDocumentation(valid_from="2021-01-01", valid_until="2023-12-31"),
        dq_entry="(1;2;3;4;5)",
        dq_system=_ref(o.RefType.DQSystem, dq_system.id) if dq_system else None,
        exchange_dq_system=_ref(o.RefType.DQSystem, dq_system.id) if dq_system else None,
        exchanges=[
            ex(1, F_STEEL, 1000.0, is_quantitative_reference=True),
            ex(2, F_SLAG, 120.0),
            ex(
                3,
                F_COAL,
                600.0,
                is_input=True,
                default_provider=_ref(o.RefType.Process, P_COAL),
                dq_entry="(2;2;n.a.;1;1)",
                uncertainty=o.Uncertainty(
                    distribution_type=o.UncertaintyType.LOG_NORMAL_DISTRIBUTION, geom_mean=600.0, geom_sd=1.2
                ),
            ),
            ex(4, F_CO2, 1.8e6, unit=g),
        ],
        default_allocation_method=o.AllocationType.PHYSICAL_ALLOCATION,
        allocation_factors=[
            o.AllocationFactor(
                allocation_type=o.AllocationType.PHYSICAL_ALLOCATION, product=_ref(o.RefType.Flow, F_STEEL), value=0.9
            ),
            o.AllocationFactor(
                allocation_type=o.AllocationType.PHYSICAL_ALLOCATION, product=_ref(o.RefType.Flow, F_SLAG), value=0.1
            ),
            o.AllocationFactor(
                allocation_type=o.AllocationType.ECONOMIC_ALLOCATION, product=_ref(o.RefType.Flow, F_STEEL), value=0.99
            ),
            o.AllocationFactor(
                allocation_type=o.AllocationType.ECONOMIC_ALLOCATION, product=_ref(o.RefType.Flow, F_SLAG), value=0.01
            ),
        ],
    )
    coal = o.Process(id=P_COAL, name="coal mining", exchanges=[ex(1, F_COAL, 1.0, is_quantitative_reference=True)])
    gwp = o.ImpactCategory(
        id=METHOD,
        name="Climate change",
        ref_unit="kg CO2 eq",
        impact_factors=[
            o.ImpactFactor(
                flow=_ref(o.RefType.Flow, F_CO2),
                value=1.0,
                unit=_ref(o.RefType.Unit, kg.id, "kg"),
                flow_property=_ref(o.RefType.FlowProperty, FP_MASS),
            )
        ],
    )
    acid = o.ImpactCategory(id="6a1d1d0e-0000-4000-8000-000000000063", name="Acidification", ref_unit="mol H+ eq")
    method = o.ImpactMethod(
        id=EF_METHOD,
        name="IPCC 2021 GWP100",
        impact_categories=[_ref(o.RefType.ImpactCategory, gwp.id), _ref(o.RefType.ImpactCategory, acid.id)],
    )
    system = o.ProductSystem(
        id=MODEL,
        name="steel system",
        ref_process=_ref(o.RefType.Process, P_STEEL),
        processes=[_ref(o.RefType.Process, P_STEEL), _ref(o.RefType.Process, P_COAL)],
        process_links=[
            o.ProcessLink(
                provider=_ref(o.RefType.Process, P_COAL),
                flow=_ref(o.RefType.Flow, F_COAL),
                process=_ref(o.RefType.Process, P_STEEL),
                exchange=o.ExchangeRef(internal_id=3),
            )
        ],
    )
    with zipio.ZipWriter(path) as w:
        for entity in [group, mass, loc, *flows, steel, coal, gwp, acid, method, system]:
            w.write(entity)
        if dq_system is not None:
            w.write(dq_system)


def test_openlca_v2_zip_maps_allocation_data_quality_uncertainty_lcia_and_links(tmp_path):
    path = tmp_path / "openlca2.zip"
    _openlca_v2_zip(path)

    bundle, diags = read_jsonld(path)

    assert _errors(diags) == []
    steel = bundle.processes[P_STEEL]
    assert steel.location == "CN"
    assert (steel.reference_year, steel.valid_until) == (2021, 2023)
    assert steel.classifications == [Classification(system=CATEGORY_SYSTEM, path=["Manufacturing", "Steel"])]
    # openLCA's default order: reliability, completeness, temporal, geographical, technological
    assert steel.data_quality == DataQuality(precision=1, completeness=2, temporal=3, geographical=4, technological=5)
    assert steel.reference_exchanges == ["1"]
    coal_in = steel.exchange("3")
    assert coal_in.direction == "input" and coal_in.provider == P_COAL
    assert coal_in.data_quality == DataQuality(precision=2, completeness=2, geographical=1, technological=1)
    assert coal_in.uncertainty == Uncertainty(distribution="lognormal", geomean=600.0, geosd=1.2)
    assert steel.exchange("4").unit == "g"
    # the physical factors (the default method) go on every exchange that is not an allocated product
    assert coal_in.allocation == steel.exchange("4").allocation == {"1": 0.9, "2": 0.1}
    assert steel.exchange("1").allocation == steel.exchange("2").allocation == {}
    assert any(d.rule == "allocation-method" and "ECONOMIC" in d.message for d in diags)
    assert any(d.rule == "dq-order-assumed" for d in diags)
    assert not any(d.rule == "jsonld-v1-layout" for d in diags)
    assert bundle.flows[F_CO2].compartment == ["Elementary flows", "Emission to air"]
    method = bundle.methods[METHOD]
    assert (method.reference_unit, method.gwp_set, method.indicator) == ("kg CO2 eq", "AR6", "climate change")
    assert method.factors == [CharacterisationFactor(flow=F_CO2, value=1.0, flow_property=FP_MASS, unit="kg")]
    assert Classification(system=IMPACT_METHOD_SYSTEM, code=EF_METHOD, path=["IPCC 2021 GWP100"]) in (
        method.classifications
    )
    assert list(bundle.methods) == [METHOD]
    assert any(d.rule == "lcia-skipped" and "Acidification" in d.message for d in diags)
    model = bundle.models[MODEL]
    assert model.reference_process == P_STEEL
    assert model.links == [ModelLink(provider=P_COAL, flow=F_COAL, recipient=P_STEEL)]

    out = tmp_path / "again.zip"
    write_jsonld(bundle, out)
    assert read_jsonld(out)[0] == bundle


def test_dq_entry_order_follows_the_indicator_names_of_the_dq_system_in_the_data(tmp_path):
    names = [
        "Technological correlation",
        "Geographical correlation",
        "Temporal correlation",
        "Completeness",
        "Reliability",
    ]
    system = o.DQSystem(
        id="6a1d1d0e-0000-4000-8000-000000000081",
        name="reversed",
        indicators=[o.DQIndicator(name=n, position=i + 1) for i, n in enumerate(names)],
    )
    path = tmp_path / "dq.zip"
    _openlca_v2_zip(path, dq_system=system)

    bundle, diags = read_jsonld(path)

    assert bundle.processes[P_STEEL].data_quality == DataQuality(
        technological=1, geographical=2, temporal=3, completeness=4, precision=5
    )
    assert not any(d.rule in ("dq-order-assumed", "unknown-dq-indicator") for d in diags)


# --------------------------------------------------------------------------- broken data


def _broken_copy(tmp_path: Path, amount: object) -> Path:
    """A zip of the USLCI sample with exchanges[3].amount set to ``amount`` and exchanges[2] in furlongs."""
    folder = _copy_sample(tmp_path / "broken")
    target = folder / "processes" / f"{BROKEN_PROCESS}.json"
    raw = json.loads(target.read_text())
    raw["exchanges"][3]["amount"] = amount
    raw["exchanges"][2]["unit"] = {"@type": "Unit", "@id": "0f0f0f0f-0000-4000-8000-000000000000", "name": "furlong"}
    target.write_text(json.dumps(raw))
    out = tmp_path / "broken.zip"
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*.json")):
            z.write(p, p.relative_to(folder).as_posix())
    return out


@pytest.mark.parametrize(
    ("amount", "rule"),
    [("abc", "unparsable-number"), (math.nan, "non-finite-number"), (math.inf, "non-finite-number"),
     (True, "unparsable-number")],
)
def test_broken_amount_is_an_error_naming_file_json_path_field_and_value(tmp_path, amount, rule):
    path = _broken_copy(tmp_path, amount)

    bundle, diags = read_jsonld(path)

    found = [d for d in _errors(diags) if d.rule == rule]
    assert len(found) == 1
    d = found[0]
    assert (d.file, d.location, d.field) == (f"processes/{BROKEN_PROCESS}.json", "exchanges[3].amount", "amount")
    assert d.value == ("abc" if amount == "abc" else json.dumps(amount))
    # the rest of the process is still read; the broken exchange is left out
    process = bundle.processes[BROKEN_PROCESS]
    assert process.exchange("4") is None
    assert len(process.exchanges) == 23


def test_unknown_unit_is_an_error_naming_file_json_path_field_value_and_accepted_units(tmp_path):
    path = _broken_copy(tmp_path, "abc")

    bundle, diags = read_jsonld(path)

    found = [d for d in _errors(diags) if d.rule == "unknown-unit"]
    assert len(found) == 1
    d = found[0]
    assert (d.file, d.location, d.field, d.value) == (
        f"processes/{BROKEN_PROCESS}.json",
        "exchanges[2].unit",
        "unit",
        "furlong",
    )
    assert "kg" in d.message and "Units of mass" in d.message
    assert str(d).startswith(f"error[unknown-unit] processes/{BROKEN_PROCESS}.json:exchanges[2].unit")
    assert bundle.processes[BROKEN_PROCESS].exchange("3").unit == "furlong"


def test_missing_unit_group_is_an_error_naming_the_flow_property(tmp_path):
    folder = _copy_sample(tmp_path / "copy")
    (folder / "unit_groups" / "93a60a57-a4c8-11da-a746-0800200c9a66.json").unlink()

    bundle, diags = read_jsonld(folder)

    found = [d for d in _errors(diags) if d.rule == "unresolved-reference"]
    assert [(d.file, d.location, d.field, d.value) for d in found] == [
        (
            "flow_properties/93a60a56-a3c8-11da-a746-0800200b9a66.json",
            "unitGroup",
            "unitGroup",
            "93a60a57-a4c8-11da-a746-0800200c9a66",
        )
    ]
    assert len(bundle.unit_groups) == 5


def test_unreadable_json_and_missing_path_are_reported_not_raised(tmp_path):
    folder = _copy_sample(tmp_path / "copy")
    bad = folder / "flows" / "057a281a-908b-3adf-8f51-ed79fe5c5a9b.json"
    bad.write_text("{not json")

    bundle, diags = read_jsonld(folder)
    _, gone = read_jsonld(tmp_path / "nowhere.zip")

    assert [d.file for d in _errors(diags) if d.rule == "unparsable-file"] == [
        "flows/057a281a-908b-3adf-8f51-ed79fe5c5a9b.json"
    ]
    assert len(bundle.flows) == 93
    assert [d.rule for d in gone] == ["missing-file"]


def test_writing_over_an_existing_zip_replaces_it(uslci, tmp_path):
    bundle, _ = uslci
    out = tmp_path / "out.zip"
    write_jsonld(_zh_bundle(), out)

    write_jsonld(bundle, out)
    again, diags = read_jsonld(out)

    assert again == bundle
    assert not [d for d in diags if d.rule == "duplicate-uuid"]
    with zipfile.ZipFile(out) as z:
        assert len(z.namelist()) == len(set(z.namelist()))


@pytest.mark.parametrize("factor", ["Infinity", "NaN", -math.inf, math.nan])
def test_nan_or_infinite_conversion_factor_is_refused_naming_file_json_path_field_and_value(tmp_path, factor):
    folder = _copy_sample(tmp_path / "copy")
    energy = "93a60a57-a3c8-11da-a746-0800200c9a66"
    target = folder / "unit_groups" / f"{energy}.json"
    raw = json.loads(target.read_text())
    unit = raw["units"][1]["name"]
    raw["units"][1]["conversionFactor"] = factor
    target.write_text(json.dumps(raw))  # a float NaN / -Infinity is written as the bare JSON literal

    bundle, diags = read_jsonld(folder)

    [d] = _errors(diags)
    assert (d.rule, d.file, d.location, d.field) == (
        "non-finite-number", f"unit_groups/{energy}.json", "units[1].conversionFactor", "conversionFactor")
    assert d.value == (factor if isinstance(factor, str) else json.dumps(factor))
    assert not [w for w in diags if w.rule == "number-as-string" and w.location == d.location]
    assert unit not in [u.name for u in bundle.unit_groups[energy].units]
