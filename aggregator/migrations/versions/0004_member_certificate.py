"""``member.certificate`` and ``member.uscc``: the membership certificate a member enrolled with.

The certificate (``protocols.certificates.MemberCertificate`` as JSON) is issued by the membership
authority, not the association; ``uscc`` repeats its Unified Social Credit Code so one firm is
enrolled once. Members enrolled before have neither (``NULL``); with
``PCF_AGG_AUTHORITY_PUBLIC_KEY`` set they are left out of rosters until they enrol with one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.add_column(sa.Column("certificate", sa.Text(), nullable=True))
        batch.add_column(sa.Column("uscc", sa.String(), nullable=True))
        batch.create_index("ix_member_uscc", ["uscc"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.drop_index("ix_member_uscc")
        batch.drop_column("uscc")
        batch.drop_column("certificate")
