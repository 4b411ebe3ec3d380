"""segments rfm lifecycle

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:34:29.543293
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column(
            "value", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("updated_at", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_settings")),
    )
    op.create_table(
        "segments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rules", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_segments_name")),
    )
    op.create_table(
        "segment_members",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "segment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("since", rapport.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", rapport.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_members_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_members")),
    )
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.create_index("ix_segment_members_customer", ["customer_id"], unique=False)
        batch_op.create_index(
            "uq_segment_members_current",
            ["segment_id", "customer_id"],
            unique=True,
            postgresql_where=sa.text("until IS NULL"),
            sqlite_where=sa.text("until IS NULL"),
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rfm_recency", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("rfm_frequency", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("rfm_monetary", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("rfm_cell", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("lifecycle_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column(
                "lifecycle_changed_at",
                rapport.store.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("lifecycle_changed_at")
        batch_op.drop_column("lifecycle_stage")
        batch_op.drop_column("rfm_cell")
        batch_op.drop_column("rfm_monetary")
        batch_op.drop_column("rfm_frequency")
        batch_op.drop_column("rfm_recency")

    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_segment_members_current",
            postgresql_where=sa.text("until IS NULL"),
            sqlite_where=sa.text("until IS NULL"),
        )
        batch_op.drop_index("ix_segment_members_customer")

    op.drop_table("segment_members")
    op.drop_table("segments")
    op.drop_table("app_settings")
