"""Hand-written statements for the few writes that run once per event.

SQLAlchemy Core is the default everywhere; but on the ingest hot path its per-row bind
processing (type decorators, datetime formatting) was the largest single cost in the
profile. These helpers send plain tuples straight to the driver, with values already in
the form each store keeps: SQLite stores UTC timestamps as text in SQLAlchemy's format,
so ``UTCDateTime`` reads them back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa


def is_sqlite(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


def db_time(conn: sa.Connection, moment: datetime | None) -> Any:
    """A timestamp as the store keeps it (the same form ``UTCDateTime`` writes)."""
    if moment is None:
        return None
    if is_sqlite(conn):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def run_many(conn: sa.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Execute ``sql`` (written with ``%s`` placeholders) once per row, in one driver call."""
    if not rows:
        return
    if is_sqlite(conn):
        sql = sql.replace("%s", "?")
    conn.exec_driver_sql(sql, list(rows))
