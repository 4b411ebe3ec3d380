"""precomputed product recommendations

Revision ID: 0012
Revises: 0011

Create Date: 2026-11-22 21:00:00
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
        "rec_lists",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("list_key", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "list_key", "position", name=op.f("pk_rec_lists")),
    )


def downgrade() -> None:
    op.drop_table("rec_lists")
