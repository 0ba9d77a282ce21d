"""The node's schema migrations (Alembic, shipped in the package) and the code that runs them.

Revisions live in ``versions/``; ``0001`` is the schema release 0.1 created with ``create_all``.
A database made by release 0.1 has no version table: :func:`upgrade` recognises it by its tables,
stamps it ``0001`` and upgrades it from there. The revision is kept in the table
``alembic_version_node``, so an aggregator database (``alembic_version_aggregator``) is refused
instead of being given the node's tables.

Opening the store upgrades (:func:`prepare`): a SQLite file always, since it belongs to one
deployment and the upgrade is one transaction under the database's write lock; a PostgreSQL
database too unless ``PCF_NODE_DB_AUTO_UPGRADE`` is false, for deployments where schema changes are a
step of their own (``pcf node db upgrade``); such a database that is behind is then refused.

Alembic is configured in code (:func:`alembic_config`); no ``alembic.ini`` is needed. A new
revision: ``alembic.command.revision(alembic_config(conn), message=..., autogenerate=True)`` with a
connection to a database at the head (it compares with ``node.store.node_metadata``), then edit it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import cast

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

VERSION_TABLE = "alembic_version_node"
FOREIGN_VERSION_TABLE = "alembic_version_aggregator"
RELEASE_0_1_TABLES = frozenset(
    {"dataset_version", "exchange", "import_record", "invitation", "consent", "outbox", "node_setting"}
)
"""The node's tables as release 0.1 created them (revision ``0001``)."""
FOREIGN_0_1_TABLES = frozenset(
    {"member", "round", "contribution", "partial_decryption", "aggregate", "factor", "translog_entry",
     "delivery", "seen_request"}
)
"""The aggregator's tables of release 0.1: in a node database only by mistake (see revision ``0002``)."""
_LOCK_KEY = 727101
"""PostgreSQL advisory lock held while migrating, so two processes starting at once migrate once."""
_HERE = Path(__file__).resolve().parent


class SchemaError(Exception):
    """The database cannot be used or upgraded by this code; the message says what to do."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the node's migrations, built in code (no ``alembic.ini``)."""
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
            raise SchemaError(f"{_describe(engine)} is an aggregator database (it has {FOREIGN_VERSION_TABLE})")
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
        the aggregator, or cannot be upgraded.
    """
    with engine.connect() as conn:
        rev = _revision(conn)
    if rev == head():
        return []
    if not auto_upgrade:
        raise SchemaError(
            f"the node database {_describe(engine)} is at revision {rev or 'none (empty or release 0.1)'}, this "
            f"code needs {head()}; run `pcf node db upgrade` (or set PCF_NODE_DB_AUTO_UPGRADE=true)"
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
                f"{_describe(engine)} is an aggregator database (it has {FOREIGN_VERSION_TABLE}); "
                "give the node a database of its own"
            )
        rev = _revision(conn)
        if rev is not None and rev not in _known_revisions():
            raise SchemaError(
                f"the node database {_describe(engine)} is at revision {rev!r}, which this code does not know "
                f"(its newest is {head()}): it was upgraded by a newer release; run that release"
            )
        if rev is None and tables & RELEASE_0_1_TABLES:
            missing = RELEASE_0_1_TABLES - tables
            if missing:
                raise SchemaError(
                    f"{_describe(engine)} has some of the node's release 0.1 tables but not {sorted(missing)}; "
                    "it was not made by release 0.1 and cannot be upgraded"
                )
            command.stamp(cfg, "0001")
            notes.append("a release 0.1 database (no version table): stamped revision 0001")
        elif rev is None and not tables & RELEASE_0_1_TABLES and tables & FOREIGN_0_1_TABLES:
            raise SchemaError(
                f"{_describe(engine)} holds the aggregator's tables and none of the node's; "
                "give the node a database of its own"
            )
        before = _revision(conn)
        try:
            command.upgrade(cfg, revision)
        except CommandError as exc:
            raise SchemaError(f"cannot upgrade the node database {_describe(engine)}: {exc}") from None
        after = _revision(conn)
        if after != before:
            notes.append(f"upgraded from {before or 'an empty database'} to {after}")
        for note in notes:
            log.info("%s: %s", _describe(engine), note)
        return notes


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
