"""Unit conversion through unit groups and flow property factors."""

from __future__ import annotations

from lca.errors import UnitError
from lca.model import Bundle, Exchange, Flow

__all__ = ["convert", "reference_unit", "to_reference_amount", "unit_factor"]


def unit_factor(bundle: Bundle, flow_property: str, unit: str) -> float:
    """How many reference units of ``flow_property``'s unit group one ``unit`` is.

    Raises
    ------
    UnitError
        When the flow property or its unit group is unknown, or the unit is not in the group.
    """
    fp = bundle.flow_properties.get(flow_property)
    if fp is None:
        raise UnitError(f"flow property {flow_property} is unknown")
    group = bundle.unit_groups.get(fp.unit_group)
    if group is None:
        raise UnitError(f"unit group {fp.unit_group} of flow property {fp.display_name()} is unknown")
    factor = group.factor(unit)
    if factor is None:
        accepted = ", ".join(u.name for u in group.units)
        raise UnitError(
            f"unit {unit!r} is not in unit group {group.display_name()!r} "
            f"(flow property {fp.display_name()!r}); accepted: {accepted}"
        )
    return factor


def reference_unit(bundle: Bundle, flow: Flow) -> str:
    """The reference unit of the flow's reference flow property (``kg``, ``MJ``, ...)."""
    prop = flow.reference_property()
    if prop is None or prop not in bundle.flow_properties:
        raise UnitError(f"flow {flow.uuid} ({flow.display_name()}) has no known reference flow property")
    group = bundle.unit_groups.get(bundle.flow_properties[prop].unit_group)
    if group is None:
        raise UnitError(f"flow {flow.uuid}: unit group of its reference flow property is unknown")
    return group.reference_unit


def convert(bundle: Bundle, flow: Flow, amount: float, unit: str, flow_property: str | None = None) -> float:
    """``amount`` of ``flow`` in ``unit`` of ``flow_property``, in the flow's reference unit.

    The flow property factor says how much of a property one reference-property unit of the
    flow carries (ILCD ``meanValue``), so an amount of property P in unit u is
    ``amount * unit_factor(P, u) / factor(P) * factor(reference)``.
    """
    ref_prop = flow.reference_property()
    if ref_prop is None:
        raise UnitError(f"flow {flow.uuid} ({flow.display_name()}) has no flow property")
    prop = flow_property or ref_prop
    factors = {p.flow_property: p.factor for p in flow.properties}
    if prop not in factors:
        if flow_property is not None:
            raise UnitError(
                f"flow {flow.uuid} ({flow.display_name()}) has no flow property {prop}; "
                f"it has {', '.join(factors) or 'none'}"
            )
        factors[prop] = 1.0
    if factors[prop] == 0:
        raise UnitError(f"flow {flow.uuid}: flow property {prop} has a zero conversion factor")
    return amount * unit_factor(bundle, prop, unit) / factors[prop] * factors.get(ref_prop, 1.0)


def to_reference_amount(bundle: Bundle, exchange: Exchange) -> float:
    """The exchange amount in its flow's reference unit."""
    flow = bundle.flows.get(exchange.flow)
    if flow is None:
        raise UnitError(f"exchange {exchange.internal_id}: flow {exchange.flow} is unknown")
    # An exchange whose unit is in the flow's reference group but that names no property
    # (common in templates) is read in the reference property.
    return convert(bundle, flow, exchange.amount, exchange.unit, exchange.flow_property)
