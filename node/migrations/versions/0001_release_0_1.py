"""The node's schema of release 0.1, as ``create_all`` made it.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
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
        "consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.String(), nullable=False),
        sa.Column("process_uuid", sa.String(), nullable=False),
        sa.Column("process_version", sa.String(), nullable=False),
        sa.Column("vector_sha256", sa.String(), nullable=False),
        sa.Column("preview", sa.String(), nullable=False),
        sa.Column("approved_by", sa.String(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consent_round_id", "consent", ["round_id"], unique=True)
    op.create_table(
        "import_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("diagnostics", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "invitation",
        sa.Column("round_id", sa.String(), nullable=False),
        sa.Column("signed_spec", sa.String(), nullable=False),
        sa.Column("spec_hash", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("round_id"),
    )
    op.create_table(
        "node_setting",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("round_id", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_round_id", "outbox", ["round_id"], unique=False)
    op.create_table(
        "dataset_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("uuid", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("name_en", sa.String(), nullable=False),
        sa.Column("name_zh", sa.String(), nullable=False),
        sa.Column("location", sa.String(), nullable=True),
        sa.Column("classification", sa.String(), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("doc", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["import_record.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "uuid", "version"),
    )
    op.create_index("ix_dataset_version_kind", "dataset_version", ["kind"], unique=False)
    op.create_index("ix_dataset_version_uuid", "dataset_version", ["uuid"], unique=False)
    op.create_table(
        "exchange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("internal_id", sa.String(), nullable=False),
        sa.Column("flow_uuid", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(), nullable=False),
        sa.Column("flow_property", sa.String(), nullable=True),
        sa.Column("data_source", sa.String(), nullable=True),
        sa.Column("is_reference", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_version_id"], ["dataset_version.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exchange_dataset_version_id", "exchange", ["dataset_version_id"], unique=False)
    op.create_index("ix_exchange_flow_uuid", "exchange", ["flow_uuid"], unique=False)


def downgrade() -> None:
    for table in ("exchange", "dataset_version", "outbox", "node_setting", "invitation", "import_record", "consent"):
        op.drop_table(table)
