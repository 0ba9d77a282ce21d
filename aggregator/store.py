"""Persistent state of the aggregator: SQLModel tables behind one transactional interface.

``open_store(url)`` picks the backend from the URL (``sqlite:///file``, ``sqlite://`` in memory,
``postgresql://...`` through psycopg 3). Every unit of work runs inside ``store.transaction()``:
it commits when the block ends and rolls back entirely when the block raises, so a rejected
contribution or an interrupted publication leaves nothing behind.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    MetaData,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from aggregator.errors import (
    Conflict,
    DuplicateContribution,
    InvalidTransition,
    NotFound,
)
from common.db import UTCDateTime, utc_timestamp

__all__ = [
    "MEMBER_STATUSES",
    "AggregateRow",
    "AggregatorTable",
    "ContributionRow",
    "DeliveryRow",
    "FactorCohortRow",
    "FactorRow",
    "MemberRow",
    "PartialDecryptionRow",
    "RoundRow",
    "SeenRequestRow",
    "Store",
    "Transaction",
    "TranslogRow",
    "aggregator_metadata",
    "make_engine",
    "normalize_url",
    "open_store",
    "utcnow",
]

MEMBER_STATUSES = ("pending", "approved", "revoked")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


_ts = utc_timestamp


def _text() -> Any:
    return Field(sa_column=Column(Text, nullable=False))


class AggregatorTable(SQLModel, registry=registry()):
    """Base of the aggregator's tables: their own registry and metadata, so its database holds only them.

    (Tables on SQLModel's global metadata would also bring in the node's when both roles are imported
    in one process.) The schema is owned by the Alembic migrations in ``aggregator/migrations``.
    """


aggregator_metadata: MetaData = AggregatorTable.metadata
"""The aggregator's tables, and only them."""


class MemberRow(AggregatorTable, table=True):
    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(unique=True, index=True)
    org_name_zh: str
    org_name_en: str
    identity_public_key: str = Field(unique=True)
    supernode_public_key: str
    status: str = "pending"
    flower_node_id: str | None = Field(default=None, unique=True)
    """Decimal node id the SuperLink assigned when the SuperNode key was registered on approval
    (text: Flower node ids are unsigned 64-bit and overflow a signed BIGINT)."""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    certificate: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON of the membership authority's certificate for this key (revision ``0004``); ``None`` when enrolled
    without one."""
    uscc: str | None = Field(default=None, index=True)
    """The certificate's Unified Social Credit Code."""


class RoundRow(AggregatorTable, table=True):
    __tablename__ = "round"

    id: str = Field(primary_key=True)
    protocol: str
    signed_spec: str = _text()
    """JSON of the aggregator-signed spec, as sent to members."""
    spec_hash: str
    params: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON of protocol parameters: the ``paillier`` round's public key (fixed at creation), the
    ``secagg`` round's signed roster (fixed when it opens)."""
    state: str = "draft"
    decision: str | None = None
    """Why the round ended: the disclosure rule that suppressed it, the abort reason, or the factor published."""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ContributionRow(AggregatorTable, table=True):
    __tablename__ = "contribution"
    __table_args__ = (UniqueConstraint("round_id", "stage", "member_id", name="uq_contribution_round_stage_member"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(foreign_key="round.id", index=True)
    stage: str = Field(default="screen", sa_column_kwargs={"server_default": "screen"})
    """The disclosure stage (``protocols.disclosure.Stage``) of a ``paillier`` contribution: one per member and stage."""
    member_id: int = Field(foreign_key="member.id")
    contribution_hash: str
    body: str = _text()
    """The signed encrypted contribution exactly as the member sent it."""
    received_at: datetime = _ts()


class PartialDecryptionRow(AggregatorTable, table=True):
    __tablename__ = "partial_decryption"
    __table_args__ = (UniqueConstraint("round_id", "stage", "custodian", name="uq_partial_round_stage_custodian"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(foreign_key="round.id", index=True)
    stage: str = Field(default="screen", sa_column_kwargs={"server_default": "screen"})
    """The disclosure stage the partial decrypts: one per custodian and stage."""
    custodian: str
    body: str = _text()
    received_at: datetime = _ts()


class AggregateRow(AggregatorTable, table=True):
    """Only the decoded sum over all contributors and their count: never one member's values."""

    __tablename__ = "aggregate"

    round_id: str = Field(foreign_key="round.id", primary_key=True)
    summed: str = _text()
    """JSON list of the summed integers as decimal strings (they exceed 64 bits); ``null`` where a
    slot is withheld (a component reported by fewer than ``min_participants`` firms)."""
    n: int
    histogram_salt: str = ""
    """Hex salt of the commitment to the histogram bins, which the public log withholds."""
    created_at: datetime = _ts()


class FactorRow(AggregatorTable, table=True):
    __tablename__ = "factor"
    __table_args__ = (UniqueConstraint("factor_id", "version", name="uq_factor_version"),)

    id: int | None = Field(default=None, primary_key=True)
    factor_id: str = Field(index=True)
    version: int
    round_id: str = Field(foreign_key="round.id")
    document: str = _text()
    """JSON of the ``PublishedFactor``; never updated once written."""
    document_hash: str
    log_seq: int
    """Sequence number of the publication entry in the transparency log."""
    created_at: datetime = _ts()


class FactorCohortRow(AggregatorTable, table=True):
    """The certified cohort behind one published factor version: the members whose values its sums hold.

    Written in the publishing transaction (``aggregator.cohorts.record_cohort``), never updated. The
    scope columns repeat the round spec's, so later rounds are checked against them without parsing
    specs signed under an older schema. Member ids never leave the aggregator: the API shows ``size``.
    """

    __tablename__ = "factor_cohort"
    __table_args__ = (UniqueConstraint("factor_id", "version", name="uq_factor_cohort_version"),)

    id: int | None = Field(default=None, primary_key=True)
    factor_id: str = Field(index=True)
    version: int
    """The revision number, as ``FactorRow.version``."""
    round_id: str = Field(foreign_key="round.id")
    members: str = _text()
    """JSON list of the cohort's member ids (``member.id`` as decimal strings), sorted."""
    size: int
    reference_flow: str = Field(index=True)
    """The scope of the round spec: product reference flow, region, reference period and its minimum."""
    region: str
    period_start: date
    period_end: date
    min_participants: int
    created_at: datetime = _ts()


class TranslogRow(AggregatorTable, table=True):
    __tablename__ = "translog_entry"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    prev_hash: str
    entry_type: str
    payload: str = _text()
    """Canonical JSON of the payload, byte-for-byte what ``entry_hash`` covers."""
    entry_hash: str = Field(unique=True)
    signature: str
    created_at: datetime = _ts()
    format: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    """How ``entry_hash`` was computed (``protocols.translog``): 0 for entries written by release 0.1,
    1 since. Revision ``0003`` gave the rows of 0.1 databases 0."""


class DeliveryRow(AggregatorTable, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("factor_id", "version", "url", name="uq_delivery_target"),)

    id: int | None = Field(default=None, primary_key=True)
    factor_id: str
    version: int
    url: str
    idempotency_key: str
    status: str
    """``delivered`` or ``failed``."""
    attempts: int
    status_code: int | None = None
    receipt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The receiver's response body."""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SeenRequestRow(AggregatorTable, table=True):
    """Signatures of member requests already accepted, kept for the replay window."""

    __tablename__ = "seen_request"

    signature: str = Field(primary_key=True)
    fingerprint: str
    seen_at: datetime = Field(default=None, sa_column=Column(UTCDateTime(), nullable=False, index=True))


def _is_unique_violation(exc: IntegrityError) -> bool:
    msg = str(exc.orig).lower()
    return "unique" in msg or "duplicate key" in msg


class Transaction:
    """One unit of work over the store; obtained from :meth:`Store.transaction`.

    Methods that find nothing raise :class:`aggregator.errors.NotFound` when named ``get_*``
    with ``required=True`` and return ``None`` otherwise.
    """

    def __init__(self, session: Session, dialect: str):
        self.session = session
        self.dialect = dialect

    def _add(self, row: SQLModel) -> None:
        self.session.add(row)
        self.session.flush()

    # -- members ---------------------------------------------------------------------------------

    def add_member(self, row: MemberRow) -> MemberRow:
        """Insert a member. MUST raise ``Conflict`` when its key or fingerprint is already enrolled."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(
                    f"identity key with fingerprint {row.fingerprint!r} is already enrolled; "
                    "enroll a new identity key or ask the association to re-approve the existing member"
                ) from None
            raise
        return row

    def get_member(self, member_id: int) -> MemberRow:
        row = self.session.get(MemberRow, member_id)
        if row is None:
            raise NotFound(f"member {member_id} does not exist")
        return row

    def find_member(self, fingerprint: str) -> MemberRow | None:
        return self.session.exec(select(MemberRow).where(MemberRow.fingerprint == fingerprint)).first()

    def list_members(self, status: str | None = None) -> list[MemberRow]:
        q = select(MemberRow).order_by(col(MemberRow.id))
        if status is not None:
            q = q.where(MemberRow.status == status)
        return list(self.session.exec(q))

    def set_member_status(
        self, member_id: int, status: str, now: datetime, flower_node_id: str | None = None
    ) -> MemberRow:
        """Set a member's status (and, when given, its SuperLink node id).

        MUST raise ``Conflict`` when the node id already belongs to another member.
        """
        if status not in MEMBER_STATUSES:
            raise ValueError(f"member status {status!r}: accepted are {MEMBER_STATUSES}")
        row = self.get_member(member_id)
        row.status = status
        if flower_node_id is not None:
            row.flower_node_id = flower_node_id
        row.updated_at = now
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(
                    f"Flower node id {flower_node_id} already belongs to another member; "
                    "each member's SuperNode has its own key and node id"
                ) from None
            raise
        return row

    # -- rounds ----------------------------------------------------------------------------------

    def add_round(self, row: RoundRow) -> RoundRow:
        """Insert a round. MUST raise ``Conflict`` when its id exists."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(f"round {row.id!r} already exists; give the spec a new round id") from None
            raise
        return row

    def get_round(self, round_id: str) -> RoundRow:
        row = self.session.get(RoundRow, round_id)
        if row is None:
            raise NotFound(f"round {round_id!r} does not exist")
        return row

    def list_rounds(self, states: Sequence[str] | None = None) -> list[RoundRow]:
        q = select(RoundRow).order_by(col(RoundRow.created_at), col(RoundRow.id))
        if states is not None:
            q = q.where(col(RoundRow.state).in_(list(states)))
        return list(self.session.exec(q))

    def transition_round(
        self,
        round_id: str,
        from_states: Sequence[str],
        to_state: str,
        now: datetime,
        decision: str | None = None,
    ) -> RoundRow:
        """Move a round to ``to_state`` if, and only if, it is in one of ``from_states``.

        A compare-and-set on the row: of two concurrent transitions from the same state exactly one
        succeeds, and the row stays locked until the transaction ends (PostgreSQL) or the write
        lock serialises writers (SQLite). MUST raise ``InvalidTransition`` when the state differs.
        """
        values: dict[str, Any] = {"state": to_state, "updated_at": now}
        if decision is not None:
            values["decision"] = decision
        result = self.session.execute(
            update(RoundRow)
            .where(col(RoundRow.id) == round_id, col(RoundRow.state).in_(list(from_states)))
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            current = self.get_round(round_id)  # raises NotFound for an unknown id
            raise InvalidTransition(
                f"round {round_id!r} is {current.state!r}; moving to {to_state!r} needs one of {list(from_states)}"
            )
        row = self.get_round(round_id)
        self.session.refresh(row)
        return row

    def set_round_params(self, round_id: str, params: str) -> RoundRow:
        """Replace a round's ``params`` JSON (in the caller's transaction, with the step that fixes them)."""
        row = self.get_round(round_id)
        row.params = params
        self._add(row)
        return row

    # -- contributions and partial decryptions ---------------------------------------------------

    def add_contribution(self, row: ContributionRow) -> ContributionRow:
        """Insert a contribution. MUST raise ``DuplicateContribution`` on a second one per member, round and stage."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise DuplicateContribution(
                    f"member {row.member_id} already contributed to stage {row.stage} of round {row.round_id!r}; "
                    "one contribution per member and stage is counted"
                ) from None
            raise
        return row

    def list_contributions(self, round_id: str, stage: str | None = None) -> list[ContributionRow]:
        """The round's contributions in arrival order: of one stage, or (``None``) of every stage."""
        q = select(ContributionRow).where(ContributionRow.round_id == round_id)
        if stage is not None:
            q = q.where(ContributionRow.stage == stage)
        return list(self.session.exec(q.order_by(col(ContributionRow.id))))

    def count_contributions(self, round_id: str, stage: str | None = None) -> int:
        q = select(func.count()).select_from(ContributionRow).where(ContributionRow.round_id == round_id)
        if stage is not None:
            q = q.where(ContributionRow.stage == stage)
        return int(self.session.exec(q).one())

    def count_partials(self, round_id: str, stage: str | None = None) -> int:
        q = select(func.count()).select_from(PartialDecryptionRow).where(PartialDecryptionRow.round_id == round_id)
        if stage is not None:
            q = q.where(PartialDecryptionRow.stage == stage)
        return int(self.session.exec(q).one())

    def add_partial(self, row: PartialDecryptionRow) -> PartialDecryptionRow:
        """Insert a custodian's partial decryption. MUST raise ``Conflict`` on a second one per custodian and stage."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(
                    f"custodian {row.custodian!r} already sent its partial decryption of stage {row.stage} "
                    f"for round {row.round_id!r}"
                ) from None
            raise
        return row

    def list_partials(self, round_id: str, stage: str | None = None) -> list[PartialDecryptionRow]:
        """The round's partial decryptions in arrival order: of one stage, or (``None``) of every stage."""
        q = select(PartialDecryptionRow).where(PartialDecryptionRow.round_id == round_id)
        if stage is not None:
            q = q.where(PartialDecryptionRow.stage == stage)
        return list(self.session.exec(q.order_by(col(PartialDecryptionRow.id))))

    # -- aggregates and factors ------------------------------------------------------------------

    def put_aggregate(
        self, round_id: str, summed: Sequence[int | None], n: int, now: datetime, histogram_salt: str = ""
    ) -> AggregateRow:
        """Store a round's summed vector, ``None`` at withheld slots. MUST raise ``Conflict`` if it has one already."""
        row = AggregateRow(
            round_id=round_id,
            summed=json.dumps([None if v is None else str(v) for v in summed]),
            n=n,
            histogram_salt=histogram_salt,
            created_at=now,
        )
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(f"round {round_id!r} already has an aggregate; it is never counted twice") from None
            raise
        return row

    def get_aggregate(self, round_id: str) -> tuple[list[int | None], int] | None:
        row = self.session.get(AggregateRow, round_id)
        if row is None:
            return None
        return [None if v is None else int(v) for v in json.loads(row.summed)], row.n

    def next_factor_version(self, factor_id: str) -> int:
        top = self.session.exec(select(func.max(FactorRow.version)).where(FactorRow.factor_id == factor_id)).one()
        return int(top or 0) + 1

    def add_factor(self, row: FactorRow) -> FactorRow:
        """Insert a factor version. Versions are immutable: MUST raise ``Conflict`` if it exists."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(f"factor {row.factor_id!r} version {row.version} already exists") from None
            raise
        return row

    def get_factor(self, factor_id: str, version: int | None = None) -> FactorRow | None:
        q = select(FactorRow).where(FactorRow.factor_id == factor_id)
        q = q.where(FactorRow.version == version) if version is not None else q.order_by(col(FactorRow.version).desc())
        return self.session.exec(q).first()

    def factor_for_round(self, round_id: str) -> FactorRow | None:
        return self.session.exec(select(FactorRow).where(FactorRow.round_id == round_id)).first()

    def factor_versions(self, factor_id: str) -> list[FactorRow]:
        q = select(FactorRow).where(FactorRow.factor_id == factor_id).order_by(col(FactorRow.version))
        return list(self.session.exec(q))

    def list_factors(self, latest_only: bool = True) -> list[FactorRow]:
        rows = list(self.session.exec(select(FactorRow).order_by(col(FactorRow.factor_id), col(FactorRow.version))))
        if not latest_only:
            return rows
        latest: dict[str, FactorRow] = {}
        for r in rows:
            latest[r.factor_id] = r
        return list(latest.values())

    # -- cohorts of published factor versions ----------------------------------------------------

    def add_factor_cohort(self, row: FactorCohortRow) -> FactorCohortRow:
        """Insert the cohort of a factor version. MUST raise ``Conflict`` if that version has one."""
        try:
            self._add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict(
                    f"factor {row.factor_id!r} revision {row.version} already has a recorded cohort; "
                    "a version's cohort is written once, when it is published"
                ) from None
            raise
        return row

    def list_factor_cohorts(self, reference_flow: str | None = None) -> list[FactorCohortRow]:
        """Recorded cohorts, oldest first; only those of one product's reference flow when given."""
        q = select(FactorCohortRow).order_by(col(FactorCohortRow.id))
        if reference_flow is not None:
            q = q.where(FactorCohortRow.reference_flow == reference_flow)
        return list(self.session.exec(q))

    def cohort_sizes(self, factor_id: str) -> dict[int, int]:
        """Revision number -> cohort size of a factor's versions (versions without a recorded cohort are absent)."""
        q = select(FactorCohortRow.version, FactorCohortRow.size).where(FactorCohortRow.factor_id == factor_id)
        return {int(v): int(n) for v, n in self.session.exec(q)}

    # -- transparency log ------------------------------------------------------------------------

    def lock_log(self) -> None:
        """Serialise appends to the log until this transaction ends (so ``seq`` and ``prev_hash`` are stable)."""
        if self.dialect == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(727001)"))
        # SQLite: the store's write lock and BEGIN IMMEDIATE already serialise writers.

    def last_log_entry(self) -> TranslogRow | None:
        return self.session.exec(select(TranslogRow).order_by(col(TranslogRow.seq).desc())).first()

    def add_log_entry(self, row: TranslogRow) -> TranslogRow:
        self._add(row)
        return row

    def list_log(self, from_seq: int = 1, limit: int | None = None) -> list[TranslogRow]:
        q = select(TranslogRow).where(TranslogRow.seq >= from_seq).order_by(col(TranslogRow.seq))
        if limit is not None:
            q = q.limit(limit)
        return list(self.session.exec(q))

    # -- deliveries ------------------------------------------------------------------------------

    def get_delivery(self, factor_id: str, version: int, url: str) -> DeliveryRow | None:
        q = select(DeliveryRow).where(
            DeliveryRow.factor_id == factor_id, DeliveryRow.version == version, DeliveryRow.url == url
        )
        return self.session.exec(q).first()

    def put_delivery(self, row: DeliveryRow) -> DeliveryRow:
        """Insert or replace the receipt for (factor id, version, url)."""
        existing = self.get_delivery(row.factor_id, row.version, row.url)
        if existing is not None:
            for name in ("idempotency_key", "status", "attempts", "status_code", "receipt", "updated_at"):
                setattr(existing, name, getattr(row, name))
            row = existing
        self._add(row)
        return row

    # -- replay protection -----------------------------------------------------------------------

    def remember_request(self, signature: str, fingerprint: str, now: datetime, window: timedelta) -> bool:
        """Record a signed request; return ``False`` if the same signature was seen before.

        Entries older than ``window`` are dropped: requests that old are refused as stale anyway.
        """
        self.session.execute(
            SeenRequestRow.__table__.delete().where(  # type: ignore[attr-defined]
                SeenRequestRow.__table__.c.seen_at < now - window  # type: ignore[attr-defined]
            )
        )
        if self.session.get(SeenRequestRow, signature) is not None:
            return False
        self._add(SeenRequestRow(signature=signature, fingerprint=fingerprint, seen_at=now))
        return True


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the psycopg 3 driver; leave SQLite URLs as they are.

    Raises
    ------
    ValueError
        For a scheme other than SQLite or PostgreSQL.
    """
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return url
    raise ValueError(f"database URL {url!r}: accepted are sqlite:///PATH, sqlite:// (memory) and postgresql://...")


class Store:
    """The aggregator's database; use :func:`open_store` to build one from a URL."""

    def __init__(self, engine: Engine, *, auto_upgrade: bool = True):
        from aggregator import migrations

        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time; serialising in-process avoids "database is locked".
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        self.notes = migrations.prepare(engine, auto_upgrade=auto_upgrade or self.dialect == "sqlite")
        """What the upgrade at opening did, if it did anything (e.g. foreign tables it kept)."""

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A unit of work: committed when the block ends, rolled back entirely when it raises."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield Transaction(session, self.dialect)
        finally:
            if lock is not None:
                lock.release()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" event below controls transactions.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # The migrations take the write lock themselves, before turning foreign keys off.
    if not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """The SQLAlchemy engine of an aggregator database URL (see :func:`open_store`); no schema work."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if url in ("sqlite://", "sqlite:///:memory:"):
        kwargs["poolclass"] = StaticPool
    else:
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def open_store(url: str, *, auto_upgrade: bool = True) -> Store:
    """Open the store at ``url``, bringing its schema to the head revision (:mod:`aggregator.migrations`).

    Parameters
    ----------
    url
        ``sqlite:///PATH`` (file; parent directory created), ``sqlite://`` (in memory, one
        connection) or ``postgresql://user@host:port/db`` (psycopg 3).
    auto_upgrade
        Upgrade a PostgreSQL database that is behind (SQLite files are always upgraded: the file
        belongs to this one service). When false such a database is refused with
        :class:`aggregator.migrations.SchemaError`; ``pcf agg db upgrade`` upgrades it.

    Returns
    -------
    Store
    """
    engine = make_engine(url)
    try:
        return Store(engine, auto_upgrade=auto_upgrade)
    except BaseException:
        engine.dispose()
        raise
