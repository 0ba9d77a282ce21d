"""``factor_cohort``: the certified cohort behind each published factor version, and the scope of its round.

A new version, or a factor for an overlapping scope, whose cohort differs from a recorded one by
fewer than ``min_participants`` firms is refused (``aggregator.cohorts``): the two publications
would subtract to those firms' values. Versions published before this revision have no row (their
cohort was not recorded) and are not checked against.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "factor_cohort",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("factor_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.String(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("reference_flow", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("min_participants", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["round.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("factor_id", "version", name="uq_factor_cohort_version"),
    )
    op.create_index("ix_factor_cohort_factor_id", "factor_cohort", ["factor_id"], unique=False)
    op.create_index("ix_factor_cohort_reference_flow", "factor_cohort", ["reference_flow"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_factor_cohort_reference_flow", table_name="factor_cohort")
    op.drop_index("ix_factor_cohort_factor_id", table_name="factor_cohort")
    op.drop_table("factor_cohort")
