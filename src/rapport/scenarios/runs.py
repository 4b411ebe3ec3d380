"""Run rows: start (with the entry rules), end, log, and claim the due ones.

A run is a row; its current step and wake-up time are columns. Everything that moves a
run happens inside a transaction the caller holds, together with the outbox rows its
sends produce, so a crash before commit leaves no trace and a retry redoes the same work
under the same idempotency keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from rapport.scenarios.model import Scenario
from rapport.store.tables import scenario_runs, scenario_step_log, scenarios

LIVE = ("active", "waiting")
ENTERED = "Scenario Entered"
EXITED = "Scenario Exited"
CONVERTED = "Scenario Converted"
_IN_BATCH = 5000  # ids per IN list, far below both stores' limits on bound parameters


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
    """Insert the runs the entry rules allow; returns them, due now at their first step.

    One query reads the earlier runs of these customers and one INSERT writes the new
    runs, whatever the number of starts (a schedule trigger starts a whole segment)."""
    if not starts:
        return []
    customers_ = sorted({s.customer_id for s in starts})
    ids = sorted({s.scenario_id for s in starts})
    previous: dict[tuple[int, int], list[Any]] = {}
    for part in range(0, len(customers_), _IN_BATCH):
        chunk = customers_[part : part + _IN_BATCH]
        for row in conn.execute(_EARLIER, {"customers": chunk, "scenarios": ids}):
            previous.setdefault((row.scenario_id, row.customer_id), []).append(row)
    allowed: list[Start] = []
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
        allowed.append(s)
    if not allowed:
        return []
    rows = conn.execute(
        _INSERT,
        [
            {
                "scenario_id": s.scenario_id,
                "version": s.version,
                "customer_id": s.customer_id,
                "entity_key": s.entity_key,
                "status": "active",
                "step": s.scenario.first,
                "wake_at": now,
                "context": {"trigger": s.trigger},
                "started_at": now,
                "updated_at": now,
            }
            for s in allowed
        ],
    ).all()
    made: list[Run] = []
    for s, row in zip(allowed, rows, strict=True):
        run = Run.of(row)
        run.note(s.scenario.first, "entered")
        made.append(run)
    return made


# What starting runs reads and writes, built once: every event batch that triggers a
# scenario starts runs, and building the statements cost more than running them.
_EARLIER = sa.select(
    scenario_runs.c.scenario_id,
    scenario_runs.c.customer_id,
    scenario_runs.c.entity_key,
    scenario_runs.c.status,
    scenario_runs.c.started_at,
).where(
    scenario_runs.c.customer_id.in_(sa.bindparam("customers", expanding=True)),
    scenario_runs.c.scenario_id.in_(sa.bindparam("scenarios", expanding=True)),
)
_INSERT = scenario_runs.insert().returning(*scenario_runs.c, sort_by_parameter_order=True)


def end(run: Run, status: str, reason: str) -> None:
    run.status = status
    run.end_reason = reason
    run.wake_at = None
    run.waiting_event = None
    run.note(run.step or "-", status, reason)


def save(conn: sa.Connection, runs: list[Run], now: datetime) -> None:
    """Write back each run's state and its step log, in two statements whatever the
    number of runs (one round trip each on PostgreSQL, an executemany on SQLite)."""
    if not runs:
        return
    params: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for run in runs:
        final = run.status not in LIVE
        params.append(
            {
                "id": run.id,
                "status": run.status,
                "step": None if final else run.step,
                "wake_at": run.wake_at,
                "waiting_event": run.waiting_event,
                "context": run.context,
                "ended_at": now if final else None,
                "end_reason": run.end_reason,
                "now": now,
            }
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
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_SAVE_POSTGRES, (_json(params),))
        if logs:
            conn.exec_driver_sql(_LOG_POSTGRES, (_json(logs),))
        return
    conn.execute(_SAVE, [{f"b_{k}": v for k, v in p.items()} for p in params])
    if logs:
        conn.execute(scenario_step_log.insert(), logs)


_SAVE = (
    scenario_runs.update()
    .where(scenario_runs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        step=sa.bindparam("b_step"),
        wake_at=sa.bindparam("b_wake_at"),
        waiting_event=sa.bindparam("b_waiting_event"),
        context=sa.bindparam("b_context"),
        updated_at=sa.bindparam("b_now"),
        ended_at=sa.bindparam("b_ended_at"),
        end_reason=sa.bindparam("b_end_reason"),
        claimed_by=None,
        claimed_until=None,
    )
)


# PostgreSQL: the batch's new values as one JSON document, unpacked by jsonb_to_recordset.
# Driver-side executemany costs tens of microseconds of Python per row and text arrays
# are escaped element by element; one orjson document is a single C call.
_SAVE_POSTGRES = (
    "UPDATE scenario_runs AS r SET status = v.status, step = v.step, wake_at = v.wake_at, "
    "waiting_event = v.waiting_event, context = v.context, updated_at = v.now, "
    "ended_at = v.ended_at, end_reason = v.end_reason, claimed_by = NULL, claimed_until = NULL "
    "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, status text, step text, "
    "wake_at timestamptz, waiting_event text, context jsonb, now timestamptz, "
    "ended_at timestamptz, end_reason text) WHERE r.id = v.id"
)
_LOG_POSTGRES = (
    "INSERT INTO scenario_step_log (run_id, scenario_id, version, customer_id, step, outcome, "
    "reason, at) SELECT run_id, scenario_id, version, customer_id, step, outcome, reason, at "
    "FROM jsonb_to_recordset(%s::jsonb) AS v(run_id bigint, scenario_id bigint, "
    "version integer, customer_id bigint, step text, outcome text, reason text, "
    "at timestamptz)"
)


def _json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC).decode()


def claim_due(conn: sa.Connection, now: datetime, limit: int) -> list[Run]:
    """Runs whose wake-up time has come, of scenarios not paused, locked for this
    transaction (PostgreSQL skips rows another worker holds; SQLite has one writer).

    Active runs and waiting runs whose wait timed out are claimed by two queries, each
    ``status = X ORDER BY wake_at``: that walks the ``(status, wake_at)`` index in order
    and stops after ``limit`` rows. One query with ``status IN (...)`` cannot be read in
    ``wake_at`` order from that index, so PostgreSQL sorted every due run for each claim
    (0.8 s per claim with a million due). Timeouts get at least a tenth of a batch, so
    neither kind starves the other.
    """
    runs = _claim(conn, "active", now, limit)
    runs += _claim(conn, "waiting", now, max(limit - len(runs), limit // 10, 1))
    return runs


def _claim(conn: sa.Connection, status: str, now: datetime, limit: int) -> list[Run]:
    rows = conn.execute(_CLAIM, {"status": status, "now": now, "limit": limit})
    return [Run.of(row) for row in rows]


# Built once: every tick of the worker claims.
_CLAIM = (
    sa.select(scenario_runs)
    .join(scenarios, scenarios.c.id == scenario_runs.c.scenario_id)
    .where(
        scenario_runs.c.status == sa.bindparam("status"),
        scenario_runs.c.wake_at <= sa.bindparam("now", type_=scenario_runs.c.wake_at.type),
        scenarios.c.status == "active",
    )
    .order_by(scenario_runs.c.wake_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .with_for_update(skip_locked=True, of=scenario_runs)
)


def _unindexed(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` as an expression no index holds, for queries that name customers.

    Without statistics SQLite takes ``status = 'done'`` (or ``IN`` the live ones) as the
    better index, ``ix_scenario_runs_due``, and reads every run with that status to
    pick the few of the customers named: a cost that grew with every run that ever
    finished. As ``status || ''`` the condition is checked on the rows that
    ``ix_scenario_runs_customer`` finds instead (PostgreSQL, with its statistics, makes
    the same choice either way)."""
    return column.op("||")(sa.literal_column("''"))


def live_runs(
    conn: sa.Connection, customer_ids: list[int], scenario_ids: list[int] | None = None
) -> list[Run]:
    if scenario_ids is None:
        rows = conn.execute(_LIVE, {"customers": customer_ids})
    else:
        rows = conn.execute(_LIVE_OF, {"customers": customer_ids, "scenarios": scenario_ids})
    return [Run.of(row) for row in rows]


_LIVE = (
    sa.select(scenario_runs)
    .where(
        scenario_runs.c.customer_id.in_(sa.bindparam("customers", expanding=True)),
        _unindexed(scenario_runs.c.status).in_(LIVE),
    )
    .order_by(scenario_runs.c.id)
)
_LIVE_OF = _LIVE.where(scenario_runs.c.scenario_id.in_(sa.bindparam("scenarios", expanding=True)))


def recently_done(
    conn: sa.Connection,
    customer_ids: list[int],
    scenario_ids: list[int],
    since: datetime,
    wanted: Callable[[int, int, int, datetime], bool] | None = None,
) -> list[Run]:
    """Finished runs still inside a goal window: a purchase after the last message still
    counts as the scenario's conversion.

    ``wanted(scenario_id, version, customer_id, started_at)``, when given, picks the runs
    worth loading from a first read of those columns alone: a customer with many
    finished runs otherwise had every run's context parsed for each event they sent."""
    r = scenario_runs.c
    where = (
        r.customer_id.in_(customer_ids),
        r.scenario_id.in_(scenario_ids),
        _unindexed(r.status) == "done",
        r.started_at >= since,
    )
    if wanted is None:
        query = sa.select(scenario_runs).where(*where).order_by(r.id)
        return [Run.of(row) for row in conn.execute(query)]
    keys = conn.execute(
        sa.select(r.id, r.scenario_id, r.version, r.customer_id, r.started_at).where(*where)
    ).all()
    ids = sorted(
        int(k.id)
        for k in keys
        if wanted(int(k.scenario_id), int(k.version), int(k.customer_id), k.started_at)
    )
    runs: list[Run] = []
    for part in range(0, len(ids), _IN_BATCH):
        query = sa.select(scenario_runs).where(r.id.in_(ids[part : part + _IN_BATCH]))
        runs += [Run.of(row) for row in conn.execute(query.order_by(r.id))]
    return runs
