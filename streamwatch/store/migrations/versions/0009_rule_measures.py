"""rule measures: each rule's precision, recall and suggested threshold per camera from the latest eval

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_measures",
        sa.Column("rule", sa.String(length=64), primary_key=True),
        sa.Column("camera", sa.String(length=64), primary_key=True),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("suggested_threshold", sa.Float(), nullable=True),
        sa.Column("false_alerts_per_day", sa.Float(), nullable=True),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rule_measures")
