"""Protocol 2, ``paillier``: packed Paillier contributions in an asynchronous window, decrypted by split-key custodians.

How a round runs
----------------
1. Key ceremony (once, offline): :func:`generate_split_key` draws a Paillier key (phe, ``n`` of
   ``bits`` bits), computes the decryption exponent ``d = λ·(λ⁻¹ mod n)`` (so ``d ≡ 0 mod λ`` and
   ``d ≡ 1 mod n``) and splits it additively over the integers, ``d = d_1 + … + d_k``: the first
   ``k−1`` shares are uniform of ``|d| + 128`` bits, the last is ``d − Σ others`` (usually negative),
   so any ``k−1`` shares are statistically independent of ``d`` (distance ≤ 2⁻¹²⁸). ``p``, ``q`` and
   ``λ`` only live in local variables of the dealer and are never returned or written; the
   ceremony should run on an offline machine in front of every custodian, which is then wiped.
   Each custodian also receives an Ed25519 key to sign its partial decryptions; the public key
   (:class:`SplitPublicKey`) lists those verification keys.
2. The round spec fixes a :class:`PackingLayout` (per-slot bounds on ``|value|``, maximum number
   of participants, key size). Slot values are the round's fixed-point integers: nothing is
   encrypted with phe's float encoding, so there is no per-ciphertext exponent to leak magnitude.
3. Each firm packs its integers (offset by the bound so they are non-negative) several to a
   plaintext, encrypts (:func:`encrypt_contribution`) and signs ``(round_id, sha256)``.
4. The aggregator (:class:`RoundAccumulator` / :func:`aggregate`) checks each contribution
   against the roster, the round and earlier senders, and multiplies the ciphertexts as they
   arrive; it cannot decrypt anything.
5. When the window closes, each custodian receives the logged contributions and runs
   :func:`custodian_partial_decrypt`: it re-verifies every signature, requires distinct roster
   members and at least ``min_participants`` of them, recomputes the product itself, refuses to
   decrypt a second, different set for the same round (ledger), and only then returns
   ``c^{d_i} mod n²`` for each product ciphertext, signed.
6. Anyone holding all partials runs :func:`combine`: ``Π c^{d_i} = c^d = 1 + m·n mod n²``, so
   ``m = (x − 1)/n``; the slot sums are unpacked and the offsets removed.

Who must not collude
--------------------
Decryption is n-of-n: all custodians together can decrypt any ciphertext, including a single
firm's contribution, so the custodians (e.g. the association and the national database) must be
independent organisations, and none of them should be the aggregator's operator. The aggregator
together with any strict subset of custodians learns nothing beyond the public key. A custodian
refuses to decrypt fewer than ``min_participants`` distinct roster members (floor
:data:`MIN_PARTICIPANTS_FLOOR`) and more than one set per round, which blocks the
"decrypt one firm" and "difference of two subsets" attacks by a dishonest aggregator. What the
protocol cannot stop: the aggregator colluding with ``min_participants − 1`` roster members (or
admitting sybils to the roster) learns the remaining firm's value from the sum; the roster is
the defence there. There are no range proofs: a malicious member can spoil the aggregate with
out-of-range values (detected by :func:`unpack` when the sum leaves its slot range, not
attributed), though it learns nothing from doing so. Partial decryptions carry no
zero-knowledge proof of correctness; a wrong partial is detected at :func:`combine` (the result
is not ``≡ 1 mod n`` or leaves the slot range) but not attributed to a custodian.

Exception tree::

    ProtocolError (protocols.errors)
    └── PaillierError
        ├── LayoutError           values, participants or key size outside the packing layout
        ├── MalformedMessage      a wire message lacks a field or holds a wrong type
        ├── ContributionRejected  the aggregator refuses a contribution (signature, round, replay...)
        ├── CustodianRefused      a custodian refuses to release a partial decryption
        └── CombineFailed         partials are incomplete, inconsistent, or decode out of range
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from math import lcm
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from phe import paillier as _phe
from phe import util as _phe_util

from keys.identity import public_key_b64, sign, verify
from protocols.errors import InvalidSignature, ProtocolError

if TYPE_CHECKING:
    from protocols.spec import RoundSpec

__all__ = [
    "MIN_KEY_BITS",
    "MIN_PARTICIPANTS_FLOOR",
    "PROTOCOL",
    "SAFETY_MARGIN_BITS",
    "AggregateCiphertext",
    "CombineFailed",
    "ContributionRejected",
    "CustodianRefused",
    "KeyShare",
    "LayoutError",
    "MalformedMessage",
    "PackingLayout",
    "PaillierError",
    "PartialDecryption",
    "RoundAccumulator",
    "SignedContribution",
    "SplitPublicKey",
    "aggregate",
    "combine",
    "custodian_partial_decrypt",
    "deal_exponent_shares",
    "encrypt_contribution",
    "encrypt_vector",
    "generate_split_key",
    "gmpy2_active",
    "make_layout",
    "pack",
    "sign_contribution",
    "spec_layout",
    "unpack",
    "verify_contribution",
]

PROTOCOL = "paillier"
MIN_KEY_BITS = 1024
"""Smallest modulus :func:`generate_split_key` accepts (tests); production ceremonies use ≥ 2048."""
SAFETY_MARGIN_BITS = 64
"""Bits of ``n`` left unused above the top slot of every packed plaintext."""
MIN_PARTICIPANTS_FLOOR = 3
"""A custodian never decrypts fewer contributions: with two, each firm learns the other's value."""
SHARE_STATISTICAL_BITS = 128

_HEX = re.compile(r"[0-9a-f]+")
_DOMAIN_CONTRIBUTION = b"pcf-dataspace/paillier/contribution/v1"
_DOMAIN_CONTRIBUTION_SIG = b"pcf-dataspace/paillier/contribution-signature/v1"
_DOMAIN_PARTIAL = b"pcf-dataspace/paillier/partial-decryption/v1"
_DOMAIN_KEY_ID = b"pcf-dataspace/paillier/public-key/v1"
_DOMAIN_SET = b"pcf-dataspace/paillier/contribution-set/v1"
_DOMAIN_PRODUCT = b"pcf-dataspace/paillier/product/v1"


# --------------------------------------------------------------------------- errors


class PaillierError(ProtocolError):
    """Base class of every error raised by the ``paillier`` protocol."""


class LayoutError(PaillierError, ValueError):
    """Values, participant count or key size do not fit the packing layout."""


class MalformedMessage(PaillierError, ValueError):
    """A wire message lacks a field or holds a value of the wrong type."""


class ContributionRejected(PaillierError):
    """The aggregator refuses a contribution; the message says which and why."""


class CustodianRefused(PaillierError):
    """A custodian refuses to release a partial decryption; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CombineFailed(PaillierError):
    """Partial decryptions are incomplete, inconsistent, or decode outside the slot ranges."""


# --------------------------------------------------------------------------- small helpers


def gmpy2_active() -> bool:
    """Whether phe's modular arithmetic runs on gmpy2 (``phe.util.HAVE_GMP``).

    Returns
    -------
    bool
        ``True`` when gmpy2 was importable when phe loaded; without it every operation is
        several times slower but still correct.
    """
    return bool(_phe_util.HAVE_GMP)


def _powmod(base: int, exponent: int, modulus: int) -> int:
    # phe.util.powmod hands big operands (and negative exponents) to gmpy2 when present.
    return int(_phe_util.powmod(base, exponent, modulus))


def _mulmod(a: int, b: int, modulus: int) -> int:
    return int(_phe_util.mulmod(a, b, modulus))


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes, so concatenations are unambiguous."""
    return len(data).to_bytes(4, "big") + data


def _hex(value: int) -> str:
    return format(value, "x")  # only non-negative ints (ciphertexts, partials, n) travel


def _unhex(value: Any, where: str) -> int:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise MalformedMessage(f"{where}: expected a lowercase hexadecimal string, got {str(value)[:40]!r}")
    return int(value, 16)


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise MalformedMessage(f"{where}: expected a JSON object, got {type(data).__name__}")
    if name not in data:
        raise MalformedMessage(f"{where}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedMessage(f"{where}.{name}: expected {kind}, got {value!r}"[:300])
    return value


def _verify(public_b64: str, data: bytes, signature_b64: str) -> bool:
    try:
        verify(public_b64, data, signature_b64)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- keys


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
        """Fixed width of a ciphertext in canonical encodings."""
        return (self.nsquare.bit_length() + 7) // 8

    @cached_property
    def paillier(self) -> _phe.PaillierPublicKey:
        """The phe public key, for encryption."""
        return _phe.PaillierPublicKey(self.n)

    @cached_property
    def key_id(self) -> str:
        """SHA-256 (hex) over ``n`` and the custodian keys; names this key in every message."""
        h = hashlib.sha256(_DOMAIN_KEY_ID)
        h.update(_lp(self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")))
        for c in self.custodians:
            h.update(_lp(c.encode("utf-8")))
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{protocol, n (hex), custodians, key_id}``."""
        return {"protocol": PROTOCOL, "n": _hex(self.n), "custodians": list(self.custodians), "key_id": self.key_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitPublicKey:
        """Parse :meth:`to_dict` output; refuses a ``key_id`` that does not match the content."""
        where = "public key"
        n = _unhex(_field(data, "n", str, where), f"{where}.n")
        custodians = _field(data, "custodians", list, where)
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


# --------------------------------------------------------------------------- packing


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
            bounds = tuple(int(b) for b in _field(data, "bounds", list, where))
            slot_bits = tuple(int(b) for b in _field(data, "slot_bits", list, where))
            groups = tuple(int(k) for k in _field(data, "slots_per_ciphertext", list, where))
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(
                f"{where}: bounds, slot_bits and slots_per_ciphertext must be integers ({exc})"
            ) from None
        return cls(
            bounds=bounds,
            max_participants=_field(data, "max_participants", int, where),
            key_bits=_field(data, "key_bits", int, where),
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


def encrypt_vector(public_key: SplitPublicKey, layout: PackingLayout, ints: Sequence[int]) -> list[int]:
    """Pack and Paillier-encrypt one vector of slot integers (fresh randomness per ciphertext).

    Returns
    -------
    list[int]
        One ciphertext (an integer in ``[1, n²)``) per plaintext of the layout.
    """
    if public_key.bits < layout.key_bits:
        raise LayoutError(
            f"layout was built for a {layout.key_bits}-bit key, the public key has {public_key.bits} bits"
        )
    pk = public_key.paillier
    return [int(pk.raw_encrypt(m)) for m in pack(ints, layout)]


# --------------------------------------------------------------------------- contributions


def _contribution_digest(public_key: SplitPublicKey, round_id: str, sender: str, ciphertexts: Sequence[int]) -> str:
    width = public_key.ciphertext_bytes
    h = hashlib.sha256(_DOMAIN_CONTRIBUTION)
    h.update(_lp(round_id.encode("utf-8")))
    h.update(_lp(public_key.key_id.encode("utf-8")))
    h.update(_lp(sender.encode("utf-8")))
    h.update(len(ciphertexts).to_bytes(4, "big"))
    for c in ciphertexts:
        h.update(c.to_bytes(width, "big"))
    return h.hexdigest()


def _contribution_signed_bytes(round_id: str, digest: str) -> bytes:
    return _DOMAIN_CONTRIBUTION_SIG + _lp(round_id.encode("utf-8")) + _lp(bytes.fromhex(digest))


@dataclass(frozen=True)
class SignedContribution:
    """One firm's encrypted, signed contribution to one round.

    ``digest`` is SHA-256 over the canonical bytes (round, key id, sender, fixed-width
    ciphertexts); ``signature`` is the sender's Ed25519 signature over ``(round_id, digest)``.
    """

    round_id: str
    key_id: str
    sender: str
    ciphertexts: tuple[int, ...]
    digest: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ciphertexts in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "key_id": self.key_id,
            "sender": self.sender,
            "ciphertexts": [_hex(c) for c in self.ciphertexts],
            "digest": self.digest,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedContribution:
        """Parse :meth:`to_dict` output (no verification; see :func:`verify_contribution`)."""
        where = "contribution"
        cts = _field(data, "ciphertexts", list, where)
        return cls(
            round_id=_field(data, "round_id", str, where),
            key_id=_field(data, "key_id", str, where),
            sender=_field(data, "sender", str, where),
            ciphertexts=tuple(_unhex(c, f"{where}.ciphertexts[{k}]") for k, c in enumerate(cts)),
            digest=_field(data, "digest", str, where),
            signature=_field(data, "signature", str, where),
        )


def sign_contribution(
    public_key: SplitPublicKey,
    round_id: str,
    ciphertexts: Sequence[int],
    identity_key: Ed25519PrivateKey,
) -> SignedContribution:
    """Wrap already-encrypted ciphertexts into a signed contribution.

    Returns
    -------
    SignedContribution
        With ``sender`` the ``keys.identity.public_key_b64`` of ``identity_key``.
    """
    sender = public_key_b64(identity_key)
    cts = tuple(int(c) for c in ciphertexts)
    digest = _contribution_digest(public_key, round_id, sender, cts)
    signature = sign(identity_key, _contribution_signed_bytes(round_id, digest))
    return SignedContribution(round_id, public_key.key_id, sender, cts, digest, signature)


def encrypt_contribution(
    public_key: SplitPublicKey,
    layout: PackingLayout,
    ints: Sequence[int],
    round_id: str,
    identity_key: Ed25519PrivateKey,
) -> SignedContribution:
    """Pack, encrypt and sign one firm's slot integers for ``round_id``.

    Parameters
    ----------
    public_key
        The round's split public key.
    layout
        The round's packing layout (from the round spec).
    ints
        The firm's fixed-point slot integers, ``|ints[i]| ≤ layout.bounds[i]``.
    round_id
        The round this contribution is bound to.
    identity_key
        The firm's Ed25519 identity key; its public key must be on the round's roster.

    Returns
    -------
    SignedContribution
    """
    return sign_contribution(public_key, round_id, encrypt_vector(public_key, layout, ints), identity_key)


def verify_contribution(
    contribution: SignedContribution,
    public_key: SplitPublicKey,
    roster: Collection[str],
    round_id: str,
    n_ciphertexts: int | None = None,
) -> None:
    """Check one contribution in isolation: round, key, roster, digest, signature, ciphertext range.

    Parameters
    ----------
    contribution
        The contribution to check.
    public_key
        The round's key.
    roster
        ``keys.identity`` public keys of the members admitted to the round.
    round_id
        The round being aggregated.
    n_ciphertexts
        Expected number of ciphertexts, if known (the layout's).

    Raises
    ------
    ContributionRejected
        With the first failed check named.
    """
    c = contribution
    who = f"contribution {c.digest[:16]} from {c.sender[:16]}"
    if c.round_id != round_id:
        raise ContributionRejected(f"{who}: round_id {c.round_id!r}, expected {round_id!r}")
    if c.key_id != public_key.key_id:
        raise ContributionRejected(f"{who}: key_id {c.key_id[:16]}, expected this round's key {public_key.key_id[:16]}")
    if c.sender not in roster:
        raise ContributionRejected(f"{who}: sender is not on the round's roster")
    if n_ciphertexts is not None and len(c.ciphertexts) != n_ciphertexts:
        raise ContributionRejected(f"{who}: {len(c.ciphertexts)} ciphertexts, the layout has {n_ciphertexts}")
    if not c.ciphertexts:
        raise ContributionRejected(f"{who}: no ciphertexts")
    for k, ct in enumerate(c.ciphertexts):
        if not 0 < ct < public_key.nsquare:
            raise ContributionRejected(f"{who}: ciphertexts[{k}] is outside [1, n²)")
    if _contribution_digest(public_key, c.round_id, c.sender, c.ciphertexts) != c.digest:
        raise ContributionRejected(f"{who}: digest does not match the ciphertexts")
    if not _verify(c.sender, _contribution_signed_bytes(c.round_id, c.digest), c.signature):
        raise ContributionRejected(f"{who}: bad signature")


def _contribution_set_digest(digests: Iterable[str]) -> str:
    h = hashlib.sha256(_DOMAIN_SET)
    for d in sorted(digests):
        h.update(_lp(d.encode("utf-8")))
    return h.hexdigest()


def _product_digest(public_key: SplitPublicKey, product: Sequence[int]) -> str:
    h = hashlib.sha256(_DOMAIN_PRODUCT)
    for c in product:
        h.update(c.to_bytes(public_key.ciphertext_bytes, "big"))
    return h.hexdigest()


@dataclass(frozen=True)
class AggregateCiphertext:
    """The homomorphic sum of a round: product ciphertexts and the contributions they cover."""

    round_id: str
    key_id: str
    contribution_digests: tuple[str, ...]
    ciphertexts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, ciphertexts in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "key_id": self.key_id,
            "contribution_digests": list(self.contribution_digests),
            "ciphertexts": [_hex(c) for c in self.ciphertexts],
        }


@dataclass
class RoundAccumulator:
    """The aggregator's state for one round: accepted contributions and their running product.

    Contributions arrive at any time within the window; each accepted one is multiplied in at
    once, so closing the round costs nothing. ``contributions`` is the log the custodians get.
    """

    round_id: str
    public_key: SplitPublicKey
    layout: PackingLayout
    roster: frozenset[str]
    closes_at: datetime | None = None
    contributions: list[SignedContribution] = field(default_factory=list)
    product: list[int] | None = None
    _senders: set[str] = field(default_factory=set, repr=False)
    _ciphertexts: set[int] = field(default_factory=set, repr=False)

    def accept(self, contribution: SignedContribution, *, now: datetime | None = None) -> None:
        """Verify ``contribution`` and multiply it into the running product.

        Parameters
        ----------
        contribution
            The incoming contribution.
        now
            Current time; required when the round has ``closes_at``.

        Raises
        ------
        ContributionRejected
            Window closed, round full, wrong round or key, not on the roster, bad digest or
            signature, a second contribution from the same member (replay), or ciphertexts copied
            from another member's contribution. A rejected contribution leaves the state unchanged.
        """
        if self.closes_at is not None:
            if now is None:
                raise ContributionRejected("round has a closing time; pass now=")
            if now >= self.closes_at:
                raise ContributionRejected(f"round {self.round_id!r} closed at {self.closes_at.isoformat()}")
        verify_contribution(contribution, self.public_key, self.roster, self.round_id, self.layout.n_ciphertexts)
        if contribution.sender in self._senders:
            raise ContributionRejected(
                f"sender {contribution.sender[:16]} already contributed to round {self.round_id!r} (replay)"
            )
        if len(self.contributions) >= self.layout.max_participants:
            raise ContributionRejected(
                f"round {self.round_id!r} is full: the layout has headroom for "
                f"{self.layout.max_participants} contributions"
            )
        if any(ct in self._ciphertexts for ct in contribution.ciphertexts):
            raise ContributionRejected(
                f"contribution {contribution.digest[:16]} copies a ciphertext already in the round"
            )
        n2 = self.public_key.nsquare
        if self.product is None:
            self.product = list(contribution.ciphertexts)
        else:
            self.product = [_mulmod(a, b, n2) for a, b in zip(self.product, contribution.ciphertexts, strict=True)]
        self.contributions.append(contribution)
        self._senders.add(contribution.sender)
        self._ciphertexts.update(contribution.ciphertexts)

    def result(self) -> AggregateCiphertext:
        """The aggregate so far (raises ``ContributionRejected`` if nothing was accepted)."""
        if self.product is None:
            raise ContributionRejected(f"round {self.round_id!r}: no contribution accepted")
        return AggregateCiphertext(
            self.round_id,
            self.public_key.key_id,
            tuple(c.digest for c in self.contributions),
            tuple(self.product),
        )


def aggregate(
    contributions: Iterable[SignedContribution],
    *,
    public_key: SplitPublicKey,
    layout: PackingLayout,
    roster: Collection[str],
    round_id: str,
) -> AggregateCiphertext:
    """Verify and homomorphically sum contributions (all-or-nothing; see :class:`RoundAccumulator`).

    Raises
    ------
    ContributionRejected
        On the first contribution that fails a check.
    """
    acc = RoundAccumulator(round_id, public_key, layout, frozenset(roster))
    for c in contributions:
        acc.accept(c)
    return acc.result()


# --------------------------------------------------------------------------- custodians


@dataclass(frozen=True)
class PartialDecryption:
    """Custodian ``custodian_index``'s ``c^{d_i} mod n²`` for each product ciphertext, signed."""

    round_id: str
    key_id: str
    custodian_index: int
    contribution_digests: tuple[str, ...]
    product_digest: str
    partials: tuple[int, ...]
    signature: str

    @property
    def set_digest(self) -> str:
        """SHA-256 over the sorted contribution digests (what the custodian's ledger records)."""
        return _contribution_set_digest(self.contribution_digests)

    def signed_bytes(self) -> bytes:
        """Canonical bytes covered by ``signature``."""
        parts = [
            _DOMAIN_PARTIAL,
            _lp(self.round_id.encode("utf-8")),
            _lp(self.key_id.encode("utf-8")),
            self.custodian_index.to_bytes(4, "big"),
            _lp(self.set_digest.encode("utf-8")),
            _lp(self.product_digest.encode("utf-8")),
            len(self.partials).to_bytes(4, "big"),
        ]
        parts.extend(_lp(p.to_bytes((p.bit_length() + 7) // 8, "big")) for p in self.partials)
        return b"".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, partials in hex."""
        return {
            "protocol": PROTOCOL,
            "round_id": self.round_id,
            "key_id": self.key_id,
            "custodian_index": self.custodian_index,
            "contribution_digests": list(self.contribution_digests),
            "product_digest": self.product_digest,
            "partials": [_hex(p) for p in self.partials],
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartialDecryption:
        """Parse :meth:`to_dict` output (verification happens in :func:`combine`)."""
        where = "partial decryption"
        digests = _field(data, "contribution_digests", list, where)
        if not all(isinstance(d, str) for d in digests):
            raise MalformedMessage(f"{where}.contribution_digests: expected a list of hex strings")
        partials = _field(data, "partials", list, where)
        return cls(
            round_id=_field(data, "round_id", str, where),
            key_id=_field(data, "key_id", str, where),
            custodian_index=_field(data, "custodian_index", int, where),
            contribution_digests=tuple(digests),
            product_digest=_field(data, "product_digest", str, where),
            partials=tuple(_unhex(p, f"{where}.partials[{k}]") for k, p in enumerate(partials)),
            signature=_field(data, "signature", str, where),
        )


def custodian_partial_decrypt(
    share: KeyShare,
    public_key: SplitPublicKey,
    contributions: Sequence[SignedContribution],
    roster: Collection[str],
    min_participants: int,
    round_id: str,
    *,
    ledger: MutableMapping[str, str],
) -> PartialDecryption:
    """Release this custodian's partial decryption of a round, if and only if it is safe.

    The custodian never decrypts a ciphertext it is handed: it verifies every logged
    contribution, recomputes their product itself, and decrypts that.

    Parameters
    ----------
    share
        This custodian's key share.
    public_key
        The custodian's own trusted copy of the public key.
    contributions
        The logged, signed contributions of the round.
    roster
        The custodian's own trusted copy of the round's member keys (``keys.identity.public_key_b64``); never
        take it from the aggregator's request.
    min_participants
        Fewest distinct members whose sum may be revealed; at least :data:`MIN_PARTICIPANTS_FLOOR`.
    round_id
        The round being decrypted.
    ledger
        ``round_id → set digest`` of rounds this custodian already decrypted; MUST be persisted by
        the caller. A repeat of the same set is answered again, a different set is refused; on
        success the entry is recorded here before the partial is returned.

    Returns
    -------
    PartialDecryption
        Signed with the custodian's key.

    Raises
    ------
    CustodianRefused
        Fewer than ``min_participants`` contributions, a bad signature or digest, a sender not on
        the roster, a duplicated sender or ciphertext, a contribution for another round or key,
        inconsistent ciphertext counts, or a round already decrypted with another set.
    """
    if share.key_id != public_key.key_id:
        raise CustodianRefused(f"share belongs to key {share.key_id[:16]}, request uses key {public_key.key_id[:16]}")
    if not 0 <= share.index < len(public_key.custodians):
        raise CustodianRefused(f"share index {share.index} is not a custodian of this key")
    if min_participants < MIN_PARTICIPANTS_FLOOR:
        raise CustodianRefused(f"min_participants {min_participants} is below the floor of {MIN_PARTICIPANTS_FLOOR}")
    if len(contributions) < min_participants:
        raise CustodianRefused(
            f"round {round_id!r}: {len(contributions)} contribution(s), "
            f"at least {min_participants} distinct members required"
        )
    n_ct = len(contributions[0].ciphertexts)
    senders: set[str] = set()
    digests: set[str] = set()
    seen_ct: set[int] = set()
    for c in contributions:
        try:
            verify_contribution(c, public_key, roster, round_id, n_ct)
        except ContributionRejected as exc:
            raise CustodianRefused(str(exc)) from None
        if c.sender in senders:
            raise CustodianRefused(f"round {round_id!r}: sender {c.sender[:16]} appears more than once")
        if c.digest in digests:
            raise CustodianRefused(f"round {round_id!r}: contribution {c.digest[:16]} appears more than once")
        if any(ct in seen_ct for ct in c.ciphertexts):
            raise CustodianRefused(
                f"round {round_id!r}: contribution {c.digest[:16]} copies another member's ciphertext"
            )
        senders.add(c.sender)
        digests.add(c.digest)
        seen_ct.update(c.ciphertexts)
    set_digest = _contribution_set_digest(digests)
    previous = ledger.get(round_id)
    if previous is not None and previous != set_digest:
        raise CustodianRefused(
            f"round {round_id!r} was already decrypted for another set of contributions; "
            "a second set would reveal their difference"
        )
    n2 = public_key.nsquare
    product = list(contributions[0].ciphertexts)
    for c in contributions[1:]:
        product = [_mulmod(a, b, n2) for a, b in zip(product, c.ciphertexts, strict=True)]
    try:
        partials = tuple(_powmod(ct, share.exponent, n2) for ct in product)
    except ZeroDivisionError:  # a negative share needs ct invertible mod n²
        raise CustodianRefused(f"round {round_id!r}: a product ciphertext is not invertible mod n²") from None
    unsigned = PartialDecryption(
        round_id=round_id,
        key_id=public_key.key_id,
        custodian_index=share.index,
        contribution_digests=tuple(sorted(digests)),
        product_digest=_product_digest(public_key, product),
        partials=partials,
        signature="",
    )
    ledger[round_id] = set_digest
    return replace(unsigned, signature=sign(share.signing_key, unsigned.signed_bytes()))


def combine(
    partials: Sequence[PartialDecryption],
    public_key: SplitPublicKey,
    layout: PackingLayout,
    n_participants: int,
) -> list[int]:
    """Multiply every custodian's partials and decode the slot sums.

    Parameters
    ----------
    partials
        One partial decryption from each custodian of ``public_key`` (n-of-n).
    public_key
        The round's key (its custodian list verifies the signatures).
    layout
        The round's layout.
    n_participants
        Number of contributions summed; must equal the number the custodians decrypted.

    Returns
    -------
    list[int]
        The exact per-slot sums of the contributions.

    Raises
    ------
    CombineFailed
        A custodian missing or repeated, a bad signature, partials over different rounds,
        contribution sets or products, or a result that is not a valid plaintext.
    """
    k = len(public_key.custodians)
    indices = sorted(p.custodian_index for p in partials)
    if indices != list(range(k)):
        raise CombineFailed(f"expected one partial from each of the {k} custodians, got indices {indices}")
    first = partials[0]
    for p in partials:
        if not _verify(public_key.custodians[p.custodian_index], p.signed_bytes(), p.signature):
            raise CombineFailed(f"partial of custodian {p.custodian_index}: bad signature")
        if (p.round_id, p.key_id, p.set_digest, p.product_digest) != (
            first.round_id,
            first.key_id,
            first.set_digest,
            first.product_digest,
        ):
            raise CombineFailed(
                f"partial of custodian {p.custodian_index} covers another round, key, contribution set or product"
            )
        if len(p.partials) != layout.n_ciphertexts:
            raise CombineFailed(
                f"partial of custodian {p.custodian_index}: {len(p.partials)} values, layout has {layout.n_ciphertexts}"
            )
    if first.key_id != public_key.key_id:
        raise CombineFailed(f"partials are for key {first.key_id[:16]}, not {public_key.key_id[:16]}")
    if len(first.contribution_digests) != n_participants:
        raise CombineFailed(
            f"custodians decrypted {len(first.contribution_digests)} contributions, expected {n_participants}"
        )
    n, n2 = public_key.n, public_key.nsquare
    plaintexts: list[int] = []
    for j in range(layout.n_ciphertexts):
        x = 1
        for p in partials:
            x = _mulmod(x, p.partials[j], n2)
        if (x - 1) % n:
            raise CombineFailed(f"ciphertext {j}: combined partials are not 1 mod n; a partial is wrong")
        plaintexts.append((x - 1) // n)
    return unpack(plaintexts, layout, n_participants)


def spec_layout(spec: RoundSpec) -> PackingLayout:
    """The packing layout of a ``paillier`` round: one slot per vector position, bounded by its ``bound_int``.

    Nodes and the aggregator both derive it this way from the signed spec.
    """
    from protocols.spec import vector_layout

    return make_layout([s.bound_int for s in vector_layout(spec)], spec.max_participants, spec.paillier.key_bits)
