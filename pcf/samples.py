"""The bundled sample industries (aluminium, cement) and the round specs the demo runs on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from lca.io.template import read_template
from lca.model import Bundle, Process
from lca.refdata import reference_bundle
from protocols.spec import (
    Component,
    Footprint,
    PaillierParams,
    Product,
    ReferencePeriod,
    RoundSpec,
    Weight,
)

__all__ = [
    "ELECTRICITY_CN",
    "INDUSTRIES",
    "SAMPLE_USCC",
    "Industry",
    "MergedComponent",
    "electricity_component",
    "firm_uscc",
    "industry",
    "load_bundle",
    "sample_spec",
    "samples_dir",
    "spec_for_processes",
]

#: The national average grid flow of the samples (``background/el_cn.csv``): the flow of the merged
#: electricity component, whose background factor (the national average) is therefore only nominal.
ELECTRICITY_CN = "d2484efd-1efc-57de-8b3a-013a15479301"

# Components that every firm of an industry reports, with fixed-point scale and plausibility bound.
# key: sample folder -> (product key, code, zh, en, footprint bound, histogram edges, [(flow name, unit, scale, bound)])


@dataclass(frozen=True)
class Industry:
    key: str
    name_en: str
    name_zh: str
    code: str
    footprint_bound: float
    histogram_edges: tuple[float, ...]
    scales: dict[str, tuple[int, float]]
    """Unit -> (fixed-point scale, plausibility bound per reference unit) for the components."""
    merge_electricity: bool = False
    """Report every electricity flow (each grid, captive plants) as one component (see :func:`electricity_component`)."""


@dataclass(frozen=True)
class MergedComponent:
    """Flows a round reports as one component: ``flow`` and its ``aliases`` (``Component.aliases``)."""

    flow: str
    """The component's flow; its provider in the bundle gives the round's (nominal) background factor."""
    aliases: tuple[str, ...]
    name_en: str
    name_zh: str
    unit: str


INDUSTRIES: dict[str, Industry] = {
    "aluminium": Industry(
        key="aluminium", name_en="Primary aluminium ingot", name_zh="原铝锭", code="3216",
        footprint_bound=40_000.0,
        histogram_edges=(0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 14000.0, 16000.0, 18000.0,
                         20000.0, 25000.0, 40000.0),
        scales={"t": (10**6, 10.0), "kWh": (10**2, 30_000.0), "kg": (10**4, 5_000.0)},
        merge_electricity=True,
    ),
    "cement": Industry(
        key="cement", name_en="Cement clinker", name_zh="水泥熟料", code="3011",
        footprint_bound=3_000.0,
        histogram_edges=(0.0, 700.0, 750.0, 800.0, 825.0, 850.0, 875.0, 900.0, 950.0, 1000.0, 1200.0, 3000.0),
        scales={"t": (10**6, 5.0), "kWh": (10**3, 500.0), "kg": (10**3, 3_000.0)},
    ),
}


def industry(key: str) -> Industry:
    if key not in INDUSTRIES:
        raise KeyError(f"unknown sample industry {key!r}; accepted: {', '.join(INDUSTRIES)}")
    return INDUSTRIES[key]


def samples_dir() -> Path:
    with resources.as_file(resources.files("lca") / "data" / "samples") as p:
        return Path(p)


def firm_files(key: str) -> list[Path]:
    return sorted((samples_dir() / key).glob("firm_*.csv"), key=lambda p: int(p.stem.split("_")[1]))


def background_files() -> list[Path]:
    return sorted((samples_dir() / "background").glob("*.csv"))


SAMPLE_USCC: dict[str, tuple[str, ...]] = {
    "aluminium": ("91530100MAPCFAL14J", "91530100MAPCFAL22D", "91530100MAPCFAL308", "91530100MAPCFAL495",
                  "91530100MAPCFAL570", "91530100MAPCFAL65T"),
    "cement": ("91340100MAPCFCE15Q", "91340100MAPCFCE23K", "91340100MAPCFCE31E", "91340100MAPCFCE4X6",
               "91340100MAPCFCE586"),
}
"""Fictional Unified Social Credit Codes of the sample firms, in ``firm_files`` order: enterprises (``91``)
registered in Kunming (530100) and Hefei (340100), organisation codes ``MAPCF<industry><n>``, both check
characters computed per GB 11714 and GB 32100-2015 (``protocols.certificates``), so the demo's
membership authority certifies them."""


def firm_uscc(key: str, index: int) -> str:
    """The sample USCC of firm ``index`` (0-based, ``firm_files`` order) of an industry."""
    return SAMPLE_USCC[industry(key).key][index]


def load_bundle(paths: list[Path]) -> Bundle:
    """Reference data plus the given template files, as one bundle (no store)."""
    bundle = reference_bundle()
    for path in paths:
        result = read_template(path, bundle)
        errors = [d for d in result.diagnostics if d.severity == "error"]
        if errors:
            raise ValueError(f"sample {path}: {errors[0]}")
        bundle.merge(result.bundle)
    return bundle


def electricity_component(bundle: Bundle) -> MergedComponent:
    """One component for every electricity flow the sample background supplies, on the national grid flow.

    Each smelter buys from its own provincial grid (or a captive plant), so a component per grid
    flow would hold one firm's values alone. Merged, every firm reports its electricity in one
    component; the aliases are every product the background measures in kWh, not only the
    participants' (the spec is public and must not tell which grids the participants use).
    """
    flows = sorted(
        ref.flow
        for p in bundle.processes.values()
        if p.annual_production is None
        and (ref := p.reference_exchange()) is not None
        and ref.direction == "output"
        and ref.unit == "kWh"
    )
    if ELECTRICITY_CN not in flows:
        raise ValueError(f"the sample background has no national grid electricity flow {ELECTRICITY_CN}")
    return MergedComponent(
        flow=ELECTRICITY_CN,
        aliases=tuple(f for f in flows if f != ELECTRICITY_CN),
        name_en="Electricity, AC, grid and captive",
        name_zh="交流电（电网及自备电厂）",
        unit="kWh",
    )


def sample_spec(
    key: str = "aluminium",
    *,
    round_id: str | None = None,
    region: str = "CN",
    protocol: Literal["secagg", "paillier"] = "secagg",
    gwp_set: Literal["AR5", "AR6"] = "AR5",
    n_firms: int | None = None,
    paillier_key_bits: int = 2048,
    paillier_key_id: str | None = None,
    min_participants: int = 3,
    max_participants: int = 200,
    p_percent: float | None = None,
    deadline: datetime | None = None,
) -> RoundSpec:
    """The round spec of a sample industry: its components are every flow its firms report.

    Background factors are the cradle-to-gate footprints per gas of the shared background
    processes (computed here with the inventory solver), so the published factor recomputed from
    the aggregated inventory equals the weighted mean of the firms' own footprints. In the
    aluminium round every electricity flow is one component (:func:`electricity_component`); its
    background factor is the national grid average, nominal only, so the factor's cross-check
    leaves that component out as having a firm-specific background.
    """
    ind = industry(key)
    bundle = load_bundle(background_files() + firm_files(key)[: n_firms or None])
    firms = [p for p in bundle.processes.values() if p.annual_production is not None]
    merged = [electricity_component(bundle)] if ind.merge_electricity else []
    return spec_for_processes(
        bundle, firms, name_en=ind.name_en, name_zh=ind.name_zh, code=ind.code,
        round_id=round_id or f"{region.lower()}-{key}-2024", region=region, scales=ind.scales,
        footprint_bound=ind.footprint_bound, histogram_edges=list(ind.histogram_edges), protocol=protocol,
        gwp_set=gwp_set, paillier_key_bits=paillier_key_bits, paillier_key_id=paillier_key_id,
        min_participants=min_participants,
        max_participants=max_participants, p_percent=p_percent, deadline=deadline,
        merged=merged)


def spec_for_processes(
    bundle: Bundle,
    firms: list[Process],
    *,
    name_en: str,
    name_zh: str,
    code: str,
    round_id: str,
    region: str = "CN",
    reference_unit: str = "t",
    scales: dict[str, tuple[int, float]] | None = None,
    footprint_bound: float = 1e5,
    production_bound: float = 2e7,
    histogram_edges: list[float] | None = None,
    protocol: Literal["secagg", "paillier"] = "secagg",
    gwp_set: Literal["AR5", "AR6"] = "AR5",
    paillier_key_bits: int = 2048,
    paillier_key_id: str | None = None,
    min_participants: int = 3,
    max_participants: int = 200,
    p_percent: float | None = None,
    deadline: datetime | None = None,
    merged: Sequence[MergedComponent] = (),
) -> RoundSpec:
    """A round whose components are every flow the given firm processes report (except the reference).

    Background factors of product inputs are the cradle-to-gate footprints per gas of their
    providers in ``bundle`` (the inventory solver), per the component's unit; elementary flows
    get their GWP. So the factor recomputed from the aggregated inventory equals the weighted
    mean of the firms' own footprints (when every input has a provider).

    ``merged`` gathers flows into one component each: an exchange of a merged flow or of one
    of its aliases makes that component (with the aliases in the spec), valued in the
    background by the merged flow's provider.
    """
    from lca.gwp import characterisation_method
    from lca.solver import footprint
    from lca.units import convert

    scales = scales or {}
    product_flow = firms[0].reference_exchange()
    assert product_flow is not None
    method = characterisation_method(bundle, gwp_set)
    factors = {f.flow: f for f in method.factors}
    firm_ids = {f.uuid for f in firms}
    providers: dict[str, Process] = {}
    for p in sorted(bundle.processes.values(), key=lambda p: p.uuid):  # the solver's rule: smallest UUID
        ref = p.reference_exchange()
        if p.uuid not in firm_ids and ref is not None and ref.direction == "output":
            providers.setdefault(ref.flow, p)
    merged_by_flow = {f: m for m in merged for f in (m.flow, *m.aliases)}
    components: dict[tuple[str, str], Component] = {}
    background: dict[str, dict[str, float]] = {}
    for p in firms:
        for ex in p.exchanges:
            m = merged_by_flow.get(ex.flow)
            uuid, unit = (m.flow, m.unit) if m is not None else (ex.flow, ex.unit)
            if ex.internal_id in p.reference_exchanges or (uuid, ex.direction) in components:
                continue
            flow = bundle.flows[uuid]
            scale, bound = scales.get(unit, (10**3, 1e6))
            components[(uuid, ex.direction)] = Component(
                flow=uuid, name_en=(m.name_en if m else flow.name.get("en") or uuid)[:120],
                name_zh=(m.name_zh if m else flow.name.get("zh") or flow.name.get("en") or uuid)[:120],
                direction=ex.direction, unit=unit, scale=scale, bound=bound,
                aliases=list(m.aliases) if m else [])
            if flow.flow_type == "elementary":
                f = factors.get(uuid)
                if f is not None:
                    background[uuid] = {f.species or flow.formula or "CO2": f.value}
            elif uuid in providers:
                fp = footprint(bundle, providers[uuid].uuid, method=gwp_set).to_dict()
                per = convert(bundle, flow, 1.0, unit)  # the flow's reference units in one component unit
                background[uuid] = {gas: v * per for gas, v in fp["by_gas"].items() if v}
    gases = sorted({g for by_gas in background.values() for g in by_gas}, key=lambda g: (g != "CO2", g)) or ["CO2"]
    ordered = sorted(components.values(), key=lambda c: (c.direction != "input", c.unit != "t", c.name_en))
    edges = histogram_edges or [0.0, footprint_bound / 8, footprint_bound / 4, footprint_bound / 2, footprint_bound]
    return RoundSpec(
        round_id=round_id,
        product=Product(name_zh=name_zh, name_en=name_en, classification_code=code,
                        reference_flow=product_flow.flow),
        region=region,
        reference_period=ReferencePeriod(start=date(2024, 1, 1), end=date(2024, 12, 31)),
        reference_unit=reference_unit,
        components=ordered,
        weight=Weight(unit="t", scale=1, bound=production_bound),
        footprint=Footprint(gases=gases, gwp_set=gwp_set, scale=100, bound=footprint_bound,
                            histogram_edges=edges),
        background_factors=background,
        min_participants=min_participants,
        max_participants=max_participants,
        p_percent=p_percent,
        protocol=protocol,
        paillier=PaillierParams(key_bits=paillier_key_bits, key_id=paillier_key_id),
        deadline=deadline or datetime(2030, 12, 31, 16, 0, tzinfo=UTC),
    )
