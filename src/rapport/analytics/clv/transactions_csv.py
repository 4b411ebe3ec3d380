"""Reading transactions (customer, date, amount) from a CSV file for the CLV models.

Every problem is reported with the line it is on, up to ``MAX_PROBLEMS`` of them, and
nothing is fitted from a file that has any: a model fitted to the rows that happened to
parse would silently describe a different customer base.

Dates may be ``YYYY-MM-DD``, ``YYYYMMDD`` (as in the CDNOW files) or ISO 8601 date-times;
a date-time with an offset counts on its UTC day, one without on the day written.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rapport.errors import InvalidInput, Problem

MAX_PROBLEMS = 20
DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class Transactions:
    customer: npt.NDArray[Any]  # ids as written (strings)
    day: npt.NDArray[np.datetime64]
    amount: npt.NDArray[np.float64] | None

    def __len__(self) -> int:
        return len(self.customer)


def parse_day(text: str) -> date:
    """One date; ValueError when it is none of the accepted forms."""
    value = text.strip()
    if len(value) in (8, 10):
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def _parse_amount(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", DELIMITERS)
    except csv.Error:
        return csv.excel


def read_transactions(
    path: Path, *, customer: str, date_column: str, amount: str | None = None
) -> Transactions:
    """The transactions in ``path``; InvalidInput naming each bad line and column."""
    where = str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput([Problem(where, "no such file")]) from None
    except OSError as exc:
        raise InvalidInput([Problem(where, f"cannot be read: {exc.strerror or exc}")]) from None
    with handle:
        try:
            sample = handle.read(8192)
        except UnicodeDecodeError:
            raise InvalidInput([Problem(where, "is not UTF-8 text")]) from None
        handle.seek(0)
        reader = csv.reader(handle, _dialect(sample))
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise InvalidInput([Problem(where, "the file is empty (no header line)")])
        columns = [cell.strip() for cell in header]
        wanted = {"--customer": customer, "--date": date_column}
        if amount is not None:
            wanted["--amount"] = amount
        missing = [
            Problem(
                option,
                f"no column {name!r} in {where}; the columns are: {', '.join(columns)}",
            )
            for option, name in wanted.items()
            if name not in columns
        ]
        if missing:
            raise InvalidInput(missing)
        return _rows(reader, where, columns, customer, date_column, amount)


def _rows(
    reader: Any, where: str, columns: list[str], customer: str, date_column: str, amount: str | None
) -> Transactions:
    ci, di = columns.index(customer), columns.index(date_column)
    ai = columns.index(amount) if amount is not None else None
    width = max(ci, di, ai if ai is not None else 0) + 1
    ids: list[str] = []
    days: list[date] = []
    values: list[float] = []
    parsed: dict[str, date] = {}  # dates repeat: parse each distinct text once
    problems: list[Problem] = []
    try:
        for row in reader:
            if len(problems) >= MAX_PROBLEMS:
                break
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) < width:
                problems.append(Problem(f"line {line}", f"has {len(row)} fields, needs {width}"))
                continue
            cid = row[ci].strip()
            if not cid:
                problems.append(Problem(f"line {line}, column {customer!r}", "no customer id"))
            text = row[di]
            day = parsed.get(text)
            if day is None:
                try:
                    day = parsed[text] = parse_day(text)
                except ValueError:
                    problems.append(
                        Problem(
                            f"line {line}, column {date_column!r}",
                            f"{text!r} is not a date (use YYYY-MM-DD, YYYYMMDD or an ISO "
                            "8601 date-time)",
                        )
                    )
            if ai is not None:
                try:
                    values.append(_parse_amount(row[ai]))
                except ValueError:
                    problems.append(
                        Problem(f"line {line}, column {amount!r}", f"{row[ai]!r} is not a number")
                    )
            ids.append(cid)
            if day is not None:
                days.append(day)
    except (csv.Error, UnicodeDecodeError) as exc:
        problems.append(Problem(f"line {reader.line_num}", f"unreadable: {exc}"))
    if problems:
        raise InvalidInput(problems)
    if not ids:
        raise InvalidInput([Problem(where, "has a header but no transactions")])
    return Transactions(
        customer=np.array(ids, dtype=np.str_),
        day=np.array(days, dtype="datetime64[D]"),
        amount=np.array(values, dtype=np.float64) if ai is not None else None,
    )
