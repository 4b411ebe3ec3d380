"""Merging two profiles of one person into one.

The survivor keeps its own attribute values; the other profile fills only what the survivor
lacks. Events, orders, carts, identities, counters, consents, push subscriptions,
linked Telegram chats, loyalty points, coupon codes and personal discounts move over (for
a consent, the most recent decision wins). The merged
profile keeps its row, pointing at the survivor, so its old id still resolves; the merge
is recorded with what moved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.computed import refresh_order_history
from rapport.customers.profile import PROFILE_COLUMNS
from rapport.loyalty.coupons.merge import merge_coupons
from rapport.loyalty.merge import merge_points
from rapport.store.tables import (
    cart_items,
    carts,
    consents,
    customer_groups,
    customer_merges,
    customers,
    event_counters,
    events,
    identities,
    orders,
    push_subscriptions,
    segment_members,
    telegram_chats,
)

_MIN_COLUMNS = ("first_seen_at", "first_order_at")
_MAX_COLUMNS = ("last_seen_at", "last_order_at")
_SUM_COLUMNS = ("events_count", "orders_count", "revenue")


def merge_customers(
    conn: sa.Connection, survivor: int, loser: int, reason: str, now: datetime
) -> dict[str, Any]:
    if survivor == loser:
        raise ValueError("cannot merge a customer into itself")
    rows = {
        r.id: r
        for r in conn.execute(
            sa.select(customers).where(customers.c.id.in_([survivor, loser]))
        ).all()
    }
    keep, gone = rows[survivor], rows[loser]
    details: dict[str, Any] = {"filled": []}

    moved_ids = conn.execute(
        sa.select(identities.c.kind, identities.c.value).where(identities.c.customer_id == loser)
    ).all()
    details["identities"] = [{"kind": k, "value": v} for k, v in moved_ids]
    conn.execute(
        identities.update().where(identities.c.customer_id == loser).values(customer_id=survivor)
    )
    details["events"] = conn.execute(
        events.update().where(events.c.customer_id == loser).values(customer_id=survivor)
    ).rowcount
    details["orders"] = conn.execute(
        orders.update().where(orders.c.customer_id == loser).values(customer_id=survivor)
    ).rowcount
    refresh_order_history(conn, [survivor, loser])
    _merge_carts(conn, survivor, loser)
    _merge_memberships(conn, survivor, loser, now)
    _merge_counters(conn, survivor, loser)
    _merge_consents(conn, survivor, loser)
    conn.execute(
        sa.text(
            "INSERT INTO customer_groups (customer_id, group_id, traits, updated_at) "
            "SELECT :s, group_id, traits, updated_at FROM customer_groups "
            "WHERE customer_id = :l ON CONFLICT DO NOTHING"
        ),
        {"s": survivor, "l": loser},
    )
    conn.execute(customer_groups.delete().where(customer_groups.c.customer_id == loser))
    _move_addresses(conn, survivor, loser)
    # The programme: points (a pair of transfer entries), personal codes and discounts.
    details["loyalty_points"] = merge_points(conn, survivor, loser, now)
    details["coupons"] = merge_coupons(conn, survivor, loser)

    values: dict[str, Any] = {"updated_at": now}
    for col in PROFILE_COLUMNS:
        if getattr(keep, col) is None and getattr(gone, col) is not None:
            values[col] = getattr(gone, col)
            details["filled"].append(col)
    values["traits"] = {**(gone.traits or {}), **(keep.traits or {})}
    for col in _SUM_COLUMNS:
        values[col] = getattr(keep, col) + getattr(gone, col)
    for col in _MIN_COLUMNS:
        values[col] = _pick(min, getattr(keep, col), getattr(gone, col))
    for col in _MAX_COLUMNS:
        values[col] = _pick(max, getattr(keep, col), getattr(gone, col))
    values["created_at"] = min(keep.created_at, gone.created_at)
    conn.execute(customers.update().where(customers.c.id == survivor).values(**values))
    conn.execute(
        customers.update()
        .where(customers.c.id == loser)
        .values(
            merged_into=survivor,
            updated_at=now,
            **{c: None for c in PROFILE_COLUMNS},
            traits={},
            events_count=0,
            orders_count=0,
            revenue=0,
        )
    )
    # Profiles merged into the loser earlier now point straight at the survivor.
    conn.execute(
        customers.update().where(customers.c.merged_into == loser).values(merged_into=survivor)
    )
    conn.execute(
        customer_merges.insert().values(
            into_id=survivor, from_id=loser, reason=reason, details=details, merged_at=now
        )
    )
    return details


def _pick(fn: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _merge_counters(conn: sa.Connection, survivor: int, loser: int) -> None:
    params = {"s": survivor, "l": loser}
    conn.execute(
        sa.text(
            "INSERT INTO event_counters (customer_id, name, day, count) "
            "SELECT :s, name, day, count FROM event_counters WHERE customer_id = :l "
            "ON CONFLICT (customer_id, name, day) "
            "DO UPDATE SET count = event_counters.count + excluded.count"
        ),
        params,
    )
    conn.execute(event_counters.delete().where(event_counters.c.customer_id == loser))
    conn.execute(
        sa.text(
            "INSERT INTO product_views (customer_id, product_id, views, first_viewed_at, "
            "last_viewed_at) SELECT :s, product_id, views, first_viewed_at, last_viewed_at "
            "FROM product_views WHERE customer_id = :l "
            "ON CONFLICT (customer_id, product_id) DO UPDATE SET "
            "views = product_views.views + excluded.views, "
            "first_viewed_at = CASE WHEN excluded.first_viewed_at < product_views.first_viewed_at "
            "THEN excluded.first_viewed_at ELSE product_views.first_viewed_at END, "
            "last_viewed_at = CASE WHEN excluded.last_viewed_at > product_views.last_viewed_at "
            "THEN excluded.last_viewed_at ELSE product_views.last_viewed_at END"
        ),
        params,
    )
    conn.execute(sa.text("DELETE FROM product_views WHERE customer_id = :l"), {"l": loser})


def _merge_carts(conn: sa.Connection, survivor: int, loser: int) -> None:
    theirs = conn.execute(
        sa.select(carts.c.id, carts.c.cart_id).where(carts.c.customer_id == loser)
    ).all()
    ours = dict(
        conn.execute(
            sa.select(carts.c.cart_id, carts.c.id).where(carts.c.customer_id == survivor)
        ).all()
    )
    for pk, cart_id in theirs:
        if cart_id not in ours:
            conn.execute(carts.update().where(carts.c.id == pk).values(customer_id=survivor))
            continue
        conn.execute(
            sa.text(
                "INSERT INTO cart_items (cart_pk, product_id, quantity, price, updated_at) "
                "SELECT :into, product_id, quantity, price, updated_at FROM cart_items "
                "WHERE cart_pk = :src ON CONFLICT DO NOTHING"
            ),
            {"into": ours[cart_id], "src": pk},
        )
        conn.execute(cart_items.delete().where(cart_items.c.cart_pk == pk))
        conn.execute(carts.delete().where(carts.c.id == pk))


def _merge_memberships(conn: sa.Connection, survivor: int, loser: int, now: datetime) -> None:
    """Lists and segments: a stay the survivor already has closes; the others move over."""
    sm = segment_members.c
    survivor_current = (
        sa.select(sm.segment_id)
        .where(sm.customer_id == survivor, sm.until.is_(None))
        .scalar_subquery()
    )
    conn.execute(
        segment_members.update()
        .where(sm.customer_id == loser, sm.until.is_(None), sm.segment_id.in_(survivor_current))
        .values(until=now)
    )
    conn.execute(
        segment_members.update().where(sm.customer_id == loser).values(customer_id=survivor)
    )


def _move_addresses(conn: sa.Connection, survivor: int, loser: int) -> None:
    """Push subscriptions and linked Telegram chats are where the person is reached: they
    follow the person. Endpoints and chat ids are unique, so nothing can collide."""
    for table in (push_subscriptions, telegram_chats):
        conn.execute(
            table.update().where(table.c.customer_id == loser).values(customer_id=survivor)
        )


def _merge_consents(conn: sa.Connection, survivor: int, loser: int) -> None:
    rows = conn.execute(
        sa.select(consents).where(consents.c.customer_id.in_([survivor, loser]))
    ).all()
    newest: dict[str, Any] = {}
    for row in rows:
        best = newest.get(row.channel)
        if best is None or row.updated_at > best.updated_at:
            newest[row.channel] = row
    conn.execute(consents.delete().where(consents.c.customer_id.in_([survivor, loser])))
    if newest:
        conn.execute(
            consents.insert(),
            [{**row._asdict(), "customer_id": survivor} for row in newest.values()],
        )
