"""label requests: uncertain answers (and sampled plain "no"s) kept for an operator to label

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("camera", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("frame", sa.String(length=300), nullable=False),
        sa.Column("frame_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=True),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_label_requests_uid", "label_requests", ["uid"], unique=True)
    op.create_index("ix_label_requests_created_at", "label_requests", ["created_at"])
    op.create_index("ix_label_requests_labelled_at", "label_requests", ["labelled_at"])


def downgrade() -> None:
    op.drop_table("label_requests")
