"""The node's schema migrations (Alembic, shipped in the package), run by :mod:`common.migrations`.

Revisions live in ``versions/``; ``0001`` is the schema release 0.1 created with ``create_all``, and
``0002`` drops the aggregator's tables that 0.1 left in node databases. The revision is kept in
``alembic_version_node``; opening the store upgrades (``PCF_NODE_DB_AUTO_UPGRADE`` decides for
PostgreSQL); ``pcf node db upgrade`` does it by hand. The module-level names are this role's
:class:`~common.migrations.RoleSchema` methods.
"""

from __future__ import annotations

from pathlib import Path

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
    {"dataset_version", "exchange", "import_record", "invitation", "consent", "outbox", "node_setting"}
)
"""The node's tables as release 0.1 created them (revision ``0001``)."""
FOREIGN_0_1_TABLES = frozenset(
    {"member", "round", "contribution", "partial_decryption", "aggregate", "factor", "translog_entry",
     "delivery", "seen_request"}
)
"""The aggregator's tables of release 0.1: in a node database only by mistake (see revision ``0002``)."""

SCHEMA = RoleSchema(
    role="node",
    script_location=Path(__file__).resolve().parent,
    release_0_1_tables=RELEASE_0_1_TABLES,
    foreign_0_1_tables=FOREIGN_0_1_TABLES,
    lock_key=727101,
    upgrade_command="pcf node db upgrade",
    auto_upgrade_variable="PCF_NODE_DB_AUTO_UPGRADE",
)
VERSION_TABLE = SCHEMA.version_table
alembic_config = SCHEMA.alembic_config
head = SCHEMA.head
current = SCHEMA.current
prepare = SCHEMA.prepare
upgrade = SCHEMA.upgrade
