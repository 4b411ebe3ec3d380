"""Who can change between two moments: the narrowing behind the sweep.

A rule's answer for a customer changes with time alone only where one of its
time-dependent leaves passes a boundary: a datetime crosses ``now - N days``, a
``days_since`` value passes a compared number, a day leaves an event window, a birthday's
month and day enter or leave the anniversary window. Between two moments ``a`` (the last
sweep) and ``b`` (now), each such boundary sweeps over an interval of values, so "the answer
may differ" is a range test on the same column or counters the condition reads. These
helpers build those range tests; each condition's ``crossing_sql`` puts them together.

A crossing may be a superset (a customer it names may keep the same answer) but never
misses one whose answer differs, as long as the customer's data did not change between
the two moments: a change of data is the real-time step's job, which evaluates the
customer at that moment. Because a crossing over an interval contains the crossing over
every part of it, a customer changed at ``e`` (``a < e < b``) and evaluated then is still
covered from ``e`` to ``b``.

Whole-day conditions (event windows, dates, anniversaries) can only change when the UTC
day changes, so within a day their crossing is the constant false and the sweep skips them
without a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement, False_

from rapport.segments import dates
from rapport.segments.context import Context
from rapport.segments.jsondoc import JsonRef

NEVER: ColumnElement[bool] = sa.false()


def never(expr: ColumnElement[bool] | None) -> bool:
    """True when the crossing is known to name nobody (no query needed)."""
    return isinstance(expr, False_)


def any_of(parts: Iterable[ColumnElement[bool] | None]) -> ColumnElement[bool] | None:
    """OR of crossings, dropping the constant false ones; None (unknown) wins."""
    kept: list[ColumnElement[bool]] = []
    for part in parts:
        if part is None:
            return None
        if not never(part):
            kept.append(part)
    if not kept:
        return sa.false()
    return kept[0] if len(kept) == 1 else sa.or_(*kept)


def days_left(a: Context, b: Context, n: int) -> tuple[date, date] | None:
    """The UTC days ``[first, stop)`` that left "the last ``n`` days" between ``a`` and ``b``.

    Windows have no upper end (future-dated events count as today's), so a window only
    loses days as time goes on; None when the UTC day did not change.
    """
    first, stop = dates.window_start(a.now, n), dates.window_start(b.now, n)
    return (first, stop) if stop > first else None


def _between(x: Any, low: Any, high: Any, *, low_open: bool, high_open: bool) -> Any:
    lower = x > low if low_open else x >= low
    upper = x < high if high_open else x <= high
    return sa.and_(lower, upper)


def days_since(op: str, value: Any, t: Any, a: Context, b: Context) -> ColumnElement[bool]:
    """``floor((now - t) / 1 day) <op> value`` depends on ``now`` only through "at least k
    days" for a few k (``ops._sql_days``); "at least k" turns true between ``a`` and ``b``
    exactly when ``t`` is in ``(a - k, b - k]``."""
    if op == "exists":
        return NEVER
    values = value if isinstance(value, tuple) else (value,)
    ks: set[int] = set()
    if op in ("ge", "lt"):
        ks.add(value)
    elif op in ("gt", "le"):
        ks.add(value + 1)
    elif op == "between":
        ks.update((value[0], value[1] + 1))
    else:  # eq, ne, in, not_in
        for v in values:
            ks.update((v, v + 1))
    parts = [
        _between(
            t, a.now - timedelta(days=k), b.now - timedelta(days=k), low_open=True, high_open=False
        )
        for k in sorted(ks)
    ]
    return sa.and_(t.is_not(None), sa.or_(*parts))


def relative(kind: str, op: str, n: int, ref: Any, a: Context, b: Context) -> ColumnElement[bool]:
    """The crossing of a relative-date operator (``ops._sql_relative``) from ``a`` to ``b``.

    Each operator is one or two comparisons of the value with a bound that moves with
    ``now`` (``now``, ``now ± N days``, or ``today``, ``today ± N`` for dates); a comparison
    flips exactly for the values the bound passed over.
    """
    from rapport.segments import ops

    span = timedelta(days=n)
    if op == "anniversary_within":
        if dates.today(a.now) == dates.today(b.now):
            return NEVER
        moved = dates.anniversary_strings(a.now, n) ^ dates.anniversary_strings(b.now, n)
        if not moved:
            return NEVER
        md = ops.month_day(kind, ref, b)
        return sa.and_(md.is_not(None), md.in_(sorted(moved)))
    x: Any
    guard: Any
    bounds: tuple[Any, Any, Any, Any, Any, Any]  # lo, hi and both shifted by -N and +N
    if kind == "datetime":
        x = guard = ref
        bounds = (a.now, b.now, a.now - span, b.now - span, a.now + span, b.now + span)
    else:
        day_a, day_b = dates.today(a.now), dates.today(b.now)
        if day_a == day_b:
            return NEVER
        days = (day_a, day_b, day_a - span, day_b - span, day_a + span, day_b + span)
        if isinstance(ref, JsonRef):  # ISO text compared as text, as ops._sql_relative does
            guard = ref.date_text()
            x = sa.collate(guard, "C") if b.postgres else guard
            bounds = tuple(d.isoformat() for d in days)  # type: ignore[assignment]
        else:
            x = guard = ref
            bounds = days
    lo, hi = bounds[0], bounds[1]
    span_lo, span_hi = bounds[2:4], bounds[4:6]
    # value <= now flips on (lo, hi]; value >= now flips on [lo, hi);
    # value < now - N flips on [lo - N, hi - N); value <= now + N flips on (lo + N, hi + N].
    if op == "within_last":
        parts = [
            _between(x, lo, hi, low_open=True, high_open=False),
            _between(x, *span_lo, low_open=False, high_open=True),
        ]
    elif op == "within_next":
        parts = [
            _between(x, lo, hi, low_open=False, high_open=True),
            _between(x, *span_hi, low_open=True, high_open=False),
        ]
    else:  # more_than_days_ago
        parts = [_between(x, *span_lo, low_open=False, high_open=True)]
    return sa.and_(guard.is_not(None), sa.or_(*parts))


def field(kind: str, op: str, value: Any, ref: Any, a: Context, b: Context) -> ColumnElement[bool]:
    """The crossing of an attribute or computed-field comparison (``ops.sql``)."""
    from rapport.segments import ops

    if kind == "days":
        return days_since(op, value, ref, a, b)
    if op in ops.RELATIVE:
        return relative(kind, op, value, ref, a, b)
    return NEVER  # every other comparison reads no clock
