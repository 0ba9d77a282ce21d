"""Which totals over few firms a family of cohorts determines once one more is published: exact linear algebra.

Each published version is a total over its cohort. Combining versions linearly (``v1 - v2``,
``v3 - (v1 - v2)``...) gives totals over other sets of firms; the set of combinations is the row
space ``R`` of the cohorts' 0/1 indicator matrix. Every indicator is constant on an *atom* (the
firms that are in exactly the same cohorts), so ``R`` lives on atoms, and a combination is the
total of a few firms exactly when it is a vector of ``R`` with small support.

With ``B`` a basis of ``R``'s orthogonal complement (the null space of the matrix, one row per
atom), the vectors of ``R`` supported on a set ``A`` of atoms are the linear dependencies among
``B``'s rows in ``A``. So: atom ``a``'s total is determined iff ``B[a] = 0``; the combination
``T(a) - l T(b)`` is iff ``B[a] = l B[b]``; larger sets are tested by rank. A new cohort discloses
something iff such a vector is in the new ``R`` and not in the old one.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

__all__ = ["MAX_GROUPS", "Disclosure", "TooManyToCheck", "newly_determined"]

MAX_GROUPS: Final = 50_000
"""How many groups of three or more atoms :func:`newly_determined` tests before it gives up (only when ``k >= 4``)."""

Vector = tuple[Fraction, ...]


@dataclass(frozen=True)
class Disclosure:
    """A combination of the cohorts' totals that is the total of fewer than ``k`` firms."""

    firms: int
    """How many firms the determined total covers (its support)."""
    cohorts: tuple[int, ...]
    """Indices of the earlier cohorts the combination uses (the new cohort is always used)."""


class TooManyToCheck(Exception):
    """More than :data:`MAX_GROUPS` groups of atoms would need a rank test."""


def _rref(rows: Sequence[Sequence[Fraction]]) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row echelon form (exact) and its pivot columns."""
    work = [list(r) for r in rows]
    width = len(work[0]) if work else 0
    pivots: list[int] = []
    r = 0
    for c in range(width):
        p = next((i for i in range(r, len(work)) if work[i][c] != 0), None)
        if p is None:
            continue
        work[r], work[p] = work[p], work[r]
        lead = work[r][c]
        work[r] = [v / lead for v in work[r]]
        for i in range(len(work)):
            if i != r and work[i][c] != 0:
                f = work[i][c]
                work[i] = [a - f * b for a, b in zip(work[i], work[r], strict=True)]
        pivots.append(c)
        r += 1
    return work[:r], pivots


def _rank(rows: Sequence[Sequence[Fraction]]) -> int:
    return len(_rref(rows)[1]) if rows and rows[0] else 0


def _null_rows(rows: Sequence[Sequence[Fraction]], width: int) -> list[Vector]:
    """Row ``a`` of a basis of the null space of ``rows`` (``width`` columns), for every column ``a``."""
    reduced, pivots = _rref(rows)
    free = [c for c in range(width) if c not in set(pivots)]
    out: list[Vector] = [()] * width
    for row, p in zip(reduced, pivots, strict=True):
        out[p] = tuple(-row[f] for f in free)
    for j, f in enumerate(free):
        out[f] = tuple(Fraction(int(i == j)) for i in range(len(free)))
    return out


def _gain(rows: Sequence[Vector], atoms: Sequence[int]) -> int:
    """The dimension of the totals supported on ``atoms`` that the space with null-space rows ``rows`` holds."""
    return len(atoms) - _rank([rows[a] for a in atoms])


_PRIME: Final = 2**61 - 1


def _sketches(rows: Sequence[Vector], k: int) -> list[list[int]] | None:
    """Each row mapped to ``k`` coordinates mod a prime by one fixed random linear map (``None`` if a denominator is 0 mod p).

    A linear map keeps every dependency among rows, so rows independent in the sketch are independent:
    the sketch only skips exact tests, it never hides a dependency.
    """
    if not rows or not rows[0]:
        return None
    draw = random.Random(727)  # fixed: the sketch decides nothing, so it needs no secrecy
    width = len(rows[0])
    projection = [[draw.randrange(_PRIME) for _ in range(k)] for _ in range(width)]
    out: list[list[int]] = []
    for row in rows:
        entries: list[int] = []
        for x in row:
            if x.denominator % _PRIME == 0:
                return None
            entries.append(x.numerator * pow(x.denominator, -1, _PRIME) % _PRIME)
        out.append([sum(e * p[j] for e, p in zip(entries, projection, strict=True) if e) % _PRIME for j in range(k)])
    return out


def _is_zero(v: Vector) -> bool:
    return not any(v)


def _normalised(v: Vector) -> tuple[Vector, Fraction]:
    lead = next(x for x in v if x != 0)
    return tuple(x / lead for x in v), lead


def _combination(matrix: Sequence[Sequence[Fraction]], atoms: Sequence[int], weights: Sequence[int]) -> Disclosure:
    """The cohorts (rows of ``matrix``, the new one last) whose combination is a total supported in ``atoms``."""
    width = len(matrix[0])
    units = [[Fraction(int(j == a)) for j in range(width)] for a in atoms]
    columns = [*matrix, *units]
    height = len(columns)
    # A null vector of the stacked rows with the new cohort's coefficient non-zero: x . M = y . E_A.
    transposed = [[columns[j][i] for j in range(height)] for i in range(width)]
    reduced, pivots = _rref(transposed)
    new = len(matrix) - 1
    for free in (j for j in range(height) if j not in set(pivots)):
        x = [Fraction(0)] * height
        x[free] = Fraction(1)
        for row, p in zip(reduced, pivots, strict=True):
            x[p] = -row[free]
        if x[new] != 0:
            firms = sum(weights[a] for a, y in zip(atoms, x[len(matrix) :], strict=True) if y != 0)
            return Disclosure(firms=firms, cohorts=tuple(i for i in range(new) if x[i] != 0))
    raise AssertionError("a newly determined total is a combination that uses the new cohort")


def newly_determined(
    old: Sequence[frozenset[str]],
    new: frozenset[str],
    k: int,
    *,
    own_minimum: int | None = None,
    limit: int = MAX_GROUPS,
) -> Disclosure | None:
    """A total over fewer than ``k`` firms that ``old`` and ``new`` determine together and ``old`` alone does not.

    Parameters
    ----------
    old
        The cohorts already published (sets of member ids).
    new
        The cohort about to be published.
    k
        The smallest number of firms a determined total may cover.
    own_minimum
        The new round's own ``min_participants`` (default ``k``): with at least that many firms,
        its own total (plus what was known) is what the round publishes, not a disclosure, even
        when it covers fewer than ``k`` firms. (Growth of the span by one cohort is at most one
        dimension, so a group holding the whole new cohort gains nothing else.)
    limit
        The most groups of three or more atoms tested by rank (singles and pairs are always tested).

    Returns
    -------
    Disclosure | None
        ``None`` when every total the publications determine, over fewer than ``k`` firms, was
        determined before.

    Raises
    ------
    TooManyToCheck
        When ``k >= 4`` and more than ``limit`` groups of atoms would need testing.
    """
    cohorts = [*old, new]
    everyone = sorted(new.union(*old))
    by_pattern: dict[tuple[bool, ...], int] = {}
    for m in everyone:
        key = tuple(m in c for c in cohorts)
        by_pattern[key] = by_pattern.get(key, 0) + 1
    patterns = list(by_pattern)
    weights = [by_pattern[p] for p in patterns]
    width = len(patterns)
    matrix = [[Fraction(int(p[i])) for p in patterns] for i in range(len(cohorts))]
    if _rank(matrix) == _rank(matrix[:-1]):
        return None  # the new total is a combination of published ones: nothing new is determined
    b_new = _null_rows(matrix, width)
    b_old = _null_rows(matrix[:-1], width)  # no earlier cohort: the identity (nothing determined)
    new_atoms = {a for a, p in enumerate(patterns) if p[-1]}
    own_total_allowed = len(new) >= (k if own_minimum is None else own_minimum)

    def own_total(group: Sequence[int]) -> bool:
        return own_total_allowed and new_atoms <= set(group)

    small = [a for a in range(width) if weights[a] < k]
    for a in small:  # one atom: its total is determined iff its row of B is zero
        if _is_zero(b_new[a]) and not _is_zero(b_old[a]) and not own_total([a]):
            return _combination(matrix, [a], weights)
    parallel: dict[Vector, list[tuple[int, Fraction]]] = {}
    for a in small:
        if not _is_zero(b_new[a]):
            direction, lead = _normalised(b_new[a])
            parallel.setdefault(direction, []).append((a, lead))
    for group in parallel.values():  # two atoms: T(a) - l T(b) is determined iff B[a] = l B[b]
        for (a, la), (b, lb) in itertools.combinations(group, 2):
            if weights[a] + weights[b] < k:
                ratio = la / lb
                if any(x != ratio * y for x, y in zip(b_old[a], b_old[b], strict=True)) and not own_total([a, b]):
                    return _combination(matrix, [a, b], weights)
    if k < 4:
        return None
    # Three atoms or more. An atom whose total was already determined adds nothing to a group's gain.
    candidates = [a for a in small if not (_is_zero(b_new[a]) and _is_zero(b_old[a]))]

    def discloses(group: Sequence[int]) -> bool:
        return not own_total(group) and _gain(b_new, group) > _gain(b_old, group)

    sketch = _sketches([b_new[a] for a in range(width)], k)
    found = _search(candidates, weights, k, sketch, discloses, limit)
    return _combination(matrix, found, weights) if found is not None else None


def _search(
    candidates: Sequence[int],
    weights: Sequence[int],
    k: int,
    sketch: Sequence[Sequence[int]] | None,
    discloses: Callable[[Sequence[int]], bool],
    limit: int,
) -> list[int] | None:
    """The first group of three or more ``candidates``, fewer than ``k`` firms in all, that ``discloses``.

    Depth-first over groups in index order. With a sketch, each group carries a basis of the
    annihilator of its rows' span in the sketch space, so adding a row tells in ``O(k^2)`` whether
    it is independent; only groups whose rows are dependent in the sketch get the exact test.
    """
    tested = 0

    def extend(
        start: int, group: list[int], weight: int, annihilator: list[list[int]], dependent: bool
    ) -> list[int] | None:
        nonlocal tested
        for i in range(start, len(candidates)):
            a = candidates[i]
            if weight + weights[a] >= k:
                continue
            tested += 1
            if tested > limit:
                raise TooManyToCheck(f"more than {limit} groups of fewer than {k} firms")
            grown, now_dependent = annihilator, True
            if sketch is not None and not dependent:
                dots = [sum(x * y for x, y in zip(n, sketch[a], strict=True)) % _PRIME for n in annihilator]
                j = next((j for j, d in enumerate(dots) if d), None)
                if j is not None:  # independent: the annihilator loses one dimension
                    now_dependent = False
                    grown = [
                        [(dots[j] * x - dots[i2] * y) % _PRIME for x, y in zip(n, annihilator[j], strict=True)]
                        for i2, n in enumerate(annihilator)
                        if i2 != j
                    ]
            members = [*group, a]
            if now_dependent and len(members) >= 3 and discloses(members):
                return members
            deeper = extend(i + 1, members, weight + weights[a], grown, now_dependent)
            if deeper is not None:
                return deeper
        return None

    identity = [[int(i == j) for j in range(k)] for i in range(k)]
    return extend(0, [], 0, identity, sketch is None)
