"""The time semantics of rules, in one place so both evaluators read the same cut-offs.

* Days are UTC days; ``today`` is ``now``'s UTC date.
* Event windows are whole days: "within the last N days" means on UTC day
  ``today - N`` or later (today plus the N previous days). Counters are kept per UTC day,
  so this is the finest window they can answer exactly, and events read from the log use
  the same definition so a property filter never changes what a window means.
* Datetime fields are compared with exact times: "within the last N days" means
  ``now - N days <= value <= now``; ``days_since_*`` is ``floor((now - value) / 1 day)``,
  the same figure the customer card shows.
* Date fields (birthday, date-valued traits) are compared with ``today``.
* Anniversaries of 29 February fall on 28 February in years without one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

DAY = timedelta(days=1)


def as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("rules are evaluated at an aware datetime (UTC)")
    return now.astimezone(UTC)


def today(now: datetime) -> date:
    return as_utc(now).date()


def window_start(now: datetime, days: int) -> date:
    """The first UTC day inside "the last ``days`` days"."""
    return today(now) - timedelta(days=days)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def days_between(earlier: datetime, now: datetime) -> int:
    """Whole days elapsed, rounded down (negative for a time in the future)."""
    return (as_utc(now) - earlier) // DAY


def anniversary_days(now: datetime, days: int) -> frozenset[tuple[int, int]]:
    """The (month, day) pairs whose next anniversary falls within ``days`` days from today.

    A 29 February birthday is celebrated on 28 February in common years, so when the window
    holds 28 February of a common year, (2, 29) is in the set too.
    """
    start = today(now)
    if days >= 366:
        days = 366
    found: set[tuple[int, int]] = set()
    for offset in range(days + 1):
        d = start + timedelta(days=offset)
        found.add((d.month, d.day))
        if d.month == 2 and d.day == 28 and not _leap(d.year):
            found.add((2, 29))
    return frozenset(found)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def anniversary_strings(now: datetime, days: int) -> frozenset[str]:
    """The same set as ``MM-DD`` strings, the form both stores can produce from a date."""
    return frozenset(f"{m:02d}-{d:02d}" for m, d in anniversary_days(now, days))
