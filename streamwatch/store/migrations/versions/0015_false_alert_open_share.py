"""false alert open share: beside the false alerts opened a day (now counted by the alert state
machine: a rule that says yes to every negative opens once and never closes), the share of the time
a false alert is open, so that neither figure can flatter a bad rule

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_measures") as batch:
        batch.add_column(sa.Column("false_alert_open_share", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_measures") as batch:
        batch.drop_column("false_alert_open_share")
