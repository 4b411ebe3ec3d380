"""Using a code at the checkout: quote it, consume one use, give the use back on cancel.

No double use under concurrency: ``consume`` locks the code's row (``FOR UPDATE`` on
PostgreSQL; SQLite has one writer at a time) and raises the use counters with
conditional UPDATEs (``uses < max_uses``) that cannot pass twice for the last use. All
its writes sit in a savepoint, so a refusal leaves the caller's transaction as it was:
the checkout may catch ``CouponRefused`` and go on without the coupon.

On SQLite, call ``consume`` in a transaction opened with ``store.engine.writing`` (BEGIN
IMMEDIATE): a deferred transaction that read first may fail with "database is locked"
when another checkout wrote in between (a refusal of the store, never a double use).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import live_id
from rapport.loyalty.coupons.categories import eligible_lines
from rapport.loyalty.coupons.codes import normalize_code, stored_key
from rapport.loyalty.coupons.errors import CouponRefused
from rapport.loyalty.coupons.store import Series, series_by_id
from rapport.loyalty.order import CheckoutOrder
from rapport.store.engine import upsert
from rapport.store.tables import (
    coupon_codes,
    coupon_customer_uses,
    coupon_redemptions,
    coupon_series,
)


@dataclass(frozen=True)
class CouponQuote:
    """What a code takes off this order; ``discount`` never exceeds ``eligible_amount``."""

    code: str
    series: str
    discount: float
    kind: str  # percent | amount
    eligible_amount: float


@dataclass(frozen=True)
class FoundCode:
    id: int
    code: str
    customer_id: int | None
    expires_at: datetime | None
    uses: int
    series: Series

    @property
    def ends_at(self) -> datetime | None:
        """The earlier of the code's own end and the series' end."""
        ends = [e for e in (self.expires_at, self.series.settings.valid_until) if e is not None]
        return min(ends) if ends else None


def moment_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def find_code(conn: sa.Connection, code: str, *, lock: bool = False) -> FoundCode:
    """The code's row and its series, or ``CouponRefused`` for a code nobody made."""
    normalized = normalize_code(code)
    if not normalized:
        raise CouponRefused(code, "no code given")
    query = sa.select(coupon_codes).where(coupon_codes.c.code == normalized)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise CouponRefused(normalized, f"unknown code {normalized}")
    return FoundCode(
        id=int(row.id),
        code=row.code,
        customer_id=None if row.customer_id is None else int(row.customer_id),
        expires_at=row.expires_at,
        uses=int(row.uses),
        series=series_by_id(conn, int(row.series_id)),
    )


def customer_uses(conn: sa.Connection, series_id: int, customer_id: int) -> int:
    t = coupon_customer_uses.c
    found = conn.execute(
        sa.select(t.uses).where(t.series_id == series_id, t.customer_id == customer_id)
    ).scalar()
    return int(found or 0)


def used_up_reason(found: FoundCode) -> str:
    limit = found.series.settings.max_uses
    return "already used" if limit == 1 else f"used up: all {limit} uses are taken"


def customer_limit_reason(limit: int) -> str:
    if limit == 1:
        return "already used by this customer"
    return f"already used {limit} times by this customer, the most allowed"


def check_usable(conn: sa.Connection, found: FoundCode, customer_id: int, now: datetime) -> None:
    """Everything about the code and the customer, nothing about the order's lines."""
    settings = found.series.settings
    code = found.code
    if found.series.paused:
        raise CouponRefused(code, f"the campaign {settings.label} is paused")
    if settings.valid_from is not None and now < settings.valid_from:
        raise CouponRefused(code, f"not valid before {moment_text(settings.valid_from)}")
    ends = found.ends_at
    if ends is not None and now >= ends:
        raise CouponRefused(code, f"expired on {moment_text(ends)}")
    if (
        found.customer_id is not None
        and found.customer_id != customer_id
        and live_id(conn, found.customer_id) != customer_id  # not merged into this one
    ):
        raise CouponRefused(code, "belongs to another customer")
    if settings.max_uses is not None and found.uses >= settings.max_uses:
        raise CouponRefused(code, used_up_reason(found))
    limit = settings.max_uses_per_customer
    if limit is not None and customer_uses(conn, found.series.id, customer_id) >= limit:
        raise CouponRefused(code, customer_limit_reason(limit))


def price(conn: sa.Connection, found: FoundCode, order: CheckoutOrder) -> CouponQuote:
    """The discount on this order's lines: the minimum, the categories, the amount."""
    settings = found.series.settings
    code = found.code
    if not order.lines:
        raise CouponRefused(code, "the order has no lines")
    if order.subtotal < settings.min_subtotal:
        raise CouponRefused(
            code,
            f"order below the minimum of {settings.min_subtotal:.2f} "
            f"(this order: {order.subtotal:.2f})",
        )
    lines = eligible_lines(conn, settings, order.lines)
    if not lines:
        raise CouponRefused(code, "no line in the allowed categories")
    eligible = round(sum(line.amount for line in lines), 2)
    if settings.kind == "percent":
        discount = eligible * settings.value / 100
        if settings.max_discount is not None:
            discount = min(discount, settings.max_discount)
    else:
        discount = settings.value
    discount = max(0.0, min(round(discount, 2), eligible))
    return CouponQuote(code, found.series.name, discount, settings.kind, eligible)


def quote(conn: sa.Connection, code: str, order: CheckoutOrder, now: datetime) -> CouponQuote:
    """What the code would take off this order; reads only. Raises ``CouponRefused``."""
    found = find_code(conn, code)
    check_usable(conn, found, order.customer_id, now)
    return price(conn, found, order)


def _redemption(conn: sa.Connection, key: str) -> Any:
    r = coupon_redemptions.c
    return conn.execute(
        sa.select(r.discount, r.kind, r.eligible_amount, coupon_codes.c.code, coupon_series.c.name)
        .join(coupon_codes, coupon_codes.c.id == r.code_id)
        .join(coupon_series, coupon_series.c.id == r.series_id)
        .where(r.key == key)
    ).first()


def _replay(row: Any, code: str) -> CouponQuote:
    """The answer a key got the first time; the key cannot be reused for another code."""
    if row.code != normalize_code(code):
        raise CouponRefused(
            normalize_code(code), f"this checkout key was already used for the code {row.code}"
        )
    return CouponQuote(row.code, row.name, row.discount, row.kind, row.eligible_amount)


def _take_customer_use(conn: sa.Connection, found: FoundCode, customer_id: int) -> None:
    t = coupon_customer_uses
    limit = found.series.settings.max_uses_per_customer
    stmt = upsert(conn, t).values(series_id=found.series.id, customer_id=customer_id, uses=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.series_id, t.c.customer_id],
        set_={"uses": t.c.uses + 1},
        where=(t.c.uses < limit) if limit is not None else None,
    ).returning(t.c.uses)
    if conn.execute(stmt).first() is None:
        assert limit is not None
        raise CouponRefused(found.code, customer_limit_reason(limit))


def _take_code_use(conn: sa.Connection, found: FoundCode) -> None:
    c = coupon_codes.c
    limit = found.series.settings.max_uses
    stmt = coupon_codes.update().where(c.id == found.id).values(uses=c.uses + 1)
    if limit is not None:
        stmt = stmt.where(c.uses < limit)
    if conn.execute(stmt).rowcount != 1:
        raise CouponRefused(found.code, used_up_reason(found))


def consume(
    conn: sa.Connection, code: str, order: CheckoutOrder, key: str, now: datetime
) -> CouponQuote:
    """Record one use of the code by this order, once per ``key``.

    The same key answers the same quote again and uses nothing more, whatever happened
    since (even a release), so a retried checkout is safe.
    """
    key = stored_key(key)
    done = _redemption(conn, key)
    if done is not None:
        return _replay(done, code)
    try:
        with conn.begin_nested():
            found = find_code(conn, code, lock=True)
            done = _redemption(conn, key)  # a parallel call with this key held the lock
            if done is not None:
                return _replay(done, code)
            check_usable(conn, found, order.customer_id, now)
            result = price(conn, found, order)
            _take_customer_use(conn, found, order.customer_id)
            _take_code_use(conn, found)
            conn.execute(
                coupon_redemptions.insert().values(
                    key=key,
                    code_id=found.id,
                    series_id=found.series.id,
                    customer_id=order.customer_id,
                    order_id=order.order_id,
                    kind=result.kind,
                    discount=result.discount,
                    eligible_amount=result.eligible_amount,
                    used_at=now,
                )
            )
    except sa.exc.IntegrityError:  # the same key, another code, in a parallel transaction
        done = _redemption(conn, key)
        if done is None:
            raise
        return _replay(done, code)
    return result


def release(conn: sa.Connection, order_id: str, now: datetime) -> int:
    """Give back the uses of a cancelled order; how many were given back.

    Only series with ``return_on_cancel`` (the default) give a use back; the others keep
    the code used, as a printed "one use, no returns" code would be.
    """
    r = coupon_redemptions.c
    rows = conn.execute(
        sa.select(r.id, r.code_id, r.series_id, r.customer_id, coupon_series.c.settings)
        .join(coupon_series, coupon_series.c.id == r.series_id)
        .where(r.order_id == order_id, r.released_at.is_(None))
        .order_by(r.id)
    ).all()
    released = 0
    for row in rows:
        if not row.settings.get("return_on_cancel", True):
            continue
        done = conn.execute(
            coupon_redemptions.update()
            .where(r.id == row.id, r.released_at.is_(None))
            .values(released_at=now)
        )
        if done.rowcount != 1:  # a parallel release got there first
            continue
        c = coupon_codes.c
        conn.execute(
            coupon_codes.update().where(c.id == row.code_id, c.uses > 0).values(uses=c.uses - 1)
        )
        u = coupon_customer_uses.c
        conn.execute(
            coupon_customer_uses.update()
            .where(u.series_id == row.series_id, u.customer_id == row.customer_id, u.uses > 0)
            .values(uses=u.uses - 1)
        )
        released += 1
    return released
