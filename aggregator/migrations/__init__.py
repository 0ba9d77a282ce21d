"""The aggregator's schema migrations (Alembic, shipped in the package) and the code that runs them.

Revisions live in ``versions/``; ``0001`` is the schema release 0.1 created with ``create_all``.
A database made by release 0.1 has no version table: :func:`upgrade` recognises it by its tables,
stamps it ``0001`` and upgrades it from there. The revision is kept in the table
``alembic_version_aggregator``, so a node database (``alembic_version_node``) is refused instead
of being given the aggregator's tables. A 0.1 database that ``_add_missing_columns`` had patched
(``member.flower_node_id`` added after the table, without its unique constraint) is first brought
to the exact schema of ``0001``.

Opening the store upgrades (:func:`prepare`): a SQLite file always, since it belongs to one
deployment and the upgrade is one transaction under the database's write lock; a PostgreSQL
database too unless ``PCF_AGG_DB_AUTO_UPGRADE`` is false, for deployments where schema changes are a
step of their own (``pcf agg db upgrade``); such a database that is behind is then refused.

Alembic is configured in code (:func:`alembic_config`); no ``alembic.ini`` is needed. A new
revision: ``alembic.command.revision(alembic_config(conn), message=..., autogenerate=True)`` with a
connection to a database at the head (it compares with ``aggregator.store.aggregator_metadata``), then edit it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

__all__ = [
    "FOREIGN_VERSION_TABLE",
    "RELEASE_0_1_TABLES",
    "VERSION_TABLE",
    "SchemaError",
    "alembic_config",
    "current",
    "head",
    "prepare",
    "upgrade",
]

log = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version_aggregator"
FOREIGN_VERSION_TABLE = "alembic_version_node"
RELEASE_0_1_TABLES = frozenset(
    {"member", "round", "contribution", "partial_decryption", "aggregate", "factor", "translog_entry",
     "delivery", "seen_request"}
)
"""The aggregator's tables as release 0.1 created them (revision ``0001``)."""
FOREIGN_0_1_TABLES = frozenset(
    {"dataset_version", "exchange", "import_record", "invitation", "consent", "outbox", "node_setting"}
)
"""The node's tables of release 0.1: in an aggregator database only by mistake (see revision ``0002``)."""
_LOCK_KEY = 727102
"""PostgreSQL advisory lock held while migrating, so two processes starting at once migrate once."""
_HERE = Path(__file__).resolve().parent


class SchemaError(Exception):
    """The database cannot be used or upgraded by this code; the message says what to do."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the aggregator's migrations, built in code (no ``alembic.ini``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE).replace("%", "%%"))
    cfg.attributes["version_table"] = VERSION_TABLE
    cfg.attributes["notes"] = []
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    """The newest revision: the schema this code reads and writes."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def current(engine: Engine) -> str | None:
    """The database's revision: ``None`` when empty, ``"release-0.1"`` when made by 0.1 and never upgraded.

    Raises
    ------
    SchemaError
        When it is the other role's database.
    """
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if FOREIGN_VERSION_TABLE in tables:
            raise SchemaError(f"{_describe(engine)} is a node database (it has {FOREIGN_VERSION_TABLE})")
        rev = _revision(conn)
        if rev is None and tables & RELEASE_0_1_TABLES:
            return "release-0.1"
        return rev


def prepare(engine: Engine, *, auto_upgrade: bool) -> list[str]:
    """Make sure the database is at :func:`head`, upgrading it when ``auto_upgrade`` allows.

    Returns
    -------
    list of str
        Notes of the upgrade (empty when the database was already at the head).

    Raises
    ------
    SchemaError
        When the database is behind and ``auto_upgrade`` is false, is ahead of this code, belongs to
        a node, or cannot be upgraded.
    """
    with engine.connect() as conn:
        rev = _revision(conn)
    if rev == head():
        return []
    if not auto_upgrade:
        raise SchemaError(
            f"the aggregator database {_describe(engine)} is at revision {rev or 'none (empty or release 0.1)'}, this "
            f"code needs {head()}; run `pcf agg db upgrade` (or set PCF_AGG_DB_AUTO_UPGRADE=true)"
        )
    return upgrade(engine)


def upgrade(engine: Engine, revision: str = "head") -> list[str]:
    """Upgrade the database to ``revision`` in one transaction, adopting a release 0.1 database first.

    Returns
    -------
    list of str
        What was done that a person should know (each also logged as a warning or info).

    Raises
    ------
    SchemaError
        As :func:`prepare`.
    """
    from alembic.util import CommandError

    with _migration_connection(engine) as conn:
        cfg = alembic_config(conn)
        notes: list[str] = cfg.attributes["notes"]
        tables = set(inspect(conn).get_table_names())
        if FOREIGN_VERSION_TABLE in tables:
            raise SchemaError(
                f"{_describe(engine)} is a node database (it has {FOREIGN_VERSION_TABLE}); "
                "give the aggregator a database of its own"
            )
        rev = _revision(conn)
        if rev is not None and rev not in _known_revisions():
            raise SchemaError(
                f"the aggregator database {_describe(engine)} is at revision {rev!r}, which this code does not know "
                f"(its newest is {head()}): it was upgraded by a newer release; run that release"
            )
        if rev is None and tables & RELEASE_0_1_TABLES:
            missing = RELEASE_0_1_TABLES - tables
            if missing:
                raise SchemaError(
                    f"{_describe(engine)} has some of the aggregator's release 0.1 tables but not {sorted(missing)}; "
                    "it was not made by release 0.1 and cannot be upgraded"
                )
            _adopt_release_0_1(conn, notes)
            command.stamp(cfg, "0001")
            notes.append("a release 0.1 database (no version table): stamped revision 0001")
        elif rev is None and not tables & RELEASE_0_1_TABLES and tables & FOREIGN_0_1_TABLES:
            raise SchemaError(
                f"{_describe(engine)} holds the node's tables and none of the aggregator's; "
                "give the aggregator a database of its own"
            )
        before = _revision(conn)
        try:
            command.upgrade(cfg, revision)
        except CommandError as exc:
            raise SchemaError(f"cannot upgrade the aggregator database {_describe(engine)}: {exc}") from None
        after = _revision(conn)
        if after != before:
            notes.append(f"upgraded from {before or 'an empty database'} to {after}")
        for note in notes:
            log.info("%s: %s", _describe(engine), note)
        return notes


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


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions())


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds the database's migration lock, with SQLite's foreign keys off.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock (a second process waits, then finds the work
    done); foreign keys are off because batch migrations copy and drop tables that others reference
    (``PRAGMA foreign_keys`` is ignored inside a transaction, so it is set before). PostgreSQL: an
    advisory lock held until the transaction ends. DDL is transactional on both: a failed upgrade
    leaves the database as it was.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                yield conn
            return
        raw = cast(sqlite3.Connection, conn.connection.dbapi_connection)
        saved = raw.isolation_level
        raw.isolation_level = None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            raw.execute("BEGIN IMMEDIATE")
            with conn.begin():  # bookkeeping only: the DBAPI commit() ends the transaction begun above
                yield conn
        finally:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raw.execute("PRAGMA foreign_keys=ON")
            raw.isolation_level = saved
