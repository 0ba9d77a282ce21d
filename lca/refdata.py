"""Reference data every node starts with: unit groups, flow properties and greenhouse-gas flows.

UUIDs are those of the ILCD / EF reference data (as shipped in the TianGong database) where
one exists, so that template data links to imported ILCD data; the other greenhouse gases get
stable name-based UUIDs (uuid5 in :data:`NAMESPACE`).
"""

from __future__ import annotations

import uuid

from lca.model import (
    Bundle,
    Classification,
    Flow,
    FlowProperty,
    FlowPropertyFactor,
    Unit,
    UnitGroup,
)

__all__ = [
    "ENERGY",
    "GHG_FLOWS",
    "ITEMS",
    "MASS",
    "MASS_DISTANCE",
    "NAMESPACE",
    "VOLUME",
    "flow_property_for_unit",
    "reference_bundle",
    "stable_uuid",
]

NAMESPACE = uuid.UUID("6d1c3d2e-8f0a-4a55-9a43-2f1a8b5c7e10")


def stable_uuid(*parts: str) -> str:
    """A UUID derived from names, the same on every machine."""
    return str(uuid.uuid5(NAMESPACE, "/".join(p.strip().lower() for p in parts)))


# (flow property uuid, name en, name zh, unit group uuid, unit group name en, units, reference unit)
_GROUPS: list[tuple[str, str, str, str, str, list[tuple[str, float]], str]] = [
    (
        "93a60a56-a3c8-11da-a746-0800200b9a66", "Mass", "质量",
        "93a60a57-a4c8-11da-a746-0800200c9a66", "Units of mass",
        [("kg", 1.0), ("t", 1000.0), ("Mg", 1000.0), ("kt", 1.0e6), ("g", 1.0e-3), ("mg", 1.0e-6),
         ("lb av", 0.45359237)],
        "kg",
    ),
    (
        "93a60a56-a3c8-11da-a746-0800200c9a66", "Net calorific value", "低位发热量",
        "93a60a57-a3c8-11da-a746-0800200c9a66", "Units of energy",
        [("MJ", 1.0), ("kJ", 1.0e-3), ("GJ", 1.0e3), ("TJ", 1.0e6), ("Wh", 3.6e-3), ("kWh", 3.6),
         ("MWh", 3600.0), ("GWh", 3.6e6)],
        "MJ",
    ),
    (
        "93a60a56-a3c8-22da-a746-0800200c9a66", "Volume", "体积",
        "93a60a57-a3c8-12da-a746-0800200c9a66", "Units of volume",
        [("m3", 1.0), ("l", 1.0e-3), ("dm3", 1.0e-3), ("cm3", 1.0e-6)],
        "m3",
    ),
    (
        "01846770-4cfe-4a25-8ad9-919d8d378345", "Number of items", "数量",
        "5beb6eed-33a9-47b8-9ede-1dfe8f679159", "Units of items",
        [("Item(s)", 1.0), ("pcs", 1.0)],
        "Item(s)",
    ),
    (
        "838aaa20-0117-11db-92e3-0800200c9a66", "Goods transport (mass*distance)", "货物运输（质量×距离）",
        "838aaa21-0117-11db-92e3-0800200c9a66", "Units of mass*length",
        [("t*km", 1.0), ("kg*km", 1.0e-3)],
        "t*km",
    ),
]

MASS, ENERGY, VOLUME, ITEMS, MASS_DISTANCE = (g[0] for g in _GROUPS)

# (uuid or None, name en, name zh, CAS, formula, compartment)
_AIR = ["Emissions", "Emissions to air", "Emissions to air, unspecified"]
_GHG: list[tuple[str | None, str, str, str, str]] = [
    ("08a91e70-3ddc-11dd-923d-0050c2490048", "carbon dioxide (fossil)", "二氧化碳（化石）", "124-38-9", "CO2"),
    ("08a91e70-3ddc-11dd-9240-0050c2490048", "carbon dioxide (biogenic)", "二氧化碳（生物源）", "124-38-9", "CO2"),
    ("fe0acd60-3ddc-11dd-a8e6-0050c2490048", "methane (fossil)", "甲烷（化石）", "74-82-8", "CH4"),
    ("fe0acd60-3ddc-11dd-a8e8-0050c2490048", "methane (biogenic)", "甲烷（生物源）", "74-82-8", "CH4"),
    ("08a91e70-3ddc-11dd-94c3-0050c2490048", "nitrous oxide", "氧化亚氮", "10024-97-2", "N2O"),
    (None, "sulfur hexafluoride", "六氟化硫", "2551-62-4", "SF6"),
    (None, "nitrogen trifluoride", "三氟化氮", "7783-54-2", "NF3"),
    (None, "tetrafluoromethane", "四氟化碳", "75-73-0", "CF4"),
    (None, "hexafluoroethane", "六氟乙烷", "76-16-4", "C2F6"),
    (None, "HFC-134a", "HFC-134a（1,1,1,2-四氟乙烷）", "811-97-2", "CH2FCF3"),
]

#: formula or name -> flow UUID of the reference greenhouse-gas flows (emissions to air).
GHG_FLOWS: dict[str, str] = {}
for _uuid, _en, _zh, _cas, _formula in _GHG:
    GHG_FLOWS[_en] = _uuid or stable_uuid("elementary", _en, "air")


def flow_property_for_unit(unit: str) -> str | None:
    """The reference flow property whose unit group has ``unit`` (``t`` -> Mass)."""
    for fp, *_rest, units, _ref in _GROUPS:
        if any(name == unit for name, _ in units):
            return fp
    return None


def reference_bundle() -> Bundle:
    """Unit groups, flow properties and greenhouse-gas elementary flows, bilingual."""
    bundle = Bundle()
    for fp_uuid, fp_en, fp_zh, ug_uuid, ug_en, units, ref in _GROUPS:
        bundle.add(
            UnitGroup(
                uuid=ug_uuid,
                name={"en": ug_en},
                units=[Unit(name=n, factor=f) for n, f in units],
                reference_unit=ref,
            )
        )
        bundle.add(FlowProperty(uuid=fp_uuid, name={"en": fp_en, "zh": fp_zh}, unit_group=ug_uuid))
    for _uuid, en, zh, cas, formula in _GHG:
        bundle.add(
            Flow(
                uuid=GHG_FLOWS[en],
                name={"en": en, "zh": zh},
                flow_type="elementary",
                cas=cas,
                formula=formula,
                compartment=list(_AIR),
                classifications=[Classification(system="ILCD elementary flow categorization", path=list(_AIR))],
                properties=[FlowPropertyFactor(flow_property=MASS, factor=1.0, reference=True)],
            )
        )
    return bundle
