"""shadow_runs, shadow_alerts: a candidate adapter and thresholds run in shadow beside the live model
on live frames, and the alerts it would have opened

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("adapter", sa.String(length=500), nullable=True),
        sa.Column("thresholds", sa.Text(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
    )
    op.create_table(
        "shadow_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("camera", sa.String(length=100), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("p_yes", sa.Float(), nullable=False),
        sa.Column("live_p_yes", sa.Float(), nullable=True),
        sa.Column("live_open", sa.Boolean(), nullable=False),
        sa.Column("snapshot", sa.String(length=300), nullable=True),
    )
    op.create_index("ix_shadow_alerts_run", "shadow_alerts", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_shadow_alerts_run", table_name="shadow_alerts")
    op.drop_table("shadow_alerts")
    op.drop_table("shadow_runs")
