"""Dry runs: replay stored history through a scenario and report who would have got what.

A dry run drives the real engine — the same triggers, entry rules, waits, exits, goals,
communication policy and composing — so what it reports is what the scenario would have
done, not what a second implementation guesses. The stored events of the range that can
start, wake, end or convert the scenario's runs (segment moves recorded on the timeline
included) are fed to :meth:`Engine.react` in time order, each at its own ``occurred_at``,
and every wake-up in between runs at its own moment: a reminder due at 12:00 goes out
before an order at 12:30, and not at all when the order came at 11:00.

It all happens in :mod:`rapport.scenarios.dry_run_sandbox`: shadow tables in one
transaction that is rolled back, with the shared tables read-only, so nothing is sent,
nothing is kept and live traffic is not held up. Actions (set an attribute, points,
coupons, lists, webhooks, tasks) are listed, not performed: each action step runs as a
one-path split named after it, so runs pass through it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.clock import utc
from rapport.messaging.policy import Decision, decide, load_policy
from rapport.messaging.templates.store import StoredTemplate
from rapport.scenarios.dry_run_report import ACTION, DryRunReport, collect_report
from rapport.scenarios.dry_run_sandbox import (
    DEFAULT_MAX_EVENTS,
    copy_history,
    forbid_shared_writes,
    sandbox,
    shadow_tables,
)
from rapport.scenarios.engine import SEGMENT_ENTERED, SEGMENT_EXITED, Engine, Observed
from rapport.scenarios.index import ScenarioIndex, matches
from rapport.scenarios.model import (
    TRIGGERS,
    EventTrigger,
    Scenario,
    SegmentTrigger,
    parse_scenario,
)
from rapport.scenarios.runs import LIVE
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import check_references, find_scenario, get_scenario
from rapport.store.tables import events, scenario_runs, scenario_versions, scenarios

__all__ = ["DEFAULT_MAX_EVENTS", "DryRunError", "DryRunReport", "dry_run"]

UNSAVED_ID = 0  # the id an unsaved definition runs under when no saved one has its name
_CHUNK = 1000  # events read per query
_BATCH = 500  # due runs advanced per engine call

ScenarioRef = int | str | Mapping[str, Any] | Scenario
Progress = Callable[[int, int], None]


class DryRunError(ValueError):
    """A dry run that cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class _Target:
    id: int
    version: int
    saved: bool
    scenario: Scenario


def dry_run(
    engine: sa.Engine,
    scenario_id_or_definition: ScenarioRef,
    start: datetime,
    end: datetime,
    *,
    limit_customers: int | None = None,
    max_events: int | None = DEFAULT_MAX_EVENTS,
    progress: Progress | None = None,
) -> DryRunReport:
    """Replay the events of ``[start, end)`` through a scenario; nothing is sent or kept.

    ``scenario_id_or_definition`` is a saved scenario (its id, or its id or name as a
    string), which runs at its current version whatever its status, or an unsaved
    definition (a mapping or a parsed :class:`Scenario`), whose templates and segments are
    checked against the store first. ``limit_customers`` replays only the first N
    customers the trigger picks; ``max_events`` refuses to replay more events than that
    (None: no limit), counted up front, or as they are fed when customers are limited
    (most of the range's events are then skipped); ``progress(done, total)`` is called as
    the range's events are read.
    """
    start, end = utc(start), utc(end)
    if start >= end:
        raise DryRunError(
            f"the range is empty: {start:%Y-%m-%d %H:%M} is not before {end:%Y-%m-%d %H:%M}"
        )
    if limit_customers is not None and limit_customers < 1:
        raise DryRunError("limit_customers must be at least 1")
    with sandbox(engine) as conn:
        target = _target(conn, scenario_id_or_definition)
        names = _replayed_names(target.scenario)
        total = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(_in_range(names, start, end))
        ).scalar_one()
        if max_events is not None and limit_customers is None and total > max_events:
            raise _too_many(max_events, total)
        _prepare(conn, target, names, start, end)
        forbid_shared_writes(conn)
        replay = _Replay(conn, limit_customers, max_events)
        try:
            replay.run(_stream(conn, names, start, end), end, total, progress)
        except sa.exc.DBAPIError as exc:
            if not _refused_write(exc):
                raise
            raise DryRunError(
                "a step tried to change shared data, which a dry run never does; "
                f"the store said: {exc.orig}"
            ) from exc
        return collect_report(
            conn,
            target.id,
            target.scenario,
            version=target.version,
            saved=target.saved,
            start=start,
            end=end,
            events=replay.fed,
            wakeups=replay.wakeups,
            limit_customers=limit_customers,
        )


def _too_many(limit: int, count: int | None = None) -> DryRunError:
    what = "these customers have" if count is None else f"the range has {count:,}"
    return DryRunError(
        f"{what} events to replay beyond the limit of {limit:,}: narrow the range, "
        "replay fewer customers (--limit-customers) or raise the limit (--max-events)"
    )


def _refused_write(exc: sa.exc.DBAPIError) -> bool:
    """The sandbox's guard said no (PostgreSQL's read-only transaction, SQLite's
    authorizer): an engine path that writes shared tables, which must fail loudly."""
    code = getattr(exc.orig, "sqlstate", None)
    return code == "25006" or "not authorized" in str(exc.orig)


# -- the target ------------------------------------------------------------------------


def _target(conn: sa.Connection, ref: ScenarioRef) -> _Target:
    if isinstance(ref, Scenario | Mapping):
        scenario = ref if isinstance(ref, Scenario) else parse_scenario(dict(ref))
        check_references(conn, scenario)
        # A saved scenario of the same name is the one this draft would become: run under
        # its id, so splits pick the same paths and its own real messages are not counted
        # against the caps twice.
        same = conn.execute(
            sa.select(scenarios.c.id, scenarios.c.version).where(scenarios.c.name == scenario.name)
        ).first()
        if same is None:
            return _Target(UNSAVED_ID, 1, False, scenario)
        return _Target(int(same.id), int(same.version) + 1, False, scenario)
    stored = get_scenario(conn, ref) if isinstance(ref, int) else find_scenario(conn, ref)
    return _Target(stored.id, stored.version, True, stored.parsed())


def _replayed_names(scenario: Scenario) -> set[str]:
    """Event names that can start, wake, end or convert this scenario's runs."""
    trigger = scenario.trigger
    if isinstance(trigger, EventTrigger):
        names = {trigger.event}
    elif isinstance(trigger, SegmentTrigger):
        names = {SEGMENT_ENTERED if trigger.on == "entered" else SEGMENT_EXITED}
    else:
        kind = next(k for k, model in TRIGGERS.items() if isinstance(trigger, model))
        raise DryRunError(
            f"dry runs replay stored events and segment moves; {kind} triggers are not "
            "replayed (docs/scenarios.md, Dry runs)"
        )
    d = scenario.definition
    names.update(rule.event for rule in d.exit_on)
    if d.goal is not None:
        names.add(d.goal.event)
    names.update(s.wait.event for s in d.steps if s.wait is not None and s.wait.event)
    return names


def _sandboxed(scenario: Scenario) -> dict[str, Any]:
    """The definition the engine runs: each action step becomes a one-path split named
    after its action, so a run passes through it (and the step log says it got there)
    without touching cards, lists, loyalty or partners."""
    doc = scenario.to_json()
    steps: list[dict[str, Any]] = []
    for step, raw in zip(scenario.definition.steps, doc["steps"], strict=True):
        if step.action is not None:
            raw = {
                "id": step.id,
                "split": {"paths": [{"name": ACTION + step.action.kind, "weight": 1}]},
            }
            if step.next is not None:
                raw["next"] = step.next
        steps.append(raw)
    return doc | {"steps": steps}


def _prepare(
    conn: sa.Connection, target: _Target, names: set[str], start: datetime, end: datetime
) -> None:
    """Shadow the tables, put the scenario in them, and the cap history if caps are set."""
    policy = load_policy(conn)
    schema = shadow_tables(conn, start)
    doc = _sandboxed(target.scenario)
    conn.execute(
        scenarios.insert().values(
            id=target.id,
            name=target.scenario.name,
            status="active",
            version=target.version,
            definition=doc,
            created_at=start,
            updated_at=start,
        )
    )
    conn.execute(
        scenario_versions.insert().values(
            scenario_id=target.id, version=target.version, definition=doc, created_at=start
        )
    )
    caps = [c for c in (policy.global_cap, *(r.cap for r in policy.channels.values())) if c]
    if caps:
        since = start - timedelta(days=max(c.days for c in caps))
        replayed = sa.select(events.c.customer_id).where(_in_range(names, start, end))
        copy_history(conn, schema, replayed, since, end, target.id)


# -- the replay ------------------------------------------------------------------------


def _in_range(names: set[str], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    e = events.c
    return sa.and_(e.name.in_(sorted(names)), e.occurred_at >= start, e.occurred_at < end)


def _stream(conn: sa.Connection, names: set[str], start: datetime, end: datetime) -> Iterator[Any]:
    """The range's events in time order, a chunk per query (keyset, so no cursor stays open
    across the engine's own statements)."""
    e = events.c
    after: tuple[datetime, int] | None = None
    while True:
        query = sa.select(e.id, e.customer_id, e.name, e.properties, e.occurred_at).where(
            _in_range(names, start, end)
        )
        if after is not None:
            query = query.where(
                sa.or_(
                    e.occurred_at > after[0], sa.and_(e.occurred_at == after[0], e.id > after[1])
                )
            )
        rows = conn.execute(query.order_by(e.occurred_at, e.id).limit(_CHUNK)).all()
        yield from rows
        if len(rows) < _CHUNK:
            return
        after = (rows[-1].occurred_at, int(rows[-1].id))


class _ReadOnce(StepContext):
    """Templates and the policy are read once instead of for every message: a dry run
    cannot change them, and one replay should see one version of them throughout (an edit
    committed meanwhile would otherwise apply from some simulated moment on)."""

    def __init__(self, conn: sa.Connection) -> None:
        super().__init__(decide=self._decide)
        self._policy = load_policy(conn)
        self._by_ref: dict[int | str, StoredTemplate | None] = {}

    def template(self, conn: sa.Connection, ref: int | str) -> StoredTemplate | None:
        if ref not in self._by_ref:
            self._by_ref[ref] = super().template(conn, ref)
        return self._by_ref[ref]

    def _decide(
        self, conn: sa.Connection, ids: list[int], channel: str, now: datetime, urgent: bool
    ) -> dict[int, Decision]:
        priority = "transactional" if urgent else "marketing"
        return decide(conn, ids, channel, now, priority, policy=self._policy)


class _Replay:
    """Moves simulated time through the range: events at their moments, wake-ups at theirs."""

    def __init__(self, conn: sa.Connection, limit: int | None, max_events: int | None) -> None:
        self.conn = conn
        index = ScenarioIndex(ttl=0)
        index.current(conn)
        index.ttl = float("inf")  # the shadow holds one scenario that never changes
        self.index = index
        self.engine = Engine(index, _ReadOnce(conn))
        self.limit = limit
        self.max_events = max_events
        self.admitted: set[int] = set()
        self.fed = 0
        self.wakeups = 0

    def run(
        self, rows: Iterator[Any], end: datetime, total: int, progress: Progress | None
    ) -> None:
        pending: list[Observed] = []
        at: datetime | None = None
        for seen, row in enumerate(rows, 1):
            if at is not None and row.occurred_at != at and pending:
                self._react(at, pending)
                pending = []
            at = row.occurred_at
            observed = Observed(int(row.customer_id), row.name, dict(row.properties or {}))
            if self._admit(observed):
                pending.append(observed)
                self.fed += 1
                if self.max_events is not None and self.fed > self.max_events:
                    raise _too_many(self.max_events)
            if progress is not None and seen % 200 == 0:
                progress(seen, total)
        if pending and at is not None:
            self._react(at, pending)
        self._wake_until(end)
        if progress is not None:
            progress(total, total)

    def _react(self, at: datetime, observed: list[Observed]) -> None:
        # Wake-ups strictly before the events first: an order at the very moment a
        # reminder falls due still cancels it.
        self._wake_until(at)
        self.engine.react(self.conn, observed, at)

    def _wake_until(self, moment: datetime) -> None:
        """Run every wake-up before ``moment``, in time order, each at its own time."""
        r = scenario_runs.c
        earliest = sa.select(sa.func.min(r.wake_at)).where(r.status.in_(LIVE), r.wake_at < moment)
        while (due := self.conn.execute(earliest).scalar()) is not None:
            advanced = 0
            while True:
                n, _ = self.engine.run_due(self.conn, due, _BATCH)
                advanced += n
                if n < _BATCH:
                    break
            if advanced == 0:
                raise AssertionError(f"runs due at {due.isoformat()} did not advance")
            self.wakeups += advanced

    def _admit(self, o: Observed) -> bool:
        """With a customer limit: the first N customers whose event could start a run."""
        if self.limit is None or o.customer_id in self.admitted:
            return True
        if len(self.admitted) >= self.limit or not self._could_start(o):
            return False
        self.admitted.add(o.customer_id)
        return True

    def _could_start(self, o: Observed) -> bool:
        lives = list(self.index.by_event.get(o.name, ()))
        sid = o.properties.get("segment_id")
        if o.name in (SEGMENT_ENTERED, SEGMENT_EXITED) and isinstance(sid, int):
            on = "entered" if o.name == SEGMENT_ENTERED else "exited"
            lives += self.index.by_segment.get((sid, on), [])
        return any(
            not isinstance(live.scenario.trigger, EventTrigger)
            or matches(live.scenario.trigger.where, o.properties)
            for live in lives
        )
