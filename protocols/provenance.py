"""Independent check of a published factor against the transparency log: pure checks over data already fetched.

Given the log entries, the aggregator key, the members' keys and the factor served, the checks
re-verify the whole hash chain and every signature (aggregator and members), find the round behind
the factor, verify the signed spec, check that the factor served is the one logged, and recompute
the factor from the logged aggregate with ``protocols.stats.aggregate_statistics`` and
``protocols.factor.build_factor``. The log withholds the histogram and the sums of components
reported by fewer than ``min_participants`` firms; it keeps their reporter counts, so the check also
confirms that exactly the components the rule covers were withheld. Likewise for gases: the log
withholds the per-gas sums of the gases the gas-level rule merges and carries their sum instead
(``other_gases``), from which the factor's ``"other gases"`` and totals are recomputed.

The first thing that does not check out raises :class:`ProvenanceError` with the log sequence
number it concerns. Fetching over HTTP is ``pcf.verify``'s job; nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ValidationError

from protocols.canonical import Kind, digest
from protocols.disclosure import STAGES
from protocols.errors import AggregationError, InvalidSignature, ProtocolError
from protocols.factor import PublishedFactor, build_factor
from protocols.paillier.round_log import contribution_path
from protocols.spec import KIND_HIST, SignedSpec, spec_hash, vector_layout, verify_spec
from protocols.stats import OTHER_GASES, aggregate_statistics, merged_gases, withheld_slots
from protocols.translog import (
    AGGREGATE,
    CONTRIBUTION_RECEIPT,
    LEGACY_FORMAT,
    PUBLICATION,
    SPEC_PUBLISHED,
    STAGE,
    LogEntry,
    verify_chain,
)

__all__ = ["ProvenanceError", "VerifyReport", "check_chain", "check_factor", "document_hash"]

_FLOAT_REL_TOL = 1e-9
_DECIMAL = re.compile(r"-?[0-9]{1,60}(\.[0-9]{1,60})?")


class VerifyReport(BaseModel):
    """The outcome of verifying one published factor."""

    ok: bool
    factor_id: str
    version: str | None = None
    base_url: str
    aggregator_public_key: str | None = None
    round_id: str | None = None
    entries_checked: int = 0
    break_seq: int | None = None
    """Log sequence number of the first entry that does not check out (``None``: not tied to one entry)."""
    reason: str | None = None
    checks: list[str] = []
    """What was checked and held, in order."""
    unverified: list[str] = []
    """What the public log cannot prove (e.g. quantiles, whose histogram it withholds)."""


class ProvenanceError(ProtocolError):
    """A published factor does not check out against the log; ``seq`` names the entry concerned, if one."""

    def __init__(self, reason: str, seq: int | None = None):
        self.reason, self.seq = reason, seq
        super().__init__(reason)


def document_hash(factor: PublishedFactor) -> str:
    """The hash a publication log entry records for a factor document: its canonical digest (``Kind.FACTOR``)."""
    return digest(Kind.FACTOR, factor.model_dump(mode="json"))


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Paths where ``a`` (served) and ``b`` (recomputed) differ; floats compared to 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path} (length {len(a)} ≠ {len(b)})"
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from _diff(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        if not (math.isclose(a, float(b), rel_tol=_FLOAT_REL_TOL, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
            yield f"{path} (served {a!r}, recomputed {b!r})"
    elif a != b:
        yield f"{path} (served {str(a)[:80]!r}, recomputed {str(b)[:80]!r})"


def _decimal(text: Any) -> Fraction:
    """A logged decimal string as an exact fraction (plain digits only: no exponent to blow up)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise ValueError(f"{str(text)[:40]!r} is not a decimal string")
    return Fraction(text)


def _find(entries: Sequence[LogEntry], entry_type: str, **match: Any) -> list[LogEntry]:
    return [e for e in entries if e.type == entry_type and all(e.payload.get(k) == v for k, v in match.items())]


def check_chain(
    entries: Sequence[LogEntry], aggregator_public_key: str, member_keys: Mapping[str, str], report: VerifyReport
) -> None:
    """Check the whole log (sequence, links, hashes, every signature); record it in ``report``.

    Raises
    ------
    ProvenanceError
        At the first entry that breaks, with its sequence number.
    """
    report.entries_checked = len(entries)
    broken = verify_chain(entries, aggregator_public_key, member_keys)
    if broken is not None:
        raise ProvenanceError(broken.reason, broken.seq)
    report.checks.append(f"hash chain and signatures of {len(entries)} log entries")


def _check_stages(entries: Sequence[LogEntry], round_id: str, n: int, agg: LogEntry, report: VerifyReport) -> None:
    """The round's disclosure stages (``protocols.disclosure``), as logged before its aggregate: each once, in order, each proceeding over ``n``."""
    stages = [e for e in _find(entries, STAGE, round_id=round_id) if e.seq < agg.seq]
    names = [str(e.payload.get("stage")) for e in stages]
    if names != [str(s) for s in STAGES]:
        raise ProvenanceError(
            f"round {round_id!r} logs the stages {names} before its aggregate; expected {[str(s) for s in STAGES]}", agg.seq
        )
    for e in stages:
        if e.payload.get("decision") != "proceed" or e.payload.get("n") != n:
            raise ProvenanceError(
                f"stage {e.payload.get('stage')} of round {round_id!r} was logged as {e.payload.get('decision')!r} over "
                f"{e.payload.get('n')} firms; a published round proceeds through every stage over its n = {n}",
                e.seq,
            )
    report.checks.append(
        f"the round's four disclosure stages logged in order, each proceeding over the same {n} firms "
        f"(seq {', '.join(str(e.seq) for e in stages)})"
    )
    report.unverified.append(
        "the p %-rule's share bits (dominance and cells stages): the log carries salted commitments to their sums, "
        "which the association can open to an auditor; the public cannot check them"
    )


def check_factor(
    entries: Sequence[LogEntry], aggregator_public_key: str, factor: PublishedFactor, report: VerifyReport
) -> None:
    """Check a factor against a log :func:`check_chain` accepted: its publication, spec, aggregate and numbers.

    Parameters
    ----------
    entries
        The whole log, already checked by :func:`check_chain`.
    aggregator_public_key
        The key the log is signed with (the spec must be signed by it too).
    factor
        The factor as served.
    report
        Filled with the round, what was checked and what the public log cannot prove.

    Raises
    ------
    ProvenanceError
        The first thing that does not check out, with the log sequence number it concerns.
    """
    report.version = factor.version
    publications = _find(entries, PUBLICATION, factor_id=factor.factor_id, version=factor.version)
    if not publications:
        raise ProvenanceError(f"no publication entry in the log for factor {factor.factor_id} version {factor.version}")
    pub = publications[-1]
    if pub.format == LEGACY_FORMAT:
        raise ProvenanceError(
            f"factor {factor.factor_id} version {factor.version} was published by release 0.1 (log format 0): the log "
            "chain verifies, but its spec, document and factor were hashed with the 0.1 encoding, which this version "
            "does not recompute",
            pub.seq,
        )
    if document_hash(factor) != pub.payload.get("document_hash"):
        raise ProvenanceError(
            f"the served factor document differs from the one logged at seq {pub.seq} (document hash mismatch)", pub.seq
        )
    report.checks.append(f"served factor matches the publication entry at seq {pub.seq}")

    round_id = str(pub.payload.get("round_id"))
    report.round_id = round_id
    specs = [e for e in _find(entries, SPEC_PUBLISHED, round_id=round_id) if e.seq < pub.seq]
    if not specs:
        raise ProvenanceError(f"no spec publication for round {round_id!r} before the factor's publication", pub.seq)
    spec_entry = specs[0]
    try:
        signed = SignedSpec.model_validate_json(str(spec_entry.payload["signed_spec"]))
        spec = verify_spec(signed, aggregator_public_key, validate=False)
    except (KeyError, ValidationError, InvalidSignature, ValueError):
        raise ProvenanceError(
            f"the spec of round {round_id!r} is malformed or not signed by the aggregator", spec_entry.seq
        ) from None
    if spec_hash(spec) != spec_entry.payload.get("spec_hash"):
        raise ProvenanceError("the logged spec hash does not match the signed spec", spec_entry.seq)
    report.checks.append(f"round {round_id!r} spec signed by the aggregator (seq {spec_entry.seq})")

    aggregates = [e for e in _find(entries, AGGREGATE, round_id=round_id) if e.seq < pub.seq]
    if len(aggregates) != 1:
        raise ProvenanceError(f"expected one aggregate entry for round {round_id!r}, found {len(aggregates)}", pub.seq)
    agg = aggregates[0]
    if agg.payload.get("spec_hash") != spec_entry.payload.get("spec_hash"):
        raise ProvenanceError("the aggregate names another spec than the round's", agg.seq)
    try:
        n = int(agg.payload["n"])
        shown = list(agg.payload["summed"])
        withheld = set(agg.payload.get("withheld") or [])
        hashes = list(agg.payload.get("contributions") or [])
        logged_other = agg.payload.get("other_gases")
        other_gases = None if logged_other is None else _decimal(logged_other["sum"])
        logged_merged = None if logged_other is None else [str(g) for g in logged_other["gases"]]
        dominated = [str(c) for c in agg.payload.get("dominated") or []]
    except (KeyError, TypeError, ValueError):
        raise ProvenanceError(
            "the aggregate entry lacks n, summed or contributions, or its other_gases is malformed", agg.seq
        ) from None
    if spec.protocol == "paillier":
        # One receipt per member and disclosure stage (the member-signed path names the stage), every
        # stage from the screen's members; the aggregate lists every stage's contributions.
        receipts = [e for e in _find(entries, CONTRIBUTION_RECEIPT, round_id=round_id) if e.seq < agg.seq]
        by_stage: dict[str, list[str]] = {}
        for e in receipts:
            stage = next((str(s) for s in STAGES if e.payload.get("path") == contribution_path(round_id, str(s))), None)
            if stage is None:
                raise ProvenanceError(f"a contribution receipt of round {round_id!r} names no stage's path", e.seq)
            by_stage.setdefault(stage, []).append(str(e.payload.get("member")))
        cohort = sorted(by_stage.get(str(STAGES[0]), []))
        for stage, members in by_stage.items():
            if len(set(members)) != len(members):
                raise ProvenanceError(
                    f"a member has two contribution receipts for stage {stage} of round {round_id!r}", agg.seq
                )
            if sorted(members) != cohort:
                raise ProvenanceError(
                    f"stage {stage} of round {round_id!r} has receipts from other members than the screen's", agg.seq
                )
        if (sorted(str(e.payload.get("contribution_hash")) for e in receipts) != sorted(map(str, hashes))
                or len(cohort) != n):
            raise ProvenanceError(
                f"the aggregate counts n = {n} contributions, which do not match the {len(cohort)} members' receipts of "
                f"round {round_id!r}",
                agg.seq,
            )
        report.checks.append(
            f"n = {n} matches the round's countersigned receipts, one per member and stage ({len(receipts)} in all)"
        )
    if factor.provenance.transparency_log_entry != agg.entry_hash or factor.provenance.round_id != round_id:
        raise ProvenanceError("the factor's provenance does not name the round's aggregate entry", pub.seq)

    slots = vector_layout(spec)
    if len(shown) != len(slots):
        raise ProvenanceError(
            f"the logged aggregate has {len(shown)} values; the spec's layout has {len(slots)}", agg.seq
        )
    filled: list[int | None] = []
    first_bin = True
    try:
        for slot, value in zip(slots, shown, strict=True):
            if slot.kind == KIND_HIST and slot.name in withheld:
                filled.append(n if first_bin else 0)  # any histogram summing to n; quantiles are not compared
                first_bin = False
            else:
                filled.append(None if value is None else int(value))
        # The component and gas rules, recomputed from the logged reporter counts: what they cover
        # must be withheld (else the log discloses a few firms' values), and nothing else may be.
        must = set(withheld_slots(spec, filled, dominated))
        merged = merged_gases(spec, filled, dominated)
    except (AggregationError, TypeError, ValueError) as exc:
        raise ProvenanceError(f"the logged aggregate is malformed: {exc}", agg.seq) from None
    _check_stages(entries, round_id, n, agg, report)
    shown_anyway = [s.name for s, v in zip(slots, filled, strict=True) if s.name in must and v is not None]
    if shown_anyway:
        raise ProvenanceError(
            f"the logged aggregate shows slots of components or gases reported by fewer than {spec.min_participants} "
            f"firms, which the disclosure rules withhold: {', '.join(shown_anyway[:5])}",
            agg.seq,
        )
    if (logged_merged or []) != merged:
        raise ProvenanceError(
            f"the logged aggregate merges the gases {logged_merged or []} into {OTHER_GASES!r}, but the gas-level rule "
            f"on the logged reporter counts merges {merged}",
            agg.seq,
        )
    try:
        # refuses a withheld slot the rules do not cover, and a merged sum that contradicts shown slots
        stats = aggregate_statistics(spec, filled, n, other_gases=other_gases, dominated=dominated)
    except AggregationError as exc:
        raise ProvenanceError(f"the logged aggregate is inconsistent: {exc}", agg.seq) from None
    if not stats.disclosure.publish:
        raise ProvenanceError(
            f"the logged aggregate fails the disclosure rule {stats.disclosure.rule}; it must not be published", pub.seq
        )
    try:
        rebuilt = build_factor(
            spec,
            stats,
            factor.version,
            None,
            factor.library_level,
            log_entry_hash=agg.entry_hash,
            now=factor.published_at,
        )
    except (ProtocolError, ValueError) as exc:
        raise ProvenanceError(f"the factor cannot be rebuilt from the logged aggregate: {exc}", pub.seq) from None
    served = factor.model_dump(mode="python")
    expected = rebuilt.model_dump(mode="python")
    expected["provenance"]["supersedes"] = served["provenance"]["supersedes"]  # needs the previous version
    if any(slot.kind == KIND_HIST for slot in slots if slot.name in withheld):
        expected["distribution"]["quantiles"] = served["distribution"]["quantiles"]
        report.unverified.append("distribution.quantiles (the public log withholds the histogram)")
    gas_slots = {f"wF[{g}]" for g in merged}
    if must - gas_slots:
        names = ", ".join(c.name_en for c in stats.withheld)
        report.unverified.append(
            f"withheld components ({names}): reported by fewer than {spec.min_participants} firms, so the log "
            f"withholds their slots ({', '.join(sorted(must - gas_slots))}) and nothing is published about them"
        )
    if dominated:
        report.unverified.append(
            f"cells withheld by the p %-rule ({', '.join(dominated)}): the decision rests on the cohort's summed "
            "share bits, which the log commits to (stage entries) but does not show"
        )
    if merged and not any(c.startswith("wF[") for c in dominated):
        report.unverified.append(
            f"withheld gases ({', '.join(stats.footprint.withheld_gases)}): emitted by fewer than "
            f"{spec.min_participants} firms, so the log withholds the per-gas sums of {', '.join(merged)} "
            f"({', '.join(sorted(gas_slots))}) and nothing is published about them one by one; their sum, "
            f"published as {OTHER_GASES!r}, was recomputed from the logged other_gases"
        )
    diffs = list(_diff(served, expected))
    if diffs:
        raise ProvenanceError(
            f"the served factor differs from the one recomputed from the logged aggregate: {'; '.join(diffs[:5])}",
            pub.seq,
        )
    report.checks.append("every published number recomputed from the logged aggregate")
