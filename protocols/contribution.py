"""A firm's contribution vector: its checked values, quantised and expanded into the round's slots.

Each base value is quantised once (``q = round(v * s) / s`` with the spec's scale), and every
derived slot is computed exactly from the quantised values (``w*x`` is ``q_w * q_x``, not
``w * x``), then rounded half to even at the slot's scale. So the plaintext preview shows exactly
what is sent, and Cauchy-Schwarz holds for the quantised values, which lets the statistics tell
rounding noise from inconsistent slots. The reporter slot ``n[c]`` is 1 when the quantised value
of component ``c`` is not zero (the firm is in that component's sums), else 0; likewise ``nF[g]``
is 1 when the firm's quantised footprint of gas ``g`` is not zero (it is in that gas's ``wF[g]`` sum).

A value that is missing, not finite, negative where the spec forbids it, or beyond its
plausibility bound is refused with a :class:`~protocols.errors.ContributionError`, never clipped:
a clipped value would bias the industry average without anyone knowing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from protocols.encoding import decode, exact, to_ring
from protocols.errors import ContributionError, EncodingError
from protocols.spec import (
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
    KIND_WX2,
    KIND_X,
    Component,
    RoundSpec,
    Slot,
    fmt_number,
    spec_hash,
    vector_layout,
)

__all__ = [
    "Contribution",
    "PreviewRow",
    "Slot",
    "build_contribution",
    "footprint_from_components",
    "vector_layout",
]


@dataclass(frozen=True)
class PreviewRow:
    """One line of the firm's plaintext preview: what slot ``slot`` will carry."""

    slot: str
    description: str
    value: float
    """The plaintext value the integer stands for (``integer / scale``)."""
    unit: str
    integer: int


@dataclass(frozen=True)
class Contribution:
    """A firm's contribution: one integer per slot of :func:`vector_layout`, for one spec."""

    spec_hash: str
    slots: tuple[Slot, ...]
    ints: list[int] = field(repr=False)

    def preview(self) -> list[PreviewRow]:
        """The rows a firm reviews before sending: slot, plaintext value with unit, integer."""
        return [
            PreviewRow(s.name, s.description, decode(i, s.scale), s.unit, i)
            for s, i in zip(self.slots, self.ints, strict=True)
        ]

    def to_ring(self) -> npt.NDArray[np.uint64]:
        """The integers as ``uint64`` ring elements, ready for masking or packing."""
        return to_ring(self.ints)

    def value(self, slot: str) -> float:
        """The plaintext value of the slot named ``slot``."""
        for s, i in zip(self.slots, self.ints, strict=True):
            if s.name == slot:
                return decode(i, s.scale)
        raise KeyError(slot)


def _describe(c: Component) -> str:
    return f"component {c.name_en!r} ({c.name_zh}, flow {c.flow}, {c.direction})"


def _checked(
    raw: object,
    *,
    what: str,
    unit: str,
    bound: float,
    allow_negative: bool,
    component: str,
    flow: str | None,
) -> Fraction:
    """``raw`` as an exact fraction after the finiteness, sign and bound checks."""
    try:
        value = exact(raw, what)
    except EncodingError as exc:
        raise ContributionError(
            f"{what}: value {raw!r} is not a finite number; accepted: a finite number of {unit}",
            component=component,
            flow=flow,
            unit=unit,
            bound=bound,
        ) from exc
    shown = float(value)
    if value < 0 and not allow_negative:
        raise ContributionError(
            f"{what}: value {fmt_number(shown)} {unit} is negative and the round does not allow negative values; "
            f"accepted: 0 to {fmt_number(bound)} {unit}",
            component=component,
            flow=flow,
            value=shown,
            unit=unit,
            bound=bound,
        )
    if abs(value) > Fraction(bound):
        accepted = f"-{fmt_number(bound)} to {fmt_number(bound)}" if allow_negative else f"0 to {fmt_number(bound)}"
        raise ContributionError(
            f"{what}: value {fmt_number(shown)} {unit} exceeds the round's plausibility bound "
            f"{fmt_number(bound)} {unit}; "
            f"accepted: {accepted} {unit}. The value is not clipped: check its unit and reference amount",
            component=component,
            flow=flow,
            value=shown,
            unit=unit,
            bound=bound,
        )
    return value


def _quantise(value: Fraction, scale: int) -> Fraction:
    return Fraction(round(value * scale), scale)


def build_contribution(
    spec: RoundSpec,
    values: Mapping[str, float],
    weight: float,
    footprint_by_gas: Mapping[str, float],
    confirmed_zeros: Iterable[str] | None = None,
) -> Contribution:
    """Check a firm's values against ``spec`` and encode them as the round's contribution vector.

    Parameters
    ----------
    spec
        The round spec (verified and validated by the caller).
    values
        Flow UUID (any case) -> value in the component's unit per reference unit of product.
    weight
        The firm's annual production in ``spec.weight.unit``; must be positive (a firm with no
        production would count towards ``min_participants`` without carrying any weight).
    footprint_by_gas
        Gas -> cradle-to-gate footprint in kg CO2e per reference unit, for every gas of the spec.
    confirmed_zeros
        Flow UUIDs and gas names the firm has confirmed to be zero. A component or gas absent from
        ``values`` / ``footprint_by_gas`` is an error unless confirmed here; nothing is zero-filled
        silently.

    Returns
    -------
    Contribution
        One integer per slot of :func:`vector_layout`.

    Raises
    ------
    ContributionError
        A value is missing, unknown, not finite, negative where not allowed or beyond its bound;
        the message names the component (English and Chinese names, flow UUID), the value, unit
        and bound.
    """
    zeros = {z.strip().lower() for z in confirmed_zeros or ()}
    gas_zeros = {z.strip() for z in confirmed_zeros or ()}
    given = {k.strip().lower(): v for k, v in values.items()}
    known = {c.flow for c in spec.components}
    unknown = sorted(set(given) - known)
    for flow in unknown:
        owner = spec.component_by_flow(flow)
        if owner is not None:
            raise ContributionError(
                f"value for flow {flow}, an alias of {_describe(owner)}; accepted: the component's value "
                f"(the sum over its flow and aliases) under its flow {owner.flow}",
                component=owner.name_en,
                flow=flow,
            )
    if unknown:
        raise ContributionError(
            f"values for flows {unknown} that are not components of round {spec.round_id!r}; accepted flows: "
            + ", ".join(f"{c.flow} ({c.name_en})" for c in spec.components),
            flow=unknown[0],
        )

    q_x: list[Fraction] = []
    for c in spec.components:
        unit = spec.per_unit(c.unit)
        if c.flow in given:
            raw: object = given[c.flow]
            if c.flow in zeros and raw != 0:
                raise ContributionError(
                    f"{_describe(c)}: value {raw!r} {unit} given but the flow is also confirmed as zero; "
                    "accepted: one of the two",
                    component=c.name_en,
                    flow=c.flow,
                    unit=unit,
                    bound=c.bound,
                )
        elif c.flow in zeros:
            raw = 0
        else:
            raise ContributionError(
                f"{_describe(c)}: no value; accepted: a value in {unit}, or the flow UUID in "
                "confirmed_zeros when the firm confirms it is zero",
                component=c.name_en,
                flow=c.flow,
                unit=unit,
                bound=c.bound,
            )
        x = _checked(
            raw,
            what=_describe(c),
            unit=unit,
            bound=c.bound,
            allow_negative=c.allow_negative,
            component=c.name_en,
            flow=c.flow,
        )
        q_x.append(_quantise(x, c.scale))

    w_spec = spec.weight
    w = _checked(
        weight,
        what=f"weight ({w_spec.name})",
        unit=w_spec.unit,
        bound=w_spec.bound,
        allow_negative=False,
        component=w_spec.name,
        flow=None,
    )
    q_w = _quantise(w, w_spec.scale)
    if q_w <= 0:
        raise ContributionError(
            f"weight ({w_spec.name}): value {fmt_number(float(w))} {w_spec.unit} rounds to 0 at scale {w_spec.scale}; "
            f"accepted: at least {fmt_number(1 / w_spec.scale)} {w_spec.unit}",
            component=w_spec.name,
            value=float(w),
            unit=w_spec.unit,
            bound=w_spec.bound,
        )

    fp = spec.footprint
    f_unit = spec.per_unit(fp.unit)
    unknown_gases = sorted(set(footprint_by_gas) - set(fp.gases))
    if unknown_gases:
        raise ContributionError(
            f"footprint for gases {unknown_gases} that the round does not have; accepted gases: {fp.gases}",
            component=unknown_gases[0],
        )
    f_gas: dict[str, Fraction] = {}
    for gas in fp.gases:
        if gas in footprint_by_gas:
            raw = footprint_by_gas[gas]
        elif gas in gas_zeros:
            raw = 0
        else:
            raise ContributionError(
                f"footprint, gas {gas!r}: no value; accepted: a value in {f_unit}, or {gas!r} in confirmed_zeros",
                component=gas,
                unit=f_unit,
                bound=fp.bound,
            )
        f_gas[gas] = _checked(
            raw,
            what=f"footprint, gas {gas!r}",
            unit=f_unit,
            bound=fp.bound,
            allow_negative=fp.allow_negative,
            component=gas,
            flow=None,
        )
    f_total = _checked(
        sum(f_gas.values(), Fraction(0)),
        what="footprint, total over gases",
        unit=f_unit,
        bound=fp.bound,
        allow_negative=fp.allow_negative,
        component="footprint",
        flow=None,
    )
    q_fg = {g: _quantise(v, fp.scale) for g, v in f_gas.items()}
    q_f = _quantise(f_total, fp.scale)
    edges = [Fraction(e) for e in fp.histogram_edges]
    last = len(edges) - 2
    # The exact total is binned (not q_f): the edges cover [lower, bound] and the total is checked
    # against the bound, so it lies in exactly one bin; q_f could round past the last edge.
    in_bin = [
        edges[b] <= f_total < edges[b + 1] or (b == last and f_total == edges[b + 1]) for b in range(last + 1)
    ]

    slots = tuple(vector_layout(spec))
    ints: list[int] = []
    for s in slots:
        i = s.component
        if s.kind == KIND_COUNT:
            v = Fraction(1)
        elif s.kind == KIND_N:
            # The quantised value: one that rounds to 0 adds nothing to the component's sums.
            v = Fraction(int(q_x[i] != 0))  # type: ignore[index]
        elif s.kind == KIND_W:
            v = q_w
        elif s.kind == KIND_WX:
            v = q_w * q_x[i]  # type: ignore[index]
        elif s.kind == KIND_X:
            v = q_x[i]  # type: ignore[index]
        elif s.kind == KIND_WX2:
            v = q_w * q_x[i] ** 2  # type: ignore[index]
        elif s.kind == KIND_NF:
            v = Fraction(int(q_fg[s.gas] != 0))  # type: ignore[index]
        elif s.kind == KIND_WF:
            v = q_w * q_fg[s.gas]  # type: ignore[index]
        elif s.kind == KIND_F:
            v = q_f
        elif s.kind == KIND_F2:
            v = q_f * q_f
        elif s.kind == KIND_WF2:
            v = q_w * q_f * q_f
        elif s.kind == KIND_HIST:
            v = Fraction(int(in_bin[s.bin]))  # type: ignore[index]
        else:  # pragma: no cover - the layout only makes the kinds above
            raise AssertionError(f"unknown slot kind {s.kind!r}")
        integer = round(v * s.scale)
        if abs(integer) > s.bound_int:  # cannot happen after the checks above; the overflow proof relies on it
            raise ContributionError(
                f"slot {s.name!r}: integer {integer} exceeds the slot bound {s.bound_int}", component=s.name
            )
        ints.append(integer)
    return Contribution(spec_hash=spec_hash(spec), slots=slots, ints=ints)


def footprint_from_components(spec: RoundSpec, values: Mapping[str, float]) -> dict[str, float]:
    """The footprint per gas implied by the components and the round's background factors.

    ``F_g = sum_c x_c * background_factors[c][g]``; flows absent from ``values`` count as 0 here
    (this is a calculator, not a contribution). The sum is exact, then rounded to float once.
    """
    given = {k.strip().lower(): v for k, v in values.items()}
    totals = {gas: Fraction(0) for gas in spec.footprint.gases}
    for flow, by_gas in spec.background_factors.items():
        x = exact(given.get(flow, 0), f"value of flow {flow}")
        for gas, factor in by_gas.items():
            totals[gas] += x * Fraction(factor)
    return {gas: float(v) for gas, v in totals.items()}
