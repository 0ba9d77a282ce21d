"""The ``db current`` / ``db upgrade`` commands every role with a database has, on its :class:`RoleSchema`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from common.console import fail, out, print_json
from common.migrations import RoleSchema, SchemaError, describe

__all__ = ["schema_command"]


def schema_command(schema: RoleSchema, engine: Engine, *, upgrade: bool, as_json: bool, exit_code: int) -> None:
    """Print the database's revision against the head; with ``upgrade``, upgrade it first.

    Errors (another role's database, a newer revision, an unreachable server) are one named line and
    ``exit_code``, never a traceback. The engine is disposed of.
    """
    try:
        before = schema.current(engine)
        notes = schema.upgrade(engine) if upgrade else []
        after = schema.current(engine) if upgrade else before
    except SchemaError as exc:
        raise fail(str(exc), exit_code, as_json) from None
    except SQLAlchemyError as exc:
        raise fail(f"cannot open the {schema.role} database {describe(engine)}: {type(exc).__name__}: {exc}",
                   exit_code, as_json) from None
    finally:
        engine.dispose()
    head = schema.head()
    data: dict[str, Any] = {"database": describe(engine), "revision": after, "head": head, "up_to_date": after == head}
    if upgrade:
        data |= {"from": before, "notes": notes}
    if as_json:
        print_json(data)
    elif upgrade:
        out.print(f"{data['database']}: {before or 'empty'} -> {after}", highlight=False, soft_wrap=True)
        for note in notes:
            style = "yellow" if note.startswith("kept") else "default"
            out.print(f"[{style}]{note}[/{style}]", highlight=False, soft_wrap=True)
    else:
        state = "up to date" if data["up_to_date"] else f"behind: run `{schema.upgrade_command}` to reach {head}"
        out.print(f"{data['database']}: revision {after or 'none (empty)'} ({state})", highlight=False, soft_wrap=True)
