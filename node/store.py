"""The enterprise node's store: every version of every dataset, on SQLite or PostgreSQL.

Datasets are immutable versions: a row per (kind, uuid, version) holding the full dataset as
JSON plus the columns lists and searches need; process exchanges are also kept as rows so
they can be queried and diffed. Nothing is ever updated in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, UniqueConstraint, event
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from lca.model import KIND_TYPES, Bundle, Dataset, Process, bump_version, dataset_kind

__all__ = [
    "ConsentRow",
    "DatasetVersion",
    "ExchangeRow",
    "ImportRecord",
    "InvitationRow",
    "NodeStore",
    "NodeTable",
    "OutboxRow",
    "SettingRow",
    "VersionInfo",
    "default_db_url",
    "engine_url",
    "make_engine",
    "node_metadata",
    "version_key",
]


def _now() -> datetime:
    return datetime.now(UTC)


class NodeTable(SQLModel, registry=registry()):
    """Base of the node's tables: their own registry and metadata, so a node database holds only them.

    (Tables on SQLModel's global metadata would also bring in the aggregator's when both roles are
    imported in one process.) The schema is owned by the Alembic migrations in ``node/migrations``.
    """


node_metadata: MetaData = NodeTable.metadata
"""The node's tables, and only them."""


class DatasetVersion(NodeTable, table=True):
    __tablename__ = "dataset_version"
    __table_args__ = (UniqueConstraint("kind", "uuid", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    uuid: str = Field(index=True)
    version: str
    seq: int
    """1 for the first stored version of a UUID, then 2, 3, ..."""
    content_hash: str
    name_en: str = ""
    name_zh: str = ""
    location: str | None = None
    classification: str | None = None
    import_id: int | None = Field(default=None, foreign_key="import_record.id")
    created_at: datetime = Field(default_factory=_now)
    doc: str
    """The dataset as JSON (lca.model)."""


class ExchangeRow(NodeTable, table=True):
    __tablename__ = "exchange"

    id: int | None = Field(default=None, primary_key=True)
    dataset_version_id: int = Field(foreign_key="dataset_version.id", index=True)
    internal_id: str
    flow_uuid: str = Field(index=True)
    direction: str
    amount: float
    unit: str
    flow_property: str | None = None
    data_source: str | None = None
    is_reference: bool = False


class ImportRecord(NodeTable, table=True):
    __tablename__ = "import_record"

    id: int | None = Field(default=None, primary_key=True)
    source: str
    format: str
    created_at: datetime = Field(default_factory=_now)
    summary: str = "{}"
    diagnostics: str = "[]"


class InvitationRow(NodeTable, table=True):
    """A round invitation as received (signed spec JSON), checked against the enrolled aggregator key."""

    __tablename__ = "invitation"

    round_id: str = Field(primary_key=True)
    signed_spec: str
    spec_hash: str
    received_at: datetime = Field(default_factory=_now)


class ConsentRow(NodeTable, table=True):
    """The firm's approval of one contribution: which round, which process version, which vector."""

    __tablename__ = "consent"

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(index=True, unique=True)
    process_uuid: str
    process_version: str
    vector_sha256: str
    preview: str
    approved_by: str = ""
    approved_at: datetime = Field(default_factory=_now)
    spent_at: datetime | None = None
    """When the first Flower run used this consent (a consent serves one run: ``node.rounds.spend_consent``)."""
    spent_by_run: str | None = None
    """The Flower run id that spent it."""


class OutboxRow(NodeTable, table=True):
    """One message that left the node."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    sent_at: datetime = Field(default_factory=_now)
    round_id: str = Field(index=True)
    recipient: str
    stage: str
    size: int
    sha256: str
    note: str = ""
    """What the message said when the node refused (the reason of its error reply); empty otherwise."""


class SettingRow(NodeTable, table=True):
    __tablename__ = "node_setting"

    key: str = Field(primary_key=True)
    value: str


class VersionInfo(SQLModel):
    kind: str
    uuid: str
    version: str
    seq: int
    created_at: datetime
    content_hash: str
    name_en: str
    name_zh: str
    import_id: int | None


def default_db_url(home: Path) -> str:
    return f"sqlite:///{home / 'node.db'}"


def engine_url(url: str) -> str:
    """SQLAlchemy URL for a user-facing one (``postgresql://`` uses psycopg 3)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """The SQLAlchemy engine of a node database URL (a SQLite file's folder is created)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(engine_url(url))
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _header(ds: Dataset) -> dict[str, Any]:
    location = getattr(ds, "location", None)
    classification = None
    if ds.classifications:
        c = ds.classifications[0]
        classification = f"{c.system}:{c.code or '/'.join(c.path)}"
    return {
        "name_en": ds.name.get("en", ""),
        "name_zh": ds.name.get("zh", ""),
        "location": location,
        "classification": classification,
    }


class NodeStore:
    """All datasets of one node, every version, behind one small interface.

    The constructor takes a URL: ``sqlite:///path`` (default) or ``postgresql://...``, and brings
    the database to the schema this code needs (:mod:`node.migrations`): a SQLite file always, a
    PostgreSQL database unless ``auto_upgrade`` is false, in which case a database that is not at
    the head revision is refused with :class:`node.migrations.SchemaError` (run ``pcf node db upgrade``).
    """

    def __init__(self, url: str, *, auto_upgrade: bool = True):
        from node import migrations

        self.url = url
        self.engine: Engine = make_engine(url)
        try:
            self.notes = migrations.prepare(self.engine, auto_upgrade=auto_upgrade or url.startswith("sqlite"))
            """What the upgrade at opening did, if it did anything (e.g. foreign tables it kept)."""
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        with Session(self.engine) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # -- reading -----------------------------------------------------------------------------

    def latest_rows(self, kind: str | None = None) -> list[DatasetVersion]:
        with Session(self.engine) as s:
            stmt = select(DatasetVersion)
            if kind:
                stmt = stmt.where(DatasetVersion.kind == kind)
            rows = s.exec(stmt.order_by(col(DatasetVersion.uuid), col(DatasetVersion.seq))).all()
        latest: dict[tuple[str, str], DatasetVersion] = {}
        for r in rows:
            latest[(r.kind, r.uuid)] = r
        return list(latest.values())

    def get(self, uuid: str, version: str | None = None, kind: str | None = None) -> Dataset | None:
        """A dataset by UUID: its latest version, or the given one."""
        with Session(self.engine) as s:
            stmt = select(DatasetVersion).where(DatasetVersion.uuid == uuid.lower())
            if kind:
                stmt = stmt.where(DatasetVersion.kind == kind)
            if version:
                stmt = stmt.where(DatasetVersion.version == version)
            row = s.exec(stmt.order_by(col(DatasetVersion.seq).desc())).first()
        return None if row is None else _to_dataset(row)

    def history(self, uuid: str) -> list[VersionInfo]:
        with Session(self.engine) as s:
            rows = s.exec(
                select(DatasetVersion).where(DatasetVersion.uuid == uuid.lower()).order_by(col(DatasetVersion.seq))
            ).all()
        return [VersionInfo.model_validate(r, from_attributes=True) for r in rows]

    def bundle(self) -> Bundle:
        """The latest version of every dataset."""
        out = Bundle()
        for row in self.latest_rows():
            out.add(_to_dataset(row))
        return out

    def imports(self) -> list[ImportRecord]:
        with Session(self.engine) as s:
            return list(s.exec(select(ImportRecord).order_by(col(ImportRecord.id))).all())

    # -- writing -----------------------------------------------------------------------------

    def plan(self, bundle: Bundle) -> list[tuple[Dataset, str]]:
        """What saving ``bundle`` would do to each dataset: ``new``, ``unchanged`` or ``new-version``.

        A changed dataset gets its own version if that is higher than the stored one,
        otherwise the stored version bumped (``01.00.000`` -> ``01.00.001``).
        """
        latest = {(r.kind, r.uuid): r for r in self.latest_rows()}
        out: list[tuple[Dataset, str]] = []
        for ds in bundle.all():
            row = latest.get((dataset_kind(ds), ds.uuid))
            if row is None:
                out.append((ds, "new"))
            elif row.content_hash == ds.content_hash():
                out.append((ds, "unchanged"))
            else:
                if version_key(ds.version) <= version_key(row.version):
                    ds = ds.model_copy(update={"version": bump_version(row.version)})
                out.append((ds, "new-version"))
        return out

    def save(self, bundle: Bundle, source: str, fmt: str, summary: dict[str, Any],
             diagnostics: list[dict[str, Any]]) -> tuple[int, list[tuple[Dataset, str]]]:
        """Store a bundle as new versions, all in one transaction; returns the import id and the plan."""
        plan = self.plan(bundle)
        with self.transaction() as s:
            record = ImportRecord(source=source, format=fmt, summary=json.dumps(summary),
                                  diagnostics=json.dumps(diagnostics, ensure_ascii=False))
            s.add(record)
            s.flush()
            seqs: dict[tuple[str, str], int] = {}
            for r in s.exec(select(DatasetVersion.kind, DatasetVersion.uuid, DatasetVersion.seq)).all():
                seqs[(r[0], r[1])] = max(seqs.get((r[0], r[1]), 0), r[2])
            for ds, action in plan:
                if action == "unchanged":
                    continue
                kind = dataset_kind(ds)
                row = DatasetVersion(
                    kind=kind,
                    uuid=ds.uuid,
                    version=ds.version,
                    seq=seqs.get((kind, ds.uuid), 0) + 1,
                    content_hash=ds.content_hash(),
                    import_id=record.id,
                    doc=ds.model_dump_json(),
                    **_header(ds),
                )
                s.add(row)
                s.flush()
                if isinstance(ds, Process):
                    refs = set(ds.reference_exchanges)
                    for ex in ds.exchanges:
                        assert row.id is not None
                        s.add(ExchangeRow(
                            dataset_version_id=row.id, internal_id=ex.internal_id, flow_uuid=ex.flow,
                            direction=ex.direction, amount=ex.amount, unit=ex.unit,
                            flow_property=ex.flow_property, data_source=ex.data_source,
                            is_reference=ex.internal_id in refs,
                        ))
            assert record.id is not None
            return record.id, plan

    # -- settings (enrolment etc.) -----------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with Session(self.engine) as s:
            row = s.get(SettingRow, key)
            return None if row is None else row.value

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as s:
            row = s.get(SettingRow, key)
            if row is None:
                s.add(SettingRow(key=key, value=value))
            else:
                row.value = value
                s.add(row)


def _to_dataset(row: DatasetVersion) -> Dataset:
    return KIND_TYPES[row.kind].model_validate_json(row.doc)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()
