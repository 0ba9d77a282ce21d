"""Run a round's disclosure stages over plain integer vectors: the sums the secure protocols would give, for tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aggregator.round_context import RosterEntry, StageRun, StageSum
from protocols.disclosure import Stage, StagedRound, stage_vector
from protocols.spec import RoundSpec

__all__ = ["run_in_clear", "stage_runner", "stage_sum"]


def stage_sum(
    spec: RoundSpec, rows: Mapping[str, Sequence[int]], stage: Stage, staged: StagedRound, key: Ed25519PrivateKey
) -> list[int]:
    """The slot-wise sum of every firm's ``stage`` vector, computed from its full contribution ``rows[identity]``."""
    signed = staged.context(key, stage)
    context = signed.context if signed is not None else None
    vectors = [stage_vector(spec, ints, stage, context) for ints in rows.values()]
    return [sum(col) for col in zip(*vectors, strict=True)]


def run_in_clear(
    spec: RoundSpec, rows: Mapping[str, Sequence[int]], key: Ed25519PrivateKey | None = None
) -> StagedRound:
    """Every stage of a round over ``rows`` (identity -> full contribution integers), until it stops or ends."""
    key = key or Ed25519PrivateKey.generate()
    staged = StagedRound(spec)
    while (stage := staged.next_stage()) is not None:
        staged.record(stage, stage_sum(spec, rows, stage, staged, key), list(rows))
    return staged


def stage_runner(
    rows_of: Callable[[RoundSpec, Sequence[RosterEntry]], Mapping[str, Sequence[int]]],
) -> Callable[[RoundSpec, list[RosterEntry], StageRun], StageSum]:
    """A secure-aggregation runner (``aggregator.rounds.SecAggRunner``) that sums in the clear.

    ``rows_of(spec, roster)`` gives each contributing member's full contribution integers, keyed by
    identity public key; each stage sums the members' stage vectors (``protocols.disclosure.stage_vector``)
    computed from the stage's signed context, as honest nodes would.
    """

    def run(spec: RoundSpec, roster: list[RosterEntry], stage_run: StageRun) -> StageSum:
        rows = rows_of(spec, roster)
        context = stage_run.context.context if stage_run.context is not None else None
        vectors = [stage_vector(spec, ints, stage_run.stage, context) for ints in rows.values()]
        summed = [sum(col) for col in zip(*vectors, strict=True)] if vectors else [0] * stage_run.length
        return StageSum(summed, list(rows))

    return run
