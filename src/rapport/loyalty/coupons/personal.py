"""Personal discounts: a percent off everything for one customer, with an optional end.

One per source (manual, scenario, import), so a scenario's 15% for a week does not
overwrite the 5% a manager set for good, and ends without taking it away: the
customer's current discount is the largest one still running.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.clock import utc
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput, Problem
from rapport.loyalty.coupons.errors import CouponError
from rapport.store.engine import upsert
from rapport.store.tables import personal_discounts

SOURCES = ("manual", "scenario", "import")


def _running(now: datetime) -> Any:
    t = personal_discounts.c
    return sa.or_(t.valid_until.is_(None), t.valid_until > now)


def personal_discount(conn: sa.Connection, customer_id: int, now: datetime) -> float:
    """The customer's current personal discount in percent; 0 when none is running."""
    t = personal_discounts.c
    found = conn.execute(
        sa.select(sa.func.max(t.percent)).where(t.customer_id == customer_id, _running(now))
    ).scalar()
    return float(found or 0.0)


def discounts_of(conn: sa.Connection, customer_id: int, now: datetime) -> list[dict[str, Any]]:
    """Every discount set for the customer, the running ones first, for the card."""
    t = personal_discounts.c
    rows = conn.execute(
        sa.select(personal_discounts).where(t.customer_id == customer_id).order_by(t.source)
    ).all()
    found = [
        {
            "source": r.source,
            "percent": r.percent,
            "valid_until": None if r.valid_until is None else r.valid_until.isoformat(),
            "note": r.note,
            "set_at": r.set_at.isoformat(),
            "active": r.valid_until is None or r.valid_until > now,
        }
        for r in rows
    ]
    return sorted(found, key=lambda d: not d["active"])


def set_personal_discount(
    conn: sa.Connection,
    customer_id: int,
    percent: float,
    now: datetime,
    *,
    source: str = "manual",
    valid_until: datetime | None = None,
    note: str = "",
    where: str = "body",
) -> dict[str, Any]:
    """Set (or replace) the customer's discount from this source; checked before stored."""
    at = (where + ".") if where else ""
    valid_until = None if valid_until is None else utc(valid_until)  # naive times are UTC
    problems = []
    if not 0 < percent <= 100:
        problems.append(Problem(f"{at}percent", "a discount is more than 0 and at most 100"))
    if source not in SOURCES:
        problems.append(Problem(f"{at}source", f"one of {', '.join(SOURCES)}, not {source!r}"))
    if valid_until is not None and valid_until <= now:
        problems.append(Problem(f"{at}valid_until", "is already past"))
    if len(note) > 500:
        problems.append(Problem(f"{at}note", "at most 500 characters"))
    if problems:
        raise InvalidInput(problems)
    owner = live_id(conn, customer_id)
    if owner is None:
        raise CouponError(404, f"customer {customer_id} does not exist")
    values = {"percent": percent, "valid_until": valid_until, "note": note, "set_at": now}
    stmt = upsert(conn, personal_discounts).values(customer_id=owner, source=source, **values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[personal_discounts.c.customer_id, personal_discounts.c.source],
            set_=values,
        )
    )
    return {"customer_id": owner, "source": source, **values}


def clear_personal_discount(
    conn: sa.Connection, customer_id: int, source: str | None = None, where: str = "source"
) -> int:
    """Remove the customer's discounts (of one source, or all); how many were removed."""
    if source is not None and source not in SOURCES:
        raise InvalidInput([Problem(where, f"one of {', '.join(SOURCES)}, not {source!r}")])
    owner = live_id(conn, customer_id)
    if owner is None:
        raise CouponError(404, f"customer {customer_id} does not exist")
    t = personal_discounts.c
    stmt = personal_discounts.delete().where(t.customer_id == owner)
    if source is not None:
        stmt = stmt.where(t.source == source)
    return int(conn.execute(stmt).rowcount)
