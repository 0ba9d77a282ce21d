"""Attacks that count the solution space of a published round (issue 10): the legacy second moments give firms away, first moments alone do not."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from fractions import Fraction

import pytest
from disclosure_attacker import (
    FOOTPRINT,
    OUTSIDER,
    PRODUCTION,
    Firm,
    Insider,
    Public,
    bounds,
    bounds_all,
    cells,
    count_unknowns_equations,
    exactly_determined,
    firm_from_values,
    p_rule_disclosed,
    publish,
    solve_legacy,
    solve_legacy_numerically,
)
from example_round import example_spec

from protocols.spec import RoundSpec

P = 0.10  # the p%-rule's p (spec.p_percent = 10 by default)


@pytest.fixture(scope="module")
def spec() -> RoundSpec:
    return example_spec()


def _smelter(spec: RoundSpec, production: float, alumina: float, anode: float, kwh: float, co2: float,
             cf4: float, c2f6: float) -> Firm:  # fmt: skip
    """A smelter of the example round; its footprint follows the round's background."""
    amounts = (alumina, anode, kwh, co2, cf4, c2f6)
    return firm_from_values(spec, production, {c.flow: a for c, a in zip(spec.components, amounts, strict=True)})


# production t, alumina t/t, net anode t/t, AC electricity kWh/t, process CO2 kg/t, CF4 kg/t, C2F6 kg/t
_SMELTERS = [
    (3_000_000, 1.930, 0.450, 13_500.0, 1520.0, 0.040, 0.0045),
    (5_000_000, 1.921, 0.436, 13_310.0, 1495.0, 0.031, 0.0034),
    (2_000_000, 1.944, 0.462, 13_820.0, 1610.0, 0.068, 0.0081),
    (4_000_000, 1.926, 0.441, 13_420.0, 1540.0, 0.037, 0.0040),
    (1_500_000, 1.952, 0.470, 14_050.0, 1650.0, 0.082, 0.0097),
]


def _round(spec: RoundSpec, n: int) -> list[Firm]:
    return [_smelter(spec, *row) for row in _SMELTERS[:n]]


def _attackers(firms: list[Firm]) -> list[tuple[str, Insider, list[Firm]]]:
    """The outsider, every firm alone, and every pair of colluders that leaves at least two firms."""
    out = [("outsider", OUTSIDER, firms)]
    for k in (1, 2):
        for group in itertools.combinations(range(len(firms)), k):
            if len(firms) - k >= 2:
                rest = [f for i, f in enumerate(firms) if i not in group]
                out.append((f"insiders {group}", Insider(tuple(firms[i] for i in group)), rest))
    return out


# ----------------------------------------------------------------------------- the legacy publication


def _legacy_round(spec: RoundSpec) -> list[Firm]:
    return [
        _smelter(spec, 600_000, 1.925, 0.415, 13_350.0, 1525.0, 0.032, 0.0035),
        _smelter(spec, 800_000, 1.930, 0.430, 13_620.0, 1570.0, 0.048, 0.0052),
        _smelter(spec, 700_000, 1.918, 0.405, 13_180.0, 1490.0, 0.025, 0.0028),
    ]


def test_insider_solves_the_other_two_firms_exactly_from_legacy_second_moments(spec: RoundSpec) -> None:
    # Prepare: the legacy log's exact sums of w, w², x, w·x, w·x², F, F², w·F, w·F² at n = 3
    firms = _legacy_round(spec)
    public = publish(spec, firms, moments=True)
    insider = Insider((firms[0],))

    # Execute
    solution = solve_legacy(public, insider)
    unknowns, equations = count_unknowns_equations(public, insider)

    # Assert: more equations than unknowns, and one exact solution: the truth
    assert equations > unknowns
    assert solution.exact and solution.unique()
    big, small = firms[1], firms[2]
    assert solution.weights == (big.w, small.w) == (Fraction(800_000), Fraction(700_000))
    for c in spec.components:
        assert solution.values[c.name_en] == [(big.x[c.name_en], small.x[c.name_en])]
    assert solution.values["F"] == [(big.footprint, small.footprint)]


def test_legacy_weighted_second_moments_alone_leave_two_candidates_one_of_them_true(spec: RoundSpec) -> None:
    # Prepare: a publication without the unweighted sums x and F
    firms = _legacy_round(spec)
    full = publish(spec, firms, moments=True)
    public = replace(full, moments={k: v for k, v in full.moments.items() if not k.startswith("x[") and k != "F"})

    # Execute
    solution = solve_legacy(public, Insider((firms[0],)))

    # Assert: the weights are still exact; each component is one of two values, the truth among them
    assert solution.weights == (firms[1].w, firms[2].w)
    for c in spec.components:
        candidates = solution.values[c.name_en]
        assert len(candidates) <= 2 and (firms[1].x[c.name_en], firms[2].x[c.name_en]) in candidates


def test_insider_legacy_numeric_solver_agrees_with_the_closed_form(spec: RoundSpec) -> None:
    # Prepare
    firms = _legacy_round(spec)
    public = publish(spec, firms, moments=True)

    # Execute
    [solution] = solve_legacy_numerically(public, Insider((firms[0],)), starts=4)

    # Assert
    for found, true in zip(solution, (firms[1], firms[2]), strict=True):
        assert float(found.w) == pytest.approx(float(true.w), rel=1e-9)
        assert float(found.F["F"]) == pytest.approx(float(true.footprint), rel=1e-9)
        for c in spec.components:
            assert float(found.x[c.name_en]) == pytest.approx(float(true.x[c.name_en]), rel=1e-7)


def test_outsider_solves_legacy_round_to_a_few_candidates_that_all_pin_production(spec: RoundSpec) -> None:
    # Prepare: every public byte of the legacy log, no participant's data
    firms = _legacy_round(spec)
    public = publish(spec, firms, moments=True)
    true_w = sorted((float(f.w) for f in firms), reverse=True)
    true_f = [float(f.footprint) for f in sorted(firms, key=lambda f: f.w, reverse=True)]

    # Execute
    solutions = solve_legacy_numerically(public, OUTSIDER, starts=12)

    # Assert: the whole vector counts 36 unknowns (3 x w, 6 components, 5 gases) against 28
    # equations, yet the subsystem of w, the components and the footprint total is square (24
    # against 24): the truth is found, and every solution found puts each firm's production and
    # footprint within p % of its true value. Counting the whole vector is not enough.
    assert count_unknowns_equations(public, OUTSIDER) == (36, 28)
    assert any(all(float(f.w) == pytest.approx(w, rel=1e-9) for f, w in zip(sol, true_w, strict=True))
               for sol in solutions)  # fmt: skip
    for sol in solutions:
        for f, w, fp in zip(sol, true_w, true_f, strict=True):
            assert abs(float(f.w) - w) < P * w and abs(float(f.F["F"]) - fp) < P * fp


# ------------------------------------------------------------------------ first moments only (the new)


@pytest.mark.parametrize("assume_background", [False, True], ids=["free-footprint", "background-footprint"])
@pytest.mark.parametrize("n", [3, 4, 5])
def test_first_moments_pin_no_firm_for_outsider_insider_or_two_colluders(
    spec: RoundSpec, n: int, assume_background: bool
) -> None:
    # Prepare: production, Σ w·x_c and Σ w·F_g published (the linear statistics), exact
    firms = _round(spec, n)
    public = publish(spec, firms, assume_background=assume_background)
    assert public.moments == {} and len(cells(public)) == 1 + 6 + 1 + 5

    for who, attacker, others in _attackers(firms):
        # Execute
        unknowns, equations = count_unknowns_equations(public, attacker)
        found = bounds_all(public, attacker)

        # Assert: fewer equations than unknowns, and every cell of every other firm stays loose
        assert unknowns > equations, who
        for cell, intervals in found.items():
            for firm, (lo, hi) in zip(others, intervals, strict=True):
                true = firm.contribution(cell)
                assert lo <= float(true) * (1 + 1e-9) and hi >= float(true) * (1 - 1e-9), (who, cell)
                assert not exactly_determined(lo, hi), (who, cell)
                assert not p_rule_disclosed(lo, hi, true, P), (who, cell, lo, hi, float(true))


def test_counting_first_moments_at_n3(spec: RoundSpec) -> None:
    # Prepare
    firms = _round(spec, 3)
    insider = Insider((firms[1],))

    # Execute / Assert: 2 firms x (w, 6 components, 5 gases) against 1 + 6 + 5 totals; with the
    # background the gases follow from the components: 2 x 7 against 7
    assert count_unknowns_equations(publish(spec, firms), insider) == (24, 12)
    assert count_unknowns_equations(publish(spec, firms, assume_background=True), insider) == (14, 7)
    assert count_unknowns_equations(publish(spec, firms), OUTSIDER) == (36, 12)


def test_n_minus_one_colluders_determine_the_last_firm_exactly(spec: RoundSpec) -> None:
    # Prepare: k = n - 1, the limit every published sum has (hence k <= n - 2 is the documented bound)
    firms = _round(spec, 3)
    public = publish(spec, firms)
    colluders = Insider((firms[0], firms[1]))

    # Execute
    found = bounds_all(public, colluders)

    # Assert
    assert count_unknowns_equations(public, colluders) == (12, 12)
    for cell, [(lo, hi)] in found.items():
        assert exactly_determined(lo, hi), cell
        assert lo == pytest.approx(float(firms[2].contribution(cell)), rel=1e-7)


def test_withheld_component_is_recovered_through_the_gases_when_firms_use_the_background(spec: RoundSpec) -> None:
    # Prepare: CF4's Σ w·x withheld, the gas CF4 (= 6630 x CF4 under AR5) still published
    firms = _round(spec, 3)
    insider = Insider((firms[1],))
    withheld = {c: v for c, v in publish(spec, firms).components.items() if c != "CF4"}
    cf4 = "wx[CF4]"

    # Execute
    published = bounds(publish(spec, firms, assume_background=True), insider, cf4)
    linked = bounds(replace(publish(spec, firms, assume_background=True), components=withheld), insider, cf4)
    free = bounds(replace(publish(spec, firms), components=withheld), insider, cf4)

    # Assert: with the background the attacker knows as much as if it were published; without it, only the bound
    assert linked[0] == pytest.approx(published[0], rel=1e-7)
    assert free[0][1] > 10 * published[0][1]


# --------------------------------------------------------------- the case the p%-rule exists for


def test_insider_pins_the_other_big_firm_when_the_third_is_tiny(spec: RoundSpec) -> None:
    # Prepare: 5 Mt, 5 Mt and 0.05 Mt; the insider is one of the big ones
    firms = [
        _smelter(spec, 5_000_000, *_SMELTERS[0][1:]),
        _smelter(spec, 5_000_000, *_SMELTERS[1][1:]),
        _smelter(spec, 50_000, *_SMELTERS[2][1:]),
    ]
    public = publish(spec, firms)
    insider = Insider((firms[0],))
    big = firms[1]

    # Execute
    found = bounds_all(public, insider)
    outsider = bounds_all(public, OUTSIDER)

    # Assert: counting alone does not protect: the insider's upper estimate of the other big firm is
    # within p % on production, every component and the footprint; the outsider's is not
    unknowns, equations = count_unknowns_equations(public, insider)
    assert unknowns > equations
    for cell in cells(public):
        (lo, hi), _tiny = found[cell]
        assert p_rule_disclosed(lo, hi, big.contribution(cell), P), cell
        assert not exactly_determined(lo, hi), cell
        for firm, (lo_o, hi_o) in zip(firms, outsider[cell], strict=True):
            assert not p_rule_disclosed(lo_o, hi_o, firm.contribution(cell), P), cell
    assert not _dominance_rule_passes([float(f.w) for f in firms], P)


def _dominance_rule_passes(weights: list[float], p: float) -> bool:
    """The dominance stage's rule (protocols.disclosure): pass iff no share > 1/(2+p) or >= 3 shares >= p/(1+2p)."""
    total = sum(weights)
    b = sum(w / total > 1 / (2 + p) for w in weights)
    m = sum(w / total >= p / (1 + 2 * p) for w in weights)
    return b == 0 or m >= 3


def _production_only(weights: list[float]) -> tuple[Public, list[Firm]]:
    firms = [Firm.of(w, {}, {}) for w in weights]
    public = Public(
        n=len(firms), production=sum((f.w for f in firms), Fraction(0)), component_bounds={}, components={},
        footprint_bounds=(0.0, 50_000.0),
    )  # fmt: skip
    return public, firms


def test_a_round_the_dominance_rule_passes_discloses_no_production_to_a_single_insider() -> None:
    # Prepare: random rounds of 3-6 firms, many of them concentrated
    rng = random.Random(10)
    rounds = [[rng.choice([1e4, 1e5, 1e6]) * rng.uniform(0.5, 9) for _ in range(rng.randint(3, 6))] for _ in range(40)]
    rounds.append([3e6, 5e6, 2e6])

    checked = 0
    for weights in rounds:
        if not _dominance_rule_passes(weights, P):
            continue
        public, firms = _production_only(weights)
        for i, firm in enumerate(firms):
            # Execute
            intervals = bounds(public, Insider((firm,)), PRODUCTION)
            others = [f for j, f in enumerate(firms) if j != i]

            # Assert: the rule is sufficient for the p%-rule against one insider
            for other, (lo, hi) in zip(others, intervals, strict=True):
                assert not p_rule_disclosed(lo, hi, other.w, P), (weights, i)
        checked += 1
    assert checked >= 10


# ------------------------------------------------------------------------------------- the judgement


def test_p_rule_judges_upper_and_lower_estimates() -> None:
    assert p_rule_disclosed(0.0, 105.0, 100.0)  # upper estimate within 5 %
    assert p_rule_disclosed(95.0, 1e9, 100.0)  # lower estimate within 5 %
    assert not p_rule_disclosed(0.0, 110.0, 100.0)  # exactly p: not within
    assert not p_rule_disclosed(0.0, 1e9, 100.0)
    assert exactly_determined(100.0, 100.0 * (1 + 1e-9)) and not exactly_determined(99.0, 101.0)
    assert FOOTPRINT == "wF" and PRODUCTION == "w"
