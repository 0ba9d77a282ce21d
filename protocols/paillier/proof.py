"""Proof of plaintext knowledge: a member shows it encrypted a value it knows, so no ciphertext is derived from another's.

Paillier is malleable: from a victim's ciphertext ``c`` anyone can make ``c·r^n`` (a re-randomised
copy), ``c^{-1}`` (its negation) or ``(c_1·c_2)^{-1}·Enc(k)``; a member on the roster posting such a
derived ciphertext turns "the sum of ``min_participants`` firms" into one firm's value. Each
ciphertext therefore carries a non-interactive Σ-protocol (Fiat–Shamir) proving knowledge of its
plaintext ``m`` and randomness ``r`` with ``c = g^m·r^n mod n²`` (``g = n + 1``):

* commit: random ``x ∈ [0, n)``, ``s ∈ Z_n*``; ``a = g^x·s^n mod n²``;
* challenge: ``e`` = the 256-bit digest of (key id, round, sender, slot index, ``c``, ``a``);
* respond: ``z = x + e·m mod n``, ``w = s·r^e mod n``;
* verify: ``g^z·w^n ≡ a·c^e (mod n²)`` (the carry of ``x + e·m`` over ``n`` vanishes: ``g^n ≡ 1 mod n²``).

Two accepting answers to one commitment give ``m`` (``e_1 − e_2`` is invertible mod ``n`` since
``|e| < 2^256`` is far below ``p`` and ``q``), so a prover that cannot compute the plaintext cannot
prove; the challenge names the sender, so a copied proof fails under another member's key.
Cost: one ``s^n mod n²`` to prove and one ``w^n mod n²`` to verify per ciphertext, i.e. one
encryption each.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

from protocols.canonical import digest
from protocols.paillier._wire import field, hex_int, mulmod, powmod, unhex
from protocols.paillier.keys import PROTOCOL, SplitPublicKey

__all__ = ["PROOF_KIND", "PlaintextProof", "encrypt_with_randomness", "prove_plaintext", "verify_plaintext_proof"]

PROOF_KIND = "contribution/v1/plaintext-proof"
"""Domain tag of the Fiat–Shamir challenge (``protocols.canonical.encode``)."""


@dataclass(frozen=True)
class PlaintextProof:
    """``(a, z, w)`` of the Σ-protocol for one ciphertext."""

    a: int
    z: int
    w: int

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form, integers in hex."""
        return {"a": hex_int(self.a), "z": hex_int(self.z), "w": hex_int(self.w)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "proof") -> PlaintextProof:
        """Parse :meth:`to_dict` output."""
        return cls(*(unhex(field(data, k, str, where), f"{where}.{k}") for k in ("a", "z", "w")))


def _random_unit(n: int) -> int:
    while True:
        r = secrets.randbelow(n - 1) + 1
        if gcd(r, n) == 1:
            return r


def encrypt_with_randomness(public_key: SplitPublicKey, m: int) -> tuple[int, int]:
    """``(c, r)`` with ``c = (1 + m·n)·r^n mod n²`` and ``r`` uniform in ``Z_n*``; the prover keeps ``r``."""
    n, n2 = public_key.n, public_key.nsquare
    r = _random_unit(n)
    return mulmod((1 + m * n) % n2, powmod(r, n, n2), n2), r


def _challenge(public_key: SplitPublicKey, round_id: str, sender: str, index: int, c: int, a: int) -> int:
    doc = {
        "protocol": PROTOCOL,
        "key_id": public_key.key_id,
        "round_id": round_id,
        "sender": sender,
        "index": index,
        "ciphertext": hex_int(c),
        "commitment": hex_int(a),
    }
    return int(digest(PROOF_KIND, doc), 16)


def prove_plaintext(
    public_key: SplitPublicKey,
    round_id: str,
    sender: str,
    index: int,
    c: int,
    m: int,
    r: int,
    *,
    unit: tuple[int, int] | None = None,
) -> PlaintextProof:
    """Prove knowledge of ``(m, r)`` behind ``c`` (ciphertext ``index`` of ``sender``'s contribution to ``round_id``).

    ``unit`` is ``(s, s^n mod n²)``, the commitment's randomness, fresh by default. Only benchmarks
    pass it (to pool the costly ``s^n``): two proofs sharing ``s`` and ``r`` reveal a plaintext ratio.
    """
    n, n2 = public_key.n, public_key.nsquare
    x = secrets.randbelow(n)
    if unit is None:
        s = _random_unit(n)
        s_n = powmod(s, n, n2)
    else:
        s, s_n = unit
    a = mulmod((1 + x * n) % n2, s_n, n2)
    e = _challenge(public_key, round_id, sender, index, c, a)
    return PlaintextProof(a=a, z=(x + e * m) % n, w=mulmod(s, powmod(r, e, n), n))


def verify_plaintext_proof(
    public_key: SplitPublicKey, round_id: str, sender: str, index: int, c: int, proof: PlaintextProof
) -> bool:
    """Whether ``proof`` shows that ``sender`` knows the plaintext of ``c`` (never raises)."""
    n, n2 = public_key.n, public_key.nsquare
    a, z, w = proof.a, proof.z, proof.w
    if not (0 < a < n2 and 0 <= z < n and 0 < w < n and 0 < c < n2) or gcd(w, n) != 1 or gcd(a, n) != 1:
        return False
    e = _challenge(public_key, round_id, sender, index, c, a)
    left = mulmod((1 + z * n) % n2, powmod(w, n, n2), n2)
    return left == mulmod(a, powmod(c, e, n2), n2)
