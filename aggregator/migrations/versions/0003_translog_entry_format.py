"""``translog_entry.format``: how an entry's hash was computed (0: release 0.1, 1: since).

Entries already in the log were hashed the 0.1 way and get 0; new rows default to 1
(``protocols.translog`` verifies both).

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
    # Two steps: the column is added filled with 0 for the existing rows, then its default becomes 1.
    with op.batch_alter_table("translog_entry") as batch:
        batch.add_column(sa.Column("format", sa.Integer(), nullable=False, server_default=sa.text("0")))
    with op.batch_alter_table("translog_entry") as batch:
        batch.alter_column("format", existing_type=sa.Integer(), existing_nullable=False,
                           server_default=sa.text("1"))


def downgrade() -> None:
    with op.batch_alter_table("translog_entry") as batch:
        batch.drop_column("format")
