"""The contribution vector of a round: its ordered slots, their kinds, scales and bounds.

Slot scales (how :func:`vector_layout` derives them)
-----------------------------------------------------
* Base slots take the spec's scales: ``x[c]`` the component's ``scale``, ``w`` the weight's,
  ``F`` the footprint's; ``count``, the reporter counts ``n[c]`` and ``nF[g]`` and the histogram
  bins have scale 1.
* A derived slot (``wx``, ``wx2``, ``wF``, ``F2``, ``wF2``) is the product of quantised
  base values; its *nominal* scale is the product of their scales (``s_w * s_x`` for ``w*x``,
  ``s_w * s_x**2`` for ``w*x**2``), which keeps every digit the inputs have. When the nominal scale
  would let ``max_participants`` sums overflow, the slot uses the largest power of ten that fits
  instead (e.g. ``Fraction(1, 10)``: the slot counts tenths of a unit fewer). Squares of large
  bounds are where this bites: production 1e7 t times (5e4 kWh/t)^2 is 2.5e16 before any scale.
  The coarsening is harmless for the statistics because each firm's rounding error is at most half
  a step and :mod:`protocols.stats` bounds and reports it; the proof lists each slot's scale.
* ``slot_scale_exponents`` in the spec overrides a derived slot's scale with ``10**exponent``
  explicitly; :func:`validate_spec` then checks it like any other slot.

Bounds are taken on the quantised values (``round(bound * scale) / scale``), so the proof covers
every value a contributor can send after rounding, not just the values it may enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from protocols.encoding import INT64_MAX
from protocols.spec.model import RoundSpec, fmt_number

__all__ = [
    "COMPONENT_VALUE_KINDS",
    "DERIVED_KINDS",
    "GAS_VALUE_KINDS",
    "KIND_COUNT",
    "KIND_F",
    "KIND_F2",
    "KIND_HIST",
    "KIND_N",
    "KIND_NF",
    "KIND_W",
    "KIND_WF",
    "KIND_WF2",
    "KIND_WX",
    "KIND_WX2",
    "KIND_X",
    "OTHER_GASES",
    "Slot",
    "other_gases_slot",
    "quantised_bound",
    "vector_layout",
]

KIND_COUNT = "count"  # 1 per firm
KIND_N = "n"  # 1 per firm whose value of the component is not zero (reporter count)
KIND_W = "w"  # weight (annual production)
KIND_WX = "wx"  # weight x component value
KIND_X = "x"  # component value
KIND_WX2 = "wx2"  # weight x component value squared
KIND_WF = "wF"  # weight x footprint of one gas
KIND_NF = "nF"  # 1 per firm whose footprint of the gas is not zero (reporter count of the gas)
KIND_F = "F"  # footprint (sum over gases)
KIND_F2 = "F2"  # footprint squared
KIND_WF2 = "wF2"  # weight x footprint squared
KIND_HIST = "hist"  # one-hot footprint histogram bin
#: Name of the merged gases (``protocols.stats``); no gas of a spec can have it (gas names have no spaces).
OTHER_GASES = "other gases"
#: Slots whose value is a product of base values; their scales are derived (see module docstring).
DERIVED_KINDS = frozenset({KIND_WX, KIND_WX2, KIND_WF, KIND_F2, KIND_WF2})
#: Slots that carry a component's values (the ones a component's disclosure rule withholds).
COMPONENT_VALUE_KINDS = frozenset({KIND_WX, KIND_X, KIND_WX2})
#: Slots that carry one gas's footprint (the ones the gas-level disclosure rule withholds).
GAS_VALUE_KINDS = frozenset({KIND_WF})


# -------------------------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class Slot:
    """One position of the contribution vector.

    ``integer = round(value * scale)``; ``|integer| <= bound_int`` for every admissible contribution.
    """

    name: str
    kind: str
    component: int | None
    """Index into ``spec.components`` for component slots, else ``None``."""
    scale: Fraction
    bound_int: int
    signed: bool
    """Whether a contribution may be negative in this slot."""
    unit: str
    """Unit of the plaintext value, e.g. ``"t·kWh/t"``."""
    bound: Fraction
    """Largest ``|value|`` after quantisation of the inputs."""
    nominal_scale: Fraction
    """Scale before fitting: the spec's scale for base slots, the product of scales for derived ones."""
    gas: str | None = None
    bin: int | None = None
    description: str = ""


def quantised_bound(bound: float, scale: int) -> Fraction:
    """The largest ``|round(v * scale)| / scale`` over ``|v| <= bound`` (rounding is monotone)."""
    return Fraction(round(Fraction(bound) * scale), scale)


def _fitted_scale(bound: Fraction, nominal: Fraction, participants: int) -> Fraction:
    """``nominal`` if ``participants`` sums fit 63 bits, else the largest fitting power of ten."""

    def fits(scale: Fraction) -> bool:
        return participants * round(bound * scale) <= INT64_MAX

    if fits(nominal):
        return nominal
    exponent = math.floor(math.log10(INT64_MAX / (participants * float(bound))))
    while not fits(Fraction(10) ** exponent):
        exponent -= 1
    while fits(Fraction(10) ** (exponent + 1)) and Fraction(10) ** (exponent + 1) < nominal:
        exponent += 1
    return Fraction(10) ** exponent


def _needs(spec: RoundSpec) -> set[str]:
    """The slot kinds the requested statistics need (dependencies included)."""
    stats = set(spec.statistics)
    kinds = {KIND_COUNT, KIND_W, KIND_N}  # count, production and reporters: the screen stage (protocols.disclosure)
    if stats & {"weighted_mean", "weighted_sd", "gsd"}:
        kinds.add(KIND_WX)
    if "mean" in stats:
        kinds.add(KIND_X)
    if stats & {"weighted_sd", "gsd"}:
        kinds.add(KIND_WX2)
    if stats & {"footprint_weighted_mean", "footprint_weighted_sd"}:
        kinds |= {KIND_WF, KIND_NF}  # per-gas sums come with their reporter counts (gas-level rule)
    if stats & {"footprint_mean", "footprint_sd"}:
        kinds.add(KIND_F)
    if "footprint_sd" in stats:
        kinds.add(KIND_F2)
    if "footprint_weighted_sd" in stats:
        kinds.add(KIND_WF2)
    if "footprint_quantiles" in stats:
        kinds.add(KIND_HIST)
    return kinds


def vector_layout(spec: RoundSpec) -> list[Slot]:
    """The ordered slots of the round's contribution vector.

    Order: ``count``, ``w``, then per component ``n[c]``, ``wx[c]``, then ``x[c]``, ``wx2[c]``, then
    per gas ``nF[g]``, then per gas ``wF[g]``, then ``F``, ``F2``, ``wF2``, then the histogram bins; kinds
    that no requested statistic needs are left out, so the aggregator learns no sum it does not use
    (``nF`` comes with ``wF``: the gas-level disclosure rule of :mod:`protocols.stats` needs it).

    Parameters
    ----------
    spec
        The round spec.

    Returns
    -------
    list[Slot]
        One entry per vector position. Scales follow the module docstring.
    """
    kinds = _needs(spec)
    n_max = spec.max_participants
    w = spec.weight
    fp = spec.footprint
    bw = quantised_bound(w.bound, w.scale)
    bf = quantised_bound(fp.bound, fp.scale)
    f_unit = spec.per_unit(fp.unit)
    slots: list[Slot] = []

    def add(
        name: str,
        kind: str,
        *,
        bound: Fraction,
        nominal: Fraction | int,
        unit: str,
        signed: bool = False,
        component: int | None = None,
        gas: str | None = None,
        bin_: int | None = None,
        description: str = "",
    ) -> None:
        nominal = Fraction(nominal)
        if name in spec.slot_scale_exponents:
            scale = Fraction(10) ** spec.slot_scale_exponents[name]
        elif kind in DERIVED_KINDS:
            scale = _fitted_scale(bound, nominal, n_max)
        else:
            scale = nominal
        slots.append(
            Slot(
                name=name,
                kind=kind,
                component=component,
                scale=scale,
                bound_int=round(bound * scale),
                signed=signed,
                unit=unit,
                bound=bound,
                nominal_scale=nominal,
                gas=gas,
                bin=bin_,
                description=description,
            )
        )

    add(KIND_COUNT, KIND_COUNT, bound=Fraction(1), nominal=1, unit="firm", description="participating firm")
    add(KIND_W, KIND_W, bound=bw, nominal=w.scale, unit=w.unit, description=w.name)
    comps = list(enumerate(spec.components))
    bx = [quantised_bound(c.bound, c.scale) for c in spec.components]
    for i, c in comps:  # always: the component-level disclosure rule needs them
        add(
            f"n[{c.name_en}]",
            KIND_N,
            bound=Fraction(1),
            nominal=1,
            unit="firm",
            component=i,
            description=f"firm reports {c.name_en} (value not zero)",
        )
    if KIND_WX in kinds:
        for i, c in comps:
            add(
                f"wx[{c.name_en}]",
                KIND_WX,
                bound=bw * bx[i],
                nominal=w.scale * c.scale,
                unit=f"{w.unit}·{spec.per_unit(c.unit)}",
                signed=c.allow_negative,
                component=i,
                description=f"{w.name} × {c.name_en}",
            )
    if KIND_X in kinds:
        for i, c in comps:
            add(
                f"x[{c.name_en}]",
                KIND_X,
                bound=bx[i],
                nominal=c.scale,
                unit=spec.per_unit(c.unit),
                signed=c.allow_negative,
                component=i,
                description=c.name_en,
            )
    if KIND_WX2 in kinds:
        for i, c in comps:
            add(
                f"wx2[{c.name_en}]",
                KIND_WX2,
                bound=bw * bx[i] ** 2,
                nominal=w.scale * c.scale**2,
                unit=f"{w.unit}·({spec.per_unit(c.unit)})²",
                component=i,
                description=f"{w.name} × {c.name_en} squared",
            )
    if KIND_NF in kinds:
        for gas in fp.gases:
            add(
                f"nF[{gas}]",
                KIND_NF,
                bound=Fraction(1),
                nominal=1,
                unit="firm",
                gas=gas,
                description=f"firm emits {gas} (footprint of the gas not zero)",
            )
    if KIND_WF in kinds:
        for gas in fp.gases:
            add(
                f"wF[{gas}]",
                KIND_WF,
                bound=bw * bf,
                nominal=w.scale * fp.scale,
                unit=f"{w.unit}·{f_unit}",
                signed=fp.allow_negative,
                gas=gas,
                description=f"{w.name} × footprint, {gas}",
            )
    if KIND_F in kinds:
        add(KIND_F, KIND_F, bound=bf, nominal=fp.scale, unit=f_unit, signed=fp.allow_negative, description="footprint")
    if KIND_F2 in kinds:
        add(KIND_F2, KIND_F2, bound=bf**2, nominal=fp.scale**2, unit=f"({f_unit})²", description="footprint squared")
    if KIND_WF2 in kinds:
        add(
            KIND_WF2,
            KIND_WF2,
            bound=bw * bf**2,
            nominal=w.scale * fp.scale**2,
            unit=f"{w.unit}·({f_unit})²",
            description=f"{w.name} × footprint squared",
        )
    if KIND_HIST in kinds:
        edges = fp.histogram_edges
        for b in range(len(edges) - 1):
            close = "]" if b == len(edges) - 2 else ")"
            label = f"[{fmt_number(edges[b])},{fmt_number(edges[b + 1])}{close}"
            add(
                f"hist{label}",
                KIND_HIST,
                bound=Fraction(1),
                nominal=1,
                unit="firm",
                bin_=b,
                description=f"footprint in {label} {f_unit}",
            )
    return slots


def other_gases_slot(spec: RoundSpec) -> Slot | None:
    """The values stage's one slot for the gases the gas-level rule merges (``protocols.disclosure``).

    It carries a firm's ``Σ_g w·F_g`` over the merged gases, so the aggregator never sees their sums
    apart. Its bound is the worst case, every gas merged (``G`` times a ``wF`` slot's), and its scale
    is fitted to that bound like any derived slot, so it depends on the spec only. ``None`` when the
    round has no per-gas slots or a single gas (nothing to merge it with).
    """
    wf = next((s for s in vector_layout(spec) if s.kind == KIND_WF), None)
    gases = len(spec.footprint.gases)
    if wf is None or gases < 2:
        return None
    bound = wf.bound * gases
    scale = _fitted_scale(bound, wf.nominal_scale, spec.max_participants)
    return Slot(
        name=f"wF[{OTHER_GASES}]",
        kind=KIND_WF,
        component=None,
        scale=scale,
        bound_int=round(bound * scale),
        signed=wf.signed,
        unit=wf.unit,
        bound=bound,
        nominal_scale=wf.nominal_scale,
        gas=OTHER_GASES,
        description=f"{spec.weight.name} × footprint, the merged gases together",
    )
