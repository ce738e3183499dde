"""outbox per output: a sink column (each output delivers its own queue), address and options instead
of MQTT's topic, qos and retain (kept, as the options of the MQTT rows)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sink", sa.String(length=32), nullable=False, server_default="mqtt"))
        batch_op.add_column(sa.Column("options", sa.Text(), nullable=False, server_default="{}"))
    op.execute(
        """UPDATE outbox SET options = '{"qos": ' || CAST(qos AS VARCHAR(8)) || ', "retain": '"""
        """ || CASE WHEN retain THEN 'true' ELSE 'false' END || '}'"""
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column(
            "topic", new_column_name="address", existing_type=sa.String(length=300), existing_nullable=False
        )
        batch_op.drop_index("ix_outbox_owner_id")
        batch_op.drop_column("qos")
        batch_op.drop_column("retain")
        batch_op.create_index("ix_outbox_owner_sink_id", ["owner", "sink", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("qos", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("retain", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index("ix_outbox_owner_sink_id")
        batch_op.alter_column(
            "address", new_column_name="topic", existing_type=sa.String(length=300), existing_nullable=False
        )
        batch_op.create_index("ix_outbox_owner_id", ["owner", "id"], unique=False)
        batch_op.drop_column("options")
        batch_op.drop_column("sink")
