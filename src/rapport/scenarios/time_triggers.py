"""Starting runs for the triggers time sets off: a date, a spell of inactivity, a schedule.

An event trigger is checked when its event arrives, but nothing arrives when a birthday
comes or thirty days pass without an order, so the scenario loop scans for them (at most
once a minute). A scan must cost the same on a million customers as on ten: each trigger
is a few set-based statements per scenario, candidates are picked in SQL in pages of
:data:`CHUNK`, and each page commits on its own, so a long scan never holds a transaction.

Every run these triggers start carries its *occasion* as the entity key —
``birthday:2026``, ``inactive-since:2026-01-05``, a schedule's fire time — and a customer
gets at most one run per occasion, whatever the entry mode, however often scans repeat and
however many workers scan at once: candidates that already have a run with that key are
left out in SQL, under a lock on the scenario's row (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers share scenarios instead of queueing; SQLite has one writer). The
entry rules then apply as for event triggers, and runs start through the engine: the
``Scenario Entered`` event, the first steps at once.

A page is first read outside any write transaction and then re-read, by its range of
ids, under the lock: the common scan, which finds nobody new, then never holds SQLite's
write lock for the length of a full scan of the customers.

What each trigger means exactly (the local day, 29 February, inactivity spells, missed
schedule fires) is in docs/scenarios.md, "Time-based triggers".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from croniter import croniter

from rapport.messaging.policy import zone_of
from rapport.scenarios.index import Live
from rapport.scenarios.model import DateTrigger, InactivityTrigger, ScheduleTrigger
from rapport.scenarios.runs import Start
from rapport.scenarios.store import all_scenarios, resolve_segment
from rapport.segments.compiler import live as live_customer
from rapport.segments.config import read_setting, write_setting
from rapport.segments.context import Context
from rapport.segments.jsondoc import JsonRef
from rapport.segments.ops import month_day
from rapport.store.engine import writing
from rapport.store.tables import (
    customers,
    event_counters,
    scenario_runs,
    scenarios,
    segment_members,
)

if TYPE_CHECKING:
    from rapport.pipeline import Pipeline

log = logging.getLogger("rapport.scenarios")

CHUNK = 5000  # customers per page, and per transaction
# After this long a scan starts no further page beyond the first of each query: a large
# backlog (a win-back scenario just activated over a dormant base, a schedule over a
# million members) goes on at the next scan instead of keeping due runs waiting, and
# what it already started is left out by its occasion key.
SCAN_SECONDS = 30.0
# A schedule fire older than this when first seen (the workers were down) is skipped.
MISSED_LIMIT = timedelta(days=1)
ORDER_EVENT = "Order Completed"
SCHEDULE_SETTING = "scenario_schedule:{}"
INACTIVE_SETTING = "scenario_inactive:{}"
TIME_TRIGGERS = (DateTrigger, InactivityTrigger, ScheduleTrigger)


@dataclass(frozen=True)
class _Query:
    """Candidates for one occasion query: ``customer`` is the id column pages are cut by,
    ``key`` the entity key in SQL (to leave out who already has a run for it), ``detail``
    what the run's key and trigger context are made of in Python."""

    customer: sa.ColumnElement[Any]
    key: sa.ColumnElement[Any]
    where: sa.ColumnElement[bool]
    entity: Callable[[Any], str]
    trigger: Callable[[Any], dict[str, Any]]
    detail: sa.ColumnElement[Any] | None = None

    def select(self, scenario_id: int, after: int, upto: int | None = None) -> Any:
        """The next page of candidates after the id ``after`` (up to ``upto``: a page read
        again under the lock, by its range rather than a list of thousands of ids)."""
        r = scenario_runs.c
        started = sa.exists().where(
            r.scenario_id == scenario_id, r.customer_id == self.customer, r.entity_key == self.key
        )
        columns = [self.customer.label("customer_id")]
        if self.detail is not None:
            columns.append(self.detail.label("detail"))
        query = sa.select(*columns).where(self.where, self.customer > after, ~started)
        if upto is not None:
            query = query.where(self.customer <= upto)
        return query.order_by(self.customer).limit(CHUNK)


@dataclass
class _Plan:
    """What one scan of one scenario does; ``finish`` records how far it got, once every
    query ran to its end (a scan cut short leaves it, and the next scan redoes the rest)."""

    queries: list[_Query] = field(default_factory=list)
    finish: Callable[[sa.Connection], None] | None = None


def scan_time_triggers(pipeline: Pipeline, now: datetime) -> dict[int, int]:
    """Start the runs the active date, inactivity and schedule scenarios owe at ``now``:
    how many started, per scenario scanned. A scenario that fails is logged and skipped,
    so one broken definition does not hold the others back."""
    with pipeline.engine.connect() as conn:
        index = pipeline.scenarios.index.current(conn)
        lives = [
            live
            for _, live in sorted(index.active.items())
            if isinstance(live.scenario.trigger, TIME_TRIGGERS)
        ]
        dated = any(isinstance(live.scenario.trigger, DateTrigger) for live in lives)
        zones = _zones(conn) if dated else []
    started: dict[int, int] = {}
    deadline = time.monotonic() + SCAN_SECONDS
    for live in lives:
        try:
            started[live.id] = _scan(pipeline, live, zones, now, deadline)
        except Exception:  # retried at the next scan; its pages that committed stay done
            log.exception("time trigger of scenario %d failed", live.id)
    try:
        _skip_paused_fires(pipeline, now)
    except Exception:
        log.exception("skipping fires of paused schedules failed")
    return started


def _zones(conn: sa.Connection) -> list[str | None]:
    """The timezones customers are in (NULL for none): the local day is worked out per
    zone in Python, which is what lets SQLite answer "whose birthday is it locally"."""
    c = customers.c
    return list(conn.execute(sa.select(c.timezone).where(live_customer()).distinct()).scalars())


def _scan(
    pipeline: Pipeline, live: Live, zones: list[str | None], now: datetime, deadline: float
) -> int:
    with pipeline.engine.connect() as conn:
        trigger = live.scenario.trigger
        ctx = Context.at(now, conn.dialect.name)
        if isinstance(trigger, DateTrigger):
            plan: _Plan | None = _date_plan(trigger, zones, ctx)
        elif isinstance(trigger, InactivityTrigger):
            plan = _inactivity_plan(conn, live.id, trigger, ctx)
        else:
            plan = _schedule_plan(conn, live.id, trigger, now)
    if plan is None:
        return 0
    started = 0
    complete = True
    for query in plan.queries:
        after = 0
        while True:
            with pipeline.engine.connect() as conn:
                ids = [int(i) for i in conn.execute(query.select(live.id, after)).scalars()]
            if not ids:
                break
            with writing(pipeline.engine) as conn:
                if not _claim(conn, live):
                    return started  # paused, edited, or another worker scans it now
                rows = conn.execute(query.select(live.id, after, ids[-1])).all()
                starts = [
                    Start(
                        live.id,
                        live.version,
                        live.scenario,
                        int(row.customer_id),
                        query.entity(getattr(row, "detail", None)),
                        query.trigger(getattr(row, "detail", None)),
                    )
                    for row in rows
                ]
                runs, events = pipeline.scenarios.start_many(conn, starts, now)
                if events:
                    pipeline.record_many(conn, events, react=False)
            started += len(runs)
            after = ids[-1]
            if len(ids) < CHUNK:
                break
            if time.monotonic() > deadline:
                complete = False
                break
    if complete and plan.finish is not None:
        with writing(pipeline.engine) as conn:
            if _claim(conn, live):
                plan.finish(conn)
    if started:
        log.info("scenario %d: %d runs started by its %s", live.id, started, _kind(live))
    return started


def _claim(conn: sa.Connection, live: Live) -> bool:
    """Lock the scenario's row for this transaction; False when another worker holds it,
    or when the scenario was paused or edited since the index was read (the next scan,
    on a fresh index, picks it up again)."""
    row = conn.execute(_LOCK, {"id": live.id}).first()
    return row is not None and row.status == "active" and int(row.version) == live.version


_LOCK = (
    sa.select(scenarios.c.status, scenarios.c.version)
    .where(scenarios.c.id == sa.bindparam("id"))
    .with_for_update(skip_locked=True)
)


def _always(value: Any) -> Callable[[Any], Any]:
    """The same key or context for every customer of a query (one occasion per query)."""
    return lambda _: value


def _kind(live: Live) -> str:
    trigger = live.scenario.trigger
    if isinstance(trigger, DateTrigger):
        return "date"
    return "inactivity" if isinstance(trigger, InactivityTrigger) else "schedule"


# -- date -------------------------------------------------------------------------------


def _date_plan(trigger: DateTrigger, zones: list[str | None], ctx: Context) -> _Plan:
    """One query per local day among the zones whose local hour has reached ``at_hour``
    (at most three: the world spans three calendar days at any moment)."""
    by_day: dict[date, list[str | None]] = {}
    for name in zones:
        local = ctx.now.astimezone(zone_of(name))
        if local.hour >= trigger.at_hour:
            by_day.setdefault(local.date(), []).append(name)
    plan = _Plan()
    for today, names in sorted(by_day.items()):
        day = today - timedelta(days=trigger.offset_days)  # the date that falls today
        # within the 200 characters of an entity key, or it would never match its own run
        occasion = f"{trigger.date[:180]}:{day.year if trigger.yearly else day.isoformat()}"
        properties = {
            "date": trigger.date,
            "occasion": day.isoformat(),
            "offset_days": trigger.offset_days,
        }
        plan.queries.append(
            _Query(
                customer=customers.c.id,
                key=sa.literal(occasion, sa.String),
                where=sa.and_(live_customer(), _in_zones(names), _falls_on(trigger, day, ctx)),
                entity=_always(occasion),
                trigger=_always({"name": "Date", "properties": properties}),
            )
        )
    return plan


def _in_zones(names: list[str | None]) -> sa.ColumnElement[bool]:
    c = customers.c
    named = [n for n in names if n is not None]
    if None in names:
        return sa.or_(c.timezone.is_(None), c.timezone.in_(named))
    return c.timezone.in_(named)


def _falls_on(trigger: DateTrigger, day: date, ctx: Context) -> sa.ColumnElement[bool]:
    """The customer's date is ``day`` (its month and day when yearly; 29 February counts
    as 28 February in a common year)."""
    c = customers.c
    ref: Any
    if trigger.date == "birthday":
        ref, kind = c.birthday, "date"
    else:
        ref, kind = JsonRef(c.traits, (trigger.date.removeprefix("traits."),), ctx), "trait"
    if not trigger.yearly:
        if isinstance(ref, JsonRef):
            return ref.date_text() == day.isoformat()
        return sa.and_(c.birthday.is_not(None), c.birthday == day)
    days = [f"{day.month:02d}-{day.day:02d}"]
    if (day.month, day.day) == (2, 28) and not _leap(day.year):
        days.append("02-29")
    return month_day(kind, ref, ctx).in_(days)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# -- inactivity ------------------------------------------------------------------------


def _inactivity_plan(
    conn: sa.Connection, scenario_id: int, trigger: InactivityTrigger, ctx: Context
) -> _Plan | None:
    """Customers whose last ``inactive`` event became older than ``days`` since the last
    complete scan (every one of them on the first): a spell is looked at once, when it
    crosses the line, so a scan never re-reads the whole dormant base."""
    setting = INACTIVE_SETTING.format(scenario_id)
    stored = read_setting(conn, setting)
    mark = stored.get("cutoff") if isinstance(stored, dict) else None
    if not isinstance(stored, dict) or stored.get("event") != trigger.inactive:
        mark = None  # never scanned, or scanned for another event: everyone qualifies
    properties = {"event": trigger.inactive, "days": trigger.days}

    def context(last: Any) -> dict[str, Any]:
        return {"name": "Inactivity", "properties": properties | {"last": str(last)}}

    def entity(last: Any) -> str:
        return f"inactive-since:{last}"

    prefix = sa.literal("inactive-since:", sa.String)
    if trigger.inactive == ORDER_EVENT:  # the order aggregate, kept on the card
        cutoff: datetime | date = ctx.now - timedelta(days=trigger.days)
        since = _parse(mark, datetime)
        c = customers.c
        band = [c.last_order_at.is_not(None), c.last_order_at < cutoff]
        if since is not None:
            band.append(c.last_order_at >= since)
        day = _utc_day(c.last_order_at, ctx)
        query = _Query(
            customer=c.id,
            key=prefix + day,
            where=sa.and_(live_customer(), *band),
            entity=entity,
            trigger=context,
            detail=day,
        )
    else:  # per-day counters: a day that ended more than ``days`` days ago
        cutoff = ctx.now.date() - timedelta(days=trigger.days)
        since_day = _parse(mark, date)
        if since_day is not None and since_day >= cutoff:
            return None  # the cut-off moves once a day; nothing new crossed it
        ec = event_counters.c
        later = event_counters.alias("later")
        band = [ec.name == trigger.inactive, ec.day < cutoff]
        if since_day is not None:
            band.append(ec.day >= since_day)
        last = (
            sa.select(ec.customer_id.label("customer_id"), sa.func.max(ec.day).label("last"))
            .where(
                *band,
                ~sa.exists().where(
                    later.c.customer_id == ec.customer_id,
                    later.c.name == trigger.inactive,
                    later.c.day >= cutoff,
                ),
            )
            .group_by(ec.customer_id)
            .subquery("last_seen")
        )
        day = _date_text(last.c.last, ctx)
        query = _Query(
            customer=last.c.customer_id,
            key=prefix + day,
            where=sa.and_(customers.c.id == last.c.customer_id, live_customer()),
            entity=entity,
            trigger=context,
            detail=day,
        )

    def finish(conn: sa.Connection) -> None:
        current = read_setting(conn, setting)
        if isinstance(current, dict) and current.get("event") == trigger.inactive:
            line = _parse(current.get("cutoff"), type(cutoff))
            if line is not None and line >= cutoff:
                return  # another worker got further (or ``days`` grew: keep the later line)
        value = {"event": trigger.inactive, "cutoff": cutoff.isoformat()}
        write_setting(conn, setting, value, ctx.now)

    return _Plan([query], finish)


def _utc_day(column: Any, ctx: Context) -> sa.ColumnElement[Any]:
    """``YYYY-MM-DD`` of a stored UTC time, in SQL."""
    if ctx.postgres:
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD", type_=sa.String)
    return sa.func.date(column, type_=sa.String)


def _date_text(column: Any, ctx: Context) -> sa.ColumnElement[Any]:
    if ctx.postgres:
        return sa.func.to_char(column, "YYYY-MM-DD", type_=sa.String)
    return sa.func.date(column, type_=sa.String)


def _parse(text: Any, kind: type[datetime] | type[date]) -> Any:
    """A stored mark read back; None for anything unusable (a hand-edited setting), which
    only costs a wider scan."""
    if not isinstance(text, str):
        return None
    try:
        value = kind.fromisoformat(text)
    except ValueError:
        return None
    if isinstance(value, datetime) and (kind is date or value.tzinfo is None):
        return None
    return value


# -- schedule --------------------------------------------------------------------------


def latest_fire(trigger: ScheduleTrigger, now: datetime) -> datetime:
    """The last fire time of the cron at or before ``now``, in the schedule's timezone."""
    local = now.astimezone(ZoneInfo(trigger.timezone)).replace(microsecond=0)
    fire: datetime = croniter(trigger.schedule, local + timedelta(seconds=1)).get_prev(datetime)
    return fire


def _schedule_plan(
    conn: sa.Connection, scenario_id: int, trigger: ScheduleTrigger, now: datetime
) -> _Plan | None:
    """The latest fire since the last one handled (or since activation), unless it is
    older than :data:`MISSED_LIMIT`; several fires in one window make one: the workers
    were down, and a segment should not get a burst of the same message."""
    setting = SCHEDULE_SETTING.format(scenario_id)
    since = _schedule_mark(read_setting(conn, setting))
    if since is None:  # never scanned: from the moment it was activated
        since = conn.execute(
            sa.select(scenarios.c.updated_at).where(scenarios.c.id == scenario_id)
        ).scalar_one()
    since = max(since, now - MISSED_LIMIT)
    fire = latest_fire(trigger, now)
    if fire <= since:
        return None
    segment_id = resolve_segment(conn, trigger.segment)
    if segment_id is None:
        log.warning("scenario %d: its segment %r no longer exists", scenario_id, trigger.segment)
        return None
    c, m = customers.c, segment_members.c
    occasion = fire.isoformat()
    properties = {"schedule": trigger.schedule, "fired_at": occasion, "segment_id": segment_id}
    query = _Query(
        customer=c.id,
        key=sa.literal(occasion, sa.String),
        where=sa.and_(
            m.segment_id == segment_id,
            m.until.is_(None),
            m.customer_id == c.id,
            live_customer(),
        ),
        entity=_always(occasion),
        trigger=_always({"name": "Schedule", "properties": properties}),
    )

    def finish(conn: sa.Connection) -> None:
        _advance_mark(conn, setting, now)

    return _Plan([query], finish)


def _schedule_mark(stored: Any) -> datetime | None:
    value = _parse(stored.get("last") if isinstance(stored, dict) else None, datetime)
    return value if isinstance(value, datetime) else None


def _advance_mark(conn: sa.Connection, setting: str, now: datetime) -> None:
    """Fires up to ``now`` are handled; the mark never moves back (workers race)."""
    current = _schedule_mark(read_setting(conn, setting))
    if current is None or current < now:
        write_setting(conn, setting, {"last": now.isoformat()}, now)


def _skip_paused_fires(pipeline: Pipeline, now: datetime) -> None:
    """A fire that passes while its scenario is paused is skipped, not started when the
    scenario is resumed: pausing means no new runs."""
    due: list[str] = []
    with pipeline.engine.connect() as conn:
        for stored in all_scenarios(conn, ["paused"]):
            data = stored.definition.get("trigger") or {}
            if "schedule" not in data:
                continue
            setting = SCHEDULE_SETTING.format(stored.id)
            mark = _schedule_mark(read_setting(conn, setting))
            if mark is not None and latest_fire(ScheduleTrigger.model_validate(data), now) > mark:
                due.append(setting)
    if due:
        with writing(pipeline.engine) as conn:
            for setting in due:
                _advance_mark(conn, setting, now)
