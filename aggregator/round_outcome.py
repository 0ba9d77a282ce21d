"""How a round ends: published (aggregate, factor version and log entries in one transaction), suppressed or aborted.

Also what the stored and the logged aggregate show of the summed vector: the slots the disclosure
rules withhold are dropped before anything is written.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

from aggregator import translog
from aggregator.errors import InvalidTransition
from aggregator.repository import document_bytes, document_hash
from aggregator.round_context import ABORTED, AGGREGATING, DRAFT, LIBRARY_LEVEL, PUBLISHED, SUPPRESSED, RoundContext
from aggregator.store import FactorRow, RoundRow, Transaction
from protocols.canonical import Kind, encode
from protocols.errors import AggregationError
from protocols.factor import FactorError, PublishedFactor, build_factor, factor_id_for
from protocols.spec import KIND_HIST, RoundSpec, vector_layout
from protocols.stats import (
    AggregateStatistics,
    aggregate_statistics,
    check_disclosure,
    merged_gases,
    other_gases_sum,
    withheld_slots,
)

__all__ = [
    "abort_round",
    "conclude_round",
    "histogram_commitment",
    "public_log_other_gases",
    "public_log_summed",
    "stored_summed",
    "suppress_round",
]


def histogram_commitment(salt_hex: str, counts: Sequence[int]) -> str:
    """SHA-256 over the salt and the canonical encoding of the histogram counts (decimal strings)."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + encode(Kind.HISTOGRAM_COMMITMENT, [str(c) for c in counts])).hexdigest()


def stored_summed(spec: RoundSpec, summed: Sequence[int | None]) -> list[int | None]:
    """The summed vector as the aggregator stores it: the slots the disclosure rules withhold are ``None``.

    A component fewer than ``min_participants`` firms report has sums that are those firms' own
    values, and so would the ``wF`` sums of a gas that few firms emit, or let a reader subtract
    them (``protocols.stats.withheld_slots``); they are dropped before anything is written. The
    merged gases' sum is kept in the aggregate's log entry (:func:`public_log_other_gases`).
    """
    drop = set(withheld_slots(spec, summed))
    return [None if slot.name in drop else value for slot, value in zip(vector_layout(spec), summed, strict=True)]


def public_log_summed(
    spec: RoundSpec, summed: Sequence[int | None]
) -> tuple[list[str | None], list[str], list[int]]:
    """The summed vector as the public log shows it: histogram bins and withheld components' slots ``None``.

    A histogram bin holding one firm would tell that firm's footprint range, so the log carries
    only a salted commitment to the bins (``protocols.stats`` keeps the histogram for the
    aggregator's use only). The value slots (``x``, ``wx``, ``wx2``) of a component reported by
    fewer than ``min_participants`` firms are those firms' values: the log shows ``None`` and
    the component's reporter count ``n[c]``, which is all a verifier needs to see why. Likewise the
    ``wF`` slots of the gases the gas-level rule merges show ``None`` next to their counts ``nF[g]``;
    their sum is logged on its own (:func:`public_log_other_gases`).

    Returns
    -------
    tuple[list[str | None], list[str], list[int]]
        The values as decimal strings with ``None`` at withheld positions, the withheld slot
        names (bins, component and gas slots), and the withheld histogram counts (what the commitment covers).
    """
    drop = set(withheld_slots(spec, summed))
    shown: list[str | None] = []
    withheld: list[str] = []
    counts: list[int] = []
    for slot, value in zip(vector_layout(spec), summed, strict=True):
        if slot.kind == KIND_HIST:
            assert value is not None  # bins are never dropped from the stored aggregate
            shown.append(None)
            withheld.append(slot.name)
            counts.append(int(value))
        elif slot.name in drop or value is None:
            shown.append(None)
            withheld.append(slot.name)
        else:
            shown.append(str(int(value)))
    return shown, withheld, counts


def _decimal_text(value: Fraction) -> str:
    """``value`` as an exact decimal string; it must be a terminating decimal (denominator 2^a 5^b)."""
    for places in range(80):
        scaled = value * 10**places
        if scaled.denominator == 1:
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
            return f"-{text}" if scaled < 0 else text
    raise ValueError(f"{value} is not a terminating decimal")


def public_log_other_gases(spec: RoundSpec, summed: Sequence[int | None]) -> dict[str, Any] | None:
    """What the aggregate's log entry shows of the gases the gas-level rule merges; ``None`` when none is.

    ``{"gases": [...], "sum": "<decimal>"}``: the merged gases in spec order and their ``wF`` sums
    added up, in the slots' unit (production × kg CO2e per reference unit), exact. A verifier passes
    the sum to ``protocols.stats.aggregate_statistics(..., other_gases=Fraction(sum))``. The sum covers at
    least ``min_participants`` firms except when it is the whole footprint (``protocols.stats``).
    """
    total = other_gases_sum(spec, summed)
    if total is None:
        return None
    return {"gases": merged_gases(spec, summed), "sum": _decimal_text(total)}


def abort_round(ctx: RoundContext, round_id: str, from_states: Sequence[str], reason: str, *, strict: bool = False) -> None:
    """Move the round from one of ``from_states`` to aborted and log why; ``strict`` re-raises ``InvalidTransition``."""
    now = ctx.clock()
    try:
        with ctx.store.transaction() as tx:
            before = tx.get_round(round_id).state
            tx.transition_round(round_id, list(from_states), ABORTED, now, decision=f"aborted: {reason}")
            if before != DRAFT:  # drafts were never announced in the log
                translog.append(tx, ctx.key, translog.ABORT, {"round_id": round_id, "reason": reason}, now)
    except InvalidTransition:
        if strict:
            raise


def suppress_round(
    tx: Transaction, ctx: RoundContext, row: RoundRow, rule: str, message: str, n: int, now: datetime
) -> None:
    """Decide an aggregating round as suppressed by ``rule`` (inside the caller's transaction) and log it."""
    tx.transition_round(row.id, [AGGREGATING], SUPPRESSED, now, decision=f"suppressed by rule {rule}: {message}")
    translog.append(
        tx,
        ctx.key,
        translog.SUPPRESSION,
        {"round_id": row.id, "spec_hash": row.spec_hash, "rule": rule, "detail": message, "n": n},
        now,
    )


def conclude_round(
    ctx: RoundContext, round_id: str, spec: RoundSpec, summed: list[int], n: int, contribution_hashes: list[str]
) -> None:
    """Decide a round in ``aggregating``: suppress it, or store aggregate + factor version + log entries at once."""
    stats: AggregateStatistics | None = None
    if n >= 1:
        try:
            stats = aggregate_statistics(spec, summed, n)
        except AggregationError as exc:
            abort_round(ctx, round_id, (AGGREGATING,), f"the aggregate is inconsistent: {exc}")
            return
    decision = stats.disclosure if stats is not None else check_disclosure(spec, n, 0, 0)
    now = ctx.clock()
    with ctx._publish_lock:
        try:
            with ctx.store.transaction() as tx:
                row = tx.get_round(round_id)
                if row.state != AGGREGATING:
                    return  # decided (or cancelled) meanwhile: never twice
                if not decision.publish or stats is None:
                    suppress_round(tx, ctx, row, decision.rule or "min_participants", decision.message, n, now)
                    return
                _publish(tx, ctx, row, spec, stats, summed, n, contribution_hashes, now)
        except InvalidTransition:
            return
        except FactorError as exc:  # rolled back: nothing of the publication was stored
            abort_round(ctx, round_id, (AGGREGATING,), f"the factor cannot be built: {exc}")


def _publish(
    tx: Transaction,
    ctx: RoundContext,
    row: RoundRow,
    spec: RoundSpec,
    stats: AggregateStatistics,
    summed: list[int],
    n: int,
    contribution_hashes: list[str],
    now: datetime,
) -> None:
    fid = factor_id_for(spec.product.reference_flow, spec.region, LIBRARY_LEVEL)
    version = tx.next_factor_version(fid)
    previous_row = tx.get_factor(fid)
    previous = PublishedFactor.model_validate_json(previous_row.document) if previous_row else None
    tx.transition_round(row.id, [AGGREGATING], PUBLISHED, now, decision=f"published factor {fid} revision {version}")
    salt = secrets.token_hex(16)
    kept = stored_summed(spec, summed)  # never a withheld component's or gas's sums, not even in the database
    tx.put_aggregate(row.id, kept, n, now, histogram_salt=salt)
    shown, withheld, counts = public_log_summed(spec, kept)
    other_gases = public_log_other_gases(spec, summed)  # only in rounds where the gas-level rule merges
    aggregate_entry = translog.append(
        tx,
        ctx.key,
        translog.AGGREGATE,
        {
            "round_id": row.id,
            "spec_hash": row.spec_hash,
            "n": n,
            "summed": shown,
            "withheld": withheld,
            "histogram_commitment": histogram_commitment(salt, counts) if counts else None,
            "contributions": sorted(contribution_hashes),
        }
        | ({"other_gases": other_gases} if other_gases is not None else {}),
        now,
    )
    factor = build_factor(
        spec, stats, version, previous, LIBRARY_LEVEL, log_entry_hash=aggregate_entry.entry_hash, now=now
    )
    doc_hash = document_hash(factor)
    entry = translog.append(
        tx,
        ctx.key,
        translog.PUBLICATION,
        {
            "round_id": row.id,
            "factor_id": factor.factor_id,
            "version": factor.version,
            "revision": version,
            "document_hash": doc_hash,
        },
        now,
    )
    tx.add_factor(
        FactorRow(
            factor_id=factor.factor_id,
            version=version,
            round_id=row.id,
            document=document_bytes(factor).decode(),
            document_hash=doc_hash,
            log_seq=entry.seq,
            created_at=now,
        )
    )
