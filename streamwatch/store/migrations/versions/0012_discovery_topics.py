"""discovery topics: the Home Assistant discovery configs each instance (shard) published, so those of a
camera or rule that no longer exists are cleared after a restart

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_topics",
        sa.Column("topic", sa.String(length=400), primary_key=True),
        sa.Column("owner", sa.String(length=64), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("discovery_topics")
