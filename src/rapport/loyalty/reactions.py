"""What stored events mean for the programme, in the transaction that stores them.

The pipeline calls :func:`on_events` after a batch's orders are written: orders that
changed are reconciled (points earned, taken back, returned), ``Signed Up`` and
``Product Reviewed`` earn their bonuses, and customers whose orders changed are re-tiered.
It answers the timeline events to record; the pipeline records them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.ingest.ecommerce import ORDER_EVENTS, order_id, product_id
from rapport.ingest.incoming import Incoming
from rapport.loyalty.accrual import sync_orders
from rapport.loyalty.bonuses import PRODUCT_REVIEWED, SIGNED_UP, on_review, on_signed_up
from rapport.loyalty.ledger import Event
from rapport.loyalty.offers import release_coupons
from rapport.loyalty.programme import load
from rapport.loyalty.tiers import retier
from rapport.store.fast import among
from rapport.store.tables import loyalty_ledger, orders

_WATCHED = ORDER_EVENTS | {SIGNED_UP, PRODUCT_REVIEWED}


def on_events(
    conn: sa.Connection, batch: list[Incoming], customer_ids: list[int], now: datetime
) -> list[Event]:
    relevant = [
        (msg, cid)
        for msg, cid in zip(batch, customer_ids, strict=True)
        if msg.type == "track" and msg.name in _WATCHED
    ]
    if not relevant:
        return []
    for msg, _ in relevant:  # a cancelled order's coupon uses come back
        if msg.name == "Order Cancelled" and (oid := order_id(msg.properties)) is not None:
            release_coupons(conn, oid, now)
    programme = load(conn)
    order_ids = {
        oid
        for msg, _ in relevant
        if msg.name in ORDER_EVENTS and (oid := order_id(msg.properties)) is not None
    }
    if not programme.enabled:
        # Switched off: no new points, but orders that earned some still give them back.
        order_ids = _with_points(conn, order_ids)
        if not order_ids:
            return []
    events = sync_orders(conn, order_ids, programme, now)
    if programme.enabled:
        for msg, cid in relevant:
            if msg.name == SIGNED_UP:
                events += on_signed_up(conn, programme, cid, now)
            elif msg.name == PRODUCT_REVIEWED:
                product = product_id(msg.properties)
                if product is not None:
                    events += on_review(conn, programme, cid, product, now)
    if order_ids and (programme.enabled or programme.tiers):
        owners = conn.execute(
            sa.select(orders.c.customer_id).where(among(conn, orders.c.order_id, sorted(order_ids)))
        ).scalars()
        events += retier(conn, programme, now, [int(c) for c in owners])
    return events


def _with_points(conn: sa.Connection, order_ids: set[str]) -> set[str]:
    if not order_ids:
        return set()
    return set(
        conn.execute(
            sa.select(loyalty_ledger.c.order_id)
            .where(among(conn, loyalty_ledger.c.order_id, sorted(order_ids)))
            .distinct()
        ).scalars()
    )
