"""A custodian's files: its sealed share (0600), the public key, and the ledger of rounds it decrypted.

Beside each share the custodian keeps a ledger (``<share>.ledger.json``, also 0600) of the rounds it
decrypted, so a dishonest aggregator cannot obtain two different subsets of one round; the ledger is
read, updated and written back under an exclusive lock (``<ledger>.lock``). The share-file format
itself is ``protocols.paillier.shares``.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from custodian.errors import CustodianKeyError
from keys.files import write_private, write_public
from protocols.paillier import (
    KeyShare,
    KeyShareError,
    MalformedMessage,
    ShareUnlockFailed,
    SplitPublicKey,
    open_share,
    seal_share,
    share_header,
)

__all__ = [
    "PUBLIC_KEY_FILE",
    "ledger_path",
    "load_public_key",
    "load_share",
    "locked_ledger",
    "read_ledger",
    "read_share_header",
    "save_public_key",
    "save_share",
]

PUBLIC_KEY_FILE = "paillier_public_key.json"


def save_share(
    share: KeyShare,
    path: str | os.PathLike[str],
    password: str,
    *,
    public_key: SplitPublicKey,
    overwrite: bool = False,
) -> Path:
    """Seal a custodian's share under ``password`` and write it with mode 0600.

    Parameters
    ----------
    share
        The custodian's key share.
    path
        Target file; its directory must exist.
    password
        At least ``protocols.paillier.MIN_PASSWORD_LENGTH`` characters.
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
    if target.exists() and not overwrite:
        raise CustodianKeyError(f"{target}: already exists; a key file is never overwritten silently")
    try:
        data = seal_share(share, public_key, password, where=str(target))
    except KeyShareError as exc:
        raise CustodianKeyError(str(exc)) from None
    return write_private(target, data, overwrite=overwrite)


def _read_private(source: Path) -> bytes:
    try:
        raw = source.read_bytes()
        mode = stat.S_IMODE(source.stat().st_mode)
    except OSError as exc:
        raise CustodianKeyError(f"{source}: cannot read the share file: {exc.strerror}") from exc
    if os.name == "posix" and mode & 0o077:
        raise CustodianKeyError(f"{source}: share file has mode {mode:04o}; accepted: 0600, run 'chmod 600 {source}'")
    return raw


def load_share(path: str | os.PathLike[str], password: str) -> tuple[KeyShare, SplitPublicKey]:
    """Read and unseal a share written by :func:`save_share`.

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
    raw = _read_private(source)
    try:
        return open_share(raw, password, where=str(source))
    except ShareUnlockFailed:
        raise
    except KeyShareError as exc:
        raise CustodianKeyError(str(exc)) from None


def read_share_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The clear part of a share file (index, public key as :class:`SplitPublicKey`, KDF); no password."""
    source = Path(path)
    try:
        return share_header(source.read_bytes(), where=str(source))
    except OSError as exc:
        raise CustodianKeyError(f"{source}: cannot read: {exc.strerror}") from exc
    except KeyShareError as exc:
        raise CustodianKeyError(str(exc)) from None


def save_public_key(path: str | os.PathLike[str], public_key: SplitPublicKey, *, overwrite: bool = False) -> Path:
    """Write the public key JSON (mode 0644) that the aggregator and members are given."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise CustodianKeyError(f"{target}: already exists; run the ceremony in an empty directory")
    return write_public(target, (json.dumps(public_key.to_dict(), indent=2) + "\n").encode("utf-8"), overwrite=overwrite)


def load_public_key(path: str | os.PathLike[str]) -> SplitPublicKey:
    """Read the public key JSON written by :func:`save_public_key`."""
    source = Path(path)
    try:
        return SplitPublicKey.from_dict(json.loads(source.read_text(encoding="utf-8")))
    except OSError as exc:
        raise CustodianKeyError(f"{source}: cannot read the public key: {exc.strerror}") from exc
    except (ValueError, MalformedMessage) as exc:
        raise CustodianKeyError(f"{source}: not a Paillier public key file ({exc})") from None


def ledger_path(share_path: str | os.PathLike[str]) -> Path:
    """Where the custodian's decryption ledger for ``share_path`` lives."""
    p = Path(share_path)
    return p.with_name(p.name + ".ledger.json")


def read_ledger(path: Path) -> dict[str, str]:
    """``round_id → contribution-set digest`` of the rounds decrypted so far (empty when no ledger yet)."""
    try:
        ledger = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        raise CustodianKeyError(f"{path}: ledger is not JSON; refusing to decrypt without a readable ledger") from None
    if not isinstance(ledger, dict) or not all(isinstance(v, str) for v in ledger.values()):
        raise CustodianKeyError(f"{path}: ledger is not an object of round id -> set digest")
    return ledger


@contextmanager
def locked_ledger(path: Path) -> Iterator[dict[str, str]]:
    """Hold an exclusive lock on the ledger, yield it, and write it back atomically if it changed."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        ledger = read_ledger(path)
        before = dict(ledger)
        yield ledger
        if ledger != before:
            write_private(path, json.dumps(ledger, indent=2, sort_keys=True).encode("utf-8"), overwrite=True)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
