"""Custodian key shares of the ``paillier`` protocol: key ceremony, encrypted storage, partial decryption.

A share file is JSON readable by its owner only (mode 0600)::

    {"format": "pcf-paillier-share-v1", "custodian_index": 0,
     "public_key": {...SplitPublicKey.to_dict()...},
     "kdf": {"name": "scrypt", "salt": "…", "n": 32768, "r": 8, "p": 1},
     "nonce": "…", "ciphertext": "…"}

The secret (exponent share and Ed25519 signing key) is AES-256-GCM encrypted under a key derived
from the custodian's password with scrypt; the clear header (format, index, public key, KDF
parameters) is the GCM associated data, so editing it makes the file unreadable. Beside each share
the custodian keeps a ledger (``<share>.ledger.json``, also 0600) of the rounds it decrypted, so a
dishonest aggregator cannot obtain two different subsets of one round. Public key and roster are
taken from the share file and from the custodian's own configuration, never from the request.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocols.errors import ProtocolError
from protocols.paillier import (
    KeyShare,
    MalformedMessage,
    SignedContribution,
    SplitPublicKey,
    custodian_partial_decrypt,
    generate_split_key,
)

__all__ = [
    "CEREMONY_MIN_KEY_BITS",
    "MIN_PASSWORD_LENGTH",
    "PUBLIC_KEY_FILE",
    "CeremonyOutput",
    "CustodianKeyError",
    "ShareUnlockFailed",
    "custodian_decrypt",
    "custodian_init",
    "ledger_path",
    "load_public_key",
    "load_share",
    "save_share",
]

SHARE_FORMAT = "pcf-paillier-share-v1"
PUBLIC_KEY_FILE = "paillier_public_key.json"
CEREMONY_MIN_KEY_BITS = 2048
MIN_PASSWORD_LENGTH = 12
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class CustodianKeyError(ProtocolError):
    """A share or public-key file cannot be written or read, or a ceremony argument is refused."""


class ShareUnlockFailed(CustodianKeyError):
    """The share file does not open: wrong password or an edited file. Opaque on purpose."""


@dataclass(frozen=True)
class CeremonyOutput:
    """Files written by :func:`custodian_init`."""

    public_key_path: Path
    share_paths: tuple[Path, ...]
    key_id: str


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise CustodianKeyError(f"{where}: expected base64") from None


def _header(index: int, public_key: SplitPublicKey, kdf: dict[str, Any]) -> dict[str, Any]:
    return {"format": SHARE_FORMAT, "custodian_index": index, "public_key": public_key.to_dict(), "kdf": kdf}


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _derive(password: str, salt: bytes, kdf: dict[str, Any]) -> bytes:
    return Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(
        password.encode("utf-8")
    )


def _write_private(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` with mode 0600 via a temporary file renamed into place."""
    if path.exists() and not overwrite:
        raise CustodianKeyError(f"{path}: already exists; a key file is never overwritten silently")
    fd, tmp = tempfile.mkstemp(prefix=".share-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_share(
    share: KeyShare,
    path: str | os.PathLike[str],
    password: str,
    *,
    public_key: SplitPublicKey,
    overwrite: bool = False,
) -> Path:
    """Encrypt a custodian's share under ``password`` and write it with mode 0600.

    Parameters
    ----------
    share
        The custodian's key share.
    path
        Target file; its directory must exist.
    password
        At least :data:`MIN_PASSWORD_LENGTH` characters.
    public_key
        The split public key the share belongs to (stored in clear, authenticated).
    overwrite
        Replace an existing file (off: losing a share makes the key unusable for good).

    Returns
    -------
    Path
        The path written.
    """
    target = Path(path)
    if share.key_id != public_key.key_id:
        raise CustodianKeyError(
            f"{target}: share is for key {share.key_id[:16]}, public key is {public_key.key_id[:16]}"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CustodianKeyError(
            f"{target}: password of {len(password)} characters; accepted: at least {MIN_PASSWORD_LENGTH}"
        )
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    kdf = {"name": "scrypt", "salt": _b64(salt), "n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P}
    header = _header(share.index, public_key, kdf)
    signing_raw = share.signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secret = json.dumps({"exponent": str(share.exponent), "signing_key": _b64(signing_raw)}).encode("utf-8")
    ciphertext = AESGCM(_derive(password, salt, kdf)).encrypt(nonce, secret, _aad(header))
    body = {**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    _write_private(target, json.dumps(body, indent=2).encode("utf-8"), overwrite=overwrite)
    return target


def load_share(path: str | os.PathLike[str], password: str) -> tuple[KeyShare, SplitPublicKey]:
    """Read and decrypt a share written by :func:`save_share`.

    Returns
    -------
    tuple[KeyShare, SplitPublicKey]
        The share and the public key stored with it.

    Raises
    ------
    CustodianKeyError
        Missing file, readable by group or others, not a share file.
    ShareUnlockFailed
        Wrong password or edited file (the two are not told apart).
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
        mode = stat.S_IMODE(source.stat().st_mode)
    except OSError as exc:
        raise CustodianKeyError(f"{source}: cannot read the share file: {exc.strerror}") from exc
    if os.name == "posix" and mode & 0o077:
        raise CustodianKeyError(f"{source}: share file has mode {mode:04o}; accepted: 0600, run 'chmod 600 {source}'")
    try:
        body = json.loads(raw)
        if body.get("format") != SHARE_FORMAT:
            raise CustodianKeyError(f"{source}: format {body.get('format')!r}; accepted: {SHARE_FORMAT!r}")
        index, kdf = body["custodian_index"], body["kdf"]
        public_key = SplitPublicKey.from_dict(body["public_key"])
        if kdf.get("name") != "scrypt" or not isinstance(index, int):
            raise CustodianKeyError(f"{source}: kdf {kdf.get('name')!r} or custodian_index {index!r} not accepted")
        salt, nonce = _unb64(kdf["salt"], f"{source}: kdf.salt"), _unb64(body["nonce"], f"{source}: nonce")
        ciphertext = _unb64(body["ciphertext"], f"{source}: ciphertext")
    except (ValueError, KeyError, TypeError, AttributeError, MalformedMessage) as exc:
        raise CustodianKeyError(f"{source}: not a readable share file ({exc})") from None
    header = _header(index, public_key, kdf)
    try:
        secret = json.loads(AESGCM(_derive(password, salt, kdf)).decrypt(nonce, ciphertext, _aad(header)))
    except (InvalidTag, ValueError):
        raise ShareUnlockFailed(f"{source}: wrong password or the file was edited") from None
    share = KeyShare(
        index=index,
        key_id=public_key.key_id,
        exponent=int(secret["exponent"]),
        signing_key=Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret["signing_key"])),
    )
    return share, public_key


def load_public_key(path: str | os.PathLike[str]) -> SplitPublicKey:
    """Read the public key JSON written by :func:`custodian_init`."""
    source = Path(path)
    try:
        return SplitPublicKey.from_dict(json.loads(source.read_text(encoding="utf-8")))
    except OSError as exc:
        raise CustodianKeyError(f"{source}: cannot read the public key: {exc.strerror}") from exc
    except (ValueError, MalformedMessage) as exc:
        raise CustodianKeyError(f"{source}: not a Paillier public key file ({exc})") from None


def custodian_init(
    out_dir: str | os.PathLike[str],
    n_custodians: int,
    bits: int = CEREMONY_MIN_KEY_BITS,
    *,
    passwords: Sequence[str],
) -> CeremonyOutput:
    """Key ceremony: generate a split Paillier key and write the public key and one share per custodian.

    Run once, offline, in front of all custodians; each types their own password. ``p`` and ``q``
    never leave :func:`protocols.paillier.generate_split_key`. Afterwards each custodian takes
    their share file away and the ceremony directory and machine are wiped.

    Parameters
    ----------
    out_dir
        Directory to write into (created if missing); must not already hold a key.
    n_custodians
        Number of custodians, ≥ 2 (all are needed to decrypt).
    bits
        Modulus size, ≥ :data:`CEREMONY_MIN_KEY_BITS`.
    passwords
        One password per custodian, in custodian order.

    Returns
    -------
    CeremonyOutput
        ``paillier_public_key.json`` and ``custodian-<i>.share`` paths. Nothing is left behind
        if a write fails.
    """
    target = Path(out_dir)
    if bits < CEREMONY_MIN_KEY_BITS:
        raise CustodianKeyError(f"bits: {bits}; accepted: at least {CEREMONY_MIN_KEY_BITS} for a real key")
    if len(passwords) != n_custodians:
        raise CustodianKeyError(f"passwords: {len(passwords)} given; expected one per custodian ({n_custodians})")
    for i, pw in enumerate(passwords):
        if len(pw) < MIN_PASSWORD_LENGTH:
            raise CustodianKeyError(f"passwords[{i}]: {len(pw)} characters; accepted: at least {MIN_PASSWORD_LENGTH}")
    target.mkdir(parents=True, exist_ok=True)
    public_path = target / PUBLIC_KEY_FILE
    share_paths = tuple(target / f"custodian-{i}.share" for i in range(n_custodians))
    for p in (public_path, *share_paths):
        if p.exists():
            raise CustodianKeyError(f"{p}: already exists; run the ceremony in an empty directory")
    public_key, shares = generate_split_key(n_custodians, bits)
    written: list[Path] = []
    try:
        for share, path, pw in zip(shares, share_paths, passwords, strict=True):
            written.append(save_share(share, path, pw, public_key=public_key))
        public_path.write_text(json.dumps(public_key.to_dict(), indent=2) + "\n", encoding="utf-8")
        written.append(public_path)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        del shares
    return CeremonyOutput(public_path, share_paths, public_key.key_id)


def ledger_path(share_path: str | os.PathLike[str]) -> Path:
    """Where the custodian's decryption ledger for ``share_path`` lives."""
    p = Path(share_path)
    return p.with_name(p.name + ".ledger.json")


@contextmanager
def _locked_ledger(path: Path) -> Iterator[dict[str, str]]:
    """Hold an exclusive lock on the ledger, yield it, and write it back atomically if it changed."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            ledger: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError:
            raise CustodianKeyError(
                f"{path}: ledger is not JSON; refusing to decrypt without a readable ledger"
            ) from None
        before = dict(ledger)
        yield ledger
        if ledger != before:
            _write_private(path, json.dumps(ledger, indent=2, sort_keys=True).encode("utf-8"), overwrite=True)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def custodian_decrypt(
    share_path: str | os.PathLike[str],
    password: str,
    request_json: str,
    *,
    roster: Collection[str],
    min_participants: int,
) -> str:
    """Answer a decryption request with this custodian's signed partial decryption, or refuse.

    Parameters
    ----------
    share_path
        The custodian's share file.
    password
        Its password.
    request_json
        ``{"round_id": str, "contributions": [SignedContribution.to_dict(), …]}``; an optional
        ``"min_participants"`` may only raise the custodian's own minimum.
    roster
        The round's member public keys from the custodian's own configuration.
    min_participants
        The custodian's own minimum number of distinct contributors.

    Returns
    -------
    str
        ``PartialDecryption.to_dict()`` as JSON. The ledger entry is written before it is returned.

    Raises
    ------
    CustodianRefused
        See :func:`protocols.paillier.custodian_partial_decrypt`.
    MalformedMessage
        The request is not JSON or lacks a field.
    """
    try:
        request = json.loads(request_json)
    except ValueError as exc:
        raise MalformedMessage(f"decryption request: not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise MalformedMessage("decryption request: expected a JSON object")
    round_id = request.get("round_id")
    items = request.get("contributions")
    if not isinstance(round_id, str) or not isinstance(items, list):
        raise MalformedMessage("decryption request: expected fields round_id (string) and contributions (list)")
    requested_min = request.get("min_participants", min_participants)
    if not isinstance(requested_min, int) or isinstance(requested_min, bool):
        raise MalformedMessage(f"decryption request.min_participants: expected an integer, got {requested_min!r}")
    contributions = [SignedContribution.from_dict(c) for c in items]
    share, public_key = load_share(share_path, password)
    with _locked_ledger(ledger_path(share_path)) as ledger:
        partial = custodian_partial_decrypt(
            share,
            public_key,
            contributions,
            frozenset(roster),
            max(min_participants, requested_min),
            round_id,
            ledger=ledger,
        )
    return json.dumps(partial.to_dict())
