"""A lying firm's crafted vector: its pull on the published means stays within the closed-form bound, and inconsistent sums are refused."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from fractions import Fraction

import pytest
from example_round import FirmInput, example_firms, example_spec

from protocols.contribution import build_contribution
from protocols.errors import AggregationError
from protocols.spec import KIND_COUNT, KIND_N, KIND_W, KIND_WF, KIND_WX, RoundSpec, Slot, vector_layout
from protocols.stats import AggregateStatistics, aggregate_statistics

SPEC = example_spec(statistics=["weighted_mean", "footprint_weighted_mean"])
SLOTS = vector_layout(SPEC)
HONEST = example_firms(SPEC)[:3]
LIAR_TRUTH = example_firms(SPEC)[3]
N = len(HONEST) + 1
ELECTRICITY = next(c.flow for c in SPEC.components if c.name_en == "AC electricity")


def _ints(spec: RoundSpec, firm: FirmInput, weight: float | None = None) -> list[int]:
    return build_contribution(spec, firm.values, firm.weight if weight is None else weight, firm.footprint_by_gas).ints


HONEST_SUM = [sum(col) for col in zip(*(_ints(SPEC, f) for f in HONEST), strict=True)]
BASELINE = aggregate_statistics(SPEC, HONEST_SUM, len(HONEST))
LIAR_W = statistics.median(f.weight for f in HONEST)
LIAR_INTS = _ints(SPEC, LIAR_TRUTH, LIAR_W)


def _index(kind: str, *, flow: str | None = None, gas: str | None = None) -> int:
    """The slot of ``kind`` for a component flow or a gas, looked up by kind (layouts change; never by position)."""
    for i, s in enumerate(SLOTS):
        if s.kind != kind:
            continue
        if flow is not None and (s.component is None or SPEC.components[s.component].flow != flow):
            continue
        if gas is not None and s.gas != gas:
            continue
        return i
    raise KeyError((kind, flow, gas))


def _with_liar(liar: list[int]) -> list[int]:
    return [h + v for h, v in zip(HONEST_SUM, liar, strict=True)]


def _mean(stats: AggregateStatistics, flow: str) -> Fraction:
    c = next(c for c in stats.components if c.flow == flow)
    assert c.weighted_mean is not None
    return Fraction(c.weighted_mean)


def _footprint(stats: AggregateStatistics) -> Fraction:
    assert stats.footprint.weighted_mean is not None
    return Fraction(stats.footprint.weighted_mean)


def _weighted_slots(flow: str | None) -> list[Slot]:
    """The slots whose sum over the firms divided by Σw is the mean of ``flow`` (``None``: the footprint)."""
    if flow is None:
        return [SLOTS[_index(KIND_WF, gas=g)] for g in SPEC.footprint.gases]
    return [SLOTS[_index(KIND_WX, flow=flow)]]


def test_consistent_liar_at_the_bound_moves_the_mean_by_the_closed_form() -> None:
    # Prepare: a vector the honest node itself builds, from electricity at its plausibility bound
    values = dict(LIAR_TRUTH.values) | {ELECTRICITY: SPEC.components[2].bound}
    assert SPEC.components[2].flow == ELECTRICITY
    liar = build_contribution(SPEC, values, LIAR_W, LIAR_TRUTH.footprint_by_gas).ints

    # Execute
    stats = aggregate_statistics(SPEC, _with_liar(liar), N)

    # Assert: shift = w_L (x_L - m) / (W + w_L), exactly to float rounding
    m, w = _mean(BASELINE, ELECTRICITY), Fraction(BASELINE.production)
    closed = Fraction(LIAR_W) * (Fraction(SPEC.components[2].bound) - m) / (w + Fraction(LIAR_W))
    assert float(_mean(stats, ELECTRICITY) - m) == pytest.approx(float(closed), rel=1e-9)
    assert closed / m > Fraction(1, 2)  # the honest node accepts a lie that moves the factor by half


def _draw(rng: random.Random) -> tuple[list[int], str]:
    """A crafted liar vector: ``w`` and every weighted slot drawn within the slot bound, the aggregate's limit, or beyond."""
    vec = list(LIAR_INTS)
    zone = rng.choice(("slot", "aggregate", "beyond"))
    for i, s in enumerate(SLOTS):
        if s.kind not in (KIND_W, KIND_WX, KIND_WF):
            continue
        reach = {"slot": s.bound_int, "aggregate": N * s.bound_int - HONEST_SUM[i], "beyond": 4 * N * s.bound_int}[zone]
        if s.kind == KIND_W:
            low = 1
        elif zone == "beyond" or s.signed:
            low = -reach
        else:  # negative in a non-negative slot, as far as the honest sums cancel it
            low = -min(reach, HONEST_SUM[i])
        vec[i] = rng.randint(low, max(low, reach))
    return vec, zone


@pytest.mark.parametrize(
    "flow", [None, *(c.flow for c in SPEC.components)], ids=["footprint", *(c.name_en for c in SPEC.components)]
)
def test_crafted_liar_never_moves_a_mean_beyond_the_closed_form_bound(flow: str | None) -> None:
    # Prepare: 90 crafted vectors per statistic (seeded), a third of them beyond what the aggregate admits
    rng = random.Random(20261202 + sum(map(ord, flow or "")))
    read: Callable[[AggregateStatistics], Fraction] = _footprint if flow is None else (lambda st: _mean(st, flow))
    m = read(BASELINE)
    refused = published = 0

    for _ in range(90):
        liar, zone = _draw(rng)
        # Execute
        try:
            stats = aggregate_statistics(SPEC, _with_liar(liar), N)
        except AggregationError:
            refused += 1
            continue
        published += 1
        # Assert: mean <= Σ_slots N·bound_int / (scale·Σw), >= 0 (non-negative slots): the checks' closed form
        production = Fraction(stats.production)
        limit = sum((Fraction(N * s.bound_int) / s.scale for s in _weighted_slots(flow)), Fraction(0)) / production
        shift = read(stats) - m
        assert -m * (1 + Fraction(1, 10**9)) <= shift <= (limit - m) * (1 + Fraction(1, 10**9)), (
            zone,
            float(shift / m),
        )
        if zone == "slot":  # within its own slot bounds: (S_L - w_L m) / (W + w_L) with S_L <= Σ bound_int / scale
            w_l = production - Fraction(BASELINE.production)
            own = sum((Fraction(s.bound_int) / s.scale for s in _weighted_slots(flow)), Fraction(0))
            assert shift <= (own - w_l * m) / production * (1 + Fraction(1, 10**9))

        # and, since the aggregate checks that every mean lies within its plausibility bound (C1 of
        # docs/input_validity.md), no admitted lie gives a mean beyond it
        cap = Fraction(SPEC.footprint.bound) if flow is None else Fraction(next(c.bound for c in SPEC.components if c.flow == flow))
        assert read(stats) <= cap * (1 + Fraction(1, 10**9))

    # Assert: lies were refused (the checks bite); admitted ones, where any, stayed within both bounds
    assert refused > 0


def _liar_with(kind: str, value: Callable[[int], int], **where: str) -> list[int]:
    liar = list(LIAR_INTS)
    i = _index(kind, **where)
    liar[i] = value(i)
    return liar


@pytest.mark.parametrize(
    ("case", "liar"),
    [
        ("negative sum in a non-negative wx slot", _liar_with(KIND_WX, lambda i: -HONEST_SUM[i] - 1, flow=ELECTRICITY)),
        ("negative sum in a non-negative wF slot", _liar_with(KIND_WF, lambda i: -HONEST_SUM[i] - 1, gas="CO2")),
        (
            "wx sum beyond n times its slot bound",
            _liar_with(KIND_WX, lambda i: N * SLOTS[i].bound_int, flow=ELECTRICITY),
        ),
        ("count slot 2: sums to n + 1", _liar_with(KIND_COUNT, lambda i: 2)),
        ("count slot 0: sums to n - 1", _liar_with(KIND_COUNT, lambda i: 0)),
        ("reporter slot 2: more reporters than firms", _liar_with(KIND_N, lambda i: 2, flow=ELECTRICITY)),
        ("negative production cancelling the honest ones", _liar_with(KIND_W, lambda i: -HONEST_SUM[i])),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_inconsistent_liar_is_refused(case: str, liar: list[int]) -> None:
    # Execute / Assert
    with pytest.raises(AggregationError):
        aggregate_statistics(SPEC, _with_liar(liar), N)
