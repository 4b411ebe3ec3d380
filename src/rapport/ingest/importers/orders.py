"""Order rows become ``Order Completed`` calls (and a refund or cancellation after it).

Lines: in JSON Lines an order is one line with a ``products`` list; in CSV an order is one
row per line (``product_id``, ``price``, ``quantity``) and its rows must be next to each
other, the order's own columns given on the first row (later rows may repeat them). An
order without lines needs a ``total``. An order id may appear in only one place in a file:
a second, separate appearance would silently replace the first, so it is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from rapport.ingest.importers.common import (
    ALIASES,
    Cells,
    Record,
    RowProblem,
    grouped,
    path_field,
    unreadable,
    who,
)
from rapport.ingest.importers.readers import ImportFileError, Row
from rapport.ingest.importers.values import integer, json_value, loose, message_id, number, text

STATUSES = {"completed": None, "refunded": "Order Refunded", "cancelled": "Order Cancelled"}
CHANNELS = ("online", "offline")
MONEY = ("total", "discount", "shipping", "tax")
# The columns of one order line in CSV; they never become order properties.
LINE_COLUMNS = (
    "product_id",
    "sku",
    "product_name",
    "name",
    "category",
    "brand",
    "price",
    "quantity",
    "url",
    "image_url",
)
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def _currency(value: Any) -> str:
    code = text(value)
    if not _CURRENCY.match(code):
        raise ValueError(f"{code!r} is not a three-letter currency code such as RUB or USD")
    return code.upper()


def _quantity(value: Any) -> int:
    n = integer(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def _price(value: Any) -> float:
    amount = number(value)
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


class OrdersMapper:
    kind = "orders"

    def __init__(self, typed: bool) -> None:
        self.typed = typed
        # 8-byte fingerprints of the order ids already seen: the one thing that grows with
        # the file, and small (an order id repeated apart would silently replace lines).
        self._seen: set[int] = set()

    def check_columns(self, columns: list[str]) -> None:
        names = {ALIASES.get(c, c) for c in columns}
        missing = [c for c in ("order_id", "occurred_at") if c not in names]
        if "occurred_at" in missing and "timestamp" in names:
            missing.remove("occurred_at")
        if missing:
            raise ImportFileError(f"an orders file needs the column(s) {', '.join(missing)}")
        if not {"user_id", "anonymous_id", "email", "phone"} & names:
            raise ImportFileError(
                "an orders file needs a user_id, anonymous_id, email or phone column"
            )

    def records(self, rows: Iterator[Row]) -> Iterator[Record]:
        def key(row: Row) -> Any:
            if row.problem or self.typed:
                return None  # each JSON line is a whole order
            return row.values.get("order_id") or row.values.get("orderId")

        for group in grouped(rows, key):
            if group[0].problem:
                yield unreadable(group[0])
            else:
                yield self.record(group)

    def record(self, rows: list[Row]) -> Record:
        problems: list[RowProblem] = []
        first = Cells(rows[0], self.typed, problems)
        ids, contact = who(first, "an order")
        oid = first.get("order_id")
        if not oid:
            first.bad("order_id", "is required")
        else:
            fingerprint = int.from_bytes(hashlib.blake2b(oid.encode(), digest_size=8).digest())
            if fingerprint in self._seen:
                first.bad(
                    "order_id",
                    f"order {oid} appears earlier in the file; an order's rows must be "
                    "next to each other and an order may appear only once",
                )
            self._seen.add(fingerprint)
        occurred = first.raw("occurred_at")
        if occurred is None:
            occurred = first.raw("timestamp")
        if occurred is None:
            first.bad("occurred_at", "is required (when the order was placed)")
        status = (first.get("status") or "completed").lower()
        if status not in STATUSES:
            first.bad("status", f"{status!r} is not one of {', '.join(STATUSES)}")
        props: dict[str, Any] = {"order_id": oid}
        for column in MONEY:
            amount = first.get(column, number)
            if amount is not None:
                props[column] = amount
        currency = first.get("currency", _currency)
        if currency:
            props["currency"] = currency
        channel = first.get("channel")
        if channel is not None:
            if channel.lower() not in CHANNELS:
                first.bad("channel", f"{channel!r} is not one of {', '.join(CHANNELS)}")
            props["channel"] = channel.lower()
        for column in ("store_id", "coupon", "cart_id"):
            value = first.get(column)
            if value:
                props[column] = value

        lines = self._lines(rows, first, problems)
        if lines:
            props["products"] = lines
        elif "total" not in props:
            first.bad("total", "an order needs a total or its lines (product_id, price, …)")
        for key, value in first.rest().items():
            if key not in LINE_COLUMNS and key not in props:
                props[key] = value if self.typed else loose(value)

        completed: dict[str, Any] = {
            "type": "track",
            **ids,
            "event": "Order Completed",
            "timestamp": occurred,
            "properties": props,
        }
        if contact:
            completed["context"] = {"traits": contact}
        completed["messageId"] = message_id(self.kind, completed)
        messages = [completed]
        follow_up = STATUSES.get(status)
        if follow_up:
            messages.append(
                {
                    "type": "track",
                    **ids,
                    "event": follow_up,
                    "timestamp": occurred,
                    "properties": {"order_id": oid},
                    "messageId": f"{completed['messageId']}:{status}",
                }
            )
        return Record(rows, messages, problems=problems)

    def _lines(
        self, rows: list[Row], first: Cells, problems: list[RowProblem]
    ) -> list[dict[str, Any]]:
        if first.has("products"):
            if len(rows) > 1 or first.has("product_id"):
                first.bad("products", "give lines either as a products list or as rows, not both")
            return first.get("products", lambda v: json_value(v, list)) or []
        lines = []
        for i, row in enumerate(rows):
            cells = first if i == 0 else Cells(row, self.typed, problems)
            if i > 0:
                self._same_order(cells, first)
            line = self._line(cells)
            if line is not None:
                lines.append(line)
            elif i > 0:
                cells.bad("product_id", "a further row of an order must name a product")
        return lines

    def _line(self, cells: Cells) -> dict[str, Any] | None:
        pid = cells.get("product_id")
        if not pid:
            for column in ("price", "quantity"):
                if cells.has(column):
                    cells.bad("product_id", "an order line with a price or quantity needs one")
                    break
            return None
        line: dict[str, Any] = {"product_id": pid}
        price = cells.get("price", _price)
        line["price"] = price if price is not None else 0.0
        if not cells.has("price"):
            cells.bad("price", "an order line needs a price")
        line["quantity"] = cells.get("quantity", _quantity) or 1
        for column, key in (("sku", "sku"), ("category", "category"), ("brand", "brand")):
            value = cells.get(column)
            if value:
                line[key] = value
        name = cells.get("product_name") or cells.get("name")
        if name:
            line["name"] = name
        return line

    def _same_order(self, cells: Cells, first: Cells) -> None:
        """A later row of an order may repeat the order's columns, but not contradict them."""
        for column, value in cells.values.items():
            if column in LINE_COLUMNS:
                continue
            cells.used.add(column)
            before = first.values.get(column)
            if before is None:
                cells.bad(
                    column,
                    f"order-level values go on the order's first row (line {first.row.line})",
                )
            elif str(before) != str(value):
                cells.bad(column, f"{value!r} differs from {before!r} on line {first.row.line}")

    def field_of(self, record: Record, path: str) -> tuple[int, str]:
        match = re.match(r"^row\.properties\.products\[(\d+)\]\.?(.*)$", path)
        if match:
            index, rest = int(match.group(1)), match.group(2) or "product_id"
            as_rows = "products" not in record.rows[0].values and not self.typed
            if as_rows and index < len(record.rows):
                return record.rows[index].line, rest
            return record.rows[0].line, f"products[{index}].{rest}"
        column = path_field(path)
        if column == "timestamp":
            column = "occurred_at" if "occurred_at" in record.rows[0].values else "timestamp"
        return record.rows[0].line, column
