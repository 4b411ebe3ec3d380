"""A realistic ingest workload: a population of shoppers producing the Segment mix.

Shares by message (roughly what a shop's tracking plan sends): page 25 %, Product Viewed
35 %, Product List Filtered 8 %, Product Added 10 %, Cart Viewed 5 %, Checkout Started 4 %,
Order Completed 3 %, identify 5 %, other track 5 %. Visitors start anonymous and identify
later, so identity resolution and merges are part of the measured work.

Traffic comes in sessions, as it does from real sites: ``sessions`` visitors are active at
once, each message comes from one of them, and a session ends after ~12 messages and a new
visitor (drawn from the whole population) takes its place. So a batch of 100 messages
holds a few messages from each of some dozens of visitors, not 100 strangers.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

MIX = [
    ("page", 25),
    ("Product Viewed", 35),
    ("Product List Filtered", 8),
    ("Product Added", 10),
    ("Cart Viewed", 5),
    ("Checkout Started", 4),
    ("Order Completed", 3),
    ("identify", 5),
    ("Newsletter Opened", 5),
]
CATEGORIES = ["shoes", "sneakers", "boots", "jeans", "t-shirts", "jackets", "socks", "belts"]


class Workload:
    def __init__(
        self, visitors: int = 20_000, products: int = 2_000, seed: int = 7, sessions: int = 50
    ) -> None:
        self.rng = random.Random(seed)
        self.visitors = visitors
        self.active = [[self.rng.randrange(visitors), 0] for _ in range(sessions)]
        self.products = [
            {
                "product_id": f"p{i}",
                "name": f"Product {i}",
                "category": CATEGORIES[i % len(CATEGORIES)],
                "price": round(self.rng.uniform(5, 300), 2),
            }
            for i in range(products)
        ]
        self.kinds = [k for k, w in MIX for _ in range(w)]
        self.t = datetime(2026, 1, 1, tzinfo=UTC)
        self.orders = 0

    def _who(self) -> tuple[int, dict[str, Any]]:
        session = self.rng.choice(self.active)
        session[1] += 1
        if session[1] > self.rng.randint(6, 18):  # the session ends; a new visitor arrives
            session[0], session[1] = self.rng.randrange(self.visitors), 1
        v = session[0]
        ids: dict[str, Any] = {"anonymousId": f"anon-{v}"}
        if v % 3 == 0:  # a third of visitors are logged in
            ids["userId"] = f"user-{v}"
        return v, ids

    def message(self) -> dict[str, Any]:
        kind = self.rng.choice(self.kinds)
        v, ids = self._who()
        self.t += timedelta(milliseconds=50)
        base: dict[str, Any] = {
            **ids,
            "messageId": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "timestamp": self.t.isoformat(),
            "context": {"library": {"name": "bench", "version": "1"}, "ip": "127.0.0.1"},
        }
        product = self.rng.choice(self.products)
        if kind == "page":
            return {**base, "type": "page", "name": "Catalog", "properties": {"path": "/catalog"}}
        if kind == "identify":
            return {
                **base,
                "type": "identify",
                "userId": f"user-{v}",
                "traits": {
                    "email": f"user{v}@example.com",
                    "firstName": f"Name{v}",
                    "plan": "basic",
                },
            }
        if kind in ("Product Viewed", "Product Added"):
            return {**base, "type": "track", "event": kind, "properties": dict(product)}
        if kind == "Product List Filtered":
            return {
                **base,
                "type": "track",
                "event": kind,
                "properties": {
                    "category": product["category"],
                    "filters": [{"type": "size", "value": "42"}],
                },
            }
        if kind in ("Cart Viewed", "Checkout Started"):
            return {
                **base,
                "type": "track",
                "event": kind,
                "properties": {"products": [dict(product, quantity=1)]},
            }
        if kind == "Order Completed":
            self.orders += 1
            return {
                **base,
                "type": "track",
                "event": kind,
                "properties": {
                    "order_id": f"o-{uuid.UUID(int=self.rng.getrandbits(128))}",
                    "total": product["price"],
                    "currency": "USD",
                    "products": [dict(product, quantity=1)],
                },
            }
        return {**base, "type": "track", "event": kind, "properties": {"campaign": "weekly"}}

    def batch(self, size: int) -> list[dict[str, Any]]:
        return [self.message() for _ in range(size)]
