"""shadow decisions: every answer of a shadow rule, beside the live rule's answer on the same frame; a
measured rule without a threshold (count and choice rules)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("camera", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("shadows", sa.String(length=64), nullable=True),
        sa.Column("answer", sa.String(length=200), nullable=False),
        sa.Column("p_yes", sa.Float(), nullable=True),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("live_answer", sa.String(length=200), nullable=True),
        sa.Column("live_p_yes", sa.Float(), nullable=True),
        sa.Column("live_alert", sa.Boolean(), nullable=True),
    )
    op.create_index("ix_shadow_decisions_at", "shadow_decisions", ["at"])
    op.create_index("ix_shadow_rule_at", "shadow_decisions", ["rule", "at"])
    with op.batch_alter_table("rule_measures") as batch:
        batch.alter_column("threshold", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("rule_measures") as batch:
        batch.alter_column("threshold", existing_type=sa.Float(), nullable=False)
    op.drop_index("ix_shadow_rule_at", table_name="shadow_decisions")
    op.drop_index("ix_shadow_decisions_at", table_name="shadow_decisions")
    op.drop_table("shadow_decisions")
