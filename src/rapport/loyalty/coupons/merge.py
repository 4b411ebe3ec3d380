"""Coupons and personal discounts follow a merged profile to its survivor.

Called in the merge's transaction (customers/merge.py). The merged profile's personal
codes become the survivor's (a code in an e-mail the person already has keeps working at
the checkout under their one profile); their uses move with them, and the per-customer
use counts add up, so "once per customer" still means once for the person. Of two
personal discounts from the same source the better one stays: the higher percent, and
between equal percents the one that runs longer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import (
    coupon_codes,
    coupon_customer_uses,
    coupon_redemptions,
    personal_discounts,
)


def merge_coupons(conn: sa.Connection, survivor: int, loser: int) -> dict[str, int]:
    """Move ``loser``'s codes, uses and discounts to ``survivor``; how many of each."""
    if survivor == loser:
        return {"codes": 0, "redemptions": 0, "discounts": 0}
    codes = conn.execute(
        coupon_codes.update()
        .where(coupon_codes.c.customer_id == loser)
        .values(customer_id=survivor)
    ).rowcount
    redemptions = conn.execute(
        coupon_redemptions.update()
        .where(coupon_redemptions.c.customer_id == loser)
        .values(customer_id=survivor)
    ).rowcount
    _merge_uses(conn, survivor, loser)
    discounts = _merge_discounts(conn, survivor, loser)
    return {"codes": int(codes), "redemptions": int(redemptions), "discounts": discounts}


def _merge_uses(conn: sa.Connection, survivor: int, loser: int) -> None:
    t = coupon_customer_uses
    theirs = conn.execute(sa.select(t.c.series_id, t.c.uses).where(t.c.customer_id == loser)).all()
    for series_id, uses in theirs:
        stmt = upsert(conn, t).values(series_id=series_id, customer_id=survivor, uses=uses)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.series_id, t.c.customer_id],
                set_={"uses": t.c.uses + stmt.excluded.uses},
            )
        )
    conn.execute(t.delete().where(t.c.customer_id == loser))


def _better(a: Any, b: Any) -> Any:
    """The discount worth more to the customer: higher percent, then the longer run."""
    if a.percent != b.percent:
        return a if a.percent > b.percent else b
    if a.valid_until is None or b.valid_until is None:
        return a if a.valid_until is None else b
    return a if a.valid_until >= b.valid_until else b


def _merge_discounts(conn: sa.Connection, survivor: int, loser: int) -> int:
    t = personal_discounts
    rows = conn.execute(sa.select(t).where(t.c.customer_id.in_([survivor, loser]))).all()
    ours = {r.source: r for r in rows if r.customer_id == survivor}
    moved = 0
    for row in (r for r in rows if r.customer_id == loser):
        kept = ours.get(row.source)
        if kept is None or _better(kept, row) is row:
            values = {
                "percent": row.percent,
                "valid_until": row.valid_until,
                "note": row.note,
                "set_at": row.set_at,
            }
            stmt = upsert(conn, t).values(customer_id=survivor, source=row.source, **values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.c.customer_id, t.c.source], set_=values
                )
            )
            moved += 1
    conn.execute(t.delete().where(t.c.customer_id == loser))
    return moved
