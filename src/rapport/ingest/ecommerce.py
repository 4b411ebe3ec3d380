"""Segment e-commerce spec v2 events fill products, carts, orders and views.

Offline purchases use the same ``Order Completed`` event with ``properties.channel`` set to
``"offline"`` (or a ``store_id``); docs/ingest.md shows it, and a telephony example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import sqlalchemy as sa

from rapport.catalog.products import ProductCache, upsert_products
from rapport.errors import Problem
from rapport.ingest.carts import CartBook
from rapport.ingest.incoming import Incoming
from rapport.store.engine import upsert
from rapport.store.fast import among, db_time, insert_unnest, is_sqlite, run_many
from rapport.store.tables import order_lines, orders

PRODUCT_EVENTS = {"Product Viewed", "Product Added", "Product Removed", "Product Clicked"}
CART_EVENTS = {"Cart Viewed", "Checkout Started"}
ORDER_EVENTS = {"Order Completed", "Order Updated", "Order Refunded", "Order Cancelled"}
LIST_EVENTS = {"Product List Viewed", "Product List Filtered", "Products Searched"}
ECOMMERCE_EVENTS = PRODUCT_EVENTS | CART_EVENTS | ORDER_EVENTS | LIST_EVENTS
_NUMBERS = ("price", "quantity", "total", "revenue", "subtotal", "discount", "shipping", "tax")


def _first(props: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = props.get(key)
        if value not in (None, ""):
            return value
    return None


def product_id(props: dict[str, Any]) -> str | None:
    value = _first(props, "product_id", "productId", "sku", "id")
    return None if value is None else str(value)


def order_id(props: dict[str, Any]) -> str | None:
    value = _first(props, "order_id", "orderId")
    return None if value is None else str(value)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(msg: Incoming, where: str, problems: list[Problem]) -> None:
    """The fields the e-commerce tables need, checked before anything is stored."""
    if msg.type != "track" or msg.name not in ECOMMERCE_EVENTS:
        return
    props = msg.properties
    base = f"{where}.properties"
    for key in _NUMBERS:
        if props.get(key) is not None and not _is_number(props[key]):
            problems.append(Problem(f"{base}.{key}", "must be a number"))
    if msg.name in PRODUCT_EVENTS and product_id(props) is None:
        problems.append(Problem(f"{base}.product_id", f"{msg.name} needs a product_id"))
    if msg.name in ORDER_EVENTS and order_id(props) is None:
        problems.append(Problem(f"{base}.order_id", f"{msg.name} needs an order_id"))
    items = props.get("products")
    if items is not None:
        if not isinstance(items, list):
            problems.append(Problem(f"{base}.products", "must be a list of products"))
            return
        for i, item in enumerate(items):
            if not isinstance(item, dict) or product_id(item) is None:
                problems.append(Problem(f"{base}.products[{i}].product_id", "is required"))
                continue
            for key in ("price", "quantity"):
                if item.get(key) is not None and not _is_number(item[key]):
                    problems.append(Problem(f"{base}.products[{i}].{key}", "must be a number"))


def product_fields(props: dict[str, Any]) -> dict[str, Any]:
    price = props.get("price")
    category = props.get("category")
    return {
        "id": product_id(props),
        "sku": _str(props.get("sku")),
        "name": _str(props.get("name")),
        "category_id": _str(category),
        "brand": _str(props.get("brand")),
        "price": float(price) if _is_number(price) else None,
        "currency": _str(props.get("currency")),
        "url": _str(props.get("url")),
        "image_url": _str(props.get("image_url")),
    }


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


@dataclass
class CommerceOutcome:
    orders_changed: set[int] = field(default_factory=set)


def apply(
    conn: sa.Connection,
    batch: list[Incoming],
    customer_ids: list[int],
    now: datetime,
    cache: ProductCache,
) -> CommerceOutcome:
    outcome = CommerceOutcome()
    seen_products: dict[str, dict[str, Any]] = {}
    views: dict[tuple[int, str], list[Any]] = {}
    book = CartBook(conn, _cart_keys(batch, customer_ids), now)
    book_orders = _Orders(conn, now)
    for msg, cid in zip(batch, customer_ids, strict=True):
        if msg.type != "track" or msg.name not in ECOMMERCE_EVENTS:
            continue
        props = msg.properties
        for item in _products_of(msg):
            fields = product_fields(item)
            old = seen_products.get(fields["id"], {})
            seen_products[fields["id"]] = {
                k: v if v is not None else old.get(k) for k, v in fields.items()
            }
        if msg.name == "Product Viewed":
            key = (cid, product_id(props) or "")
            slot = views.get(key)
            if slot is None:
                views[key] = [1, msg.occurred_at, msg.occurred_at]
            else:
                slot[0] += 1
                slot[1] = min(slot[1], msg.occurred_at)
                slot[2] = max(slot[2], msg.occurred_at)
        elif msg.name == "Product Added":
            book.add(
                (cid, _cart_id(props)),
                product_id(props) or "",
                _quantity(props),
                _number(props, "price"),
            )
        elif msg.name == "Product Removed":
            book.remove((cid, _cart_id(props)), product_id(props) or "", _quantity(props))
        elif msg.name in CART_EVENTS:
            status = "checkout" if msg.name == "Checkout Started" else None
            book.replace((cid, _cart_id(props)), _cart_items(msg), status)
        elif msg.name in ("Order Completed", "Order Updated"):
            book_orders.add(cid, msg)
            if msg.name == "Order Completed":
                book.ordered((cid, _cart_id(props)))
            outcome.orders_changed.add(cid)
        elif msg.name in ("Order Refunded", "Order Cancelled"):
            outcome.orders_changed |= book_orders.flush()
            owner = _refund_or_cancel(conn, msg, now)
            if owner is not None:
                outcome.orders_changed.add(owner)

    changed = [p for p in seen_products.values() if cache.changed(p)]
    upsert_products(conn, changed, now, known_categories=cache.categories)
    for p in changed:
        cache.remember(p)
    _record_views(conn, views)
    book.flush()
    outcome.orders_changed |= book_orders.flush()
    return outcome


def _cart_keys(batch: list[Incoming], customer_ids: list[int]) -> set[tuple[int, str]]:
    return {
        (cid, _cart_id(msg.properties))
        for msg, cid in zip(batch, customer_ids, strict=True)
        if msg.type == "track"
        and msg.name in ("Product Added", "Product Removed", "Order Completed", *CART_EVENTS)
    }


def _cart_id(props: dict[str, Any]) -> str:
    value = _first(props, "cart_id", "cartId")
    return "" if value is None else str(value)


def _quantity(props: dict[str, Any]) -> int:
    value = props.get("quantity")
    return int(value) if _is_number(value) and value > 0 else 1


def _cart_items(msg: Incoming) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for item in _products_of(msg):
        slot = merged.setdefault(product_id(item) or "", [0, None])
        slot[0] += _quantity(item)
        if _is_number(item.get("price")):
            slot[1] = float(item["price"])
    return merged


def _products_of(msg: Incoming) -> list[dict[str, Any]]:
    props = msg.properties
    if msg.name in PRODUCT_EVENTS:
        return [props]
    items = props.get("products")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _record_views(conn: sa.Connection, views: dict[tuple[int, str], list[Any]]) -> None:
    run_many(
        conn,
        "INSERT INTO product_views (customer_id, product_id, views, first_viewed_at, "
        "last_viewed_at) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (customer_id, product_id) DO UPDATE SET "
        "views = product_views.views + excluded.views, "
        "first_viewed_at = CASE WHEN excluded.first_viewed_at < product_views.first_viewed_at "
        "THEN excluded.first_viewed_at ELSE product_views.first_viewed_at END, "
        "last_viewed_at = CASE WHEN excluded.last_viewed_at > product_views.last_viewed_at "
        "THEN excluded.last_viewed_at ELSE product_views.last_viewed_at END",
        [
            (cid, pid, n, db_time(conn, a), db_time(conn, b))
            for (cid, pid), (n, a, b) in sorted(views.items())
        ],
        array_types=("bigint", "text", "int", "timestamptz", "timestamptz"),
    )


def _number(props: dict[str, Any], key: str) -> float | None:
    value = props.get(key)
    return float(value) if _is_number(value) else None


def order_total(props: dict[str, Any]) -> float:
    """What the customer paid: ``total``, else ``revenue``, else the sum of the lines."""
    for key in ("total", "revenue", "subtotal"):
        value = _number(props, key)
        if value is not None:
            return value
    return float(
        sum(
            float(i.get("price") or 0) * int(i.get("quantity") or 1)
            for i in props.get("products") or []
            if isinstance(i, dict)
        )
    )


def _order_row(cid: int, msg: Incoming, now: datetime) -> dict[str, Any]:
    props = msg.properties
    offline = props.get("channel") == "offline" or props.get("store_id") is not None
    return {
        "order_id": order_id(props) or "",
        "customer_id": cid,
        "status": "completed",
        "total": order_total(props),
        "refunded": 0.0,
        "discount": _number(props, "discount") or 0.0,
        "shipping": _number(props, "shipping") or 0.0,
        "tax": _number(props, "tax") or 0.0,
        "currency": _str(props.get("currency")),
        "coupon": _str(props.get("coupon")),
        "channel": "offline" if offline else "online",
        "store_id": _str(props.get("store_id")),
        "occurred_at": msg.occurred_at,
        "updated_at": now,
    }


class _Orders:
    """Orders of a batch, written together; flushed before a refund or cancel reads them.

    A re-sent order updates its amounts and lines but keeps its customer, its status (a
    cancelled order stays cancelled) and its refunds; ``Order Updated`` keeps its time.
    """

    def __init__(self, conn: sa.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.pending: dict[str, tuple[dict[str, Any], list[dict[str, Any]], bool]] = {}

    def add(self, cid: int, msg: Incoming) -> None:
        row = _order_row(cid, msg, self.now)
        lines = [
            {
                "product_id": product_id(i) or "",
                "category_id": _str(i.get("category")),
                "price": float(i.get("price") or 0),
                "quantity": _quantity(i),
            }
            for i in _products_of(msg)
        ]
        earlier = self.pending.get(row["order_id"])
        keep_time = msg.name == "Order Updated"
        if earlier is not None:
            if keep_time:
                row["occurred_at"] = earlier[0]["occurred_at"]
            keep_time = earlier[2] and keep_time
            lines = lines or earlier[1]
        self.pending[row["order_id"]] = (row, lines, keep_time)

    def flush(self) -> set[int]:
        """Store the pending orders; the customers who own them. An order sent again by
        another profile (after an erasure, or before a merge caught up) stays with its
        owner, whose figures are the ones that change."""
        owners: set[int] = set()
        if not self.pending:
            return owners
        for keep_time in (False, True):
            group = [p for p in self.pending.values() if p[2] == keep_time]
            if not group:
                continue
            kept = {"order_id", "customer_id", "refunded", "status"}
            if keep_time:
                kept.add("occurred_at")
            pks = self._upsert([row for row, _, _ in group], kept)
            owners.update(owner for _, owner in pks)
            with_lines = [
                (pk, lines) for (pk, _), (_, lines, _) in zip(pks, group, strict=True) if lines
            ]
            if with_lines:
                self.conn.execute(
                    order_lines.delete().where(
                        among(self.conn, order_lines.c.order_pk, [pk for pk, _ in with_lines])
                    )
                )
                self._insert_lines(with_lines)
        self.pending.clear()
        return owners

    def _upsert(self, rows: list[dict[str, Any]], kept: set[str]) -> list[tuple[int, int]]:
        """Insert or update the orders; each one's (id, owner) in the order given."""
        names = tuple(rows[0])
        if is_sqlite(self.conn):
            stmt = upsert(self.conn, orders)
            update = {k: getattr(stmt.excluded, k) for k in names if k not in kept}
            stmt = stmt.on_conflict_do_update(index_elements=["order_id"], set_=update)
            stored = self.conn.execute(
                stmt.returning(orders.c.id, orders.c.customer_id, sort_by_parameter_order=True),
                rows,
            ).all()
            return [(int(pk), int(owner)) for pk, owner in stored]
        sets = ", ".join(f"{k} = EXCLUDED.{k}" for k in names if k not in kept)
        made: Sequence[Any] = insert_unnest(
            self.conn,
            orders,
            names,
            [tuple(row.values()) for row in rows],
            f" ON CONFLICT (order_id) DO UPDATE SET {sets} RETURNING order_id, id, customer_id",
        ).fetchall()
        found = {r[0]: (int(r[1]), int(r[2])) for r in made}
        return [found[row["order_id"]] for row in rows]

    def _insert_lines(self, with_lines: list[tuple[int, list[dict[str, Any]]]]) -> None:
        rows = [{"order_pk": pk, **line} for pk, lines in with_lines for line in lines]
        if is_sqlite(self.conn):
            self.conn.execute(order_lines.insert(), rows)
            return
        names = tuple(rows[0])
        insert_unnest(self.conn, order_lines, names, [tuple(r.values()) for r in rows])


def _refund_or_cancel(conn: sa.Connection, msg: Incoming, now: datetime) -> int | None:
    """Cancel drops the order from the aggregates; a refund takes back its amount.

    The amount is ``total`` (or ``revenue``), else the refunded ``products`` (the spec's
    partial refund by items). A refund with neither, or for the whole total, is a full
    refund and the order stops counting; a partial refund keeps it counted with less revenue.
    """
    oid = order_id(msg.properties) or ""
    row = conn.execute(
        sa.select(orders.c.id, orders.c.customer_id, orders.c.total, orders.c.refunded).where(
            orders.c.order_id == oid
        )
    ).first()
    if row is None:
        return None
    if msg.name == "Order Cancelled":
        values: dict[str, Any] = {"status": "cancelled"}
    else:
        amount = _number(msg.properties, "total")
        if amount is None:
            amount = _number(msg.properties, "revenue")
        if amount is None and _products_of(msg):
            amount = order_total({"products": _products_of(msg)})
        refunded = row.total if amount is None else min(row.total, row.refunded + amount)
        values = {
            "refunded": refunded,
            "status": "refunded" if refunded >= row.total else "completed",
        }
    conn.execute(orders.update().where(orders.c.id == row.id).values(updated_at=now, **values))
    return int(row.customer_id)
