"""The differencing search: which totals over few firms a family of cohorts determines, against brute force."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from fractions import Fraction

import pytest

from aggregator import differencing
from aggregator.differencing import Disclosure, TooManyToCheck, newly_determined


def rank(rows: Sequence[Sequence[Fraction]]) -> int:
    work = [list(r) for r in rows]
    r = 0
    for c in range(len(work[0]) if work else 0):
        p = next((i for i in range(r, len(work)) if work[i][c] != 0), None)
        if p is None:
            continue
        work[r], work[p] = work[p], work[r]
        for i in range(r + 1, len(work)):
            f = work[i][c] / work[r][c]
            work[i] = [a - f * b for a, b in zip(work[i], work[r], strict=True)]
        r += 1
    return r


def brute_force(old: Sequence[frozenset[str]], new: frozenset[str], k: int) -> bool:
    """Whether some set of fewer than ``k`` firms has a total the family determines with ``new`` and not without.

    Over firms, not atoms: ``dim(R ∩ E_A) = rank(M) + |A| - rank(M + e_A)`` for every set ``A``.
    """
    firms = sorted(new.union(*old))

    def rows(cohorts: Sequence[frozenset[str]]) -> list[list[Fraction]]:
        return [[Fraction(int(f in c)) for f in firms] for c in cohorts]

    def gain(cohorts: Sequence[frozenset[str]], group: Sequence[int]) -> int:
        m = rows(cohorts)
        units = [[Fraction(int(j == i)) for j in range(len(firms))] for i in group]
        return rank(m) + len(group) - rank([*m, *units])

    return any(
        gain([*old, new], group) > gain(old, group)
        for size in range(1, k)
        for group in itertools.combinations(range(len(firms)), size)
    )


def test_three_versions_that_combine_to_one_firm() -> None:
    v1, v2, v3 = frozenset("abcdef"), frozenset("abc"), frozenset("defg")

    found = newly_determined([v1, v2], v3, 3)

    assert found == Disclosure(firms=1, cohorts=(0, 1))


def test_pairs_differing_by_one_or_by_two_firms() -> None:
    assert newly_determined([frozenset("abcd")], frozenset("abc"), 3) == Disclosure(firms=1, cohorts=(0,))
    assert newly_determined([frozenset("abcd")], frozenset("abce"), 3) == Disclosure(firms=2, cohorts=(0,))
    assert newly_determined([frozenset("abcd")], frozenset("abcd"), 3) is None
    assert newly_determined([frozenset("abcdef")], frozenset("abc"), 3) is None
    assert newly_determined([frozenset("abcdef")], frozenset("abc"), 4, own_minimum=3) == Disclosure(
        firms=3, cohorts=(0,)
    )


def test_the_new_rounds_own_total_is_judged_by_its_own_minimum() -> None:
    big = frozenset("abcdefghijklm")  # published under min_participants 10

    assert newly_determined([big], frozenset("nop"), 10, own_minimum=3) is None  # its own total: its rule
    assert newly_determined([big], frozenset("nop"), 10) == Disclosure(firms=3, cohorts=())  # default: k
    assert newly_determined([big], frozenset("abc"), 10, own_minimum=3) is None  # the other 10 firms: enough
    assert newly_determined([frozenset("abcdefghij")], frozenset("abc"), 10, own_minimum=3) == Disclosure(
        firms=7, cohorts=(0,)
    )  # the other 7 of a round that promised 10


def test_a_total_known_before_is_not_charged_to_the_new_cohort() -> None:
    # {a,b,c,d} - {a,b,c} already gives d (published before cohorts were checked); {e,f,g,h} adds nothing small.
    assert newly_determined([frozenset("abcd"), frozenset("abc")], frozenset("efgh"), 3) is None


@pytest.mark.parametrize("seed", range(40))
def test_the_search_agrees_with_brute_force_over_firms(seed: int) -> None:
    rng = random.Random(seed)
    firms = "abcdefghi"[: rng.randint(5, 9)]
    k = rng.choice([3, 4, 5])
    old = [frozenset(rng.sample(firms, rng.randint(k, len(firms)))) for _ in range(rng.randint(1, 5))]
    new = frozenset(rng.sample(firms, rng.randint(k, len(firms))))

    found = newly_determined(old, new, k)

    assert (found is not None) == brute_force(old, new, k), (old, new, k)
    if found is not None:
        assert 1 <= found.firms < k


@pytest.mark.parametrize("seed", range(10))
def test_without_the_sketch_every_group_is_tested_exactly_with_the_same_answer(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(100 + seed)
    firms = "abcdefghij"
    old = [frozenset(rng.sample(firms, rng.randint(5, 9))) for _ in range(4)]
    new = frozenset(rng.sample(firms, 6))
    with_sketch = newly_determined(old, new, 5)

    monkeypatch.setattr(differencing, "_sketches", lambda rows, k: None)

    assert newly_determined(old, new, 5) == with_sketch


def test_too_many_groups_to_test_is_refused_not_passed() -> None:
    rng = random.Random(7)
    firms = [str(i) for i in range(40)]
    old = [frozenset(rng.sample(firms, 25)) for _ in range(12)]

    with pytest.raises(TooManyToCheck, match="more than 100 groups of fewer than 8 firms"):
        newly_determined(old, frozenset(rng.sample(firms, 25)), 8, limit=100)
