"""Finding customers and reading their card."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.consents import consents_of
from rapport.customers.profile import PROFILE_COLUMNS, live_id
from rapport.store.tables import cart_items, carts, customer_groups, customers, identities


def find_by_identity(conn: sa.Connection, kind: str, value: str) -> int | None:
    cid = conn.execute(
        sa.select(identities.c.customer_id).where(
            identities.c.kind == kind, identities.c.value == value
        )
    ).scalar()
    return None if cid is None else live_id(conn, int(cid))


def search(conn: sa.Connection, text: str, limit: int = 50, offset: int = 0) -> list[int]:
    """Name, email or phone containing ``text`` (case-insensitive), newest activity first."""
    pattern = f"%{text.strip().lower()}%"
    c = customers.c
    query = (
        sa.select(c.id)
        .where(
            c.merged_into.is_(None),
            c.erased_at.is_(None),
            sa.or_(
                sa.func.lower(c.first_name).like(pattern),
                sa.func.lower(c.last_name).like(pattern),
                sa.func.lower(c.email).like(pattern),
                c.phone.like(pattern),
                sa.func.lower(
                    sa.func.coalesce(c.first_name, "") + " " + sa.func.coalesce(c.last_name, "")
                ).like(pattern),
            ),
        )
        .order_by(c.last_seen_at.desc().nulls_last(), c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [int(cid) for cid in conn.execute(query).scalars()]


def summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "email": row.email,
        "phone": row.phone,
        "orders_count": row.orders_count,
        "revenue": row.revenue,
        "last_seen_at": row.last_seen_at,
    }


def summaries(conn: sa.Connection, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(sa.select(customers).where(customers.c.id.in_(ids)))}
    return [summary(rows[i]) for i in ids if i in rows]


def computed_fields(row: Any, now: datetime) -> dict[str, Any]:
    last_order = row.last_order_at
    return {
        "events_count": row.events_count,
        "first_seen_at": row.first_seen_at,
        "last_seen_at": row.last_seen_at,
        "orders_count": row.orders_count,
        "revenue": round(row.revenue, 2),
        "average_check": round(row.revenue / row.orders_count, 2) if row.orders_count else None,
        "first_order_at": row.first_order_at,
        "last_order_at": last_order,
        "days_since_last_order": (now - last_order).days if last_order else None,
        # Maintained by the RFM and lifecycle recomputations (segments/); null until they run.
        "rfm": {
            "recency": row.rfm_recency,
            "frequency": row.rfm_frequency,
            "monetary": row.rfm_monetary,
            "cell": row.rfm_cell,
        },
        "lifecycle_stage": row.lifecycle_stage,
        "lifecycle_changed_at": row.lifecycle_changed_at,
        # Written by `rapport clv score` (analytics/clv/); null until it runs or without orders.
        "predicted_clv": row.predicted_clv,
        "expected_purchases_90d": row.expected_purchases_90d,
        "churn_risk": row.churn_risk,
        "clv_scored_at": row.clv_scored_at,
    }


def card(conn: sa.Connection, customer_id: int, now: datetime) -> dict[str, Any] | None:
    """The whole card; a merged id answers with its survivor's card."""
    cid = live_id(conn, customer_id)
    if cid is None:
        return None
    row = conn.execute(sa.select(customers).where(customers.c.id == cid)).one()
    ids = conn.execute(
        sa.select(identities.c.kind, identities.c.value, identities.c.created_at)
        .where(identities.c.customer_id == cid)
        .order_by(identities.c.id)
    ).all()
    merged_from = conn.execute(
        sa.select(customers.c.id).where(customers.c.merged_into == cid).order_by(customers.c.id)
    ).scalars()
    cart = conn.execute(
        sa.select(carts.c.cart_id, carts.c.status, carts.c.updated_at, carts.c.id)
        .where(carts.c.customer_id == cid)
        .order_by(carts.c.updated_at.desc())
    ).first()
    groups = conn.execute(
        sa.select(customer_groups.c.group_id, customer_groups.c.traits).where(
            customer_groups.c.customer_id == cid
        )
    ).all()
    result: dict[str, Any] = {
        "id": cid,
        "requested_id": customer_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "erased_at": row.erased_at,
        "merged_from": list(merged_from),
        "profile": {col: getattr(row, col) for col in PROFILE_COLUMNS} | {"traits": row.traits},
        "identities": [{"kind": k, "value": v, "created_at": t} for k, v, t in ids],
        "consents": consents_of(conn, cid),
        "computed": computed_fields(row, now),
        "groups": [{"group_id": g, "traits": t} for g, t in groups],
        "cart": None,
    }
    if cart is not None:
        items = conn.execute(
            sa.select(cart_items.c.product_id, cart_items.c.quantity, cart_items.c.price).where(
                cart_items.c.cart_pk == cart.id
            )
        ).all()
        result["cart"] = {
            "cart_id": cart.cart_id,
            "status": cart.status,
            "updated_at": cart.updated_at,
            "items": [{"product_id": p, "quantity": q, "price": pr} for p, q, pr in items],
        }
    return result
