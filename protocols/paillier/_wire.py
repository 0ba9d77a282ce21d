"""Helpers shared by the ``paillier`` modules: hex integers on the wire, field checks, phe arithmetic."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from phe import util as _phe_util

from keys.identity import InvalidSignature, verify
from protocols.paillier.errors import MalformedMessage

__all__ = ["field", "gmpy2_active", "hex_int", "mulmod", "powmod", "unhex", "verifies"]

_HEX = re.compile(r"[0-9a-f]+")


def gmpy2_active() -> bool:
    """Whether phe's modular arithmetic runs on gmpy2 (``phe.util.HAVE_GMP``).

    Returns
    -------
    bool
        ``True`` when gmpy2 was importable when phe loaded; without it every operation is
        several times slower but still correct.
    """
    return bool(_phe_util.HAVE_GMP)


def powmod(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent mod modulus``; phe hands big operands (and negative exponents) to gmpy2."""
    return int(_phe_util.powmod(base, exponent, modulus))


def mulmod(a: int, b: int, modulus: int) -> int:
    """``a · b mod modulus`` through phe (gmpy2 when present)."""
    return int(_phe_util.mulmod(a, b, modulus))


def hex_int(value: int) -> str:
    """Lower-case hex of a non-negative integer: how ciphertexts, partials and ``n`` travel and are hashed.

    Strings, not JSON numbers, because RFC 8785 refuses integers above 2**53.
    """
    return format(value, "x")


def unhex(value: Any, where: str) -> int:
    """Parse :func:`hex_int` output; ``where`` names the field in the error."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise MalformedMessage(f"{where}: expected a lowercase hexadecimal string, got {str(value)[:40]!r}")
    return int(value, 16)


def field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[name]``, checked to be of ``kind`` (a ``bool`` is not an ``int``)."""
    if not isinstance(data, Mapping):
        raise MalformedMessage(f"{where}: expected a JSON object, got {type(data).__name__}")
    if name not in data:
        raise MalformedMessage(f"{where}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedMessage(f"{where}.{name}: expected {kind}, got {value!r}"[:300])
    return value


def verifies(public_b64: str, data: bytes, signature_b64: str) -> bool:
    """Whether the Ed25519 signature checks out (never raises)."""
    try:
        verify(public_b64, data, signature_b64)
    except InvalidSignature:
        return False
    return True
