"""metrics.split holds up to 200 characters (``valid-unknown:<class names>`` outgrew 32)

Revision ID: 0006_metrics_split_length
Revises: 0005_image_path_index
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_metrics_split_length"
down_revision = "0005_image_path_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.alter_column(
            "split",
            existing_type=sa.String(length=32),
            type_=sa.String(length=200),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.alter_column(
            "split",
            existing_type=sa.String(length=200),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
