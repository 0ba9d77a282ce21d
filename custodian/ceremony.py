"""The key ceremony: a split Paillier key, its public key file and one sealed share per custodian."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from custodian.errors import CustodianKeyError
from custodian.store import PUBLIC_KEY_FILE, save_public_key, save_share
from protocols.paillier import MIN_PASSWORD_LENGTH, generate_split_key

__all__ = ["CEREMONY_MIN_KEY_BITS", "CeremonyOutput", "ceremony_files", "custodian_init"]

CEREMONY_MIN_KEY_BITS = 2048


@dataclass(frozen=True)
class CeremonyOutput:
    """Files written by :func:`custodian_init`."""

    public_key_path: Path
    share_paths: tuple[Path, ...]
    key_id: str


def ceremony_files(out_dir: str | os.PathLike[str], n_custodians: int) -> tuple[Path, tuple[Path, ...]]:
    """Where a ceremony writes: ``paillier_public_key.json`` and ``custodian-<i>.share``."""
    target = Path(out_dir)
    return target / PUBLIC_KEY_FILE, tuple(target / f"custodian-{i}.share" for i in range(n_custodians))


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
    if bits < CEREMONY_MIN_KEY_BITS:
        raise CustodianKeyError(f"bits: {bits}; accepted: at least {CEREMONY_MIN_KEY_BITS} for a real key")
    if len(passwords) != n_custodians:
        raise CustodianKeyError(f"passwords: {len(passwords)} given; expected one per custodian ({n_custodians})")
    for i, pw in enumerate(passwords):
        if len(pw) < MIN_PASSWORD_LENGTH:
            raise CustodianKeyError(f"passwords[{i}]: {len(pw)} characters; accepted: at least {MIN_PASSWORD_LENGTH}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    public_path, share_paths = ceremony_files(out_dir, n_custodians)
    for p in (public_path, *share_paths):
        if p.exists():
            raise CustodianKeyError(f"{p}: already exists; run the ceremony in an empty directory")
    public_key, shares = generate_split_key(n_custodians, bits)
    written: list[Path] = []
    try:
        for share, path, pw in zip(shares, share_paths, passwords, strict=True):
            written.append(save_share(share, path, pw, public_key=public_key))
        written.append(save_public_key(public_path, public_key))
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        del shares
    return CeremonyOutput(public_path, share_paths, public_key.key_id)
