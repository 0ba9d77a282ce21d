"""Cryptographic building blocks of secure aggregation: Shamir sharing, PRG, X25519 + HKDF, AEAD, Ed25519."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DOMAIN",
    "FIELD_PRIME",
    "KEY_BYTES",
    "NONCE_BYTES",
    "SECRET_BYTES",
    "SHARE_BYTES",
    "DeterministicRandom",
    "RandBytes",
    "VerificationFailed",
    "aead_open",
    "aead_seal",
    "decode_share",
    "derive_key",
    "ed25519_sign",
    "ed25519_verify",
    "encode_fields",
    "encode_share",
    "evaluate_polynomial",
    "keyed_hash",
    "load_x25519_private",
    "prg_uint64",
    "random_field_element",
    "reconstruct_secret",
    "shares_from_polynomial",
    "split_secret",
    "x25519_keypair",
    "x25519_public_from_private",
    "x25519_shared_secret",
]

DOMAIN = b"pcf-dataspace/secagg/v1"
"""Domain-separation prefix of every key derivation, signature and AAD in this protocol."""

FIELD_PRIME = 2**256 + 297
"""Smallest prime above 2**256: every 32-byte secret is a field element without reduction."""

SECRET_BYTES = 32
KEY_BYTES = 32
NONCE_BYTES = 12
_Y_BYTES = 33  # ceil(257 / 8): a field element
SHARE_BYTES = 4 + _Y_BYTES
"""Encoded share: x coordinate as big-endian uint32, then y as 33-byte big-endian."""

RandBytes = Callable[[int], bytes]
"""Source of randomness: ``n -> n random bytes``; ``os.urandom`` outside tests."""


class VerificationFailed(Exception):
    """A signature, AEAD tag, key agreement or share set did not verify.

    Deliberately opaque: it never says which cryptographic check failed or why.
    """


def encode_fields(*parts: bytes | str | int) -> bytes:
    """Encode values injectively (length-prefixed) for use as HKDF info, AAD or signed data.

    Parameters
    ----------
    *parts : bytes | str | int
        Byte strings, UTF-8 strings, or non-negative integers below 2**64.

    Returns
    -------
    bytes
        ``len(part) || part`` for each part, with a 4-byte big-endian length;
        integers are 8-byte big-endian.
    """
    out = bytearray()
    for part in parts:
        if isinstance(part, bool):
            raise TypeError(f"encode_fields: bool is not accepted, got {part!r}")
        if isinstance(part, int):
            if not 0 <= part < 2**64:
                raise ValueError(f"encode_fields: integer {part} is outside [0, 2**64)")
            raw = part.to_bytes(8, "big")
        elif isinstance(part, str):
            raw = part.encode("utf-8")
        else:
            raw = bytes(part)
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


# --------------------------------------------------------------------------- randomness


class DeterministicRandom:
    """Deterministic byte stream (AES-256-CTR keyed by SHA-256 of a seed).

    For known-answer tests only: production code passes ``os.urandom``.
    """

    def __init__(self, seed: bytes | str) -> None:
        raw = seed.encode("utf-8") if isinstance(seed, str) else seed
        key = hashlib.sha256(DOMAIN + b"/test-drbg" + raw).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def __call__(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the stream."""
        return self._enc.update(bytes(n))


# --------------------------------------------------------------------------- KDF + PRG


def derive_key(ikm: bytes, label: str, *context: bytes | str | int) -> bytes:
    """Derive a 32-byte key with HKDF-SHA256.

    Parameters
    ----------
    ikm : bytes
        Input key material (an X25519 shared secret or a 32-byte seed).
    label : str
        Purpose of the key (domain separation between uses of the same secret).
    *context : bytes | str | int
        Binding context, e.g. round id and node ids.

    Returns
    -------
    bytes
        32-byte key.
    """
    info = encode_fields(DOMAIN, label, *context)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(ikm)


def prg_uint64(key: bytes, length: int) -> npt.NDArray[np.uint64]:
    """Expand a key into ``length`` uniformly random uint64 words (AES-256-CTR keystream).

    Parameters
    ----------
    key : bytes
        32-byte key; each key MUST be used for one expansion only (derive it per use).
    length : int
        Number of 64-bit words.

    Returns
    -------
    numpy.ndarray
        uint64 array; words are little-endian reads of the keystream.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"prg_uint64: key must be {KEY_BYTES} bytes, got {len(key)}")
    if length < 0:
        raise ValueError(f"prg_uint64: length must be >= 0, got {length}")
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    stream = enc.update(bytes(8 * length)) + enc.finalize()
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=False)


# --------------------------------------------------------------------------- X25519


def x25519_keypair(randbytes: RandBytes = os.urandom) -> tuple[bytes, bytes]:
    """Generate an X25519 key pair.

    Returns
    -------
    tuple[bytes, bytes]
        ``(private_raw, public_raw)``, 32 bytes each.
    """
    private = X25519PrivateKey.from_private_bytes(randbytes(32))
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def load_x25519_private(private_raw: bytes) -> X25519PrivateKey:
    """Load a raw X25519 private key once, for the many exchanges a node makes with it in one stage.

    Loading costs as much as an exchange (it clamps and derives the public point), so callers keep
    the object for a stage rather than pass raw bytes to every :func:`x25519_shared_secret`.
    """
    return X25519PrivateKey.from_private_bytes(private_raw)


def x25519_public_from_private(private_raw: bytes) -> bytes:
    """Return the raw public key of a raw X25519 private key."""
    return X25519PrivateKey.from_private_bytes(private_raw).public_key().public_bytes_raw()


def x25519_shared_secret(private: bytes | X25519PrivateKey, peer_public_raw: bytes) -> bytes:
    """X25519 key agreement, with a raw private key or one loaded by :func:`load_x25519_private`.

    Raises
    ------
    VerificationFailed
        If the peer key is malformed or of low order.
    """
    try:
        if isinstance(private, bytes):
            private = X25519PrivateKey.from_private_bytes(private)
        peer = X25519PublicKey.from_public_bytes(peer_public_raw)
        return private.exchange(peer)
    except ValueError as err:
        raise VerificationFailed("key agreement failed") from err


# --------------------------------------------------------------------------- AEAD


def aead_seal(key: bytes, plaintext: bytes, aad: bytes, randbytes: RandBytes = os.urandom) -> bytes:
    """Encrypt with AES-256-GCM under a random 96-bit nonce; returns ``nonce || ciphertext``."""
    nonce = randbytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt ``nonce || ciphertext`` from :func:`aead_seal`.

    Raises
    ------
    VerificationFailed
        If the tag does not verify (wrong key, tampered data, or different AAD).
    """
    if len(blob) < NONCE_BYTES + 16:
        raise VerificationFailed("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as err:
        raise VerificationFailed("ciphertext does not verify") from err


# --------------------------------------------------------------------------- Ed25519


def ed25519_verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    """Verify an Ed25519 signature.

    Raises
    ------
    VerificationFailed
        If the signature does not verify.
    """
    try:
        public_key.verify(signature, data)
    except InvalidSignature as err:
        raise VerificationFailed("signature does not verify") from err


def ed25519_sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Sign with Ed25519 (deterministic)."""
    return private_key.sign(data)


# --------------------------------------------------------------------------- Shamir


def random_field_element(randbytes: RandBytes = os.urandom) -> int:
    """Uniform element of GF(FIELD_PRIME) by rejection sampling of 257-bit values."""
    while True:
        value = int.from_bytes(randbytes(_Y_BYTES), "big") & ((1 << 257) - 1)
        if value < FIELD_PRIME:
            return value


def evaluate_polynomial(coefficients: Sequence[int], x: int) -> int:
    """Evaluate ``sum(c_k x^k)`` mod FIELD_PRIME (Horner); ``coefficients[0]`` is the secret."""
    acc = 0
    for coeff in reversed(coefficients):
        acc = (acc * x + coeff) % FIELD_PRIME
    return acc


def shares_from_polynomial(coefficients: Sequence[int], xs: Sequence[int]) -> dict[int, int]:
    """Evaluate a sharing polynomial at the given non-zero x coordinates.

    Returns
    -------
    dict[int, int]
        x -> y.
    """
    for x in xs:
        if not 0 < x < FIELD_PRIME:
            raise ValueError(f"shares_from_polynomial: x coordinate {x} must be in [1, p)")
    if len(set(xs)) != len(xs):
        raise ValueError(f"shares_from_polynomial: x coordinates repeat: {sorted(xs)}")
    return {x: evaluate_polynomial(coefficients, x) for x in xs}


def split_secret(secret: bytes, threshold: int, xs: Sequence[int], randbytes: RandBytes = os.urandom) -> dict[int, int]:
    """Shamir-share a 32-byte secret: any ``threshold`` shares reconstruct it, fewer reveal nothing.

    Parameters
    ----------
    secret : bytes
        32 bytes.
    threshold : int
        Number of shares needed to reconstruct (polynomial degree + 1); 1 <= threshold <= len(xs).
    xs : Sequence[int]
        Distinct non-zero x coordinates, one per shareholder.
    randbytes : RandBytes
        Randomness for the polynomial coefficients.

    Returns
    -------
    dict[int, int]
        x -> y.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"split_secret: secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"split_secret: threshold {threshold} must be in [1, {len(xs)}] (number of shareholders)")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [random_field_element(randbytes) for _ in range(threshold - 1)]
    return shares_from_polynomial(coefficients, xs)


@lru_cache(maxsize=1024)
def _lagrange_basis(xs: tuple[int, ...], x0: int) -> tuple[int, ...]:
    """Lagrange coefficients at ``x0`` for the nodes ``xs``: public, and the same for every secret of a round.

    A server reconstructs one seed per survivor from the same holders' x coordinates, so the
    basis (with its modular inversions) is computed once per holder set, not once per secret.
    """
    coefficients = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (x0 - xj) % FIELD_PRIME
                den = den * (xi - xj) % FIELD_PRIME
        coefficients.append(num * pow(den, -1, FIELD_PRIME) % FIELD_PRIME)
    return tuple(coefficients)


def _lagrange_at(points: Sequence[tuple[int, int]], x0: int) -> int:
    basis = _lagrange_basis(tuple(x for x, _ in points), x0)
    return sum(y * c for (_, y), c in zip(points, basis, strict=True)) % FIELD_PRIME


def reconstruct_secret(shares: Mapping[int, int], threshold: int) -> bytes:
    """Reconstruct a 32-byte secret from at least ``threshold`` shares.

    The first ``threshold`` shares (by x) define the polynomial; every further share
    MUST lie on it, so a corrupted share is detected when more than ``threshold`` are given.

    Raises
    ------
    ValueError
        If fewer than ``threshold`` shares are given.
    VerificationFailed
        If the shares are inconsistent or do not encode a 32-byte secret.
    """
    if len(shares) < threshold:
        raise ValueError(f"reconstruct_secret: {len(shares)} shares given, {threshold} needed")
    points = sorted(shares.items())
    base, extra = points[:threshold], points[threshold:]
    for x, y in extra:
        if _lagrange_at(base, x) != y:
            raise VerificationFailed("shares are inconsistent")
    secret = _lagrange_at(base, 0)
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise VerificationFailed("shares are inconsistent")
    return secret.to_bytes(SECRET_BYTES, "big")


def encode_share(x: int, y: int) -> bytes:
    """Encode a share as ``x`` (uint32 big-endian) || ``y`` (33 bytes big-endian)."""
    if not 0 < x < 2**32 or not 0 <= y < FIELD_PRIME:
        raise ValueError(f"encode_share: share ({x}, {y}) is out of range")
    return x.to_bytes(4, "big") + y.to_bytes(_Y_BYTES, "big")


def decode_share(blob: bytes) -> tuple[int, int]:
    """Decode :func:`encode_share`; raises ValueError on a malformed share."""
    if len(blob) != SHARE_BYTES:
        raise ValueError(f"decode_share: share must be {SHARE_BYTES} bytes, got {len(blob)}")
    x, y = int.from_bytes(blob[:4], "big"), int.from_bytes(blob[4:], "big")
    if x == 0 or y >= FIELD_PRIME:
        raise ValueError("decode_share: share is out of range")
    return x, y


def keyed_hash(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (used to derive the public neighbourhood permutation)."""
    return hmac.new(key, data, hashlib.sha256).digest()
