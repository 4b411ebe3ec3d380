"""What recipients did after their assignment, read set-based from the store.

Every query here starts from an *assignment* subquery with one row per recipient:
``key`` (the customer id the split was drawn for), ``person`` (that customer now — the
survivor when the profile was merged since, since a merge moves the orders and events
over), ``grp`` (the variant, path or ``control``) and ``at`` (when they were assigned).

* **Orders** count for a recipient from their assignment on: a conversion is a completed
  order (not cancelled, not fully refunded) within the window; revenue is each order's
  total less what was refunded, cancelled orders left out.
* **Goal events** (a scenario's goal) are fetched as hits, one row per event, and matched
  in Python against the goal's property filters and entity, as the engine does.

A handful of statements per report, grouped in the database, whatever the number of
recipients; the rows that travel are the recipients who bought something (or the goal
events), never the whole audience.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.analytics.experiments.weekly import WEEK, WeekCell
from rapport.scenarios.index import entity_of, matches
from rapport.scenarios.model import Goal, Scenario
from rapport.store.tables import events, orders, scenario_runs
from rapport.store.types import UTCDateTime


@dataclass(frozen=True)
class Span:
    """When recipients were assigned (first, last), the report's moment, and the windows."""

    first: datetime
    last: datetime
    now: datetime
    window: timedelta
    weeks: int

    @property
    def window_end(self) -> datetime:
        """When the last recipient's window closes."""
        return self.last + self.window

    @property
    def weeks_end(self) -> datetime:
        return min(self.first + self.weeks * WEEK, self.now)

    @property
    def horizon(self) -> datetime:
        """Nothing after this moment is read."""
        return min(max(self.window_end, self.first + self.weeks * WEEK), self.now)


def timestamp(conn: sa.Connection, moment: datetime) -> sa.ColumnElement[Any]:
    """A moment as a SQL value of the timestamp columns' type (a bare parameter would be
    text to PostgreSQL inside a subquery; SQLite compares the text as it is)."""
    value = sa.literal(moment, UTCDateTime())
    if conn.dialect.name == "postgresql":
        return sa.cast(value, sa.DateTime(timezone=True))
    return value


def within(
    conn: sa.Connection, later: Any, earlier: Any, window: timedelta
) -> sa.ColumnElement[bool]:
    """``later < earlier + window`` on either dialect (SQLite keeps timestamps as text)."""
    if conn.dialect.name == "postgresql":
        return later - earlier < window
    return sa.func.julianday(later) - sa.func.julianday(earlier) < window.total_seconds() / 86400


def week_of(conn: sa.Connection, moment: Any, start: datetime) -> sa.ColumnElement[Any]:
    """Whole weeks from ``start`` to ``moment`` (never negative here: moment ≥ start)."""
    if conn.dialect.name == "postgresql":
        seconds = sa.extract("epoch", moment - timestamp(conn, start))
        return sa.cast(sa.func.floor(seconds / WEEK.total_seconds()), sa.Integer)
    days = sa.func.julianday(moment) - sa.func.julianday(timestamp(conn, start))
    return sa.cast(days / 7, sa.Integer)


def group_counts(conn: sa.Connection, assigned: sa.Subquery) -> dict[str, int]:
    a = assigned.c
    return {
        str(g): int(n) for g, n in conn.execute(sa.select(a.grp, sa.func.count()).group_by(a.grp))
    }


def span_of(conn: sa.Connection, assigned: sa.Subquery) -> tuple[datetime, datetime] | None:
    a = assigned.c
    first, last = conn.execute(sa.select(sa.func.min(a.at), sa.func.max(a.at))).one()
    if first is None:
        return None
    return _aware(first), _aware(last)


def _aware(value: Any) -> datetime:
    """min/max lose the column type on SQLite: parse the text back into UTC."""
    result = UTCDateTime().process_result_value(
        datetime.fromisoformat(value) if isinstance(value, str) else value,
        None,  # type: ignore[arg-type]
    )
    assert result is not None
    return result


def _net() -> sa.ColumnElement[Any]:
    return orders.c.total - orders.c.refunded


def _completed() -> sa.ColumnElement[Any]:
    return sa.case((orders.c.status == "completed", 1), else_=0)


def _order_join(
    conn: sa.Connection, assigned: sa.Subquery, since: datetime, until: datetime
) -> sa.ColumnElement[bool]:
    """A recipient's orders from their assignment on, inside [since, until) — the constant
    bounds let both stores use the index on the order time."""
    o, a = orders.c, assigned.c
    return sa.and_(
        o.customer_id == a.person,
        o.status != "cancelled",
        o.occurred_at >= a.at,
        o.occurred_at >= timestamp(conn, since),
        o.occurred_at < timestamp(conn, until),
    )


def order_outcomes(
    conn: sa.Connection, assigned: sa.Subquery, span: Span, *, same_time: bool
) -> dict[str, tuple[int, list[float]]]:
    """Per group: recipients with a completed order in their window, and the window's
    revenue of each recipient who spent something. ``same_time``: everyone was assigned
    at once (a campaign), so the window is a constant range and needs no per-row test."""
    a = assigned.c
    until = min(span.window_end, span.now)
    condition = _order_join(conn, assigned, span.first, until)
    if not same_time:
        condition = sa.and_(condition, within(conn, orders.c.occurred_at, a.at, span.window))
    per = (
        sa.select(
            a.key,
            a.grp,
            sa.func.max(_completed()).label("conv"),
            sa.func.sum(_net()).label("rev"),
        )
        .select_from(assigned.join(orders, condition))
        .group_by(a.key, a.grp)
        .subquery()
    )
    out: dict[str, tuple[int, list[float]]] = defaultdict(lambda: (0, []))
    for grp, conv, rev in conn.execute(sa.select(per.c.grp, per.c.conv, per.c.rev)):
        conversions, spenders = out[str(grp)]
        if rev is not None and float(rev) > 0:
            spenders.append(float(rev))
        out[str(grp)] = (conversions + int(conv or 0), spenders)
    return dict(out)


def weekly_orders(
    conn: sa.Connection, assigned: sa.Subquery, span: Span
) -> dict[int, dict[str, tuple[int, float, float]]]:
    """``[week][group] → (recipients who completed an order that week, revenue, sum of
    squares of each recipient's revenue that week)``."""
    a = assigned.c
    inner = (
        sa.select(
            a.key,
            a.grp,
            week_of(conn, orders.c.occurred_at, span.first).label("w"),
            _completed().label("conv"),
            _net().label("net"),
        )
        .select_from(assigned.join(orders, _order_join(conn, assigned, span.first, span.weeks_end)))
        .subquery()
    )
    per = (
        sa.select(
            inner.c.grp,
            inner.c.w,
            sa.func.max(inner.c.conv).label("conv"),
            sa.func.sum(inner.c.net).label("rev"),
        )
        .group_by(inner.c.key, inner.c.grp, inner.c.w)
        .subquery()
    )
    out: dict[int, dict[str, tuple[int, float, float]]] = defaultdict(dict)
    for grp, w, conv, rev, squares in conn.execute(
        sa.select(
            per.c.grp,
            per.c.w,
            sa.func.sum(per.c.conv),
            sa.func.sum(per.c.rev),
            sa.func.sum(per.c.rev * per.c.rev),
        ).group_by(per.c.grp, per.c.w)
    ):
        out[int(w)][str(grp)] = (int(conv or 0), float(rev or 0), float(squares or 0))
    return dict(out)


def assigned_by_week(
    conn: sa.Connection, assigned: sa.Subquery, span: Span
) -> dict[int, dict[str, int]]:
    """Recipients assigned in each week since the start, per group."""
    a = assigned.c
    inner = sa.select(a.grp, week_of(conn, a.at, span.first).label("w")).subquery()
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for grp, w, n in conn.execute(
        sa.select(inner.c.grp, inner.c.w, sa.func.count()).group_by(inner.c.grp, inner.c.w)
    ):
        out[int(w)][str(grp)] = int(n)
    return dict(out)


def goal_hits(
    conn: sa.Connection,
    assigned: sa.Subquery,
    goal: Goal,
    scenario: Scenario,
    span: Span,
) -> list[tuple[int, str, datetime, datetime]]:
    """``(key, group, assigned at, event at)`` for each goal event a recipient did after
    their assignment, up to the report's horizon, with the goal's filters applied."""
    a, e = assigned.c, events.c
    columns: list[Any] = [a.key, a.grp, a.at, e.occurred_at]
    if goal.where or goal.same_entity:
        columns.append(e.properties)
    query = sa.select(*columns).select_from(
        assigned.join(
            events,
            sa.and_(
                e.customer_id == a.person,
                e.name == goal.event,
                e.occurred_at >= a.at,
                e.occurred_at >= timestamp(conn, span.first),
                e.occurred_at < timestamp(conn, span.horizon),
            ),
        )
    )
    if goal.same_entity:
        query = query.add_columns(scenario_runs.c.entity_key).join(
            scenario_runs, scenario_runs.c.id == a.run_id
        )
    hits = []
    for row in conn.execute(query):
        if goal.where or goal.same_entity:
            props = row[4] or {}
            if not matches(goal.where, props):
                continue
            if goal.same_entity and entity_of(scenario, props) != row[5]:
                continue
        hits.append((int(row[0]), str(row[1]), _aware(row[2]), _aware(row[3])))
    return hits


def goal_outcomes(
    hits: list[tuple[int, str, datetime, datetime]], span: Span
) -> tuple[dict[str, int], dict[int, dict[str, int]]]:
    """Converted recipients per group in their window, and per group in each week."""
    in_window: dict[str, set[int]] = defaultdict(set)
    weekly: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for key, grp, at, when in hits:
        if when - at < span.window and when < span.now:
            in_window[grp].add(key)
        if when < span.weeks_end:
            weekly[(when - span.first) // WEEK][grp].add(key)
    return (
        {g: len(keys) for g, keys in in_window.items()},
        {w: {g: len(k) for g, k in by.items()} for w, by in weekly.items()},
    )


def week_cells(
    names: list[str],
    assigned: dict[int, dict[str, int]],
    bought: dict[int, dict[str, tuple[int, float, float]]],
    goal_weekly: dict[int, dict[str, int]] | None,
    span: Span,
) -> dict[int, dict[str, WeekCell]]:
    """Cells for :func:`weekly.weekly_figures`: recipients so far (cumulative), converted
    that week (completed orders, or the goal when there is one), revenue that week."""
    last = min(span.weeks - 1, int((span.now - span.first) / WEEK))
    cells: dict[int, dict[str, WeekCell]] = {}
    so_far = dict.fromkeys(names, 0)
    for week in range(max(last, 0) + 1):
        for name, n in assigned.get(week, {}).items():
            so_far[name] = so_far.get(name, 0) + n
        row = {}
        for name in so_far:
            conv, rev, squares = bought.get(week, {}).get(name, (0, 0.0, 0.0))
            if goal_weekly is not None:
                conv = goal_weekly.get(week, {}).get(name, 0)
            row[name] = WeekCell(so_far[name], conv, rev, squares)
        cells[week] = row
    return cells
