"""What the card and the back office show: a customer's codes, one code's history.

Status, in the order it is decided: ``used`` (this customer has no use of it left),
``expired`` (past its end), else ``active`` (a paused series is active but flagged
``paused``: the pause is the marketer's, the code is still the customer's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.coupons.redeem import FoundCode, customer_uses, find_code
from rapport.store.tables import coupon_codes, coupon_redemptions


def _status(found: FoundCode, uses_left: bool, now: datetime) -> str:
    if not uses_left:
        return "used"
    ends = found.ends_at
    if ends is not None and now >= ends:
        return "expired"
    return "active"


def _customer_has_uses(conn: sa.Connection, found: FoundCode, customer_id: int) -> bool:
    settings = found.series.settings
    if settings.max_uses is not None and found.uses >= settings.max_uses:
        return False
    limit = settings.max_uses_per_customer
    return limit is None or customer_uses(conn, found.series.id, customer_id) < limit


def customer_coupons(conn: sa.Connection, customer_id: int, now: datetime) -> list[dict[str, Any]]:
    """The codes issued to the customer and the codes they used, newest first."""
    c, r = coupon_codes.c, coupon_redemptions.c
    used_by_them = sa.select(r.code_id).where(r.customer_id == customer_id, r.released_at.is_(None))
    rows = conn.execute(
        sa.select(c.code, c.issued_at, c.created_at)
        .where(sa.or_(c.customer_id == customer_id, c.id.in_(used_by_them)))
        .order_by(sa.func.coalesce(c.issued_at, c.created_at).desc(), c.id.desc())
    ).all()
    found_list = []
    for row in rows:
        found = find_code(conn, row.code)
        uses = conn.execute(
            sa.select(sa.func.count(), sa.func.max(r.used_at)).where(
                r.code_id == found.id, r.customer_id == customer_id, r.released_at.is_(None)
            )
        ).one()
        ends = found.ends_at
        found_list.append(
            {
                "code": found.code,
                "series": found.series.name,
                "title": found.series.settings.label,
                "offer": found.series.settings.describe(),
                "kind": found.series.settings.kind,
                "value": found.series.settings.value,
                "status": _status(found, _customer_has_uses(conn, found, customer_id), now),
                "paused": found.series.paused,
                "personal": found.customer_id is not None,
                "issued_at": None if row.issued_at is None else row.issued_at.isoformat(),
                "expires_at": None if ends is None else ends.isoformat(),
                "uses": int(uses[0]),
                "last_used_at": None if uses[1] is None else uses[1].isoformat(),
            }
        )
    return found_list


def code_status(conn: sa.Connection, code: str, now: datetime) -> dict[str, Any]:
    """One code as the back office sees it: series, owner, uses, each redemption.

    Raises ``CouponRefused`` ("unknown code …") for a code nobody made.
    """
    found = find_code(conn, code)
    settings = found.series.settings
    r = coupon_redemptions.c
    redemptions = [
        {
            "customer_id": int(row.customer_id),
            "order_id": row.order_id,
            "discount": row.discount,
            "used_at": row.used_at.isoformat(),
            "released_at": None if row.released_at is None else row.released_at.isoformat(),
        }
        for row in conn.execute(
            sa.select(coupon_redemptions).where(r.code_id == found.id).order_by(r.id)
        )
    ]
    ends = found.ends_at
    if settings.max_uses is not None and found.uses >= settings.max_uses:
        status = "used"
    elif ends is not None and now >= ends:
        status = "expired"
    elif settings.valid_from is not None and now < settings.valid_from:
        status = "not_started"
    else:
        status = "active"
    return {
        "code": found.code,
        "series": found.series.name,
        "offer": settings.describe(),
        "status": status,
        "paused": found.series.paused,
        "customer_id": found.customer_id,
        "uses": found.uses,
        "max_uses": settings.max_uses,
        "expires_at": None if ends is None else ends.isoformat(),
        "redemptions": redemptions,
    }
