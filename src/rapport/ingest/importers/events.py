"""Event rows become ``track`` calls, so imported history counts like live history.

Properties come from a ``properties`` JSON column, from ``prop_<name>`` columns, and from
any other column. A ``message_id`` column, when the source system has one, is used as
is, so an event already sent through the API is not stored twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rapport.ingest.importers.common import (
    WHO_COLUMNS,
    Cells,
    Record,
    RowProblem,
    path_field,
    unreadable,
    who,
)
from rapport.ingest.importers.readers import ImportFileError, Row
from rapport.ingest.importers.values import json_value, loose, message_id, text


class EventsMapper:
    kind = "events"

    def __init__(self, typed: bool) -> None:
        self.typed = typed

    def check_columns(self, columns: list[str]) -> None:
        if "event" not in columns:
            raise ImportFileError("an events file needs an event column")
        if not WHO_COLUMNS & set(columns):
            raise ImportFileError(
                "an events file needs a user_id, anonymous_id, email or phone column"
            )

    def records(self, rows: Iterator[Row]) -> Iterator[Record]:
        for row in rows:
            yield unreadable(row) if row.problem else self.record(row)

    def record(self, row: Row) -> Record:
        problems: list[RowProblem] = []
        cells = Cells(row, self.typed, problems)
        ids, contact = who(cells, "an event")
        event = cells.get("event")
        if not event:
            cells.bad("event", "is required")
        properties: dict[str, Any] = {}
        given = cells.get("properties", lambda v: json_value(v, dict))
        if given:
            properties.update(given)
        timestamp = cells.raw("timestamp")
        own_id = cells.get("message_id", text)
        context = cells.get("context", lambda v: json_value(v, dict)) or {}
        for key, value in cells.rest().items():
            name = key.removeprefix("prop_")
            properties[name] = value if self.typed else loose(value)
        message: dict[str, Any] = {
            "type": "track",
            **ids,
            "event": event or "",
            "properties": properties,
        }
        if contact:
            own = context.get("traits")
            context = {**context, "traits": {**(own if isinstance(own, dict) else {}), **contact}}
        if context:
            message["context"] = context
        if timestamp is not None:
            message["timestamp"] = timestamp
        message["messageId"] = own_id or message_id(self.kind, message)
        return Record([row], [message], problems=problems)

    def field_of(self, record: Record, path: str) -> tuple[int, str]:
        column = path_field(path)
        values = record.rows[0].values
        if path.startswith("row.properties.") and f"prop_{column}" in values:
            column = f"prop_{column}"
        elif path.startswith("row.properties.") and column not in values and "properties" in values:
            column = f"properties.{column}"
        return record.rows[0].line, column
