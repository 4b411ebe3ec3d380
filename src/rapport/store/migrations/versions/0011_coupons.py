"""coupons and promo codes, personal discounts

Revision ID: 0011
Revises: 0010

Create Date: 2026-11-22 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)

    op.create_table(
        "coupon_series",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("settings", json, nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_series")),
        sa.UniqueConstraint("name", name=op.f("uq_coupon_series_name")),
    )
    op.create_table(
        "coupon_codes",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("series_id", big_id, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("customer_id", big_id, nullable=True),
        sa.Column("issue_key", sa.String(length=200), nullable=True),
        sa.Column("issued_at", moment, nullable=True),
        sa.Column("expires_at", moment, nullable=True),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["coupon_series.id"],
            name=op.f("fk_coupon_codes_series_id_coupon_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_coupon_codes_code")),
        sa.UniqueConstraint("issue_key", name=op.f("uq_coupon_codes_issue_key")),
    )
    op.create_index("ix_coupon_codes_customer_id", "coupon_codes", ["customer_id"])
    op.create_index("ix_coupon_codes_series_id", "coupon_codes", ["series_id"])
    op.create_table(
        "coupon_customer_uses",
        sa.Column("series_id", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["coupon_series.id"],
            name=op.f("fk_coupon_customer_uses_series_id_coupon_series"),
        ),
        sa.PrimaryKeyConstraint("series_id", "customer_id", name=op.f("pk_coupon_customer_uses")),
    )
    op.create_table(
        "coupon_redemptions",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("code_id", big_id, nullable=False),
        sa.Column("series_id", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("discount", sa.Float(), nullable=False),
        sa.Column("eligible_amount", sa.Float(), nullable=False),
        sa.Column("used_at", moment, nullable=False),
        sa.Column("released_at", moment, nullable=True),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["coupon_codes.id"],
            name=op.f("fk_coupon_redemptions_code_id_coupon_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["coupon_series.id"],
            name=op.f("fk_coupon_redemptions_series_id_coupon_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_redemptions")),
        sa.UniqueConstraint("key", name=op.f("uq_coupon_redemptions_key")),
    )
    op.create_index("ix_coupon_redemptions_code_id", "coupon_redemptions", ["code_id"])
    op.create_index("ix_coupon_redemptions_customer_id", "coupon_redemptions", ["customer_id"])
    op.create_index("ix_coupon_redemptions_order_id", "coupon_redemptions", ["order_id"])
    op.create_table(
        "personal_discounts",
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("valid_until", moment, nullable=True),
        sa.Column("note", sa.String(length=500), server_default="", nullable=False),
        sa.Column("set_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "source", name=op.f("pk_personal_discounts")),
    )


def downgrade() -> None:
    op.drop_table("personal_discounts")
    op.drop_index("ix_coupon_redemptions_order_id", table_name="coupon_redemptions")
    op.drop_index("ix_coupon_redemptions_customer_id", table_name="coupon_redemptions")
    op.drop_index("ix_coupon_redemptions_code_id", table_name="coupon_redemptions")
    op.drop_table("coupon_redemptions")
    op.drop_table("coupon_customer_uses")
    op.drop_index("ix_coupon_codes_series_id", table_name="coupon_codes")
    op.drop_index("ix_coupon_codes_customer_id", table_name="coupon_codes")
    op.drop_table("coupon_codes")
    op.drop_table("coupon_series")
