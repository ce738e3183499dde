"""event clips: the MP4 of an alert's open event (path under snapshot_dir) and its length once written

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clip", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("clip_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("clip_s")
        batch_op.drop_column("clip")
