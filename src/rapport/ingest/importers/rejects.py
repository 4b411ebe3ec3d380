"""The rejects file: each rejected row as it was, with the line, the columns and the reasons.

It is a CSV whose first three columns are ``_line``, ``_field`` and ``_reason``. For a CSV
input the original columns follow, and since the importer ignores ``_`` columns, the file
can be corrected in a spreadsheet and imported as it is. For JSON Lines the original line
follows in a ``row`` column.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any

from rapport.ingest.importers.common import Record, RowProblem

LEAD = ["_line", "_field", "_reason"]


class RejectsWriter:
    """Opened only when the first row is rejected, so a clean import leaves no file."""

    def __init__(self, path: Path, columns: list[str] | None) -> None:
        self.path = path
        self.columns = columns
        self.written = 0
        self._file: IO[str] | None = None
        self._csv: Any = None

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def _open(self) -> None:
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(LEAD + (self.columns if self.columns is not None else ["row"]))

    def write(self, record: Record, problems: list[RowProblem]) -> None:
        if self._file is None:
            self._open()
        first_bad = min(p.line for p in problems)
        for row in record.rows:
            mine = [p for p in problems if p.line == row.line]
            if mine:
                fields = "; ".join(dict.fromkeys(p.field for p in mine if p.field))
                reason = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in mine)
            else:
                fields, reason = "", f"another row of this order was rejected (line {first_bad})"
            original = row.original if isinstance(row.original, list) else [row.original]
            self._csv.writerow([row.line, fields, reason, *original])
            self.written += 1
