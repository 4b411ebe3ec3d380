"""Products and categories, written by e-commerce events and by the importer.

Events mention the same products over and over; a small cache of what this process last
wrote skips the rewrite when nothing changed, which keeps views cheap to ingest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.fast import insert_unnest, is_sqlite
from rapport.store.tables import categories, compatible_categories, products

PRODUCT_FIELDS = ("sku", "name", "category_id", "brand", "price", "currency", "url", "image_url")


class ProductCache:
    """The last values this process wrote per product (bounded, least recently used out)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        # Category ids this process knows exist, so events do not re-insert them.
        self.categories: set[str] = set()
        self._lock = threading.Lock()  # several ingest writers share one cache

    def changed(self, product: dict[str, Any]) -> bool:
        key = product["id"]
        fingerprint = tuple(product.get(f) for f in PRODUCT_FIELDS)
        with self._lock:
            if self._seen.get(key) == fingerprint:
                self._seen.move_to_end(key)
                return False
            return True

    def remember(self, product: dict[str, Any]) -> None:
        with self._lock:
            self._seen[product["id"]] = tuple(product.get(f) for f in PRODUCT_FIELDS)
            self._seen.move_to_end(product["id"])
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self.categories.clear()


def upsert_products(
    conn: sa.Connection,
    items: list[dict[str, Any]],
    now: datetime,
    *,
    replace: bool = False,
    known_categories: set[str] | None = None,
) -> None:
    """Insert new products; for known ones, update the fields given (None keeps the old value).

    ``replace`` (the importer) sets every field, attributes included, as given.
    ``known_categories`` (kept by the caller) skips categories already written.
    """
    if not items:
        return
    cats = sorted({p["category_id"] for p in items if p.get("category_id")})
    if known_categories is not None:
        cats = [c for c in cats if c not in known_categories]
        known_categories.update(cats)
    if cats:
        cat_stmt = upsert(conn, categories).on_conflict_do_nothing(index_elements=["id"])
        conn.execute(cat_stmt, [{"id": c, "name": c, "parent_id": None} for c in cats])
    items = sorted(items, key=lambda p: p["id"])  # a fixed lock order for concurrent writers
    rows = [
        {
            "id": p["id"],
            **{f: p.get(f) for f in PRODUCT_FIELDS},
            "attributes": p.get("attributes") or {},
            "created_at": now,
            "updated_at": now,
        }
        for p in items
    ]
    if not is_sqlite(conn):
        names = tuple(rows[0])
        insert_unnest(conn, products, names, [tuple(r.values()) for r in rows], _pg_tail(replace))
        return
    statements = _UPSERTS.setdefault(conn.dialect.name, {})
    stmt = statements.get(replace)
    if stmt is None:
        stmt = statements[replace] = _product_upsert(conn, replace)
    conn.execute(stmt, rows)


def _pg_tail(replace: bool) -> str:
    """The conflict clause of :func:`_product_upsert`, for the unnest form on PostgreSQL."""
    if replace:
        sets = [f"{f} = EXCLUDED.{f}" for f in (*PRODUCT_FIELDS, "attributes")]
    else:
        sets = [f"{f} = coalesce(EXCLUDED.{f}, products.{f})" for f in PRODUCT_FIELDS]
    sets.append("updated_at = EXCLUDED.updated_at")
    return f" ON CONFLICT (id) DO UPDATE SET {', '.join(sets)}"


# Built once per dialect and mode: building the statement (a coalesce per field) cost more
# than running it for the few products a batch of events carries.
_UPSERTS: dict[str, dict[bool, Any]] = {}


def _product_upsert(conn: sa.Connection, replace: bool) -> Any:
    stmt = upsert(conn, products)
    if replace:
        set_: dict[str, Any] = {f: getattr(stmt.excluded, f) for f in PRODUCT_FIELDS}
        set_["attributes"] = stmt.excluded.attributes
    else:
        set_ = {
            f: sa.func.coalesce(getattr(stmt.excluded, f), getattr(products.c, f))
            for f in PRODUCT_FIELDS
        }
    set_["updated_at"] = stmt.excluded.updated_at
    return stmt.on_conflict_do_update(index_elements=["id"], set_=set_)


def upsert_categories(conn: sa.Connection, items: list[dict[str, Any]]) -> None:
    """Categories with names, parents and compatible categories (for cross-sell)."""
    if not items:
        return
    stmt = upsert(conn, categories)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={"name": stmt.excluded.name, "parent_id": stmt.excluded.parent_id},
    )
    conn.execute(
        stmt,
        [
            {"id": c["id"], "name": c.get("name") or c["id"], "parent_id": c.get("parent_id")}
            for c in items
        ],
    )
    pairs = [
        {"category_id": c["id"], "compatible_id": other}
        for c in items
        for other in c.get("compatible") or []
    ]
    if pairs:
        conn.execute(
            upsert(conn, compatible_categories).on_conflict_do_nothing(
                index_elements=["category_id", "compatible_id"]
            ),
            pairs,
        )
