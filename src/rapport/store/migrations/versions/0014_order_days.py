"""the dashboard's business figures from roll-ups: each counted order's place in its
customer's history, the counted orders per day and previous order's day, and per number
in the history and day, filled from the orders; the live customers by the moment the store
first knew them

Revision ID: 0014
Revises: 0013

Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LIVE = sa.text("merged_into IS NULL")
# analytics/scope.known_since, as the dashboard's query writes it: an expression index
# serves a query only when the query's expression is the index's.
KNOWN_SINCE = (
    "(CASE WHEN (first_seen_at IS NOT NULL AND (first_order_at IS NULL OR "
    "first_seen_at <= first_order_at)) THEN first_seen_at WHEN (first_order_at IS NOT NULL) "
    "THEN first_order_at ELSE created_at END)"
)


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "order_sequence",
        sa.Column("order_pk", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("prev_day", sa.Date(), nullable=False),
        sa.Column("nth", sa.Integer(), nullable=False),
        sa.Column("net_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_pk", name=op.f("pk_order_sequence")),
    )
    op.create_table(
        "order_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("prev_day", sa.Date(), nullable=False),
        sa.Column("orders", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("revenue_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", "prev_day", name=op.f("pk_order_days")),
    )
    op.create_table(
        "order_nth_days",
        sa.Column("nth", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("orders", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("nth", "day", name=op.f("pk_order_nth_days")),
    )
    fill()
    op.create_index("ix_order_sequence_customer", "order_sequence", ["customer_id"])
    op.create_index(
        "ix_customers_known_since",
        "customers",
        [sa.text(KNOWN_SINCE)],
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def fill() -> None:
    """What ``rapport analytics rebuild --orders`` computes (analytics/order_days.rebuild),
    written out here so that this revision stays what it is when the code moves on."""
    pg = op.get_context().dialect.name == "postgresql"
    if pg:  # one sort of every counted order, and the indexes after: memory for both
        op.execute("SET LOCAL work_mem = '256MB'")
        op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    day = "CAST(timezone('UTC', occurred_at) AS DATE)" if pg else "substr(occurred_at, 1, 10)"
    none = "DATE '0001-01-01'" if pg else "'0001-01-01'"
    whole = "BIGINT" if pg else "INTEGER"
    op.execute(
        "INSERT INTO order_sequence (order_pk, customer_id, day, prev_day, nth, net_micros) "
        f"SELECT id, customer_id, day, coalesce(lag(day) OVER w, {none}), row_number() OVER w, "
        f"CAST(round((total - refunded) * 1000000) AS {whole}) "
        f"FROM (SELECT id, customer_id, occurred_at, {day} AS day, total, refunded FROM orders "
        "WHERE status = 'completed') o "
        "WINDOW w AS (PARTITION BY customer_id ORDER BY occurred_at, id)"
    )
    op.execute(
        "INSERT INTO order_days (day, prev_day, orders, revenue_micros) "
        "SELECT day, prev_day, count(*), sum(net_micros) FROM order_sequence "
        "GROUP BY day, prev_day"
    )
    op.execute(
        "INSERT INTO order_nth_days (nth, day, orders) "
        "SELECT nth, day, count(*) FROM order_sequence GROUP BY nth, day"
    )


def downgrade() -> None:
    op.drop_index("ix_customers_known_since", table_name="customers")
    op.drop_index("ix_order_sequence_customer", table_name="order_sequence")
    op.drop_table("order_nth_days")
    op.drop_table("order_days")
    op.drop_table("order_sequence")
