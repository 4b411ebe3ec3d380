"""Importing a static list from a file of identifiers (CSV, or JSON Lines).

It follows the other importers (docs/import.md): a first pass checks every row — a missing
or malformed identifier, or one that names no customer, is reported with its line and
written to the rejects file — and stores nothing; only if it passes (or ``skip_invalid``)
does a second pass add the members, all in one transaction. Both passes stream the file
and look customers up a chunk of rows at a time, so memory and round trips stay flat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rapport.ingest.importers.common import Record, RowProblem
from rapport.ingest.importers.readers import ImportFileError, Row, RowReader, detect_format
from rapport.ingest.importers.rejects import RejectsWriter
from rapport.ingest.importers.run import ImportReport, default_rejects_path
from rapport.segments.lists import (
    IDENTIFIER_KINDS,
    StaticList,
    add_members,
    create_list,
    find_list,
    match_customers,
    normalize_identifier,
)
from rapport.store.engine import writing

if TYPE_CHECKING:
    from rapport.pipeline import Pipeline

Progress = Callable[[str, int, int], None]
CHUNK_ROWS = 1000
_NOUN = {"customer_id": "customer id", "user_id": "user id", "email": "email", "phone": "phone"}


@dataclass(frozen=True, slots=True)
class _Checked:
    row: Row
    customer_id: int | None
    problem: RowProblem | None


class _Checker:
    """Reads a row's identifier and finds its customer; shared by both passes."""

    def __init__(self, columns: list[str] | None, phone_region: str) -> None:
        self.phone_region = phone_region
        if columns is not None:
            self.kinds = [k for k in IDENTIFIER_KINDS if k in columns]
            if not self.kinds:
                raise ImportFileError(
                    "the header needs a column naming the customers: " + ", ".join(IDENTIFIER_KINDS)
                )
        else:
            self.kinds = list(IDENTIFIER_KINDS)

    def check(self, conn: sa.Connection, rows: list[Row]) -> list[_Checked]:
        parsed: list[tuple[Row, str, str | int] | _Checked] = []
        for row in rows:
            if row.problem is not None:
                parsed.append(_Checked(row, None, RowProblem(row.line, "", row.problem)))
                continue
            kind = next((k for k in self.kinds if k in row.values), None)
            if kind is None:
                problem = RowProblem(
                    row.line, self.kinds[0], f"needs one of {', '.join(self.kinds)}"
                )
                parsed.append(_Checked(row, None, problem))
                continue
            try:
                value = normalize_identifier(kind, row.values[kind], self.phone_region)
            except ValueError as exc:
                parsed.append(_Checked(row, None, RowProblem(row.line, kind, str(exc))))
                continue
            parsed.append((row, kind, value))
        by_kind: dict[str, list[str | int]] = {}
        for item in parsed:
            if isinstance(item, tuple):
                by_kind.setdefault(item[1], []).append(item[2])
        found = {kind: match_customers(conn, kind, values) for kind, values in by_kind.items()}
        out: list[_Checked] = []
        for item in parsed:
            if isinstance(item, _Checked):
                out.append(item)
                continue
            row, kind, value = item
            cid = found[kind].get(value)
            if cid is None:
                reason = f"no customer has {_NOUN[kind]} {value}"
                out.append(_Checked(row, None, RowProblem(row.line, kind, reason)))
            else:
                out.append(_Checked(row, cid, None))
        return out


def _chunked(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_list(
    engine: sa.Engine,
    pipeline: Pipeline,
    list_name: str,
    path: Path,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    phone_region: str = "RU",
    description: str = "",
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportReport:
    """Add the customers a file names to the list (created if it does not exist yet).

    ``rows_stored`` counts rows that made someone a member, ``rows_duplicate`` rows whose
    customer already was one (or appeared earlier in the file).
    """
    if not path.is_file():
        raise ImportFileError(f"{path} is not a file")
    fmt = detect_format(path, fmt)
    started = time.perf_counter()
    report = ImportReport("list", path, fmt)
    default_rejects = rejects_path is None
    rejects_at = rejects_path or default_rejects_path(path)
    with engine.connect() as conn:
        find_list(conn, list_name)  # a rule segment of that name is refused before reading

    with (
        engine.connect() as conn,
        RowReader(path, fmt) as reader,
        RejectsWriter(rejects_at, reader.columns) as rejects,
    ):
        checker = _Checker(reader.columns, phone_region)
        for chunk in _chunked(reader.rows(), chunk_rows):
            for item in checker.check(conn, chunk):
                report.rows_read += 1
                if item.problem is not None:
                    report.rows_rejected += 1
                    report.note([item.problem])
                    rejects.write(Record([item.row]), [item.problem])
            if progress is not None:
                progress("check", reader.bytes_read, reader.size)
    if report.rows_rejected:
        report.rejects_path = rejects_at
    elif default_rejects and rejects_at.exists():
        rejects_at.unlink()  # from an earlier run of this file: it no longer applies
    if report.rows_rejected and not skip_invalid:
        report.seconds = time.perf_counter() - started
        return report

    now = pipeline.clock.now()
    rows_read = rows_rejected = 0
    with writing(engine) as conn, RowReader(path, fmt) as reader:
        lst: StaticList | None = find_list(conn, list_name)
        if lst is None:
            lst = create_list(conn, list_name, description, now)
        checker = _Checker(reader.columns, phone_region)
        seen: set[int] = set()
        for chunk in _chunked(reader.rows(), chunk_rows):
            ids: list[int] = []
            for item in checker.check(conn, chunk):
                rows_read += 1
                if item.customer_id is None:
                    rows_rejected += 1
                elif item.customer_id in seen:
                    report.rows_duplicate += 1
                else:
                    seen.add(item.customer_id)
                    ids.append(item.customer_id)
            added, already = add_members(conn, pipeline, lst, ids, now)
            report.rows_stored += len(added)
            report.rows_duplicate += len(already)
            if progress is not None:
                progress("store", reader.bytes_read, reader.size)
        if (rows_read, rows_rejected) != (report.rows_read, report.rows_rejected):
            # Raised inside the transaction, so nothing of the file is kept.
            raise ImportFileError(
                "the file or the customers it names changed during the import; nothing was stored"
            )
    report.committed = True
    report.seconds = time.perf_counter() - started
    return report
