"""What a node accepts from the server of a secure-aggregation round: the parameters its signed invitation allows.

The server chooses a round's participants, threshold, graph degree and input bound at run time, so a
node checks them against the spec and roster it verified with the aggregator's key before it sends
anything (:meth:`RoundPolicy.check`):

* the participants are members of the signed roster, and at least ``min_participants`` of them;
* the threshold is at least ``max(min_participants, ceil(threshold_fraction * holders))`` where
  ``holders`` is the size of a closed neighbourhood (a firm and the peers that hold its shares:
  every participant for SecAgg, ``neighbourhood_size + 1`` for SecAgg+), so the server can never
  unmask a sum over fewer than ``min_participants`` firms, and a split-view lie needs more
  signatures than a third of colluding firms can give;
* the vector length, the graph degree and the input bound are those of the spec.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction

from protocols.secagg import ProtocolViolation, RoundParams
from protocols.spec import RoundSpec, other_gases_slot, vector_layout

__all__ = [
    "MIN_THRESHOLD_FRACTION",
    "RoundPolicy",
    "RoundRefused",
    "required_threshold",
    "spec_degree",
    "spec_value_bits",
]

MIN_THRESHOLD_FRACTION = Fraction(2, 3)
"""The smallest threshold fraction a spec may set (``SecAggParams.threshold_fraction``)."""


class RoundRefused(ProtocolViolation):
    """The server's round parameters are not those the firm's signed invitation allows; nothing was sent."""


def _fraction(value: float | Fraction) -> Fraction:
    # 2/3 as a float is 0.666...6 < 2/3: read it back as the small fraction it was written as.
    return Fraction(value).limit_denominator(1000)


def required_threshold(min_participants: int, threshold_fraction: float | Fraction, holders: int) -> int:
    """The smallest threshold a node accepts: ``max(min_participants, ceil(threshold_fraction * holders))``."""
    return max(min_participants, math.ceil(_fraction(threshold_fraction) * holders))


def spec_degree(spec: RoundSpec, participants: int) -> int:
    """Neighbourhood size of a round over ``participants`` firms: the spec's, or every other firm."""
    size = spec.secagg.neighbourhood_size
    return participants - 1 if size is None else min(size, participants - 1)


def spec_value_bits(spec: RoundSpec) -> int:
    """Input bound ``b`` of a round (inputs in [-2**b, 2**b)): the smallest with every slot's ``bound_int < 2**b``."""
    merged = other_gases_slot(spec)  # the values stage's merged-gases slot (protocols.disclosure)
    bounds = [slot.bound_int for slot in vector_layout(spec)] + ([merged.bound_int] if merged is not None else [])
    return max(max(bounds).bit_length(), 1)


@dataclass(frozen=True)
class RoundPolicy:
    """The round parameters a node accepts, from its verified invitation (never from the server).

    Parameters
    ----------
    round_id
        The invited round.
    roster
        Node ids of the signed roster.
    min_participants
        The spec's ``min_participants``.
    threshold_fraction
        The spec's ``secagg.threshold_fraction``.
    vector_length
        Length of the spec's contribution vector.
    value_bits
        The spec's input bound (:func:`spec_value_bits`).
    neighbourhood_size
        The spec's ``secagg.neighbourhood_size``; ``None``: the complete graph.
    cohort
        For a disclosure stage after ``screen``: exactly these participants.
    """

    round_id: str
    roster: frozenset[int]
    min_participants: int
    threshold_fraction: Fraction
    vector_length: int
    value_bits: int
    neighbourhood_size: int | None = None
    cohort: frozenset[int] | None = None
    """Node ids a stage after ``screen`` must sum over exactly (the screen's contributors,
    ``protocols.disclosure``); ``None``: any subset of the roster."""

    @classmethod
    def from_spec(cls, spec: RoundSpec, roster: Collection[int | str]) -> RoundPolicy:
        """The policy of an invitation: its verified spec and signed roster (node ids)."""
        return cls(
            round_id=spec.round_id,
            roster=frozenset(int(node) for node in roster),
            min_participants=spec.min_participants,
            threshold_fraction=max(_fraction(spec.secagg.threshold_fraction), MIN_THRESHOLD_FRACTION),
            vector_length=len(vector_layout(spec)),
            value_bits=spec_value_bits(spec),
            neighbourhood_size=spec.secagg.neighbourhood_size,
        )

    def degree(self, participants: int) -> int:
        """The graph degree the spec gives a round over ``participants`` nodes."""
        size = self.neighbourhood_size
        return participants - 1 if size is None else min(size, participants - 1)

    def threshold(self, participants: int) -> int:
        """The smallest threshold accepted for ``participants`` nodes."""
        return required_threshold(self.min_participants, self.threshold_fraction, self.degree(participants) + 1)

    def check(self, params: RoundParams) -> None:
        """Refuse parameters the invitation does not allow.

        Raises
        ------
        RoundRefused
            Naming the parameter, the value the server sent and what the invitation accepts.
        """
        where = f"round {params.round_id!r}: the server's round parameters were refused"
        if params.round_id != self.round_id:
            raise RoundRefused(f"{where}: round id {params.round_id!r}; accepted: {self.round_id!r}")
        strangers = sorted(set(params.participants) - self.roster)
        if strangers:
            raise RoundRefused(
                f"{where}: participants {strangers} are not in the signed roster; accepted: members of the "
                f"roster ({len(self.roster)} nodes)"
            )
        if self.cohort is not None and set(params.participants) != self.cohort:
            raise RoundRefused(
                f"{where}: participants {sorted(params.participants)}; accepted: exactly the screen stage's cohort "
                f"{sorted(self.cohort)} (every stage sums over the same firms)"
            )
        n = len(params.participants)
        if n < self.min_participants:
            raise RoundRefused(
                f"{where}: {n} participant(s); accepted: at least min_participants = {self.min_participants}"
            )
        if params.vector_length != self.vector_length:
            raise RoundRefused(
                f"{where}: vector length {params.vector_length}; accepted: {self.vector_length} (the spec's)"
            )
        if params.value_bits != self.value_bits:
            raise RoundRefused(
                f"{where}: input bound 2**{params.value_bits}; accepted: 2**{self.value_bits} (the spec's slot bounds)"
            )
        if params.degree != self.degree(n):
            raise RoundRefused(
                f"{where}: neighbourhood degree {params.degree}; accepted: {self.degree(n)} (the spec's "
                "neighbourhood_size, or every other participant)"
            )
        floor = self.threshold(n)
        if params.threshold < floor:
            raise RoundRefused(
                f"{where}: threshold {params.threshold}; accepted: at least {floor} = max(min_participants "
                f"{self.min_participants}, ceil({self.threshold_fraction} x {params.degree + 1} share holders))"
            )
