"""``contribution.stage`` and ``partial_decryption.stage``: a ``paillier`` round is decrypted one disclosure stage at a time.

A round is four encrypted sums over one cohort (``protocols.disclosure``): each member posts one
contribution per stage and each custodian one partial decryption per stage, so the unique keys
become (round, stage, member) and (round, stage, custodian). Rows written before this revision
were the only contribution of their round: they become its ``screen`` stage.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contribution") as batch:
        batch.add_column(sa.Column("stage", sa.String(), nullable=False, server_default="screen"))
        batch.drop_constraint("uq_contribution_round_member", type_="unique")
        batch.create_unique_constraint("uq_contribution_round_stage_member", ["round_id", "stage", "member_id"])
    with op.batch_alter_table("partial_decryption") as batch:
        batch.add_column(sa.Column("stage", sa.String(), nullable=False, server_default="screen"))
        batch.drop_constraint("uq_partial_round_custodian", type_="unique")
        batch.create_unique_constraint("uq_partial_round_stage_custodian", ["round_id", "stage", "custodian"])


def downgrade() -> None:
    # Only a database whose rounds never ran past the screen stage goes back: a second stage's rows
    # would break the old unique keys.
    with op.batch_alter_table("partial_decryption") as batch:
        batch.drop_constraint("uq_partial_round_stage_custodian", type_="unique")
        batch.create_unique_constraint("uq_partial_round_custodian", ["round_id", "custodian"])
        batch.drop_column("stage")
    with op.batch_alter_table("contribution") as batch:
        batch.drop_constraint("uq_contribution_round_stage_member", type_="unique")
        batch.create_unique_constraint("uq_contribution_round_member", ["round_id", "member_id"])
        batch.drop_column("stage")
