"""Disclosure stages: what a round collects, in which order, and the rules that decide what is published.

A round is four secure sums over one cohort, in this order (:class:`Stage`); each is run by the
round's protocol (SecAgg over Flower, or Paillier with the custodians), and each stage's vector
holds only what the next decision needs:

1. ``screen``: ``count``, ``w`` and the reporter counts ``n[c]``, ``nF[g]``. Learned: the number of
   participants ``n``, the production total ``W`` and how many firms report each component and gas.
   A round with ``n < min_participants`` (never below :data:`MIN_PARTICIPANTS_FLOOR`) stops here.
2. ``dominance``: two counts for the cell ``production`` (:func:`indicators`). Learned: two integers.
   A round in which one firm holds too large a share of production stops here, before any sum over
   the components exists.
3. ``values``: ``wx[c]`` for the components the reporter rule does not withhold, ``wF[g]`` for the
   gases the gas-level rule does not merge and one slot for the merged ones together
   (:func:`protocols.spec.other_gases_slot`), and, only in rounds that ask for dispersion
   statistics (allowed from :data:`DISPERSION_MIN_PARTICIPANTS` firms), ``x``, ``wx2``, ``F``,
   ``F2``, ``wF2`` and the histogram. Withheld components' sums are never formed at all.
4. ``cells``: the two counts for every published first-moment total (:func:`value_cells`). A
   component whose cell fails is withheld; a failing gas merges every gas into the total; a failing
   footprint (or unweighted-footprint) total suppresses the round.

The dominance rule (Hundepool et al., *Statistical Disclosure Control*, Wiley 2012, §4.2; the
p %-rule as Statistics Canada and Eurostat apply it to magnitude tables): a total ``X = Σ x_i``
over non-negative contributions is *sensitive* when the second-largest contributor, who knows
its own value, can estimate the largest within p %: ``X - x_1 - x_2 < p·x_1``. Computing it needs
the two largest values, which no party may see. So each firm contributes only two bits of its own
share ``s_i = x_i / X``, summed securely like everything else:

* ``b_i = [s_i > 1/(2+p)]`` and ``m_i = [s_i >= p/(1+2p)]``;
* the cell passes iff ``Σ b = 0`` or ``Σ m >= 3``.

Both are sufficient for the p %-rule. If no share exceeds ``h = 1/(2+p)``, then
``X - x_1 - x_2 >= (1 - 2h)·X = p·h·X >= p·x_1``. If three shares are at least ``t = p/(1+2p)``,
then ``x_1 <= (1 - 2t)·X`` and ``X - x_1 - x_2 >= x_3 >= t·X = p·(1 - 2t)·X >= p·x_1``. At
p = 10 %: ``h`` = 47.6 %, ``t`` = 8.3 %; three smelters of 3, 5 and 2 Mt pass (all three shares
>= 8.3 %), 9, 0.5 and 0.5 Mt fail (one share above 47.6 %, one share above 8.3 %). The rule can
suppress a round the exact p %-rule would pass (e.g. shares 0.60, 0.05 × 8); it never passes one
the exact rule suppresses.

A firm needs the total to know its share. It gets a coarse *bracket* ``[lo, hi)`` of it, signed by
the aggregator (:class:`StageContext`): consecutive values of the grid 1, 1.25, 1.6, 2, 2.5, 3.2,
4, 5, 6.4, 8 × 10^k (:func:`bracket`), so a participant learns the total within a factor of at
most 1.28, not exactly, even in a round that is then suppressed. ``b`` is computed against ``lo``
and ``m`` against ``hi``, which makes both tests conservative: a passing cell passes for every
total in the bracket.

What is learned, counted (``n`` firms; ``C`` components, ``G`` gases; unknowns are each firm's
``w``, ``x_c``, ``F_g``: ``n·(1 + C + G)``):

* published, and all the aggregator learns in a round that publishes: ``n``, ``W``, ``Σ w x_c``
  (C), ``Σ w F_g`` (G; merged gases as one), reporter counts, and the pass/fail of each cell:
  ``1 + C + G`` equations in ``n·(1 + C + G)`` unknowns. An insider with ``k`` colluders removes
  ``k·(1 + C + G)`` unknowns and no equation, so at ``n >= k + 2`` every remaining firm keeps
  ``(n - k - 1)·(1 + C + G)`` degrees of freedom; the p %-rule bounds what the freedom allows
  (``tests/test_disclosure_attacks.py`` solves for it).
* the counts ``Σ b``, ``Σ m`` per cell: known to the aggregator, logged only as a salted commitment.
* dispersion statistics add ``Σ x_c``, ``Σ w x_c²``, ``Σ F``, ``Σ F²``, ``Σ w F²`` and a histogram:
  ``2C + 3`` more equations and bins, which pin individuals at small ``n`` (at n = 3 the insider
  solves the other two exactly), hence only with ``min_participants >= 10``.

What a stage context cannot prove: nodes cannot check a SecAgg sum, so in a ``secagg`` round the
brackets and reporter counts are the aggregator's signed word (a lie is attributable, not
prevented); in a ``paillier`` round the custodians decrypt each stage only after checking the
previous one (``protocols.paillier``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from keys.identity import b64url_decode, b64url_encode
from protocols.canonical import Kind, encode
from protocols.encoding import decimal_text
from protocols.errors import AggregationError
from protocols.spec import (
    COMPONENT_VALUE_KINDS,
    KIND_COUNT,
    KIND_F,
    KIND_F2,
    KIND_HIST,
    KIND_N,
    KIND_NF,
    KIND_W,
    KIND_WF,
    KIND_WF2,
    KIND_WX,
    KIND_X,
    OTHER_GASES,
    RoundSpec,
    Slot,
    other_gases_slot,
    spec_hash,
    vector_layout,
)

__all__ = [
    "DISPERSION_MIN_PARTICIPANTS",
    "FOOTPRINT",
    "FOOTPRINT_UNWEIGHTED",
    "LINEAR_STATISTICS",
    "MIN_PARTICIPANTS_FLOOR",
    "PRODUCTION",
    "PROTECTING_FIRMS",
    "STAGES",
    "Cell",
    "CellCounts",
    "ContextRejected",
    "Screen",
    "SignedStageContext",
    "Stage",
    "StageContext",
    "StageDecision",
    "StagedRound",
    "assemble_summed",
    "bracket",
    "cell_passes",
    "cell_totals",
    "cells_of",
    "check_context",
    "context_digest",
    "count_layout",
    "decide_cells",
    "indicators",
    "is_withheld",
    "max_above",
    "merged_gases_of",
    "read_counts",
    "read_screen",
    "screen_decision",
    "screen_layout",
    "sign_context",
    "spec_problems",
    "split_stage_round_id",
    "stage_layout",
    "stage_round_id",
    "stage_vector",
    "values_layout",
    "verify_context",
]


class Stage(StrEnum):
    """The secure sums of a round, in order."""

    SCREEN = "screen"
    DOMINANCE = "dominance"
    VALUES = "values"
    CELLS = "cells"


STAGES: Final = tuple(Stage)
MIN_PARTICIPANTS_FLOOR: Final = 3
"""No round publishes over fewer firms: with two, each knows the other's values from the totals."""
DISPERSION_MIN_PARTICIPANTS: Final = 10
"""Statistics beyond the linear ones need ``min_participants`` at least this (module docstring)."""
LINEAR_STATISTICS: Final = frozenset({"weighted_mean", "footprint_weighted_mean"})
PROTECTING_FIRMS: Final = 3
"""A cell passes when this many firms each hold at least ``p/(1+2p)`` of it (module docstring)."""
PRODUCTION: Final = "production"
FOOTPRINT: Final = "footprint"
FOOTPRINT_UNWEIGHTED: Final = "footprint (unweighted)"
_SCREEN_KINDS = frozenset({KIND_COUNT, KIND_W, KIND_N, KIND_NF})
_AFTER_WF_KINDS = frozenset({KIND_F, KIND_F2, KIND_WF2, KIND_HIST})
_GRID = tuple(Fraction(m) for m in ("1", "1.25", "1.6", "2", "2.5", "3.2", "4", "5", "6.4", "8"))


# ------------------------------------------------------------------------------------------- specs


def spec_problems(spec: RoundSpec, *, floor: int = MIN_PARTICIPANTS_FLOOR) -> list[str]:
    """What keeps ``spec`` from running under this release's disclosure rules (empty when it can run).

    ``floor`` is the least ``min_participants`` the checking party accepts: the aggregator uses
    :data:`MIN_PARTICIPANTS_FLOOR`, a node its own setting (never lower).
    """
    floor = max(floor, MIN_PARTICIPANTS_FLOOR)
    problems: list[str] = []
    if spec.min_participants < floor:
        problems.append(
            f"min_participants {spec.min_participants} is below {floor}, the least this party accepts; "
            f"accepted: min_participants >= {floor}"
        )
    extra = sorted(set(spec.statistics) - LINEAR_STATISTICS)
    if extra and spec.min_participants < DISPERSION_MIN_PARTICIPANTS:
        problems.append(
            f"statistics {extra} need the firms' second moments or distribution, which pin individual firms in "
            f"small cohorts; accepted: only {sorted(LINEAR_STATISTICS)} with min_participants "
            f"{spec.min_participants}, or min_participants >= {DISPERSION_MIN_PARTICIPANTS}"
        )
    if spec.dominance_threshold is not None:
        problems.append(
            "dominance_threshold is release 0.1's concentration screen, which trusted each firm's own w²; "
            "accepted: p_percent (the p %-rule, computed inside the secure protocol), or neither (10 %)"
        )
    return problems


# ------------------------------------------------------------------------------------------ layouts


def screen_layout(spec: RoundSpec) -> list[Slot]:
    """The screen stage's slots: ``count``, ``w``, ``n[c]`` per component, ``nF[g]`` per gas."""
    return [s for s in vector_layout(spec) if s.kind in _SCREEN_KINDS]


def is_withheld(spec: RoundSpec, reporters: int) -> bool:
    """Whether a component (or gas) with ``reporters`` non-zero reporters is withheld: ``0 < reporters < min_participants``."""
    return 0 < reporters < spec.min_participants


def _withheld_by_reporters(spec: RoundSpec, reporters: Sequence[int]) -> set[int]:
    return {i for i, r in enumerate(reporters) if is_withheld(spec, r)}


def merged_gases_of(spec: RoundSpec, gas_reporters: Mapping[str, int]) -> list[str]:
    """The gases shown only summed, from the gas reporter counts (``protocols.stats.merged_gases``)."""
    merged = {g for g, k in gas_reporters.items() if is_withheld(spec, k)}
    if not merged:
        return []
    candidates = [g for g, k in gas_reporters.items() if k >= spec.min_participants]
    if candidates:
        merged.add(max(candidates, key=gas_reporters.__getitem__))  # max keeps the first of equals: spec order
    return [g for g in gas_reporters if g in merged]


@dataclass(frozen=True)
class Screen:
    """What the screen stage's sum shows."""

    n: int
    production: int
    """``Σ w`` in the ``w`` slot's integer steps."""
    reporters: tuple[int, ...]
    """Per component, in spec order: firms whose value is not zero."""
    gas_reporters: dict[str, int]
    """Per gas, in spec order: firms whose footprint of it is not zero (empty without per-gas slots)."""

    def withheld(self, spec: RoundSpec) -> set[int]:
        """Indexes of the components the reporter rule withholds (``0 < reporters < min_participants``)."""
        return _withheld_by_reporters(spec, self.reporters)

    def merged(self, spec: RoundSpec) -> list[str]:
        """The gases the gas-level rule merges, in spec order."""
        return merged_gases_of(spec, self.gas_reporters)


def read_screen(spec: RoundSpec, summed: Sequence[int]) -> Screen:
    """The screen stage's sum, checked: ``n`` within 1..max_participants, every count within 0..n.

    Raises
    ------
    AggregationError
        Wrong length or an impossible value.
    """
    slots = screen_layout(spec)
    if len(summed) != len(slots):
        raise AggregationError(f"screen sum has {len(summed)} slots; the stage's layout has {len(slots)}")
    values = {s.name: int(v) for s, v in zip(slots, summed, strict=True)}
    n = values[KIND_COUNT]
    if not 0 <= n <= spec.max_participants:
        raise AggregationError(f"screen: count {n}; accepted: 0 to max_participants {spec.max_participants}")
    production = values[KIND_W]
    if not n <= production <= n * next(s.bound_int for s in slots if s.kind == KIND_W):
        raise AggregationError(f"screen: production {production} steps is impossible for {n} firms")
    for s in slots:
        if s.kind in (KIND_N, KIND_NF) and not 0 <= values[s.name] <= n:
            raise AggregationError(f"screen: {s.name} = {values[s.name]}; accepted: 0 to n = {n}")
    return Screen(
        n=n,
        production=production,
        reporters=tuple(values[s.name] for s in slots if s.kind == KIND_N),
        gas_reporters={s.gas: values[s.name] for s in slots if s.kind == KIND_NF and s.gas is not None},
    )


def values_layout(spec: RoundSpec, withheld: set[int], merged: Sequence[str]) -> list[Slot]:
    """The values stage's slots, for the components not ``withheld`` and the gases not ``merged``.

    The full layout's value slots in order, without the screen's, the withheld components' and the
    merged gases' (whose sum takes one slot, :func:`protocols.spec.other_gases_slot`, after the
    last ``wF`` slot).
    """
    merged_set = set(merged)
    out = [
        s
        for s in vector_layout(spec)
        if s.kind not in _SCREEN_KINDS
        and not (s.kind in COMPONENT_VALUE_KINDS and s.component in withheld)
        and not (s.kind == KIND_WF and s.gas in merged_set)
    ]
    other = other_gases_slot(spec) if merged_set else None
    if other is not None:
        kept_wf = [i for i, s in enumerate(out) if s.kind == KIND_WF]
        after = [i for i, s in enumerate(out) if s.kind in _AFTER_WF_KINDS]
        at = kept_wf[-1] + 1 if kept_wf else (after[0] if after else len(out))
        out.insert(at, other)
    return out


@dataclass(frozen=True)
class Cell:
    """A published first-moment total the dominance rule checks, and the slots a firm's part of it is the sum of."""

    name: str
    slots: tuple[str, ...]
    """Slot names (of the stage that carries them) whose values, each divided by its scale, add up to the firm's part."""
    stage: Stage
    """The stage whose sum gives the cell's total."""


def cells_of(spec: RoundSpec, stage: Stage, withheld: set[int], merged: Sequence[str]) -> list[Cell]:
    """The cells a count stage checks: ``production`` for ``dominance``; every value total for ``cells``.

    For ``cells``: each component's ``wx[c]`` (and ``x[c]`` when collected), the footprint total
    (the ``wF`` slots together), each gas shown on its own when there are two or more, and the
    unweighted footprint ``F`` when collected.
    """
    if stage == Stage.DOMINANCE:
        return [Cell(PRODUCTION, (KIND_W,), Stage.SCREEN)]
    if stage != Stage.CELLS:
        raise ValueError(f"stage {stage!s} counts no cells")
    layout = values_layout(spec, withheld, merged)
    out = [Cell(s.name, (s.name,), Stage.VALUES) for s in layout if s.kind in (KIND_WX, KIND_X)]
    wf = [s.name for s in layout if s.kind == KIND_WF]
    if wf:
        out.append(Cell(FOOTPRINT, tuple(wf), Stage.VALUES))
        if len(wf) > 1:
            out += [Cell(name, (name,), Stage.VALUES) for name in wf]
    if any(s.kind == KIND_F for s in layout):
        out.append(Cell(FOOTPRINT_UNWEIGHTED, (KIND_F,), Stage.VALUES))
    return out


def count_layout(cells: Sequence[Cell]) -> list[Slot]:
    """Two count slots per cell, ``b[cell]`` then ``m[cell]`` (bound 1, scale 1)."""
    one = Fraction(1)
    return [
        Slot(
            name=f"{kind}[{cell.name}]",
            kind=kind,
            component=None,
            scale=one,
            bound_int=1,
            signed=False,
            unit="firm",
            bound=one,
            nominal_scale=one,
            description=(
                f"firm's share of {cell.name} above 1/(2+p)" if kind == "b" else f"firm's share of {cell.name} at least p/(1+2p)"
            ),
        )
        for cell in cells
        for kind in ("b", "m")
    ]


def stage_layout(spec: RoundSpec, stage: Stage, context: StageContext | None) -> list[Slot]:
    """The slots of ``stage``; every stage after ``screen`` needs the context the aggregator signed for it."""
    if stage == Stage.SCREEN:
        return screen_layout(spec)
    if context is None:
        raise ValueError(f"stage {stage!s} needs its stage context")
    withheld, merged = context.withheld(spec), context.merged(spec)
    if stage == Stage.VALUES:
        return values_layout(spec, withheld, merged)
    return count_layout(cells_of(spec, stage, withheld, merged))


# --------------------------------------------------------------------------------------- the rule


def bracket(total: Fraction) -> tuple[Fraction, Fraction]:
    """The grid values ``lo <= |total| < hi`` (grid 1, 1.25, 1.6, 2, 2.5, 3.2, 4, 5, 6.4, 8 × 10^k); ``(0, 0)`` for 0."""
    t = abs(Fraction(total))
    if t == 0:
        return Fraction(0), Fraction(0)
    k = math.floor(math.log10(t.numerator) - math.log10(t.denominator))
    while Fraction(10) ** k > t:  # float log10 can be off by one near powers of ten
        k -= 1
    while Fraction(10) ** (k + 1) <= t:
        k += 1
    grid = [g * Fraction(10) ** k for g in _GRID] + [Fraction(10) ** (k + 1)]
    lo = max(g for g in grid if g <= t)
    hi = min(g for g in grid if g > t)
    return lo, hi


def indicators(value: Fraction, lo: Fraction, hi: Fraction, p: Fraction) -> tuple[int, int]:
    """A firm's two bits for one cell: ``b = [|v|·(2+p) > lo]``, ``m = [v ≠ 0 and |v|·(1+2p) >= p·hi]``.

    With ``lo <= |X| < hi`` the bracket of the total: ``b = 0`` implies a share of at most
    ``1/(2+p)``, and ``m = 1`` a share of at least ``p/(1+2p)``, whatever the total in the bracket.
    """
    v = abs(Fraction(value))
    return int(v * (2 + p) > lo), int(v != 0 and hi > 0 and v * (1 + 2 * p) >= p * hi)


def cell_passes(b: int, m: int) -> bool:
    """The dominance rule on a cell's counts: no firm above ``1/(2+p)``, or three at least ``p/(1+2p)``."""
    return b == 0 or m >= PROTECTING_FIRMS


@dataclass(frozen=True)
class CellCounts:
    """The summed bits of one cell."""

    cell: str
    b: int
    m: int

    @property
    def passes(self) -> bool:
        return cell_passes(self.b, self.m)


def max_above(p: Fraction) -> int:
    """The most firms whose bit ``b`` can be 1 in one cell: fewer than ``1.28 (2+p)`` (the grid's widest step)."""
    return math.ceil(Fraction(32, 25) * (2 + p)) - 1


def read_counts(cells: Sequence[Cell], summed: Sequence[int], n: int, *, p: Fraction) -> list[CellCounts]:
    """A count stage's sum, checked: every count within ``0..n``.

    Raises
    ------
    AggregationError
        Wrong length, a count outside ``0..n`` (a negative count can only come from a lying firm),
        or counts that honest bits cannot give (``b > m``, ``b > max_above(p)``).
    """
    if len(summed) != 2 * len(cells):
        raise AggregationError(f"count sum has {len(summed)} slots; {len(cells)} cells need {2 * len(cells)}")
    out: list[CellCounts] = []
    for i, cell in enumerate(cells):
        b, m = int(summed[2 * i]), int(summed[2 * i + 1])
        for name, v in (("b", b), ("m", m)):
            if not 0 <= v <= n:
                raise AggregationError(f"cell {cell.name!r}: count {name} = {v}; accepted: 0 to n = {n}")
        # Invariants of honest bits: a share above 1/(2+p) is also at least p/(1+2p) (for p <= 50 %,
        # whatever the total in the bracket), so b <= m; and the firms above 1/(2+p) of the bracket's
        # low end hold less than the total, so there are at most max_above(p) of them (2 at 10 %).
        # Sums that break them come from inconsistent (lying) contributions.
        if b > m or b > max_above(p):
            raise AggregationError(
                f"cell {cell.name!r}: counts b = {b}, m = {m}; honest share bits give b <= m and b <= {max_above(p)}"
            )
        out.append(CellCounts(cell.name, b, m))
    return out


@dataclass(frozen=True)
class StageDecision:
    """Whether the round goes on after a stage, and if not, which rule stopped it."""

    proceed: bool
    rule: str | None
    message: str
    cell: str | None = None


def screen_decision(spec: RoundSpec, screen: Screen) -> StageDecision:
    """After ``screen``: suppress below ``max(min_participants, 3)`` participants."""
    least = max(spec.min_participants, MIN_PARTICIPANTS_FLOOR)
    if screen.n < least:
        return StageDecision(
            False, "min_participants", f"{screen.n} participant(s); the round publishes only with at least {least}"
        )
    return StageDecision(True, None, f"{screen.n} participants")


def decide_cells(spec: RoundSpec, counts: Sequence[CellCounts]) -> tuple[StageDecision, list[str]]:
    """After a count stage: stop when ``production`` or a footprint total fails; else the failing cells to withhold."""
    pct = f"{float(spec.p_rule) * 100:g} %"
    failed = [c.cell for c in counts if not c.passes]
    fatal = [c for c in failed if c in (PRODUCTION, FOOTPRINT, FOOTPRINT_UNWEIGHTED)]
    if fatal:
        return (
            StageDecision(
                False,
                "dominance",
                f"the {fatal[0]} total fails the {pct}-rule: one firm holds so large a share that another could "
                f"estimate it within {pct}",
                cell=fatal[0],
            ),
            failed,
        )
    note = f"; withheld by the {pct}-rule: {', '.join(failed)}" if failed else ""
    return StageDecision(True, None, f"every cell passes the {pct}-rule{note}" if not failed else f"dominance{note}"), failed


# ----------------------------------------------------------------------------------------- contexts


class ContextRejected(ValueError):
    """A stage context that does not verify or does not fit the invitation; nothing was sent."""


class StageContext(BaseModel):
    """What a stage after ``screen`` is computed from, as the aggregator signs it for the cohort."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round_id: str
    spec_hash: str
    stage: Stage
    cohort: list[str] = Field(min_length=1)
    """Identity public keys (base64url) of the screen stage's contributors, sorted: every stage sums over them."""
    reporters: list[int]
    """The screen's reporter counts per component (spec order)."""
    gas_reporters: dict[str, int] = Field(default_factory=dict)
    brackets: dict[str, tuple[str, str]] = Field(default_factory=dict)
    """Per cell of a count stage: ``[lo, hi)`` of its total (exact decimal strings, in the cell's unit steps)."""

    @property
    def n(self) -> int:
        return len(self.cohort)

    def withheld(self, spec: RoundSpec) -> set[int]:
        return _withheld_by_reporters(spec, self.reporters)

    def merged(self, spec: RoundSpec) -> list[str]:
        return merged_gases_of(spec, self.gas_reporters)

    def bracket_of(self, cell: str) -> tuple[Fraction, Fraction]:
        lo, hi = self.brackets[cell]
        return Fraction(lo), Fraction(hi)


class SignedStageContext(BaseModel):
    """A stage context and the aggregator's Ed25519 signature over its canonical encoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: StageContext
    signature: str


def _context_bytes(context: StageContext) -> bytes:
    return encode(Kind.STAGE_CONTEXT, context.model_dump(mode="json"))


def context_digest(context: StageContext) -> str:
    """SHA-256 hex of a context's canonical bytes: what a stage's log entry names, so a node can match the context it got."""
    return hashlib.sha256(_context_bytes(context)).hexdigest()


def sign_context(
    key: Ed25519PrivateKey,
    spec: RoundSpec,
    stage: Stage,
    cohort: Sequence[str],
    screen: Screen,
    totals: Mapping[str, Fraction] | None = None,
) -> SignedStageContext:
    """The aggregator's signed context for ``stage``: cohort, reporter counts and, for count stages, the brackets of ``totals``."""
    brackets = {cell: tuple(decimal_text(v) for v in bracket(total)) for cell, total in (totals or {}).items()}
    context = StageContext(
        round_id=spec.round_id,
        spec_hash=spec_hash(spec),
        stage=stage,
        cohort=sorted(cohort),
        reporters=list(screen.reporters),
        gas_reporters=dict(screen.gas_reporters),
        brackets=brackets,  # type: ignore[arg-type]  # tuples of two str, as the field declares
    )
    return SignedStageContext(context=context, signature=b64url_encode(key.sign(_context_bytes(context))))


def verify_context(signed: SignedStageContext, aggregator_key: Ed25519PublicKey) -> StageContext:
    """The context if the aggregator's signature verifies, else :class:`ContextRejected`."""
    try:
        aggregator_key.verify(b64url_decode(signed.signature), _context_bytes(signed.context))
    except (InvalidSignature, ValueError):
        raise ContextRejected("the stage context is not signed by the aggregator this node enrolled with") from None
    return signed.context


def check_context(spec: RoundSpec, context: StageContext, stage: Stage, own_key: str, ints: Sequence[int]) -> None:
    """What a node checks of a verified context before it computes anything from it.

    Raises
    ------
    ContextRejected
        The context is for another round, spec or stage; the firm is not in its cohort; the cohort
        is below the round's minimum; reporter counts are impossible or contradict the firm's own
        values; a bracket is missing, inverted, or below the firm's own part of the cell.
    """
    where = f"round {spec.round_id}, stage {stage!s}: the stage context was refused"
    if context.round_id != spec.round_id or context.spec_hash != spec_hash(spec) or context.stage != stage:
        raise ContextRejected(
            f"{where}: it is for round {context.round_id!r}, stage {context.stage!s}, spec {context.spec_hash[:16]}"
        )
    if own_key not in context.cohort or len(set(context.cohort)) != len(context.cohort):
        raise ContextRejected(f"{where}: this firm is not (exactly once) in its cohort of {context.n}")
    least = max(spec.min_participants, MIN_PARTICIPANTS_FLOOR)
    if context.n < least:
        raise ContextRejected(f"{where}: a cohort of {context.n}; accepted: at least {least}")
    layout = vector_layout(spec)
    own = {s.name: int(v) for s, v in zip(layout, ints, strict=True)}
    reporters = [s for s in layout if s.kind == KIND_N]
    if len(context.reporters) != len(reporters) or any(not 0 <= r <= context.n for r in context.reporters):
        raise ContextRejected(f"{where}: reporter counts {context.reporters} do not fit {len(reporters)} components")
    for s, r in zip(reporters, context.reporters, strict=True):
        if own[s.name] == 1 and r == 0:
            raise ContextRejected(f"{where}: {s.name} = 0 though this firm reports the component")
    gas_slots = {s.gas: s for s in layout if s.kind == KIND_NF and s.gas is not None}
    if set(context.gas_reporters) != set(gas_slots) or any(not 0 <= r <= context.n for r in context.gas_reporters.values()):
        raise ContextRejected(f"{where}: gas reporter counts {context.gas_reporters} do not fit the spec's gases")
    for gas, s in gas_slots.items():
        if own[s.name] == 1 and context.gas_reporters[gas] == 0:
            raise ContextRejected(f"{where}: nF[{gas}] = 0 though this firm emits {gas}")
    if stage in (Stage.DOMINANCE, Stage.CELLS):
        cells = cells_of(spec, stage, context.withheld(spec), context.merged(spec))
        if set(context.brackets) != {c.name for c in cells}:
            raise ContextRejected(f"{where}: brackets for {sorted(context.brackets)}; expected {sorted(c.name for c in cells)}")
        parts = _cell_parts(spec, ints, context, cells)
        for cell in cells:
            lo, hi = context.bracket_of(cell.name)
            if lo < 0 or hi < lo or (lo == 0) != (hi == 0) or (lo > 0 and bracket(lo) != (lo, hi)):
                raise ContextRejected(f"{where}: bracket [{lo}, {hi}) of {cell.name} is not a bracket of the grid")
            if parts[cell.name] != 0 and abs(parts[cell.name]) >= hi:
                raise ContextRejected(
                    f"{where}: the total of {cell.name} is below {hi}, less than this firm's own part alone"
                )


# ------------------------------------------------------------------------------------------- vectors


def _values_ints(spec: RoundSpec, ints: Sequence[int], layout: Sequence[Slot]) -> dict[str, int]:
    """A firm's values-stage integers by slot name, from its full contribution."""
    full = vector_layout(spec)
    own = {s.name: int(v) for s, v in zip(full, ints, strict=True)}
    kept = {x.name for x in layout}
    out: dict[str, int] = {}
    for s in layout:
        if s.gas == OTHER_GASES:
            merged = [f for f in full if f.kind == KIND_WF and f.name not in kept]
            exact_sum = sum((Fraction(own[f.name]) / f.scale for f in merged), Fraction(0))
            out[s.name] = round(exact_sum * s.scale)
        else:
            out[s.name] = own[s.name]
    return out


def _cell_values(cells: Sequence[Cell], slots: Sequence[Slot], ints: Sequence[int]) -> dict[str, Fraction]:
    """Per cell, ``Σ integer / scale`` over the cell's slots, from one vector laid out as ``slots``."""
    by_name = {s.name: Fraction(int(v)) / s.scale for s, v in zip(slots, ints, strict=True)}
    return {cell.name: sum((by_name[n] for n in cell.slots), Fraction(0)) for cell in cells}


def _cell_parts(spec: RoundSpec, ints: Sequence[int], context: StageContext, cells: Sequence[Cell]) -> dict[str, Fraction]:
    """The firm's own part of each cell, in the cell's unit (slot value / scale, summed over the cell's slots)."""
    if cells and cells[0].stage == Stage.SCREEN:
        return _cell_values(cells, vector_layout(spec), ints)
    layout = values_layout(spec, context.withheld(spec), context.merged(spec))
    values = _values_ints(spec, ints, layout)
    return _cell_values(cells, layout, [values[s.name] for s in layout])


def stage_vector(spec: RoundSpec, ints: Sequence[int], stage: Stage, context: StageContext | None) -> list[int]:
    """What a firm sends in ``stage``, from its approved contribution's integers (the full layout's).

    ``screen`` and ``values`` pick (and, for merged gases, add up) the firm's slots; ``dominance``
    and ``cells`` are its two bits per cell against the context's brackets (:func:`indicators`).
    """
    full = vector_layout(spec)
    if len(ints) != len(full):
        raise ValueError(f"contribution has {len(ints)} integers; the round's layout has {len(full)}")
    if stage == Stage.SCREEN:
        own = {s.name: int(v) for s, v in zip(full, ints, strict=True)}
        return [own[s.name] for s in screen_layout(spec)]
    if context is None:
        raise ValueError(f"stage {stage!s} needs its stage context")
    if stage == Stage.VALUES:
        layout = values_layout(spec, context.withheld(spec), context.merged(spec))
        values = _values_ints(spec, ints, layout)
        return [values[s.name] for s in layout]
    cells = cells_of(spec, stage, context.withheld(spec), context.merged(spec))
    parts = _cell_parts(spec, ints, context, cells)
    out: list[int] = []
    for cell in cells:
        lo, hi = context.bracket_of(cell.name)
        out.extend(indicators(parts[cell.name], lo, hi, spec.p_rule))
    return out


def cell_totals(spec: RoundSpec, cells: Sequence[Cell], screen: Screen, values: Sequence[int] | None,
                withheld: set[int], merged: Sequence[str]) -> dict[str, Fraction]:
    """Each cell's total, in the cell's unit, from the screen's or the values stage's sum."""
    if cells and cells[0].stage == Stage.SCREEN:
        w = next(s for s in screen_layout(spec) if s.kind == KIND_W)
        return {PRODUCTION: Fraction(screen.production) / w.scale}
    if values is None:
        raise ValueError("the cells stage needs the values stage's sum")
    return _cell_values(cells, values_layout(spec, withheld, merged), values)


def assemble_summed(
    spec: RoundSpec, screen_sum: Sequence[int], values_sum: Sequence[int], withheld: set[int], merged: Sequence[str]
) -> tuple[list[int | None], Fraction | None]:
    """The full layout's sums from the two sum stages: ``None`` where nothing was collected, and the merged gases' sum.

    What :func:`protocols.stats.aggregate_statistics` takes (its ``summed`` and ``other_gases``).
    """
    by_name: dict[str, int] = {s.name: int(v) for s, v in zip(screen_layout(spec), screen_sum, strict=True)}
    layout = values_layout(spec, withheld, merged)
    if len(values_sum) != len(layout):
        raise AggregationError(f"values sum has {len(values_sum)} slots; the stage's layout has {len(layout)}")
    other: Fraction | None = None
    for s, v in zip(layout, values_sum, strict=True):
        if s.gas == OTHER_GASES:
            other = Fraction(int(v)) / s.scale
        else:
            by_name[s.name] = int(v)
    return [by_name.get(s.name) for s in vector_layout(spec)], other


# ------------------------------------------------------------------------------------ the round's state


@dataclass
class StagedRound:
    """The aggregator's side of a round's stages: which stage runs next, with which context, and what was decided.

    One instance per round; :meth:`record` takes each stage's sum and its contributors (identity
    public keys) in order. The stage sums are the aggregator's only copy of what it learned; what
    is stored and logged of them is decided by the caller (``aggregator.round_outcome``).
    """

    spec: RoundSpec
    cohort: list[str] = field(default_factory=list)
    sums: dict[Stage, list[int]] = field(default_factory=dict)
    stopped: StageDecision | None = None
    dominated: list[str] = field(default_factory=list)

    @property
    def screen(self) -> Screen:
        return read_screen(self.spec, self.sums[Stage.SCREEN])

    def next_stage(self) -> Stage | None:
        """The stage to run next; ``None`` once the round stopped or every stage ran."""
        if self.stopped is not None:
            return None
        return next((s for s in STAGES if s not in self.sums), None)

    def _layout_args(self) -> tuple[set[int], list[str]]:
        screen = self.screen
        return screen.withheld(self.spec), screen.merged(self.spec)

    def cells(self, stage: Stage) -> list[Cell]:
        withheld, merged = self._layout_args()
        return cells_of(self.spec, stage, withheld, merged)

    def layout(self, stage: Stage) -> list[Slot]:
        """The slots of ``stage`` (after ``screen``, from its sum)."""
        if stage == Stage.SCREEN:
            return screen_layout(self.spec)
        withheld, merged = self._layout_args()
        if stage == Stage.VALUES:
            return values_layout(self.spec, withheld, merged)
        return count_layout(cells_of(self.spec, stage, withheld, merged))

    def context(self, key: Ed25519PrivateKey, stage: Stage) -> SignedStageContext | None:
        """The signed context the cohort computes ``stage`` from (``None`` for ``screen``)."""
        if stage == Stage.SCREEN:
            return None
        screen = self.screen
        totals: dict[str, Fraction] | None = None
        if stage in (Stage.DOMINANCE, Stage.CELLS):
            withheld, merged = self._layout_args()
            cells = cells_of(self.spec, stage, withheld, merged)
            totals = cell_totals(self.spec, cells, screen, self.sums.get(Stage.VALUES), withheld, merged)
        return sign_context(key, self.spec, stage, self.cohort, screen, totals)

    def record(self, stage: Stage, summed: Sequence[int], contributors: Sequence[str]) -> StageDecision:
        """Take ``stage``'s sum; return whether the round goes on (and, if not, the rule that stopped it).

        Raises
        ------
        AggregationError
            A stage out of order, a sum of the wrong length or with impossible values, or
            contributors that are not the screen's cohort (a firm that leaves between stages would
            make the counts describe other firms than the totals).
        """
        if stage != self.next_stage():
            raise AggregationError(f"stage {stage!s} out of order; expected {self.next_stage()}")
        values = [int(v) for v in summed]
        if stage == Stage.SCREEN:
            if len(set(contributors)) != len(contributors):
                raise AggregationError("screen: a contributor appears twice")
            screen = read_screen(self.spec, values)
            if screen.n != len(contributors):
                raise AggregationError(f"screen: count {screen.n} but {len(contributors)} contributors")
            self.cohort = sorted(contributors)
            self.sums[stage] = values
            decision = screen_decision(self.spec, screen)
        else:
            if sorted(contributors) != self.cohort:
                raise AggregationError(
                    f"stage {stage!s}: {len(contributors)} contributors are not the screen's cohort of "
                    f"{len(self.cohort)}; every stage sums over the same firms"
                )
            if len(values) != len(self.layout(stage)):
                raise AggregationError(f"stage {stage!s}: {len(values)} sums; the stage has {len(self.layout(stage))} slots")
            if stage == Stage.VALUES:
                decision = StageDecision(True, None, "values summed")
            else:
                counts = read_counts(self.cells(stage), values, len(self.cohort), p=self.spec.p_rule)
                decision, failed = decide_cells(self.spec, counts)
                self.dominated += failed
            self.sums[stage] = values
        if not decision.proceed:
            self.stopped = decision
        return decision

    def counts(self) -> dict[str, dict[str, int]]:
        """Every cell's summed bits so far: ``{cell: {"b": ..., "m": ...}}`` (what the log commits to)."""
        out: dict[str, dict[str, int]] = {}
        for stage in (Stage.DOMINANCE, Stage.CELLS):
            if stage in self.sums:
                for c in read_counts(self.cells(stage), self.sums[stage], len(self.cohort), p=self.spec.p_rule):
                    out[c.cell] = {"b": c.b, "m": c.m}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (sums as decimal strings), for a round that waits between stages."""
        return {
            "cohort": list(self.cohort),
            "sums": {str(k): [str(v) for v in vs] for k, vs in self.sums.items()},
            "stopped": None if self.stopped is None else self.stopped.__dict__,
            "dominated": list(self.dominated),
        }

    @classmethod
    def from_dict(cls, spec: RoundSpec, doc: Mapping[str, Any]) -> StagedRound:
        stopped = doc.get("stopped")
        return cls(
            spec=spec,
            cohort=[str(k) for k in doc.get("cohort") or []],
            sums={Stage(k): [int(v) for v in vs] for k, vs in (doc.get("sums") or {}).items()},
            stopped=StageDecision(**stopped) if isinstance(stopped, dict) else None,
            dominated=[str(c) for c in doc.get("dominated") or []],
        )


def stage_round_id(round_id: str, stage: Stage) -> str:
    """The secure-aggregation round id of one stage, ``<round id>/<stage>``: every key, signature and mask is bound to it."""
    return f"{round_id}/{stage}"


def split_stage_round_id(text: str) -> tuple[str, Stage]:
    """``(round id, stage)`` of :func:`stage_round_id`; a bare round id or an unknown stage is refused.

    Raises
    ------
    ValueError
        Naming the id and what is accepted.
    """
    round_id, sep, stage = text.rpartition("/")
    if not sep or stage not in {str(s) for s in STAGES}:
        raise ValueError(
            f"secure-aggregation round id {text!r}: accepted: '<round id>/<stage>' with a stage of "
            f"{[str(s) for s in STAGES]} (this release runs every round in disclosure stages)"
        )
    return round_id, Stage(stage)
