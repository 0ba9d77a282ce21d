"""The attacker of issue 10: what an outsider, or k colluding participants, can infer about the other firms from a published round.

The attacker knows what a round publishes (the totals of its cells, and in a legacy round the
second-moment sums), the round's plausibility bounds and, as an insider, the colluders' own
values. It counts the solution space (:func:`count_unknowns_equations`) and bounds every other
firm's contribution to every cell by linear programming (:func:`bounds`): with first moments only
the set of the other firms' contributions consistent with the publication is a polytope in the
variables ``w_j``, ``v_jc = w_j x_jc``, ``u_j = w_j F_j`` and ``u_jg = w_j F_jg``::

    sum_j w_j = W - own,  sum_j v_jc = V_c - own,  sum_j u_j = U - own,  sum_j u_jg = U_g - own
    floor <= w_j <= weight bound,  lo_c w_j <= v_jc <= hi_c w_j,  lo_F w_j <= u_j <= hi_F w_j, ...
    u_j = sum_g u_jg (the footprint is the sum of its gases)
    u_jg = sum_c b_gc v_jc (optional: the firms used the round's background factors b)

and the min and max of one coordinate over it are the tightest bounds the attacker can derive.
:func:`p_rule_disclosed` judges them in the sense of the p%-rule (Hundepool et al., *Statistical
Disclosure Control*, 2012, sec. 4.2): a firm is disclosed when the attacker's upper or lower
estimate of its contribution lies within p % of the true value.

Second moments make the set non-convex; :func:`solve_legacy` solves the two-firm system a legacy
publication (sums of ``w``, ``w^2``, ``w x``, ``w x^2``, optionally ``x``) leaves an insider at
n = 3, in closed form and exact rational arithmetic.

Cells are named like the contribution vector's slots (:func:`protocols.spec.vector_layout`):
``"w"`` (production), ``"wx[<component>]"``, ``"wF[<gas>]"``, and ``"wF"`` for the footprint total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares, linprog

from protocols.spec import RoundSpec

__all__ = [
    "FOOTPRINT",
    "OUTSIDER",
    "PRODUCTION",
    "Firm",
    "Insider",
    "Interval",
    "LegacySolution",
    "Public",
    "bounds",
    "bounds_all",
    "cells",
    "component_cell",
    "count_unknowns_equations",
    "exactly_determined",
    "firm_from_values",
    "gas_cell",
    "p_rule_disclosed",
    "public_from_spec",
    "publish",
    "slot_sums",
    "solve_legacy",
    "solve_legacy_numerically",
]

#: Cell of the production total ``sum w``.
PRODUCTION = "w"
#: Cell of the footprint total ``sum w F`` (the sum of the per-gas cells when they are all published).
FOOTPRINT = "wF"

Interval = tuple[float, float]
Bounds = tuple[float, float]


def component_cell(name: str) -> str:
    """The cell ``sum w x_c`` of the component named ``name``."""
    return f"wx[{name}]"


def gas_cell(gas: str) -> str:
    """The cell ``sum w F_g`` of one gas."""
    return f"wF[{gas}]"


def _inner(cell: str, prefix: str) -> str | None:
    if cell.startswith(prefix + "[") and cell.endswith("]"):
        return cell[len(prefix) + 1 : -1]
    return None


# ------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class Firm:
    """One firm's own values: production ``w``, components ``x`` per unit, footprint per gas ``F`` per unit."""

    w: Fraction
    x: Mapping[str, Fraction]
    F: Mapping[str, Fraction]
    """Footprint per gas (kg CO2e per unit); the total footprint is their sum."""

    @classmethod
    def of(cls, w: float | Fraction, x: Mapping[str, float | Fraction], F: Mapping[str, float | Fraction]) -> Firm:
        """A firm from plain numbers, taken exactly (``Fraction(0.1)`` is the binary double)."""
        return cls(Fraction(w), {k: Fraction(v) for k, v in x.items()}, {g: Fraction(v) for g, v in F.items()})

    @property
    def footprint(self) -> Fraction:
        """The total footprint per unit: the sum over gases."""
        return sum(self.F.values(), Fraction(0))

    def value(self, cell: str) -> Fraction:
        """The firm's per-unit value behind a cell (``w`` itself for production)."""
        if cell == PRODUCTION:
            return self.w
        if cell == FOOTPRINT:
            return self.footprint
        if (c := _inner(cell, "wx")) is not None:
            return self.x[c]
        if (g := _inner(cell, "wF")) is not None:
            return self.F[g]
        raise ValueError(f"cell {cell!r}: accepted: 'w', 'wF', 'wx[<component>]', 'wF[<gas>]'")

    def contribution(self, cell: str) -> Fraction:
        """The firm's contribution to a cell: ``w``, ``w x_c``, ``w F`` or ``w F_g``, exactly."""
        return self.w if cell == PRODUCTION else self.w * self.value(cell)

    def moment(self, key: str) -> Fraction:
        """The firm's term of a second-moment sum named like its slot: ``w2``, ``x[c]``, ``wx2[c]``, ``F``, ``F2``, ``wF2``."""
        if key == "w2":
            return self.w**2
        if key == "F":
            return self.footprint
        if key == "F2":
            return self.footprint**2
        if key == "wF2":
            return self.w * self.footprint**2
        if (c := _inner(key, "x")) is not None:
            return self.x[c]
        if (c := _inner(key, "wx2")) is not None:
            return self.w * self.x[c] ** 2
        raise ValueError(f"moment {key!r}: accepted: 'w2', 'x[c]', 'wx2[c]', 'F', 'F2', 'wF2'")


@dataclass(frozen=True)
class Public:
    """What anyone sees of a published round: its totals, exactly, and the round's bounds.

    ``component_bounds`` lists every component the firms report (per unit, ``(lo, hi)``; ``(0, b)``
    or ``(-b, b)`` when signed); ``components`` the published totals ``sum w x_c`` (a withheld
    component has bounds and no total). Likewise ``gas_bounds`` lists the gases whose sum is the
    footprint (empty: no split by gas) and ``gases`` the published ``sum w F_g``.
    """

    n: int
    production: Fraction
    component_bounds: Mapping[str, Bounds]
    components: Mapping[str, Fraction]
    footprint_bounds: Bounds
    footprint: Fraction | None = None
    gas_bounds: Mapping[str, Bounds] = field(default_factory=dict)
    gases: Mapping[str, Fraction] = field(default_factory=dict)
    weight_bound: float = 1e7
    weight_floor: float = 1.0
    background: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Gas -> component -> factor, when the attacker may assume ``F_g = sum_c factor x_c`` for every firm."""
    moments: Mapping[str, Fraction] = field(default_factory=dict)
    """A legacy round's second-moment and unweighted sums, keyed like their slots (``w2``, ``x[c]``, ``wx2[c]``, ``F``, ``F2``, ``wF2``)."""

    def total(self, cell: str) -> Fraction | None:
        """The published total of a cell, ``None`` when it is not published."""
        if cell == PRODUCTION:
            return self.production
        if cell == FOOTPRINT:
            return self.footprint
        if (c := _inner(cell, "wx")) is not None:
            return self.components.get(c)
        if (g := _inner(cell, "wF")) is not None:
            return self.gases.get(g)
        raise ValueError(f"cell {cell!r}: accepted: 'w', 'wF', 'wx[<component>]', 'wF[<gas>]'")


@dataclass(frozen=True)
class Insider:
    """The ``k`` colluding participants' own values (none: the outsider, or the aggregator)."""

    firms: tuple[Firm, ...] = ()

    @property
    def k(self) -> int:
        return len(self.firms)

    def own(self, cell: str) -> Fraction:
        return sum((f.contribution(cell) for f in self.firms), Fraction(0))

    def own_moment(self, key: str) -> Fraction:
        return sum((f.moment(key) for f in self.firms), Fraction(0))


#: The attacker who holds no participant's data.
OUTSIDER = Insider()


def cells(public: Public) -> list[str]:
    """The published cells: production, each published component, the footprint total, each published gas."""
    out = [PRODUCTION, *(component_cell(c) for c in public.components)]
    if public.footprint is not None:
        out.append(FOOTPRINT)
    out += [gas_cell(g) for g in public.gases]
    return out


# ----------------------------------------------------------------------------------- from a spec


def _bounds(bound: float, signed: bool) -> Bounds:
    return (-bound, bound) if signed else (0.0, bound)


def firm_from_values(
    spec: RoundSpec,
    weight: float,
    values: Mapping[str, float],
    footprint_by_gas: Mapping[str, float] | None = None,
) -> Firm:
    """A firm of a round: ``values`` keyed by flow UUID (like :class:`tests.example_round.FirmInput`).

    Without ``footprint_by_gas`` the footprint follows the round's background exactly
    (``F_g = sum_c x_c b_cg``, as :func:`protocols.contribution.footprint_from_components`, in Fractions).
    """
    x = {c.name_en: Fraction(values.get(c.flow, 0.0)) for c in spec.components}
    if footprint_by_gas is None:
        by_flow = {c.flow: x[c.name_en] for c in spec.components}
        fp = {g: Fraction(0) for g in spec.footprint.gases}
        for flow, by_gas in spec.background_factors.items():
            for gas, factor in by_gas.items():
                fp[gas] += by_flow.get(flow, Fraction(0)) * Fraction(factor)
    else:
        fp = {g: Fraction(footprint_by_gas.get(g, 0.0)) for g in spec.footprint.gases}
    return Firm(Fraction(weight), x, fp)


def slot_sums(spec: RoundSpec, firms: Sequence[Firm], *, moments: bool = False) -> dict[str, Fraction]:
    """The exact sums of a round's cells over ``firms``, keyed by slot name; with ``moments`` also the legacy ones."""
    names = [c.name_en for c in spec.components]
    keys = [PRODUCTION, *(component_cell(c) for c in names), *(gas_cell(g) for g in spec.footprint.gases)]
    out = {k: sum((f.contribution(k) for f in firms), Fraction(0)) for k in keys}
    if moments:
        legacy = ["w2", *(f"x[{c}]" for c in names), *(f"wx2[{c}]" for c in names), "F", "F2", "wF2"]
        out |= {k: sum((f.moment(k) for f in firms), Fraction(0)) for k in legacy}
    return out


def public_from_spec(
    spec: RoundSpec,
    n: int,
    sums: Mapping[str, Fraction],
    *,
    assume_background: bool = False,
) -> Public:
    """What a round publishes, from its spec (bounds) and its published sums keyed by slot name.

    ``sums`` holds ``w``, the ``wx[c]`` and ``wF[g]`` that were published (left out: withheld), the
    footprint total as ``wF`` (computed from the gases when every gas is given) and any legacy
    second-moment sums (``w2``, ``x[c]``, ``wx2[c]``, ``F``, ``F2``, ``wF2``). With
    ``assume_background`` the attacker also assumes every firm's footprint follows the round's
    background factors (components with aliases excepted: their backgrounds differ between firms).
    """
    fp = spec.footprint
    comp_bounds = {c.name_en: _bounds(c.bound, c.allow_negative) for c in spec.components}
    components = {c: sums[component_cell(c)] for c in comp_bounds if component_cell(c) in sums}
    gases = {g: sums[gas_cell(g)] for g in fp.gases if gas_cell(g) in sums}
    total = sums.get(FOOTPRINT)
    if total is None and len(gases) == len(fp.gases):
        total = sum(gases.values(), Fraction(0))
    background: dict[str, dict[str, float]] = {}
    if assume_background:
        by_flow = {c.flow: c for c in spec.components}
        if all(not c.aliases for c in spec.components) and set(spec.background_factors) <= set(by_flow):
            for flow, by_gas in spec.background_factors.items():
                for gas, factor in by_gas.items():
                    background.setdefault(gas, {})[by_flow[flow].name_en] = factor
            for gas in fp.gases:
                background.setdefault(gas, {})
    legacy = {k: v for k, v in sums.items() if k == "w2" or k in ("F", "F2", "wF2") or k.startswith(("x[", "wx2["))}
    return Public(
        n=n,
        production=sums[PRODUCTION],
        component_bounds=comp_bounds,
        components=components,
        footprint_bounds=_bounds(fp.bound, fp.allow_negative),
        footprint=total,
        gas_bounds={g: _bounds(fp.bound, fp.allow_negative) for g in fp.gases},
        gases=gases,
        weight_bound=spec.weight.bound,
        weight_floor=1.0 / spec.weight.scale,
        background=background,
        moments=legacy,
    )


def publish(
    spec: RoundSpec, firms: Sequence[Firm], *, moments: bool = False, assume_background: bool = False
) -> Public:
    """The publication of a synthetic round: :func:`public_from_spec` over the exact :func:`slot_sums` of ``firms``."""
    return public_from_spec(
        spec, len(firms), slot_sums(spec, firms, moments=moments), assume_background=assume_background
    )


# ------------------------------------------------------------------------------ the linear program


@dataclass(frozen=True)
class _Program:
    """The polytope of the remaining firms' contributions, in scaled variables ``y = value / scale``."""

    index: dict[tuple[str, int], int]
    scale: npt.NDArray[np.float64]
    a_ub: npt.NDArray[np.float64]
    b_ub: npt.NDArray[np.float64]
    a_structural: npt.NDArray[np.float64]
    a_published: npt.NDArray[np.float64]
    b_published: npt.NDArray[np.float64]
    var_bounds: list[tuple[float, float]]
    remaining: int


def _program(public: Public, insider: Insider) -> _Program:
    m = public.n - insider.k
    if m < 1:
        raise ValueError(f"{insider.k} insider(s) in a round of {public.n}: no other firm is left to attack")
    comps, gases = list(public.component_bounds), list(public.gas_bounds)
    has_footprint = public.footprint is not None or bool(gases)
    per_firm = [PRODUCTION, *(component_cell(c) for c in comps)]
    per_firm += [FOOTPRINT] if has_footprint else []
    per_firm += [gas_cell(g) for g in gases]
    index = {(cell, j): j * len(per_firm) + i for j in range(m) for i, cell in enumerate(per_firm)}
    nvar = len(index)

    # Scales: a firm's average contribution where a total is published, else its bound; so the
    # coefficients are O(1) and HiGHS's absolute tolerances are relative ones.
    s_w = max(float(public.production) / public.n, public.weight_floor)
    cell_bounds: dict[str, Bounds] = {component_cell(c): public.component_bounds[c] for c in comps}
    cell_bounds |= {gas_cell(g): public.gas_bounds[g] for g in gases}
    if has_footprint:
        cell_bounds[FOOTPRINT] = public.footprint_bounds
    cell_scale = {PRODUCTION: s_w}
    for cell, (lo, hi) in cell_bounds.items():
        total = public.total(cell)
        avg = abs(float(total)) / public.n if total is not None else 0.0
        cell_scale[cell] = avg if avg > 0 else max(abs(lo), abs(hi), 1e-12) * s_w
    scale = np.empty(nvar)
    for (cell, _j), i in index.items():
        scale[i] = cell_scale[cell]

    ub_rows: list[npt.NDArray[np.float64]] = []
    structural: list[npt.NDArray[np.float64]] = []
    for j in range(m):
        iw = index[(PRODUCTION, j)]
        for cell, (lo, hi) in cell_bounds.items():
            iv, s = index[(cell, j)], cell_scale[cell]
            row = np.zeros(nvar)  # v - hi w <= 0
            row[iv], row[iw] = 1.0, -hi * s_w / s
            ub_rows.append(row)
            row = np.zeros(nvar)  # lo w - v <= 0
            row[iv], row[iw] = -1.0, lo * s_w / s
            ub_rows.append(row)
        if gases:
            row = np.zeros(nvar)  # u = sum_g u_g
            row[index[(FOOTPRINT, j)]] = 1.0
            for g in gases:
                row[index[(gas_cell(g), j)]] = -cell_scale[gas_cell(g)] / cell_scale[FOOTPRINT]
            structural.append(row)
        for g, factors in public.background.items():
            if g not in public.gas_bounds:
                continue
            row = np.zeros(nvar)  # u_g = sum_c b_gc v_c
            row[index[(gas_cell(g), j)]] = 1.0
            for c, b in factors.items():
                row[index[(component_cell(c), j)]] = -b * cell_scale[component_cell(c)] / cell_scale[gas_cell(g)]
            structural.append(row)

    published: list[npt.NDArray[np.float64]] = []
    rhs: list[float] = []
    for cell in cells(public):
        total = public.total(cell)
        assert total is not None
        row = np.zeros(nvar)
        for j in range(m):
            row[index[(cell, j)]] = 1.0
        published.append(row)
        rhs.append(float(total - insider.own(cell)) / cell_scale[cell])

    var_bounds = [(-np.inf, np.inf)] * nvar
    for j in range(m):
        var_bounds[index[(PRODUCTION, j)]] = (public.weight_floor / s_w, public.weight_bound / s_w)

    def stack(rows: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
        return np.vstack(rows) if rows else np.zeros((0, nvar))

    return _Program(
        index=index,
        scale=scale,
        a_ub=stack(ub_rows),
        b_ub=np.zeros(len(ub_rows)),
        a_structural=stack(structural),
        a_published=stack(published),
        b_published=np.array(rhs),
        var_bounds=var_bounds,
        remaining=m,
    )


def count_unknowns_equations(public: Public, insider: Insider) -> tuple[int, int]:
    """The remaining firms' unknowns and the independent equations the publication gives on them.

    Unknowns: per remaining firm its production, every component and every gas (the footprint is
    their sum; with :attr:`Public.background` the gases follow from the components and are not
    unknowns). Equations: the rank of the published totals on those unknowns (a footprint total
    that is the sum of published gases adds none), plus one per legacy second-moment sum.
    """
    prog = _program(public, insider)
    nvar = len(prog.index)
    r_structural = int(np.linalg.matrix_rank(prog.a_structural)) if len(prog.a_structural) else 0
    r_all = int(np.linalg.matrix_rank(np.vstack([prog.a_structural, prog.a_published])))
    return nvar - r_structural, r_all - r_structural + len(public.moments)


def _solve(prog: _Program, cost: npt.NDArray[np.float64]) -> float:
    a_eq = np.vstack([prog.a_structural, prog.a_published])
    b_eq = np.concatenate([np.zeros(len(prog.a_structural)), prog.b_published])
    res = linprog(cost, A_ub=prog.a_ub, b_ub=prog.b_ub, A_eq=a_eq, b_eq=b_eq, bounds=prog.var_bounds, method="highs")
    if res.status != 0:
        raise ValueError(f"the publication admits no consistent contributions (HiGHS: {res.message})")
    return float(res.fun)


def bounds_all(public: Public, insider: Insider, targets: Iterable[str] | None = None) -> dict[str, list[Interval]]:
    """:func:`bounds` for several cells (default: every published cell), sharing one program."""
    prog = _program(public, insider)
    out: dict[str, list[Interval]] = {}
    for cell in cells(public) if targets is None else targets:
        # The program is symmetric in the remaining firms (the attacker cannot tell them apart), so
        # firm 0's interval is every firm's: one pair of LPs per cell.
        i = prog.index[(cell, 0)]
        cost = np.zeros(len(prog.index))
        cost[i] = 1.0
        lo = _solve(prog, cost) * prog.scale[i]
        hi = -_solve(prog, -cost) * prog.scale[i]
        out[cell] = [(lo, hi)] * prog.remaining
    return out


def bounds(public: Public, insider: Insider, target_cell: str) -> list[Interval]:
    """The tightest bounds an attacker derives on each remaining firm's contribution to a cell.

    Parameters
    ----------
    public
        What the round publishes (first-moment totals; :attr:`Public.moments` are ignored here: they
        make the set non-convex, see :func:`solve_legacy`).
    insider
        The colluders' own values; :data:`OUTSIDER` for none.
    target_cell
        ``"w"``, ``"wx[<component>]"``, ``"wF"`` or ``"wF[<gas>]"``.

    Returns
    -------
    list[Interval]
        Per remaining firm ``(min, max)`` of its contribution (``w_j``, ``w_j x_jc``, ``w_j F_j`` or
        ``w_j F_jg``) over every set of contributions consistent with the publication and the
        bounds. The remaining firms are interchangeable to the attacker (the same polytope
        coordinate for each), so the intervals are equal; the judgement is per firm, against its
        true value.
    """
    return bounds_all(public, insider, [target_cell])[target_cell]


def p_rule_disclosed(lo: float, hi: float, true_value: float | Fraction, p: float = 0.10) -> bool:
    """Whether ``[lo, hi]`` pins a contribution in the p%-rule's sense: an upper or lower estimate within p %."""
    t = float(true_value)
    return hi - t < p * abs(t) or t - lo < p * abs(t)


def exactly_determined(lo: float, hi: float, rel_tol: float = 1e-6) -> bool:
    """Whether the interval is one value (to the LP's tolerance, relative)."""
    return hi - lo <= rel_tol * max(1.0, abs(lo), abs(hi))


# ------------------------------------------------------------------------------------- legacy rounds


@dataclass(frozen=True)
class LegacySolution:
    """The two other firms of a legacy n = 3 round, solved by an insider.

    ``weights`` is their production, larger first; ``values[name]`` lists, per component (by name)
    and for the footprint (``"F"``), every pair ``(value of the larger firm, value of the smaller)``
    consistent with every published sum and the bounds. ``exact`` is ``True`` when every number was
    found in exact rational arithmetic (no square root had to be rounded).
    """

    weights: tuple[Fraction, Fraction]
    values: dict[str, list[tuple[Fraction, Fraction]]]
    exact: bool

    def unique(self) -> bool:
        """Whether every value has exactly one solution."""
        return all(len(v) == 1 for v in self.values.values())


def _sqrt(q: Fraction) -> tuple[Fraction, bool]:
    """``sqrt(q)``: exact when ``q`` is the square of a rational, else the double's root."""
    if q <= 0:
        return Fraction(0), q == 0
    rn, rd = math.isqrt(q.numerator), math.isqrt(q.denominator)
    if rn * rn == q.numerator and rd * rd == q.denominator:
        return Fraction(rn, rd), True
    return Fraction(math.sqrt(q)), False


def _two_firm_values(
    wa: Fraction, wb: Fraction, a: Fraction, b: Fraction, x: Fraction | None, lo: float, hi: float
) -> tuple[list[tuple[Fraction, Fraction]], bool]:
    """Solve ``wa xa + wb xb = a``, ``wa xa^2 + wb xb^2 = b`` (and ``xa + xb = x`` when published), within ``[lo, hi]``."""
    s1 = wa + wb
    if x is not None and wa != wb:
        # linear: xa + xb = x, wa xa + wb xb = a; the second moment must then agree
        xa = (a - wb * x) / (wa - wb)
        candidates, exact = [(xa, x - xa)], True
        second = wa * xa * xa + wb * (x - xa) ** 2
        if abs(float(second - b)) > 1e-9 * max(1.0, abs(float(b))):
            candidates = []
    else:
        # wa xa^2 + (a - wa xa)^2 / wb = b  <=>  wa s1 xa^2 - 2 a wa xa + a^2 - b wb = 0, roots
        # xa = a / s1 +- sqrt(wb (s1 b - a^2) / wa) / s1, where s1 b - a^2 = wa wb (xa - xb)^2
        root, exact = _sqrt(wb * (s1 * b - a * a) / wa)
        candidates = [(xa, (a - wa * xa) / wb) for xa in {(a + root) / s1, (a - root) / s1}]
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    return sorted(c for c in candidates if all(lo - tol <= float(v) <= hi + tol for v in c)), exact


def solve_legacy(public: Public, insider: Insider) -> LegacySolution:
    """Solve the two other firms of a legacy round from its second-moment sums (the finding of issue 10).

    The insider subtracts its own terms and holds, for the two others, ``s1 = wa + wb`` and
    ``s2 = wa^2 + wb^2``: so ``wa, wb = (s1 +- sqrt(2 s2 - s1^2)) / 2``. Per component,
    ``sum w x`` and ``sum w x^2`` leave two roots of a quadratic (:func:`_two_firm_values`); a
    published ``sum x`` makes it linear and unique, as does the footprint's ``sum F``. Solutions
    outside the bounds are dropped.

    Raises
    ------
    ValueError
        Unless exactly two firms remain and ``w2`` is published.
    """
    m = public.n - insider.k
    if m != 2 or "w2" not in public.moments:
        raise ValueError(f"the closed form needs two remaining firms and a published w2 (have {m} firms)")
    s1 = public.production - insider.own(PRODUCTION)
    s2 = public.moments["w2"] - insider.own_moment("w2")
    d, exact = _sqrt(2 * s2 - s1 * s1)
    wa, wb = (s1 + d) / 2, (s1 - d) / 2
    values: dict[str, list[tuple[Fraction, Fraction]]] = {}
    for c, (lo, hi) in public.component_bounds.items():
        second = public.moments.get(f"wx2[{c}]")
        total = public.components.get(c)
        if second is None or total is None:
            continue
        xs = public.moments.get(f"x[{c}]")
        values[c], ok = _two_firm_values(
            wa,
            wb,
            total - insider.own(component_cell(c)),
            second - insider.own_moment(f"wx2[{c}]"),
            None if xs is None else xs - insider.own_moment(f"x[{c}]"),
            lo,
            hi,
        )
        exact = exact and ok
    if public.footprint is not None and "wF2" in public.moments:
        fs = public.moments.get("F")
        lo, hi = public.footprint_bounds
        values["F"], ok = _two_firm_values(
            wa,
            wb,
            public.footprint - insider.own(FOOTPRINT),
            public.moments["wF2"] - insider.own_moment("wF2"),
            None if fs is None else fs - insider.own_moment("F"),
            lo,
            hi,
        )
        exact = exact and ok
    return LegacySolution((wa, wb), values, exact)


def solve_legacy_numerically(
    public: Public, insider: Insider, *, starts: int = 24, seed: int = 0, rel_tol: float = 1e-9, max_nfev: int = 300
) -> list[tuple[Firm, ...]]:
    """Solve the remaining firms of a legacy round from every published moment, from several starts.

    Unknowns: per remaining firm ``w``, each component with a published ``wx2[c]`` and the
    footprint total (when ``wF2`` is published). Equations: ``w``, ``w2``; per such component
    ``wx[c]``, ``wx2[c]`` and ``x[c]`` where published; ``wF``, ``wF2``, ``F`` and ``F2`` where
    published. ``scipy.optimize.least_squares`` (Levenberg-Marquardt, analytic Jacobian) runs from
    ``starts`` random starts around the published means; every solution within the bounds whose
    relative residuals are all below ``rel_tol`` is kept, once up to the order of the firms
    (largest production first). Firms in the result carry only the solved values (the footprint
    as one gas, ``"F"``). Levenberg-Marquardt needs at least as many equations as unknowns.

    This is the outsider's attack of issue 10 (n = 3: as many equations as unknowns); an empty
    result means no start converged, not that no solution exists.
    """
    m = public.n - insider.k
    comps = [c for c in public.component_bounds if f"wx2[{c}]" in public.moments and c in public.components]
    with_f = public.footprint is not None and "wF2" in public.moments
    if m < 1 or "w2" not in public.moments:
        raise ValueError(f"needs a published w2 and at least one remaining firm (have {m})")
    w_total = public.production - insider.own(PRODUCTION)
    s_w = float(w_total) / m
    names = [*comps, *(["F"] if with_f else [])]
    scale = {c: max(abs(float(public.components[c])) / float(public.production), 1e-12) for c in comps}
    bounds_of = dict(public.component_bounds)
    if with_f:
        assert public.footprint is not None
        scale["F"] = max(abs(float(public.footprint)) / float(public.production), 1e-12)
        bounds_of["F"] = public.footprint_bounds

    # The remaining totals, in the order of the sums ``residuals`` computes: w, w2, then per
    # name wx, wx2, x, x2 (NaN where not published; those are left out).
    k = len(names)
    totals = np.full(2 + 4 * k, np.nan)
    totals[0] = float(w_total)
    totals[1] = float(public.moments["w2"] - insider.own_moment("w2"))
    for i, c in enumerate(names):
        first = public.components[c] - insider.own(component_cell(c)) if c != "F" else None
        keys = (f"wx2[{c}]", f"x[{c}]", None) if c != "F" else ("wF2", "F", "F2")
        if c == "F":
            assert public.footprint is not None
            first = public.footprint - insider.own(FOOTPRINT)
        assert first is not None
        totals[2 + i] = float(first)
        for block, key in enumerate(keys, start=1):
            if key is not None and key in public.moments:
                totals[2 + block * k + i] = float(public.moments[key] - insider.own_moment(key))
    used = ~np.isnan(totals)
    norm = np.maximum(np.abs(totals[used]), 1e-300)
    unit = np.array([scale[c] for c in names])
    width = 1 + k

    def residuals(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = y.reshape(m, width)
        w = z[:, 0] * s_w
        x = z[:, 1:] * unit
        wx = w[:, None] * x
        sums = np.concatenate([[w.sum(), (w * w).sum()], wx.sum(0), (wx * x).sum(0), x.sum(0), (x * x).sum(0)])
        return np.asarray((sums[used] - totals[used]) / norm, dtype=np.float64)

    def jacobian(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = y.reshape(m, width)
        w = z[:, 0] * s_w
        x = z[:, 1:] * unit
        jac = np.zeros((2 + 4 * k, m, width))
        jac[0, :, 0] = s_w
        jac[1, :, 0] = 2 * w * s_w
        for i in range(k):
            jac[2 + i, :, 0], jac[2 + i, :, 1 + i] = x[:, i] * s_w, w * unit[i]
            jac[2 + k + i, :, 0] = x[:, i] ** 2 * s_w
            jac[2 + k + i, :, 1 + i] = 2 * w * x[:, i] * unit[i]
            jac[2 + 2 * k + i, :, 1 + i] = unit[i]
            jac[2 + 3 * k + i, :, 1 + i] = 2 * x[:, i] * unit[i]
        return np.asarray(jac.reshape(2 + 4 * k, m * width)[used] / norm[:, None], dtype=np.float64)

    lo = [public.weight_floor / s_w, *(bounds_of[c][0] / scale[c] for c in names)] * m
    hi = [public.weight_bound / s_w, *(bounds_of[c][1] / scale[c] for c in names)] * m
    rng = np.random.default_rng(seed)
    found: list[tuple[Firm, ...]] = []
    seen: list[npt.NDArray[np.float64]] = []
    for _ in range(starts):
        # Starts around the means: production spread widely, values per unit close (firms of one
        # product use similar technology)
        y0 = np.column_stack([rng.lognormal(0.0, 0.4, size=m), 1 + 0.03 * rng.standard_normal((m, k))]).ravel()
        y0 = np.clip(y0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        res = least_squares(
            residuals, y0, jac=jacobian, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=max_nfev
        )
        if np.any(res.x < np.array(lo) - 1e-9) or np.any(res.x > np.array(hi) + 1e-9):
            continue  # outside the round's bounds: not a solution the attacker keeps
        if np.max(np.abs(res.fun)) > rel_tol:
            continue
        z = res.x.reshape(m, width)
        z = z[np.argsort(-z[:, 0])]
        if any(np.allclose(z, other, rtol=1e-6, atol=0) for other in seen):
            continue
        seen.append(z)
        found.append(
            tuple(
                Firm.of(
                    row[0] * s_w,
                    {c: row[1 + i] * scale[c] for i, c in enumerate(comps)},
                    {"F": row[-1] * scale["F"]} if with_f else {},
                )
                for row in z
            )
        )
    return found
