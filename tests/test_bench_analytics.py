"""The analytics benchmark's store and baseline (bench/analytics_data.py, bench/analytics.py)
against the live code paths, at a small size on both stores: the message facts made by one
INSERT … SELECT equal what ``fold_message_events`` makes of the same events, the credits
made by one statement equal ``rebuild_attribution``'s, the dashboard's message figures
equal the baseline's, counted straight from the events, and its business figures from the
order roll-ups equal the statement over the orders. No timings here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench.analytics import SLOW_RHYTHM, differences, naive_messages, rolled_up
from bench.analytics_data import Shape, build

from rapport.analytics.attribution import rebuild_attribution
from rapport.analytics.business import dashboard_business
from rapport.analytics.dashboard import dashboard
from rapport.analytics.message_facts import OUTCOME_OF_EVENT, fold_message_events
from rapport.analytics.periods import preset
from rapport.store.engine import create_engine, writing
from rapport.store.tables import (
    events,
    message_daily,
    message_facts,
    metadata,
    order_attributions,
)
from tests.conftest import T0


@contextmanager
def second_store(engine: sa.Engine, tmp_path: Path) -> Iterator[sa.Engine]:
    """Another store of the same dialect with the two tables the fold writes (on PostgreSQL
    a schema of its own in the same database: quicker than a second database)."""
    if engine.dialect.name == "sqlite":
        other = create_engine(f"sqlite:///{tmp_path}/second.db")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA fold_check")
        url = engine.url.render_as_string(hide_password=False)
        other = create_engine(url, connect_args={"options": "-csearch_path=fold_check"})
    metadata.create_all(other, tables=[message_facts, message_daily])
    try:
        yield other
    finally:
        other.dispose()
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA fold_check CASCADE")


def rows(conn: sa.Connection, table: sa.Table, *order: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(table).order_by(*order)).mappings()]


def test_generated_store_agrees_with_the_live_paths(engine: sa.Engine, tmp_path: Path) -> None:
    built = build(engine, Shape(customers=150), T0)
    assert built.counts["events"] > 25 * 150
    assert built.counts["order_attributions"] > 0
    with engine.connect() as conn:
        # Customers' computed fields agree with their orders.
        assert (
            conn.exec_driver_sql("SELECT sum(orders_count) FROM customers").scalar_one()
            == built.counts["completed_orders"]
        )
        facts = rows(conn, message_facts, message_facts.c.message_key)
        daily = rows(conn, message_daily, *message_daily.primary_key.columns)
        credits = rows(conn, order_attributions, order_attributions.c.order_pk)
        status_events = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    events.c.customer_id, events.c.name, events.c.properties, events.c.occurred_at
                )
                .where(events.c.name.in_(sorted(OUTCOME_OF_EVENT)))
                .order_by(events.c.id)
            ).mappings()
        ]

    # The same events folded the live way into an empty store give the same facts and roll-up.
    with second_store(engine, tmp_path) as other:
        with other.connect() as conn:
            assert rows(conn, message_facts, message_facts.c.message_key) == []
        for start in range(0, len(status_events), 2000):
            with writing(other) as conn:
                fold_message_events(conn, status_events[start : start + 2000])
        with other.connect() as conn:
            assert rows(conn, message_facts, message_facts.c.message_key) == facts
            assert rows(conn, message_daily, *message_daily.primary_key.columns) == daily

    with engine.connect() as conn:
        # The live crediting, order by order, credits the same messages.
        rebuild_attribution(conn)
        assert rows(conn, order_attributions, order_attributions.c.order_pk) == credits
        conn.rollback()

        # The baseline from the raw events gives the dashboard's message figures.
        period = preset("last_30_days", T0.date())
        assert differences(rolled_up(conn, period), naive_messages(conn, period)) == []
        conn.rollback()
        board = dashboard(conn, period, T0)
        assert board["messages"]["sent"] > 0
        assert board["business"]["orders"] > 0
        # The order roll-ups the builder filled give the business figures of the orders.
        assert board["business"]["active_customers"] > 0
        for thresholds in (None, SLOW_RHYTHM):
            fast = dashboard_business(conn, period, thresholds=thresholds)
            slow = dashboard_business(conn, period, thresholds=thresholds, from_orders=True)
            assert differences(fast, slow) == []
        assert isinstance(board["alerts"], list)
