"""The store's history as arrays: what the build and the evaluation compute on.

A build reads millions of order lines, so nothing here makes a Python object per row
beyond the driver's tuple: the queries are set-based, run on the driver's own cursor in
chunks (SQLAlchemy's row objects cost as much as the fetch), times come back as epoch
seconds computed in SQL, and product ids become integer indices through one dict.

What counts: lines of ``completed`` orders (cancelled and fully refunded orders are left
out: the customer did not keep the goods, so they say little about what goes together;
a partial refund keeps the order), placed before the cut-off; views first made before it;
every product of the catalog, with lines of products the catalog does not know ignored.
Orders of merged profiles were moved to the survivor, so customer ids are live ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from rapport.recommend.availability import is_available
from rapport.store.tables import (
    categories,
    compatible_categories,
    order_lines,
    orders,
    product_views,
    products,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

READ_CHUNK = 100_000
DAY = 86400.0


@dataclass
class Catalog:
    """Products and categories by integer index (products sorted by id)."""

    ids: list[str]
    index: dict[str, int]
    category: IntArray  # category index per product, -1 for none
    available: BoolArray
    published: FloatArray  # epoch seconds: attributes.published_at, else created_at
    category_ids: list[str]
    category_index: dict[str, int]
    parent: IntArray  # parent category index per category, -1 for a root
    # Declared compatible pairs (category index, compatible category index).
    compatible: list[tuple[int, int]]

    @property
    def size(self) -> int:
        return len(self.ids)

    def ancestors(self) -> list[list[int]]:
        """Per category: itself, its parent, its parent's parent, … (cycles cut)."""
        out: list[list[int]] = []
        for c in range(len(self.category_ids)):
            chain = [c]
            p = int(self.parent[c])
            while p >= 0 and p not in chain:
                chain.append(p)
                p = int(self.parent[p])
            out.append(chain)
        return out


@dataclass
class Purchases:
    """One entry per order line: who, which order, which product, when (epoch seconds)."""

    customer: IntArray
    order: IntArray
    item: IntArray
    at: FloatArray

    def __len__(self) -> int:
        return len(self.item)

    def select(self, mask: BoolArray) -> Purchases:
        return Purchases(self.customer[mask], self.order[mask], self.item[mask], self.at[mask])


@dataclass
class Views:
    customer: IntArray
    item: IntArray
    views: IntArray
    last_at: FloatArray

    def __len__(self) -> int:
        return len(self.item)


@dataclass
class Snapshot:
    catalog: Catalog
    purchases: Purchases
    views: Views
    cutoff: datetime

    @property
    def cutoff_epoch(self) -> float:
        return self.cutoff.timestamp()


def epoch_seconds(column: Any, dialect: str) -> sa.ColumnElement[float]:
    """Seconds since 1970 of a stored UTC time, as a float, in SQL."""
    if dialect == "sqlite":
        return sa.cast((sa.func.julianday(column) - 2440587.5) * DAY, sa.Float)
    return sa.cast(sa.extract("epoch", column), sa.Float)


def time_literal(when: datetime, dialect: str) -> sa.ColumnElement[Any]:
    """A time as a literal the dialect compares with stored times (queries here are
    compiled with literal binds for the driver's cursor)."""
    utc = when.astimezone(UTC)
    if dialect == "sqlite":  # stored as naive UTC text; text comparison is time order
        return sa.literal(utc.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"), sa.String)
    return sa.cast(sa.literal(utc.isoformat(), sa.String), sa.DateTime(timezone=True))


def fetch_chunks(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """The query's rows as lists of plain tuples, straight from the driver's cursor."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(sql)
        while chunk := cursor.fetchmany(READ_CHUNK):
            yield chunk
    finally:
        cursor.close()


def _published(attributes: Any, created: datetime) -> float:
    value = (attributes or {}).get("published_at") if isinstance(attributes, dict) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return created.timestamp()
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return created.timestamp()


def read_catalog(conn: sa.Connection) -> Catalog:
    """Every product and category; a product's category missing from the categories table
    is added as a root, so per-category lists cover it."""
    cat_rows = conn.execute(
        sa.select(categories.c.id, categories.c.parent_id).order_by(categories.c.id)
    ).all()
    category_ids = [str(r.id) for r in cat_rows]
    category_index = {c: i for i, c in enumerate(category_ids)}
    parents = [r.parent_id for r in cat_rows]
    p = products.c
    rows = conn.execute(
        sa.select(p.id, p.category_id, p.attributes, p.created_at).order_by(p.id)
    ).all()
    ids = [str(r.id) for r in rows]
    category = np.full(len(rows), -1, dtype=np.int64)
    available = np.ones(len(rows), dtype=np.bool_)
    published = np.zeros(len(rows), dtype=np.float64)
    for i, r in enumerate(rows):
        if r.category_id:
            c = category_index.get(r.category_id)
            if c is None:
                c = category_index[r.category_id] = len(category_ids)
                category_ids.append(str(r.category_id))
                parents.append(None)
            category[i] = c
        attributes = r.attributes if isinstance(r.attributes, dict) else {}
        available[i] = is_available(attributes)
        published[i] = _published(attributes, r.created_at)
    parent = np.array(
        [category_index.get(pid, -1) if pid else -1 for pid in parents], dtype=np.int64
    )
    declared = [
        (category_index[a], category_index[b])
        for a, b in conn.execute(
            sa.select(compatible_categories.c.category_id, compatible_categories.c.compatible_id)
        )
        if a in category_index and b in category_index and a != b
    ]
    return Catalog(
        ids=ids,
        index={pid: i for i, pid in enumerate(ids)},
        category=category,
        available=available,
        published=published,
        category_ids=category_ids,
        category_index=category_index,
        parent=parent,
        compatible=declared,
    )


def _items(index: dict[str, int], product_ids: Any) -> IntArray:
    return np.fromiter((index.get(p, -1) for p in product_ids), dtype=np.int64)


def read_purchases(
    conn: sa.Connection,
    catalog: Catalog,
    *,
    before: datetime | None = None,
    since: datetime | None = None,
) -> Purchases:
    """Lines of completed orders placed in [since, before)."""
    dialect = conn.dialect.name
    o, line = orders.c, order_lines.c
    query = (
        sa.select(o.customer_id, o.id, epoch_seconds(o.occurred_at, dialect), line.product_id)
        .select_from(order_lines.join(orders, orders.c.id == line.order_pk))
        .where(o.status == "completed")
    )
    if before is not None:
        query = query.where(o.occurred_at < time_literal(before, dialect))
    if since is not None:
        query = query.where(o.occurred_at >= time_literal(since, dialect))
    parts: list[tuple[IntArray, IntArray, FloatArray, IntArray]] = []
    for chunk in fetch_chunks(conn, query):
        cust, order, at, pid = zip(*chunk, strict=True)
        parts.append(
            (
                np.array(cust, dtype=np.int64),
                np.array(order, dtype=np.int64),
                np.array(at, dtype=np.float64),
                _items(catalog.index, pid),
            )
        )
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Purchases(empty, empty.copy(), empty.copy(), np.zeros(0))
    cust_a, order_a, at_a, item_a = (np.concatenate(col) for col in zip(*parts, strict=True))
    found = Purchases(cust_a, order_a, item_a, at_a)
    known = item_a >= 0
    return found if known.all() else found.select(known)


def read_views(conn: sa.Connection, catalog: Catalog, *, before: datetime | None) -> Views:
    """Views first made before the cut-off (the table keeps a count per product, so views
    of the same product after the cut-off cannot be told apart and are counted too)."""
    dialect = conn.dialect.name
    v = product_views.c
    query = sa.select(
        v.customer_id, v.product_id, v.views, epoch_seconds(v.last_viewed_at, dialect)
    )
    if before is not None:
        query = query.where(v.first_viewed_at < time_literal(before, dialect))
    parts: list[tuple[IntArray, IntArray, IntArray, FloatArray]] = []
    for chunk in fetch_chunks(conn, query):
        cust, pid, count, at = zip(*chunk, strict=True)
        parts.append(
            (
                np.array(cust, dtype=np.int64),
                _items(catalog.index, pid),
                np.array(count, dtype=np.int64),
                np.array(at, dtype=np.float64),
            )
        )
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Views(empty, empty.copy(), empty.copy(), np.zeros(0))
    cust_a, item_a, count_a, at_a = (np.concatenate(col) for col in zip(*parts, strict=True))
    if before is not None:
        at_a = np.minimum(at_a, before.timestamp())
    known = item_a >= 0
    return Views(cust_a[known], item_a[known], count_a[known], at_a[known])


def read_snapshot(conn: sa.Connection, cutoff: datetime) -> Snapshot:
    """Everything a build needs, as it was known at ``cutoff``."""
    catalog = read_catalog(conn)
    return Snapshot(
        catalog=catalog,
        purchases=read_purchases(conn, catalog, before=cutoff),
        views=read_views(conn, catalog, before=cutoff),
        cutoff=cutoff,
    )
