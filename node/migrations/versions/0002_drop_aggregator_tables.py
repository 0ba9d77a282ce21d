"""Drop the aggregator's tables that release 0.1 created in node databases, where they are empty.

Release 0.1 declared both roles' tables on one global metadata, so a node store opened in a process
that had imported the aggregator's store got the aggregator's tables too. Empty ones are dropped;
one holding rows is kept (with a warning naming it), since deleting data is not a migration's call.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from common.migrations import drop_empty_foreign_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_TABLES = (
    # referencing tables before the tables they reference
    ("contribution", ()),
    ("partial_decryption", ()),
    ("aggregate", ()),
    ("factor", ()),
    ("translog_entry", ()),
    ("delivery", ()),
    ("seen_request", ()),
    ("member", ("contribution",)),
    ("round", ("contribution", "partial_decryption", "aggregate", "factor")),
)
"""The aggregator's release 0.1 tables, each with the tables whose foreign keys point at it."""


def upgrade() -> None:
    drop_empty_foreign_tables(FOREIGN_TABLES, owner="aggregator", role="node")


def downgrade() -> None:
    """Nothing to restore: release 0.1 never used those tables in a node database."""
