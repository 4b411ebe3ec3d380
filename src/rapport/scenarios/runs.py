"""Run rows: start (with the entry rules), end, log, and claim the due ones.

A run is a row; its current step and wake-up time are columns. Everything that moves a
run happens inside a transaction the caller holds, together with the outbox rows its
sends produce, so a crash before commit leaves no trace and a retry redoes the same work
under the same idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.scenarios.model import Scenario
from rapport.store.tables import scenario_runs, scenario_step_log, scenarios

LIVE = ("active", "waiting")
ENTERED = "Scenario Entered"
EXITED = "Scenario Exited"
CONVERTED = "Scenario Converted"


@dataclass
class Run:
    """A run loaded for advancing; ``changed`` columns are written back in one UPDATE."""

    id: int
    scenario_id: int
    version: int
    customer_id: int
    entity_key: str
    status: str
    step: str | None
    wake_at: datetime | None
    waiting_event: str | None
    context: dict[str, Any]
    started_at: datetime
    end_reason: str | None = None
    log: list[tuple[str, str, str | None]] = field(default_factory=list)

    @classmethod
    def of(cls, row: Any) -> Run:
        return cls(
            id=int(row.id),
            scenario_id=int(row.scenario_id),
            version=int(row.version),
            customer_id=int(row.customer_id),
            entity_key=row.entity_key,
            status=row.status,
            step=row.step,
            wake_at=row.wake_at,
            waiting_event=row.waiting_event,
            context=dict(row.context or {}),
            started_at=row.started_at,
            end_reason=row.end_reason,
        )

    def note(self, step: str, outcome: str, reason: str | None = None) -> None:
        self.log.append((step, outcome, reason))


@dataclass(frozen=True)
class Start:
    scenario_id: int
    version: int
    scenario: Scenario
    customer_id: int
    entity_key: str
    trigger: dict[str, Any]


def start_runs(conn: sa.Connection, starts: list[Start], now: datetime) -> list[Run]:
    """Insert the runs the entry rules allow; returns them, due now at their first step."""
    if not starts:
        return []
    r = scenario_runs.c
    customers_ = sorted({s.customer_id for s in starts})
    ids = sorted({s.scenario_id for s in starts})
    previous: dict[tuple[int, int], list[Any]] = {}
    for row in conn.execute(
        sa.select(r.scenario_id, r.customer_id, r.entity_key, r.status, r.started_at).where(
            r.customer_id.in_(customers_), r.scenario_id.in_(ids)
        )
    ):
        previous.setdefault((row.scenario_id, row.customer_id), []).append(row)
    made: list[Run] = []
    taken: set[tuple[int, int, str]] = set()
    for s in starts:
        key = (s.scenario_id, s.customer_id, s.entity_key)
        if key in taken:
            continue
        before = previous.get((s.scenario_id, s.customer_id), [])
        entry = s.scenario.definition.entry
        if any(p.status in LIVE and p.entity_key == s.entity_key for p in before):
            continue  # one live run per entity
        if entry.mode == "once" and before:
            continue
        if entry.mode == "once_per" and entry.days is not None:
            since = now - timedelta(days=entry.days)
            if any(p.started_at >= since for p in before):
                continue
        taken.add(key)
        row = conn.execute(
            scenario_runs.insert()
            .values(
                scenario_id=s.scenario_id,
                version=s.version,
                customer_id=s.customer_id,
                entity_key=s.entity_key,
                status="active",
                step=s.scenario.first,
                wake_at=now,
                context={"trigger": s.trigger},
                started_at=now,
                updated_at=now,
            )
            .returning(*scenario_runs.c)
        ).one()
        run = Run.of(row)
        run.note(s.scenario.first, "entered")
        made.append(run)
    return made


def end(run: Run, status: str, reason: str) -> None:
    run.status = status
    run.end_reason = reason
    run.wake_at = None
    run.waiting_event = None
    run.note(run.step or "-", status, reason)


def save(conn: sa.Connection, runs: list[Run], now: datetime) -> None:
    """Write back each run's state and its step log."""
    logs: list[dict[str, Any]] = []
    for run in runs:
        final = run.status not in LIVE
        conn.execute(
            scenario_runs.update()
            .where(scenario_runs.c.id == run.id)
            .values(
                status=run.status,
                step=None if final else run.step,
                wake_at=run.wake_at,
                waiting_event=run.waiting_event,
                context=run.context,
                updated_at=now,
                ended_at=now if final else None,
                end_reason=run.end_reason,
                claimed_by=None,
                claimed_until=None,
            )
        )
        logs.extend(
            {
                "run_id": run.id,
                "scenario_id": run.scenario_id,
                "version": run.version,
                "customer_id": run.customer_id,
                "step": step,
                "outcome": outcome[:100],
                "reason": None if reason is None else reason[:300],
                "at": now,
            }
            for step, outcome, reason in run.log
        )
        run.log.clear()
    if logs:
        conn.execute(scenario_step_log.insert(), logs)


def claim_due(conn: sa.Connection, now: datetime, limit: int) -> list[Run]:
    """Runs whose wake-up time has come, of scenarios not paused, locked for this
    transaction (PostgreSQL skips rows another worker holds; SQLite has one writer)."""
    r = scenario_runs.c
    rows = conn.execute(
        sa.select(scenario_runs)
        .join(scenarios, scenarios.c.id == r.scenario_id)
        .where(r.status.in_(LIVE), r.wake_at <= now, scenarios.c.status == "active")
        .order_by(r.wake_at, r.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=scenario_runs)
    )
    return [Run.of(row) for row in rows]


def live_runs(
    conn: sa.Connection, customer_ids: list[int], scenario_ids: list[int] | None = None
) -> list[Run]:
    r = scenario_runs.c
    query = sa.select(scenario_runs).where(r.customer_id.in_(customer_ids), r.status.in_(LIVE))
    if scenario_ids is not None:
        query = query.where(r.scenario_id.in_(scenario_ids))
    return [Run.of(row) for row in conn.execute(query.order_by(r.id))]


def recently_done(
    conn: sa.Connection, customer_ids: list[int], scenario_ids: list[int], since: datetime
) -> list[Run]:
    """Finished runs still inside a goal window: a purchase after the last message still
    counts as the scenario's conversion."""
    r = scenario_runs.c
    rows = conn.execute(
        sa.select(scenario_runs).where(
            r.customer_id.in_(customer_ids),
            r.scenario_id.in_(scenario_ids),
            r.status == "done",
            r.started_at >= since,
        )
    )
    return [Run.of(row) for row in rows]
