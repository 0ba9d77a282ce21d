"""The authority's register: issued certificates (with their revocation) and signed revocation lists.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "certificate",
        sa.Column("serial", sa.String(), nullable=False),
        sa.Column("uscc", sa.String(), nullable=False),
        sa.Column("identity_public_key", sa.String(), nullable=False),
        sa.Column("legal_name_zh", sa.String(), nullable=False),
        sa.Column("legal_name_en", sa.String(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("serial"),
    )
    with op.batch_alter_table("certificate") as batch:
        batch.create_index("ix_certificate_uscc", ["uscc"], unique=False)
        batch.create_index("ix_certificate_identity_public_key", ["identity_public_key"], unique=False)
    op.create_table(
        "revocation_list",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )


def downgrade() -> None:
    op.drop_table("revocation_list")
    with op.batch_alter_table("certificate") as batch:
        batch.drop_index("ix_certificate_identity_public_key")
        batch.drop_index("ix_certificate_uscc")
    op.drop_table("certificate")
