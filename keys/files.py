"""The one writer of key files: atomic, owner-only (0600) unless told otherwise, never half-written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from keys.errors import KeyFileError

__all__ = ["PRIVATE_MODE", "PUBLIC_MODE", "write_private", "write_public"]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_private(path: str | os.PathLike[str], data: bytes, *, overwrite: bool, mode: int = PRIVATE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically, readable by its owner only.

    The bytes go to a temporary file created with ``O_EXCL`` and ``mode`` in the same directory,
    are flushed to disk (``fsync``) and renamed into place, so the file is never readable by
    others, not even briefly, and a crash leaves either the old file or the new one.

    Parameters
    ----------
    path
        Target file; its directory must exist.
    data
        The file's content.
    overwrite
        Replace an existing file. Callers pass it explicitly: losing a key file loses the key.
    mode
        Permission bits of the result (:data:`PRIVATE_MODE`; :func:`write_public` passes 0644).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    KeyFileError
        ``path`` exists and ``overwrite`` is false.
    OSError
        The directory is missing or not writable.
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise KeyFileError(f"{target}: already exists; a key file is never overwritten silently")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have cleared bits of a public mode
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_public(path: str | os.PathLike[str], data: bytes, *, overwrite: bool) -> Path:
    """:func:`write_private` with mode 0644: certificates, public keys, rosters."""
    return write_private(path, data, overwrite=overwrite, mode=PUBLIC_MODE)
