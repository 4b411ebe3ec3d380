"""The real-time step's reads and writes, as plain driver statements with stable texts.

They run for every ingested batch, a few hundred rows each, and in the profile of ingest
with segments the SQLAlchemy layer around them cost more than the store did: building the
expression, its cache key, expanding ``IN`` lists, and a ``Row`` with type processors per
row. Here each statement is a fixed string per shape, rows are plain driver tuples, and
the few conversions the evaluator needs (SQLite's timestamp and date text, JSON text) are
done by hand, to the same values ``UTCDateTime``, ``Date`` and ``JSONDoc`` give.

On PostgreSQL a list of customers is one array parameter (``= ANY(%s::bigint[])``)
rather than an ``IN`` list: an ``IN`` list of every length is a new statement text, which
neither the driver (prepared after a few runs of the same text) nor the server's planner
can reuse. SQLite keeps ``IN (?, …)``: its statements are cheap to prepare, and an ``IN``
list is what its planner probes an index with best.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from rapport.store.fast import db_time, fetch, key_test

# Customers per statement: on SQLite an ``IN`` list (a longer one gains nothing); on
# PostgreSQL one array, so a real-time batch is always one statement.
CHUNK = 500
ARRAY_CHUNK = 10_000


class Driver:
    """The dialect's placeholders and value forms for hand-written statements."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    def chunks(self, ids: Sequence[int]) -> Iterator[Sequence[int]]:
        size = ARRAY_CHUNK if self.postgres else CHUNK
        for start in range(0, len(ids), size):
            yield ids[start : start + size]

    def ids_sql(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """The test ``column`` in ``ids`` and its parameters."""
        return key_test(self.conn, column, ids, "bigint")

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return fetch(self.conn, sql, params)

    # Values as the store keeps them (what UTCDateTime and Date write), and back.

    def moment(self, value: datetime) -> Any:
        return db_time(self.conn, value)

    def day(self, value: date) -> Any:
        return value if self.postgres else value.isoformat()

    @property
    def read_moment(self) -> Callable[[Any], datetime]:
        return _pg_moment if self.postgres else _sqlite_moment

    @property
    def read_day(self) -> Callable[[Any], date]:
        return _same if self.postgres else date.fromisoformat

    @property
    def read_json(self) -> Callable[[Any], Any]:
        return _same if self.postgres else _json


def _pg_moment(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _sqlite_moment(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _same(value: Any) -> Any:
    return value


def _json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)
