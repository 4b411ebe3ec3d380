"""Reading CSV and JSON Lines one row at a time, counting bytes for the progress bar.

The file is read in binary and decoded line by line, so the byte count is exact and memory
stays constant whatever the file size. Every row keeps the line number it started on and
its original text, which is what the error report and the rejects file show.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, no header, a missing column)."""


@dataclass(slots=True)
class Row:
    """One row of the file: values by column, and the original for the rejects file.

    Empty cells and columns whose names start with ``_`` are left out of ``values``: an
    empty cell means "not given", and ``_`` columns are notes (the rejects file adds
    ``_line``, ``_field`` and ``_reason``, so a fixed rejects file imports as it is).
    """

    line: int
    values: dict[str, Any]
    original: list[str] | str
    problem: str | None = None  # set when the row could not even be read (bad JSON, …)


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ImportFileError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        raise ImportFileError("compressed files are not read directly; decompress first")
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise ImportFileError(
            f"cannot tell the format of {path.name} from its extension; use --format csv|jsonl"
        )
    return found


class RowReader:
    """Rows of one file; ``bytes_read`` grows as they are read; ``columns`` for CSV."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.size = path.stat().st_size
        self.bytes_read = 0
        self.columns: list[str] | None = None
        self._file: IO[bytes] = path.open("rb")
        self._line = 0
        if fmt == "csv":
            try:
                self._csv_rows = self._open_csv()
            except BaseException:
                self._file.close()
                raise

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _text_lines(self) -> Iterator[str]:
        for raw in self._file:
            self.bytes_read += len(raw)
            self._line += 1
            if self._line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # the byte-order mark spreadsheets put in front of UTF-8
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"line {self._line} is not UTF-8 text ({exc.reason}); save the file as UTF-8"
                ) from None

    def _open_csv(self) -> Iterator[list[str]]:
        lines = self._text_lines()
        first = next(lines, None)
        if first is None or not first.strip():
            raise ImportFileError("the file is empty: a CSV file starts with a header row")
        # Spreadsheets in many locales write ';' (and .tsv files a tab) instead of ','.
        delimiter = max(",;\t", key=first.count)
        header_rows = list(csv.reader([first], delimiter=delimiter))
        self.columns = [c.strip() for c in header_rows[0]] if header_rows else []
        if len(set(self.columns)) != len(self.columns):
            dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ImportFileError(f"the header repeats column(s) {', '.join(dupes)}")

        def chained() -> Iterator[str]:
            yield from lines

        return iter(csv.reader(chained(), delimiter=delimiter, strict=True))

    def rows(self) -> Iterator[Row]:
        if self.fmt == "csv":
            yield from self._rows_csv()
        else:
            yield from self._rows_jsonl()

    def _rows_csv(self) -> Iterator[Row]:
        assert self.columns is not None
        columns = self.columns
        while True:
            start = self._line + 1
            try:
                cells = next(self._csv_rows)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ImportFileError(f"line {start}: the CSV cannot be read ({exc})") from None
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                yield Row(
                    start,
                    {},
                    cells,
                    f"has {len(cells)} cells but the header has {len(columns)} columns",
                )
                continue
            values = {
                col: cell.strip()
                for col, cell in zip(columns, cells, strict=True)
                if cell.strip() and not col.startswith("_")
            }
            yield Row(start, values, cells)

    def _rows_jsonl(self) -> Iterator[Row]:
        for text in self._text_lines():
            if not text.strip():
                continue
            original = text.rstrip("\r\n")
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                yield Row(self._line, {}, original, f"is not valid JSON ({exc})")
                continue
            if not isinstance(value, dict):
                yield Row(self._line, {}, original, "each line must be a JSON object")
                continue
            values = {
                k.strip(): v
                for k, v in value.items()
                if v is not None and v != "" and not k.startswith("_")
            }
            yield Row(self._line, values, original)
