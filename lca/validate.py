"""Validation of imported datasets: the rules every import runs before anything is written.

Rules (:class:`lca.io.diagnostics.Rule`), errors unless marked as warnings:

* ``unknown-unit``: an exchange unit is not in the unit group of its flow property, or a flow
  property / unit group is missing, so the amount cannot be converted.
* ``missing-flow``: an exchange names a flow that is neither in the import nor in the store.
* ``non-finite-number``: NaN or infinite amounts (the readers refuse them already; this catches
  bundles built in code).
* ``negative-amount``: a negative amount where it is not allowed (the reference exchange always;
  any exchange in enterprise templates, where direction carries the sign). In ILCD / JSON-LD
  data negative amounts of other exchanges are legal (avoided products) and only warned about.
* ``missing-reference-flow``: a process without a quantitative reference, or whose reference
  names no exchange, or whose reference amount is zero.
* ``duplicate-uuid``: two datasets of one import share a UUID but differ in content.
* ``mass-balance`` (warning): the mass of inputs and outputs differ by more than 1 %; the
  message gives both sums and the imbalance.
* ``anomaly`` (warning): against the previous stored version of the same process, an exchange
  per reference unit moved by more than 30 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lca.errors import UnitError
from lca.io.diagnostics import Diagnostic, Rule, SourceMap
from lca.model import Bundle, Process
from lca.refdata import MASS
from lca.units import convert, unit_factor

__all__ = ["ANOMALY_THRESHOLD", "MASS_BALANCE_TOLERANCE", "normalised_exchanges", "validate_bundle"]

ANOMALY_THRESHOLD = 0.30
MASS_BALANCE_TOLERANCE = 0.01


def _where(sources: SourceMap, process: Process, iid: str | None) -> tuple[str | None, str]:
    if iid is not None and (process.uuid, iid) in sources.exchanges:
        return sources.exchanges[(process.uuid, iid)]
    file, path = sources.datasets.get(process.uuid, (None, f"process {process.uuid}"))
    if iid is not None:
        return file, f"{path} exchange {iid}"
    return file, path


def normalised_exchanges(process: Process, view: Bundle) -> dict[tuple[str, str], float]:
    """Exchange amounts per one reference unit, in each flow's reference unit, keyed by (flow, direction).

    Exchanges that cannot be converted are skipped (validation reports them).
    """
    ref = process.reference_exchange()
    if ref is None or ref.flow not in view.flows:
        return {}
    try:
        ref_amount = convert(view, view.flows[ref.flow], ref.amount, ref.unit, ref.flow_property)
    except UnitError:
        return {}
    if ref_amount == 0:
        return {}
    out: dict[tuple[str, str], float] = {}
    for ex in process.exchanges:
        flow = view.flows.get(ex.flow)
        if flow is None:
            continue
        try:
            value = convert(view, flow, ex.amount, ex.unit, ex.flow_property) / ref_amount
        except UnitError:
            continue
        key = (ex.flow, ex.direction)
        out[key] = out.get(key, 0.0) + value
    return out


def _mass_kg(view: Bundle, flow_uuid: str, amount: float, unit: str, flow_property: str | None) -> float | None:
    """The exchange's mass in kg, or None when the flow carries no mass property."""
    flow = view.flows.get(flow_uuid)
    if flow is None or MASS not in view.flow_properties:
        return None
    mass_group = view.flow_properties[MASS].unit_group
    prop = flow_property or flow.reference_property()
    if prop is None or prop not in view.flow_properties:
        return None
    try:
        if view.flow_properties[prop].unit_group == mass_group:
            return amount * unit_factor(view, prop, unit)
        factors = {p.flow_property: p.factor for p in flow.properties}
        mass_prop = next((p for p in factors if p in view.flow_properties
                          and view.flow_properties[p].unit_group == mass_group), None)
        if mass_prop is None:
            return None
        in_ref = convert(view, flow, amount, unit, flow_property)
        return in_ref * factors[mass_prop] / factors.get(flow.reference_property() or "", 1.0)
    except UnitError:
        return None


def validate_bundle(
    incoming: Bundle,
    store_view: Bundle,
    previous: dict[str, Process] | None = None,
    sources: SourceMap | None = None,
    allow_negative: bool = True,
) -> list[Diagnostic]:
    """Check an import against the rules of this module.

    Parameters
    ----------
    incoming:
        The datasets to import.
    store_view:
        Datasets already known (the store's latest versions and the reference data); the
        incoming datasets take precedence over them.
    previous:
        The stored latest version of each incoming process, for the anomaly rule.
    sources:
        Where each dataset / exchange came from (file, row or path).
    allow_negative:
        Whether non-reference exchanges may be negative (True for ILCD / JSON-LD data).
    """
    sources = sources or SourceMap()
    previous = previous or {}
    view = Bundle()
    view.merge(store_view)
    view.merge(incoming)
    out: list[Diagnostic] = []

    for process in incoming.processes.values():
        out.extend(_check_process(process, view, sources, allow_negative))
        prior = previous.get(process.uuid)
        if prior is not None:
            out.extend(_check_anomaly(process, prior, view, store_view, sources))
    return out


def _check_process(process: Process, view: Bundle, sources: SourceMap, allow_negative: bool) -> Iterable[Diagnostic]:
    pname = process.display_name()
    ref = process.reference_exchange()
    if ref is None:
        file, loc = _where(sources, process, None)
        named = ", ".join(process.reference_exchanges) or "none"
        yield Diagnostic(severity="error", rule=Rule.MISSING_REFERENCE_FLOW, file=file, location=loc,
                         field="reference", value=named,
                         message=f"process {pname!r} has no reference flow (referenced exchange ids: {named}); "
                                 "mark exactly one product output as the reference")
    elif ref.amount == 0 or not math.isfinite(ref.amount):
        file, loc = _where(sources, process, ref.internal_id)
        yield Diagnostic(severity="error", rule=Rule.MISSING_REFERENCE_FLOW, file=file, location=loc,
                         field="amount", value=repr(ref.amount),
                         message=f"the reference flow of process {pname!r} has amount {ref.amount}; "
                                 "accepted: a finite amount other than zero")
    inputs_kg = outputs_kg = 0.0
    mass_inputs = mass_outputs = 0
    for ex in process.exchanges:
        file, loc = _where(sources, process, ex.internal_id)
        if not math.isfinite(ex.amount):
            yield Diagnostic(severity="error", rule=Rule.NON_FINITE_NUMBER, file=file, location=loc, field="amount",
                             value=repr(ex.amount), message="amounts must be finite numbers")
            continue
        is_ref = ref is not None and ex.internal_id == ref.internal_id
        if ex.amount < 0:
            if is_ref or not allow_negative:
                yield Diagnostic(severity="error", rule=Rule.NEGATIVE_AMOUNT, file=file, location=loc, field="amount",
                                 value=repr(ex.amount),
                                 message=("the reference flow amount must be positive" if is_ref else
                                          "amounts must be >= 0 here; the direction column gives input or output"))
            else:
                yield Diagnostic(severity="warning", rule=Rule.NEGATIVE_AMOUNT, file=file, location=loc,
                                 field="amount", value=repr(ex.amount),
                                 message="negative amount (read as an avoided product / credit)")
        flow = view.flows.get(ex.flow)
        if flow is None:
            yield Diagnostic(severity="error", rule=Rule.MISSING_FLOW, file=file, location=loc, field="flow",
                             value=ex.flow,
                             message="the exchange references a flow that is neither in this import nor in the "
                                     "store; import the flow first or define it by name, type and unit")
            continue
        try:
            convert(view, flow, ex.amount, ex.unit, ex.flow_property)
        except UnitError as exc:
            yield Diagnostic(severity="error", rule=Rule.UNKNOWN_UNIT, file=file, location=loc, field="unit",
                             value=ex.unit, message=f"cannot convert the amount of flow {flow.display_name()!r}: "
                                                    f"{exc}")
            continue
        kg = _mass_kg(view, ex.flow, ex.amount, ex.unit, ex.flow_property)
        if kg is None:
            continue
        if ex.direction == "input":
            inputs_kg += kg
            mass_inputs += 1
        else:
            outputs_kg += kg
            mass_outputs += 1
    if mass_inputs and mass_outputs:
        biggest = max(inputs_kg, outputs_kg)
        imbalance = inputs_kg - outputs_kg
        if biggest > 0 and abs(imbalance) / biggest > MASS_BALANCE_TOLERANCE:
            file, loc = _where(sources, process, None)
            yield Diagnostic(severity="warning", rule=Rule.MASS_BALANCE, file=file, location=loc, field="exchanges",
                             value=f"{imbalance:.6g} kg",
                             message=f"process {pname!r}: mass inputs {inputs_kg:.6g} kg, outputs {outputs_kg:.6g} "
                                     f"kg, imbalance {imbalance:+.6g} kg ({abs(imbalance) / biggest:.1%} of the "
                                     "larger side)")


def _check_anomaly(process: Process, prior: Process, view: Bundle, store_view: Bundle,
                   sources: SourceMap) -> Iterable[Diagnostic]:
    new = normalised_exchanges(process, view)
    old = normalised_exchanges(prior, store_view if prior.uuid in store_view.processes else view)
    ids: dict[tuple[str, str], str] = {(ex.flow, ex.direction): ex.internal_id for ex in process.exchanges}
    for key in sorted(set(new) | set(old)):
        a, b = old.get(key, 0.0), new.get(key, 0.0)
        base = max(abs(a), abs(b))
        if base == 0 or abs(b - a) / (abs(a) if a else base) <= ANOMALY_THRESHOLD:
            continue
        flow = view.flows.get(key[0])
        fname = flow.display_name() if flow else key[0]
        file, loc = _where(sources, process, ids.get(key))
        change = "new" if a == 0 else ("removed" if b == 0 else f"{(b - a) / abs(a):+.1%}")
        yield Diagnostic(severity="warning", rule=Rule.ANOMALY, file=file, location=loc, field="amount",
                         value=f"{b:.6g}",
                         message=f"{key[1]} {fname!r} per reference unit moved from {a:.6g} (version "
                                 f"{prior.version}) to {b:.6g} ({change}); threshold {ANOMALY_THRESHOLD:.0%}")
