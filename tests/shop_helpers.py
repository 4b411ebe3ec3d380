"""Small shops built straight in the store, for the RFM, lifecycle and list tests.

Orders are written to the orders table and the customer's aggregates recomputed the way
the pipeline does, so a test states its order history in one line.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.customers.computed import recompute_orders
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import customers, orders

_order_numbers = itertools.count(1)


def add_customer(
    engine: sa.Engine,
    now: datetime,
    history: Sequence[tuple[float, float]] = (),
    *,
    status: str = "completed",
) -> int:
    """A customer with orders given as (days before ``now``, total)."""
    with writing(engine) as conn:
        cid = int(
            conn.execute(
                customers.insert()
                .values(created_at=now, updated_at=now, traits={})
                .returning(customers.c.id)
            ).scalar_one()
        )
        for days, total in history:
            add_order_in(conn, cid, now - timedelta(days=days), total, status=status)
        recompute_orders(conn, [cid], now)
    return cid


def add_order(
    engine: sa.Engine, cid: int, at: datetime, total: float, *, status: str = "completed"
) -> None:
    with writing(engine) as conn:
        add_order_in(conn, cid, at, total, status=status)
        recompute_orders(conn, [cid], at)


def add_order_in(
    conn: sa.Connection, cid: int, at: datetime, total: float, *, status: str = "completed"
) -> None:
    conn.execute(
        orders.insert().values(
            order_id=f"order-{next(_order_numbers)}",
            customer_id=cid,
            status=status,
            total=total,
            channel="online",
            occurred_at=at,
            updated_at=at,
        )
    )


def customer(engine: sa.Engine, cid: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(customers).where(customers.c.id == cid)).one()


def identify(pipeline: Pipeline, user_id: str, **traits: Any) -> int:
    """A customer created through the real ingest path, with identities to look up."""
    now = pipeline.clock.now()
    message = parse_message(
        {"type": "identify", "userId": user_id, "traits": traits},
        where="message",
        received_at=now,
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    result = pipeline.ingest([message])
    cid = result.customer_ids[0]
    assert cid is not None
    return cid
