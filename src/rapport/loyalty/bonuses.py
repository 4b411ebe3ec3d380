"""Fixed bonuses for actions, each once per its natural key (the ledger key says so):

- registration: the customer's ``Signed Up`` event, once per customer;
- review: a ``Product Reviewed`` event, once per customer and product;
- birthday: the daily run, once per customer and year;
- comeback: an order after a long pause, once per order (accrual.py, with the order).

Bonuses are spendable at once (nothing to return) and expire like any other points.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa

from rapport.loyalty.ledger import EARNED, Event, credit, lock_account
from rapport.loyalty.programme import Programme
from rapport.store.tables import customers

SIGNED_UP = "Signed Up"
PRODUCT_REVIEWED = "Product Reviewed"


def give(
    conn: sa.Connection,
    programme: Programme,
    customer_id: int,
    reason: str,
    points: int,
    key: str,
    now: datetime,
    details: dict[str, object] | None = None,
) -> list[Event]:
    if points <= 0:
        return []
    lock_account(conn, customer_id, now)
    added = credit(
        conn,
        customer_id,
        points,
        kind="bonus",
        key=key,
        now=now,
        expiry_days=programme.expiry_days,
        reason=reason,
        details=details,
    )
    if not added:
        return []
    return [(customer_id, EARNED, {"points": points, "reason": reason, "pending": False})]


def on_signed_up(
    conn: sa.Connection, programme: Programme, customer_id: int, now: datetime
) -> list[Event]:
    points = programme.bonuses.registration
    return give(
        conn,
        programme,
        customer_id,
        "registration",
        points,
        f"bonus:registration:{customer_id}",
        now,
    )


def on_review(
    conn: sa.Connection, programme: Programme, customer_id: int, product_id: str, now: datetime
) -> list[Event]:
    points = programme.bonuses.review
    key = f"bonus:review:{customer_id}:{product_id}"[:300]
    return give(
        conn, programme, customer_id, "review", points, key, now, {"product_id": product_id}
    )


def birthdays(conn: sa.Connection, programme: Programme, now: datetime) -> list[Event]:
    """Birthday bonuses for birthdays today or yesterday (a daily run that came late
    still gives them), once per calendar year; 29 February is celebrated on 28 February
    in other years."""
    points = programme.bonuses.birthday
    if not programme.enabled or points <= 0:
        return []
    today = now.date()
    days = [today, today - timedelta(days=1)]
    wanted = {_month_day(d) for d in days}
    if not _is_leap(today.year) and "02-28" in wanted:
        wanted.add("02-29")
    c = customers.c
    if conn.dialect.name == "postgresql":
        month_day = sa.func.to_char(c.birthday, "MM-DD")
    else:
        month_day = sa.func.strftime("%m-%d", c.birthday)
    rows = conn.execute(
        sa.select(c.id, c.birthday)
        .where(
            c.birthday.is_not(None),
            c.merged_into.is_(None),
            c.erased_at.is_(None),
            month_day.in_(sorted(wanted)),
        )
        .order_by(c.id)
    ).all()
    events: list[Event] = []
    for cid, birthday in rows:
        key = f"bonus:birthday:{cid}:{_celebrated(birthday, days).year}"
        events += give(conn, programme, int(cid), "birthday", points, key, now)
    return events


def _month_day(d: date) -> str:
    return f"{d.month:02d}-{d.day:02d}"


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _celebrated(birthday: date, days: list[date]) -> date:
    """Which of the run's days is this birthday (its year keys the once-a-year rule)."""
    for d in days:
        if _month_day(d) == _month_day(birthday):
            return d
    return days[0]  # 29 February in a common year, celebrated on the 28th
