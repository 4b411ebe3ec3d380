"""Event conditions: performed NAME (with property filters) N times, not for N days, last.

Without property filters a condition reads the per-day ``event_counters``, which the ingest
keeps current and which stay small; with filters it reads the event log. Both use the same
whole-UTC-day windows (see ``dates``), so adding a filter that every event passes never
changes the answer.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments import crossing, dates, ops
from rapport.segments.conditions.base import Condition
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Collector
from rapport.segments.jsondoc import NAME, JsonRef, lookup
from rapport.segments.problems import Bad
from rapport.store.tables import customers, event_counters, events

Days = Field(default=None, ge=0, le=36600)


class PropertyFilter(BaseModel):
    """``{"property": "category", "op": "eq", "value": "shoes"}``: an event property."""

    model_config = ConfigDict(extra="forbid")
    property: str
    op: str
    value: Any = None
    _value: Any = PrivateAttr(None)

    def check(self, where: str) -> None:
        if not NAME.fullmatch(self.property):
            raise Bad(f"{where}.property", f"bad property name {self.property!r}")
        if self.op in ops.RELATIVE:
            raise Bad(f"{where}.op", f"{self.op} does not apply to event properties")
        self._value = ops.check("json", self.property, self.op, self.value, where)

    def path(self) -> tuple[str, ...]:
        return tuple(self.property.split("."))

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return ops.sql(
            "json", self.op, self._value, JsonRef(events.c.properties, self.path(), ctx), ctx
        )

    def test(self, properties: Any, ctx: Context) -> bool:
        return ops.test("json", self.op, self._value, lookup(properties, self.path()), ctx)

    def to_json(self) -> dict[str, Any]:
        out = {"property": self.property, "op": self.op}
        if self._value is not None:
            out["value"] = ops.dump(self._value)
        return out


class Times(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    exactly: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if sum(v is not None for v in (self.at_least, self.at_most, self.exactly)) != 1:
            raise ValueError("give exactly one of at_least, at_most, exactly")
        return self


class Last(BaseModel):
    """When the event was last performed, compared by UTC day."""

    model_config = ConfigDict(extra="forbid")
    before: date | None = None
    after: date | None = None
    more_than_days_ago: int | None = Days
    within_last: int | None = Days

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = (self.before, self.after, self.more_than_days_ago, self.within_last)
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of before, after, more_than_days_ago, within_last")
        return self


class EventCondition(Condition):
    """``{"event": "Product Viewed", "where": [...], "times": {"at_least": 2}, "within_last": 7}``.

    Other forms: ``"not_for_days": 30`` (no such event in the last 30 days, never performed
    included) and ``"last": {"before": "2026-01-01"}`` (performed, last time before a day).
    """

    KEY = "event"
    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyFilter] = []
    times: Times | None = None
    within_last: int | None = Days
    not_for_days: int | None = Days
    last: Last | None = None

    def check(self, where: str) -> None:
        for i, f in enumerate(self.where):
            f.check(f"{where}.where[{i}]")
        if self.not_for_days is not None and (
            self.times or self.within_last is not None or self.last
        ):
            raise Bad(
                f"{where}.not_for_days",
                "not_for_days goes alone, without times, within_last or last",
            )
        if self.last is not None and (self.times or self.within_last is not None):
            raise Bad(f"{where}.last", "last goes without times or within_last")

    # -- the shared reading of the condition

    def _window(self) -> int | None:
        if self.not_for_days is not None:
            return self.not_for_days
        if self.last is not None:
            return self.last.within_last
        return self.within_last

    def _count_test(self) -> tuple[str, int]:
        """The condition as "count in the window <op> n" with op one of ge, le, eq."""
        if self.not_for_days is not None:
            return "le", 0
        if self.last is not None:  # only within_last reaches here
            return "ge", 1
        t = self.times or Times(at_least=1)
        if t.at_least is not None:
            return "ge", t.at_least
        if t.at_most is not None:
            return "le", t.at_most
        assert t.exactly is not None
        return "eq", t.exactly

    def _last_test(self) -> tuple[str, date] | None:
        """The condition as "last day performed <op> day", or None for a count test."""
        last = self.last
        if last is None or last.within_last is not None:
            return None
        if last.before is not None:
            return "lt", last.before
        if last.after is not None:
            return "gt", last.after
        assert last.more_than_days_ago is not None
        return "lt_ago", date.min  # resolved against now below

    # -- SQL

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        filtered = bool(self.where)
        table = events if filtered else event_counters
        amount = sa.func.count() if filtered else sa.func.sum(event_counters.c.count)
        when = events.c.occurred_at if filtered else event_counters.c.day

        def bound(day: date) -> Any:
            return dates.midnight(day) if filtered else day

        base = sa.select(table.c.customer_id).where(table.c.name == self.event)
        if filtered:
            base = base.where(*(f.sql(ctx) for f in self.where))
        last = self._last_test()
        if last is not None:
            op, day = last
            if op == "lt_ago":
                assert self.last is not None and self.last.more_than_days_ago is not None
                op, day = "lt", dates.window_start(ctx.now, self.last.more_than_days_ago)
            latest = sa.func.max(when)
            having = latest < bound(day) if op == "lt" else latest >= bound(day + timedelta(days=1))
            return customers.c.id.in_(base.group_by(table.c.customer_id).having(having))
        window = self._window()
        if window is not None:
            base = base.where(when >= bound(dates.window_start(ctx.now, window)))
        op, n = self._count_test()

        def at_least(k: int) -> ColumnElement[bool]:
            if k <= 0:
                return sa.true()
            if k == 1:
                return customers.c.id.in_(base)
            return customers.c.id.in_(base.group_by(table.c.customer_id).having(amount >= k))

        if op == "ge":
            return at_least(n)
        if op == "le":
            return sa.not_(at_least(n + 1))
        if n == 0:
            return sa.not_(at_least(1))
        return customers.c.id.in_(base.group_by(table.c.customer_id).having(amount == n))

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        """Only days leaving the window move a count (windows have no upper end), and the
        latest day passes "more than N days ago" on those same days: the customers with
        such an event on the days that left, which is none while the UTC day is the same.
        """
        n = self._window()
        if n is None and self.last is not None:
            n = self.last.more_than_days_ago
        if n is None:
            return crossing.NEVER  # "ever", or before/after a fixed day
        span = crossing.days_left(ctx_from, ctx_to, n)
        if span is None:
            return crossing.NEVER
        first, stop = span
        if self.where:
            e = events.c
            rows = sa.select(e.customer_id).where(
                e.name == self.event,
                e.occurred_at >= dates.midnight(first),
                e.occurred_at < dates.midnight(stop),
                *(f.sql(ctx_to) for f in self.where),
            )
        else:
            ec = event_counters.c
            rows = sa.select(ec.customer_id).where(
                ec.name == self.event, ec.day >= first, ec.day < stop
            )
        return customers.c.id.in_(rows)

    # -- Python

    def _days(self, snap: Snapshot, ctx: Context) -> list[tuple[date, int]]:
        if not self.where:
            return list(snap.counters.get(self.event, {}).items())
        return [
            (at.date(), 1)
            for at, props in snap.events.get(self.event, [])
            if all(f.test(props, ctx) for f in self.where)
        ]

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        days = [(d, n) for d, n in self._days(snap, ctx) if n > 0]
        last = self._last_test()
        if last is not None:
            if not days:
                return False
            latest = max(d for d, _ in days)
            op, day = last
            if op == "lt_ago":
                assert self.last is not None and self.last.more_than_days_ago is not None
                op, day = "lt", dates.window_start(ctx.now, self.last.more_than_days_ago)
            return latest < day if op == "lt" else latest > day
        window = self._window()
        start = None if window is None else dates.window_start(ctx.now, window)
        total = sum(n for d, n in days if start is None or d >= start)
        op, n = self._count_test()
        return total >= n if op == "ge" else total <= n if op == "le" else total == n

    def collect(self, deps: Collector) -> None:
        # ``last`` before/after/more_than_days_ago needs the latest event, however old.
        bounded = self.last is None or self.last.within_last is not None
        days = self._window() if bounded else None
        if self.where:
            deps.read_log(self.event, days)
        else:
            deps.read_counters(self.event, days)
        if self._window() is not None or (self.last and self.last.more_than_days_ago is not None):
            deps.time_dependent = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event}
        if self.where:
            out["where"] = [f.to_json() for f in self.where]
        for name in ("times", "last"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.model_dump(mode="json", exclude_none=True)
        for name in ("within_last", "not_for_days"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out
