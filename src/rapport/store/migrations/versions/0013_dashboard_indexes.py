"""covering indexes for the dashboard's business figures: the counted orders by time with
what the figures read, and the live customers with their order aggregates, so both reads
are index-only

Revision ID: 0013
Revises: 0012

Create Date: 2026-11-22 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The literal the queries compare with (analytics/scope.counted): a partial index is used
# only when the query's condition is the index's condition, constant for constant.
COUNTED = sa.text("status = 'completed'")
LIVE = sa.text("merged_into IS NULL")
CUSTOMER_FACTS = ["orders_count", "first_order_at", "last_order_at", "first_seen_at", "created_at"]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.create_index(
            "ix_orders_counted_time",
            "orders",
            ["occurred_at"],
            postgresql_include=["customer_id", "total", "refunded"],
            postgresql_where=COUNTED,
        )
        op.create_index(
            "ix_customers_live_facts",
            "customers",
            ["id"],
            postgresql_include=CUSTOMER_FACTS,
            postgresql_where=LIVE,
        )
    else:  # SQLite has no INCLUDE: the same columns as keys, and the
        # condition's column too, or it reads the row to test it again
        op.create_index(
            "ix_orders_counted_time",
            "orders",
            ["occurred_at", "customer_id", "total", "refunded", "status"],
            sqlite_where=COUNTED,
        )
        op.create_index(
            "ix_customers_live_facts",
            "customers",
            ["id", *CUSTOMER_FACTS, "merged_into"],
            sqlite_where=LIVE,
        )


def downgrade() -> None:
    op.drop_index("ix_customers_live_facts", table_name="customers")
    op.drop_index("ix_orders_counted_time", table_name="orders")
