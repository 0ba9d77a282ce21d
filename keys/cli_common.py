"""What the ``pcf keys`` and ``pcf custodian`` commands share: exit codes, refusals and password helpers.

Console output (``print_json``, ``fail``, ``kv_table``) is ``common.console``'s, re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from common.console import JsonOption, fail, kv_table, print_json
from common.console import err as err_console
from common.console import out as console

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_EXISTS",
    "EXIT_KEY_FILE",
    "EXIT_PASSWORD",
    "EXIT_REFUSED",
    "ForceOption",
    "JsonOption",
    "Refused",
    "console",
    "err_console",
    "fail",
    "file_mode",
    "kv_table",
    "password_from_env",
    "print_json",
    "refuse_existing",
]

# Exit codes of keys and custodians: 30-39 (see pcf/cli.py for the bands).
EXIT_EXISTS = 30
"""A file would be overwritten and ``--force`` was not given."""
EXIT_KEY_FILE = 31
"""A key, share or certificate file cannot be read, written or unlocked."""
EXIT_REFUSED = 32
"""The custodian refused to release a partial decryption."""
EXIT_BAD_INPUT = 33
"""A request, roster, host name or argument is malformed."""
EXIT_PASSWORD = 34
"""A ``--password-env`` variable is unset or empty."""

ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing files.")]


class Refused(Exception):
    """A command cannot go on; carries the message and the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def file_mode(path: Path) -> str:
    """The permission bits of ``path`` as four octal digits."""
    return f"{path.stat().st_mode & 0o777:04o}"


def password_from_env(var: str, *, hint: str = "") -> str:
    """The password in environment variable ``var``; ``hint`` says what length is accepted."""
    value = os.environ.get(var)
    if not value:
        raise Refused(
            f"--password-env {var}: the environment variable is {'empty' if value == '' else 'not set'}; "
            f"export {var}=...{f' ({hint})' if hint else ''}",
            EXIT_PASSWORD,
        )
    return value


def refuse_existing(paths: Sequence[Path], force: bool) -> None:
    """Refuse with :data:`EXIT_EXISTS` when any of ``paths`` exists and ``force`` is false."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise Refused(
            f"{', '.join(existing)}: already exist(s); a key file is never overwritten silently, pass --force to replace",
            EXIT_EXISTS,
        )
