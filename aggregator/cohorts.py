"""Cohorts of published factor versions: record who is behind each, refuse a publication that differences against them.

Two publications of the same scope from cohorts of 4 and 3 firms subtract to the fourth firm's
values on every slot. So the aggregator records the certified cohort of every published version
(:func:`record_cohort`, in the publishing transaction) and refuses a new version, or a factor of an
overlapping scope (same product, one region containing the other, overlapping reference periods:
:func:`scopes_overlap`), whose cohort differs from a recorded one by fewer than ``k`` firms
(:func:`cohort_conflict`), where ``k`` is the larger ``min_participants`` of the two rounds and
never below :data:`MIN_COHORT_DIFFERENCE`. A re-run over the same firms (difference 0) is allowed:
it reveals only how the group's total changed.

Pairs are not the whole story: versions from cohorts ``{a..f}``, ``{a,b,c}`` and ``{d,e,f,g}``
differ pairwise by 3 or more firms, yet ``v3 - (v1 - v2)`` is firm ``g`` alone. So the check also
asks whether any sum over fewer than ``k`` firms lies in the linear span of the overlapping
cohorts once the new one is added, and was not there before (:mod:`aggregator.differencing`: exact
rational arithmetic over the cohorts' atoms, the groups of firms that are in exactly the same
cohorts; when ``k >= 4`` and there are too many groups to test, the round is refused). Overlapping
scopes are treated as if they summed the same values, which is conservative: a firm's contribution
to ``CN`` 2025 and to ``CN-YN`` H2 2025 differ, so their difference reveals less than the rule assumes.

What one insider learns is not covered separately: with a difference of ``d >= k`` firms, a firm
inside it learns the sum of the other ``d - 1 >= 2``, never one firm's values. Member ids stay in the
aggregator's database; the public API shows each version's cohort size only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from aggregator.differencing import TooManyToCheck, newly_determined
from aggregator.round_context import row_spec
from aggregator.store import FactorCohortRow, Transaction
from protocols.spec import RoundSpec

__all__ = [
    "MIN_COHORT_DIFFERENCE",
    "Scope",
    "cohort_conflict",
    "contributing_members",
    "members_of_nodes",
    "record_cohort",
    "regions_overlap",
    "scope_of",
    "scopes_overlap",
]

MIN_COHORT_DIFFERENCE: Final = 3
"""The smallest difference between two overlapping cohorts that is ever published (the floor of ``min_participants``)."""


@dataclass(frozen=True)
class Scope:
    """What a round's factor covers, as far as overlapping publications are concerned."""

    reference_flow: str
    region: str
    start: date
    end: date
    min_participants: int


def scope_of(spec: RoundSpec) -> Scope:
    """The scope of ``spec``: its product's reference flow, region, reference period and ``min_participants``."""
    return Scope(
        reference_flow=spec.product.reference_flow.lower(),
        region=spec.region.upper(),
        start=spec.reference_period.start,
        end=spec.reference_period.end,
        min_participants=spec.min_participants,
    )


def _row_scope(row: FactorCohortRow) -> Scope:
    return Scope(row.reference_flow, row.region, row.period_start, row.period_end, row.min_participants)


def regions_overlap(a: str, b: str) -> bool:
    """Whether one ISO 3166 region contains the other (or they are equal), by their ``-`` parts.

    ``CN`` contains ``CN-YN``, which contains ``CN-YN-KM``; ``CN-YN`` and ``CN-SC`` do not overlap.
    """
    pa, pb = a.strip().upper().split("-"), b.strip().upper().split("-")
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def _overlap(a: Scope, b: Scope) -> bool:
    return (
        a.reference_flow == b.reference_flow
        and regions_overlap(a.region, b.region)
        and a.start <= b.end
        and b.start <= a.end
    )


def scopes_overlap(a: RoundSpec, b: RoundSpec) -> bool:
    """Whether two rounds' factors overlap: same product, one region containing the other, periods sharing a day."""
    return _overlap(scope_of(a), scope_of(b))


def _member_set(members: Sequence[str]) -> frozenset[str]:
    ids = [str(m).strip() for m in members]
    seen = frozenset(ids)
    if len(seen) != len(ids):
        twice = sorted({m for m in ids if ids.count(m) > 1})
        raise ValueError(f"cohort members: {', '.join(twice)} appear more than once; a cohort lists each member once")
    return seen


def _firm_keys(tx: Transaction) -> dict[str, str]:
    """Member id -> the firm it is: its USCC when certified, else the member id itself.

    A firm re-enrolled after revocation gets a new member id and must not count as a new firm.
    """
    return {str(m.id): f"uscc:{m.uscc}" if m.uscc else str(m.id) for m in tx.list_members()}


def _sort_key(member_id: str) -> tuple[int, str]:
    return (len(member_id), member_id)  # decimal ids in numeric order


def _describe(row: FactorCohortRow) -> str:
    return (
        f"factor {row.factor_id!r} revision {row.version} (round {row.round_id!r}, region {row.region}, "
        f"{row.period_start}/{row.period_end}, cohort of {row.size} firm(s))"
    )


def cohort_conflict(tx: Transaction, spec: RoundSpec, members: Sequence[str]) -> str | None:
    """Why publishing ``spec``'s factor from ``members`` would let published versions be differenced, or ``None``.

    Parameters
    ----------
    tx
        The caller's transaction. The check takes the log's lock (``Transaction.lock_log``, which every
        publication takes), so no version is published between it and the end of that transaction.
    spec
        The round about to publish.
    members
        The cohort whose values the round's sums hold: aggregator member ids (``member.id``).
        Cohorts are compared firm by firm: members holding the same USCC are one firm.

    Returns
    -------
    str | None
        A message naming the recorded version the cohort differs from by ``0 < d < k`` firms
        (``k``: the larger ``min_participants`` of the two rounds, at least
        :data:`MIN_COHORT_DIFFERENCE`), or the versions with which it would determine a sum over
        fewer than ``k`` firms; ``None`` when the factor may be published. Versions of the same
        round are skipped (a check repeated after :func:`record_cohort` finds nothing).

    Raises
    ------
    ValueError
        When a member id appears twice.
    """
    scope = scope_of(spec)
    tx.lock_log()
    firm = _firm_keys(tx)
    new = frozenset(firm.get(m, m) for m in _member_set(members))
    rows = [
        r
        for r in tx.list_factor_cohorts(scope.reference_flow)
        if r.round_id != spec.round_id and _overlap(scope, _row_scope(r))
    ]
    cohorts = [frozenset(firm.get(m, m) for m in json.loads(r.members)) for r in rows]
    for row, old in zip(rows, cohorts, strict=True):
        k = max(MIN_COHORT_DIFFERENCE, spec.min_participants, row.min_participants)
        d = len(new ^ old)
        if 0 < d < k:
            return (
                f"round {spec.round_id!r} (cohort of {len(new)} firm(s)) overlaps {_describe(row)} and its cohort "
                f"differs from it by {d} firm(s), fewer than {k} (min_participants): the difference of the two "
                f"publications would be the values of {d} firm(s); accepted: the same cohort, or one that differs "
                f"by at least {k} firms"
            )
    if not rows:
        return None  # nothing to difference against (a cohort's own size is the min_participants rule's)
    k = max([MIN_COHORT_DIFFERENCE, spec.min_participants, *(r.min_participants for r in rows)])
    return _combination_conflict(spec, new, rows, cohorts, k)


# ---------------------------------------------------------------------------- combinations of versions

_NAMED: Final = 5
"""How many of the versions a combination uses a refusal names."""


def _combination_conflict(
    spec: RoundSpec,
    new: frozenset[str],
    rows: Sequence[FactorCohortRow],
    cohorts: Sequence[frozenset[str]],
    k: int,
) -> str | None:
    """A total over fewer than ``k`` firms that the recorded versions and the new one determine together (not apart)."""
    try:
        found = newly_determined(cohorts, new, k, own_minimum=max(MIN_COHORT_DIFFERENCE, spec.min_participants))
    except TooManyToCheck as exc:
        return (
            f"round {spec.round_id!r}: its cohort and the {len(rows)} overlapping published versions form {exc} "
            "to check for differencing; refused rather than published unchecked"
        )
    if found is None:
        return None
    used = [rows[i] for i in found.cohorts]
    if not used:
        return (
            f"round {spec.round_id!r} would publish the total of {found.firms} firm(s) on its own, fewer than {k} "
            "(min_participants)"
        )
    named = "; ".join(_describe(r) for r in used[:_NAMED])
    if len(used) > _NAMED:
        named += f"; and {len(used) - _NAMED} more version(s)"
    return (
        f"round {spec.round_id!r} (cohort of {len(new)} firm(s)) combined with {named} would determine the "
        f"values of {found.firms} firm(s), fewer than {k} (min_participants): a combination of the publications' "
        "totals is those firms' total; accepted: the same cohort as a published version, or one whose differences "
        f"with them leave no group of fewer than {k} firms"
    )


# ---------------------------------------------------------------------------------------- recording


def record_cohort(
    tx: Transaction, factor_id: str, revision: int, round_id: str, members: Sequence[str], *, now: datetime
) -> None:
    """Record the cohort behind ``factor_id`` revision ``revision``, published by ``round_id`` (in the caller's transaction).

    The scope is read from the round's signed spec and stored with the cohort; ``now`` is the
    publication time.

    Raises
    ------
    ValueError
        When a member id appears twice, is not a decimal member id, or the cohort is empty.
    aggregator.errors.NotFound
        When the round or a member does not exist.
    aggregator.errors.Conflict
        When that version already has a recorded cohort.
    """
    ids = sorted(_member_set(members), key=_sort_key)
    if not ids:
        raise ValueError(f"factor {factor_id!r} revision {revision}: a cohort has at least one member")
    for m in ids:
        if not (m.isascii() and m.isdigit()):
            raise ValueError(f"cohort member {m!r}: accepted: a member id (member.id) as a decimal string")
        tx.get_member(int(m))
    round_row = tx.get_round(round_id)
    scope = scope_of(row_spec(round_row).spec)
    tx.add_factor_cohort(
        FactorCohortRow(
            factor_id=factor_id,
            version=revision,
            round_id=round_id,
            members=json.dumps(ids),
            size=len(ids),
            reference_flow=scope.reference_flow,
            region=scope.region,
            period_start=scope.start,
            period_end=scope.end,
            min_participants=scope.min_participants,
            created_at=now,
        )
    )


def contributing_members(tx: Transaction, round_id: str) -> list[str]:
    """The cohort of a ``paillier`` round: the member ids of its stored contributions."""
    return sorted({str(c.member_id) for c in tx.list_contributions(round_id)}, key=_sort_key)


def members_of_nodes(tx: Transaction, node_ids: Iterable[int | str]) -> list[str]:
    """The cohort of a ``secagg`` round: the member ids of the SuperNodes whose inputs the sum holds.

    Raises
    ------
    ValueError
        When a node id belongs to no member (the runner's contributors must be roster members).
    """
    by_node = {m.flower_node_id: m.id for m in tx.list_members() if m.flower_node_id is not None}
    wanted = [str(n) for n in node_ids]
    unknown = [n for n in wanted if n not in by_node]
    if unknown:
        raise ValueError(f"SuperLink node id(s) {', '.join(unknown)} belong to no member; a cohort holds members only")
    return sorted({str(by_node[n]) for n in wanted}, key=_sort_key)
