"""Map a local process to a round's schema, build the contribution the firm previews and approves, and pin the key it may be encrypted to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lca.errors import LCAError, UnitError
from lca.model import Bundle, Process
from lca.units import convert, unit_factor
from protocols.canonical import Kind, digest
from protocols.contribution import Contribution, build_contribution
from protocols.errors import ContributionError, InvalidSignature
from protocols.spec import Component, RoundSpec, spec_hash

if TYPE_CHECKING:
    from node.store import NodeStore

__all__ = [
    "PAILLIER_KEY_SETTING",
    "ProcessMapping",
    "check_paillier_key",
    "contribution_digest",
    "make_contribution",
    "map_process",
    "pin_paillier_key",
]

PAILLIER_KEY_SETTING = "paillier_public_key_sha256"
"""The custodians' joint key this node encrypts to: its ``key_id`` (``canonical.digest(Kind.PAILLIER_KEY, ...)``),
pinned out of band (``pcf node enroll --paillier-key``, ``pcf node pin-paillier-key``) as the custodians published it."""
_KEY_ID_RE = re.compile(r"^[0-9a-f]{64}$")

_AGGREGATE_GASES = {"fossil", "biogenic", "land_use", "total"}


@dataclass
class ProcessMapping:
    """A process's values on a round's schema, per reference unit of the round's product."""

    process_uuid: str
    process_version: str
    values: dict[str, float]
    """Component flow UUID -> value in the component's unit per reference unit."""
    missing: list[Component]
    """Components the process has no exchange for: zeros the firm must confirm."""
    weight: float
    footprint_by_gas: dict[str, float]
    footprint_total: float
    notes: list[str] = field(default_factory=list)


def _flow_unit_factor(view: Bundle, flow_uuid: str, unit: str) -> float:
    """How many of the flow's reference units one ``unit`` is (via the flow's reference property)."""
    flow = view.flows[flow_uuid]
    prop = flow.reference_property()
    if prop is None:
        raise UnitError(f"flow {flow_uuid} has no flow property")
    return unit_factor(view, prop, unit)


def map_process(spec: RoundSpec, view: Bundle, process_uuid: str) -> ProcessMapping:
    """Read ``process_uuid`` from ``view`` in the round's terms.

    The process's reference flow must be the round's product. Amounts are converted through the
    flows' unit groups into each component's unit and divided by the reference amount in the
    round's reference unit. A component's value is the sum over the exchanges of its flow and of
    its aliases (:attr:`protocols.spec.Component.aliases`), each converted through its own flow. The firm's own cradle-to-gate footprint is computed with the round's
    GWP set on the node's own data (its background processes).

    Raises
    ------
    ContributionError
        When the process cannot be mapped: not found, another product, no annual production,
        a unit that does not convert.
    """
    process = view.processes.get(process_uuid.lower())
    if not isinstance(process, Process):
        raise ContributionError(f"no process {process_uuid} in this node's store")
    ref = process.reference_exchange()
    if ref is None:
        raise ContributionError(f"process {process.display_name()} has no reference flow")
    if ref.flow != spec.product.reference_flow:
        raise ContributionError(
            f"process {process.display_name()!r} makes flow {ref.flow}, not the round's product "
            f"{spec.product.name_en} / {spec.product.name_zh} ({spec.product.reference_flow})")
    try:
        ref_amount = convert(view, view.flows[ref.flow], ref.amount, ref.unit, ref.flow_property)
        per_spec_unit = _flow_unit_factor(view, ref.flow, spec.reference_unit)
    except (UnitError, KeyError) as exc:
        raise ContributionError(f"reference flow of {process.display_name()!r}: {exc}") from None
    ref_in_spec_units = ref_amount / per_spec_unit
    values: dict[str, float] = {}
    missing: list[Component] = []
    notes: list[str] = []
    for c in spec.components:
        flows = set(c.flows)  # the component's flow and its aliases, summed
        matched = [ex for ex in process.exchanges if ex.flow in flows and ex.direction == c.direction
                   and ex.internal_id not in process.reference_exchanges]
        if not matched:
            missing.append(c)
            continue
        total = 0.0
        for ex in matched:
            try:
                # Each flow through its own unit group: an alias may have another reference unit.
                amount = convert(view, view.flows[ex.flow], ex.amount, ex.unit, ex.flow_property)
                total += amount / _flow_unit_factor(view, ex.flow, c.unit)
            except (UnitError, KeyError) as exc:
                raise ContributionError(
                    f"{c.name_en} / {c.name_zh} ({ex.flow}): cannot convert {ex.amount} {ex.unit} to {c.unit}: {exc}",
                    flow=c.flow) from None
        aliased = sorted({ex.flow for ex in matched} - {c.flow})
        if aliased:
            notes.append(f"{c.name_en}: summed from flow(s) {', '.join(aliased)} (aliases of {c.flow})")
        values[c.flow] = total / ref_in_spec_units
    if process.annual_production is None:
        raise ContributionError(
            f"process {process.display_name()!r} has no annual production; set it (template field "
            "annual_production) to weight the firm in the round")
    try:
        weight = process.annual_production * _flow_unit_factor(view, ref.flow, ref.unit) / _flow_unit_factor(
            view, ref.flow, spec.weight.unit)
    except (UnitError, KeyError) as exc:
        raise ContributionError(f"annual production of {process.display_name()!r}: {exc}") from None

    from lca.solver import footprint

    try:
        fp = footprint(view, process.uuid, method=spec.footprint.gwp_set)
    except LCAError as exc:
        raise ContributionError(f"footprint of {process.display_name()!r}: {exc}") from None
    data = fp.to_dict()
    per_unit = per_spec_unit  # the solver reports per one reference unit of the flow (e.g. kg)
    by_gas: dict[str, float] = {}
    for gas in spec.footprint.gases:
        if gas in _AGGREGATE_GASES:
            value = data["total"] if gas == "total" else data.get(gas, 0.0)
        else:
            value = data["by_gas"].get(gas, 0.0)
        by_gas[gas] = float(value) * per_unit
    unknown = sorted(set(data["by_gas"]) - set(spec.footprint.gases))
    if unknown and not (set(spec.footprint.gases) & _AGGREGATE_GASES):
        notes.append(f"gases outside the round's list, not contributed per gas: {', '.join(unknown)}")
    return ProcessMapping(process_uuid=process.uuid, process_version=process.version, values=values,
                          missing=missing, weight=weight, footprint_by_gas=by_gas,
                          footprint_total=float(data["total"]) * per_unit, notes=notes)


def make_contribution(spec: RoundSpec, mapping: ProcessMapping, confirm_zeros: bool) -> Contribution:
    """The contribution vector; missing components count as zero only when the firm confirms them."""
    zeros = [c.flow for c in mapping.missing] if confirm_zeros else []
    zeros += [g for g, v in mapping.footprint_by_gas.items() if v == 0.0]
    if mapping.missing and not confirm_zeros:
        names = ", ".join(f"{c.name_en} / {c.name_zh} ({c.flow})" for c in mapping.missing)
        raise ContributionError(
            f"the process has no exchange for: {names}; confirm that they are zero (--confirm-zeros) or "
            "add them to the process")
    return build_contribution(spec, mapping.values, mapping.weight, mapping.footprint_by_gas, confirmed_zeros=zeros)


def contribution_digest(spec: RoundSpec, contribution: Contribution) -> str:
    """SHA-256 binding the round spec and the exact integers the firm approved (63-bit, so decimal strings)."""
    return digest(Kind.CONSENT, {"spec": spec_hash(spec), "ints": [str(int(i)) for i in contribution.ints]})


def preview_rows(spec: RoundSpec, mapping: ProcessMapping, contribution: Contribution) -> list[dict[str, Any]]:
    """The plaintext preview as plain rows: slot, meaning, value with unit, integer sent."""
    return [
        {"slot": r.slot, "description": getattr(r, "description", ""), "value": getattr(r, "value", None),
         "unit": getattr(r, "unit", ""), "integer": getattr(r, "integer", None)}
        for r in contribution.preview()
    ]


def pin_paillier_key(store: NodeStore, key_id: str) -> str:
    """Pin the custodians' joint Paillier key fingerprint (as they published it) in the node's settings.

    Returns
    -------
    str
        The fingerprint pinned (lower-case hex).

    Raises
    ------
    ContributionError
        Not 64 hex digits.
    """
    fp = key_id.strip().lower()
    if not _KEY_ID_RE.match(fp):
        raise ContributionError(
            f"Paillier key fingerprint {key_id[:80]!r}: accepted: the 64 hex digits `pcf custodian init` printed"
        )
    store.set_setting(PAILLIER_KEY_SETTING, fp)
    return fp


def check_paillier_key(pinned: str | None, spec: RoundSpec, served_key_id: str) -> None:
    """Refuse any Paillier key but the pinned one: the spec must name it and the served key must be it.

    Parameters
    ----------
    pinned
        The node's pinned fingerprint (``None``: nothing pinned, so nothing is encrypted).
    spec
        The round's verified spec (its ``paillier.key_id`` is signed).
    served_key_id
        The ``key_id`` of the key the aggregator serves (recomputed from ``n`` and the custodians).

    Raises
    ------
    InvalidSignature
        With both fingerprints named.
    """
    round_id = spec.round_id
    if pinned is None:
        raise InvalidSignature(
            f"round {round_id}: no custodians' Paillier key is pinned on this node; refusing to encrypt to key "
            f"{served_key_id} that the aggregator serves. Pin the fingerprint the custodians published: "
            "pcf node pin-paillier-key FINGERPRINT")
    if spec.paillier.key_id != pinned:
        raise InvalidSignature(
            f"round {round_id}: its signed spec names Paillier key {spec.paillier.key_id}, not the custodians' key "
            f"this node pinned ({pinned}); refusing: only the custodians' joint key keeps contributions private")
    if served_key_id != pinned:
        raise InvalidSignature(
            f"round {round_id}: the aggregator serves Paillier key {served_key_id}, not the custodians' key this node "
            f"pinned ({pinned}) that the spec names; refusing to encrypt to it")
