"""Product rows replace the catalog's products as given (the file is the source of truth).

Columns: ``product_id`` (or ``id`` / ``sku``), ``sku``, ``name``, ``category``, ``brand``,
``price``, ``currency``, ``url``, ``image_url``, an ``attributes`` JSON column, and any
other column as an attribute. ``category_name``, ``parent_category`` and
``compatible_categories`` (a list, or text separated by ``|``) describe the category,
which is what cross-sell into compatible categories reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.catalog.products import PRODUCT_FIELDS, upsert_categories, upsert_products
from rapport.ingest.importers.common import Cells, Record, RowProblem, unreadable
from rapport.ingest.importers.readers import ImportFileError, Row
from rapport.ingest.importers.values import json_value, loose, number, text, text_list
from rapport.store.tables import categories, products

_LIMITS = {"id": 200, "sku": 200, "name": 500, "brand": 200, "category": 200, "url": 2000}
_CATEGORY_COLUMNS = ("category_name", "parent_category", "compatible_categories")


def _limited(column: str) -> Any:
    limit = _LIMITS.get(column, 2000)

    def convert(value: Any) -> str:
        result = text(value)
        if len(result) > limit:
            raise ValueError(f"is {len(result)} characters long; the limit is {limit}")
        return result

    return convert


def _currency(value: Any) -> str:
    code = text(value)
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"{code!r} is not a three-letter currency code such as RUB or USD")
    return code.upper()


def _price(value: Any) -> float:
    amount = number(value)
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


class ProductsMapper:
    kind = "products"

    def __init__(self, typed: bool) -> None:
        self.typed = typed

    def check_columns(self, columns: list[str]) -> None:
        if not {"product_id", "productId", "id", "sku"} & set(columns):
            raise ImportFileError("a products file needs a product_id (or id, or sku) column")

    def records(self, rows: Iterator[Row]) -> Iterator[Record]:
        for row in rows:
            yield unreadable(row) if row.problem else self.record(row)

    def record(self, row: Row) -> Record:
        problems: list[RowProblem] = []
        cells = Cells(row, self.typed, problems)
        pid = next(
            (cells.get(c, _limited("id")) for c in ("product_id", "id") if cells.has(c)), None
        )
        sku = cells.get("sku", _limited("sku"))
        pid = pid or sku
        if not pid:
            cells.bad("product_id", "is required")
        product: dict[str, Any] = {
            "id": pid,
            "sku": sku,
            "name": cells.get("name", _limited("name")),
            "category_id": cells.get("category", _limited("category")),
            "brand": cells.get("brand", _limited("brand")),
            "price": cells.get("price", _price),
            "currency": cells.get("currency", _currency),
            "url": cells.get("url", _limited("url")),
            "image_url": cells.get("image_url", _limited("url")),
        }
        attributes = dict(cells.get("attributes", lambda v: json_value(v, dict)) or {})
        category: dict[str, Any] | None = None
        if any(cells.has(c) for c in _CATEGORY_COLUMNS):
            if not product["category_id"]:
                cells.bad("category", "category_name, parent_category or compatible ones need it")
            category = {
                "id": product["category_id"],
                "name": cells.get("category_name", _limited("category")),
                "parent_id": cells.get("parent_category", _limited("category")),
                "compatible": cells.get("compatible_categories", text_list),
            }
        for key, value in cells.rest().items():
            attributes[key] = value if self.typed else loose(value)
        product["attributes"] = attributes
        return Record([row], product=product, category=category, problems=problems)

    def field_of(self, record: Record, path: str) -> tuple[int, str]:
        """Products are checked here, not as messages; kept for the common interface."""
        return record.rows[0].line, path


def _fingerprint(p: dict[str, Any]) -> tuple[Any, ...]:
    return (*(p.get(f) for f in PRODUCT_FIELDS), repr(sorted((p.get("attributes") or {}).items())))


class CatalogWriter:
    """Writes chunks of products; remembers categories, which are few, across chunks.

    A category described on several rows gets the union of what they say, so a later
    chunk never wipes the name or compatible categories an earlier one gave.
    """

    def __init__(self) -> None:
        self.categories: dict[str, dict[str, Any]] = {}

    def write(self, conn: sa.Connection, chunk: list[Record], now: datetime) -> int:
        """Upserts the chunk's products; returns how many were already exactly so."""
        items: dict[str, dict[str, Any]] = {}
        touched: set[str] = set()
        for record in chunk:
            assert record.product is not None
            items[record.product["id"]] = record.product
            if record.category is not None:
                touched.add(self._remember(record.category))
        ids = sorted(items)
        unchanged = 0
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                sa.select(products).where(products.c.id.in_(ids[start : start + 500]))
            ).mappings():
                if _fingerprint(dict(row)) == _fingerprint(items[row["id"]]):
                    unchanged += 1
        upsert_products(conn, [items[i] for i in ids], now, replace=True)
        upsert_categories(conn, self._complete(conn, sorted(touched)))
        return unchanged + len(chunk) - len(items)

    def _complete(self, conn: sa.Connection, ids: list[str]) -> list[dict[str, Any]]:
        """What this file does not say about a category (its name, say) stays as stored."""
        stored = {
            r.id: r
            for r in conn.execute(
                sa.select(categories.c.id, categories.c.name, categories.c.parent_id).where(
                    categories.c.id.in_(ids)
                )
            )
        }
        out = []
        for cid in ids:
            given, old = self.categories[cid], stored.get(cid)
            out.append(
                {
                    **given,
                    "name": given["name"] or (old.name if old else None),
                    "parent_id": given["parent_id"] or (old.parent_id if old else None),
                }
            )
        return out

    def _remember(self, category: dict[str, Any]) -> str:
        known = self.categories.setdefault(
            category["id"],
            {"id": category["id"], "name": None, "parent_id": None, "compatible": []},
        )
        if category.get("name"):
            known["name"] = category["name"]
        if category.get("parent_id"):
            known["parent_id"] = category["parent_id"]
        for other in category.get("compatible") or []:
            if other not in known["compatible"]:
                known["compatible"].append(other)
        return str(category["id"])
