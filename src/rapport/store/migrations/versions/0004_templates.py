"""message templates

Revision ID: 0004
Revises: 0003

One row per template: the source per locale, and the same version compiled once at save
time (MJML → HTML with CSS inlined, and the derived text part).

Create Date: 2026-11-22 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "templates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("default_locale", sa.String(length=8), nullable=False),
        sa.Column("variants", json, nullable=False),
        sa.Column("compiled", json, nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_templates_name")),
    )


def downgrade() -> None:
    op.drop_table("templates")
