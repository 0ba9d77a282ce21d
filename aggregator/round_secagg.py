"""Protocol 1, ``secagg``: masked inputs gathered by the secure-aggregation runner (the Flower SuperLink).

Members post nothing to the aggregator's HTTP API: their masked inputs travel through the runner,
which returns only the signed slot sums. Opening a round over Flower fixes and signs its roster;
closing it starts the runner off the request. A round interrupted by a restart is aborted, since
its masked inputs lived only in the interrupted process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from aggregator import translog
from aggregator.errors import Conflict, InvalidTransition, SpecRejected, Unavailable
from aggregator.members import certified_members
from aggregator.round_context import (
    AGGREGATING,
    COLLECTING,
    OPEN,
    RosterEntry,
    RoundContext,
    StageRun,
    row_params,
    row_roster,
)
from aggregator.round_outcome import abort_round, conclude_staged, record_stage
from aggregator.round_protocol import RoundProtocol
from aggregator.store import ContributionRow, MemberRow, RoundRow, Transaction
from protocols.disclosure import Stage, StagedRound
from protocols.roster import roster_log_payload, sign_roster
from protocols.secagg_policy import spec_value_bits
from protocols.spec import RoundSpec

__all__ = ["SecaggProtocol", "secagg_value_bits"]

log = logging.getLogger(__name__)


class SecaggProtocol(RoundProtocol):
    """``secagg`` rounds: the runner aggregates; the aggregator fixes the roster and decides the result."""

    name: ClassVar[str] = "secagg"

    def prepare(self, ctx: RoundContext, spec: RoundSpec) -> dict[str, Any]:
        """Nothing beyond ``validate_spec``: the input bound is checked against the roster at opening."""
        return {}

    def on_open(self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime) -> None:
        """Over Flower, sign and log the roster of approved members with a registered SuperNode."""
        if ctx.flower_roster:
            _fix_roster(tx, ctx, row, spec, now)

    def parse_contribution(self, round_id: str, body: bytes) -> Any:
        """Always refused: secagg inputs travel through the Flower SuperLink."""
        raise Conflict(
            f"round {round_id!r} uses protocol 'secagg'; contributions are posted only to 'paillier' rounds "
            "(secagg inputs travel through the Flower SuperLink)"
        )

    def check_contribution(self, row: RoundRow, spec: RoundSpec, member: MemberRow, contribution: Any) -> None:
        """Unreachable (:meth:`parse_contribution` refuses); refuses likewise."""
        self.parse_contribution(row.id, b"")

    def check_against(self, round_id: str, contribution: Any, existing: list[ContributionRow]) -> None:
        """Unreachable (:meth:`parse_contribution` refuses); refuses likewise."""
        self.parse_contribution(round_id, b"")

    def close(
        self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime
    ) -> Callable[[], None] | None:
        """open → collecting; the runner is started once the transaction commits."""
        if ctx.runner is None:
            raise Unavailable("no secure-aggregation runner is configured (the Flower SuperLink is not wired)")
        row = tx.transition_round(row.id, [OPEN], COLLECTING, now)
        roster = _roster(tx, row)
        round_id = row.id
        return lambda: _run_secagg(ctx, round_id, spec, roster)

    def resume(self, ctx: RoundContext, row: RoundRow) -> str:
        """Abort: the masked inputs lived only in the interrupted process, so nothing is counted twice."""
        abort_round(
            ctx, row.id, (COLLECTING, AGGREGATING), "interrupted by an aggregator restart during secure aggregation"
        )
        return "aborted"


def _roster(tx: Transaction, row: RoundRow) -> list[RosterEntry]:
    """Who a ``secagg`` run aggregates over: the signed roster's members still approved, else every approved member."""
    approved = tx.list_members("approved")
    signed = row_roster(row)
    if signed is None:
        return [RosterEntry(m.fingerprint, m.identity_public_key, m.supernode_public_key) for m in approved]
    by_node = {m.flower_node_id: m for m in approved if m.flower_node_id is not None}
    return [
        RosterEntry(m.fingerprint, m.identity_public_key, m.supernode_public_key, node_id)
        for node_id, key in sorted(signed.roster.items(), key=lambda item: int(item[0]))
        if (m := by_node.get(node_id)) is not None and m.identity_public_key == key
    ]


def secagg_value_bits(spec: RoundSpec, participants: int) -> int:
    """The secure-aggregation input bound ``b`` of a round: inputs lie in [-2**b, 2**b).

    The smallest ``b`` with every slot's ``bound_int < 2**b``, so a node refuses any value its
    consent could not have covered; it must also keep ``participants * 2**b <= 2**63`` so the
    signed sum cannot wrap.

    Raises
    ------
    ValueError
        When no such ``b`` exists for this many participants.
    """
    bits = spec_value_bits(spec)  # the bound every node checks the server's parameters against
    if bits > 62 or participants * 2**bits > 2**63:
        raise ValueError(
            f"slot bounds need inputs below 2**{bits}; {participants} participants × 2**{bits} exceeds 2**63, "
            f"so the masked sum could wrap; accepted: at most {2**63 // 2**bits} participants, or lower bounds/scales"
        )
    return bits


def _fix_roster(tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime) -> None:
    """Sign the roster of an opening ``secagg`` round, store it with the round and log it."""
    members, certificates = certified_members(
        [m for m in tx.list_members("approved") if m.flower_node_id is not None], ctx.authority_public_key, now)
    if len(members) < spec.min_participants:
        raise Conflict(
            f"round {row.id!r} cannot open: {len(members)} approved member(s) have a SuperNode registered with "
            f"the SuperLink{' and a current membership certificate' if ctx.authority_public_key else ''}, "
            f"min_participants is {spec.min_participants}; approve more members first"
        )
    if len(members) > spec.max_participants:
        raise Conflict(
            f"round {row.id!r} cannot open: {len(members)} approved members with a SuperNode exceed "
            f"max_participants {spec.max_participants}; create the round with a larger max_participants"
        )
    try:
        secagg_value_bits(spec, len(members))
    except ValueError as exc:
        raise SpecRejected(f"round {row.id!r}: {exc}") from None
    signed = sign_roster(
        ctx.key, row.id, row.spec_hash, {str(m.flower_node_id): m.identity_public_key for m in members},
        {str(m.flower_node_id): certificates[m.fingerprint] for m in members if m.fingerprint in certificates},
    )
    tx.set_round_params(row.id, json.dumps({**row_params(row), "roster": signed.model_dump(mode="json")}))
    translog.append(tx, ctx.key, translog.ROSTER, roster_log_payload(signed), now)


def _run_secagg(ctx: RoundContext, round_id: str, spec: RoundSpec, roster: list[RosterEntry]) -> None:
    """Run the round's disclosure stages one secure sum at a time, each over the screen's cohort, then decide."""
    assert ctx.runner is not None
    staged = StagedRound(spec)
    # A runner may keep one run per round across its stages (aggregator.flower_runner); end it once
    # the round has no further stage, whether it completed, stopped at a rule or failed.
    end: Callable[[RoundSpec], None] | None = getattr(ctx.runner, "end", None)
    try:
        while (stage := staged.next_stage()) is not None:
            cohort = set(staged.cohort)
            members = roster if stage == Stage.SCREEN else [e for e in roster if e.identity_public_key in cohort]
            run = StageRun(stage, len(staged.layout(stage)), staged.context(ctx.key, stage))
            started = time.monotonic()
            result = ctx.runner(spec, members, run)
            took = time.monotonic() - started
            decision = record_stage(ctx, round_id, staged, stage, [int(v) for v in result.summed],
                                    list(result.contributors))
            if decision.rule == "aborted":
                return
            log.info("secagg round %s: stage %s (%.1f s): %s", round_id, stage, took, decision.message)
    except Exception as exc:  # noqa: BLE001 - the runner is pluggable: any failure aborts the round cleanly
        log.warning("secagg round %s failed: %s", round_id, exc)
        abort_round(ctx, round_id, (COLLECTING,), f"secure aggregation failed: {type(exc).__name__}: {exc}")
        return
    finally:
        if end is not None:
            end(spec)
    try:
        with ctx.store.transaction() as tx:
            tx.transition_round(round_id, [COLLECTING], AGGREGATING, ctx.clock())
    except InvalidTransition:
        log.info("secagg round %s was cancelled while running; its result is dropped", round_id)
        return
    conclude_staged(ctx, round_id, staged, [])
