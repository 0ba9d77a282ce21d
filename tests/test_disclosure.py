"""Disclosure stages: the p %-rule on share bits, brackets, stage layouts, signed stage contexts, the staged round."""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import sqlite3
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from conftest import SHARED_DATA
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from example_round import FirmInput, example_firms, example_spec
from stage_runner import run_in_clear, stage_sum

from aggregator.round_outcome import stored_summed
from keys.identity import b64url_decode, b64url_encode
from protocols.canonical import Kind, encode
from protocols.contribution import build_contribution, footprint_from_components
from protocols.disclosure import (
    FOOTPRINT,
    FOOTPRINT_UNWEIGHTED,
    PRODUCTION,
    STAGES,
    ContextRejected,
    SignedStageContext,
    Stage,
    StageContext,
    StagedRound,
    bracket,
    cell_passes,
    check_context,
    indicators,
    read_screen,
    sign_context,
    spec_problems,
    split_stage_round_id,
    stage_round_id,
    stage_vector,
    verify_context,
)
from protocols.encoding import from_ring, ring_sum, to_ring
from protocols.errors import AggregationError
from protocols.spec import (
    ALL_STATISTICS,
    OTHER_GASES,
    RoundSpec,
    canonical_bytes,
    other_gases_slot,
    spec_hash,
    vector_layout,
)
from protocols.stats import aggregate_statistics, check_disclosure, other_gases_sum, staged_statistics, staged_summed

P = Fraction(1, 10)  # the default p %-rule's p
GRID = tuple(Fraction(m) for m in ("1", "1.25", "1.6", "2", "2.5", "3.2", "4", "5", "6.4", "8"))
GRID_VALUES = sorted(g * Fraction(10) ** k for k in range(-40, 41) for g in GRID)
GRID_SET = frozenset(GRID_VALUES)
RELEASE_01 = SHARED_DATA / "release-0.1" / "aggregator.db"


def _rows(spec: RoundSpec, firms: Sequence[FirmInput]) -> dict[str, list[int]]:
    """Each firm's full contribution integers, by firm name (what run_in_clear takes)."""
    return {f.name: build_contribution(spec, f.values, f.weight, f.footprint_by_gas).ints for f in firms}


def _with_production(spec: RoundSpec, tonnes: Sequence[float]) -> list[FirmInput]:
    """Firms with Smelter A's inputs per tonne and these productions: every cell has the production's shares."""
    a = example_firms(spec)[0]
    return [FirmInput(f"firm {i}", a.values, t, a.footprint_by_gas) for i, t in enumerate(tonnes)]


def _with_values(spec: RoundSpec, flow: str, by_firm: dict[str, float]) -> list[FirmInput]:
    """The example smelters with this component's value changed per firm, footprints recomputed from the background."""
    out = []
    for f in example_firms(spec):
        values = f.values | {flow: by_firm[f.name]}
        out.append(FirmInput(f.name, values, f.weight, footprint_from_components(spec, values)))
    return out


def _flow(spec: RoundSpec, name: str) -> str:
    return next(c.flow for c in spec.components if c.name_en == name)


def _full_sum(rows: dict[str, list[int]]) -> list[int]:
    """The slot-wise sum of the full contributions (what one secure sum of release 0.1 gave)."""
    return from_ring(ring_sum(to_ring(ints) for ints in rows.values()))


def _exact_p_rule(values: Sequence[Fraction], p: Fraction) -> bool:
    """The p %-rule itself: the total is safe iff ``X - x1 - x2 >= p·x1`` (x1 >= x2 the two largest)."""
    ordered = sorted((abs(v) for v in values), reverse=True) + [Fraction(0)]
    return sum(ordered) - ordered[0] - ordered[1] >= p * ordered[0]


# ---------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("megatonnes", "b", "m", "passes"),
    [
        ([3, 5, 2], 1, 3, True),  # 5 of 10 is above 1/(2+p) = 47.6 %, but all three hold at least p/(1+2p) = 8.3 %
        ([9, 0.5, 0.5], 1, 1, False),  # the second-largest knows the largest to within 0.5 Mt: 5.6 %
        ([5, 5, 0.05], 2, 2, False),  # two firms at 50 %: each knows the other's to 0.05 Mt
    ],
)
def test_the_production_cell_passes_or_stops_the_round_after_the_dominance_stage(
    megatonnes: list[float], b: int, m: int, passes: bool
) -> None:
    # Prepare
    spec = example_spec()
    rows = _rows(spec, _with_production(spec, [t * 1e6 for t in megatonnes]))

    # Execute
    staged = run_in_clear(spec, rows)

    # Assert
    assert staged.counts()[PRODUCTION] == {"b": b, "m": m}
    assert cell_passes(b, m) is passes
    assert _exact_p_rule([Fraction(t) for t in megatonnes], P) is passes
    if passes:
        assert staged.stopped is None and list(staged.sums) == list(STAGES) and staged.dominated == []
    else:
        assert staged.stopped is not None and (staged.stopped.rule, staged.stopped.cell) == ("dominance", PRODUCTION)
        assert list(staged.sums) == [Stage.SCREEN, Stage.DOMINANCE] and Stage.VALUES not in staged.sums
        assert staged.dominated == [PRODUCTION] and staged.next_stage() is None


def test_the_four_example_smelters_publish_every_cell() -> None:
    # Prepare
    spec = example_spec()
    rows = _rows(spec, example_firms(spec))

    # Execute
    staged = run_in_clear(spec, rows)
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)

    # Assert: the largest holds 44 % of production; every component, gas and the footprint pass
    assert staged.stopped is None and list(staged.sums) == list(STAGES) and staged.dominated == []
    counts = staged.counts()
    assert {PRODUCTION, FOOTPRINT} <= set(counts) and all(cell_passes(c["b"], c["m"]) for c in counts.values())
    assert {f"wx[{c.name_en}]" for c in spec.components} <= set(counts)
    assert {f"wF[{g}]" for g in spec.footprint.gases} <= set(counts)
    assert stats.disclosure.publish and stats.n == 4 and not stats.withheld


def test_the_rule_is_conservative_it_may_refuse_what_the_exact_rule_passes() -> None:
    # The module docstring's case: shares 0.60 and 0.05 × 8; the exact rule passes (100 - 60 - 5 >= 6).
    values = [Fraction(60)] + [Fraction(5)] * 8
    lo, hi = bracket(sum(values, Fraction(0)))
    bits = [indicators(v, lo, hi, P) for v in values]
    assert _exact_p_rule(values, P)
    assert (sum(b for b, _ in bits), sum(m for _, m in bits)) == (1, 1)
    assert not cell_passes(1, 1)


def test_whenever_a_cell_passes_the_exact_p_percent_rule_holds() -> None:
    # The sufficiency proof of the module docstring, on 2,000 seeded share vectors of 3 to 12 firms.
    rng = random.Random(20261202)
    passed_none_large = passed_three_protecting = refused = 0
    for case in range(2000):
        n = rng.randint(3, 12)
        p = Fraction(1, rng.choice([100, 20, 10, 8, 4, 2]))
        shape = case % 4
        if shape == 0:  # comparable firms
            raw = [rng.randint(1, 1000) for _ in range(n)]
        elif shape == 1:  # one large firm near the 1/(2+p) line
            raw = [rng.randint(400, 1200)] + [rng.randint(1, 200) for _ in range(n - 1)]
        elif shape == 2:  # magnitudes spread over six decades
            raw = [round(10 ** rng.uniform(0, 6)) for _ in range(n)]
        else:  # two large firms, the rest small, some zero
            small = [rng.choice([0, rng.randint(1, 150)]) for _ in range(n - 2)]
            raw = [rng.randint(300, 600), rng.randint(300, 600), *small]
        scale = Fraction(1, 10 ** rng.randint(0, 6))  # totals that are fractions, not whole numbers
        values = [Fraction(v) * scale for v in raw]
        lo, hi = bracket(sum(values, Fraction(0)))
        bits = [indicators(v, lo, hi, p) for v in values]
        b, m = sum(x for x, _ in bits), sum(y for _, y in bits)
        if cell_passes(b, m):
            assert _exact_p_rule(values, p), (values, p, b, m)
            if b == 0:
                passed_none_large += 1
            else:
                passed_three_protecting += 1
        else:
            refused += 1
    # both sufficient conditions, and refusals, were exercised
    assert passed_none_large >= 200 and passed_three_protecting >= 200 and refused >= 200


def test_indicators_bound_the_share_for_every_total_in_the_bracket() -> None:
    # b = 0 means a share <= 1/(2+p), m = 1 a share >= p/(1+2p), whatever total in [lo, hi) the firm was told
    rng = random.Random(11)
    for _ in range(2000):
        total = Fraction(rng.randint(1, 10**9), 10 ** rng.randint(0, 4))
        lo, hi = bracket(total)
        p = Fraction(1, rng.choice([100, 20, 10, 4, 2]))
        value = total * Fraction(rng.randint(0, 1000), 1000)
        b, m = indicators(value, lo, hi, p)
        for t in (lo, (lo + hi) / 2, hi - Fraction(1, 10**12)):  # any total the firm could be in
            if value <= t:
                assert b == 1 or value / t <= 1 / (2 + p), (value, t, p)
                assert m == 0 or value / t >= p / (1 + 2 * p), (value, t, p)
    # known answers at the two thresholds, p = 10 %
    lo, hi = bracket(Fraction(10_050_000))
    assert (lo, hi) == (Fraction(10_000_000), Fraction(12_500_000))
    assert indicators(Fraction(4_761_904), lo, hi, P) == (0, 1)  # 4_761_904 × 2.1 = 9_999_998.4 <= lo
    assert indicators(Fraction(4_761_905), lo, hi, P) == (1, 1)
    assert indicators(Fraction(1_041_666), lo, hi, P) == (0, 0)  # × 1.2 < p × hi = 1_250_000
    assert indicators(Fraction(1_041_667), lo, hi, P) == (0, 1)
    assert indicators(Fraction(-6_000_000), lo, hi, P) == (1, 1)  # a negative part counts by its size
    assert indicators(Fraction(0), Fraction(0), Fraction(0), P) == (0, 0)


# ------------------------------------------------------------------------------------------- brackets


def _next_grid(value: Fraction) -> Fraction:
    return GRID_VALUES[bisect.bisect_right(GRID_VALUES, value)]


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (Fraction(1, 3), (Fraction(8, 25), Fraction(2, 5))),
        (Fraction(10_000_000), (Fraction(10_000_000), Fraction(12_500_000))),
        (Fraction(2_750_000), (Fraction(2_500_000), Fraction(3_200_000))),
        (Fraction(10**30) - Fraction(1, 10**30), (Fraction(8 * 10**29), Fraction(10**30))),  # float log10 says 30
        (Fraction(10**30), (Fraction(10**30), Fraction(125 * 10**28))),
        (Fraction(1, 10**20), (Fraction(1, 10**20), Fraction(125, 10**22))),
        (Fraction(-7), (Fraction(64, 10), Fraction(8))),
        (Fraction(0), (Fraction(0), Fraction(0))),
    ],
)
def test_bracket_known_answers_are_exact_fractions(total: Fraction, expected: tuple[Fraction, Fraction]) -> None:
    lo, hi = bracket(total)
    assert (lo, hi) == expected and isinstance(lo, Fraction) and isinstance(hi, Fraction)


def test_bracket_gives_consecutive_grid_values_around_the_total_within_a_factor_of_1_28() -> None:
    rng = random.Random(7)
    totals = [Fraction(rng.randint(1, 10**12), 10 ** rng.randint(0, 24)) for _ in range(3000)]
    totals += list(GRID_VALUES[100:700]) + [g - Fraction(1, 10**40) for g in GRID_VALUES[100:700]]
    for t in totals:
        lo, hi = bracket(t)
        assert lo <= t < hi, t
        assert lo in GRID_SET and hi == _next_grid(lo), t
        assert hi / lo <= Fraction(128, 100), t
        assert bracket(-t) == (lo, hi)
    assert max(hi / lo for lo, hi in (bracket(g) for g in GRID_VALUES[400:410])) == Fraction(128, 100)


# ------------------------------------------------------------------------------- withheld and merged


def test_a_component_whose_cell_fails_is_withheld_by_dominance_and_its_sums_are_never_stored() -> None:
    # Prepare: production is balanced (the example), but Smelter D uses 98 % of the round's alumina
    spec = example_spec()
    alumina = _flow(spec, "Alumina")
    firms = _with_values(spec, alumina, {"Smelter A": 0.01, "Smelter B": 0.01, "Smelter C": 0.01, "Smelter D": 4.9})
    rows = _rows(spec, firms)

    # Execute
    staged = run_in_clear(spec, rows)
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
    summed, _ = staged_summed(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
    kept = stored_summed(spec, summed, staged.dominated)

    # Assert: the round publishes without the component; the aggregator keeps none of its sums
    assert staged.stopped is None and staged.dominated == ["wx[Alumina]"]
    assert staged.counts()["wx[Alumina]"] == {"b": 1, "m": 1} and staged.counts()[PRODUCTION]["m"] == 4
    component = stats.components[0]
    assert (component.flow, component.reporters, component.withheld) == (alumina, 4, True)
    assert component.withheld_by == "dominance"
    assert component.weighted_mean is None and stats.disclosure.publish
    names = [s.name for s in vector_layout(spec)]
    i = names.index("wx[Alumina]")
    assert summed[i] is not None and kept[i] is None  # summed in the values stage, dropped before anything is stored
    assert [names[j] for j, v in enumerate(kept) if v is None] == ["wx[Alumina]"]
    anode = names.index("wx[Carbon anode, net]")
    assert kept[names.index("n[Alumina]")] == 4 and kept[anode] == summed[anode] is not None
    public = stats.to_public_dict()
    assert public["components"][0]["weighted_mean"] is None and public["components"][0]["withheld_by"] == "dominance"
    layout = vector_layout(spec)
    sum_wx, sum_w = summed[i], summed[1]
    assert sum_wx is not None and sum_w is not None
    true_mean = Fraction(sum_wx) / layout[i].scale / (Fraction(sum_w) / layout[1].scale)
    text = json.dumps(public)
    assert repr(float(true_mean)) not in text and str(summed[i]) not in text


def test_a_component_few_firms_report_is_never_summed_and_merged_gases_travel_as_one_exact_slot() -> None:
    # Prepare: only Smelter A reports C2F6, so only it emits the gas C2F6
    spec = example_spec()
    c2f6 = _flow(spec, "C2F6")
    a = example_firms(spec)[0]
    firms = _with_values(spec, c2f6, {f.name: a.values[c2f6] if f.name == a.name else 0.0 for f in example_firms(spec)})
    rows = _rows(spec, firms)
    full = _full_sum(rows)
    layout = vector_layout(spec)
    index = {s.name: i for i, s in enumerate(layout)}
    wf_scale = layout[index["wF[CO2]"]].scale

    # Execute
    staged = run_in_clear(spec, rows)
    values_layout = staged.layout(Stage.VALUES)
    key = Ed25519PrivateKey.generate()
    signed = staged.context(key, Stage.VALUES)
    assert signed is not None
    vectors = {name: stage_vector(spec, ints, Stage.VALUES, signed.context) for name, ints in rows.items()}

    # Assert: C2F6's sums are absent from the values stage; CO2 and C2F6 are one slot, wF[other gases]
    screen = read_screen(spec, staged.sums[Stage.SCREEN])
    assert screen.reporters[5] == 1 and screen.withheld(spec) == {5} and screen.merged(spec) == ["CO2", "C2F6"]
    names = [s.name for s in values_layout]
    assert "wx[C2F6]" not in names and "wF[CO2]" not in names and "wF[C2F6]" not in names
    kept_wx = [f"wx[{c.name_en}]" for c in spec.components[:5]]
    assert names == [*kept_wx, "wF[CH4]", "wF[N2O]", "wF[CF4]", f"wF[{OTHER_GASES}]"]
    assert len(staged.sums[Stage.VALUES]) == len(values_layout)
    other = other_gases_slot(spec)
    assert other is not None and values_layout[-1] == other
    position = names.index(f"wF[{OTHER_GASES}]")
    for name, ints in rows.items():  # each firm's slot is the exact sum of its merged gases' slots
        own = Fraction(ints[index["wF[CO2]"]] + ints[index["wF[C2F6]"]]) / wf_scale
        assert Fraction(vectors[name][position]) / other.scale == own
    assert Fraction(staged.sums[Stage.VALUES][position]) / other.scale == other_gases_sum(spec, full)
    assert all(cell.name != "wx[C2F6]" for cell in staged.cells(Stage.CELLS))
    assert staged.dominated == [] and staged.stopped is None
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES])
    assert stats.components[5].withheld_by == "reporters" and stats.footprint.merged_gases == ("CO2", "C2F6")


@pytest.mark.parametrize("statistics", [None, list(ALL_STATISTICS)])
def test_staged_statistics_equal_the_statistics_of_the_full_summed_vector(statistics: list[str] | None) -> None:
    # Prepare
    spec = example_spec() if statistics is None else example_spec(statistics=statistics)
    rows = _rows(spec, example_firms(spec))
    full = _full_sum(rows)
    layout = vector_layout(spec)

    # Execute
    staged = run_in_clear(spec, rows)
    stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)

    # Assert: the same statistics, and the weighted means are the exact ratios of the slot sums
    assert stats == aggregate_statistics(spec, full, 4)
    w = Fraction(full[1]) / layout[1].scale
    for c in stats.components:
        i = next(k for k, s in enumerate(layout) if s.name == f"wx[{c.name_en}]")
        assert c.weighted_mean == float(Fraction(full[i]) / layout[i].scale / w)
    footprint = sum(Fraction(full[k]) / s.scale for k, s in enumerate(layout) if s.kind == "wF") / w
    assert stats.footprint.weighted_mean == float(footprint)
    summed, other = staged_summed(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES])
    assert summed == full and other is None


def test_on_random_rounds_the_stages_give_the_statistics_of_one_sum_with_the_failed_cells_withheld() -> None:
    # 24 seeded rounds of 3 to 8 firms: zero and tiny values, productions over 1.5 decades
    rng = random.Random(5)
    outcomes: dict[str, int] = {}
    for case in range(24):
        spec = example_spec() if case % 2 else example_spec(statistics=list(ALL_STATISTICS))
        rows = {}
        for i in range(rng.randint(3, 8)):
            values = {}
            for c in spec.components:
                r = rng.random()
                values[c.flow] = 0.0 if r < 0.15 else rng.uniform(0, c.bound / 3) * (1 if r < 0.9 else 0.01)
            weight = float(round(10 ** rng.uniform(5.5, 7)))
            rows[f"firm {i}"] = build_contribution(spec, values, weight, footprint_from_components(spec, values)).ints

        staged = run_in_clear(spec, rows)

        if staged.stopped is not None and staged.stopped.cell == PRODUCTION:
            assert staged.stopped.rule == "dominance" and Stage.VALUES not in staged.sums
            outcome = "stopped"
        elif staged.stopped is not None:  # a footprint total failed: the cells stage suppresses the round
            assert staged.stopped.cell in {FOOTPRINT, FOOTPRINT_UNWEIGHTED} and list(staged.sums) == list(STAGES)
            assert not check_disclosure(spec, len(rows), staged.dominated).publish
            outcome = "suppressed"
        else:
            stats = staged_statistics(spec, staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES], staged.dominated)
            assert stats == aggregate_statistics(spec, _full_sum(rows), len(rows), dominated=staged.dominated)
            outcome = "withheld" if staged.dominated else "published"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) == {"stopped", "suppressed", "withheld", "published"}, outcomes


# ---------------------------------------------------------------------------------------------- specs


def test_spec_problems_floor_is_three_and_a_node_may_demand_more() -> None:
    assert spec_problems(example_spec()) == []
    (problem,) = spec_problems(example_spec(min_participants=2))
    assert "min_participants 2 is below 3" in problem
    (problem,) = spec_problems(example_spec(min_participants=4), floor=5)
    assert "min_participants 4 is below 5" in problem
    assert spec_problems(example_spec(min_participants=5), floor=5) == []
    assert spec_problems(example_spec(min_participants=2), floor=1) != []  # a party never accepts fewer than 3


def test_spec_problems_dispersion_statistics_need_ten_participants() -> None:
    (problem,) = spec_problems(example_spec(statistics=list(ALL_STATISTICS), min_participants=9))
    named = problem.split(";")[0]  # the statistics refused, before what is accepted
    assert "min_participants >= 10" in problem and "'weighted_sd'" in named and "'weighted_mean'" not in named
    assert spec_problems(example_spec(statistics=list(ALL_STATISTICS), min_participants=10)) == []
    assert spec_problems(example_spec(statistics=["weighted_mean"], min_participants=3)) == []
    assert spec_problems(example_spec(statistics=["weighted_mean", "footprint_quantiles"])) != []


def test_spec_problems_refuses_a_spec_that_sets_dominance_threshold() -> None:
    (problem,) = spec_problems(example_spec(dominance_threshold=0.6))
    assert "dominance_threshold" in problem and "p_percent" in problem
    assert spec_problems(example_spec(p_percent=15.0)) == []


def _release_01_spec() -> tuple[dict[str, Any], str]:
    """The signed spec of the published round in release 0.1's aggregator database, and its logged hash."""
    with sqlite3.connect(f"file:{RELEASE_01}?mode=ro", uri=True) as db:  # read only: the file stays as 0.1 left it
        signed, logged_hash = db.execute("SELECT signed_spec, spec_hash FROM round").fetchone()
    return json.loads(signed)["spec"], str(logged_hash)


def test_a_release_01_spec_still_parses_and_hashes_as_it_was_logged() -> None:
    # Prepare
    raw, logged_hash = _release_01_spec()
    assert raw["dominance_threshold"] == 0.6 and raw["statistics"] == list(ALL_STATISTICS) and "p_percent" not in raw

    # Execute
    spec = RoundSpec.model_validate(raw)
    again = RoundSpec.model_validate_json(spec.model_dump_json())

    # Assert: nothing added or dropped, so 0.1's own hash (sorted compact JSON) of it is the logged one
    dumped = spec.model_dump(mode="json")
    assert dumped == raw
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert hashlib.sha256(text.encode()).hexdigest() == logged_hash
    assert canonical_bytes(spec) == encode(Kind.ROUND_SPEC, raw)
    assert spec_hash(again) == spec_hash(spec) and again == spec
    # and this release refuses to run it
    problems = spec_problems(spec)
    assert len(problems) == 2 and "dominance_threshold" in problems[1]


# ------------------------------------------------------------------------------------------- contexts


@pytest.fixture
def screened() -> tuple[RoundSpec, dict[str, list[int]], StagedRound, Ed25519PrivateKey]:
    """The example round after its screen stage, and the aggregator's key."""
    spec = example_spec()
    rows = _rows(spec, example_firms(spec))
    staged = StagedRound(spec)
    key = Ed25519PrivateKey.generate()
    staged.record(Stage.SCREEN, stage_sum(spec, rows, Stage.SCREEN, staged, key), list(rows))
    return spec, rows, staged, key


def _dominance_context(
    screened: tuple[RoundSpec, dict[str, list[int]], StagedRound, Ed25519PrivateKey],
) -> SignedStageContext:
    _, _, staged, key = screened
    signed = staged.context(key, Stage.DOMINANCE)
    assert signed is not None
    return signed


def test_a_signed_stage_context_verifies_and_every_firm_accepts_it(screened: Any) -> None:
    spec, rows, staged, key = screened
    signed = _dominance_context(screened)

    context = verify_context(signed, key.public_key())

    assert context == signed.context and context.cohort == sorted(rows) and context.n == 4
    assert context.brackets == {PRODUCTION: ("2500000", "3200000")}  # Σw = 2.75 Mt, within [2.5, 3.2) Mt
    assert context.reporters == [4] * 6 and context.gas_reporters == dict.fromkeys(spec.footprint.gases, 4)
    for name, ints in rows.items():
        check_context(spec, context, Stage.DOMINANCE, name, ints)
    assert staged.context(key, Stage.SCREEN) is None


def test_a_changed_or_foreign_stage_context_is_refused(screened: Any) -> None:
    _, _, _, key = screened
    signed = _dominance_context(screened)
    raw = bytearray(b64url_decode(signed.signature))
    raw[0] ^= 1
    flipped = signed.model_copy(update={"signature": b64url_encode(bytes(raw))})
    def changed(**update: Any) -> SignedStageContext:
        return signed.model_copy(update={"context": signed.context.model_copy(update=update)})

    renamed = changed(round_id=signed.context.round_id[:-1] + "5")  # one byte: ...-2024 -> ...-2025
    lowered = changed(brackets={PRODUCTION: ("2000000", "2500000")})
    wire = SignedStageContext.model_validate_json(signed.model_dump_json())

    assert verify_context(wire, key.public_key()) == signed.context
    for forged in (flipped, renamed, lowered, signed.model_copy(update={"signature": "not base64 !"})):
        with pytest.raises(ContextRejected, match="not signed by the aggregator"):
            verify_context(forged, key.public_key())
    with pytest.raises(ContextRejected):
        verify_context(signed, Ed25519PrivateKey.generate().public_key())


def _refused(spec: RoundSpec, context: StageContext, stage: Stage, own: str, ints: list[int], match: str) -> None:
    with pytest.raises(ContextRejected, match=match):
        check_context(spec, context, stage, own, ints)


def test_check_context_refuses_another_stage_round_or_spec(screened: Any) -> None:
    spec, rows, _, _ = screened
    context = _dominance_context(screened).context
    ints = rows["Smelter A"]
    _refused(spec, context, Stage.CELLS, "Smelter A", ints, "stage dominance")
    _refused(spec, context, Stage.VALUES, "Smelter A", ints, "stage dominance")
    _refused(example_spec(round_id="another-round"), context, Stage.DOMINANCE, "Smelter A", ints, "is for round")
    other_hash = example_spec(p_percent=20.0)  # same round id, another spec
    _refused(other_hash, context, Stage.DOMINANCE, "Smelter A", ints, "is for round")


def test_check_context_refuses_a_firm_outside_the_cohort_and_a_cohort_below_the_minimum(screened: Any) -> None:
    spec, rows, staged, key = screened
    context = _dominance_context(screened).context
    ints = rows["Smelter A"]
    _refused(spec, context, Stage.DOMINANCE, "Mallory", ints, "not \\(exactly once\\) in its cohort of 4")
    twice = context.model_copy(update={"cohort": [*context.cohort, "Smelter A"]})
    _refused(spec, twice, Stage.DOMINANCE, "Smelter A", ints, "exactly once")
    totals = {PRODUCTION: Fraction(1_650_000)}
    small = sign_context(key, spec, Stage.DOMINANCE, ["Smelter A", "Smelter B"], staged.screen, totals).context
    _refused(spec, small, Stage.DOMINANCE, "Smelter A", ints, "a cohort of 2; accepted: at least 3")
    lax = example_spec(min_participants=1)  # the floor holds whatever the spec says
    small = sign_context(key, lax, Stage.DOMINANCE, ["Smelter A", "Smelter B"], staged.screen, totals).context
    _refused(lax, small, Stage.DOMINANCE, "Smelter A", ints, "at least 3")
    four = example_spec(min_participants=5)
    whole = sign_context(key, four, Stage.DOMINANCE, list(rows), staged.screen, {PRODUCTION: Fraction(2_750_000)})
    _refused(four, whole.context, Stage.DOMINANCE, "Smelter A", ints, "a cohort of 4; accepted: at least 5")


def test_check_context_refuses_reporter_counts_that_contradict_the_firm(screened: Any) -> None:
    spec, rows, _, _ = screened
    context = _dominance_context(screened).context
    ints = rows["Smelter A"]
    zero = context.model_copy(update={"reporters": [0, 4, 4, 4, 4, 4]})
    _refused(spec, zero, Stage.DOMINANCE, "Smelter A", ints, r"n\[Alumina\] = 0 though this firm reports the component")
    short, over = context.model_copy(update={"reporters": [4] * 5}), context.model_copy(update={"reporters": [5] * 6})
    _refused(spec, short, Stage.DOMINANCE, "Smelter A", ints, "do not fit 6")
    _refused(spec, over, Stage.DOMINANCE, "Smelter A", ints, "do not fit")
    gases = context.model_copy(update={"gas_reporters": context.gas_reporters | {"CF4": 0}})
    _refused(spec, gases, Stage.DOMINANCE, "Smelter A", ints, r"nF\[CF4\] = 0 though this firm emits CF4")
    missing = context.model_copy(update={"gas_reporters": {"CO2": 4}})
    _refused(spec, missing, Stage.DOMINANCE, "Smelter A", ints, "do not fit the spec's gases")


@pytest.mark.parametrize(
    ("brackets", "match"),
    [
        ({PRODUCTION: ("2700000", "3200000")}, "not a bracket of the grid"),  # 2.7 is not a grid value
        ({PRODUCTION: ("2500000", "4000000")}, "not a bracket of the grid"),  # not consecutive
        ({PRODUCTION: ("3200000", "2500000")}, "not a bracket of the grid"),  # inverted
        ({PRODUCTION: ("0", "1250000")}, "not a bracket of the grid"),
        ({PRODUCTION: ("800000", "1000000")}, "less than this firm's own part alone"),  # Smelter A alone makes 1.2 Mt
        ({}, "brackets for"),
        ({PRODUCTION: ("2500000", "3200000"), FOOTPRINT: ("1", "1.25")}, "brackets for"),
    ],
)
def test_check_context_refuses_a_bracket_off_the_grid_or_below_the_firms_own_part(
    screened: Any, brackets: dict[str, tuple[str, str]], match: str
) -> None:
    spec, rows, _, _ = screened
    context = _dominance_context(screened).context.model_copy(update={"brackets": brackets})
    _refused(spec, context, Stage.DOMINANCE, "Smelter A", rows["Smelter A"], match)
    if match.startswith("less"):  # 1.2 Mt is in the other firms' brackets' range: they would accept it
        check_context(spec, context, Stage.DOMINANCE, "Smelter D", rows["Smelter D"])


def test_a_zero_bracket_cannot_make_a_dominated_production_cell_pass() -> None:
    # Attack: one firm makes 90 % of production; the aggregator signs the bracket [0, 0) for the production
    # cell, which every firm can see is impossible (its own production alone is more). Fails today:
    # check_context lets hi = 0 through (`abs(part) >= hi > 0`) and indicators gives m = 1 against hi = 0,
    # so Σm = 3 and the cell would pass.
    spec = example_spec()
    rows = _rows(spec, _with_production(spec, [9e6, 0.5e6, 0.5e6]))
    key = Ed25519PrivateKey.generate()
    staged = StagedRound(spec)
    staged.record(Stage.SCREEN, stage_sum(spec, rows, Stage.SCREEN, staged, key), list(rows))
    signed = staged.context(key, Stage.DOMINANCE)
    assert signed is not None
    forged = signed.context.model_copy(update={"brackets": {PRODUCTION: ("0", "0")}})

    sent: list[list[int]] = []
    for name, ints in rows.items():
        try:
            check_context(spec, forged, Stage.DOMINANCE, name, ints)
        except ContextRejected:
            continue
        sent.append(stage_vector(spec, ints, Stage.DOMINANCE, forged))

    # every firm refuses, or what the firms that sent show fails the cell
    assert not sent or not cell_passes(sum(v[0] for v in sent), sum(v[1] for v in sent)), sent


def test_check_context_of_the_cells_stage_covers_every_value_cell() -> None:
    spec = example_spec()
    rows = _rows(spec, example_firms(spec))
    key = Ed25519PrivateKey.generate()
    staged = StagedRound(spec)
    for stage in (Stage.SCREEN, Stage.DOMINANCE, Stage.VALUES):
        staged.record(stage, stage_sum(spec, rows, stage, staged, key), list(rows))
    signed = staged.context(key, Stage.CELLS)
    assert signed is not None
    context = verify_context(signed, key.public_key())
    assert set(context.brackets) == {c.name for c in staged.cells(Stage.CELLS)} >= {FOOTPRINT, "wx[Alumina]", "wF[CO2]"}
    for name, ints in rows.items():
        check_context(spec, context, Stage.CELLS, name, ints)
    _refused(spec, context.model_copy(update={"brackets": {FOOTPRINT: context.brackets[FOOTPRINT]}}),
             Stage.CELLS, "Smelter A", rows["Smelter A"], "brackets for")  # fmt: skip


# --------------------------------------------------------------------------------------- staged round


def test_staged_round_refuses_later_stages_from_other_contributors(screened: Any) -> None:
    spec, rows, staged, key = screened
    dominance = stage_sum(spec, rows, Stage.DOMINANCE, staged, key)
    names = list(rows)
    for contributors in (names[:3], [*names[:3], "Mallory"], [*names, "Mallory"]):
        with pytest.raises(AggregationError, match="not the screen's cohort"):
            staged.record(Stage.DOMINANCE, dominance, contributors)
    assert Stage.DOMINANCE not in staged.sums and staged.next_stage() == Stage.DOMINANCE  # nothing recorded
    assert staged.record(Stage.DOMINANCE, dominance, list(reversed(names))).proceed  # order does not matter


def test_staged_round_refuses_counts_outside_zero_to_n(screened: Any) -> None:
    spec, rows, staged, key = screened
    names = list(rows)
    for bad in ([5, 4], [-1, 4], [0, 5]):
        with pytest.raises(AggregationError, match="accepted: 0 to n = 4"):
            staged.record(Stage.DOMINANCE, bad, names)
        # a refused stage leaves nothing behind (fails today: StagedRound.record stores the sum before
        # it reads the counts)
        assert Stage.DOMINANCE not in staged.sums and staged.next_stage() == Stage.DOMINANCE, bad
    with pytest.raises(AggregationError, match="3 sums; the stage has 2 slots"):
        staged.record(Stage.DOMINANCE, [0, 4, 0], names)
    assert Stage.DOMINANCE not in staged.sums
    fresh = StagedRound(spec)
    screen = stage_sum(spec, rows, Stage.SCREEN, fresh, key)
    reporters = next(i for i, s in enumerate(vector_layout(spec)) if s.name == "n[Alumina]")
    over = list(screen)
    over[reporters] = 5
    with pytest.raises(AggregationError, match=r"n\[Alumina\] = 5; accepted: 0 to n = 4"):
        fresh.record(Stage.SCREEN, over, names)
    with pytest.raises(AggregationError, match="count 4 but 3 contributors"):
        fresh.record(Stage.SCREEN, screen, names[:3])
    with pytest.raises(AggregationError, match="appears twice"):
        fresh.record(Stage.SCREEN, screen, [*names[:3], names[0]])
    assert fresh.sums == {} and fresh.cohort == []


def test_staged_round_refuses_stages_out_of_order(screened: Any) -> None:
    spec, rows, staged, _ = screened
    names = list(rows)
    fresh = StagedRound(spec)
    with pytest.raises(AggregationError, match="stage values out of order; expected screen"):
        fresh.record(Stage.VALUES, [0] * len(staged.layout(Stage.VALUES)), names)
    with pytest.raises(AggregationError, match="stage screen out of order; expected dominance"):
        staged.record(Stage.SCREEN, staged.sums[Stage.SCREEN], names)
    with pytest.raises(AggregationError, match="out of order"):
        staged.record(Stage.CELLS, [0] * len(staged.layout(Stage.CELLS)), names)
    stopped = run_in_clear(spec, _rows(spec, _with_production(spec, [9e6, 0.5e6, 0.5e6])))
    assert stopped.next_stage() is None
    with pytest.raises(AggregationError, match="out of order; expected None"):
        stopped.record(Stage.VALUES, [0], list(stopped.cohort))


@pytest.mark.parametrize("megatonnes", [None, [9, 0.5, 0.5]])
def test_staged_round_round_trips_through_its_json_form(megatonnes: list[float] | None) -> None:
    spec = example_spec()
    firms = example_firms(spec) if megatonnes is None else _with_production(spec, [t * 1e6 for t in megatonnes])
    staged = run_in_clear(spec, _rows(spec, firms))

    doc = json.loads(json.dumps(staged.to_dict()))
    again = StagedRound.from_dict(spec, doc)

    assert again == staged and again.next_stage() == staged.next_stage() and again.counts() == staged.counts()
    assert all(isinstance(v, str) for vs in doc["sums"].values() for v in vs)  # exact integers, as decimal strings
    waiting = {**doc, "sums": {"screen": doc["sums"]["screen"]}, "stopped": None, "dominated": []}
    half = StagedRound.from_dict(spec, waiting)
    assert half.next_stage() == Stage.DOMINANCE


def test_stage_round_ids_bind_the_stage_and_a_bare_round_id_is_refused() -> None:
    for stage in STAGES:
        assert split_stage_round_id(stage_round_id("cn-aluminium-2024", stage)) == ("cn-aluminium-2024", stage)
    assert split_stage_round_id("a/b/values") == ("a/b", Stage.VALUES)
    for bad in ("cn-aluminium-2024", "cn-aluminium-2024/publish", "/"):
        with pytest.raises(ValueError, match="accepted: '<round id>/<stage>'"):
            split_stage_round_id(bad)


@pytest.mark.parametrize("p", [Fraction(1, 100), Fraction(1, 10), Fraction(1, 4), Fraction(1, 2)])
def test_honest_share_bits_keep_the_count_invariants_whatever_the_total_in_the_bracket(p: Fraction) -> None:
    # b <= m per firm, and at most max_above(p) firms with b = 1: what read_counts refuses otherwise
    from protocols.disclosure import indicators, max_above

    rng = random.Random(20261202)
    for _ in range(2000):
        n = rng.randint(1, 12)
        values = [Fraction(rng.randint(0, 10**6)) for _ in range(n)]
        total = sum(values, Fraction(0))
        if total == 0:
            continue
        lo, hi = bracket(total)
        bits = [indicators(v, lo, hi, p) for v in values]
        assert all(b <= m for b, m in bits)
        assert sum(b for b, _ in bits) <= max_above(p)


def test_counts_that_honest_bits_cannot_give_are_refused() -> None:
    # a lying firm that sends b = 1, m = 0 (or cancels another's m) leaves sums no honest cohort gives
    spec = example_spec()
    rows = {f.name: build_contribution(spec, f.values, f.weight, f.footprint_by_gas).ints for f in example_firms(spec)}
    key = Ed25519PrivateKey.generate()
    staged = StagedRound(spec)
    staged.record(Stage.SCREEN, stage_sum(spec, rows, Stage.SCREEN, staged, key), list(rows))
    for b, m in ((2, 1), (3, 4)):
        with pytest.raises(AggregationError, match="honest share bits give b <= m"):
            StagedRound.from_dict(spec, staged.to_dict()).record(Stage.DOMINANCE, [b, m], list(rows))
