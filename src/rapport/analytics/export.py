"""Report rows as CSV: what a spreadsheet opens (UTF-8 with a BOM, comma, CRLF).

Every report is a list of flat dicts; a nested value (a list, a dict) is written as JSON,
``None`` as an empty cell, so nothing is silently dropped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson


def to_csv(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *, bom: bool = True
) -> str:
    """``bom`` marks the file as UTF-8 for spreadsheets; leave it out for programs."""
    rows = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    buf = io.StringIO()
    if bom:
        buf.write("\ufeff")  # spreadsheets then read the file as UTF-8 (Cyrillic names)
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    return value
