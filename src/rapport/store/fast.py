"""Hand-written statements for the few writes that run once per event.

SQLAlchemy Core is the default everywhere; but on the ingest hot path its per-row bind
processing (type decorators, datetime formatting) was the largest single cost in the
profile. These helpers send plain tuples straight to the driver, with values already in
the form each store keeps: SQLite stores UTC timestamps as text in SQLAlchemy's format,
so ``UTCDateTime`` reads them back unchanged.

On PostgreSQL a batch's rows travel as one array per column instead of one statement per
row: ``INSERT ... SELECT * FROM unnest(%s::bigint[], ...)`` is one statement to parse,
plan and execute, where executemany sends, binds and executes every row on its own (the
server's per-statement work was most of the ingest transaction's time). Likewise a list
of keys is one array parameter (``= ANY(%s)``) rather than an ``IN`` list whose text
changes with its length, which no driver or server cache can reuse. The arrays are sent
as PostgreSQL array literals built here: the driver's generic list adapter looks up an
adapter for every element and cost 5-7 times as much. SQLite runs in the process, where
executemany and ``IN`` cost no round trip and stay the fastest form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from rapport.store.engine import json_text


def is_sqlite(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


def db_time(conn: sa.Connection, moment: datetime | None) -> Any:
    """A timestamp as the store keeps it (the same form ``UTCDateTime`` writes)."""
    if moment is None:
        return None
    if is_sqlite(conn):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def run_many(
    conn: sa.Connection,
    sql: str,
    rows: Sequence[tuple[Any, ...]],
    *,
    array_types: Sequence[str] | None = None,
) -> None:
    """Execute ``sql`` (written with ``%s`` placeholders) once per row, in one driver call.

    With ``array_types`` (the PostgreSQL type of each placeholder, in order) an
    ``INSERT ... VALUES (%s, ...)`` runs on PostgreSQL as one statement over the rows'
    columns unnested. Its rows must then not repeat a conflict key: one statement cannot
    update the same row twice, where executemany would simply apply both.
    """
    if not rows:
        return
    if is_sqlite(conn):
        on_driver(conn, sql, list(rows), many=True)
    elif array_types is not None:
        on_driver(conn, _unnested(sql, tuple(array_types)), columns_of(rows))
    else:
        on_driver(conn, sql, list(rows), many=True)


def on_driver(conn: sa.Connection, sql: str, params: Any, *, many: bool = False) -> Any:
    """Run a hand-written statement (``%s`` placeholders) on the driver's own cursor, in
    the connection's transaction, and return that cursor.

    SQLAlchemy's bookkeeping around a textual statement (execution context, result
    metadata, events) cost ~40 µs of CPU per statement on PostgreSQL, as much as the
    driver's own work, and ~19 µs on SQLite, where the driver's is ~2 µs: a lone tracking
    call runs five or six of these. Errors come out as SQLAlchemy's exceptions
    (IntegrityError, OperationalError …), as callers and retries expect.
    """
    if not conn.in_transaction():
        conn.begin()  # so that conn.commit() commits what runs here (SQLite: BEGIN)
    if is_sqlite(conn):
        sql = sql.replace("%s", "?")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, dbapi_error, dialect=conn.dialect
        ) from exc
    return cursor


def columns_of(rows: Sequence[tuple[Any, ...]]) -> tuple[str, ...]:
    """Rows turned into one array literal per column: the parameters of an ``unnest``."""
    return tuple(array_literal(column) for column in zip(*rows, strict=True))


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (``{1,2}``, ``{"a",NULL}``) for a cast like ``%s::int[]``.

    Elements may be None, bool, int, float, Decimal, str, date or timezone-aware datetime.
    Text is always double-quoted with backslash escapes, so no value can end the element
    or the array early.
    """
    values = list(values)
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if kinds <= {int}:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    if kinds == {str}:
        return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"
    seen: dict[int, str] = {}  # a batch repeats its timestamps: format each object once
    parts = []
    for v in values:
        if type(v) is datetime:
            text = seen.get(id(v))
            if text is None:
                text = seen[id(v)] = _element(v)
        else:
            text = _element(v)
        parts.append(text)
    return "{" + ",".join(parts) + "}"


def _quoted(text: str) -> str:
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


def _element(v: Any) -> str:
    if v is None:
        return "NULL"
    if v is True or v is False:
        return "t" if v else "f"
    if isinstance(v, int | float | Decimal):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError(f"a timestamp without a time zone: {v!r}")
        text = v.isoformat()
    elif isinstance(v, date):
        text = v.isoformat()
    elif isinstance(v, str):
        text = v
    else:
        raise TypeError(f"no array form for {type(v).__name__}: {v!r}")
    return _quoted(text)


_VALUES = re.compile(r"VALUES\s*\(\s*%s(?:\s*,\s*%s)*\s*\)")


@lru_cache(maxsize=128)
def _unnested(sql: str, types: tuple[str, ...]) -> str:
    match = _VALUES.search(sql)
    if match is None or match.group(0).count("%s") != len(types):
        raise ValueError(f"expected VALUES with {len(types)} placeholders in: {sql}")
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    return f"{sql[: match.start()]}SELECT * FROM unnest({arrays}){sql[match.end() :]}"


def insert_unnest(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    tail: str = "",
) -> Any:
    """PostgreSQL only: ``INSERT INTO table (columns) SELECT * FROM unnest(...)`` + ``tail``
    (``ON CONFLICT ...``, ``RETURNING ...``), the arrays typed from the table's columns and
    JSON values written as JSON text. For the inserts that need what executemany cannot
    give (an upsert's or a new row's id back): SQLAlchemy's form of them renders one
    placeholder per value, so its text, the driver's parse and the server's plan are new
    for every batch size. Returns the driver's cursor: with a ``RETURNING`` tail, its
    ``fetchall()`` rows come in no promised order; match them by a key."""
    types, json_at = _column_types(conn, table, tuple(columns))
    if json_at:
        rows = [
            tuple(json_text(v) if i in json_at and v is not None else v for i, v in enumerate(r))
            for r in rows
        ]
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){tail}"
    return on_driver(conn, sql, columns_of(rows))


_TYPES: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], frozenset[int]]] = {}


def _column_types(
    conn: sa.Connection, table: sa.Table, columns: tuple[str, ...]
) -> tuple[tuple[str, ...], frozenset[int]]:
    key = (table.name, columns)
    found = _TYPES.get(key)
    if found is None:
        kinds = [table.c[name].type.dialect_impl(conn.dialect) for name in columns]
        types = tuple(t.compile(conn.dialect) for t in kinds)
        json_at = frozenset(i for i, t in enumerate(kinds) if isinstance(t, sa.JSON))
        found = _TYPES[key] = (types, json_at)
    return found


def among(conn: sa.Connection, column: sa.ColumnElement[Any], values: Iterable[Any]) -> Any:
    """``column IN values``: on PostgreSQL one array parameter, so the statement's text, its
    compiled form and its server-side plan stay the same whatever the number of values."""
    values = list(values)
    if is_sqlite(conn):
        return column.in_(values)
    array = sa.cast(sa.bindparam(None, array_literal(values), type_=sa.Text), _array_of(column))
    return column == sa.any_(array)


def _array_of(column: sa.ColumnElement[Any]) -> postgresql.ARRAY[Any]:
    return postgresql.ARRAY(column.type)


def update_rows(
    conn: sa.Connection,
    table: str,
    key: str,
    columns: Sequence[tuple[str, str, str]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """``UPDATE table SET ... WHERE key = ...`` for many rows: one statement on PostgreSQL.

    ``columns`` names each column set, its PostgreSQL type and the expression it takes,
    with ``{new}`` for the row's value (used once) and ``{old}`` for the current one
    (``"{new}"``, ``"coalesce({new}, {old})"``). Each row is ``(key, *values)`` with values
    in the form the store keeps (``db_time``); keys must not repeat. The key is a bigint.
    """
    if not rows:
        return
    if is_sqlite(conn):
        sets = ", ".join(f"{name} = {expr.format(new='?', old=name)}" for name, _, expr in columns)
        on_driver(
            conn,
            f"UPDATE {table} SET {sets} WHERE {key} = ?",
            [(*row[1:], row[0]) for row in rows],
            many=True,
        )
        return
    sets = ", ".join(
        f"{name} = {expr.format(new=f'v.{name}', old=f't.{name}')}" for name, _, expr in columns
    )
    arrays = ", ".join(f"%s::{pg_type}[]" for pg_type in ("bigint", *(c[1] for c in columns)))
    names = ", ".join((key, *(c[0] for c in columns)))
    on_driver(
        conn,
        f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS v({names}) "
        f"WHERE t.{key} = v.{key}",
        columns_of(rows),
    )


def key_test(
    conn: sa.Connection, column: str, values: Sequence[Any], pg_type: str
) -> tuple[str, list[Any]]:
    """The SQL test ``column`` in ``values`` and its parameters, for a hand-written
    statement: ``= ANY(%s::type[])`` on PostgreSQL (one text whatever the count), ``IN``
    on SQLite (keep it under SQLite's limit of bound variables: 500 a chunk is safe)."""
    if is_sqlite(conn):
        return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)
    return f"{column} = ANY(%s::{pg_type}[])", [array_literal(values)]


def execute(conn: sa.Connection, sql: str, params: Sequence[Any]) -> None:
    """Run a hand-written statement (``%s`` placeholders) once, on either store."""
    on_driver(conn, sql, tuple(params))


def fetch(conn: sa.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of a hand-written query (``%s`` placeholders), as driver tuples."""
    return list(on_driver(conn, sql, tuple(params)).fetchall())
