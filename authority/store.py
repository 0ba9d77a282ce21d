"""The authority's register: every certificate it issued, its revocations, and the revocation lists it signed.

SQLite by default (``sqlite:///path``), PostgreSQL when given (``postgresql://...``). The schema is
owned by the Alembic migrations in ``authority/migrations``; opening the store upgrades it.
Certificates are never deleted: a revocation marks the row and the next list names the serial.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Text, event
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, create_engine, func, select

from common.db import utc_timestamp

__all__ = [
    "AuthorityStore",
    "AuthorityTable",
    "CertificateRow",
    "RevocationListRow",
    "authority_metadata",
    "make_engine",
]


_ts = utc_timestamp


class AuthorityTable(SQLModel, registry=registry()):
    """Base of the authority's tables: their own registry and metadata, so its database holds only them."""


authority_metadata: MetaData = AuthorityTable.metadata


class CertificateRow(AuthorityTable, table=True):
    __tablename__ = "certificate"

    serial: str = Field(primary_key=True)
    uscc: str = Field(index=True)
    identity_public_key: str = Field(index=True)
    legal_name_zh: str
    legal_name_en: str
    issued_at: datetime = _ts()
    expires_at: datetime = _ts()
    document: str = Field(sa_column=Column(Text, nullable=False))
    """JSON of the signed ``MemberCertificate``, as handed to the firm."""
    revoked_at: datetime | None = _ts(nullable=True)
    revocation_reason: str | None = None


class RevocationListRow(AuthorityTable, table=True):
    __tablename__ = "revocation_list"

    number: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    issued_at: datetime = _ts()
    next_update: datetime = _ts()
    document: str = Field(sa_column=Column(Text, nullable=False))
    """JSON of the signed ``RevocationList``."""


def _engine_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """The SQLAlchemy engine of an authority database URL (a SQLite file's folder is created)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(_engine_url(url))
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class AuthorityStore:
    """The authority's database; its schema is brought to the head revision on opening."""

    def __init__(self, url: str, *, auto_upgrade: bool = True):
        from authority import migrations

        self.url = url
        self.engine = make_engine(url)
        try:
            self.notes = migrations.prepare(self.engine, auto_upgrade=auto_upgrade or url.startswith("sqlite"))
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # -- reads (each in its own session) ----------------------------------------------------------

    def certificate(self, serial: str) -> CertificateRow | None:
        with Session(self.engine) as s:
            return s.get(CertificateRow, serial)

    def certificates(self, uscc: str | None = None) -> list[CertificateRow]:
        with Session(self.engine) as s:
            q = select(CertificateRow).order_by(col(CertificateRow.issued_at), col(CertificateRow.serial))
            if uscc is not None:
                q = q.where(CertificateRow.uscc == uscc)
            return list(s.exec(q))

    def revoked_serials(self) -> list[str]:
        with Session(self.engine) as s:
            q = select(CertificateRow.serial).where(col(CertificateRow.revoked_at).is_not(None))
            return sorted(s.exec(q))

    def latest_revocation_list(self) -> RevocationListRow | None:
        with Session(self.engine) as s:
            return s.exec(select(RevocationListRow).order_by(col(RevocationListRow.number).desc())).first()

    def next_revocation_list_number(self, session: Session) -> int:
        top = session.exec(select(func.max(RevocationListRow.number))).one()
        return int(top or 0) + 1
