"""The two passes of an import: check the whole file, then store it in one transaction.

The first pass reads every row, validates it exactly as the API would, and writes the bad
ones to the rejects file; nothing is stored. Only if it passes (or ``skip_invalid`` was
asked for) does the second pass read the file again and store the rows through the
pipeline, all in a single transaction: a file imports whole or not at all, and a
failure half-way (a full disk, a lost connection) leaves the store as it was. Both passes
stream, so memory does not grow with the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from rapport.errors import InvalidInput
from rapport.ingest.importers.common import Record, RowProblem
from rapport.ingest.importers.customers import CustomersMapper
from rapport.ingest.importers.events import EventsMapper
from rapport.ingest.importers.orders import OrdersMapper
from rapport.ingest.importers.products import CatalogWriter, ProductsMapper
from rapport.ingest.importers.readers import ImportFileError, Row, RowReader, detect_format
from rapport.ingest.importers.rejects import RejectsWriter
from rapport.ingest.incoming import Incoming
from rapport.ingest.messages import parse_message
from rapport.store.engine import writing

if TYPE_CHECKING:
    from rapport.pipeline import Pipeline

KINDS = ("customers", "orders", "products", "events")
MAX_REPORTED = 100
# An order with many lines is larger than one SDK call; the API's 32 KB limit is for those.
IMPORT_MESSAGE_BYTES = 1024 * 1024
STORE_ATTEMPTS = 3

Progress = Callable[[str, int, int], None]


class Mapper(Protocol):
    """One per kind: turns rows into records, and validation paths back into columns."""

    kind: str

    def __init__(self, typed: bool) -> None: ...

    def check_columns(self, columns: list[str]) -> None: ...

    def records(self, rows: Iterator[Row]) -> Iterator[Record]: ...

    def field_of(self, record: Record, path: str) -> tuple[int, str]: ...


_MAPPERS: dict[str, type[Mapper]] = {
    "customers": CustomersMapper,
    "orders": OrdersMapper,
    "products": ProductsMapper,
    "events": EventsMapper,
}


@dataclass
class ImportReport:
    """What happened, for the summary: counts are of file rows, not of messages."""

    kind: str
    path: Path
    format: str
    rows_read: int = 0
    rows_stored: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    problems_total: int = 0
    rejects_path: Path | None = None
    committed: bool = False
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def note(self, problems: list[RowProblem]) -> None:
        self.problems_total += len(problems)
        room = MAX_REPORTED - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])


def default_rejects_path(path: Path) -> Path:
    """customers.csv → customers.rejects.csv, next to the input."""
    return path.with_name(f"{path.name.rsplit('.', 1)[0]}.rejects.csv")


class _Checker:
    """Validation shared by both passes, so they agree on which rows are good."""

    def __init__(
        self, kind: str, fmt: str, now: datetime, phone_region: str, max_message_bytes: int
    ) -> None:
        self.kind = kind
        self.mapper = _MAPPERS[kind](typed=fmt == "jsonl")
        self.now = now
        self.phone_region = phone_region
        self.max_message_bytes = max_message_bytes

    def check(self, record: Record) -> tuple[list[Incoming], list[RowProblem]]:
        if record.problems:
            return [], _unique(record.problems)
        incoming: list[Incoming] = []
        problems: list[RowProblem] = []
        for message in record.messages:
            try:
                incoming.append(
                    parse_message(
                        message,
                        where="row",
                        received_at=self.now,
                        phone_region=self.phone_region,
                        max_bytes=self.max_message_bytes,
                        source="import",
                    )
                )
            except InvalidInput as exc:
                for p in exc.problems:
                    line, column = self.mapper.field_of(record, p.where)
                    problems.append(RowProblem(line, column, p.reason))
        return incoming, _unique(problems)


def _unique(problems: list[RowProblem]) -> list[RowProblem]:
    return list(dict.fromkeys(problems))


def import_file(
    engine: sa.Engine,
    pipeline: Pipeline,
    kind: str,
    path: Path,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    batch_size: int = 1000,
    phone_region: str = "RU",
    max_message_bytes: int = IMPORT_MESSAGE_BYTES,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one file; raises ImportFileError when the file as a whole cannot be read."""
    if kind not in KINDS:
        raise ImportFileError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if batch_size < 1:
        raise ImportFileError("the batch size must be at least 1")
    if not path.is_file():
        raise ImportFileError(f"{path} is not a file")
    fmt = detect_format(path, fmt)
    started = time.perf_counter()
    now = pipeline.clock.now()
    report = ImportReport(kind, path, fmt)
    default_rejects = rejects_path is None
    rejects_at = rejects_path or default_rejects_path(path)

    _check_pass(report, kind, fmt, now, phone_region, max_message_bytes, rejects_at, progress)
    if report.rows_rejected:
        report.rejects_path = rejects_at
    elif default_rejects and rejects_at.exists():
        rejects_at.unlink()  # from an earlier run of this file: it no longer applies
    if report.rows_rejected and not skip_invalid:
        report.seconds = time.perf_counter() - started
        return report

    for attempt in range(STORE_ATTEMPTS):
        try:
            checker = _Checker(kind, fmt, now, phone_region, max_message_bytes)
            _store_pass(report, engine, pipeline, checker, batch_size, progress)
            break
        except sa.exc.IntegrityError:
            # Another writer claimed an email or a user id meanwhile: start over, as a whole.
            pipeline.products.clear()
            if attempt == STORE_ATTEMPTS - 1:
                raise
    report.committed = True
    report.seconds = time.perf_counter() - started
    return report


def _check_pass(
    report: ImportReport,
    kind: str,
    fmt: str,
    now: datetime,
    phone_region: str,
    max_message_bytes: int,
    rejects_at: Path,
    progress: Progress | None,
) -> None:
    checker = _Checker(kind, fmt, now, phone_region, max_message_bytes)
    with (
        RowReader(report.path, fmt) as reader,
        RejectsWriter(rejects_at, reader.columns) as rejects,
    ):
        if reader.columns is not None:
            checker.mapper.check_columns(reader.columns)
        for n, record in enumerate(checker.mapper.records(reader.rows())):
            report.rows_read += len(record.rows)
            _, problems = checker.check(record)
            if problems:
                report.rows_rejected += len(record.rows)
                report.note(problems)
                rejects.write(record, problems)
            if progress is not None and n % 500 == 0:
                progress("check", reader.bytes_read, reader.size)
        if progress is not None:
            progress("check", reader.size, reader.size)


def _store_pass(
    report: ImportReport,
    engine: sa.Engine,
    pipeline: Pipeline,
    checker: _Checker,
    batch_size: int,
    progress: Progress | None,
) -> None:
    report.rows_stored = report.rows_duplicate = 0
    kind, now = checker.kind, checker.now
    rows_read = rows_rejected = 0
    catalog = CatalogWriter()
    chunk: list[tuple[Record, list[Incoming]]] = []
    size = 0

    def flush(conn: sa.Connection) -> None:
        nonlocal size
        if kind == "products":
            unchanged = catalog.write(conn, [r for r, _ in chunk], now)
            report.rows_duplicate += unchanged
            report.rows_stored += len(chunk) - unchanged
        else:
            messages = [m for _, incoming in chunk for m in incoming]
            result = pipeline.ingest_in(conn, messages)
            start = 0
            for record, incoming in chunk:
                ids = result.customer_ids[start : start + len(incoming)]
                start += len(incoming)
                if any(cid is not None for cid in ids):
                    report.rows_stored += len(record.rows)
                else:
                    report.rows_duplicate += len(record.rows)
        chunk.clear()
        size = 0

    with writing(engine) as conn, RowReader(report.path, report.format) as reader:
        for record in checker.mapper.records(reader.rows()):
            rows_read += len(record.rows)
            incoming, problems = checker.check(record)
            if problems:
                rows_rejected += len(record.rows)
                continue  # rejected in the first pass (and only reached with skip_invalid)
            chunk.append((record, incoming))
            size += max(1, len(incoming))
            if size >= batch_size:
                flush(conn)
                if progress is not None:
                    progress("store", reader.bytes_read, reader.size)
        if chunk:
            flush(conn)
        if (rows_read, rows_rejected) != (report.rows_read, report.rows_rejected):
            # Raised inside the transaction, so it rolls back: nothing of the file is kept.
            raise ImportFileError(
                "the file changed while it was being imported; nothing was stored"
            )
        if progress is not None:
            progress("store", reader.size, reader.size)
