"""A firm checks, after a round, that the aggregator logged the stage contexts it sent and published totals inside their brackets.

A node cannot check a SecAgg sum, so the brackets and reporter counts of a round's later stages
(``protocols.disclosure``) are the aggregator's signed word. Each context the node verified is
kept (:func:`keep_context`); :func:`audit_round` then compares it with the public log and the
published factor:

* the round's ``stage`` log entry must name the digest of exactly this context (a context shown
  to this firm but not logged is a split view: the firm holds the aggregator's signature on it);
* the published production, footprint total and per-gas totals must lie inside the bracket the
  firm computed its share bits against (a bracket that did not contain the total would have bent
  the dominance rule).

Every finding names the stage, the cell and both values; the signed context is the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from node.store import NodeStore
from protocols.disclosure import FOOTPRINT, PRODUCTION, STAGES, SignedStageContext, Stage, context_digest
from protocols.factor import PublishedFactor
from protocols.translog import STAGE, LogEntry

__all__ = ["Finding", "audit_round", "keep_context", "kept_contexts"]

_REL_TOL = Fraction(1, 10**9)


def _setting(round_id: str, stage: Stage) -> str:
    return f"stage-context:{round_id}:{stage}"


def keep_context(store: NodeStore, signed: SignedStageContext) -> None:
    """Keep a stage context this node verified, with the aggregator's signature (the evidence)."""
    store.set_setting(_setting(signed.context.round_id, signed.context.stage), signed.model_dump_json())


def kept_contexts(store: NodeStore, round_id: str) -> list[SignedStageContext]:
    """The contexts this node verified for ``round_id``, in stage order."""
    out = []
    for stage in STAGES:
        raw = store.get_setting(_setting(round_id, stage))
        if raw is not None:
            out.append(SignedStageContext.model_validate_json(raw))
    return out


@dataclass(frozen=True)
class Finding:
    """One way the log or the publication contradicts a context the aggregator signed for this firm."""

    stage: str
    cell: str | None
    message: str


def _published_totals(factor: PublishedFactor) -> dict[str, Fraction]:
    """The totals a factor publishes, in the cells' units: production, Σ w·x per exchange shown, Σ w·F."""
    production = Fraction(factor.production_covered)
    totals = {PRODUCTION: production, FOOTPRINT: Fraction(factor.value) * production}
    for gas, mean in factor.gases.items():
        totals[f"wF[{gas}]"] = Fraction(mean) * production
    return totals


def audit_round(
    store: NodeStore, round_id: str, entries: Sequence[LogEntry], factor: PublishedFactor | None = None
) -> list[Finding]:
    """Compare the contexts kept for ``round_id`` with the log's stage entries and, when published, the factor.

    Returns
    -------
    list[Finding]
        Empty when everything agrees. A context with no stage entry for its stage, or one whose
        digest differs; a published total outside the bracket the firm was given (to 1e-9 relative,
        the factor's numbers being rounded to floats).
    """
    findings: list[Finding] = []
    logged = {str(e.payload.get("stage")): e for e in entries if e.type == STAGE and e.payload.get("round_id") == round_id}
    totals = _published_totals(factor) if factor is not None else {}
    for signed in kept_contexts(store, round_id):
        context = signed.context
        stage = str(context.stage)
        entry = logged.get(stage)
        if entry is None:
            findings.append(Finding(stage, None, f"stage {stage}: no log entry, though the aggregator sent this firm a context for it"))
        elif entry.payload.get("context") != context_digest(context):
            findings.append(Finding(
                stage, None,
                f"stage {stage}: the log (seq {entry.seq}) names context {str(entry.payload.get('context'))[:16]}, "
                f"not the {context_digest(context)[:16]} the aggregator signed for this firm: a split view",
            ))  # fmt: skip
        for cell, total in totals.items():
            if cell not in context.brackets:
                continue
            lo, hi = context.bracket_of(cell)
            if not lo * (1 - _REL_TOL) <= abs(total) <= hi * (1 + _REL_TOL):
                findings.append(Finding(
                    stage, cell,
                    f"stage {stage}: the published total of {cell} is {float(total):.9g}, outside the bracket "
                    f"[{float(lo):.9g}, {float(hi):.9g}) this firm computed its share bits against",
                ))  # fmt: skip
    return findings
