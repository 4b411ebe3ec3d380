"""Migrations apply from nothing, keep data across revisions, and go back down cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from rapport.store.engine import create_engine
from rapport.store.migrate import alembic_config, current_revision, upgrade
from tests.postgres_server import create_database, server_url


def _roundtrip(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (created_at, updated_at, traits, events_count, "
                "orders_count, revenue) VALUES ('2026-01-01', '2026-01-01', '{}', 3, 1, 9.5)"
            )
        )
    upgrade(engine)
    assert current_revision(engine) == "0017"
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT events_count, rfm_cell FROM customers")).one()
    assert tuple(row) == (3, None)
    config = alembic_config(url)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        conn.commit()
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == "0017"
    engine.dispose()


def test_sqlite_migrations(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path}/m.db")


def test_postgres_migrations():
    url, drop = create_database(server_url(), "rapport_migrate")
    try:
        _roundtrip(url)
    finally:
        drop()  # type: ignore[operator]


def _stripes_roundtrip(url: str) -> None:
    """0017 keeps the roll-ups' figures: old rows become stripe 0, and going back down
    folds the stripes of a key into one row."""
    engine = create_engine(url)
    upgrade(engine, "0016")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO order_days (day, prev_day, orders, revenue_micros) "
                "VALUES ('2026-03-02', '2026-02-01', 2, 500), ('2026-03-03', '2026-03-02', 1, 7)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO order_nth_days (nth, day, orders) VALUES (2, '2026-03-02', 2)")
        )
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT stripe FROM order_days")).scalars().all() == [
            0
        ]
        conn.execute(
            sa.text(
                "INSERT INTO order_days (day, prev_day, stripe, orders, revenue_micros) "
                "VALUES ('2026-03-02', '2026-02-01', 1, 3, 40)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO order_nth_days (nth, day, stripe, orders) VALUES (2, '2026-03-02', 1, 4)"
            )
        )
    config = alembic_config(url)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0016")
        conn.commit()
    with engine.connect() as conn:
        days = conn.execute(
            sa.text("SELECT day, prev_day, orders, revenue_micros FROM order_days ORDER BY day")
        ).all()
        nths = conn.execute(sa.text("SELECT nth, day, orders FROM order_nth_days")).all()
    assert [(str(d), str(p), n, r) for d, p, n, r in days] == [
        ("2026-03-02", "2026-02-01", 5, 540),
        ("2026-03-03", "2026-03-02", 1, 7),
    ]
    assert [(n, str(d), o) for n, d, o in nths] == [(2, "2026-03-02", 6)]
    engine.dispose()


def test_sqlite_rollup_stripes_keep_the_figures(tmp_path):
    _stripes_roundtrip(f"sqlite:///{tmp_path}/s.db")


def test_postgres_rollup_stripes_keep_the_figures():
    url, drop = create_database(server_url(), "rapport_stripes")
    try:
        _stripes_roundtrip(url)
    finally:
        drop()  # type: ignore[operator]
