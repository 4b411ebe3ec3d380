"""Customer rows become ``identify`` calls: the card is built exactly as the API builds it.

Known columns fill the standard attributes, ``consent_<channel>`` columns the consents,
a ``traits`` JSON column and every other column become custom traits. An empty cell
means "not given": it never erases what the card already holds.
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
from rapport.ingest.importers.values import flag, json_value, loose, message_id

ATTRIBUTES = (
    "first_name",
    "last_name",
    "name",
    "birthday",
    "gender",
    "city",
    "country",
    "timezone",
    "locale",
)


class CustomersMapper:
    kind = "customers"

    def __init__(self, typed: bool) -> None:
        self.typed = typed

    def check_columns(self, columns: list[str]) -> None:
        if not WHO_COLUMNS & set(columns):
            raise ImportFileError(
                "a customers file needs a user_id, email, phone or anonymous_id column"
            )

    def records(self, rows: Iterator[Row]) -> Iterator[Record]:
        for row in rows:
            yield unreadable(row) if row.problem else self.record(row)

    def record(self, row: Row) -> Record:
        problems: list[RowProblem] = []
        cells = Cells(row, self.typed, problems)
        ids, contact = who(cells, "a customer")
        traits: dict[str, Any] = {}
        extra = cells.get("traits", lambda v: json_value(v, dict))
        if extra:
            traits.update(extra)
        traits.update(contact)
        for column in ATTRIBUTES:
            value = cells.raw(column)
            if value is not None:
                traits[column] = value
        consents = {}
        for column in list(cells.values):
            if column.startswith("consent_"):
                consents[column.removeprefix("consent_")] = flag(cells.raw(column))
        if consents:
            traits["consents"] = consents
        timestamp, updated_at = cells.raw("timestamp"), cells.raw("updated_at")
        stamp = timestamp if timestamp is not None else updated_at
        for key, value in cells.rest().items():
            traits[key] = value if self.typed else loose(value)
        message: dict[str, Any] = {"type": "identify", **ids, "traits": traits}
        if stamp is not None:
            message["timestamp"] = stamp
        message["messageId"] = message_id(self.kind, message)
        return Record([row], [message], problems=problems)

    def field_of(self, record: Record, path: str) -> tuple[int, str]:
        column = path_field(path)
        if column == "timestamp" and "updated_at" in record.rows[0].values:
            column = "updated_at"
        return record.rows[0].line, column
