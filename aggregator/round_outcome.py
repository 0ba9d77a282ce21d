"""How a round ends: published (aggregate, factor version and log entries in one transaction), suppressed or aborted.

Also what the stored and the logged aggregate show of the summed vector: the slots the disclosure
rules withhold are dropped before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

from aggregator import translog
from aggregator.cohorts import cohort_conflict, record_cohort
from aggregator.errors import InvalidTransition
from aggregator.repository import document_bytes, document_hash
from aggregator.round_context import (
    ABORTED,
    AGGREGATING,
    COLLECTING,
    DRAFT,
    LIBRARY_LEVEL,
    PUBLISHED,
    SUPPRESSED,
    RoundContext,
    row_params,
)
from aggregator.store import FactorRow, RoundRow, Transaction
from protocols.canonical import Kind, encode
from protocols.disclosure import Stage, StageDecision, StagedRound, context_digest
from protocols.encoding import decimal_text
from protocols.errors import AggregationError
from protocols.factor import FactorError, PublishedFactor, build_factor, factor_id_for
from protocols.spec import KIND_HIST, RoundSpec, vector_layout
from protocols.stats import (
    AggregateStatistics,
    aggregate_statistics,
    check_disclosure,
    merged_gases,
    other_gases_sum,
    staged_statistics,
    staged_summed,
    withheld_slots,
)

__all__ = [
    "abort_round",
    "conclude_round",
    "conclude_staged",
    "histogram_commitment",
    "public_log_other_gases",
    "public_log_summed",
    "record_stage",
    "stage_commitment",
    "stored_summed",
    "suppress_round",
]


def histogram_commitment(salt_hex: str, counts: Sequence[int]) -> str:
    """SHA-256 over the salt and the canonical encoding of the histogram counts (decimal strings)."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + encode(Kind.HISTOGRAM_COMMITMENT, [str(c) for c in counts])).hexdigest()


def stored_summed(spec: RoundSpec, summed: Sequence[int | None], dominated: Sequence[str] = ()) -> list[int | None]:
    """The summed vector as the aggregator stores it: the slots the disclosure rules withhold are ``None``.

    A component fewer than ``min_participants`` firms report has sums that are those firms' own
    values, and so would the ``wF`` sums of a gas that few firms emit, or let a reader subtract
    them (``protocols.stats.withheld_slots``); they are dropped before anything is written. The
    merged gases' sum is kept in the aggregate's log entry (:func:`public_log_other_gases`).
    """
    drop = set(withheld_slots(spec, summed, dominated))
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
    return {"gases": merged_gases(spec, summed), "sum": decimal_text(total)}


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
    decision = stats.disclosure if stats is not None else check_disclosure(spec, n)
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
                _publish(tx, ctx, row, spec, stats, list(summed), n, contribution_hashes, now,
                         other_gases=other_gases_sum(spec, summed))
        except InvalidTransition:
            return
        except FactorError as exc:  # rolled back: nothing of the publication was stored
            abort_round(ctx, round_id, (AGGREGATING,), f"the factor cannot be built: {exc}")


def stage_commitment(salt_hex: str, stage: Stage, summed: Sequence[int]) -> str:
    """SHA-256 over the salt and the canonical encoding of one stage's sums (decimal strings)."""
    doc = {"stage": str(stage), "sums": [str(int(v)) for v in summed]}
    return hashlib.sha256(bytes.fromhex(salt_hex) + encode(Kind.STAGE_COMMITMENT, doc)).hexdigest()


def _member_ids(tx: Transaction, identity_keys: Sequence[str]) -> list[str]:
    """The aggregator's member ids of the holders of ``identity_keys``.

    Raises
    ------
    _Abort
        A key no member holds: the round's cohort could not be recorded, so it must not publish.
    """
    by_key = {m.identity_public_key: m for m in tx.list_members()}
    unknown = [k for k in identity_keys if k not in by_key]
    if unknown:
        raise _Abort(f"{len(unknown)} contributor key(s) belong to no member, so the round's cohort cannot be recorded")
    return sorted(str(by_key[k].id) for k in identity_keys)


def record_stage(
    ctx: RoundContext,
    round_id: str,
    staged: StagedRound,
    stage: Stage,
    summed: Sequence[int],
    contributors: Sequence[str],
    *,
    persist: Callable[[Transaction, StagedRound, StageDecision], None] | None = None,
) -> StageDecision:
    """Take one stage's sum into ``staged``, apply the cohort rule after ``screen``, and log the stage.

    The ``stage`` log entry carries the decision, the digest of the signed context the cohort
    computed the stage from (``protocols.disclosure.context_digest``: a node that got another
    context than the one logged can prove it with the signed one), and, for the screen and the count stages, a salted
    commitment to the stage's sums (the salts and sums are kept with the round, so the association can
    open them to an auditor); the values stage's published part is in the ``aggregate`` entry. A sum
    that cannot be right (``AggregationError``) aborts the round.

    Parameters
    ----------
    contributors
        Identity public keys (base64url) of the members whose inputs the sum covers.
    persist
        Called inside the same transaction as the stage's log entry, for a protocol that keeps
        ``staged`` in the database between stages (``paillier``): the stage is recorded and its
        state saved at once, or neither.
    """
    signed = staged.context(ctx.key, stage)  # the context the stage was computed from (deterministic)
    try:
        decision = staged.record(stage, summed, contributors)
    except AggregationError as exc:
        abort_round(ctx, round_id, (COLLECTING, AGGREGATING), f"stage {stage}: the sum is inconsistent: {exc}")
        return StageDecision(False, "aborted", str(exc))
    now = ctx.clock()
    with ctx.store.transaction() as tx:
        row = tx.get_round(round_id)
        if row.state not in (COLLECTING, AGGREGATING):
            return StageDecision(False, "aborted", f"the round is {row.state}; stage {stage} is not recorded")
        if stage == Stage.SCREEN and decision.proceed:
            try:
                conflict = cohort_conflict(tx, staged.spec, _member_ids(tx, staged.cohort))
            except _Abort as exc:
                unknown = str(exc)
                conflict = None
            else:
                unknown = ""
            if conflict is not None:
                decision = StageDecision(False, "cohort", conflict)
                staged.stopped = decision
            if unknown:
                decision = StageDecision(False, "aborted", unknown)
                staged.stopped = decision
        payload: dict[str, Any] = {
            "round_id": round_id,
            "spec_hash": row.spec_hash,
            "stage": str(stage),
            "n": len(staged.cohort),
            "decision": "proceed" if decision.proceed else "stop",
            "rule": decision.rule,
            "detail": decision.message,
            "context": None if signed is None else context_digest(signed.context),
        }
        params = row_params(row)
        if stage != Stage.VALUES:
            salt = secrets.token_hex(16)
            payload["commitment"] = stage_commitment(salt, stage, summed)
            openings = dict(params.get("openings") or {})
            openings[str(stage)] = {"salt": salt, "sums": [str(int(v)) for v in summed]}
            params["openings"] = openings
            tx.set_round_params(round_id, json.dumps(params))
        translog.append(tx, ctx.key, translog.STAGE, payload, now)
        if persist is not None:
            persist(tx, staged, decision)
    if decision.rule == "aborted":
        abort_round(ctx, round_id, (COLLECTING, AGGREGATING), f"stage {stage}: {decision.message}")
    return decision


def conclude_staged(ctx: RoundContext, round_id: str, staged: StagedRound, contribution_hashes: list[str]) -> None:
    """Decide a round in ``aggregating`` whose stages ran (or stopped): suppress it, or publish.

    A round a stage stopped is suppressed by that stage's rule; otherwise the statistics come from
    the screen and values sums with the cells the p %-rule failed withheld
    (:func:`protocols.stats.staged_statistics`), and are published with their log entries and the
    cohort record in one transaction.
    """
    spec = staged.spec
    n = len(staged.cohort)
    stats: AggregateStatistics | None = None
    stop = staged.stopped
    if stop is None and staged.next_stage() is not None:
        stop = StageDecision(False, "aborted", f"stage {staged.next_stage()} did not run")
    if stop is None:
        try:
            stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
        except AggregationError as exc:
            abort_round(ctx, round_id, (AGGREGATING,), f"the aggregate is inconsistent: {exc}")
            return
    now = ctx.clock()
    with ctx._publish_lock:
        try:
            with ctx.store.transaction() as tx:
                row = tx.get_round(round_id)
                if row.state != AGGREGATING:
                    return  # decided (or cancelled) meanwhile: never twice
                if stop is not None or stats is None or not stats.disclosure.publish:
                    rule = stop.rule if stop is not None else (stats.disclosure.rule if stats else None)
                    message = stop.message if stop is not None else (stats.disclosure.message if stats else "")
                    if rule == "aborted":
                        raise _Abort(message)
                    suppress_round(tx, ctx, row, rule or "min_participants", message, n, now)
                    return
                members = _member_ids(tx, staged.cohort)
                # again here, in the publishing transaction: another overlapping round may have
                # published since this one's screen stage passed the cohort rule
                conflict = cohort_conflict(tx, spec, members)
                if conflict is not None:
                    suppress_round(tx, ctx, row, "cohort", conflict, n, now)
                    return
                summed, other = staged_summed(
                    spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated
                )
                _publish(tx, ctx, row, spec, stats, summed, n, contribution_hashes, now, other_gases=other,
                         dominated=staged.dominated, members=members)
        except _Abort as exc:
            abort_round(ctx, round_id, (AGGREGATING,), str(exc))
        except InvalidTransition:
            return
        except FactorError as exc:  # rolled back: nothing of the publication was stored
            abort_round(ctx, round_id, (AGGREGATING,), f"the factor cannot be built: {exc}")


class _Abort(Exception):
    """Leave the publishing transaction and abort the round instead."""


def _publish(
    tx: Transaction,
    ctx: RoundContext,
    row: RoundRow,
    spec: RoundSpec,
    stats: AggregateStatistics,
    summed: list[int | None],
    n: int,
    contribution_hashes: list[str],
    now: datetime,
    *,
    other_gases: Fraction | None = None,
    dominated: Sequence[str] = (),
    members: Sequence[str] = (),
) -> None:
    fid = factor_id_for(spec.product.reference_flow, spec.region, LIBRARY_LEVEL)
    version = tx.next_factor_version(fid)
    previous_row = tx.get_factor(fid)
    previous = PublishedFactor.model_validate_json(previous_row.document) if previous_row else None
    tx.transition_round(row.id, [AGGREGATING], PUBLISHED, now, decision=f"published factor {fid} revision {version}")
    salt = secrets.token_hex(16)
    kept = stored_summed(spec, summed, dominated)  # never a withheld component's or gas's sums, not even in the database
    tx.put_aggregate(row.id, kept, n, now, histogram_salt=salt)
    shown, withheld, counts = public_log_summed(spec, kept)
    other_entry = (
        {"gases": list(stats.footprint.merged_gases), "sum": decimal_text(other_gases)}
        if other_gases is not None
        else None
    )
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
            "dominated": list(dominated),
            "histogram_commitment": histogram_commitment(salt, counts) if counts else None,
            "contributions": sorted(contribution_hashes),
        }
        | ({"other_gases": other_entry} if other_entry is not None else {}),
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
    record_cohort(tx, factor.factor_id, version, row.id, members, now=now)
