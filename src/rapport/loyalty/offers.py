"""The checkout's link to coupons and personal discounts (``rapport.loyalty.coupons``).

The only place the points checkout touches coupons: a quote for a code, its use at
redemption, the customer's personal discount, and giving a cancelled order's coupon
uses back. A refused code comes back as the coupon module's ``CouponRefused``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.loyalty import coupons
from rapport.loyalty.coupons import CouponQuote, CouponRefused
from rapport.loyalty.order import CheckoutOrder

__all__ = [
    "CouponQuote",
    "CouponRefused",
    "consume_coupon",
    "personal_discount",
    "quote_coupon",
    "release_coupons",
]


def quote_coupon(
    conn: sa.Connection, code: str, order: CheckoutOrder, now: datetime
) -> CouponQuote:
    return coupons.quote(conn, code, order, now)


def consume_coupon(
    conn: sa.Connection, code: str, order: CheckoutOrder, key: str, now: datetime
) -> CouponQuote:
    """Record the code's use (once per ``key``), in the redemption's transaction."""
    return coupons.consume(conn, code, order, key, now)


def personal_discount(conn: sa.Connection, customer_id: int, now: datetime) -> float:
    """The customer's personal discount in percent (0 when none is running)."""
    return coupons.personal_discount(conn, customer_id, now)


def release_coupons(conn: sa.Connection, order_id: str, now: datetime) -> int:
    """A cancelled order gives its coupon uses back (as its series allows)."""
    return coupons.release(conn, order_id, now)
