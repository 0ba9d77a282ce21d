"""Write the sample industry data under lca/data/samples/ (firms as templates, background processes).

Run: python scripts/make_samples.py. The numbers and their sources are in
lca/data/samples/README.md; every firm is a point inside the published ranges given there.
"""

from __future__ import annotations

from pathlib import Path

from lca.io.template import write_template
from lca.model import (
    Bundle,
    Classification,
    DataQuality,
    Exchange,
    Flow,
    FlowPropertyFactor,
    Process,
)
from lca.refdata import GHG_FLOWS, reference_bundle, stable_uuid

OUT = Path(__file__).resolve().parents[1] / "lca" / "data" / "samples"

CO2 = GHG_FLOWS["carbon dioxide (fossil)"]
CO2_BIO = GHG_FLOWS["carbon dioxide (biogenic)"]
CH4 = GHG_FLOWS["methane (fossil)"]
N2O = GHG_FLOWS["nitrous oxide"]
CF4 = GHG_FLOWS["tetrafluoromethane"]
C2F6 = GHG_FLOWS["hexafluoroethane"]

# product flows: key -> (name en, name zh, unit)
PRODUCTS: dict[str, tuple[str, str, str]] = {
    "aluminium": ("Primary aluminium ingot", "原铝锭", "t"),
    "alumina": ("Alumina", "氧化铝", "t"),
    "anode": ("Prebaked carbon anode", "预焙阳极", "t"),
    "alf3": ("Aluminium fluoride", "氟化铝", "t"),
    "el_yn": ("Electricity, AC, grid, Yunnan", "云南电网交流电", "kWh"),
    "el_xj": ("Electricity, AC, grid, Xinjiang", "新疆电网交流电", "kWh"),
    "el_nm": ("Electricity, AC, grid, Inner Mongolia", "内蒙古电网交流电", "kWh"),
    "el_gx": ("Electricity, AC, grid, Guangxi", "广西电网交流电", "kWh"),
    "el_cn": ("Electricity, AC, grid, China average", "全国电网平均交流电", "kWh"),
    "el_captive": ("Electricity, captive coal-fired power plant", "燃煤自备电厂电力", "kWh"),
    "clinker": ("Cement clinker", "水泥熟料", "t"),
    "limestone": ("Limestone", "石灰石", "t"),
    "clay": ("Clay and shale", "黏土和页岩", "t"),
    "iron_ore": ("Iron ore, for raw meal", "铁质校正原料", "t"),
    "coal": ("Raw coal", "原煤", "t"),
    "biomass": ("Biomass fuel, agricultural residues", "生物质燃料（农林废弃物）", "t"),
}


def product_uuid(key: str) -> str:
    return stable_uuid("product", PRODUCTS[key][0], "")


# Background processes: key -> (location, emissions per reference unit: flow -> kg)
# Grid factors: kg CO2 per kWh, provincial average grid emission factors (MEE / NBS, 2022 data).
BACKGROUND: dict[str, tuple[str, dict[str, float]]] = {
    "el_yn": ("CN-YN", {CO2: 0.1073}),
    "el_xj": ("CN-XJ", {CO2: 0.6231}),
    "el_nm": ("CN-NM", {CO2: 0.7025}),
    "el_gx": ("CN-GX", {CO2: 0.4044}),
    "el_cn": ("CN", {CO2: 0.5366}),
    "el_captive": ("CN", {CO2: 0.8800}),
    # per t of material (kg of gas per t)
    "alumina": ("CN", {CO2: 1170.0, CH4: 1.10}),
    "anode": ("CN", {CO2: 510.0, CH4: 0.36}),
    "alf3": ("CN", {CO2: 1980.0, N2O: 0.02}),
    "limestone": ("CN", {CO2: 3.9}),
    "clay": ("CN", {CO2: 2.8}),
    "iron_ore": ("CN", {CO2: 12.0}),
    "coal": ("CN", {CO2: 48.0, CH4: 3.9}),
    "biomass": ("CN", {CO2: 28.0}),
}

# GB/T 4754-2017 codes of the background activities (electricity: 4411 thermal/grid power).
BACKGROUND_CODES = {"alumina": "3216", "anode": "3091", "alf3": "2613", "limestone": "1011", "clay": "1019",
                    "iron_ore": "0810", "coal": "0610", "biomass": "0519"}

# Aluminium smelters, per t of aluminium (2024). Production in t/yr.
ALUMINIUM_FIRMS = [
    # name, zh, location, production, alumina t, anode t, AlF3 t, electricity key, kWh, direct CO2 kg, CF4 kg, C2F6 kg
    ("Dianxi Hydro Aluminium", "滇西水电铝业", "CN-YN", 600_000, 1.921, 0.412, 0.016, "el_yn", 13_280, 1_498, 0.021, 0.0021),
    ("Tianshan Aluminium Smelting", "天山铝冶炼", "CN-XJ", 800_000, 1.930, 0.425, 0.019, "el_xj", 13_520, 1_545, 0.046, 0.0046),
    ("Binhai Aluminium (captive power)", "滨海铝业（自备电厂）", "CN-SD", 700_000, 1.927, 0.421, 0.018, "el_captive", 13_610, 1_531, 0.052, 0.0052),
    ("Wenshan Green Aluminium", "文山绿色铝业", "CN-YN", 400_000, 1.918, 0.409, 0.015, "el_yn", 13_240, 1_489, 0.018, 0.0018),
    ("Baotou Northern Aluminium", "包头北方铝业", "CN-NM", 500_000, 1.934, 0.428, 0.021, "el_nm", 13_560, 1_556, 0.058, 0.0058),
    ("Baise Aluminium", "百色铝业", "CN-GX", 300_000, 1.925, 0.418, 0.017, "el_gx", 13_430, 1_520, 0.034, 0.0034),
]

# Clinker kilns (new dry process, 5-stage preheater), per t clinker (2024). Production in t/yr.
CEMENT_FIRMS = [
    # name, zh, location, production, limestone t, clay t, iron ore t, coal t, biomass t, kWh, CO2 fossil kg, CO2 biogenic kg
    # Every kiln co-fires some agricultural residues (0.4-3 % of fuel mass), so every component of the
    # round is reported by every firm: a component only one firm reports would expose that firm.
    # Biogenic CO2: ~15 GJ/t biomass x ~91 kg CO2/GJ = ~1.37 t CO2 per t biomass.
    ("Wanjiang Cement", "皖江水泥", "CN-AH", 4_600_000, 1.32, 0.18, 0.030, 0.136, 0.008, 56.0, 806.0, 10.9),
    ("Qilu Cement", "齐鲁水泥", "CN-SD", 3_100_000, 1.30, 0.20, 0.028, 0.141, 0.005, 60.5, 822.0, 6.8),
    ("Lijiang Cement (biomass co-firing)", "漓江水泥（生物质协同）", "CN-GX", 2_400_000, 1.31, 0.19, 0.031, 0.121, 0.030, 58.0, 784.0, 41.0),
    ("Minjiang Cement", "岷江水泥", "CN-SC", 2_000_000, 1.33, 0.17, 0.029, 0.132, 0.012, 53.5, 798.0, 16.4),
    ("Zhongyuan Cement", "中原水泥", "CN-HA", 3_600_000, 1.29, 0.21, 0.032, 0.145, 0.004, 62.0, 831.0, 5.5),
]


def _flow(key: str) -> Flow:
    en, zh, unit = PRODUCTS[key]
    from lca.refdata import flow_property_for_unit

    prop = flow_property_for_unit(unit)
    assert prop is not None
    return Flow(uuid=product_uuid(key), name={"en": en, "zh": zh}, flow_type="product",
                properties=[FlowPropertyFactor(flow_property=prop, factor=1.0, reference=True)])


def _process(uuid: str, name: tuple[str, str], location: str, code: str, ref_key: str,
             inputs: list[tuple[str, float]], emissions: dict[str, float], production: float | None,
             dq: DataQuality, description: tuple[str, str]) -> tuple[Process, Bundle]:
    bundle = reference_bundle()
    bundle.add(_flow(ref_key))
    exchanges = [Exchange(internal_id="1", flow=product_uuid(ref_key), direction="output", amount=1.0,
                          unit=PRODUCTS[ref_key][2], data_source="primary")]
    for key, amount in inputs:
        bundle.add(_flow(key))
        exchanges.append(Exchange(internal_id=str(len(exchanges) + 1), flow=product_uuid(key), direction="input",
                                  amount=amount, unit=PRODUCTS[key][2], data_source="primary"))
    for flow, kg in emissions.items():
        exchanges.append(Exchange(internal_id=str(len(exchanges) + 1), flow=flow, direction="output", amount=kg,
                                  unit="kg", data_source="primary"))
    proc = Process(uuid=uuid, name={"en": name[0], "zh": name[1]},
                   description={"en": description[0], "zh": description[1]},
                   classifications=[Classification(system="GB/T 4754-2017", code=code)], location=location,
                   reference_year=2024, valid_until=2025, reference_exchanges=["1"], exchanges=exchanges,
                   data_quality=dq, annual_production=production)
    return proc, bundle


def main() -> None:
    bg_dir = OUT / "background"
    for d in (bg_dir, OUT / "aluminium", OUT / "cement"):
        d.mkdir(parents=True, exist_ok=True)
        for f in d.glob("*.csv"):
            f.unlink()
    for key, (location, emissions) in BACKGROUND.items():
        en, zh, _unit = PRODUCTS[key]
        proc, bundle = _process(stable_uuid("background", en, location), (f"{en} (background)", f"{zh}（背景数据）"),
                                location, BACKGROUND_CODES.get(key, "4411"), key, [], emissions, None,
                                DataQuality(technological=2, geographical=2, temporal=2, completeness=3,
                                            precision=3),
                                ("Background factor for aggregation rounds, cradle-to-gate.", "聚合轮次所用背景因子，摇篮到大门。"))
        write_template(bg_dir / f"{key}.csv", proc, bundle)
    for i, (en, zh, loc, prod, alumina, anode, alf3, el, kwh, co2, cf4, c2f6) in enumerate(ALUMINIUM_FIRMS, 1):
        proc, bundle = _process(
            stable_uuid("firm", "aluminium", en), (f"Primary aluminium ingot, electrolysis, {en}", f"原铝锭（电解），{zh}"),
            loc, "3216", "aluminium", [("alumina", alumina), ("anode", anode), ("alf3", alf3), (el, kwh)],
            {CO2: co2, CF4: cf4, C2F6: c2f6}, prod,
            DataQuality(technological=1, geographical=1, temporal=1, completeness=2, precision=2),
            ("Prebaked-anode cells; gate-to-gate plant data for 2024.", "预焙阳极电解槽；2024年厂内数据（大门到大门）。"))
        write_template(OUT / "aluminium" / f"firm_{i}.csv", proc, bundle)
    for i, (en, zh, loc, prod, lime, clay, iron, coal, bio, kwh, co2, co2b) in enumerate(CEMENT_FIRMS, 1):
        emissions = {CO2: co2}
        if co2b:
            emissions[CO2_BIO] = co2b
        inputs = [("limestone", lime), ("clay", clay), ("iron_ore", iron), ("coal", coal), ("el_cn", kwh)]
        if bio:
            inputs.insert(4, ("biomass", bio))
        proc, bundle = _process(
            stable_uuid("firm", "cement", en), (f"Cement clinker, dry process kiln, {en}", f"水泥熟料（新型干法），{zh}"),
            loc, "3011", "clinker", inputs, emissions, prod,
            DataQuality(technological=1, geographical=2, temporal=1, completeness=2, precision=2),
            ("New dry-process kiln with 5-stage preheater; plant data for 2024.", "新型干法窑（五级预热器）；2024年厂内数据。"))
        write_template(OUT / "cement" / f"firm_{i}.csv", proc, bundle)


if __name__ == "__main__":
    main()
