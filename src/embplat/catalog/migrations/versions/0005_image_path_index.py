"""index on image paths (re-ingest looks files up by path, and the images under a root)

Revision ID: 0005_image_path_index
Revises: 0004_image_mtime
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005_image_path_index"
down_revision = "0004_image_mtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_path"), ["path"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_path"))
