"""Login rate limiting: at most ``MAX_FAILURES`` wrong passwords per email and address in
``WINDOW``; then the login answers 429 until the oldest failure leaves the window.

Failures are rows in the store, not process memory, so the limit holds across restarts
and across several server processes. A successful login clears the failures of that
email and address.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.store.tables import login_failures

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)


def _key(email: str) -> str:
    return (email or "").strip().lower()[:320]


def retry_after(conn: sa.Connection, email: str, ip: str, now: datetime) -> timedelta | None:
    """How long this email and address must wait before the next try, or None if it may."""
    f = login_failures.c
    times = conn.execute(
        sa.select(f.at)
        .where(f.email == _key(email), f.ip == ip, f.at > now - WINDOW)
        .order_by(f.at.desc())
        .limit(MAX_FAILURES)
    ).scalars()
    recent = list(times)
    if len(recent) < MAX_FAILURES:
        return None
    return max(recent[-1] + WINDOW - now, timedelta(seconds=1))


def record_failure(conn: sa.Connection, email: str, ip: str, now: datetime) -> None:
    conn.execute(login_failures.insert().values(email=_key(email), ip=ip, at=now))
    # Old failures of anybody go now: the table holds one window at most.
    conn.execute(login_failures.delete().where(login_failures.c.at <= now - WINDOW))


def clear_failures(conn: sa.Connection, email: str, ip: str) -> None:
    f = login_failures.c
    conn.execute(login_failures.delete().where(f.email == _key(email), f.ip == ip))
