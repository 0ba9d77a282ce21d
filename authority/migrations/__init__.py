"""The membership authority's schema migrations (Alembic, shipped in the package), run by :mod:`common.migrations`.

Revisions live in ``versions/``; ``0001`` creates the certificate and revocation-list tables. The
revision is kept in ``alembic_version_authority``, so a node's or the aggregator's database is
refused. Opening the store upgrades (``PCF_AUTHORITY_DB_AUTO_UPGRADE`` decides for PostgreSQL).
The module-level names are this role's :class:`~common.migrations.RoleSchema` methods.
"""

from __future__ import annotations

from pathlib import Path

from common.migrations import RoleSchema, SchemaError

__all__ = ["SCHEMA", "VERSION_TABLE", "SchemaError", "alembic_config", "current", "head", "prepare", "upgrade"]

SCHEMA = RoleSchema(
    role="authority",
    script_location=Path(__file__).resolve().parent,
    release_0_1_tables=frozenset(),
    foreign_0_1_tables=frozenset(
        {"member", "round", "contribution", "translog_entry", "dataset_version", "invitation", "outbox"}
    ),
    lock_key=727103,
    upgrade_command="pcf authority db upgrade",
    auto_upgrade_variable="PCF_AUTHORITY_DB_AUTO_UPGRADE",
)
VERSION_TABLE = SCHEMA.version_table
alembic_config = SCHEMA.alembic_config
head = SCHEMA.head
current = SCHEMA.current
prepare = SCHEMA.prepare
upgrade = SCHEMA.upgrade
