"""Console output of every ``pcf`` command group: JSON on stdout, errors on stderr, rich tables.

One way to do each thing: a command with ``--json`` writes one JSON document to stdout with
:func:`print_json`; an error is :func:`fail` (``{"error": ...}`` on stdout with ``--json``, a red
line on stderr without) and exits with the command group's code; people get :func:`table` or
:func:`kv_table`, printed with ``out.print``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["JsonOption", "err", "fail", "kv_table", "out", "print_json", "table"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print results as JSON.")]
"""The ``--json`` flag every command that reports takes."""

out = Console()
"""What a person reads on stdout."""
err = Console(stderr=True)
"""Errors and progress, on stderr."""


def print_json(data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON (names in zh stay readable) and a newline to stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int, as_json: bool = False) -> typer.Exit:
    """Report ``message`` and return the ``typer.Exit`` to raise: ``raise fail(...)``."""
    if as_json:
        print_json({"error": message})
    else:
        err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A table of ``rows`` (``None`` blank, lists joined with commas); print it with ``out.print``."""
    result = Table(title=title)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(_cell(value) for value in row))
    return result


def kv_table(title: str, rows: Mapping[str, Any]) -> Table:
    """A two-column field / value table; print it with ``out.print``."""
    result = Table(title=title, show_header=False)
    result.add_column("field", style="bold")
    result.add_column("value", overflow="fold")
    for key, value in rows.items():
        result.add_row(key, _cell(value))
    return result
