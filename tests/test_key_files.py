"""The one key-file writer (``keys.files``): owner-only, atomic, never overwriting by accident."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keys.errors import KeyFileError
from keys.files import write_private, write_public


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_file_is_owner_only_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private(tmp_path / "secret.key", b"s3cret", overwrite=False)
    finally:
        os.umask(old)

    assert mode(path) == 0o600
    assert path.read_bytes() == b"s3cret"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_existing_file_is_kept_unless_overwrite_is_given(tmp_path: Path) -> None:
    path = write_private(tmp_path / "secret.key", b"first", overwrite=False)

    with pytest.raises(KeyFileError, match="already exists"):
        write_private(path, b"second", overwrite=False)
    kept = path.read_bytes()
    write_private(path, b"third", overwrite=True)

    assert kept == b"first"
    assert path.read_bytes() == b"third" and mode(path) == 0o600


def test_public_file_is_world_readable_and_replaces_a_private_one(tmp_path: Path) -> None:
    path = write_private(tmp_path / "ca.crt", b"old", overwrite=False)

    write_public(path, b"-----BEGIN CERTIFICATE-----", overwrite=True)

    assert mode(path) == 0o644


def test_a_missing_directory_fails_without_leaving_anything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_private(tmp_path / "absent" / "secret.key", b"x", overwrite=False)
    assert list(tmp_path.iterdir()) == []
