"""A consent is single use: record which Flower run spent it, and when; an outbox row may carry a note.

The note is what a refusal said (the reason of the error reply the node sent).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them without a table rebuild; existing consents stay unspent.
    op.add_column("consent", sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("consent", sa.Column("spent_by_run", sa.String(), nullable=True))
    op.add_column("outbox", sa.Column("note", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("note")
    with op.batch_alter_table("consent") as batch:
        batch.drop_column("spent_by_run")
        batch.drop_column("spent_at")
