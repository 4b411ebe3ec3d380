"""Carts, kept in step with Product Added / Removed, Cart Viewed, Checkout Started and orders.

A batch loads the carts it touches once, replays its events on them in memory, and writes
the result back with a handful of statements, however many cart events it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.fast import among, db_time, insert_unnest, is_sqlite, run_many, update_rows
from rapport.store.tables import cart_items, carts

CartKey = tuple[int, str]


@dataclass
class CartState:
    pk: int | None
    status: str
    created_at: datetime
    items: dict[str, list[Any]] = field(default_factory=dict)  # product -> [quantity, price]
    changed: bool = False


class CartBook:
    def __init__(self, conn: sa.Connection, keys: set[CartKey], now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.carts: dict[CartKey, CartState] = {}
        if not keys:
            return
        cids = sorted({cid for cid, _ in keys})
        by_pk: dict[int, CartState] = {}
        for row in conn.execute(sa.select(carts).where(among(conn, carts.c.customer_id, cids))):
            key = (row.customer_id, row.cart_id)
            if key in keys:
                state = CartState(row.id, row.status, row.created_at)
                self.carts[key] = by_pk[row.id] = state
        if by_pk:
            for item in conn.execute(
                sa.select(cart_items).where(among(conn, cart_items.c.cart_pk, sorted(by_pk)))
            ):
                by_pk[item.cart_pk].items[item.product_id] = [item.quantity, item.price]

    def _open(self, key: CartKey) -> CartState:
        """The open cart: a cart that was ordered starts over when something is added."""
        state = self.carts.get(key)
        if state is None:
            state = self.carts[key] = CartState(None, "open", self.now)
        elif state.status == "ordered":
            state.items.clear()
            state.status = "open"
            state.created_at = self.now
        state.changed = True
        return state

    def add(self, key: CartKey, product: str, quantity: int, price: float | None) -> None:
        state = self._open(key)
        slot = state.items.setdefault(product, [0, None])
        slot[0] += quantity
        if price is not None:
            slot[1] = price
        state.status = "open"

    def remove(self, key: CartKey, product: str, quantity: int) -> None:
        state = self._open(key)
        slot = state.items.get(product)
        if slot is not None:
            slot[0] -= quantity
            if slot[0] <= 0:
                del state.items[product]
        state.status = "open"

    def replace(self, key: CartKey, items: dict[str, list[Any]], status: str | None) -> None:
        """Cart Viewed and Checkout Started carry the whole cart: it replaces what we had."""
        state = self._open(key)
        if items:
            state.items = items
        if status:
            state.status = status

    def ordered(self, key: CartKey) -> None:
        state = self.carts.get(key)
        if state is not None:
            state.status = "ordered"
            state.changed = True

    def flush(self) -> None:
        changed = [(k, s) for k, s in sorted(self.carts.items()) if s.changed]
        if not changed:
            return
        new = [(k, s) for k, s in changed if s.pk is None]
        if new and not is_sqlite(self.conn):
            made: Sequence[Any] = insert_unnest(
                self.conn,
                carts,
                ("customer_id", "cart_id", "status", "created_at", "updated_at"),
                [(k[0], k[1], s.status, s.created_at, self.now) for k, s in new],
                " RETURNING id, customer_id, cart_id",
            ).fetchall()
            pks = {(int(r[1]), r[2]): int(r[0]) for r in made}
            for key, state in new:
                state.pk = pks[key]
        elif new:
            result = self.conn.execute(
                carts.insert().returning(carts.c.id, sort_by_parameter_order=True),
                [
                    {
                        "customer_id": k[0],
                        "cart_id": k[1],
                        "status": s.status,
                        "created_at": s.created_at,
                        "updated_at": self.now,
                    }
                    for k, s in new
                ],
            )
            for (_, state), pk in zip(new, result.scalars(), strict=True):
                state.pk = int(pk)
        now = db_time(self.conn, self.now)
        born = {id(s) for _, s in new}
        old = [s for _, s in changed if id(s) not in born]
        if old:
            update_rows(
                self.conn,
                "carts",
                "id",
                [
                    ("status", "text", "{new}"),
                    ("created_at", "timestamptz", "{new}"),
                    ("updated_at", "timestamptz", "{new}"),
                ],
                [(s.pk, s.status, db_time(self.conn, s.created_at), now) for s in old],
            )
            self.conn.execute(
                cart_items.delete().where(
                    among(self.conn, cart_items.c.cart_pk, [s.pk for s in old])
                )
            )
        run_many(
            self.conn,
            "INSERT INTO cart_items (cart_pk, product_id, quantity, price, updated_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (s.pk, pid, qty, price, now)
                for _, s in changed
                for pid, (qty, price) in sorted(s.items.items())
            ],
            array_types=("bigint", "text", "int", "float8", "timestamptz"),
        )
