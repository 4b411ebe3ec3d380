"""The scenario engine: events start, wake, end and convert runs; due runs advance.

Two ways in, both inside a transaction the caller owns:

* :meth:`Engine.react` — the pipeline calls it with the events of a stored batch (and the
  segment moves they caused): triggers start runs, awaited events wake runs, exit events
  end them, goal events convert them; runs that became due advance at once, so a send
  that follows a trigger without a wait is in the outbox before the batch commits.
* :meth:`Engine.run_due` — a worker calls it: due runs are claimed (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL) and advanced in the same transaction.

Advancing executes steps until a run waits or ends (:mod:`rapport.scenarios.steps`).
Everything a step decides — its new state, its outbox row (key ``run:{id}:step:{step}``),
its log line — is written in the one transaction, which is what makes a message go out
exactly once however often a worker dies. Events for the card are returned to the caller,
who records them through the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.messaging.outbox import Event
from rapport.scenarios.index import ScenarioIndex, entity_of, matches
from rapport.scenarios.model import EventTrigger, Scenario
from rapport.scenarios.runs import (
    CONVERTED,
    ENTERED,
    EXITED,
    Run,
    Start,
    claim_due,
    end,
    live_runs,
    recently_done,
    save,
    start_runs,
)
from rapport.scenarios.steps import StepContext, advance_many

SEGMENT_ENTERED = "Segment Entered"
SEGMENT_EXITED = "Segment Exited"


@dataclass(frozen=True)
class Observed:
    """An event the engine is told about: stored, or a segment move."""

    customer_id: int
    name: str
    properties: dict[str, Any]


class Engine:
    def __init__(self, index: ScenarioIndex, steps: StepContext) -> None:
        self.index = index
        self.steps = steps

    # -- events --------------------------------------------------------------------

    def react(
        self, conn: sa.Connection, observed: Sequence[Observed], now: datetime
    ) -> list[Event]:
        index = self.index.current(conn)
        if not index.active and not index.watched:
            return []
        names = {o.name for o in observed}
        starts = self._starts(observed)
        touched: list[Run] = []
        if names & index.watched:
            touched = self._wake_end_convert(conn, observed, now)
        if not starts and not touched:
            return []
        events: list[Event] = []
        started = start_runs(conn, starts, now)
        for run in started:
            events.append(self._entered(run))
        due = [r for r in started + touched if r.status == "active" and r.wake_at is not None]
        events.extend(self._advance(conn, due, now))
        rest = [r for r in touched if r not in due]
        events.extend(self._exits(rest))
        save(conn, rest, now)
        return events

    def start(
        self,
        conn: sa.Connection,
        scenario_id: int,
        customer_ids: Sequence[int],
        trigger_properties: dict[str, Any],
        now: datetime,
        *,
        trigger_name: str = "API",
    ) -> tuple[list[Run], list[Event]]:
        """Start runs of an active scenario for customers the caller picked (the API
        trigger, or a trigger a clock fires) rather than an event. The entry rules apply
        and the runs that started advance at once; returns them and the events to record."""
        live = self.index.current(conn).active.get(scenario_id)
        if live is None:  # activated by another process since the index was loaded
            self.index.invalidate()
            live = self.index.current(conn).active.get(scenario_id)
        if live is None:
            return [], []
        trigger = {"name": trigger_name, "properties": trigger_properties}
        entity = entity_of(live.scenario, trigger_properties)
        started = start_runs(
            conn,
            [Start(live.id, live.version, live.scenario, c, entity, trigger) for c in customer_ids],
            now,
        )
        events = [self._entered(run) for run in started]
        events.extend(self._advance(conn, started, now))
        return started, events

    def start_many(
        self, conn: sa.Connection, starts: Sequence[Start], now: datetime
    ) -> tuple[list[Run], list[Event]]:
        """Like :meth:`start`, for starts that each carry their own entity key: a time
        trigger's occasion (``birthday:2026``, ``inactive-since:2026-01-05``) is not a
        property the scenario names, and one scan mixes several occasions."""
        self.index.current(conn)
        started = start_runs(conn, list(starts), now)
        events = [self._entered(run) for run in started]
        events.extend(self._advance(conn, started, now))
        return started, events

    def _starts(self, observed: Sequence[Observed]) -> list[Start]:
        index = self.index
        starts: list[Start] = []
        for o in observed:
            lives = list(index.by_event.get(o.name, ()))
            if o.name in (SEGMENT_ENTERED, SEGMENT_EXITED):
                sid = o.properties.get("segment_id")
                on = "entered" if o.name == SEGMENT_ENTERED else "exited"
                if isinstance(sid, int):
                    lives += index.by_segment.get((sid, on), [])
            for live in lives:
                trigger = live.scenario.trigger
                if isinstance(trigger, EventTrigger) and not matches(trigger.where, o.properties):
                    continue
                starts.append(
                    Start(
                        live.id,
                        live.version,
                        live.scenario,
                        o.customer_id,
                        entity_of(live.scenario, o.properties),
                        {"name": o.name, "properties": o.properties},
                    )
                )
        return starts

    def _wake_end_convert(
        self, conn: sa.Connection, observed: Sequence[Observed], now: datetime
    ) -> list[Run]:
        """Runs of these customers that an event ends, converts or wakes."""
        watched = [o for o in observed if o.name in self.index.watched]
        customers = sorted({o.customer_id for o in watched})
        runs = live_runs(conn, customers)
        goal_ids = [
            sid
            for sid, live in self.index.active.items()
            if live.scenario.definition.goal is not None
        ]
        if goal_ids:
            seen: dict[int, set[str]] = {}
            for o in watched:
                seen.setdefault(o.customer_id, set()).add(o.name)

            def may_convert(scenario_id: int, version: int, customer: int, at: datetime) -> bool:
                """A finished run can only convert: on its version's goal event, within
                its window. Only such runs are loaded whole (their context parsed)."""
                goal = self.index.version(conn, scenario_id, version).definition.goal
                return (
                    goal is not None
                    and goal.event in seen.get(customer, ())
                    and now - at <= timedelta(days=goal.within_days)
                )

            runs += recently_done(conn, customers, goal_ids, now - timedelta(days=365), may_convert)
        changed: list[Run] = []
        for run in runs:
            scenario = self.index.version(conn, run.scenario_id, run.version)
            before = (run.status, run.step)
            for o in (o for o in watched if o.customer_id == run.customer_id):
                _apply_event(scenario, run, o, now)
            if (run.status, run.step) != before or run.log:
                changed.append(run)
        return changed

    # -- due runs -------------------------------------------------------------------

    def run_due(
        self, conn: sa.Connection, now: datetime, limit: int = 500
    ) -> tuple[int, list[Event]]:
        """Advance up to ``limit`` due runs; (how many, the events to record)."""
        self.index.current(conn)
        runs = claim_due(conn, now, limit)
        for run in runs:
            if run.status == "waiting" and run.step is not None:  # the wait timed out
                scenario = self.index.version(conn, run.scenario_id, run.version)
                wait = scenario.steps[run.step].wait
                run.note(run.step, "timeout")
                run.step = (wait.on_timeout if wait else None) or scenario.following(run.step)
                run.status = "active"
                run.waiting_event = None
                if run.step is None:
                    end(run, "done", "end of scenario")
        due = [r for r in runs if r.status == "active"]
        events = self._advance(conn, due, now)
        finished = [r for r in runs if r.status != "active" and r not in due]
        events.extend(self._exits(finished))
        save(conn, finished, now)
        return len(runs), events

    # -- helpers ---------------------------------------------------------------------

    def _advance(self, conn: sa.Connection, runs: list[Run], now: datetime) -> list[Event]:
        pairs = [(self.index.version(conn, r.scenario_id, r.version), r) for r in runs]
        events = advance_many(conn, self.steps, pairs, now)
        events.extend(self._exits(runs))
        save(conn, runs, now)
        return events

    def _entered(self, run: Run) -> Event:
        live = self.index.active.get(run.scenario_id)
        name = live.scenario.name if live else str(run.scenario_id)
        return (
            run.customer_id,
            ENTERED,
            {"scenario_id": str(run.scenario_id), "scenario": name, "run_id": run.id},
        )

    def _exits(self, runs: list[Run]) -> list[Event]:
        """``Scenario Exited`` once per run that ended, ``Scenario Converted`` once per goal."""
        events: list[Event] = []
        for run in runs:
            base = {"scenario_id": str(run.scenario_id), "run_id": run.id}
            if run.status not in ("active", "waiting") and not run.context.get("exit_recorded"):
                run.context["exit_recorded"] = True
                events.append(
                    (
                        run.customer_id,
                        EXITED,
                        base | {"status": run.status, "reason": run.end_reason},
                    )
                )
            if run.context.get("converted_at") and not run.context.get("conversion_recorded"):
                run.context["conversion_recorded"] = True
                events.append((run.customer_id, CONVERTED, base))
        return events


def _fits(where: list[Any], same_entity: bool, o: Observed, same: bool) -> bool:
    return matches(where, o.properties) and (same or not same_entity)


def _apply_event(scenario: Scenario, run: Run, o: Observed, now: datetime) -> None:
    """What one event does to one run: convert it, end it, or wake it from a wait."""
    d = scenario.definition
    same = entity_of(scenario, o.properties) == run.entity_key
    goal = d.goal
    if goal is not None and o.name == goal.event and run.status != "converted":
        within = now - run.started_at <= timedelta(days=goal.within_days)
        if within and _fits(goal.where, goal.same_entity, o, same):
            run.note("goal", "converted")
            run.context["converted_at"] = now.isoformat()
            if run.status == "done" or not goal.continue_after:
                run.status = "converted"
                run.end_reason = run.end_reason or "goal reached"
                run.wake_at = None
    if run.status not in ("active", "waiting"):
        return
    for rule in d.exit_on:
        if o.name == rule.event and _fits(rule.where, rule.same_entity, o, same):
            end(run, "exited", f"exit event {o.name}")
            return
    if run.status == "waiting" and run.waiting_event == o.name and run.step:
        wait = scenario.steps[run.step].wait
        if wait is not None and _fits(wait.where, wait.same_entity, o, same):
            run.note(run.step, "event", o.name)
            run.step = wait.on_event or scenario.following(run.step)
            run.status = "active"
            run.waiting_event = None
            run.wake_at = now
            run.context["event"] = {"name": o.name, "properties": o.properties}
            if run.step is None:
                end(run, "done", "end of scenario")
