"""Industry statistics from the summed contribution vectors, and the rules that decide whether to publish them.

Everything is computed in exact rational arithmetic from the summed integers and rounded to float
once at the end, so the only errors are the fixed-point roundings, which are bounded:

* a base slot (``w``, ``x``, ``F``) carries the quantised value exactly;
* a derived slot at its nominal scale (product of base scales) is exact too; one whose scale was
  coarsened to fit 63 bits is off by at most half a step per firm, so its sum by ``n / (2 * scale)``.

Variances are ``E[v^2] - E[v]^2``. For exact sums over quantised values this is >= 0
(Cauchy-Schwarz); with the bounded roundings above it can come out slightly negative. A negative
value within the rounding bound is clamped to 0; one beyond it cannot come from rounding and
means some contribution's slots contradict each other (e.g. a ``w*x^2`` that is not the square of
its ``x``), so :class:`~protocols.errors.AggregationError` is raised instead of publishing.

Disclosure happens at two levels. The round's rules (:func:`check_disclosure`: minimum
participants, and the p %-rule on the production and footprint totals, decided inside the secure
protocol by :mod:`protocols.disclosure`) decide whether anything is published. Then, per component, the
reporter count ``n_c`` (the sum of the ``n[c]`` slots: how many firms have a non-zero value of
component ``c``) decides whether that component's statistics are: a component with
``0 < n_c < spec.min_participants`` is *withheld*, because the sums ``Σx``, ``Σwx``, ``Σwx²`` over
the firms that report it are those few firms' own values (one reporter: exactly its values; two:
each learns the other's). A withheld component gets no statistics (:attr:`ComponentStatistics.withheld`),
is left out of the published unit process (:func:`protocols.factor.build_factor`), and its value
slots (:func:`withheld_slots`) MUST NOT be stored or published by the aggregator, which keeps
only its reporter count (in a staged round the values stage never sums them at all). ``n_c = 0``
(nobody reports it) is not withheld: the sums are all zero. A component whose own total fails
the p %-rule (``dominated``) is withheld the same way.

Withholding does not make the rest of the round forget the component: the firms' footprints
still contain its emissions, so when every other component is published and the firms used the
round's background, the footprint minus the published inventory is the withheld components'
background-weighted sum ``Σ_c b_c Σwx_c / Σw``. A round design should therefore give flows
that few firms use a common component (:attr:`protocols.spec.Component.aliases`) rather than
rely on withholding.

The same rule applies per gas. The slots ``wF[g]`` sum the firms' weighted footprints of gas
``g``, so a gas few firms emit (SF6 from one firm's switchgear) would publish those firms'
``w·F_g``. Each gas has a reporter count ``n_g`` (the sum of the ``nF[g]`` slots: firms whose
footprint of ``g`` is not zero after rounding), and a gas with ``0 < n_g < spec.min_participants``
is withheld (:func:`withheld_gases`): no per-gas statistic. Its emissions stay in the total
footprint, a sum over all gases and all firms, and the per-gas breakdown shows them merged under
:data:`OTHER_GASES`. Since the total minus the gases shown *is* that merged sum, merging the
withheld gases alone would publish their few emitters' values after all; the merge therefore
also takes in one *complementary* gas that at least ``min_participants`` firms emit -- the one
with the most reporters, the first in spec order on a tie. The choice depends on the reporter
counts only, so a verifier recomputes it from the public log. The merged gases
(:func:`merged_gases`) have their ``wF`` slots in :func:`withheld_slots`: the aggregator MUST NOT
store or publish them, and publishes their sum (:func:`other_gases_sum`) instead, which covers at
least ``min_participants`` firms. Without a complementary gas (no other gas has that many
emitters) the merged sum is the whole footprint, which is published anyway. In the factor's
fossil/biogenic split the merged sum counts as fossil, whatever the merged gases are: splitting
it by origin would separate the withheld gases again. As with components, linearity undoes part
of this: where the firms computed the complementary gas from the round's background, the
published inventory predicts it, and the merged sum minus that prediction (the residual
:func:`linearity_check` reports for :data:`OTHER_GASES`) is the withheld gases' part. The rule
keeps a few firms' gas from being published as a number of its own; a round design should still
give gases that few firms emit a common gas of the spec (e.g. ``fossil``) rather than rely on
withholding.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from protocols.disclosure import (
    FOOTPRINT,
    FOOTPRINT_UNWEIGHTED,
    MIN_PARTICIPANTS_FLOOR,
    PRODUCTION,
    assemble_summed,
    is_withheld,
    merged_gases_of,
    read_screen,
)
from protocols.encoding import from_ring
from protocols.errors import AggregationError
from protocols.spec import (
    COMPONENT_VALUE_KINDS,
    GAS_VALUE_KINDS,
    KIND_HIST,
    KIND_N,
    KIND_NF,
    KIND_WF,
    KIND_WX,
    OTHER_GASES,
    RoundSpec,
    Slot,
    fmt_number,
    other_gases_slot,
    quantised_bound,
    spec_hash,
    vector_layout,
)

__all__ = [
    "OTHER_GASES",
    "QUANTILES",
    "AggregateStatistics",
    "ComponentStatistics",
    "DisclosureDecision",
    "FootprintStatistics",
    "LinearityCheck",
    "UncheckedComponent",
    "aggregate_statistics",
    "check_disclosure",
    "coarsened_histogram",
    "gas_reporter_counts",
    "histogram_quantile",
    "is_withheld",
    "linearity_check",
    "lognormal_gsd",
    "merged_gases",
    "other_gases_sum",
    "reporter_counts",
    "staged_statistics",
    "staged_summed",
    "unchecked_components",
    "withheld_gases",
    "withheld_slots",
]

#: Footprint quantiles reported, as probabilities; keys are ``"p5"``, ``"p25"``, ...
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.50, 0.75, 0.95)
#: The cells whose failing the p %-rule suppresses the round (the others are withheld).
FATAL_CELLS: Final = frozenset({PRODUCTION, FOOTPRINT, FOOTPRINT_UNWEIGHTED})

DisclosureRule = Literal["min_participants", "dominance", "cohort"]


# ---------------------------------------------------------------------------------------- disclosure


@dataclass(frozen=True)
class DisclosureDecision:
    """Whether a round's statistics may be published, and if not, which rule failed."""

    publish: bool
    rule: DisclosureRule | None
    """The first rule that failed (``None`` when published)."""
    message: str
    n: int
    min_participants: int
    p_percent: float
    """The p %-rule's p, in percent (``protocols.disclosure``)."""
    dominated: tuple[str, ...] = ()
    """The cells the p %-rule failed (``protocols.disclosure``): withheld components, or gases shown only in the total."""


def check_disclosure(spec: RoundSpec, n: int, dominated: Collection[str] = ()) -> DisclosureDecision:
    """The round-level rules on the participant count and the cells the dominance stages failed.

    1. ``min_participants``: suppress when ``n < max(spec.min_participants, 3)``.
    2. ``dominance``: suppress when the production or a footprint total failed the p %-rule
       (:mod:`protocols.disclosure`; a failing component or gas is withheld instead, not fatal).
    """
    least = max(spec.min_participants, MIN_PARTICIPANTS_FLOOR)
    pct = float(spec.p_rule) * 100
    common = {"n": n, "min_participants": spec.min_participants, "p_percent": pct, "dominated": tuple(dominated)}
    if n < least:
        return DisclosureDecision(
            publish=False,
            rule="min_participants",
            message=f"{n} participant(s); the round publishes only with at least {least}",
            **common,  # type: ignore[arg-type]
        )
    fatal = [c for c in dominated if c in FATAL_CELLS]
    if fatal:
        return DisclosureDecision(
            publish=False,
            rule="dominance",
            message=(
                f"the {fatal[0]} total fails the {pct:g} %-rule: one firm holds so large a share that another "
                f"could estimate it within {pct:g} %"
            ),
            **common,  # type: ignore[arg-type]
        )
    shown = f"; withheld by the {pct:g} %-rule: {', '.join(dominated)}" if dominated else ""
    return DisclosureDecision(
        publish=True,
        rule=None,
        message=f"{n} participants; every published total passes the {pct:g} %-rule{shown}",
        **common,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class ComponentStatistics:
    """Statistics of one component over the participating firms; ``None`` when not requested."""

    flow: str
    name_en: str
    name_zh: str
    direction: str
    unit: str
    """Per reference unit, e.g. ``"kWh/t"``."""
    n: int
    reporters: int
    """Firms with a non-zero value of the component (the sum of its ``n[c]`` slot)."""
    withheld: bool
    """No statistic is computed or published: ``0 < reporters < min_participants``, or its cell failed the p %-rule."""
    withheld_by: Literal["reporters", "dominance"] | None
    production: float
    """Σw, the production the statistics cover."""
    weighted_mean: float | None
    """Production-weighted mean Σwx / Σw."""
    mean: float | None
    """Unweighted mean Σx / n."""
    weighted_sd: float | None
    """Production-weighted population SD sqrt(Σwx²/Σw - mean_w²), clamped at 0 (see module docstring)."""
    gsd: float | None
    """GSD of the lognormal with the weighted mean and SD, exp(sqrt(ln(1 + SD²/mean²))); None if mean <= 0."""
    resolution: float | None
    """Bound on |weighted_mean - the weighted mean of the firms' unrounded values| from fixed point
    (``None`` when withheld)."""


@dataclass(frozen=True)
class FootprintStatistics:
    """Statistics of the cradle-to-gate footprint (kg CO2e per reference unit); ``None`` when not requested."""

    unit: str
    gwp_set: str
    weighted_mean_by_gas: dict[str, float] | None
    """Σ wF_g / Σw per gas, in spec order; the :attr:`merged_gases` appear only summed, under
    :data:`OTHER_GASES` (last)."""
    weighted_mean: float | None
    """Σ over gases of Σ wF_g / Σw."""
    mean: float | None
    sd: float | None
    """Unweighted population SD (ddof 0, as ``numpy.std``)."""
    weighted_sd: float | None
    gsd: float | None
    """Lognormal GSD from the weighted mean and weighted SD (when both are available)."""
    quantiles: dict[str, float] | None
    """p5, p25, p50, p75, p95 interpolated in the histogram (see :func:`histogram_quantile`)."""
    histogram: tuple[int, ...] | None
    """Firms per bin. For the aggregator's use only: a bin holding one firm tells that firm's range."""
    edges: tuple[float, ...]
    gas_reporters: dict[str, int] | None = None
    """Per gas, firms whose footprint of it is not zero (sums of the ``nF[g]`` slots); ``None`` when the
    round has no per-gas slots."""
    withheld_gases: tuple[str, ...] = ()
    """Gases with ``0 < reporters < min_participants``: no per-gas statistic (module docstring)."""
    merged_gases: tuple[str, ...] = ()
    """The withheld gases and their complementary gas, shown only summed, as :data:`OTHER_GASES`."""


@dataclass(frozen=True)
class AggregateStatistics:
    """The statistics of one round, with the disclosure decision that governs their publication."""

    round_id: str
    spec_hash: str
    n: int
    production: float
    disclosure: DisclosureDecision
    components: tuple[ComponentStatistics, ...]
    footprint: FootprintStatistics

    @property
    def withheld(self) -> tuple[ComponentStatistics, ...]:
        """The components the component-level rule withholds (see the module docstring)."""
        return tuple(c for c in self.components if c.withheld)

    def to_public_dict(self) -> dict[str, Any]:
        """What may be published: everything but the histogram when the rules pass, else only the decision.

        A withheld component appears with its names, its reporter count and ``withheld: true``, and no statistic;
        the footprint's per-gas means show the merged gases only summed (:data:`OTHER_GASES`)."""
        out: dict[str, Any] = {
            "round_id": self.round_id,
            "spec_hash": self.spec_hash,
            "n": self.n,
            "disclosure": asdict(self.disclosure),
        }
        if not self.disclosure.publish:
            return out
        footprint = asdict(self.footprint)
        footprint.pop("histogram")
        out |= {
            "production": self.production,
            "components": [asdict(c) for c in self.components],
            "footprint": footprint,
        }
        return out


# ------------------------------------------------------------------------------------------ helpers


def lognormal_gsd(mean: float, sd: float) -> float | None:
    """GSD of the lognormal with arithmetic ``mean`` and ``sd`` (moment matching); ``None`` if mean <= 0.

    ``sigma^2 = ln(1 + sd^2 / mean^2)`` and ``GSD = exp(sigma)``.
    """
    if not mean > 0:
        return None
    return math.exp(math.sqrt(math.log1p((sd / mean) ** 2)))


def histogram_quantile(counts: Sequence[int], edges: Sequence[float], p: float) -> float:
    """The ``p``-quantile of grouped data by linear interpolation within the bin (uniform in the bin).

    The rank ``r = p * n`` falls in the first bin whose cumulative count reaches it; the result is
    ``lo + (r - below) / count * (hi - lo)``. Exact to within the width of that bin.
    """
    n = sum(counts)
    if n <= 0 or not 0 < p < 1:
        raise ValueError(f"quantile {p} of {n} observations; accepted: n >= 1 and 0 < p < 1")
    rank = Fraction(p) * n
    below = 0
    for b, count in enumerate(counts):
        if count > 0 and below + count >= rank:
            lo, hi = Fraction(edges[b]), Fraction(edges[b + 1])
            return float(lo + (rank - below) / count * (hi - lo))
        below += count
    raise AssertionError("unreachable: the counts sum to n >= rank")  # pragma: no cover


def coarsened_histogram(
    counts: Sequence[int], edges: Sequence[float], least: int
) -> tuple[list[int], list[float]]:
    """Adjacent bins merged, left to right, until every bin holds at least ``least`` firms (or none at all).

    Quantiles are interpolated in the merged bins, so no published quantile rests on a bin that
    holds fewer than ``min_participants`` firms: with the round's fine bins, a bin with one firm
    would tell that firm's footprint range, and at small n the quantiles admit only the true
    histogram. A trailing group below ``least`` joins the one before it.
    """
    out_counts: list[int] = []
    out_edges: list[float] = [edges[0]]
    run = 0
    for i, count in enumerate(counts):
        run += count
        if run >= least:
            out_counts.append(run)
            out_edges.append(edges[i + 1])
            run = 0
    if len(out_counts) == 0:
        return [run], [edges[0], edges[-1]]
    out_counts[-1] += run
    out_edges[-1] = edges[-1]
    return out_counts, out_edges


def reporter_counts(spec: RoundSpec, summed: Sequence[int | None]) -> list[int]:
    """Per component, in spec order, the sum of its ``n[c]`` slot: how many firms report it (non-zero).

    Raises
    ------
    AggregationError
        Wrong vector length, or a reporter slot that is missing (``None``).
    """
    slots = vector_layout(spec)
    if len(summed) != len(slots):
        raise AggregationError(f"summed vector has {len(summed)} slots; the round's layout has {len(slots)}")
    counts = [0] * len(spec.components)
    for s, total in zip(slots, summed, strict=True):
        if s.kind == KIND_N:
            if total is None:
                raise AggregationError(f"slot {s.name!r} is missing; reporter counts are never withheld")
            counts[s.component] = int(total)  # type: ignore[index]
    return counts


def _dominated_components(spec: RoundSpec, dominated: Collection[str]) -> set[int]:
    """Indexes of the components whose cell (``wx[c]`` or ``x[c]``) failed the p %-rule."""
    return {
        i for i, c in enumerate(spec.components) if f"wx[{c.name_en}]" in dominated or f"x[{c.name_en}]" in dominated
    }


def _gas_dominated(dominated: Collection[str]) -> bool:
    """Whether a gas's cell failed the p %-rule: then every gas is shown only in the total."""
    return any(c.startswith("wF[") for c in dominated)


def withheld_slots(spec: RoundSpec, summed: Sequence[int | None], dominated: Collection[str] = ()) -> list[str]:
    """Names of the slots the disclosure rules withhold, in layout order.

    The value slots (``x``, ``wx``, ``wx2``) of the components the component rule withholds or whose
    cell failed the p %-rule (``dominated``, :mod:`protocols.disclosure`), and the ``wF`` slots of
    the :func:`merged_gases`. The aggregator MUST NOT store or publish these sums: each is, or would
    let a reader subtract, the value of fewer than ``min_participants`` firms, or of one firm within
    p % (module docstring). Reporter counts stay.
    """
    reporters = reporter_counts(spec, summed)
    merged = set(merged_gases(spec, summed, dominated))
    blocked = _dominated_components(spec, dominated)
    return [
        s.name
        for s in vector_layout(spec)
        if (
            s.kind in COMPONENT_VALUE_KINDS
            and s.component is not None
            and (is_withheld(spec, reporters[s.component]) or s.component in blocked)
        )
        or (s.kind in GAS_VALUE_KINDS and s.gas in merged)
    ]


def gas_reporter_counts(spec: RoundSpec, summed: Sequence[int | None]) -> dict[str, int]:
    """Per gas, in spec order, the sum of its ``nF[g]`` slot: how many firms emit it (non-zero footprint).

    Empty when the round has no per-gas slots (no weighted footprint statistic requested).

    Raises
    ------
    AggregationError
        Wrong vector length, or a gas reporter slot that is missing (``None``).
    """
    slots = vector_layout(spec)
    if len(summed) != len(slots):
        raise AggregationError(f"summed vector has {len(summed)} slots; the round's layout has {len(slots)}")
    counts: dict[str, int] = {}
    for s, total in zip(slots, summed, strict=True):
        if s.kind == KIND_NF:
            if total is None:
                raise AggregationError(f"slot {s.name!r} is missing; reporter counts are never withheld")
            counts[s.gas] = int(total)  # type: ignore[index]
    return counts


def withheld_gases(spec: RoundSpec, summed: Sequence[int | None]) -> list[str]:
    """The gases the gas-level rule withholds, in spec order: ``0 < n_g < min_participants`` (module docstring)."""
    return [g for g, k in gas_reporter_counts(spec, summed).items() if is_withheld(spec, k)]


def merged_gases(spec: RoundSpec, summed: Sequence[int | None], dominated: Collection[str] = ()) -> list[str]:
    """The gases shown only summed, as :data:`OTHER_GASES`, in spec order; empty when no gas is withheld.

    The withheld gases, plus the complementary gas: of the gases at least ``min_participants``
    firms emit, the one with the most reporters (the first in spec order on a tie), so that the
    merged sum is never the withheld gases' few emitters' values alone (module docstring). When a
    gas's cell failed the p %-rule (``dominated``), every gas: the per-gas breakdown is not shown.
    """
    counts = gas_reporter_counts(spec, summed)
    if counts and _gas_dominated(dominated):
        return list(counts)
    return merged_gases_of(spec, counts)


def other_gases_sum(
    spec: RoundSpec, summed: Sequence[int | None], dominated: Collection[str] = ()
) -> Fraction | None:
    """Σ over the :func:`merged_gases` of their ``wF[g]`` sums, in the slots' unit; ``None`` when none is merged.

    What the aggregator stores and publishes in place of the merged gases' slots: a sum over at
    least ``min_participants`` firms (module docstring). Exact (the slots' scales are powers of ten,
    so it is a terminating decimal).

    Raises
    ------
    AggregationError
        Wrong vector length, a missing reporter slot, or a merged gas's ``wF`` slot that is missing.
    """
    merged = set(merged_gases(spec, summed, dominated))
    if not merged:
        return None
    total = Fraction(0)
    for s, value in zip(vector_layout(spec), summed, strict=True):
        if s.kind == KIND_WF and s.gas in merged:
            if value is None:
                raise AggregationError(f"slot {s.name!r} is missing; the merged sum of {OTHER_GASES} needs it")
            total += Fraction(int(value)) / s.scale
    return total


def _rounding(slot: Slot, n: int) -> Fraction:
    """Bound on |sum - exact sum| of a slot over n firms: 0 when every value is a whole number of steps."""
    if (slot.scale / slot.nominal_scale).denominator == 1:
        return Fraction(0)
    return Fraction(n, 2) / slot.scale


def _variance(second: Fraction, second_err: Fraction, mean: Fraction, mean_err: Fraction, what: str) -> Fraction:
    """``second - mean^2`` clamped at 0, or an error when it is more negative than rounding allows."""
    var = second - mean * mean
    tolerance = second_err + 2 * abs(mean) * mean_err + mean_err * mean_err
    if var < -tolerance:
        raise AggregationError(
            f"{what}: E[v²] - E[v]² = {float(var):.6g} is negative beyond the rounding bound {float(tolerance):.3g}; "
            "the summed slots are inconsistent (some contribution's squares do not match its values)"
        )
    return max(var, Fraction(0))


def _check_means_within_bounds(
    spec: RoundSpec,
    slots: Sequence[Slot],
    sums: dict[str, int],
    n: int,
    sw: Fraction,
    other_gases: Fraction | None,
    merged: Sequence[str],
) -> None:
    """Every weighted mean the sums imply lies within its plausibility bound (to the slots' rounding).

    Each honest firm's value is within its bound, so each weighted mean is too: ``|Σ w·x| <= B·Σ w``.
    A modified node can still send a ``w·x`` slot that no admissible ``x`` gives with its ``w``
    (e.g. its production times a hundred times the bound); the slot bounds alone allow that, this
    check does not (``docs/input_validity.md``: it cuts the shift such a liar causes 8-90 times).
    """
    fp = spec.footprint
    bf = quantised_bound(fp.bound, fp.scale)
    total_wf = Fraction(0)
    total_err = Fraction(0)
    for s in slots:
        if s.name not in sums or s.kind not in (KIND_WX, KIND_WF):
            continue
        value = Fraction(sums[s.name]) / s.scale
        err = _rounding(s, n)
        if s.kind == KIND_WX:
            c = spec.components[s.component]  # type: ignore[index]  # wx slots name their component
            bound, what = quantised_bound(c.bound, c.scale), f"component {c.name_en!r}"
        else:
            bound, what = bf, f"gas {s.gas!r}"
            if other_gases is None or s.gas not in merged:  # merged gases count once, in their sum
                total_wf += value
                total_err += err
        if abs(value) > bound * sw + err:
            raise AggregationError(
                f"{what}: the sums imply a weighted mean of {float(value / sw):.6g}, beyond its plausibility bound "
                f"{float(bound):.6g}; no set of admissible contributions gives it"
            )
    merged_slot = other_gases_slot(spec)
    if other_gases is not None and merged_slot is not None:
        err = _rounding(merged_slot, n)  # the merged slot may be coarsened: half a step per firm
        if abs(other_gases) > len(merged) * bf * sw + err:
            raise AggregationError(
                f"the merged gases' sum implies a weighted mean beyond {len(merged)} x the footprint bound"
            )
        total_wf += other_gases
        total_err += err
    lower = -bf if fp.allow_negative else Fraction(0)
    if any(s.kind == KIND_WF for s in slots) and not (lower * sw - total_err <= total_wf <= bf * sw + total_err):
        raise AggregationError(
            f"the footprint's sums imply a weighted mean of {float(total_wf / sw):.6g}, outside "
            f"[{float(lower):.6g}, {float(bf):.6g}]; no set of admissible contributions gives it"
        )


def _sqrt(value: Fraction) -> float:
    return math.sqrt(float(value))


# ----------------------------------------------------------------------------------------- compute


def aggregate_statistics(
    spec: RoundSpec,
    summed_ints: Sequence[int | None] | Sequence[int] | npt.NDArray[np.uint64],
    n: int,
    *,
    other_gases: Fraction | None = None,
    dominated: Collection[str] = (),
) -> AggregateStatistics:
    """Compute the round's statistics from the slot-wise sums of ``n`` contributions.

    Parameters
    ----------
    spec
        The round spec the contributions were built for.
    summed_ints
        Signed slot sums (as from :func:`protocols.encoding.from_ring`), or the ``uint64`` ring sum itself.
        The slots the disclosure rules withhold (:func:`withheld_slots`) may be ``None`` (as in the
        public log); no other slot may.
    n
        The number of contributions summed.
    other_gases
        The merged gases' sum (:func:`other_gases_sum`, as the public log carries it); needed only
        when their ``wF`` slots are ``None``. When the slots are given too, it must equal their sum.
    dominated
        The cells the dominance stages failed (:mod:`protocols.disclosure`): their components are
        withheld, a gas's makes every gas merged, a production or footprint total's suppresses.

    Returns
    -------
    AggregateStatistics
        With the disclosure decision; computed even when suppressed (the caller MUST NOT publish
        then -- :meth:`AggregateStatistics.to_public_dict` enforces it).

    Raises
    ------
    AggregationError
        Wrong vector length, ``n`` outside 1..max_participants, a count or histogram that does not
        sum to ``n``, a sum beyond ``n`` times its slot bound or negative in a non-negative slot,
        a missing slot that the disclosure rules do not withhold, sums of a component or gas that
        nobody reports, a merged gases' sum that is missing or contradicts the slots, or
        inconsistent second moments.
    """
    summed: Sequence[int | None] = from_ring(summed_ints) if isinstance(summed_ints, np.ndarray) else summed_ints
    slots = vector_layout(spec)
    reporters = reporter_counts(spec, summed)  # checks the length
    if not 1 <= n <= spec.max_participants:
        raise AggregationError(
            f"n = {n} contributions; accepted: 1 to max_participants {spec.max_participants} "
            "(the overflow proof's limit)"
        )
    if summed[0] is None or int(summed[0]) != n:  # slot 0 is the count
        raise AggregationError(f"count slot sums to {summed[0]} but n = {n}: contributions are missing or extra")
    withheld = set(withheld_slots(spec, summed, dominated))
    gas_reporters = gas_reporter_counts(spec, summed)
    merged = merged_gases(spec, summed, dominated)
    blocked = _dominated_components(spec, dominated)
    sums: dict[str, int] = {}
    for s, given in zip(slots, summed, strict=True):
        if given is None:
            if s.name not in withheld:
                raise AggregationError(
                    f"slot {s.name!r} is missing; only the value slots of withheld components and the wF slots "
                    f"of merged gases (fewer than min_participants {spec.min_participants} reporters) may be: "
                    f"{sorted(withheld) or 'none'}"
                )
            continue
        total = int(given)
        if abs(total) > n * s.bound_int or (not s.signed and total < 0):
            raise AggregationError(
                f"slot {s.name!r}: sum {total} is impossible for {n} contributions bounded by {s.bound_int} "
                f"({'signed' if s.signed else 'non-negative'})"
            )
        sums[s.name] = total
    by_name = {s.name: s for s in slots}
    if sums["w"] < n:
        raise AggregationError(f"weight slot sums to {sums['w']} steps for {n} firms; each firm has at least 1")

    def value(name: str) -> Fraction | None:
        return Fraction(sums[name]) / by_name[name].scale if name in sums else None

    def err(name: str) -> Fraction:
        return _rounding(by_name[name], n)

    stats = set(spec.statistics)
    sw = value("w")
    assert sw is not None  # always in the layout
    disclosure = check_disclosure(spec, n, dominated)

    components: list[ComponentStatistics] = []
    for j, c in enumerate(spec.components):
        if is_withheld(spec, reporters[j]) or j in blocked:
            components.append(
                ComponentStatistics(
                    flow=c.flow,
                    name_en=c.name_en,
                    name_zh=c.name_zh,
                    direction=c.direction,
                    unit=spec.per_unit(c.unit),
                    n=n,
                    reporters=reporters[j],
                    withheld=True,
                    withheld_by="reporters" if is_withheld(spec, reporters[j]) else "dominance",
                    production=float(sw),
                    weighted_mean=None,
                    mean=None,
                    weighted_sd=None,
                    gsd=None,
                    resolution=None,
                )
            )
            continue
        swx, sx, swx2 = value(f"wx[{c.name_en}]"), value(f"x[{c.name_en}]"), value(f"wx2[{c.name_en}]")
        if reporters[j] == 0 and any(v for v in (swx, sx, swx2)):
            raise AggregationError(
                f"component {c.name_en!r}: no firm reports it (n[{c.name_en}] = 0) but its sums are not zero; "
                "the summed slots are inconsistent"
            )
        m_w = swx / sw if swx is not None else None
        m_err = err(f"wx[{c.name_en}]") / sw if swx is not None else Fraction(0)
        sd_w: float | None = None
        if m_w is not None and swx2 is not None:
            var = _variance(swx2 / sw, err(f"wx2[{c.name_en}]") / sw, m_w, m_err, f"component {c.name_en!r}")
            sd_w = _sqrt(var)
        gsd = lognormal_gsd(float(m_w), sd_w) if m_w is not None and sd_w is not None else None
        components.append(
            ComponentStatistics(
                flow=c.flow,
                name_en=c.name_en,
                name_zh=c.name_zh,
                direction=c.direction,
                unit=spec.per_unit(c.unit),
                n=n,
                reporters=reporters[j],
                withheld=False,
                withheld_by=None,
                production=float(sw),
                weighted_mean=float(m_w) if m_w is not None and "weighted_mean" in stats else None,
                mean=float(sx / n) if sx is not None else None,
                weighted_sd=sd_w if "weighted_sd" in stats else None,
                gsd=gsd if "gsd" in stats else None,
                # slot rounding + each x off by <= half a step + each w off by <= half a step, which
                # moves a weighted mean by <= Σ|δw|·max|x - mean| / Σw <= n·(1/(2 s_w))·2·bound / Σw
                resolution=float(
                    m_err + Fraction(1, 2 * c.scale) + n * Fraction(c.bound) / (spec.weight.scale * sw)
                ),
            )
        )

    fp = spec.footprint
    by_gas: dict[str, Fraction] | None = None
    wmean: Fraction | None = None
    wmean_err = Fraction(0)
    for gas, k in gas_reporters.items():
        if k == 0 and sums.get(f"wF[{gas}]"):
            raise AggregationError(
                f"gas {gas!r}: no firm emits it (nF[{gas}] = 0) but wF[{gas}] is not zero; the summed slots are inconsistent"
            )
    if merged:
        if all(f"wF[{g}]" in sums for g in merged):
            from_slots = other_gases_sum(spec, summed, dominated)
            if other_gases is not None and other_gases != from_slots:
                raise AggregationError(
                    f"the merged sum of {OTHER_GASES} ({', '.join(merged)}) is given as {other_gases} but their "
                    f"wF slots sum to {from_slots}"
                )
            other_gases = from_slots
        elif other_gases is None:
            raise AggregationError(
                f"the wF slots of the merged gases ({', '.join(merged)}) are withheld and their merged sum was not "
                f"given; accepted: other_gases= the sum the public log carries"
            )
    elif other_gases is not None:
        raise AggregationError(f"a merged sum of {OTHER_GASES} was given but no gas is withheld")
    _check_means_within_bounds(spec, slots, sums, n, sw, other_gases if merged else None, merged)
    if gas_reporters:  # the per-gas slots are in the layout
        by_gas = {g: value(f"wF[{g}]") / sw for g in fp.gases if g not in merged}  # type: ignore[operator]
        if merged:
            assert other_gases is not None
            by_gas[OTHER_GASES] = other_gases / sw
        wmean = sum(by_gas.values(), Fraction(0))
        wmean_err = sum((err(f"wF[{g}]") for g in fp.gases), Fraction(0)) / sw
    sf, sf2, swf2 = value("F"), value("F2"), value("wF2")
    mean = sf / n if sf is not None else None
    sd: float | None = None
    if mean is not None and sf2 is not None:
        sd = _sqrt(_variance(sf2 / n, err("F2") / n, mean, Fraction(0), "footprint"))
    sd_w = None
    if wmean is not None and swf2 is not None:
        # Σ_g q(F_g) and q(F) differ by up to (G + 1) half-steps per firm: part of the mean's error here.
        mismatch = Fraction(len(fp.gases) + 1, 2 * fp.scale)
        var = _variance(swf2 / sw, err("wF2") / sw, wmean, wmean_err + mismatch, "footprint (weighted)")
        sd_w = _sqrt(var)
    counts: tuple[int, ...] | None = None
    quantiles: dict[str, float] | None = None
    hist_slots = [s for s in slots if s.kind == KIND_HIST]
    if hist_slots:
        counts = tuple(sums[s.name] for s in hist_slots)
        if sum(counts) != n:
            raise AggregationError(f"histogram counts sum to {sum(counts)} but n = {n}")
        coarse, coarse_edges = coarsened_histogram(counts, fp.histogram_edges, spec.min_participants)
        quantiles = {f"p{round(p * 100)}": histogram_quantile(coarse, coarse_edges, p) for p in QUANTILES}
    footprint = FootprintStatistics(
        unit=spec.per_unit(fp.unit),
        gwp_set=fp.gwp_set,
        weighted_mean_by_gas=(
            {g: float(v) for g, v in by_gas.items()}
            if by_gas is not None and "footprint_weighted_mean" in stats
            else None
        ),
        weighted_mean=float(wmean) if wmean is not None and "footprint_weighted_mean" in stats else None,
        mean=float(mean) if mean is not None and "footprint_mean" in stats else None,
        sd=sd if "footprint_sd" in stats else None,
        weighted_sd=sd_w if "footprint_weighted_sd" in stats else None,
        gsd=lognormal_gsd(float(wmean), sd_w) if wmean is not None and sd_w is not None else None,
        quantiles=quantiles if "footprint_quantiles" in stats else None,
        histogram=counts if "footprint_quantiles" in stats else None,
        edges=tuple(fp.histogram_edges),
        gas_reporters=gas_reporters or None,
        withheld_gases=tuple(g for g, k in gas_reporters.items() if is_withheld(spec, k)),
        merged_gases=tuple(merged),
    )
    return AggregateStatistics(
        round_id=spec.round_id,
        spec_hash=spec_hash(spec),
        n=n,
        production=float(sw),
        disclosure=disclosure,
        components=tuple(components),
        footprint=footprint,
    )


def staged_summed(
    spec: RoundSpec, screen_sum: Sequence[int], values_sum: Sequence[int], dominated: Collection[str] = ()
) -> tuple[list[int | None], Fraction | None]:
    """The full layout's sums from a round's two sum stages (:mod:`protocols.disclosure`), and the merged gases' sum.

    ``None`` where nothing was collected (withheld components, merged gases: their sum is one
    value); when a gas's cell failed the p %-rule, the per-gas sums are folded into the merged sum
    too, so that only the footprint total is shown. What :func:`aggregate_statistics` takes.
    """
    screen = read_screen(spec, screen_sum)
    summed, other = assemble_summed(spec, screen_sum, values_sum, screen.withheld(spec), screen.merged(spec))
    if _gas_dominated(dominated):
        for i, s in enumerate(vector_layout(spec)):
            value = summed[i]
            if s.kind == KIND_WF and value is not None:
                other = (other or Fraction(0)) + Fraction(value) / s.scale
                summed[i] = None
    return summed, other


def staged_statistics(
    spec: RoundSpec, screen_sum: Sequence[int], values_sum: Sequence[int], dominated: Collection[str] = ()
) -> AggregateStatistics:
    """The round's statistics from its two sum stages and the cells that failed (:func:`staged_summed`).

    Raises
    ------
    AggregationError
        As :func:`aggregate_statistics`, or a stage sum of the wrong length or with impossible counts.
    """
    summed, other = staged_summed(spec, screen_sum, values_sum, dominated)
    return aggregate_statistics(spec, summed, int(screen_sum[0]), other_gases=other, dominated=dominated)


# -------------------------------------------------------------------------------------- cross-check


@dataclass(frozen=True)
class LinearityCheck:
    """Reported weighted-mean footprint of one gas against the one the checkable components imply."""

    gas: str
    reported: float
    predicted: float
    """Σ_c background_factors[c][gas] × weighted mean of component c, over the checkable components
    (see :func:`unchecked_components` for the ones left out)."""
    residual: float
    """reported - predicted: the footprint from flows outside the checked components (including
    the unchecked ones), or another background."""


@dataclass(frozen=True)
class UncheckedComponent:
    """A component with a background factor that the linearity cross-check leaves out, and why."""

    flow: str
    name_en: str
    name_zh: str
    reason: Literal["withheld", "firm_specific_background"]
    nominal: float | None
    """Its weighted mean × the round's background factor summed over gases, kg CO2e per reference
    unit: what it would add at the round's nominal background (``None`` when withheld)."""
    note: str


def unchecked_components(spec: RoundSpec, stats: AggregateStatistics) -> list[UncheckedComponent]:
    """The components with a background factor that :func:`linearity_check` cannot check.

    * ``withheld``: the component rule withholds its weighted mean (fewer than
      ``min_participants`` firms report it), so its part of the footprint is unknown.
    * ``firm_specific_background``: the component has aliases (e.g. every provincial grid's
      electricity in one component); each firm's footprint values it with the background of the
      flow it actually uses, which the round does not know, so the round's background factor for
      it is only nominal and a difference is expected.

    Both parts remain in the reported footprint; the check's residual contains them.
    """
    out: list[UncheckedComponent] = []
    for comp, c in zip(spec.components, stats.components, strict=True):
        factors = spec.background_factors.get(comp.flow)
        if not factors:
            continue
        per_unit = math.fsum(factors.values())
        if c.withheld:
            out.append(
                UncheckedComponent(
                    flow=comp.flow,
                    name_en=comp.name_en,
                    name_zh=comp.name_zh,
                    reason="withheld",
                    nominal=None,
                    note=(
                        f"withheld by the {float(spec.p_rule) * 100:g} %-rule: one firm holds so large a share of it "
                        "that another could estimate that firm's part; its emissions are in the footprint but not in "
                        "the inventory"
                        if c.withheld_by == "dominance"
                        else f"withheld: {c.reporters} firm(s) report it, fewer than min_participants "
                        f"{spec.min_participants}; its emissions are in the footprint but not in the inventory"
                    ),
                )
            )
        elif comp.aliases:
            nominal = c.weighted_mean * per_unit if c.weighted_mean is not None else None
            shown = "n/a" if nominal is None else f"{nominal:.6g} {spec.per_unit(spec.footprint.unit)}"
            out.append(
                UncheckedComponent(
                    flow=comp.flow,
                    name_en=comp.name_en,
                    name_zh=comp.name_zh,
                    reason="firm_specific_background",
                    nominal=nominal,
                    note=(
                        f"firm-specific background, not checkable: the component stands for {len(comp.flows)} "
                        f"flows whose backgrounds differ between firms; at the round's nominal factor "
                        f"({fmt_number(per_unit)} {spec.footprint.unit}/{comp.unit}) it would add {shown}"
                    ),
                )
            )
    return out


def linearity_check(spec: RoundSpec, stats: AggregateStatistics) -> list[LinearityCheck]:
    """Cross-check the footprint against the components by linearity.

    A firm's footprint is linear in its flows: ``F_g = Σ_c x_c b_cg + r_g`` with ``b`` the round's
    background factors and ``r_g`` the rest. Weighted means are linear too, so the weighted mean of
    ``F_g`` equals ``Σ_c b_cg mean_w(x_c) + mean_w(r_g)``; the residual is the weighted mean of the
    rest, 0 (to rounding) when every firm computed its footprint from the components with the
    round's background. A large residual means firms used other data or other system boundaries.

    Only components with a uniform background and published statistics enter ``predicted``;
    withheld components and components with firm-specific background
    (:func:`unchecked_components`) stay in the residual, so with them a residual is expected.

    One entry per gas in spec order, except that the gases the gas-level rule merges are checked
    together, as one last entry :data:`OTHER_GASES` (their sum against the sum of their predictions).
    Returns an empty list when the weighted means needed were not requested.
    """
    fp = stats.footprint
    if fp.weighted_mean_by_gas is None or any(
        c.weighted_mean is None for c in stats.components if not c.withheld
    ):
        return []
    unchecked = {u.flow for u in unchecked_components(spec, stats)}
    means = {c.flow: c.weighted_mean for c in stats.components if c.flow not in unchecked}
    out: list[LinearityCheck] = []
    merged: list[float] = []
    for gas in spec.footprint.gases:
        predicted = math.fsum(
            by_gas.get(gas, 0.0) * means[flow]  # type: ignore[operator]
            for flow, by_gas in spec.background_factors.items()
            if flow in means
        )
        if gas in fp.merged_gases:
            merged.append(predicted)
            continue
        reported = fp.weighted_mean_by_gas[gas]
        out.append(LinearityCheck(gas, reported, predicted, reported - predicted))
    if fp.merged_gases:
        reported, predicted = fp.weighted_mean_by_gas[OTHER_GASES], math.fsum(merged)
        out.append(LinearityCheck(OTHER_GASES, reported, predicted, reported - predicted))
    return out
