"""A custodian's key share sealed under its password: the share-file format, without the file.

A sealed share is JSON::

    {"format": "pcf-paillier-share-v2", "custodian_index": 0,
     "public_key": {...SplitPublicKey.to_dict()...},
     "kdf": {"name": "scrypt", "salt": "…", "n": 32768, "r": 8, "p": 1},
     "nonce": "…", "ciphertext": "…"}

The secret (exponent share and Ed25519 signing key) is AES-256-GCM encrypted under a key derived
from the password with scrypt; the clear header (format, index, public key, KDF parameters) is the
GCM associated data, as ``canonical.encode(KEY_SHARE, header)``, so editing it makes the share
unreadable. Writing, reading and locking the files is ``custodian.store``'s business.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocols.canonical import Kind, encode
from protocols.paillier.errors import KeyShareError, MalformedMessage, ShareUnlockFailed
from protocols.paillier.keys import KeyShare, SplitPublicKey

__all__ = ["MIN_PASSWORD_LENGTH", "SHARE_FORMAT", "open_share", "seal_share", "share_header"]

SHARE_FORMAT = "pcf-paillier-share-v2"
"""v2: the associated data is RFC 8785 canonical JSON (v1 used ``json.dumps(sort_keys=True)``)."""
MIN_PASSWORD_LENGTH = 12
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise KeyShareError(f"{where}: expected base64") from None


def _header(index: int, public_key: SplitPublicKey, kdf: dict[str, Any]) -> dict[str, Any]:
    return {"format": SHARE_FORMAT, "custodian_index": index, "public_key": public_key.to_dict(), "kdf": kdf}


def _derive(password: str, salt: bytes, kdf: dict[str, Any]) -> bytes:
    return Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(
        password.encode("utf-8")
    )


def seal_share(share: KeyShare, public_key: SplitPublicKey, password: str, *, where: str = "share") -> bytes:
    """Encrypt ``share`` under ``password``: the bytes of a share file.

    Parameters
    ----------
    share
        The custodian's key share.
    public_key
        The split public key the share belongs to (stored in clear, authenticated).
    password
        At least :data:`MIN_PASSWORD_LENGTH` characters.
    where
        Names the share (its file) in error messages.

    Raises
    ------
    KeyShareError
        The share is for another key, or the password is too short.
    """
    if share.key_id != public_key.key_id:
        raise KeyShareError(f"{where}: share is for key {share.key_id[:16]}, public key is {public_key.key_id[:16]}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise KeyShareError(
            f"{where}: password of {len(password)} characters; accepted: at least {MIN_PASSWORD_LENGTH}"
        )
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    kdf = {"name": "scrypt", "salt": _b64(salt), "n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P}
    header = _header(share.index, public_key, kdf)
    signing_raw = share.signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secret = json.dumps({"exponent": str(share.exponent), "signing_key": _b64(signing_raw)}).encode("utf-8")
    ciphertext = AESGCM(_derive(password, salt, kdf)).encrypt(nonce, secret, encode(Kind.KEY_SHARE, header))
    body = {**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    return json.dumps(body, indent=2).encode("utf-8")


def share_header(raw: bytes, *, where: str = "share") -> dict[str, Any]:
    """The clear header of a sealed share (format, index, public key, KDF); no password needed.

    Raises
    ------
    KeyShareError
        Not JSON, another format, or a header field missing or of the wrong type.
    """
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("format") != SHARE_FORMAT:
            found = body.get("format") if isinstance(body, dict) else type(body).__name__
            raise KeyShareError(f"{where}: format {found!r}; accepted: {SHARE_FORMAT!r}")
        index, kdf = body["custodian_index"], body["kdf"]
        public_key = SplitPublicKey.from_dict(body["public_key"])
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt" or not isinstance(index, int):
            raise KeyShareError(f"{where}: kdf {kdf!r} or custodian_index {index!r} not accepted"[:300])
    except (ValueError, KeyError, TypeError, AttributeError, MalformedMessage) as exc:
        raise KeyShareError(f"{where}: not a readable share ({exc})") from None
    return {**body, "public_key": public_key}


def open_share(raw: bytes, password: str, *, where: str = "share") -> tuple[KeyShare, SplitPublicKey]:
    """Decrypt a share sealed by :func:`seal_share`.

    Returns
    -------
    tuple[KeyShare, SplitPublicKey]
        The share and the public key stored with it.

    Raises
    ------
    KeyShareError
        Not a sealed share.
    ShareUnlockFailed
        Wrong password or an edited share (the two are not told apart).
    """
    body = share_header(raw, where=where)
    index, kdf, public_key = body["custodian_index"], body["kdf"], body["public_key"]
    salt, nonce = _unb64(kdf.get("salt"), f"{where}: kdf.salt"), _unb64(body.get("nonce"), f"{where}: nonce")
    ciphertext = _unb64(body.get("ciphertext"), f"{where}: ciphertext")
    aad = encode(Kind.KEY_SHARE, _header(index, public_key, kdf))
    try:
        secret = json.loads(AESGCM(_derive(password, salt, kdf)).decrypt(nonce, ciphertext, aad))
        exponent = int(secret["exponent"])
        signing_key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret["signing_key"]))
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise ShareUnlockFailed(f"{where}: wrong password or the share was edited") from None
    return KeyShare(index=index, key_id=public_key.key_id, exponent=exponent, signing_key=signing_key), public_key
