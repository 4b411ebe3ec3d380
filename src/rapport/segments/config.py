"""Operator settings kept in the store (``app_settings``), so they change without a restart.

Each value is a JSON document under one key; RFM and lifecycle keep their settings and the
last computed thresholds here, which is also what lets the per-customer (real-time) step
score one customer without recomputing the whole store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import app_settings


def read_setting(conn: sa.Connection, key: str) -> Any:
    """The stored value, or None when the key was never set."""
    return conn.execute(_READ, {"key": key}).scalar_one_or_none()


# Built once: settings are read on every tick of the worker's jobs.
_READ = sa.select(app_settings.c.value).where(app_settings.c.key == sa.bindparam("key"))


def write_setting(conn: sa.Connection, key: str, value: Any, now: datetime) -> None:
    stmt = upsert(conn, app_settings).values(key=key, value=value, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt)


def without_jit(conn: sa.Connection) -> None:
    """Turn PostgreSQL's JIT off for this transaction.

    The bulk statements here carry long CASE expressions (the RFM grid) over a hundred
    thousand rows or more; compiling them costs more than it saves (measured: ~290 ms of
    a 430 ms update on 100k customers), so the planner's cost-based choice is wrong.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
