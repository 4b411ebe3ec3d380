"""A small shop written straight into the store, for the recommendation tests; and the
tests of its reading into arrays (recommend/data.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.recommend.data import read_snapshot
from rapport.store.engine import writing
from rapport.store.tables import (
    categories,
    compatible_categories,
    customers,
    identities,
    order_lines,
    orders,
    product_views,
    products,
)
from tests.conftest import T0


class Shop:
    """Catalog, customers, orders and views, each in one call."""

    def __init__(self, engine: sa.Engine, now: datetime = T0) -> None:
        self.engine = engine
        self.now = now
        self._numbers = itertools.count(1)

    def category(self, cid: str, parent: str | None = None, compatible: Iterable[str] = ()) -> None:
        with writing(self.engine) as conn:
            conn.execute(categories.insert().values(id=cid, name=cid, parent_id=parent))
            for other in compatible:
                conn.execute(
                    compatible_categories.insert().values(category_id=cid, compatible_id=other)
                )

    def products(
        self, category: str | None, *ids: str, days_old: float = 365, **attributes: Any
    ) -> None:
        at = self.now - timedelta(days=days_old)
        with writing(self.engine) as conn:
            conn.execute(
                products.insert(),
                [
                    {
                        "id": pid,
                        "name": f"Product {pid}",
                        "category_id": category,
                        "price": 10.0,
                        "currency": "EUR",
                        "url": f"https://shop.example/{pid}",
                        "attributes": dict(attributes),
                        "created_at": at,
                        "updated_at": at,
                    }
                    for pid in ids
                ],
            )

    def customer(self, user_id: str | None = None) -> int:
        with writing(self.engine) as conn:
            cid = int(
                conn.execute(
                    customers.insert()
                    .values(created_at=self.now, updated_at=self.now, traits={})
                    .returning(customers.c.id)
                ).scalar_one()
            )
            if user_id is not None:
                conn.execute(
                    identities.insert().values(
                        customer_id=cid, kind="user_id", value=user_id, created_at=self.now
                    )
                )
        return cid

    def order(
        self, cid: int, items: Iterable[str], days_ago: float, status: str = "completed"
    ) -> None:
        at = self.now - timedelta(days=days_ago)
        with writing(self.engine) as conn:
            pk = conn.execute(
                orders.insert()
                .values(
                    order_id=f"o-{next(self._numbers)}",
                    customer_id=cid,
                    status=status,
                    total=10.0,
                    channel="online",
                    occurred_at=at,
                    updated_at=at,
                )
                .returning(orders.c.id)
            ).scalar_one()
            conn.execute(
                order_lines.insert(),
                [
                    {"order_pk": pk, "product_id": pid, "price": 10.0, "quantity": 1}
                    for pid in items
                ],
            )

    def view(self, cid: int, pid: str, days_ago: float, views: int = 1) -> None:
        at = self.now - timedelta(days=days_ago)
        with writing(self.engine) as conn:
            conn.execute(
                product_views.insert().values(
                    customer_id=cid,
                    product_id=pid,
                    views=views,
                    first_viewed_at=at,
                    last_viewed_at=at,
                )
            )


def test_snapshot_reads_completed_lines_before_the_cutoff(engine):
    shop = Shop(engine)
    shop.category("phones")
    shop.products("phones", "p1", "p2")
    shop.products(None, "p3", stock=0)
    a, b = shop.customer(), shop.customer()
    shop.order(a, ["p1", "p2", "ghost"], days_ago=10)
    shop.order(a, ["p3"], days_ago=5, status="refunded")
    shop.order(b, ["p2"], days_ago=1)
    shop.view(b, "p1", days_ago=4, views=3)
    shop.view(b, "p2", days_ago=2)  # after the cut-off
    with engine.connect() as conn:
        snap = read_snapshot(conn, T0 - timedelta(days=3))
    cat = snap.catalog
    assert cat.ids == ["p1", "p2", "p3"]
    assert cat.available.tolist() == [True, True, False]
    assert [cat.category_ids[c] if c >= 0 else None for c in cat.category] == [
        "phones",
        "phones",
        None,
    ]
    # The refunded order, the unknown product and the order after the cut-off are left out.
    assert sorted(cat.ids[i] for i in snap.purchases.item) == ["p1", "p2"]
    assert set(snap.purchases.customer.tolist()) == {a}
    assert abs(snap.purchases.at[0] - (T0 - timedelta(days=10)).timestamp()) < 1e-3
    assert len(snap.views) == 1 and snap.views.views.tolist() == [3]
