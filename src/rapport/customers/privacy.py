"""Personal data on request: export everything, or erase it and keep anonymous aggregates.

Erasure removes identities, contact details, attributes, traits, consents, carts and group
memberships, and empties the properties and context of every event. What stays cannot
name the person: event names and times, order amounts and lines, the computed counters;
analytics (revenue, cohorts, retention) therefore do not change when someone is erased.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.card import card
from rapport.customers.profile import PROFILE_COLUMNS
from rapport.store.tables import (
    cart_items,
    carts,
    consents,
    customer_groups,
    customer_merges,
    customers,
    events,
    identities,
    order_lines,
    orders,
    outbox,
    push_subscriptions,
    segment_members,
    telegram_chats,
)


def export_customer(conn: sa.Connection, customer_id: int, now: datetime) -> dict[str, Any] | None:
    data = card(conn, customer_id, now)
    if data is None:
        return None
    cid = data["id"]
    data["events"] = [
        {
            "type": r.type,
            "name": r.name,
            "properties": r.properties,
            "context": r.context,
            "occurred_at": r.occurred_at,
            "source": r.source,
            "message_id": r.message_id,
        }
        for r in conn.execute(
            sa.select(events).where(events.c.customer_id == cid).order_by(events.c.occurred_at)
        )
    ]
    order_rows = conn.execute(
        sa.select(orders).where(orders.c.customer_id == cid).order_by(orders.c.occurred_at)
    ).all()
    lines: dict[int, list[dict[str, Any]]] = {}
    if order_rows:
        for line in conn.execute(
            sa.select(order_lines).where(order_lines.c.order_pk.in_([o.id for o in order_rows]))
        ):
            lines.setdefault(line.order_pk, []).append(
                {"product_id": line.product_id, "price": line.price, "quantity": line.quantity}
            )
    data["orders"] = [
        {
            "order_id": o.order_id,
            "status": o.status,
            "total": o.total,
            "refunded": o.refunded,
            "currency": o.currency,
            "channel": o.channel,
            "occurred_at": o.occurred_at,
            "lines": lines.get(o.id, []),
        }
        for o in order_rows
    ]
    data["merges"] = [
        {"from_id": m.from_id, "reason": m.reason, "details": m.details, "merged_at": m.merged_at}
        for m in conn.execute(sa.select(customer_merges).where(customer_merges.c.into_id == cid))
    ]
    return data


def erase_customer(conn: sa.Connection, customer_id: int, now: datetime) -> list[int]:
    """Erase a profile and every profile merged into it; returns the erased ids."""
    ids = [
        customer_id,
        *conn.execute(
            sa.select(customers.c.id).where(customers.c.merged_into == customer_id)
        ).scalars(),
    ]
    conn.execute(identities.delete().where(identities.c.customer_id.in_(ids)))
    conn.execute(consents.delete().where(consents.c.customer_id.in_(ids)))
    conn.execute(customer_groups.delete().where(customer_groups.c.customer_id.in_(ids)))
    # Where messages reached them: push tokens, browser subscriptions, Telegram chats.
    conn.execute(push_subscriptions.delete().where(push_subscriptions.c.customer_id.in_(ids)))
    conn.execute(telegram_chats.delete().where(telegram_chats.c.customer_id.in_(ids)))
    # Messages keep their status for the statistics, not their address or content; those
    # not sent yet will not be.
    conn.execute(
        outbox.update()
        .where(outbox.c.customer_id.in_(ids), outbox.c.status.in_(("queued", "failed")))
        .values(status="skipped", last_error="customer erased", updated_at=now)
    )
    conn.execute(
        outbox.update()
        .where(outbox.c.customer_id.in_(ids))
        .values(
            recipient="",
            subject=None,
            body_text="",
            body_html=None,
            headers={},
            data={},
            fallback=[],
        )
    )
    conn.execute(
        segment_members.update()
        .where(segment_members.c.customer_id.in_(ids), segment_members.c.until.is_(None))
        .values(until=now)
    )
    cart_ids = list(
        conn.execute(sa.select(carts.c.id).where(carts.c.customer_id.in_(ids))).scalars()
    )
    if cart_ids:
        conn.execute(cart_items.delete().where(cart_items.c.cart_pk.in_(cart_ids)))
        conn.execute(carts.delete().where(carts.c.id.in_(cart_ids)))
    conn.execute(
        events.update().where(events.c.customer_id.in_(ids)).values(properties={}, context={})
    )
    conn.execute(
        orders.update().where(orders.c.customer_id.in_(ids)).values(coupon=None, store_id=None)
    )
    conn.execute(
        customer_merges.update()
        .where(sa.or_(customer_merges.c.into_id.in_(ids), customer_merges.c.from_id.in_(ids)))
        .values(details={"erased": True})
    )
    conn.execute(
        customers.update()
        .where(customers.c.id.in_(ids))
        .values(**{col: None for col in PROFILE_COLUMNS}, traits={}, erased_at=now, updated_at=now)
    )
    return ids
