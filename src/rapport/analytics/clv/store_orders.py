"""The store's counted orders as three NumPy arrays: customer id, UTC day, net amount.

Scoring a million customers reads several million orders, and building a Python tuple per
row was most of the time it took. So the query returns only the three columns, computed
in SQL (the day as a number, the amount net of refunds), and on PostgreSQL it is streamed
with ``COPY … TO STDOUT (FORMAT BINARY)``, whose fixed-width rows NumPy reads in place.
SQLite has no such stream; its rows are fetched in chunks of plain tuples straight from
the driver.

Orders count as on the card (``completed``, cancelled and fully refunded ones do not) and
belong to live profiles (a merged profile's orders moved to the survivor). There is no
time filter in SQL: on SQLite it made the planner walk the ``occurred_at`` index and fetch
the orders in random order; the summary drops days after its observation end instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.analytics.clv.fitting import FloatArray, IntArray
from rapport.customers.computed import COUNTED_ORDER_STATUSES
from rapport.store.tables import customers, orders

READ_CHUNK = 100_000
# One binary COPY row: field count, then (length, value) for bigint, bigint, float8.
_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("n1", ">i4"),
        ("customer", ">i8"),
        ("n2", ">i4"),
        ("day", ">i8"),
        ("n3", ">i4"),
        ("amount", ">f8"),
    ]
)
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"

# (rows read, rows expected)
Progress = Callable[[int, int], None]


def _day_number(dialect: str) -> sa.ColumnElement[Any]:
    """Days since 1970-01-01 of the order's UTC time, as an integer, in SQL."""
    o = orders.c
    if dialect == "sqlite":
        return sa.cast(sa.func.julianday(o.occurred_at) - 2440587.5, sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", o.occurred_at) / 86400.0), sa.BigInteger)


def counted_orders_query(dialect: str) -> sa.Select[Any]:
    o = orders.c
    merged = sa.select(customers.c.id).where(customers.c.merged_into.is_not(None))
    return sa.select(
        o.customer_id,
        _day_number(dialect),
        sa.cast(o.total - o.refunded, sa.Float),
    ).where(o.status.in_(COUNTED_ORDER_STATUSES), o.customer_id.not_in(merged))


def read_counted_orders(
    conn: sa.Connection, progress: Progress | None = None
) -> tuple[IntArray, IntArray, FloatArray]:
    """(customer id, UTC day number, total − refunded) of every counted order."""
    expected = int(conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one())
    report = progress or (lambda done, total: None)
    report(0, expected)
    if conn.dialect.name == "postgresql":
        arrays = _copy_binary(conn, report, expected)
    else:
        arrays = _fetch_rows(conn, report, expected)
    report(len(arrays[0]), len(arrays[0]))
    return arrays


def _literal_sql(conn: sa.Connection) -> str:
    query = counted_orders_query(conn.dialect.name)
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _fetch_rows(
    conn: sa.Connection, report: Progress, expected: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Chunks of plain tuples from the driver's cursor, each turned into one array:
    SQLAlchemy's row objects and unpacking them cost as much as SQLite's own fetch."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    ids, days, amounts = [], [], []
    done = 0
    try:
        cursor.execute(_literal_sql(conn))
        while chunk := cursor.fetchmany(READ_CHUNK):
            # Ids and day numbers are exact in float64 (below 2^53).
            block = np.array(chunk, dtype=np.float64).reshape(-1, 3)
            ids.append(block[:, 0].astype(np.int64))
            days.append(block[:, 1].astype(np.int64))
            amounts.append(block[:, 2].copy())
            done += len(chunk)
            report(done, max(expected, done))
    finally:
        cursor.close()
    return _joined(ids, days, amounts)


def _joined(ids: list[Any], days: list[Any], amounts: list[Any]) -> tuple[Any, Any, Any]:
    if not ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(ids), np.concatenate(days), np.concatenate(amounts)


def _copy_binary(
    conn: sa.Connection, report: Progress, expected: int
) -> tuple[IntArray, IntArray, FloatArray]:
    sql = _literal_sql(conn)
    raw = conn.connection.driver_connection
    assert raw is not None
    ids, days, amounts = [], [], []
    done = 0
    blocks: list[bytes] = []  # PostgreSQL sends a message per row: parse them in bulk
    size = 0
    rest = b""

    def parse(data: bytes) -> bytes:
        nonlocal done
        whole = len(data) // _ROW.itemsize
        rows = np.frombuffer(data, dtype=_ROW, count=whole)
        _check(rows)
        ids.append(rows["customer"].astype(np.int64))
        days.append(rows["day"].astype(np.int64))
        amounts.append(rows["amount"].astype(np.float64))
        done += whole
        report(done, max(expected, done))
        return data[whole * _ROW.itemsize :]

    with raw.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)") as copy:
        for data in copy:
            blocks.append(bytes(data))
            size += len(data)
            if size >= _ROW.itemsize * READ_CHUNK:
                rest = parse(_without_header(rest + b"".join(blocks), not ids))
                blocks, size = [], 0
    rest = _without_header(rest + b"".join(blocks), not ids)
    if len(rest) > 2:
        rest = parse(rest)
    if rest != b"\xff\xff":
        raise RuntimeError("unexpected end of the COPY BINARY stream from PostgreSQL")
    return _joined(ids, days, amounts)


def _without_header(data: bytes, first: bool) -> bytes:
    """The stream starts with a signature, flags and a header extension."""
    if not first:
        return data
    if data[:11] != _SIGNATURE:
        raise RuntimeError("unexpected COPY BINARY header from PostgreSQL")
    extension = int.from_bytes(data[15:19], "big")
    return data[19 + extension :]


def _check(rows: np.ndarray) -> None:
    """Every row has three non-null 8-byte fields (NULLs would shift the layout)."""
    ok = (
        np.all(rows["fields"] == 3)
        and np.all(rows["n1"] == 8)
        and np.all(rows["n2"] == 8)
        and np.all(rows["n3"] == 8)
    )
    if not ok:
        raise RuntimeError("unexpected COPY BINARY row layout from PostgreSQL")
