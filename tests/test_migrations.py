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
    assert current_revision(engine) == "0016"
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
    assert current_revision(engine) == "0016"
    engine.dispose()


def test_sqlite_migrations(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path}/m.db")


def test_postgres_migrations():
    url, drop = create_database(server_url(), "rapport_migrate")
    try:
        _roundtrip(url)
    finally:
        drop()  # type: ignore[operator]
