"""the loyalty programme: the points ledger, lots, accounts and tiers, redemptions

Revision ID: 0010
Revises: 0009

Create Date: 2026-11-22 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rapport.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    moment = rapport.store.types.UTCDateTime(timezone=True)

    op.create_table(
        "loyalty_ledger",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=300), server_default="", nullable=False),
        sa.Column("details", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_ledger")),
        sa.UniqueConstraint("key", name=op.f("uq_loyalty_ledger_key")),
    )
    op.create_index("ix_loyalty_ledger_customer", "loyalty_ledger", ["customer_id", "id"])
    op.create_index("ix_loyalty_ledger_order", "loyalty_ledger", ["order_id"])

    op.create_table(
        "loyalty_lots",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("entry_id", big_id, nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("activates_at", moment, nullable=True),
        sa.Column("expires_at", moment, nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_lots")),
    )
    op.create_index(
        "ix_loyalty_lots_customer", "loyalty_lots", ["customer_id", "status", "expires_at"]
    )
    op.create_index("ix_loyalty_lots_order", "loyalty_lots", ["order_id"])
    active = sa.text("status = 'active' AND remaining > 0")
    op.create_index(
        "ix_loyalty_lots_expiring",
        "loyalty_lots",
        ["expires_at", "customer_id"],
        postgresql_where=active,
        sqlite_where=active,
    )
    pending = sa.text("status = 'pending' AND remaining > 0")
    op.create_index(
        "ix_loyalty_lots_activation",
        "loyalty_lots",
        ["activates_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )

    op.create_table(
        "loyalty_accounts",
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("balance", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=True),
        sa.Column("tier_since", moment, nullable=True),
        sa.Column("next_expiry_at", moment, nullable=True),
        sa.Column("updated_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_loyalty_accounts")),
    )
    op.create_index("ix_loyalty_accounts_tier", "loyalty_accounts", ["tier"])

    op.create_table(
        "loyalty_redemptions",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("request", json, nullable=False),
        sa.Column("result", json, nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_loyalty_redemptions")),
    )
    op.create_index("ix_loyalty_redemptions_customer", "loyalty_redemptions", ["customer_id"])
    op.create_index("ix_loyalty_redemptions_order", "loyalty_redemptions", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_loyalty_redemptions_order", table_name="loyalty_redemptions")
    op.drop_index("ix_loyalty_redemptions_customer", table_name="loyalty_redemptions")
    op.drop_table("loyalty_redemptions")
    op.drop_index("ix_loyalty_accounts_tier", table_name="loyalty_accounts")
    op.drop_table("loyalty_accounts")
    op.drop_index("ix_loyalty_lots_activation", table_name="loyalty_lots")
    op.drop_index("ix_loyalty_lots_expiring", table_name="loyalty_lots")
    op.drop_index("ix_loyalty_lots_order", table_name="loyalty_lots")
    op.drop_index("ix_loyalty_lots_customer", table_name="loyalty_lots")
    op.drop_table("loyalty_lots")
    op.drop_index("ix_loyalty_ledger_order", table_name="loyalty_ledger")
    op.drop_index("ix_loyalty_ledger_customer", table_name="loyalty_ledger")
    op.drop_table("loyalty_ledger")
