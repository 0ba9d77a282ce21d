"""Running one role's Alembic migrations: version table per role, release-0.1 adoption, locking.

Each role (node, aggregator, authority...) ships its revisions in its own ``migrations/versions``
and describes itself with one :class:`RoleSchema`; this module runs them the same way for all:

* the revision is kept in the role's own version table (``alembic_version_<role>``), so a database
  that belongs to another role is refused instead of being given this role's tables;
* a database made by release 0.1 has no version table: :meth:`RoleSchema.upgrade` recognises it by
  its tables, brings it to exactly revision ``0001`` (the role's ``adopt`` hook), stamps it and
  upgrades it from there;
* opening a store calls :meth:`RoleSchema.prepare`: a SQLite file always upgrades (it belongs to one
  deployment and the upgrade is one transaction under the database's write lock); a PostgreSQL
  database too unless the role's ``*_DB_AUTO_UPGRADE`` setting is false, and is then refused while
  it is behind;
* the whole upgrade is one transaction holding the database's migration lock, so two processes
  starting at once migrate once, and a failed upgrade leaves the database as it was.

Alembic is configured in code (:meth:`RoleSchema.alembic_config`); no ``alembic.ini`` is needed.
A new revision: ``alembic.command.revision(schema.alembic_config(conn), message=...,
autogenerate=True)`` with a connection to a database at the head, then edit it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text

__all__ = ["ROLE_VERSION_TABLES", "RoleSchema", "SchemaError", "describe", "drop_empty_foreign_tables", "run_env"]

log = logging.getLogger(__name__)

ROLE_VERSION_TABLES = {
    "node": "alembic_version_node",
    "aggregator": "alembic_version_aggregator",
    "authority": "alembic_version_authority",
}
"""Every role's version table: a database holding another role's is that role's database."""


class SchemaError(Exception):
    """The database cannot be used or upgraded by this code; the message says what to do."""


def describe(engine: Engine) -> str:
    """The database URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class RoleSchema:
    """One role's migrations and how its databases are recognised."""

    role: str
    """``node``, ``aggregator``, ...: a key of :data:`ROLE_VERSION_TABLES`."""
    script_location: Path
    """The role's ``migrations`` folder (``env.py``, ``versions/``)."""
    release_0_1_tables: frozenset[str]
    """The role's tables as release 0.1 created them (revision ``0001``); empty for newer roles."""
    foreign_0_1_tables: frozenset[str]
    """Another role's 0.1 tables, found in this role's databases only by mistake."""
    lock_key: int
    """PostgreSQL advisory lock held while migrating."""
    upgrade_command: str
    """What a person runs to upgrade, e.g. ``pcf node db upgrade``."""
    auto_upgrade_variable: str
    """The setting that lets start-up upgrade a PostgreSQL database, e.g. ``PCF_NODE_DB_AUTO_UPGRADE``."""
    adopt: Callable[[Connection, list[str]], None] | None = field(default=None, compare=False)
    """Brings a release 0.1 database to exactly revision ``0001`` before it is stamped."""

    @property
    def version_table(self) -> str:
        return ROLE_VERSION_TABLES[self.role]

    @property
    def foreign_version_tables(self) -> dict[str, str]:
        """Other roles' version tables -> their role."""
        return {table: role for role, table in ROLE_VERSION_TABLES.items() if role != self.role}

    def alembic_config(self, connection: Connection | None = None) -> Config:
        """Alembic's configuration for this role's migrations, built in code."""
        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location).replace("%", "%%"))
        cfg.attributes["version_table"] = self.version_table
        cfg.attributes["notes"] = []
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    @cached_property
    def _script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.alembic_config())

    def head(self) -> str:
        """The newest revision: the schema this code reads and writes."""
        rev = self._script.get_current_head()
        assert rev is not None
        return rev

    def _known_revisions(self) -> frozenset[str]:
        return frozenset(s.revision for s in self._script.walk_revisions())

    def _revision(self, conn: Connection) -> str | None:
        return MigrationContext.configure(conn, opts={"version_table": self.version_table}).get_current_revision()

    def _refuse_foreign(self, engine: Engine, tables: set[str], advice: str = "") -> None:
        for table, role in self.foreign_version_tables.items():
            if table in tables:
                raise SchemaError(f"{describe(engine)} is {_a(role)} {role} database (it has {table}){advice}")

    def current(self, engine: Engine) -> str | None:
        """The database's revision: ``None`` when empty, ``"release-0.1"`` when made by 0.1 and never upgraded.

        Raises
        ------
        SchemaError
            When it is another role's database.
        """
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            self._refuse_foreign(engine, tables)
            rev = self._revision(conn)
            if rev is None and tables & self.release_0_1_tables:
                return "release-0.1"
            return rev

    def prepare(self, engine: Engine, *, auto_upgrade: bool) -> list[str]:
        """Make sure the database is at :meth:`head`, upgrading it when ``auto_upgrade`` allows.

        Returns
        -------
        list of str
            Notes of the upgrade (empty when the database was already at the head).

        Raises
        ------
        SchemaError
            When the database is behind and ``auto_upgrade`` is false, is ahead of this code, belongs to
            another role, or cannot be upgraded.
        """
        with engine.connect() as conn:
            rev = self._revision(conn)
        if rev == self.head():
            return []
        if not auto_upgrade:
            raise SchemaError(
                f"the {self.role} database {describe(engine)} is at revision {rev or 'none (empty or release 0.1)'}, "
                f"this code needs {self.head()}; run `{self.upgrade_command}` "
                f"(or set {self.auto_upgrade_variable}=true)"
            )
        return self.upgrade(engine)

    def upgrade(self, engine: Engine, revision: str = "head") -> list[str]:
        """Upgrade the database to ``revision`` in one transaction, adopting a release 0.1 database first.

        Returns
        -------
        list of str
            What was done that a person should know (each also logged).

        Raises
        ------
        SchemaError
            As :meth:`prepare`.
        """
        from alembic.util import CommandError

        with _migration_connection(engine, self.lock_key) as conn:
            cfg = self.alembic_config(conn)
            notes: list[str] = cfg.attributes["notes"]
            tables = set(inspect(conn).get_table_names())
            self._refuse_foreign(engine, tables, f"; give the {self.role} a database of its own")
            rev = self._revision(conn)
            if rev is not None and rev not in self._known_revisions():
                raise SchemaError(
                    f"the {self.role} database {describe(engine)} is at revision {rev!r}, which this code does not "
                    f"know (its newest is {self.head()}): it was upgraded by a newer release; run that release"
                )
            if rev is None and tables & self.release_0_1_tables:
                missing = self.release_0_1_tables - tables
                if missing:
                    raise SchemaError(
                        f"{describe(engine)} has some of the {self.role}'s release 0.1 tables but not "
                        f"{sorted(missing)}; it was not made by release 0.1 and cannot be upgraded"
                    )
                if self.adopt is not None:
                    self.adopt(conn, notes)
                command.stamp(cfg, "0001")
                notes.append("a release 0.1 database (no version table): stamped revision 0001")
            elif rev is None and tables & self.foreign_0_1_tables:
                raise SchemaError(
                    f"{describe(engine)} holds another role's tables and none of the {self.role}'s; "
                    f"give the {self.role} a database of its own"
                )
            before = self._revision(conn)
            try:
                command.upgrade(cfg, revision)
            except CommandError as exc:
                raise SchemaError(f"cannot upgrade the {self.role} database {describe(engine)}: {exc}") from None
            after = self._revision(conn)
            if after != before:
                notes.append(f"upgraded from {before or 'an empty database'} to {after}")
            for note in notes:
                log.info("%s: %s", describe(engine), note)
            return notes


def run_env(target_metadata: MetaData) -> None:
    """The body of every role's ``migrations/env.py``: run on the connection :meth:`RoleSchema.upgrade` hands over."""
    from alembic import context

    config = context.config
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def drop_empty_foreign_tables(
    tables: Sequence[tuple[str, Sequence[str]]], *, owner: str, role: str
) -> None:
    """Inside a migration: drop another role's tables that release 0.1 left here, where they are empty.

    Release 0.1 declared both roles' tables on one global metadata, so a store could be given the
    other role's tables. ``tables`` lists them referencing tables first, each with the tables whose
    foreign keys point at it; one holding rows (or referenced by a kept one) is kept with a warning
    naming it, since deleting data is not a migration's call.
    """
    from alembic import context, op

    conn = op.get_bind()
    present = set(inspect(conn).get_table_names())
    notes: list[str] = context.config.attributes.setdefault("notes", [])
    kept: set[str] = set()
    for table, referenced_by in tables:
        if table not in present:
            continue
        rows = conn.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
        holders = kept.intersection(referenced_by)
        if rows == 0 and not holders:
            op.drop_table(table)
            continue
        kept.add(table)
        why = f"it holds {rows} row(s)" if rows else f"kept tables reference it ({', '.join(sorted(holders))})"
        note = (f"kept the {owner}'s table {table!r} found in this {role} database: {why}; "
                f"the {role} never reads it (move the rows to {_a(owner)} {owner}'s database, then drop it)")
        log.warning(note)
        notes.append(note)


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


@contextmanager
def _migration_connection(engine: Engine, lock_key: int) -> Iterator[Connection]:
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
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
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
