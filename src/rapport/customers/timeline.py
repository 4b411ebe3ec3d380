"""The timeline: every event of a customer, whatever its source, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from rapport.store.fast import db_time, fetch, insert_unnest, is_sqlite, key_test, run_many
from rapport.store.tables import events


def existing_message_ids(conn: sa.Connection, message_ids: list[str]) -> set[str]:
    found: set[str] = set()
    step = 500 if is_sqlite(conn) else len(message_ids) or 1  # SQLite's bound-variable limit
    for start in range(0, len(message_ids), step):
        test, params = key_test(conn, "message_id", message_ids[start : start + step], "text")
        found.update(
            r[0] for r in fetch(conn, f"SELECT message_id FROM events WHERE {test}", params)
        )
    return found


_COPY_COLUMNS = (
    "customer_id",
    "message_id",
    "type",
    "name",
    "properties",
    "context",
    "occurred_at",
    "received_at",
    "source",
)


# On PostgreSQL, fewer events than this go in as one INSERT over arrays: COPY takes more
# round trips (start, data, end), which a lone tracking call's latency felt; from here on
# COPY's cheaper per-row parsing wins.
COPY_FROM = 64


def store_events(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Append events: COPY (or, for a few, one INSERT) on PostgreSQL, one executemany on
    SQLite."""
    if not rows:
        return

    def dumps(value: Any) -> str:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

    if is_sqlite(conn):
        run_many(
            conn,
            f"INSERT INTO events ({', '.join(_COPY_COLUMNS)}) VALUES ({', '.join(['%s'] * 9)})",
            [
                (
                    r["customer_id"],
                    r["message_id"],
                    r["type"],
                    r["name"],
                    dumps(r["properties"]),
                    dumps(r["context"]),
                    db_time(conn, r["occurred_at"]),
                    db_time(conn, r["received_at"]),
                    r["source"],
                )
                for r in rows
            ],
        )
        return
    if len(rows) < COPY_FROM:
        insert_unnest(
            conn, events, _COPY_COLUMNS, [tuple(r[c] for c in _COPY_COLUMNS) for r in rows]
        )
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY events ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
        copy.write(_copy_text(rows))


def _copy_text(rows: list[dict[str, Any]]) -> str:
    """The rows in COPY's text format, written here in one piece: the driver's row writer
    adapted every field on its own and cost twice as much per event."""
    stamps: dict[int, str] = {}  # by object: an aware datetime's own hash is slow to compute

    def moment(value: datetime) -> str:
        text = stamps.get(id(value))
        if text is None:
            text = stamps[id(value)] = value.isoformat()
        return text

    return "".join(
        f"{int(r['customer_id'])}\t{_field(r['message_id'])}\t{_field(r['type'])}\t"
        f"{_field(r['name'])}\t{_json_field(r['properties'])}\t{_json_field(r['context'])}\t"
        f"{moment(r['occurred_at'])}\t{moment(r['received_at'])}\t{_field(r['source'])}\n"
        for r in rows
    )


def _field(value: str) -> str:
    """A text field of COPY's text format: backslash, tab and line breaks escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _json_field(value: Any) -> str:
    """JSON text never holds a raw tab or line break (they are escaped inside strings), so
    only its backslashes need doubling."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def timeline(
    conn: sa.Connection,
    customer_id: int,
    *,
    limit: int = 50,
    before: tuple[datetime, int] | None = None,
    names: list[str] | None = None,
    sources: list[str] | None = None,
) -> list[dict[str, Any]]:
    """A page of events, newest first; ``before`` is the (occurred_at, id) cursor of the last row."""
    e = events.c
    query = sa.select(events).where(e.customer_id == customer_id)
    if before is not None:
        at, event_id = before
        query = query.where(
            sa.or_(e.occurred_at < at, sa.and_(e.occurred_at == at, e.id < event_id))
        )
    if names:
        query = query.where(e.name.in_(names))
    if sources:
        query = query.where(e.source.in_(sources))
    query = query.order_by(e.occurred_at.desc(), e.id.desc()).limit(limit)
    return [
        {
            "id": r.id,
            "type": r.type,
            "name": r.name,
            "properties": r.properties,
            "context": r.context,
            "occurred_at": r.occurred_at,
            "received_at": r.received_at,
            "source": r.source,
            "message_id": r.message_id,
        }
        for r in conn.execute(query)
    ]
