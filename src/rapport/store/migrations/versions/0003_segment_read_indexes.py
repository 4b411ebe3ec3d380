"""indexes for segment evaluation by event name and time

Revision ID: 0003
Revises: 0002

An event condition compiles to ``customer_id IN (SELECT customer_id FROM event_counters
WHERE name = :name AND day >= :since …)``, and, with property filters, to the same over
``events`` with ``occurred_at``. The only indexes were keyed by customer first, so both
were sequential scans of the whole table: counting a segment on a million customers read
all ~12M counter rows or all ~20M events (bench/segments.py, docs/benchmarks.md).

* ``event_counters (name, day, customer_id, count)`` turns that into a range scan of the
  window, answered from the index alone (``count`` is there for ``sum(count)`` of
  "at least N times", as a key column because SQLite has no INCLUDE).
* ``events (name, occurred_at)`` bounds a property-filtered condition by its window; the
  properties are then read only for the rows inside it.

Create Date: 2026-11-22 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_counters", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_counters_name_day", ["name", "day", "customer_id", "count"], unique=False
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_name_time", ["name", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_name_time")
    with op.batch_alter_table("event_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_event_counters_name_day")
