"""Issuing a personal code: a fresh code of a unique series, bound to one customer.

Called by the scenario action ``issue_coupon`` (with the step's idempotency key) and by
the API and CLI. The key is stored on the code under a unique index, so a step retried
after a crash, or two workers racing on it, end with one code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import live_id
from rapport.loyalty.coupons.codes import code_expiry, insert_codes, random_code, stored_key
from rapport.loyalty.coupons.errors import CouponError
from rapport.loyalty.coupons.redeem import moment_text
from rapport.loyalty.coupons.store import get_series
from rapport.store.tables import coupon_codes

Event = tuple[int, str, dict[str, Any]]
ISSUED = "Coupon Issued"
_ATTEMPTS = 20


def _issued_by_key(conn: sa.Connection, key: str) -> str | None:
    found = conn.execute(
        sa.select(coupon_codes.c.code).where(coupon_codes.c.issue_key == key)
    ).scalar()
    return None if found is None else str(found)


def issue(
    conn: sa.Connection, customer_id: int, series: str, key: str, now: datetime
) -> tuple[str, list[Event]]:
    """A new personal code for the customer and the timeline event to record.

    The same key gives back the same code and no event (it was recorded the first time).
    Refused (``CouponError``): unknown series or customer (404), a shared series (it has
    one code for everybody: put it in the message), a paused or ended series (409).
    """
    if not key:
        raise CouponError(422, "key: an idempotency key is required")
    key = stored_key(key)
    done = _issued_by_key(conn, key)
    if done is not None:
        return done, []
    found = get_series(conn, series)
    settings = found.settings
    if settings.codes == "shared":
        raise CouponError(
            422,
            f"series {series!r} has one shared code ({settings.shared_code}) for everybody; "
            "personal codes need a series with codes: unique",
        )
    if found.paused:
        raise CouponError(409, f"series {series!r} is paused: it issues no codes")
    if settings.valid_until is not None and now >= settings.valid_until:
        raise CouponError(409, f"series {series!r} ended on {moment_text(settings.valid_until)}")
    owner = live_id(conn, customer_id)
    if owner is None:
        raise CouponError(404, f"customer {customer_id} does not exist")
    expires_at = code_expiry(settings, now)
    for _ in range(_ATTEMPTS):
        row = {
            "series_id": found.id,
            "code": random_code(settings),
            "customer_id": owner,
            "issue_key": key,
            "issued_at": now,
            "expires_at": expires_at,
            "created_at": now,
        }
        if insert_codes(conn, [row]):
            code = str(row["code"])
            break
        done = _issued_by_key(conn, key)  # the key, not the code, was taken
        if done is not None:
            return done, []
    else:
        raise CouponError(409, f"series {series!r}: no free code found; raise its length")
    props: dict[str, Any] = {
        "code": code,
        "series": series,
        "title": settings.label,
        "kind": settings.kind,
        "value": settings.value,
        "offer": settings.describe(),
    }
    ends = expires_at or settings.valid_until  # the code's end, or else the series'
    props["expires_at"] = None if ends is None else ends.isoformat()
    if settings.min_subtotal:
        props["min_subtotal"] = settings.min_subtotal
    return code, [(owner, ISSUED, props)]
