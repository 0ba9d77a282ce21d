"""The aggregator's schema migrations (Alembic, shipped in the package), run by :mod:`common.migrations`.

Revisions live in ``versions/``; ``0001`` is the schema release 0.1 created with ``create_all``.
The revision is kept in ``alembic_version_aggregator``; opening the store upgrades
(``PCF_AGG_DB_AUTO_UPGRADE`` decides for PostgreSQL); ``pcf agg db upgrade`` does it by hand. A 0.1
database that ``_add_missing_columns`` had patched (``member.flower_node_id`` added after the table,
without its unique constraint) is first brought to the exact schema of ``0001``
(:func:`_adopt_release_0_1`). The module-level names are this role's
:class:`~common.migrations.RoleSchema` methods.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from common.migrations import RoleSchema, SchemaError

__all__ = [
    "FOREIGN_0_1_TABLES",
    "RELEASE_0_1_TABLES",
    "SCHEMA",
    "VERSION_TABLE",
    "SchemaError",
    "alembic_config",
    "current",
    "head",
    "prepare",
    "upgrade",
]

RELEASE_0_1_TABLES = frozenset(
    {"member", "round", "contribution", "partial_decryption", "aggregate", "factor", "translog_entry",
     "delivery", "seen_request"}
)
"""The aggregator's tables as release 0.1 created them (revision ``0001``)."""
FOREIGN_0_1_TABLES = frozenset(
    {"dataset_version", "exchange", "import_record", "invitation", "consent", "outbox", "node_setting"}
)
"""The node's tables of release 0.1: in an aggregator database only by mistake (see revision ``0002``)."""


def _adopt_release_0_1(conn: Connection, notes: list[str]) -> None:
    """Bring a release 0.1 database to exactly revision ``0001``.

    Databases made before ``member.flower_node_id`` existed were patched by 0.1's
    ``_add_missing_columns``, which added the column but not its unique constraint.
    """
    from alembic.operations import Operations

    inspector = inspect(conn)
    ops = Operations(MigrationContext.configure(conn))
    if "flower_node_id" not in {c["name"] for c in inspector.get_columns("member")}:
        ops.add_column("member", sa.Column("flower_node_id", sa.String(), nullable=True))
        notes.append("release 0.1 database without member.flower_node_id: added it")
    unique = [list(u["column_names"]) for u in inspector.get_unique_constraints("member")]
    unique += [[str(c) for c in i["column_names"]] for i in inspector.get_indexes("member") if i["unique"]]
    if ["flower_node_id"] in unique:
        return
    dupes = conn.execute(text(
        "SELECT flower_node_id, COUNT(*) FROM member WHERE flower_node_id IS NOT NULL "
        "GROUP BY flower_node_id HAVING COUNT(*) > 1"
    )).all()
    if dupes:
        raise SchemaError(
            "cannot upgrade: members share a Flower node id ("
            + ", ".join(f"{d[0]} x{d[1]}" for d in dupes)
            + "); each member's SuperNode has its own node id: clear the wrong ones "
            "(UPDATE member SET flower_node_id = NULL WHERE id = ...) and upgrade again"
        )
    with ops.batch_alter_table("member", recreate="auto") as batch:
        batch.create_unique_constraint("member_flower_node_id_key", ["flower_node_id"])
    notes.append("release 0.1 database patched by _add_missing_columns: added the unique constraint "
                 "on member.flower_node_id")


SCHEMA = RoleSchema(
    role="aggregator",
    script_location=Path(__file__).resolve().parent,
    release_0_1_tables=RELEASE_0_1_TABLES,
    foreign_0_1_tables=FOREIGN_0_1_TABLES,
    lock_key=727102,
    upgrade_command="pcf agg db upgrade",
    auto_upgrade_variable="PCF_AGG_DB_AUTO_UPGRADE",
    adopt=_adopt_release_0_1,
)
VERSION_TABLE = SCHEMA.version_table
alembic_config = SCHEMA.alembic_config
head = SCHEMA.head
current = SCHEMA.current
prepare = SCHEMA.prepare
upgrade = SCHEMA.upgrade
