"""Fixed-point encoding of reals as integers, and of signed integers in the ring of ``uint64`` mod 2^64.

A value ``v`` with scale ``s`` is the integer ``round(v * s)``, rounded half to even on the exact
product (the binary float is taken at its exact rational value, so the result is the same on every
machine and does not depend on how ``v * s`` would round in floating point). Scales are positive
integers or, for derived slots whose products would not fit 63 bits, positive fractions such as
``Fraction(1, 100)``.

Signed integers live in the ring as their two's complement mod 2^64, so sums of encoded vectors
wrap exactly as ``numpy.uint64`` arithmetic does and decode back to the signed sum provided the
true sum lies in [-2^63, 2^63) -- which ``protocols.spec.validate_spec`` proves for every slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.errors import EncodingError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "RING_BITS",
    "RING_MODULUS",
    "Scale",
    "as_scale",
    "decimal_text",
    "decode",
    "encode",
    "exact",
    "from_ring",
    "ring_sum",
    "to_ring",
    "to_signed",
]

RING_BITS = 64
RING_MODULUS = 1 << RING_BITS
INT64_MIN = -(1 << (RING_BITS - 1))
INT64_MAX = (1 << (RING_BITS - 1)) - 1
_MASK = RING_MODULUS - 1

#: A fixed-point scale: a positive integer, or a positive fraction for coarse derived slots.
Scale = int | Fraction


def as_scale(scale: object) -> Fraction:
    """``scale`` as a positive exact fraction; integral floats are accepted, other floats refused.

    Raises
    ------
    EncodingError
        Not a positive integer or fraction (``0.1`` is refused: it is not one tenth in binary).
    """
    if isinstance(scale, bool):
        raise EncodingError(f"scale {scale!r} is a bool; accepted: a positive integer or Fraction")
    if isinstance(scale, float) and math.isfinite(scale) and scale.is_integer():
        scale = int(scale)
    if not isinstance(scale, int | Rational):
        raise EncodingError(f"scale {scale!r} is a {type(scale).__name__}; accepted: a positive integer or Fraction")
    out = Fraction(scale)
    if out <= 0:
        raise EncodingError(f"scale {scale!r} is not positive; accepted: a positive integer or Fraction")
    return out


def exact(value: object, what: str = "value") -> Fraction:
    """The exact rational value of a finite real number (int, float, Decimal, Fraction, numpy scalar).

    Raises
    ------
    EncodingError
        ``value`` is a bool, not a number, NaN or infinite.
    """
    if isinstance(value, bool):
        raise EncodingError(f"{what} {value!r} is a bool; accepted: a finite number")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | Fraction):
        return Fraction(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise EncodingError(f"{what} {value!r} is not finite; accepted: a finite number")
        return Fraction(value)
    raise EncodingError(f"{what} {value!r} is a {type(value).__name__}; accepted: a finite number")


def decimal_text(value: Fraction) -> str:
    """``value`` as an exact decimal string; it must be a terminating decimal (denominator ``2^a 5^b``).

    How exact sums and brackets travel in JSON (the log's merged-gases sum, stage contexts).

    Raises
    ------
    ValueError
        ``value`` has no finite decimal expansion (within 80 places).
    """
    for places in range(80):
        scaled = value * 10**places
        if scaled.denominator == 1:
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
            return f"-{text}" if scaled < 0 else text
    raise ValueError(f"{value} is not a terminating decimal")


def encode(value: float | Fraction | Decimal, scale: Scale) -> int:
    """The fixed-point integer ``round(value * scale)``, rounded half to even on the exact product.

    Parameters
    ----------
    value
        A finite real. Floats are taken at their exact binary value.
    scale
        A positive integer or :class:`fractions.Fraction`.

    Returns
    -------
    int
        An unbounded Python integer; range checks are the caller's (see :func:`to_ring`).

    Raises
    ------
    EncodingError
        ``value`` is not finite (NaN, infinity) or ``scale`` is not a positive int / Fraction.

    Examples
    --------
    >>> encode(1.5, 1), encode(2.5, 1), encode(-2.5, 1)
    (2, 2, -2)
    >>> encode(2.675, 100)  # 2.675 is 2.67499999... in binary
    267
    """
    return round(exact(value) * as_scale(scale))


def decode(integer: int, scale: Scale) -> float:
    """The float nearest to ``integer / scale`` (correctly rounded)."""
    if isinstance(integer, bool) or not isinstance(integer, int | np.integer):
        raise EncodingError(f"{integer!r} is a {type(integer).__name__}; accepted: an integer")
    return float(Fraction(int(integer)) / as_scale(scale))


def to_ring(ints: Iterable[int]) -> npt.NDArray[np.uint64]:
    """Signed integers as their two's complement in ``uint64`` (i.e. mod 2^64).

    Raises
    ------
    EncodingError
        An element is not an integer or lies outside [-2^63, 2^63), where decoding would be ambiguous.
    """
    out: list[int] = []
    for index, item in enumerate(ints):
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise EncodingError(f"element {index} ({item!r}) is a {type(item).__name__}; accepted: an integer")
        value = int(item)
        if not INT64_MIN <= value <= INT64_MAX:
            raise EncodingError(f"element {index} ({value}) lies outside the signed 64-bit range [-2^63, 2^63)")
        out.append(value & _MASK)
    return np.array(out, dtype=np.uint64)


def to_signed(value: int) -> int:
    """The signed reading of one ring element in [0, 2^64)."""
    if not 0 <= value < RING_MODULUS:
        raise EncodingError(f"{value} is not a ring element; accepted: an integer in [0, 2^64)")
    return value - RING_MODULUS if value > INT64_MAX else value


def from_ring(arr: npt.NDArray[np.uint64] | Sequence[int]) -> list[int]:
    """The signed integers whose two's complement is ``arr`` (inverse of :func:`to_ring`).

    ``arr`` is a ``uint64`` array or a sequence of Python integers in [0, 2^64).
    """
    if isinstance(arr, np.ndarray):
        if arr.dtype != np.uint64:
            raise EncodingError(f"array of dtype {arr.dtype}; accepted: uint64 (ring elements)")
        signed: list[int] = arr.view(np.int64).tolist()
        return signed
    return [to_signed(int(v)) for v in arr]


def ring_sum(vectors: Iterable[npt.NDArray[np.uint64]]) -> npt.NDArray[np.uint64]:
    """The element-wise sum mod 2^64 of equally long ``uint64`` vectors.

    Array addition of ``uint64`` wraps silently in numpy (unlike scalar addition, which warns), so
    this is exact ring arithmetic.
    """
    total: npt.NDArray[np.uint64] | None = None
    for index, vector in enumerate(vectors):
        array: Any = np.asarray(vector)
        if array.dtype != np.uint64 or array.ndim != 1:
            raise EncodingError(f"vector {index}: {array.dtype} of shape {array.shape}; accepted: 1-D uint64")
        if total is None:
            total = array.copy()
        elif array.shape != total.shape:
            raise EncodingError(f"vector {index} has length {array.shape[0]}; expected {total.shape[0]}")
        else:
            np.add(total, array, out=total)
    if total is None:
        raise EncodingError("no vectors to sum")
    return total
