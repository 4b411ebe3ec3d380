"""What every kind of import shares: records, row problems, and reading one row's cells."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rapport.ingest.importers.readers import Row
from rapport.ingest.importers.values import text

T = TypeVar("T")

# Segment's camelCase names, so JSON exported from a Segment-style system imports as it is.
ALIASES = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "messageId": "message_id",
    "orderId": "order_id",
    "productId": "product_id",
    "firstName": "first_name",
    "lastName": "last_name",
    "occurredAt": "occurred_at",
    "imageUrl": "image_url",
}


@dataclass(frozen=True, slots=True)
class RowProblem:
    """What the report and the rejects file show: the line, the column, and why."""

    line: int
    field: str
    reason: str


@dataclass
class Record:
    """What one customer, order, event or product became; an order may span several rows."""

    rows: list[Row]
    messages: list[dict[str, Any]] = field(default_factory=list)
    product: dict[str, Any] | None = None
    category: dict[str, Any] | None = None
    problems: list[RowProblem] = field(default_factory=list)


class Cells:
    """One row's values, read with conversions that note a problem instead of raising.

    ``used`` remembers which columns were read, so the rest can go to traits or properties.
    """

    def __init__(self, row: Row, typed: bool, problems: list[RowProblem]) -> None:
        self.row = row
        self.typed = typed
        self.problems = problems
        self.values = {ALIASES.get(k, k): v for k, v in row.values.items()}
        self.used: set[str] = set()

    def has(self, column: str) -> bool:
        return column in self.values

    def raw(self, column: str) -> Any:
        self.used.add(column)
        return self.values.get(column)

    def get(self, column: str, convert: Callable[[Any], T] = text) -> T | None:  # type: ignore[assignment]
        value = self.raw(column)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError as exc:
            self.bad(column, str(exc))
            return None

    def bad(self, column: str, reason: str) -> None:
        self.problems.append(RowProblem(self.row.line, column, reason))

    def rest(self) -> dict[str, Any]:
        """The columns nobody read: custom traits, properties or attributes."""
        return {k: v for k, v in self.values.items() if k not in self.used}


def unreadable(row: Row) -> Record:
    """A row the reader could not parse (bad JSON, a wrong number of cells) is rejected as is."""
    return Record([row], problems=[RowProblem(row.line, "", row.problem or "cannot be read")])


_WHO = ("user_id", "anonymous_id", "email", "phone")


# Columns that name who a row is about; a customers or events file needs one of them.
WHO_COLUMNS = frozenset({"user_id", "userId", "anonymous_id", "anonymousId", "email", "phone"})


def who(cells: Cells, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row's identity: (userId / anonymousId fields, email / phone traits).

    Segment needs a userId or an anonymousId; a row known only by email or phone gets a
    stable anonymous id made from it, and the email or phone then finds (or merges into)
    the profile that already has it.
    """
    out: dict[str, Any] = {}
    user_id = cells.get("user_id")
    anonymous_id = cells.get("anonymous_id")
    email = cells.get("email")
    phone = cells.get("phone")
    if user_id:
        out["userId"] = user_id
    if anonymous_id:
        out["anonymousId"] = anonymous_id
    contact = {k: v for k, v in (("email", email), ("phone", phone)) if v}
    if not user_id and not anonymous_id:
        if email:
            out["anonymousId"] = f"import:email:{email.lower()}"
        elif phone:
            out["anonymousId"] = f"import:phone:{''.join(ch for ch in phone if ch.isalnum())}"
        elif not any(p.field in _WHO for p in cells.problems):
            cells.bad("user_id", f"{kind} needs user_id, anonymous_id, email or phone")
    return out, contact


def path_field(path: str) -> str:
    """A message path from validation (``traits.consents.email``) as the column it came from."""
    path = path.removeprefix("row").lstrip(".")
    for prefix in ("context.traits.", "traits.", "properties."):
        if path.startswith(prefix):
            path = path.removeprefix(prefix)
            break
    if path.startswith("consents."):
        return "consent_" + path.removeprefix("consents.")
    return {
        "userId": "user_id",
        "anonymousId": "anonymous_id",
        "messageId": "message_id",
        "event": "event",
        "": "",
    }.get(path, path)


def grouped(rows: Iterator[Row], key: Callable[[Row], Any]) -> Iterator[list[Row]]:
    """Consecutive rows with the same key, in file order (an order's lines, for instance)."""
    group: list[Row] = []
    current: Any = object()
    for row in rows:
        k = key(row)
        if group and (k is None or k != current):
            yield group
            group = []
        group.append(row)
        current = k
        if k is None:
            yield group
            group = []
    if group:
        yield group
