"""Read access to published factors, the one interface the seed API and PACT routers depend on."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aggregator.store import FactorRow, Store
from protocols.factor import PublishedFactor, revision_of
from protocols.provenance import document_hash

__all__ = ["FactorRepository", "StoreFactorRepository", "document_bytes", "document_hash"]


def document_bytes(factor: PublishedFactor) -> bytes:
    """The stored form of a factor: pydantic's JSON of the model (deterministic for equal models).

    What the publication log entry records is :func:`protocols.provenance.document_hash` (the
    canonical digest of the same model), which anyone holding the factor JSON re-derives.
    """
    return factor.model_dump_json().encode()


@runtime_checkable
class FactorRepository(Protocol):
    """Published factors, every version immutable once written."""

    def list_factors(
        self, *, latest_only: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[PublishedFactor]:
        """Published factors ordered by factor id, then version.

        MUST return only the newest version of each factor when ``latest_only`` (the default),
        every version otherwise; MUST apply ``offset`` then ``limit`` after that selection.
        """
        ...

    def get_factor(self, factor_id: str, version: int | str | None = None) -> PublishedFactor | None:
        """One factor: the given version, or the newest when ``version`` is ``None``.

        ``version`` is the revision number (1, 2, ...) or the ILCD version (``"01.00.001"``).
        MUST return ``None`` (not raise) when the factor or that version does not exist, or when
        ``version`` is not a valid version.
        """
        ...

    def versions(self, factor_id: str) -> list[PublishedFactor]:
        """Every version of a factor, oldest first; MUST return ``[]`` for an unknown factor."""
        ...

    def cohort_sizes(self, factor_id: str) -> dict[int, int]:
        """Revision number -> size of the certified cohort recorded when that version was published.

        MUST give sizes only, never who is in a cohort; MAY omit versions published before cohorts
        were recorded (``aggregator.cohorts``); MUST return ``{}`` for an unknown factor.
        """
        ...


def _parse(row: FactorRow) -> PublishedFactor:
    return PublishedFactor.model_validate_json(row.document)


class StoreFactorRepository:
    """:class:`FactorRepository` over the aggregator's :class:`~aggregator.store.Store`."""

    def __init__(self, store: Store):
        self._store = store

    def list_factors(
        self, *, latest_only: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[PublishedFactor]:
        with self._store.transaction() as tx:
            rows = tx.list_factors(latest_only=latest_only)
        rows = rows[max(offset, 0) :]
        if limit is not None:
            rows = rows[: max(limit, 0)]
        return [_parse(r) for r in rows]

    def get_factor(self, factor_id: str, version: int | str | None = None) -> PublishedFactor | None:
        if isinstance(version, str):
            try:
                version = revision_of(version)
            except ValueError:
                return None
        with self._store.transaction() as tx:
            row = tx.get_factor(factor_id, version)
        return None if row is None else _parse(row)

    def versions(self, factor_id: str) -> list[PublishedFactor]:
        with self._store.transaction() as tx:
            rows = tx.factor_versions(factor_id)
        return [_parse(r) for r in rows]

    def cohort_sizes(self, factor_id: str) -> dict[int, int]:
        with self._store.transaction() as tx:
            return tx.cohort_sizes(factor_id)
