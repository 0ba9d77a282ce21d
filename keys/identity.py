"""Ed25519 identities of firms and of the association: generate, store (PEM, mode 0600), sign, verify.

Encodings: public keys and signatures travel as base64url of the raw bytes (32 and 64 bytes)
without padding, as in JWK (RFC 8037). Readers are strict: only the canonical text is accepted
(no ``=`` padding, no standard-alphabet ``+`` ``/``, no whitespace, no non-zero trailing bits), so
one byte string has exactly one spelling and a cache keyed on it cannot be bypassed by re-spelling.
A fingerprint is the first 16 hex characters of SHA-256 over the raw 32 public-key bytes.

Every verification failure raises :class:`keys.errors.InvalidSignature` (re-exported here),
whatever the cause: a malformed key, a malformed signature or a wrong signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from keys.errors import IdentityError, InvalidSignature
from keys.files import write_private

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "IdentityError",
    "InvalidSignature",
    "b64url_decode",
    "b64url_encode",
    "fingerprint",
    "generate_identity",
    "load_private_key",
    "load_public_key_b64",
    "public_key_b64",
    "public_key_bytes",
    "save_private_key",
    "sign",
    "signature_bytes",
    "verify",
]

_PUBLIC_LEN = 32
_SIGNATURE_LEN = 64
_B64URL_TEXT = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(raw: bytes) -> str:
    """Base64url of ``raw`` without ``=`` padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; raise ``ValueError`` on anything else.

    Canonical means: the alphabet ``A-Z a-z 0-9 - _`` only, no padding, no whitespace, and the
    text equals :func:`b64url_encode` of the decoded bytes (which refuses non-zero trailing bits
    as well). Decode, re-encode, compare.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a base64url string, got {type(text).__name__}")
    if not _B64URL_TEXT.fullmatch(text):
        raise ValueError(
            f"{text[:60]!r} is not canonical base64url; accepted: A-Z a-z 0-9 - _ without '=' padding or whitespace"
        )
    try:
        raw = base64.b64decode((text + "=" * (-len(text) % 4)).encode("ascii"), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{text[:60]!r} is not base64url: {exc}") from exc
    if b64url_encode(raw) != text:
        raise ValueError(f"{text[:60]!r} is not the canonical base64url of its bytes (non-zero trailing bits)")
    return raw


def generate_identity() -> Ed25519PrivateKey:
    """A new Ed25519 private key from the operating system's randomness."""
    return Ed25519PrivateKey.generate()


def save_private_key(
    key: Ed25519PrivateKey,
    path: str | os.PathLike[str],
    password: bytes | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``key`` as PKCS#8 PEM readable by its owner only (mode 0600).

    Parameters
    ----------
    key
        The private key.
    path
        Target file. Its directory must exist.
    password
        When given, the PEM is encrypted with the best scheme ``cryptography`` offers.
    overwrite
        Replace an existing file. Off by default: overwriting an identity loses it for good.

    Returns
    -------
    Path
        The path written.

    Notes
    -----
    The file is written to a temporary file created with mode 0600 in the same directory and
    renamed into place, so the key is never readable by others, not even briefly, and a crash
    leaves either the old file or the new one.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise IdentityError(f"{target}: a key file already exists; pass overwrite=True to replace it")
    if password is not None and not password:
        raise IdentityError(f"{target}: empty password; pass None for an unencrypted key")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_private(target, pem, overwrite=overwrite)
    return target


def load_private_key(
    path: str | os.PathLike[str],
    password: bytes | None = None,
    *,
    check_mode: bool = True,
) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by :func:`save_private_key`.

    Raises
    ------
    IdentityError
        The file is missing, readable by group or others (when ``check_mode``, on POSIX), not PEM,
        encrypted with another password, or not an Ed25519 key.
    """
    source = Path(path)
    try:
        data = source.read_bytes()
        mode = stat.S_IMODE(source.stat().st_mode)
    except OSError as exc:
        raise IdentityError(f"{source}: cannot read the key file: {exc.strerror}") from exc
    if check_mode and os.name == "posix" and mode & 0o077:
        raise IdentityError(
            f"{source}: key file has mode {mode:04o}; accepted: 0600 (owner only), run 'chmod 600 {source}'"
        )
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # password given for a plain key or missing for an encrypted one
        raise IdentityError(f"{source}: {exc}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"{source}: not a readable PEM private key, or wrong password") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{source}: holds a {type(key).__name__}; accepted: an Ed25519 private key")
    return key


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of the public key of ``key`` (a private or a public key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key of ``key`` as unpadded base64url of its raw 32 bytes (43 characters)."""
    return b64url_encode(public_key_bytes(key))


def load_public_key_b64(text: str) -> Ed25519PublicKey:
    """Parse a public key written by :func:`public_key_b64` (canonical text only, see :func:`b64url_decode`).

    Raises
    ------
    IdentityError
        Not base64url, or not 32 bytes.
    """
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise IdentityError(f"public key {text[:60]!r}: {exc}; accepted: base64url of 32 bytes") from exc
    if len(raw) != _PUBLIC_LEN:
        raise IdentityError(f"public key {text[:60]!r} decodes to {len(raw)} bytes; accepted: 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The Ed25519 signature of ``data`` as unpadded base64url (86 characters)."""
    return b64url_encode(key.sign(data))


def signature_bytes(signature_b64: str) -> bytes:
    """The raw 64 bytes of a signature in canonical base64url: what a replay cache keys on.

    Raises
    ------
    InvalidSignature
        Not canonical base64url (see :func:`b64url_decode`), or not 64 bytes.
    """
    try:
        raw = b64url_decode(signature_b64)
    except (ValueError, TypeError):
        raise InvalidSignature() from None
    if len(raw) != _SIGNATURE_LEN:
        raise InvalidSignature()
    return raw


def verify(public_b64: str, data: bytes, signature_b64: str) -> None:
    """Check that ``signature_b64`` is the signature of ``data`` by the key ``public_b64``.

    Raises
    ------
    InvalidSignature
        For every failure (malformed key, malformed signature, wrong signature), with the same
        message, so a caller cannot learn which part was wrong.
    """
    try:
        public = load_public_key_b64(public_b64)
        public.verify(signature_bytes(signature_b64), data)
    except (IdentityError, InvalidSignature, ValueError, TypeError, _CryptoInvalidSignature):
        raise InvalidSignature() from None  # no chained cause: the failure stays opaque


def fingerprint(public_b64: str) -> str:
    """First 16 hex characters of SHA-256 over the raw public key: a short name to show people.

    Raises
    ------
    IdentityError
        ``public_b64`` is not a base64url-encoded 32-byte key.
    """
    load_public_key_b64(public_b64)
    return hashlib.sha256(b64url_decode(public_b64)).hexdigest()[:16]
