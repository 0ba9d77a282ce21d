"""Aggregate statistics by the encoded route equal the plaintext ones; disclosure rules; consistency checks."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from fractions import Fraction

import numpy as np
import pytest
from example_round import FirmInput, example_firms, example_spec
from stage_runner import run_in_clear

from protocols.contribution import (
    Contribution,
    build_contribution,
    vector_layout,
)
from protocols.disclosure import FOOTPRINT, FOOTPRINT_UNWEIGHTED, PRODUCTION, Stage
from protocols.encoding import from_ring, ring_sum
from protocols.errors import AggregationError
from protocols.spec import (
    ALL_STATISTICS,
    Component,
    Footprint,
    Product,
    ReferencePeriod,
    RoundSpec,
    Weight,
)
from protocols.stats import (
    OTHER_GASES,
    AggregateStatistics,
    aggregate_statistics,
    check_disclosure,
    coarsened_histogram,
    gas_reporter_counts,
    histogram_quantile,
    linearity_check,
    lognormal_gsd,
    merged_gases,
    other_gases_sum,
    reporter_counts,
    staged_statistics,
    staged_summed,
    unchecked_components,
    withheld_gases,
    withheld_slots,
)

FLOW = "11111111-2222-4333-8444-555555555555"


def _hand_spec(**overrides: object) -> RoundSpec:
    """A one-component, two-gas spec whose every statistic can be worked out by hand.

    It asks for every statistic at ``min_participants`` 3, which ``protocols.disclosure.spec_problems``
    refuses for a real round (dispersion needs 10 firms); :func:`aggregate_statistics` computes
    whatever the spec asks, so the arithmetic is tested on four firms.
    """
    fields: dict[str, object] = {
        "round_id": "hand",
        "product": Product(
            name_zh="产品", name_en="Product", classification_code="3216",
            reference_flow="99999999-8888-4777-8666-555555555555",
        ),
        "region": "CN-YN",
        "reference_period": ReferencePeriod(start=date(2024, 1, 1), end=date(2024, 12, 31)),
        "reference_unit": "t",
        "components": [
            Component(flow=FLOW, name_en="Input", name_zh="输入", direction="input", unit="kg", scale=1000,
                      bound=100.0)
        ],
        "weight": Weight(unit="t", scale=1, bound=100.0),
        "footprint": Footprint(
            gases=["fossil", "biogenic"], gwp_set="AR6", scale=1000, bound=50.0,
            histogram_edges=[0.0, 10.0, 20.0, 30.0, 40.0, 50.0],
        ),
        "background_factors": {FLOW: {"fossil": 10.0}},
        "statistics": list(ALL_STATISTICS),
        "max_participants": 10,
        "deadline": datetime(2025, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    fields.update(overrides)
    return RoundSpec(**fields)  # type: ignore[arg-type]


# weights, input values and footprints chosen so every statistic can be worked out by hand
HAND_W = [1.0, 1.0, 2.0, 4.0]
HAND_X = [1.0, 2.0, 3.0, 4.0]
HAND_F = [10.0, 20.0, 30.0, 40.0]


def _sum(spec: RoundSpec, contributions: list[Contribution]) -> list[int]:
    return from_ring(ring_sum(c.to_ring() for c in contributions))


def _hand_contributions(spec: RoundSpec) -> list[Contribution]:
    return [
        build_contribution(spec, {FLOW: x}, w, {"fossil": f - 1.0, "biogenic": 1.0})
        for w, x, f in zip(HAND_W, HAND_X, HAND_F, strict=True)
    ]


def test_four_firm_example_by_hand() -> None:
    spec = _hand_spec()
    stats = aggregate_statistics(spec, _sum(spec, _hand_contributions(spec)), 4)
    (c,) = stats.components
    assert stats.n == 4 and stats.production == 8.0
    assert c.weighted_mean == 25 / 8  # (1 + 2 + 6 + 16) / 8
    assert c.mean == 2.5
    assert c.weighted_sd == math.sqrt(71 / 64)  # 87/8 - (25/8)^2
    assert c.gsd == pytest.approx(math.exp(math.sqrt(math.log(696 / 625))), rel=1e-15)
    fp = stats.footprint
    assert fp.weighted_mean_by_gas == {"fossil": 30.25, "biogenic": 1.0}
    assert fp.weighted_mean == 250 / 8
    assert fp.mean == 25.0
    assert fp.sd == math.sqrt(125.0)  # (15² + 5² + 5² + 15²) / 4
    assert fp.weighted_sd == math.sqrt(8700 / 8 - (250 / 8) ** 2)
    assert fp.histogram == (0, 1, 1, 1, 1)
    # no published quantile rests on a bin of fewer than min_participants (3) firms: merged left to
    # right, [0,40) holds 3 and the last firm joins it, so one bin [0,50] of 4; ranks p*n = 0.2, 1,
    # 2, 3, 3.8 interpolate in it
    assert coarsened_histogram(fp.histogram, fp.edges, 3) == ([4], [0.0, 50.0])
    assert fp.quantiles == {"p5": 2.5, "p25": 12.5, "p50": 25.0, "p75": 37.5, "p95": 47.5}
    assert coarsened_histogram([0, 3, 0, 2, 4], [0, 1, 2, 3, 4, 5], 3) == ([3, 6], [0, 2, 5])
    assert stats.disclosure.publish and stats.disclosure.rule is None


def test_aluminium_example_equals_numpy_on_the_floats_within_fixed_point_resolution() -> None:
    spec = example_spec(statistics=list(ALL_STATISTICS))  # four firms: computed, though no round would ask
    firms = example_firms(spec)
    contributions = [build_contribution(spec, f.values, f.weight, f.footprint_by_gas) for f in firms]
    stats = aggregate_statistics(spec, ring_sum(c.to_ring() for c in contributions), len(firms))
    _compare_with_numpy(spec, firms, stats)


def _compare_with_numpy(spec: RoundSpec, firms: list[FirmInput], stats: AggregateStatistics) -> None:
    w = np.array([f.weight for f in firms])
    for i, comp in enumerate(spec.components):
        got = stats.components[i]
        x = np.array([f.values[comp.flow] for f in firms])
        mean_w = np.average(x, weights=w)
        sd_w = math.sqrt(np.average((x - mean_w) ** 2, weights=w))
        assert abs(got.weighted_mean - mean_w) <= got.resolution, comp.name_en
        assert got.mean == pytest.approx(x.mean(), abs=0.5 / comp.scale)
        assert got.weighted_sd == pytest.approx(sd_w, rel=1e-6, abs=1 / comp.scale)
        assert got.gsd == pytest.approx(lognormal_gsd(mean_w, sd_w), rel=1e-6)
    f = np.array([sum(fi.footprint_by_gas.values()) for fi in firms])
    fp = stats.footprint
    step = len(spec.footprint.gases) / spec.footprint.scale
    assert fp.weighted_mean == pytest.approx(np.average(f, weights=w), abs=step)
    assert fp.mean == pytest.approx(f.mean(), abs=step)
    assert fp.sd == pytest.approx(f.std(), rel=1e-6, abs=step)
    sd_w = math.sqrt(np.average((f - np.average(f, weights=w)) ** 2, weights=w))
    assert fp.weighted_sd == pytest.approx(sd_w, rel=1e-5)
    for gas in spec.footprint.gases:
        g = np.array([fi.footprint_by_gas[gas] for fi in firms])
        assert fp.weighted_mean_by_gas is not None
        assert fp.weighted_mean_by_gas[gas] == pytest.approx(np.average(g, weights=w), abs=step)
    counts, _ = np.histogram(f, bins=spec.footprint.histogram_edges)
    assert fp.histogram is not None and list(fp.histogram) == counts.tolist()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_industries_match_numpy_including_coarsened_slots(seed: int) -> None:
    # 40 firms with values spread over the whole plausible range, weights up to the 1e7 t bound.
    spec = example_spec(max_participants=1000, min_participants=10, statistics=list(ALL_STATISTICS))
    rng = np.random.default_rng(seed)
    firms: list[FirmInput] = []
    for k in range(40):
        values = {c.flow: float(rng.uniform(0, c.bound)) for c in spec.components}
        by_gas = {g: float(rng.uniform(0, spec.footprint.bound / 5)) for g in spec.footprint.gases}
        firms.append(FirmInput(f"firm {k}", values, float(rng.uniform(1e4, 1e7)), by_gas))
    contributions = [build_contribution(spec, f.values, f.weight, f.footprint_by_gas) for f in firms]
    stats = aggregate_statistics(spec, _sum(spec, contributions), len(firms))
    _compare_with_numpy(spec, firms, stats)


def test_linearity_cross_check_closes_for_the_round_background_and_shows_extra_emissions() -> None:
    spec = example_spec()
    firms = example_firms(spec)
    summed = _sum(spec, [build_contribution(spec, f.values, f.weight, f.footprint_by_gas) for f in firms])
    checks = linearity_check(spec, aggregate_statistics(spec, summed, 4))
    assert [c.gas for c in checks] == spec.footprint.gases
    assert all(abs(c.residual) <= 1e-2 for c in checks)
    extra = [
        build_contribution(spec, f.values, f.weight, f.footprint_by_gas | {"CO2": f.footprint_by_gas["CO2"] + 100.0})
        for f in firms
    ]
    shifted = {c.gas: c for c in linearity_check(spec, aggregate_statistics(spec, _sum(spec, extra), 4))}
    assert shifted["CO2"].residual == pytest.approx(100.0, abs=1e-2)


# -------------------------------------------------------------------------------------- disclosure


def test_too_few_participants_are_suppressed_by_min_participants() -> None:
    spec = _hand_spec()
    contributions = _hand_contributions(spec)[:2]
    stats = aggregate_statistics(spec, _sum(spec, contributions), 2)
    assert not stats.disclosure.publish
    assert stats.disclosure.rule == "min_participants"
    assert "at least 3" in stats.disclosure.message
    public = stats.to_public_dict()
    assert "components" not in public and "footprint" not in public and public["n"] == 2


def test_dominant_firm_stops_the_round_at_the_dominance_stage_and_suppresses_it() -> None:
    # Prepare: one firm makes 97 % of production
    spec = _hand_spec()
    contributions = [build_contribution(spec, {FLOW: 1.0}, w, {"fossil": 10.0, "biogenic": 0.0}) for w in (97, 1, 1, 1)]

    # Execute
    staged = run_in_clear(spec, {f"firm {i}": c.ints for i, c in enumerate(contributions)})
    stats = aggregate_statistics(spec, _sum(spec, contributions), 4, dominated=staged.dominated)

    # Assert: the production cell fails, no value sum was formed, and nothing is published
    assert staged.stopped is not None and staged.stopped.rule == "dominance" and staged.stopped.cell == PRODUCTION
    assert staged.dominated == [PRODUCTION] and Stage.VALUES not in staged.sums
    assert stats.disclosure.rule == "dominance" and not stats.disclosure.publish
    assert "production total fails the 10 %-rule" in stats.disclosure.message
    assert "components" not in stats.to_public_dict()


def test_min_participants_is_reported_before_dominance() -> None:
    decision = check_disclosure(_hand_spec(), 2, [PRODUCTION])
    assert decision.rule == "min_participants"


def test_min_participants_never_goes_below_three() -> None:
    decision = check_disclosure(_hand_spec(min_participants=1), 2)
    assert (decision.publish, decision.rule) == (False, "min_participants")
    assert "at least 3" in decision.message and decision.min_participants == 1
    assert check_disclosure(_hand_spec(min_participants=1), 3).publish


@pytest.mark.parametrize(
    ("dominated", "publish"),
    [
        ([], True),
        ([PRODUCTION], False),
        ([FOOTPRINT], False),
        ([FOOTPRINT_UNWEIGHTED], False),
        (["wx[Input]"], True),  # a component's cell withholds the component only
        (["x[Input]"], True),
        (["wF[fossil]"], True),  # a gas's cell merges the gases only
        (["wx[Input]", FOOTPRINT], False),
    ],
)
def test_failing_production_or_footprint_cells_suppress_and_other_cells_do_not(
    dominated: list[str], publish: bool
) -> None:
    decision = check_disclosure(_hand_spec(), 4, dominated)
    assert decision.publish is publish
    assert decision.rule == (None if publish else "dominance")
    assert decision.dominated == tuple(dominated) and decision.p_percent == 10.0
    if publish and dominated:
        assert f"withheld by the 10 %-rule: {dominated[0]}" in decision.message
    assert check_disclosure(_hand_spec(p_percent=25.0), 4, dominated).p_percent == 25.0


def test_published_dict_has_statistics_but_not_the_histogram() -> None:
    spec = _hand_spec()
    public = aggregate_statistics(spec, _sum(spec, _hand_contributions(spec)), 4).to_public_dict()
    assert public["components"][0]["weighted_mean"] == 3.125
    assert "histogram" not in public["footprint"] and public["footprint"]["quantiles"]["p50"] == 25.0  # coarsened bins


# ----------------------------------------------------------------------------------- consistency


def test_inconsistent_squares_are_an_error_not_a_clamped_zero() -> None:
    spec = _hand_spec()
    summed = _sum(spec, _hand_contributions(spec))
    slot = next(s for s in vector_layout(spec) if s.name == "wx2[Input]")
    summed[vector_layout(spec).index(slot)] -= 20 * int(slot.scale)  # Σwx² 87 -> 67: E_w[x²] < E_w[x]²
    with pytest.raises(AggregationError, match="'Input'.*inconsistent"):
        aggregate_statistics(spec, summed, 4)


def test_rounding_sized_negative_variance_is_clamped_to_zero() -> None:
    # Equal values: exact variance 0; the coarse w·x² slot rounds each firm's term down.
    spec = _hand_spec(slot_scale_exponents={"wx2[Input]": -1})
    contributions = [build_contribution(spec, {FLOW: 1.4}, 7.0, {"fossil": 1.0, "biogenic": 0.0}) for _ in range(4)]
    stats = aggregate_statistics(spec, _sum(spec, contributions), 4)
    assert stats.components[0].weighted_sd == 0.0  # 7·1.96 = 13.72 -> 10 per firm at scale 1/10


def test_count_length_and_bound_mismatches_are_errors() -> None:
    spec = _hand_spec()
    summed = _sum(spec, _hand_contributions(spec))
    with pytest.raises(AggregationError, match="count slot sums to 4 but n = 3"):
        aggregate_statistics(spec, summed, 3)
    with pytest.raises(AggregationError, match="layout"):
        aggregate_statistics(spec, summed[:-1], 4)
    with pytest.raises(AggregationError, match="max_participants"):
        aggregate_statistics(spec, summed, 11)
    wrapped = list(summed)
    wrapped[1] = -5  # production can never sum negative
    with pytest.raises(AggregationError, match="slot 'w'"):
        aggregate_statistics(spec, wrapped, 4)
    broken_hist = list(summed)
    broken_hist[-1] += 1
    broken_hist[-2] -= 1
    broken_hist[-3] -= 1
    with pytest.raises(AggregationError, match="histogram counts sum to 3"):
        aggregate_statistics(spec, broken_hist, 4)


def test_statistics_not_requested_are_not_reported() -> None:
    spec = _hand_spec(statistics=["weighted_mean", "footprint_quantiles"])
    contributions = _hand_contributions(spec)
    stats = aggregate_statistics(spec, _sum(spec, contributions), 4)
    (c,) = stats.components
    assert c.weighted_mean == 3.125
    assert (c.mean, c.weighted_sd, c.gsd) == (None, None, None)
    assert stats.footprint.mean is None and stats.footprint.weighted_mean is None
    assert stats.footprint.quantiles is not None
    assert linearity_check(spec, stats) == []


# ------------------------------------------------------------------------- component-level disclosure

RARE = "66666666-7777-4888-8999-aaaaaaaaaaaa"


def _rare_spec(**overrides: object) -> RoundSpec:
    """The hand spec plus a component 'Rare' (background 2 fossil per kg)."""
    rare = Component(flow=RARE, name_en="Rare", name_zh="少见", direction="input", unit="kg", scale=1000, bound=100.0)
    spec = _hand_spec()
    fields: dict[str, object] = {
        "components": [*spec.components, rare],
        "background_factors": {FLOW: {"fossil": 10.0}, RARE: {"fossil": 2.0}},
    }
    return _hand_spec(**(fields | overrides))


def _rare_sum(spec: RoundSpec, rare: list[float]) -> list[int]:
    """The four hand firms, with these values of 'Rare' (0: the firm does not report it); footprints by the background."""
    return _sum(spec, [
        build_contribution(spec, {FLOW: x, RARE: r}, w, {"fossil": 10.0 * x + 2.0 * r, "biogenic": 0.0})
        for w, x, r in zip(HAND_W, HAND_X, rare, strict=True)
    ])  # fmt: skip


def test_a_component_one_firm_reports_is_withheld_from_statistics_and_the_public_dict() -> None:
    spec = _rare_spec()
    summed = _rare_sum(spec, [0.0, 0.0, 7.5, 0.0])
    stats = aggregate_statistics(spec, summed, 4)
    inp, rare = stats.components
    assert stats.disclosure.publish  # the round publishes; only the component is withheld
    assert (rare.reporters, rare.withheld) == (1, True)
    assert (rare.weighted_mean, rare.mean, rare.weighted_sd, rare.gsd, rare.resolution) == (None,) * 5
    assert (inp.reporters, inp.withheld, inp.weighted_mean) == (4, False, 25 / 8)
    assert stats.withheld == (rare,)
    assert withheld_slots(spec, summed) == ["wx[Rare]", "x[Rare]", "wx2[Rare]"]
    public = stats.to_public_dict()["components"][1]
    assert public["withheld"] is True and public["reporters"] == 1
    assert all(public[k] is None for k in ("weighted_mean", "mean", "weighted_sd", "gsd", "resolution"))
    assert stats.footprint.weighted_mean == pytest.approx((10 * 25 + 2.0 * 2 * 7.5) / 8)  # its emissions stay


@pytest.mark.parametrize(("rare", "withheld"), [([0, 0, 0, 0], False), ([0, 1, 2, 0], True), ([1, 1, 2, 0], False)])
def test_components_are_withheld_exactly_when_reporters_are_between_zero_and_min_participants(
    rare: list[float], withheld: bool
) -> None:
    spec = _rare_spec()  # min_participants 3
    summed = _rare_sum(spec, rare)
    stats = aggregate_statistics(spec, summed, 4)
    assert reporter_counts(spec, summed) == [4, sum(1 for r in rare if r)]
    assert stats.components[1].withheld is withheld
    assert (stats.components[1].weighted_mean is None) is withheld
    assert bool(withheld_slots(spec, summed)) is withheld


def test_withheld_slots_may_be_null_and_give_the_same_statistics_but_no_other_slot_may() -> None:
    spec = _rare_spec()
    summed = _rare_sum(spec, [0.0, 0.0, 7.5, 0.0])
    names = [s.name for s in vector_layout(spec)]
    nulled: list[int | None] = [None if n in withheld_slots(spec, summed) else v for n, v in zip(names, summed, strict=True)]
    assert aggregate_statistics(spec, nulled, 4) == aggregate_statistics(spec, summed, 4)
    not_withheld = list(nulled)
    not_withheld[names.index("x[Input]")] = None
    with pytest.raises(AggregationError, match=r"slot 'x\[Input\]' is missing"):
        aggregate_statistics(spec, not_withheld, 4)
    no_count = list(nulled)
    no_count[names.index("n[Rare]")] = None
    with pytest.raises(AggregationError, match="reporter counts are never withheld"):
        aggregate_statistics(spec, no_count, 4)
    published = _rare_sum(spec, [1.0, 1.0, 7.5, 0.0])
    published[names.index("x[Rare]")] = None  # type: ignore[call-overload]
    with pytest.raises(AggregationError, match="only the value slots of withheld components"):
        aggregate_statistics(spec, published, 4)


def test_sums_of_a_component_nobody_reports_must_be_zero() -> None:
    spec = _rare_spec()
    summed = _rare_sum(spec, [0.0, 0.0, 0.0, 0.0])
    summed[[s.name for s in vector_layout(spec)].index("x[Rare]")] = 5
    with pytest.raises(AggregationError, match=r"no firm reports it \(n\[Rare\] = 0\)"):
        aggregate_statistics(spec, summed, 4)


def test_a_component_whose_cell_fails_the_p_percent_rule_is_withheld_by_dominance() -> None:
    # Prepare: every firm reports 'Rare' (4 reporters); its wx cell failed, as the cells stage would report
    spec = _rare_spec()
    summed = _rare_sum(spec, [1.0, 1.0, 2.0, 3.0])

    # Execute
    stats = aggregate_statistics(spec, summed, 4, dominated=["wx[Rare]"])

    # Assert: withheld like a component few firms report, its reporter count kept, the round published
    inp, rare = stats.components
    assert stats.disclosure.publish and stats.disclosure.dominated == ("wx[Rare]",)
    assert (rare.reporters, rare.withheld, rare.withheld_by) == (4, True, "dominance")
    assert (rare.weighted_mean, rare.mean, rare.weighted_sd, rare.gsd, rare.resolution) == (None,) * 5
    assert (inp.withheld, inp.withheld_by, inp.weighted_mean) == (False, None, 25 / 8)
    assert withheld_slots(spec, summed, ["wx[Rare]"]) == ["wx[Rare]", "x[Rare]", "wx2[Rare]"]
    assert withheld_slots(spec, summed, ["x[Rare]"]) == ["wx[Rare]", "x[Rare]", "wx2[Rare]"]
    public = stats.to_public_dict()["components"][1]
    assert public["withheld"] is True and public["withheld_by"] == "dominance" and public["reporters"] == 4
    assert all(public[k] is None for k in ("weighted_mean", "mean", "weighted_sd", "gsd", "resolution"))
    few = aggregate_statistics(spec, _rare_sum(spec, [0.0, 0.0, 7.5, 0.0]), 4).components[1]
    assert few.withheld_by == "reporters"


def test_the_cross_check_note_of_a_component_withheld_by_dominance_does_not_blame_its_reporters() -> None:
    # Fails today: protocols.stats.unchecked_components writes "N firm(s) report it, fewer than
    # min_participants" for every withheld component, also for one 4 firms report that the p %-rule withheld.
    spec = _rare_spec()
    stats = aggregate_statistics(spec, _rare_sum(spec, [1.0, 1.0, 2.0, 3.0]), 4, dominated=["wx[Rare]"])
    (unchecked,) = unchecked_components(spec, stats)
    assert (unchecked.flow, unchecked.reason, unchecked.nominal) == (RARE, "withheld", None)
    assert "fewer than min_participants" not in unchecked.note
    assert "%-rule" in unchecked.note


def test_cross_check_leaves_withheld_and_firm_specific_components_out_and_says_why() -> None:
    spec = _rare_spec()
    stats = aggregate_statistics(spec, _rare_sum(spec, [0.0, 0.0, 7.5, 0.0]), 4)
    (unchecked,) = unchecked_components(spec, stats)
    assert (unchecked.flow, unchecked.reason, unchecked.nominal) == (RARE, "withheld", None)
    assert "1 firm(s) report it" in unchecked.note
    fossil = {c.gas: c for c in linearity_check(spec, stats)}["fossil"]
    assert fossil.predicted == pytest.approx(10 * 25 / 8)  # Input only
    assert fossil.residual == pytest.approx(2.0 * 2 * 7.5 / 8)  # the withheld part stays in the residual

    merged = _rare_spec(components=[
        c.model_copy(update={"aliases": ["77777777-0000-4000-8000-000000000001"]}) if c.flow == RARE else c
        for c in spec.components
    ])  # fmt: skip
    stats = aggregate_statistics(merged, _rare_sum(merged, [1.0, 2.0, 3.0, 4.0]), 4)
    (unchecked,) = unchecked_components(merged, stats)
    assert unchecked.reason == "firm_specific_background"
    assert unchecked.nominal == pytest.approx(2.0 * 25 / 8)
    assert "firm-specific background, not checkable" in unchecked.note
    fossil = {c.gas: c for c in linearity_check(merged, stats)}["fossil"]
    assert fossil.predicted == pytest.approx(10 * 25 / 8)
    assert fossil.residual == pytest.approx(2.0 * 25 / 8)


# ------------------------------------------------------------------------------- gas-level disclosure


def _gas_spec(gases: tuple[str, ...] = ("CO2", "CH4", "SF6")) -> RoundSpec:
    """The hand spec with footprint gases CO2, CH4, SF6 (background: 10 kg CO2 per kg of input)."""
    footprint = _hand_spec().footprint.model_copy(update={"gases": list(gases)})
    return _hand_spec(footprint=footprint, background_factors={FLOW: {"CO2": 10.0}})


def _gas_sum(spec: RoundSpec, ch4: list[float], sf6: list[float], co2: list[float] | None = None) -> list[int]:
    """The four hand firms: CO2 by the background (10 per kg of input) unless given, these CH4 and SF6."""
    co2 = co2 if co2 is not None else [10.0 * x for x in HAND_X]
    return _sum(spec, [
        build_contribution(spec, {FLOW: x}, w, {"CO2": c, "CH4": m, "SF6": f})
        for w, x, c, m, f in zip(HAND_W, HAND_X, co2, ch4, sf6, strict=True)
    ])  # fmt: skip


def test_a_gas_one_firm_emits_is_merged_with_the_most_emitted_gas_into_other_gases() -> None:
    # Prepare: every firm emits CO2, three emit CH4, only the third (weight 2) emits SF6
    spec = _gas_spec()
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 0.0], sf6=[0.0, 0.0, 5.0, 0.0])

    # Execute
    stats = aggregate_statistics(spec, summed, 4)

    # Assert: SF6 is withheld, CO2 (4 emitters, the most) masks it; the total keeps every gas
    assert gas_reporter_counts(spec, summed) == {"CO2": 4, "CH4": 3, "SF6": 1}
    assert withheld_gases(spec, summed) == ["SF6"]
    assert merged_gases(spec, summed) == ["CO2", "SF6"]
    assert withheld_slots(spec, summed) == ["wF[CO2]", "wF[SF6]"]
    assert other_gases_sum(spec, summed) == 1 * 10 + 1 * 20 + 2 * 30 + 4 * 40 + 2 * 5  # Σ w·(F_CO2 + F_SF6)
    fp = stats.footprint
    assert stats.disclosure.publish
    assert fp.weighted_mean_by_gas == {"CH4": 0.5, OTHER_GASES: 32.5}  # (1+1+2)/8 and 260/8
    assert fp.weighted_mean == 33.0
    assert (fp.gas_reporters, fp.withheld_gases, fp.merged_gases) == ({"CO2": 4, "CH4": 3, "SF6": 1}, ("SF6",), ("CO2", "SF6"))
    public = stats.to_public_dict()["footprint"]
    assert "SF6" not in public["weighted_mean_by_gas"] and public["gas_reporters"]["SF6"] == 1


@pytest.mark.parametrize(("sf6", "withheld"), [([0, 0, 0, 0], False), ([0, 1, 2, 0], True), ([1, 1, 2, 0], False)])
def test_gases_are_withheld_exactly_when_emitters_are_between_zero_and_min_participants(
    sf6: list[float], withheld: bool
) -> None:
    spec = _gas_spec()  # min_participants 3
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 1.0], sf6=sf6)
    stats = aggregate_statistics(spec, summed, 4)
    assert gas_reporter_counts(spec, summed)["SF6"] == sum(1 for f in sf6 if f)
    assert (stats.footprint.withheld_gases == ("SF6",)) is withheld
    assert stats.footprint.weighted_mean_by_gas is not None
    assert ("SF6" in stats.footprint.weighted_mean_by_gas) is not withheld
    assert (OTHER_GASES in stats.footprint.weighted_mean_by_gas) is withheld
    assert bool(withheld_slots(spec, summed)) is withheld


def test_the_complementary_gas_is_the_first_in_spec_order_among_equally_reported_ones() -> None:
    spec = _gas_spec(("CH4", "CO2", "SF6"))
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 1.0], sf6=[0.0, 0.0, 5.0, 0.0])
    assert merged_gases(spec, summed) == ["CH4", "SF6"]


def test_without_a_gas_enough_firms_emit_the_merged_sum_is_the_whole_footprint() -> None:
    # Prepare: two firms emit CO2, one SF6, nobody CH4; nothing can mask SF6 but the total itself
    spec = _gas_spec()
    summed = _gas_sum(spec, ch4=[0.0] * 4, sf6=[0.0, 0.0, 5.0, 0.0], co2=[10.0, 20.0, 0.0, 0.0])

    # Execute
    stats = aggregate_statistics(spec, summed, 4)

    # Assert
    assert merged_gases(spec, summed) == ["CO2", "SF6"] and withheld_gases(spec, summed) == ["CO2", "SF6"]
    assert stats.footprint.weighted_mean_by_gas == {"CH4": 0.0, OTHER_GASES: stats.footprint.weighted_mean}


def test_merged_gas_slots_may_be_null_when_their_merged_sum_is_given_and_give_the_same_statistics() -> None:
    # Prepare: the vector as the public log shows it
    spec = _gas_spec()
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 0.0], sf6=[0.0, 0.0, 5.0, 0.0])
    names = [s.name for s in vector_layout(spec)]
    nulled: list[int | None] = [None if n in withheld_slots(spec, summed) else v for n, v in zip(names, summed, strict=True)]
    other = other_gases_sum(spec, summed)

    # Execute / Assert
    assert aggregate_statistics(spec, nulled, 4, other_gases=other) == aggregate_statistics(spec, summed, 4)
    with pytest.raises(AggregationError, match="merged sum was not given"):
        aggregate_statistics(spec, nulled, 4)
    with pytest.raises(AggregationError, match="wF slots sum to 260"):
        aggregate_statistics(spec, summed, 4, other_gases=Fraction(261))
    published = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 0.0], sf6=[1.0, 1.0, 5.0, 0.0])
    with pytest.raises(AggregationError, match="no gas is withheld"):
        aggregate_statistics(spec, published, 4, other_gases=Fraction(10))
    published[names.index("wF[SF6]")] = None  # type: ignore[call-overload]
    with pytest.raises(AggregationError, match=r"slot 'wF\[SF6\]' is missing"):
        aggregate_statistics(spec, published, 4)
    no_count = list(nulled)
    no_count[names.index("nF[SF6]")] = None
    with pytest.raises(AggregationError, match="reporter counts are never withheld"):
        aggregate_statistics(spec, no_count, 4, other_gases=other)


def test_a_gas_whose_cell_fails_merges_every_gas_so_only_the_total_is_shown() -> None:
    # Prepare: every firm emits every gas (nothing merged by the reporter rule)
    spec = _gas_spec()
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 1.0], sf6=[1.0, 1.0, 5.0, 1.0])
    dominated = ["wF[SF6]"]

    # Execute
    stats = aggregate_statistics(spec, summed, 4, dominated=dominated)

    # Assert
    assert merged_gases(spec, summed) == [] and merged_gases(spec, summed, dominated) == ["CO2", "CH4", "SF6"]
    assert withheld_slots(spec, summed, dominated) == ["wF[CO2]", "wF[CH4]", "wF[SF6]"]
    total = 1 * 10 + 1 * 20 + 2 * 30 + 4 * 40 + (1 + 1 + 2 + 4) * 1 + (1 + 1 + 2 * 5 + 4)  # Σ w·(F_CO2 + F_CH4 + F_SF6)
    assert other_gases_sum(spec, summed, dominated) == total
    fp = stats.footprint
    assert stats.disclosure.publish and fp.merged_gases == ("CO2", "CH4", "SF6")
    assert fp.weighted_mean_by_gas == {OTHER_GASES: fp.weighted_mean} and fp.weighted_mean == total / 8


def test_staged_summed_puts_uncollected_slots_as_none_and_folds_dominated_gases_into_the_merged_sum() -> None:
    # Prepare: the stages of the four hand firms; SF6 emitted by one firm, so CO2 and SF6 travel as one slot
    spec = _gas_spec()
    contributions = [
        build_contribution(spec, {FLOW: x}, w, {"CO2": 10.0 * x, "CH4": m, "SF6": f})
        for w, x, m, f in zip(HAND_W, HAND_X, [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 5.0, 0.0], strict=True)
    ]
    full = _sum(spec, contributions)
    staged = run_in_clear(spec, {f"firm {i}": c.ints for i, c in enumerate(contributions)})
    screen, values = staged.sums[Stage.SCREEN], staged.sums[Stage.VALUES]

    # Execute
    summed, other = staged_summed(spec, screen, values)
    folded, everything = staged_summed(spec, screen, values, ["wF[CH4]"])

    # Assert: what was summed equals the full vector; the merged gases' slots were never formed
    names = [s.name for s in vector_layout(spec)]
    assert [names[i] for i, v in enumerate(summed) if v is None] == ["wF[CO2]", "wF[SF6]"]
    assert all(v == full[i] for i, v in enumerate(summed) if v is not None)
    assert other == other_gases_sum(spec, full) == 260
    assert [names[i] for i, v in enumerate(folded) if v is None] == ["wF[CO2]", "wF[CH4]", "wF[SF6]"]
    assert everything == 264  # 260 + Σ w·F_CH4 = 260 + (1 + 1 + 2)
    assert staged_statistics(spec, screen, values) == aggregate_statistics(spec, full, 4)


def test_footprint_of_a_gas_nobody_emits_must_be_zero() -> None:
    spec = _gas_spec()
    summed = _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 1.0], sf6=[0.0] * 4)
    summed[[s.name for s in vector_layout(spec)].index("wF[SF6]")] = 5
    with pytest.raises(AggregationError, match=r"no firm emits it \(nF\[SF6\] = 0\)"):
        aggregate_statistics(spec, summed, 4)


def test_cross_check_checks_the_merged_gases_together_as_other_gases() -> None:
    spec = _gas_spec()
    stats = aggregate_statistics(spec, _gas_sum(spec, ch4=[1.0, 1.0, 1.0, 0.0], sf6=[0.0, 0.0, 5.0, 0.0]), 4)
    checks = {c.gas: c for c in linearity_check(spec, stats)}
    assert list(checks) == ["CH4", OTHER_GASES]
    other = checks[OTHER_GASES]
    assert other.predicted == pytest.approx(10 * 25 / 8)  # CO2 from the inventory; SF6 has no background
    assert other.residual == pytest.approx(2 * 5 / 8)  # the SF6 part, which the sum alone does not tell apart


# ---------------------------------------------------------------------------------------- helpers


def test_histogram_quantile_interpolates_within_the_bin() -> None:
    assert histogram_quantile([2, 0, 2], [0.0, 1.0, 2.0, 3.0], 0.5) == 1.0  # r = 2: top of the first bin
    assert histogram_quantile([4], [10.0, 20.0], 0.25) == 12.5
    with pytest.raises(ValueError):
        histogram_quantile([0, 0], [0.0, 1.0, 2.0], 0.5)


def test_lognormal_gsd_moment_matching() -> None:
    assert lognormal_gsd(1.0, 0.0) == 1.0
    assert lognormal_gsd(2.0, 2.0) == pytest.approx(math.exp(math.sqrt(math.log(2.0))))
    assert lognormal_gsd(0.0, 1.0) is None and lognormal_gsd(-1.0, 1.0) is None
