"""One process checked for use as columns of ``A``: its reference exchanges, net outputs and allocation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lca.errors import UnitError
from lca.model import Bundle, Exchange, Flow, Process
from lca.solver.signs import _supply_sign
from lca.solver.system import _label
from lca.units import reference_unit, to_reference_amount

__all__: list[str] = []  # package-internal helpers


@dataclass
class _Problem:
    process: str
    kind: Literal["no-reference", "ill-posed"]
    message: str


@dataclass
class _Spec:
    """A validated process: its reference exchanges, their flows and net outputs."""

    refs: list[tuple[str, str, float]]
    """(internal_id, flow uuid, net supply = diagonal) per reference exchange."""
    weights: dict[str, dict[str, float]]
    """internal_id of a non-reference exchange -> reference id -> allocation factor."""


def _ref_unit(bundle: Bundle, flow: Flow) -> str:
    try:
        return reference_unit(bundle, flow)
    except UnitError:
        return ""


def _amount(bundle: Bundle, proc: Process, x: Exchange) -> float:
    try:
        return to_reference_amount(bundle, x)
    except UnitError as exc:
        raise UnitError(f"process {_label(bundle, proc.uuid)}, exchange {x.internal_id}: {exc}") from exc


def _validate(bundle: Bundle, proc: Process) -> _Spec | _Problem:
    """Check one process can make columns (see the ill-posed systems of :mod:`lca.solver.build`)."""
    who = _label(bundle, proc.uuid)
    if not proc.reference_exchanges:
        return _Problem(proc.uuid, "no-reference", f"process {who} has no reference exchange")
    refs: list[tuple[Exchange, Flow]] = []
    for rid in proc.reference_exchanges:
        x = proc.exchange(rid)
        if x is None:
            ids = ", ".join(e.internal_id for e in proc.exchanges)
            return _Problem(
                proc.uuid, "no-reference",
                f"process {who}: reference exchange {rid!r} is not among its exchanges ({ids})",
            )
        flow = bundle.flows.get(x.flow)
        if flow is None:
            return _Problem(
                proc.uuid, "no-reference",
                f"process {who}: reference exchange {rid!r} names flow {x.flow}, which is not in the bundle",
            )
        if flow.flow_type == "elementary":
            return _Problem(
                proc.uuid, "no-reference",
                f"process {who} names elementary flow {flow.uuid} ({flow.display_name()}) as its "
                f"reference flow (exchange {rid!r}); a reference flow must be a product or waste flow",
            )
        refs.append((x, flow))
    if len({x.flow for x, _ in refs}) < len(refs):
        return _Problem(proc.uuid, "no-reference", f"process {who} names the same flow in two reference exchanges")
    ref_ids = {x.internal_id for x, _ in refs}
    weights: dict[str, dict[str, float]] = {}
    if len(refs) > 1:
        missing = [
            x.internal_id for x in proc.exchanges
            if x.internal_id not in ref_ids and x.amount != 0 and not x.allocation
        ]
        if missing:
            return _Problem(
                proc.uuid, "no-reference",
                f"process {who} has {len(refs)} reference flows but exchange(s) {', '.join(missing[:10])} "
                "carry no allocation factors; give exchange.allocation keyed by reference exchange id",
            )
        for x in proc.exchanges:
            if x.internal_id not in ref_ids:
                weights[x.internal_id] = {rid: float(x.allocation.get(rid, 0.0)) for rid in ref_ids}
    out: list[tuple[str, str, float]] = []
    problems: list[str] = []
    for ref, flow in refs:
        supplied = consumed = 0.0
        for x in proc.exchanges:
            if x.flow != ref.flow or x.amount == 0:
                continue
            if x.internal_id in ref_ids and x is not ref:
                continue
            w = 1.0 if x is ref else weights.get(x.internal_id, {}).get(ref.internal_id, 1.0)
            signed = _supply_sign(flow, x.direction) * _amount(bundle, proc, x) * w
            if signed >= 0:
                supplied += signed
            else:
                consumed -= signed
        net = supplied - consumed
        if net <= 0:
            unit = _ref_unit(bundle, flow)
            what = "an input" if flow.flow_type == "product" and ref.direction == "input" else (
                "an output" if flow.flow_type == "waste" and ref.direction == "output" else None
            )
            hint = (
                f"; its reference exchange {ref.internal_id!r} is {what} of {flow.flow_type} flow "
                f"{flow.display_name()!r} (a product's reference must be an output, a waste's an input)"
                if what else ""
            )
            problems.append(
                f"process {who}: net output of its reference flow {flow.display_name()!r} is {net:g} {unit} "
                f"(supplies {supplied:g}, consumes {consumed:g}){hint}"
            )
        out.append((ref.internal_id, ref.flow, net))
    if problems:
        return _Problem(proc.uuid, "ill-posed", "; ".join(problems))
    return _Spec(refs=out, weights=weights)
