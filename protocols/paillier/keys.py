"""The split Paillier key: public key, the custodians' key shares and the ceremony that deals them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from math import lcm
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from phe import paillier as _phe

from keys.identity import public_key_b64
from protocols.canonical import Kind, digest
from protocols.paillier._wire import field, hex_int, unhex
from protocols.paillier.errors import LayoutError, MalformedMessage

__all__ = [
    "MIN_KEY_BITS",
    "PROTOCOL",
    "SHARE_STATISTICAL_BITS",
    "KeyShare",
    "SplitPublicKey",
    "deal_exponent_shares",
    "generate_split_key",
]

PROTOCOL = "paillier"
MIN_KEY_BITS = 1024
"""Smallest modulus :func:`generate_split_key` accepts (tests); production ceremonies use ≥ 2048."""
SHARE_STATISTICAL_BITS = 128
"""Extra bits of every random share: any ``k−1`` shares are within ``2⁻¹²⁸`` of independent of ``d``."""


@dataclass(frozen=True)
class SplitPublicKey:
    """The round's Paillier public key (``g = n + 1``) and the custodians' verification keys.

    ``custodians[i]`` is the Ed25519 public key (unpadded base64url of the raw 32 bytes, ``keys.identity``) with which
    custodian ``i`` signs its partial decryptions; decryption needs every one of them.
    """

    n: int
    custodians: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.n.bit_length() < MIN_KEY_BITS or self.n % 2 == 0:
            raise LayoutError(
                f"Paillier modulus: expected an odd n of ≥ {MIN_KEY_BITS} bits, got {self.n.bit_length()} bits"
            )
        if len(self.custodians) < 2:
            raise LayoutError(f"custodians: expected at least 2 key holders, got {len(self.custodians)}")

    @property
    def bits(self) -> int:
        """Bit length of ``n``."""
        return self.n.bit_length()

    @cached_property
    def nsquare(self) -> int:
        """``n²``, the ciphertext modulus."""
        return self.n * self.n

    @cached_property
    def ciphertext_bytes(self) -> int:
        """Fixed width of a ciphertext in bytes."""
        return (self.nsquare.bit_length() + 7) // 8

    @cached_property
    def paillier(self) -> _phe.PaillierPublicKey:
        """The phe public key, for encryption."""
        return _phe.PaillierPublicKey(self.n)

    @cached_property
    def key_id(self) -> str:
        """``canonical.digest(PAILLIER_KEY, {n (hex), custodians})``; names this key in every message."""
        return digest(Kind.PAILLIER_KEY, {"n": hex_int(self.n), "custodians": list(self.custodians)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{protocol, n (hex), custodians, key_id}``."""
        return {"protocol": PROTOCOL, "n": hex_int(self.n), "custodians": list(self.custodians), "key_id": self.key_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitPublicKey:
        """Parse :meth:`to_dict` output; refuses a ``key_id`` that does not match the content."""
        where = "public key"
        n = unhex(field(data, "n", str, where), f"{where}.n")
        custodians = field(data, "custodians", list, where)
        if not all(isinstance(c, str) for c in custodians):
            raise MalformedMessage(f"{where}.custodians: expected a list of base64 strings")
        key = cls(n=n, custodians=tuple(custodians))
        if "key_id" in data and data["key_id"] != key.key_id:
            raise MalformedMessage(f"{where}.key_id: {data['key_id']!r} does not match n and custodians ({key.key_id})")
        return key


@dataclass(frozen=True, repr=False)
class KeyShare:
    """One custodian's secret: its additive share ``d_i`` of the decryption exponent and its signing key."""

    index: int
    key_id: str
    exponent: int
    signing_key: Ed25519PrivateKey

    def __repr__(self) -> str:  # never print the secret exponent
        return f"KeyShare(index={self.index}, key_id={self.key_id[:12]}…)"


def deal_exponent_shares(
    p: int,
    q: int,
    n_custodians: int,
    *,
    randbits: Callable[[int], int] = secrets.randbits,
) -> list[int]:
    """Split the Paillier decryption exponent of ``n = p·q`` additively over the integers.

    Parameters
    ----------
    p, q
        The distinct primes (the dealer's only secret; they are not kept).
    n_custodians
        Number of shares, ≥ 2; all are needed to decrypt.
    randbits
        Source of randomness (``secrets.randbits``); replaceable for known-answer tests.

    Returns
    -------
    list[int]
        ``d_1 … d_k`` with ``Σ d_i = d``, ``d ≡ 0 (mod λ)``, ``d ≡ 1 (mod n)``. The first ``k−1`` are
        uniform in ``[0, 2^(|d|+128))``; the last (usually negative) completes the sum.
    """
    if n_custodians < 2:
        raise LayoutError(f"n_custodians: expected at least 2 so that no single party can decrypt, got {n_custodians}")
    if p == q:
        raise LayoutError("p and q must be distinct primes")
    n = p * q
    lam = lcm(p - 1, q - 1)
    d = lam * pow(lam, -1, n)
    share_bits = d.bit_length() + SHARE_STATISTICAL_BITS
    shares = [randbits(share_bits) for _ in range(n_custodians - 1)]
    shares.append(d - sum(shares))
    return shares


def generate_split_key(n_custodians: int, bits: int = 2048) -> tuple[SplitPublicKey, list[KeyShare]]:
    """Key ceremony: a fresh Paillier key whose decryption exponent is split among custodians.

    Parameters
    ----------
    n_custodians
        Number of independent custodians, ≥ 2 (n-of-n: every one is needed to decrypt).
    bits
        Bit length of ``n``; ≥ 2048 in production (≥ :data:`MIN_KEY_BITS` accepted for tests).

    Returns
    -------
    tuple[SplitPublicKey, list[KeyShare]]
        The public key and one share per custodian, in custodian order. ``p``, ``q`` and ``λ``
        exist only inside this call and are neither returned nor written anywhere; CPython
        cannot scrub them from freed memory, so run the ceremony in a short-lived process on a
        machine that is wiped afterwards.
    """
    if bits < MIN_KEY_BITS:
        raise LayoutError(f"bits: expected ≥ {MIN_KEY_BITS} (2048 in production), got {bits}")
    public, private = _phe.generate_paillier_keypair(n_length=bits)
    exponents = deal_exponent_shares(private.p, private.q, n_custodians)
    del private
    signing_keys = [Ed25519PrivateKey.generate() for _ in range(n_custodians)]
    key = SplitPublicKey(n=public.n, custodians=tuple(public_key_b64(k) for k in signing_keys))
    shares = [
        KeyShare(index=i, key_id=key.key_id, exponent=e, signing_key=k)
        for i, (e, k) in enumerate(zip(exponents, signing_keys, strict=True))
    ]
    return key, shares
