"""Fixed-point slots packed into Paillier plaintexts: the layout a round spec fixes, pack and unpack."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocols.paillier._wire import field
from protocols.paillier.errors import CombineFailed, LayoutError, MalformedMessage

if TYPE_CHECKING:
    from protocols.disclosure import Stage, StageContext
    from protocols.spec import RoundSpec, Slot

__all__ = [
    "SAFETY_MARGIN_BITS",
    "PackingLayout",
    "check_slot_values",
    "make_layout",
    "pack",
    "slots_packing",
    "spec_layout",
    "stage_packing",
    "unpack",
]

SAFETY_MARGIN_BITS = 64
"""Bits of ``n`` left unused above the top slot of every packed plaintext."""


@dataclass(frozen=True)
class PackingLayout:
    """Where each slot sits in the packed plaintexts, and the bounds that keep sums exact.

    Slot ``i`` of a contribution must satisfy ``|v_i| ≤ bounds[i]``; it is stored as
    ``v_i + bounds[i]`` in ``slot_bits[i] = bitlen(2·max_participants·bounds[i])`` bits
    (≤ ``bits(bound) + bits(max_participants) + 1``), so the sum of up to ``max_participants``
    contributions never carries into the next slot. Slots fill plaintexts in order, least
    significant first, ``slots_per_ciphertext[j]`` of them in plaintext ``j``, each plaintext using at
    most ``key_bits − SAFETY_MARGIN_BITS`` bits.
    """

    bounds: tuple[int, ...]
    max_participants: int
    key_bits: int
    slot_bits: tuple[int, ...]
    slots_per_ciphertext: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.bounds:
            raise LayoutError("bounds: expected at least one slot")
        if self.max_participants < 1:
            raise LayoutError(f"max_participants: expected ≥ 1, got {self.max_participants}")
        if len(self.slot_bits) != len(self.bounds):
            raise LayoutError(
                f"slot_bits: expected {len(self.bounds)} entries (one per slot), got {len(self.slot_bits)}"
            )
        if sum(self.slots_per_ciphertext) != len(self.bounds) or any(k < 1 for k in self.slots_per_ciphertext):
            raise LayoutError(
                f"slots_per_ciphertext: expected positive counts summing to {len(self.bounds)}, "
                f"got {self.slots_per_ciphertext}"
            )
        for i, (bound, width) in enumerate(zip(self.bounds, self.slot_bits, strict=True)):
            if bound < 1:
                raise LayoutError(f"bounds[{i}]: expected a positive integer bound on |value|, got {bound}")
            need = (2 * self.max_participants * bound).bit_length()
            if width < need:
                raise LayoutError(
                    f"slot_bits[{i}]: {width} bits cannot hold {self.max_participants} × 2·{bound}; expected ≥ {need}"
                )
        capacity = self.key_bits - SAFETY_MARGIN_BITS
        start = 0
        for j, count in enumerate(self.slots_per_ciphertext):
            used = sum(self.slot_bits[start : start + count])
            if used > capacity:
                raise LayoutError(
                    f"slots_per_ciphertext[{j}]: {count} slots need {used} bits, "
                    f"a {self.key_bits}-bit key holds {capacity} (margin {SAFETY_MARGIN_BITS})"
                )
            start += count

    @property
    def n_slots(self) -> int:
        """Number of integers in one contribution."""
        return len(self.bounds)

    @property
    def n_ciphertexts(self) -> int:
        """Number of ciphertexts in one contribution."""
        return len(self.slots_per_ciphertext)

    def groups(self) -> list[range]:
        """Slot index ranges, one per plaintext."""
        out, start = [], 0
        for count in self.slots_per_ciphertext:
            out.append(range(start, start + count))
            start += count
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (bounds as decimal strings, which may exceed 2⁵³)."""
        return {
            "bounds": [str(b) for b in self.bounds],
            "max_participants": self.max_participants,
            "key_bits": self.key_bits,
            "slot_bits": list(self.slot_bits),
            "slots_per_ciphertext": list(self.slots_per_ciphertext),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackingLayout:
        """Parse :meth:`to_dict` output (re-validated)."""
        where = "layout"
        try:
            bounds = tuple(int(b) for b in field(data, "bounds", list, where))
            slot_bits = tuple(int(b) for b in field(data, "slot_bits", list, where))
            groups = tuple(int(k) for k in field(data, "slots_per_ciphertext", list, where))
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(
                f"{where}: bounds, slot_bits and slots_per_ciphertext must be integers ({exc})"
            ) from None
        return cls(
            bounds=bounds,
            max_participants=field(data, "max_participants", int, where),
            key_bits=field(data, "key_bits", int, where),
            slot_bits=slot_bits,
            slots_per_ciphertext=groups,
        )


def make_layout(
    bounds: Sequence[int],
    max_participants: int,
    key_bits: int,
    *,
    packed: bool = True,
) -> PackingLayout:
    """Derive the packing layout of a round from per-slot bounds and the participant cap.

    Parameters
    ----------
    bounds
        ``bounds[i]`` is the largest ``|value|`` slot ``i`` may hold in one contribution
        (fixed-point integers of the round spec).
    max_participants
        Most contributions the round will sum.
    key_bits
        Bit length of the Paillier modulus ``n``.
    packed
        ``False`` puts one slot per ciphertext (the unpacked baseline).

    Returns
    -------
    PackingLayout
        Slots greedily filled into plaintexts of at most ``key_bits − SAFETY_MARGIN_BITS`` bits.
    """
    bounds_t = tuple(int(b) for b in bounds)
    if max_participants < 1:
        raise LayoutError(f"max_participants: expected ≥ 1, got {max_participants}")
    for i, b in enumerate(bounds_t):
        if b < 1:
            raise LayoutError(f"bounds[{i}]: expected a positive integer bound on |value|, got {b}")
    widths = tuple((2 * max_participants * b).bit_length() for b in bounds_t)
    capacity = key_bits - SAFETY_MARGIN_BITS
    groups: list[int] = []
    used = count = 0
    for i, w in enumerate(widths):
        if w > capacity:
            raise LayoutError(f"bounds[{i}]: a {w}-bit slot does not fit a {key_bits}-bit key ({capacity} usable bits)")
        if count and (not packed or used + w > capacity):
            groups.append(count)
            used = count = 0
        used += w
        count += 1
    groups.append(count)
    return PackingLayout(bounds_t, max_participants, key_bits, widths, tuple(groups))


def pack(ints: Sequence[int], layout: PackingLayout) -> list[int]:
    """Offset and pack one contribution's slot integers into plaintexts.

    Parameters
    ----------
    ints
        One integer per slot, ``|ints[i]| ≤ layout.bounds[i]``.
    layout
        The round's layout.

    Returns
    -------
    list[int]
        ``layout.n_ciphertexts`` non-negative plaintexts.

    Raises
    ------
    LayoutError
        Wrong length, a non-integer, or a value outside its slot's bound.
    """
    if len(ints) != layout.n_slots:
        raise LayoutError(f"contribution: expected {layout.n_slots} slot integers, got {len(ints)}")
    out: list[int] = []
    for group in layout.groups():
        plaintext, shift = 0, 0
        for i in group:
            v, bound = ints[i], layout.bounds[i]
            if not isinstance(v, int) or isinstance(v, bool):
                raise LayoutError(f"slot {i}: expected an integer (fixed-point encoded), got {v!r}")
            if not -bound <= v <= bound:
                raise LayoutError(f"slot {i}: value {v} outside the layout's bound ±{bound}")
            plaintext |= (v + bound) << shift
            shift += layout.slot_bits[i]
        out.append(plaintext)
    return out


def unpack(plaintexts: Sequence[int], layout: PackingLayout, n_participants: int) -> list[int]:
    """Split decrypted sums back into slot sums and remove ``n_participants`` offsets.

    Parameters
    ----------
    plaintexts
        The decrypted product plaintexts, one per ciphertext.
    layout
        The round's layout.
    n_participants
        Number of contributions multiplied together, ``1 ≤ n ≤ layout.max_participants``.

    Returns
    -------
    list[int]
        The exact per-slot sums (possibly negative).

    Raises
    ------
    LayoutError
        ``n_participants`` outside ``[1, max_participants]`` or a wrong number of plaintexts.
    CombineFailed
        A slot or the bits above the last slot hold a value no honest sum can produce
        (out-of-range contributions, or a wrong partial decryption).
    """
    if not 1 <= n_participants <= layout.max_participants:
        raise LayoutError(
            f"n_participants: expected 1…{layout.max_participants} (layout headroom), got {n_participants}"
        )
    if len(plaintexts) != layout.n_ciphertexts:
        raise LayoutError(f"plaintexts: expected {layout.n_ciphertexts}, got {len(plaintexts)}")
    sums: list[int] = []
    for j, (group, plaintext) in enumerate(zip(layout.groups(), plaintexts, strict=True)):
        rest = plaintext
        for i in group:
            width = layout.slot_bits[i]
            raw = rest & ((1 << width) - 1)
            rest >>= width
            bound = layout.bounds[i]
            if raw > 2 * n_participants * bound:
                raise CombineFailed(f"slot {i}: decoded offset sum {raw} exceeds {n_participants} × 2·{bound}")
            sums.append(raw - n_participants * bound)
        if rest:
            raise CombineFailed(f"plaintext {j}: bits set above the last slot; the sum overflowed or decryption failed")
    return sums


def spec_layout(spec: RoundSpec) -> PackingLayout:
    """The packing layout of a ``paillier`` round: one slot per vector position, bounded by its ``bound_int``.

    Nodes and the aggregator both derive it this way from the signed spec.
    """
    from protocols.spec import vector_layout

    return make_layout([s.bound_int for s in vector_layout(spec)], spec.max_participants, spec.paillier.key_bits)


def slots_packing(spec: RoundSpec, slots: Sequence[Slot]) -> PackingLayout:
    """The packing layout of ``slots`` (a disclosure stage's) in a ``paillier`` round of ``spec``.

    Each slot is bounded by its ``bound_int`` (count slots of the dominance and cells stages have
    bound 1), with headroom for the spec's ``max_participants`` and its key size.
    """
    return make_layout([s.bound_int for s in slots], spec.max_participants, spec.paillier.key_bits)


def stage_packing(spec: RoundSpec, stage: Stage, context: StageContext | None) -> PackingLayout:
    """The packing layout of one disclosure stage (``protocols.disclosure.stage_layout``).

    Nodes derive it from the signed spec and the stage context the aggregator signed; the
    aggregator and the custodians from the same spec and the screen's sum.
    """
    from protocols.disclosure import stage_layout

    return slots_packing(spec, stage_layout(spec, stage, context))


def check_slot_values(slots: Sequence[Slot], ints: Sequence[int]) -> None:
    """Refuse a vector that an honest sum must not contain: a value beyond its slot's bound, or negative in a non-negative slot.

    :func:`pack` offsets every slot by its bound, so it would encode ``-1`` in a count or
    production slot as readily as ``+1``; a negative count there would lower the dominance and
    reporter counts of the others. The honest node runs this check before anything is encrypted.

    Raises
    ------
    LayoutError
        Naming the slot, the value and what the slot accepts.
    """
    if len(ints) != len(slots):
        raise LayoutError(f"contribution: {len(ints)} integers for a stage of {len(slots)} slots")
    for s, v in zip(slots, ints, strict=True):
        if not isinstance(v, int) or isinstance(v, bool):
            raise LayoutError(f"slot {s.name}: expected an integer (fixed-point encoded), got {v!r}")
        if v < 0 and not s.signed:
            raise LayoutError(f"slot {s.name}: value {v} is negative; accepted: 0 to {s.bound_int} (a non-negative slot)")
        if abs(v) > s.bound_int:
            lo = -s.bound_int if s.signed else 0
            raise LayoutError(f"slot {s.name}: value {v} outside the slot's bound; accepted: {lo} to {s.bound_int}")
