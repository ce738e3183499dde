"""kept frames: how many frames the question of an event or label request was asked over (a rule with
`frames` > 1), whose strip is kept beside its frame for `streamwatch eval`

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("events", "label_requests"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("window_frames", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("events", "label_requests"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("window_frames")
