"""Errors of the protocols package (round specs, encodings, contributions, statistics, signatures).

Exception tree::

    ProtocolError
    ├── SpecError              a round spec is inconsistent or a sum could overflow (also a ValueError)
    ├── EncodingError          a value cannot be put in fixed point or in the ring (also a ValueError)
    ├── ContributionError      a firm's values do not fit the round spec (also a ValueError)
    └── AggregationError       summed vectors are inconsistent with the spec or with each other;
                               the secure-aggregation protocols raise it when a round cannot complete

    keys.errors.KeysError      (re-exported here, the same classes)
    ├── IdentityError          a key file or an encoded public key cannot be read (also a ValueError)
    └── InvalidSignature       a signature does not verify; deliberately opaque: it never says
                               whether the key, the encoding or the signed bytes were wrong

``IdentityError`` and ``InvalidSignature`` live in ``keys.errors``, the ground floor, since
``keys.identity`` raises them and imports nothing of ``protocols``; spec and roster verification
raise them as well. They do not derive from ``ProtocolError``: a caller that reports every failure of a
protocol step catches :data:`PROTOCOL_FAILURES`.
"""

from __future__ import annotations

from keys.errors import IdentityError, InvalidSignature, KeysError

__all__ = [
    "PROTOCOL_FAILURES",
    "AggregationError",
    "ContributionError",
    "EncodingError",
    "IdentityError",
    "InvalidSignature",
    "KeysError",
    "ProtocolError",
    "SpecError",
]


class ProtocolError(Exception):
    """Base class of the protocols package's errors."""


class SpecError(ProtocolError, ValueError):
    """A round spec is inconsistent, or a sum of its contribution vectors could overflow.

    A ``ValueError`` so that pydantic validators can raise it and it surfaces as a validation error.
    ``slot`` names the vector slot when the problem is an overflow.
    """

    def __init__(self, message: str, *, slot: str | None = None):
        self.slot = slot
        super().__init__(message)


class EncodingError(ProtocolError, ValueError):
    """A value is not finite, or an integer does not fit the signed 64-bit ring."""


class ContributionError(ProtocolError, ValueError):
    """A firm's value is missing, non-finite, negative where not allowed, or outside its bound.

    The attributes say which value: ``component`` (English name or gas), ``flow`` (UUID, when a
    component), ``value``, ``unit`` and ``bound``. Values are never clipped.
    """

    def __init__(
        self,
        message: str,
        *,
        component: str | None = None,
        flow: str | None = None,
        value: float | None = None,
        unit: str | None = None,
        bound: float | None = None,
    ):
        self.component = component
        self.flow = flow
        self.value = value
        self.unit = unit
        self.bound = bound
        super().__init__(message)


class AggregationError(ProtocolError):
    """Summed vectors do not match the spec (length, count slot, histogram) or contradict each other."""


PROTOCOL_FAILURES: tuple[type[Exception], ...] = (ProtocolError, KeysError)
"""Every error a protocol step can raise: its own tree and the signature/identity errors of ``keys``."""
