"""The overflow proof of a round spec: no sum of up to ``max_participants`` contributions leaves the 64-bit ring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from protocols.encoding import INT64_MAX, RING_BITS
from protocols.errors import SpecError
from protocols.spec.layout import DERIVED_KINDS, other_gases_slot, vector_layout
from protocols.spec.model import RoundSpec, fmt_number, spec_hash, structural_problems

__all__ = ["OverflowProof", "SlotProof", "validate_spec"]

@dataclass(frozen=True)
class SlotProof:
    """Why one slot cannot overflow: ``max_participants * bound_int < 2^63``."""

    name: str
    scale: Fraction
    bound_int: int
    max_abs_sum: int
    headroom_bits: int
    """``63 - bit_length(max_abs_sum)``: how many more doublings the sum could take."""
    resolution_loss_digits: int
    """Decimal digits a derived slot gave up to fit (0 when it uses the nominal scale)."""


@dataclass(frozen=True)
class OverflowProof:
    """The per-slot evidence that no sum of up to ``max_participants`` contributions overflows."""

    spec_hash: str
    max_participants: int
    slots: tuple[SlotProof, ...]
    min_publishable_n: int
    """Smallest n that can publish: ``min_participants``, and never fewer than 3 (with two firms each
    knows the other's values from the totals; the p %-rule of ``protocols.disclosure`` fails)."""

    def min_headroom_bits(self) -> int:
        return min(s.headroom_bits for s in self.slots)

    def __str__(self) -> str:
        width = max(len(s.name) for s in self.slots)
        rows = [f"{'slot':<{width}}  {'scale':>10}  {'bound_int':>20}  headroom bits"]
        for s in self.slots:
            rows.append(f"{s.name:<{width}}  {s.scale!s:>10}  {s.bound_int:>20}  {s.headroom_bits}")
        return "\n".join(rows)


def validate_spec(spec: RoundSpec) -> OverflowProof:
    """Check ``spec`` and prove that no slot's sum can overflow the signed 64-bit ring.

    Sums are taken mod 2^64 and read as two's complement, so a sum is recovered exactly when its
    true value lies in [-2^63, 2^63). For every slot, ``|integer| <= bound_int`` for every
    admissible contribution (bounds are taken after rounding), hence
    ``|sum| <= max_participants * bound_int``; the spec is accepted when that is < 2^63.

    Parameters
    ----------
    spec
        The round spec. Structural checks are re-run because ``model_copy(update=...)`` and
        ``model_construct`` bypass pydantic validation.

    Returns
    -------
    OverflowProof
        Per slot: scale, bound integer, largest possible sum and headroom bits.

    Raises
    ------
    SpecError
        Structural inconsistency, an unknown or base-slot scale override, a slot that carries no
        information (bound integer 0), or an overflow; an overflow names the slot, the bound, the
        scale and ``max_participants`` and says what would fit (``.slot`` holds the slot name).
    """
    problems = structural_problems(spec)
    if problems:
        raise SpecError("; ".join(problems))
    slots = vector_layout(spec)
    by_name = {s.name: s for s in slots}
    for name in spec.slot_scale_exponents:
        if name not in by_name:
            raise SpecError(
                f"slot_scale_exponents: no slot named {name!r}; accepted: one of the derived slots "
                + ", ".join(s.name for s in slots if s.kind in DERIVED_KINDS),
                slot=name,
            )
        if by_name[name].kind not in DERIVED_KINDS:
            raise SpecError(
                f"slot_scale_exponents: {name!r} is a base slot; set its scale in the spec's component, "
                "weight or footprint instead",
                slot=name,
            )
    n_max = spec.max_participants
    proofs: list[SlotProof] = []
    merged = other_gases_slot(spec)  # the values stage's slot for merged gases is proven like the others
    for s in [*slots, *([merged] if merged is not None else [])]:
        if s.bound_int == 0:
            raise SpecError(
                f"slot {s.name!r}: bound {fmt_number(s.bound)} {s.unit} at scale {s.scale} rounds to 0, so the "
                "slot carries nothing; raise its scale",
                slot=s.name,
            )
        total = n_max * s.bound_int
        if total > INT64_MAX:
            fitting = INT64_MAX // s.bound_int
            raise SpecError(
                f"slot {s.name!r} can overflow: bound {fmt_number(s.bound)} {s.unit} × scale {s.scale} = "
                f"{s.bound_int} per firm, × max_participants {n_max} = {total} >= 2^63; accepted: "
                f"bound × scale × max_participants < 2^63 (lower the scale or the bound, or allow at most "
                f"{fitting} participants)",
                slot=s.name,
            )
        loss = 0
        if s.scale < s.nominal_scale:
            loss = max(0, round(math.log10(s.nominal_scale / s.scale)))
        proofs.append(
            SlotProof(
                name=s.name,
                scale=s.scale,
                bound_int=s.bound_int,
                max_abs_sum=total,
                headroom_bits=RING_BITS - 1 - total.bit_length(),
                resolution_loss_digits=loss,
            )
        )
    min_n = max(spec.min_participants, 3)
    return OverflowProof(
        spec_hash=spec_hash(spec), max_participants=n_max, slots=tuple(proofs), min_publishable_n=min_n
    )
