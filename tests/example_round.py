"""The example round of the tests: a primary-aluminium spec and four fictitious smelters that contribute to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from protocols.contribution import footprint_from_components
from protocols.spec import Component, Footprint, Product, ReferencePeriod, RoundSpec, Weight

__all__ = ["ILCD_CO2_FOSSIL_AIR", "FirmInput", "example_firms", "example_flow_uuid", "example_spec"]

_EXAMPLE_NAMESPACE = uuid.UUID("6f1c2b1e-9a1d-5b7e-8c3a-2d4e5f607182")
#: ILCD elementary flow "carbon dioxide (fossil)", emissions to air, unspecified (EF reference package).
ILCD_CO2_FOSSIL_AIR = "08a91e70-3ddc-11dd-923d-0050c2490048"

_GWP = {  # GWP100 of the direct PFC emissions (IPCC AR5 / AR6), from lca/data/globalwarmingpotentials.csv
    "AR5": {"CF4": 6630.0, "C2F6": 11100.0},
    "AR6": {"CF4": 7380.0, "C2F6": 12400.0},
}


def example_flow_uuid(name: str) -> str:
    """A stable example UUID (``uuid5``) for a flow of the example round that has no public UUID."""
    return str(uuid.uuid5(_EXAMPLE_NAMESPACE, f"pcf-dataspace/example/{name}"))


def example_spec(
    *,
    round_id: str = "cn-primary-aluminium-2024",
    region: str = "CN",
    gwp_set: Literal["AR5", "AR6"] = "AR5",
    protocol: Literal["secagg", "paillier"] = "secagg",
    min_participants: int = 3,
    max_participants: int = 1000,
    electricity_co2_kg_per_kwh: float = 0.5703,
    deadline: datetime | None = None,
    **overrides: Any,
) -> RoundSpec:
    """A primary-aluminium round (原铝, GB/T 4754-2017 3216) for demos and tests.

    Components per t of aluminium: alumina (t), net carbon anode (t), AC electricity (kWh), and
    the direct process emissions CO2, CF4 and C2F6 (kg). The background factors are illustrative
    round numbers of a plausible order (the electricity default is the 2022 national grid average
    CO2 factor published by the Ministry of Ecology and Environment, 0.5703 kg/kWh); they are not
    an official dataset. CO2 uses the ILCD elementary-flow UUID; the other flows use stable
    example UUIDs from :func:`example_flow_uuid`.

    ``overrides`` are passed to :class:`RoundSpec` (e.g. ``statistics=[...]``, ``secagg=...``).
    """
    gwp = _GWP[gwp_set]
    alumina, anode, power = (example_flow_uuid(n) for n in ("alumina", "carbon-anode", "ac-electricity"))
    cf4, c2f6 = example_flow_uuid("cf4-air"), example_flow_uuid("c2f6-air")
    components = [
        Component(flow=alumina, name_en="Alumina", name_zh="氧化铝", direction="input", unit="t",
                  scale=10**6, bound=5.0),
        Component(flow=anode, name_en="Carbon anode, net", name_zh="预焙阳极（净耗）", direction="input",
                  unit="t", scale=10**6, bound=2.0),
        Component(flow=power, name_en="AC electricity", name_zh="交流电", direction="input", unit="kWh",
                  scale=10**3, bound=50_000.0),
        Component(flow=ILCD_CO2_FOSSIL_AIR, name_en="CO2, process", name_zh="二氧化碳（过程排放）",
                  direction="output", unit="kg", scale=10**3, bound=5_000.0),
        Component(flow=cf4, name_en="CF4", name_zh="四氟化碳", direction="output", unit="kg",
                  scale=10**6, bound=5.0),
        Component(flow=c2f6, name_en="C2F6", name_zh="六氟乙烷", direction="output", unit="kg",
                  scale=10**6, bound=1.0),
    ]  # fmt: skip
    background = {
        alumina: {"CO2": 1050.0, "CH4": 45.0, "N2O": 4.0},
        anode: {"CO2": 560.0, "CH4": 14.0, "N2O": 2.0},
        power: {"CO2": electricity_co2_kg_per_kwh, "CH4": 0.012, "N2O": 0.003},
        ILCD_CO2_FOSSIL_AIR: {"CO2": 1.0},
        cf4: {"CF4": gwp["CF4"]},
        c2f6: {"C2F6": gwp["C2F6"]},
    }
    edges = [0.0, 4000.0, 8000.0] + [float(e) for e in range(9000, 20001, 1000)] + [25000.0, 30000.0, 50000.0]
    fields: dict[str, Any] = {
        "round_id": round_id,
        "product": Product(
            name_zh="原铝（铝锭）",
            name_en="Primary aluminium, ingot",
            classification_code="3216",
            reference_flow=example_flow_uuid("primary-aluminium-ingot"),
        ),
        "region": region,
        "reference_period": ReferencePeriod(start=date(2024, 1, 1), end=date(2024, 12, 31)),
        "reference_unit": "t",
        "components": components,
        "weight": Weight(unit="t", scale=1, bound=1e7),
        "footprint": Footprint(
            gases=["CO2", "CH4", "N2O", "CF4", "C2F6"],
            gwp_set=gwp_set,
            scale=1000,
            bound=50_000.0,
            histogram_edges=edges,
        ),
        "background_factors": background,
        "min_participants": min_participants,
        "max_participants": max_participants,
        "protocol": protocol,
        "deadline": deadline or datetime(2025, 6, 30, 16, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return RoundSpec(**fields)


@dataclass(frozen=True)
class FirmInput:
    """The plaintext inputs of one (fictitious) firm, for demos and tests."""

    name: str
    values: dict[str, float]
    weight: float
    footprint_by_gas: dict[str, float]


def example_firms(spec: RoundSpec) -> list[FirmInput]:
    """Four fictitious smelters for :func:`example_spec` (values per t of aluminium).

    Their footprints follow the round's background exactly (:func:`footprint_from_components`), so
    the linearity cross-check of :mod:`protocols.stats` closes to rounding. The largest holds 44 %
    of production, below the p %-rule's 1/(2+p) = 47.6 % (:mod:`protocols.disclosure`).
    """
    table = [  # name, production t, alumina t, anode t, electricity kWh, CO2 kg, CF4 kg, C2F6 kg
        ("Smelter A", 1_200_000, 1.925, 0.415, 13_350.0, 1525.0, 0.032, 0.0035),
        ("Smelter B", 450_000, 1.930, 0.430, 13_620.0, 1570.0, 0.048, 0.0052),
        ("Smelter C", 800_000, 1.918, 0.405, 13_180.0, 1490.0, 0.025, 0.0028),
        ("Smelter D", 300_000, 1.945, 0.445, 13_900.0, 1630.0, 0.071, 0.0089),
    ]
    firms: list[FirmInput] = []
    for name, production, *amounts in table:
        values = {c.flow: float(a) for c, a in zip(spec.components, amounts, strict=True)}
        firms.append(FirmInput(str(name), values, float(production), footprint_from_components(spec, values)))
    return firms
