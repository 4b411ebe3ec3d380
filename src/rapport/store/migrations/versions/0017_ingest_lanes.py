"""ingest lanes: the inbox's requests carry a lane, and the order roll-ups are kept in
stripes, so appliers side by side neither take the same requests nor wait on one row

Revision ID: 0017
Revises: 0016

Create Date: 2026-11-23 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# roll-up table, its key before, its key now
KEYS = (
    ("order_days", ["day", "prev_day"], ["day", "prev_day", "stripe"]),
    ("order_nth_days", ["nth", "day"], ["nth", "day", "stripe"]),
)


def upgrade() -> None:
    # Requests already waiting are lane 0, which some applier always takes.
    op.add_column(
        "ingest_inbox",
        sa.Column("lane", sa.SmallInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_ingest_inbox_lane", "ingest_inbox", ["lane", "id"])
    for table, _, key in KEYS:
        # Existing rows become stripe 0: the figures (sums over stripes) do not change.
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("stripe", sa.SmallInteger(), nullable=False, server_default="0")
            )
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)


def downgrade() -> None:
    for table, old, _ in KEYS:
        others = ["orders", "revenue_micros"] if table == "order_days" else ["orders"]
        sums = ", ".join(f"sum({c}) AS {c}" for c in others)
        columns = ", ".join(old)
        # Fold the stripes back into one row per key before the key loses its stripe.
        op.execute(f"CREATE TEMPORARY TABLE folded AS SELECT {columns}, {sums} FROM {table} "
                   f"GROUP BY {columns}")  # fmt: skip
        op.execute(f"DELETE FROM {table}")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.drop_column("stripe")
            batch.create_primary_key(f"pk_{table}", old)
        op.execute(f"INSERT INTO {table} ({columns}, {', '.join(others)}) SELECT * FROM folded")
        op.execute("DROP TABLE folded")
    op.drop_index("ix_ingest_inbox_lane", table_name="ingest_inbox")
    with op.batch_alter_table("ingest_inbox") as batch:
        batch.drop_column("lane")
