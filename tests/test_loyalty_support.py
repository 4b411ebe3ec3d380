"""What the loyalty tests share: a programme in the store, events through the real
pipeline, and the invariant that the account row is what the ledger sums to."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.access.audit import Actor
from rapport.ingest.messages import parse_message
from rapport.loyalty.ledger import read_account, rebuild
from rapport.loyalty.programme import Programme, parse, save
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import events, loyalty_ledger, loyalty_lots

_ids = itertools.count(1)

BASE: dict[str, Any] = {
    "enabled": True,
    "accrual_percent": 5,
    "pending_days": 14,
    "expiry_days": 365,
    "max_redeem_percent": 50,
    "tier_basis": "spend",
    "tier_window_days": 365,
    "tiers": [
        {"name": "Silver", "threshold": 500, "accrual_percent": 7, "discount_percent": 3},
        {"name": "Gold", "threshold": 2000, "accrual_percent": 10, "discount_percent": 5},
    ],
}


def set_programme(engine: sa.Engine, now: datetime, **changes: Any) -> Programme:
    programme = parse({**BASE, **changes})
    with writing(engine) as conn:
        save(conn, programme, Actor.system(), now)
    return programme


def send(pipeline: Pipeline, kind: str, user: str, **body: Any) -> int:
    raw = {"type": kind, "userId": user, "messageId": f"m-{next(_ids)}", **body}
    message = parse_message(
        raw,
        where="message",
        received_at=pipeline.clock.now(),
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    cid = pipeline.ingest([message]).customer_ids[0]
    assert cid is not None
    return cid


def track(pipeline: Pipeline, user: str, event: str, **props: Any) -> int:
    return send(pipeline, "track", user, event=event, properties=props)


def order(
    pipeline: Pipeline, user: str, order_id: str, total: float, lines: list[Any] | None = None
) -> int:
    products = [
        {"product_id": p, "category": c, "price": price, "quantity": q}
        for p, c, price, q in (lines or [])
    ]
    return track(
        pipeline, user, "Order Completed", order_id=order_id, total=total, products=products
    )


def check_ledger(engine: sa.Engine, cid: int) -> tuple[int, int]:
    """The account row, the ledger's sums and the lots agree; answers (balance, pending)."""
    with engine.connect() as conn:
        account = read_account(conn, cid)
        sums = rebuild(conn, cid)
        lots = conn.execute(
            sa.select(loyalty_lots.c.status, sa.func.sum(loyalty_lots.c.remaining))
            .where(loyalty_lots.c.customer_id == cid)
            .group_by(loyalty_lots.c.status)
        ).all()
    assert account is not None
    by_status = {status: int(n) for status, n in lots}
    assert (account.balance, account.pending) == (sums.balance, sums.pending)
    assert by_status.get("active", 0) == account.balance
    assert by_status.get("pending", 0) == account.pending
    assert account.balance >= 0 and account.pending >= 0
    return account.balance, account.pending


def entries(engine: sa.Engine, cid: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(loyalty_ledger)
                .where(loyalty_ledger.c.customer_id == cid)
                .order_by(loyalty_ledger.c.id)
            ).all()
        )


def timeline(engine: sa.Engine, cid: int, name: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(p)
            for p in conn.execute(
                sa.select(events.c.properties)
                .where(events.c.customer_id == cid, events.c.name == name)
                .order_by(events.c.id)
            ).scalars()
        ]
