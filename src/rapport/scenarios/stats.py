"""A scenario's figures, per step and as a whole, counted from what the engine recorded.

Three sources, each read with a handful of grouped queries however many runs there are:

* ``scenario_step_log`` — every step a run passed (sent, skipped with the reason,
  deferred, waiting, then/else, the split path, control, exited, done, failed) and the
  goal line (step ``goal``, outcome ``converted``). "Entered a step" is a run with a
  line at that step; "at a step now" is a live run whose latest line is there, because a
  run waiting out a duration already points at the step after its wait.
* ``scenario_runs`` — how runs ended (done, exited, control, failed) and which are live.
* ``outbox`` and ``events`` — what became of each step's messages (sent, bounced, …) and
  what customers did with them: ``Message Delivered`` / ``Opened`` / ``Clicked`` carry
  ``scenario_id`` and ``step``, and each counts distinct messages (an e-mail opened five
  times is one open).

``since`` / ``until`` pick runs by when they started — a cohort — so every figure, the
conversion included, is about the same runs and converted ≤ entered always holds. The
conversion of each split path and of the control group is kept apart so analytics can
judge the A/B test later; this module only counts.

It also holds the other read-outs the API and CLI show beside the figures: live runs per
scenario and per version, and a customer's runs with their step log.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.messaging.outbox import CLICKED, DELIVERED, OPENED, UNSUBSCRIBED
from rapport.scenarios.index import entity_of, matches
from rapport.scenarios.model import Scenario
from rapport.scenarios.runs import LIVE
from rapport.store.tables import (
    customers,
    events,
    outbox,
    scenario_runs,
    scenario_step_log,
    scenario_versions,
    scenarios,
)

GOAL_STEP, CONVERTED = "goal", "converted"
END_STEP = "-"  # where the engine notes a run that ended past its last step
# A line that does not mean the run reached its step: an exit event noted while the run
# waited out a duration (the run already points at the step after the wait).
NOT_REACHED = ("exited",)
ENDINGS = ("done", "exited", "control", "failed")

_ENGAGEMENT = {
    DELIVERED: "delivered",
    OPENED: "opened",
    CLICKED: "clicked",
    UNSUBSCRIBED: "unsubscribed",
}
# Outbox statuses as the figures name them (the same words as a campaign report).
_MESSAGE = {
    "queued": "waiting",
    "failed": "waiting",
    "sending": "waiting",
    "sent": "sent",
    "rejected": "bounced",
    "dead": "failed",
    "skipped": "skipped",
}


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class _Scope:
    """The runs a report is about: all of a scenario's, or those started in a window."""

    def __init__(
        self, conn: sa.Connection, scenario_id: int, since: datetime | None, until: datetime | None
    ) -> None:
        self.conn = conn
        self.id = scenario_id
        self.windowed = since is not None or until is not None
        r = scenario_runs.c
        query = sa.select(r.id).where(r.scenario_id == scenario_id)
        if since is not None:
            query = query.where(r.started_at >= since)
        if until is not None:
            query = query.where(r.started_at < until)
        self.run_ids = query
        self.since = since

    def runs(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Restrict a query over ``scenario_runs`` to the scope."""
        return query.where(scenario_runs.c.id.in_(self.run_ids)) if self.windowed else query

    def log(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Restrict a query over ``scenario_step_log`` to the scope."""
        query = query.where(scenario_step_log.c.scenario_id == self.id)
        if self.windowed:
            query = query.where(scenario_step_log.c.run_id.in_(self.run_ids))
        return query

    def keyed(self, query: sa.Select[Any], key: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """Restrict a query over messages, whose keys (``run:{id}:step:…``) name the run."""
        if not self.windowed:
            return query
        as_text = sa.select(sa.cast(scenario_runs.c.id, sa.String)).where(
            scenario_runs.c.id.in_(self.run_ids)
        )
        return query.where(key.like("run:%"), _run_of_key(self.conn, key).in_(as_text))


def _run_of_key(conn: sa.Connection, key: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The run id, as text, inside a scenario message key ``run:{id}:step:{step}[…]``."""
    if conn.dialect.name == "postgresql":
        return sa.func.split_part(key, ":", 2)
    rest = sa.func.substr(key, 5)
    return sa.func.substr(rest, 1, sa.func.instr(rest, ":") - 1)


def _goal_line() -> sa.ColumnElement[bool]:
    log = scenario_step_log.c
    return sa.and_(log.step == GOAL_STEP, log.outcome == CONVERTED)


def _converted_runs(scope: _Scope) -> sa.Select[Any]:
    log = scenario_step_log.c
    return scope.log(sa.select(log.run_id).where(_goal_line())).distinct()


def scenario_stats(
    conn: sa.Connection,
    scenario_id: int,
    scenario: Scenario,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Per-scenario and per-step figures; ``scenario`` gives the steps' order and kinds
    (the current version; steps only older versions had are listed after, ``removed``)."""
    scope = _Scope(conn, scenario_id, since, until)
    r, log = scenario_runs.c, scenario_step_log.c

    statuses = {
        str(status): int(n)
        for status, n in conn.execute(
            scope.runs(
                sa.select(r.status, sa.func.count())
                .where(r.scenario_id == scenario_id)
                .group_by(r.status)
            )
        )
    }
    converted = int(
        conn.execute(
            sa.select(sa.func.count()).select_from(_converted_runs(scope).subquery())
        ).scalar_one()
    )
    entered = sum(statuses.values())
    totals = {
        "entered": entered,
        "live": sum(statuses.get(s, 0) for s in LIVE),
        **{s: statuses.get(s, 0) for s in ENDINGS},
        "converted": converted,
    }

    steps: dict[str, dict[str, Any]] = {}

    def step(sid: str) -> dict[str, Any]:
        found = steps.get(sid)
        if found is None:
            found = steps[sid] = _empty_step(sid, scenario)
        return found

    for sid in scenario.order:
        step(sid)
    pseudo = sa.or_(_goal_line(), log.step == END_STEP)
    for sid, outcome, lines in conn.execute(
        scope.log(
            sa.select(log.step, log.outcome, sa.func.count())
            .where(sa.not_(pseudo))
            .group_by(log.step, log.outcome)
        )
    ):
        _count(step(str(sid)), str(outcome), int(lines))
    for sid, reason, lines in conn.execute(
        scope.log(
            sa.select(log.step, log.reason, sa.func.count())
            .where(log.outcome == "skipped", sa.not_(pseudo))
            .group_by(log.step, log.reason)
        )
    ):
        reasons = step(str(sid))["skipped_by_reason"]
        reasons[str(reason or "unknown")] = reasons.get(str(reason or "unknown"), 0) + int(lines)
    for sid, runs in conn.execute(
        scope.log(
            sa.select(log.step, sa.func.count(sa.distinct(log.run_id)))
            .where(log.outcome.not_in(NOT_REACHED), sa.not_(pseudo))
            .group_by(log.step)
        )
    ):
        step(str(sid))["entered"] = int(runs)
    for sid, runs in _where_now(conn, scope):
        step(str(sid))["waiting_now"] = int(runs)
    _messages(conn, scope, step, scenario)

    return {
        "scenario_id": scenario_id,
        "name": scenario.name,
        "since": since,
        "until": until,
        "runs": totals,
        "conversion": _ratio(converted, entered),
        "steps": [*(steps[s] for s in scenario.order), *_removed(steps, scenario)],
        "groups": _groups(conn, scope, scenario),
    }


def _empty_step(sid: str, scenario: Scenario) -> dict[str, Any]:
    known = scenario.steps.get(sid)
    found: dict[str, Any] = {
        "id": sid,
        "kind": known.kind if known else None,
        "entered": 0,
        "waiting_now": 0,
        "sent": 0,
        "skipped": 0,
        "skipped_by_reason": {},
        "deferred": 0,
        "exited": 0,
        "failed": 0,
        "outcomes": {},
    }
    if known is None:
        found["removed"] = True
    else:
        labels = [label for label, _ in scenario.edges(sid) if label != "next"]
        if known.split is not None and known.split.control:
            labels.append("control")
        if labels:
            found["paths"] = dict.fromkeys(labels, 0)
        if known.send is not None:
            found["messages"] = dict.fromkeys(_MESSAGE.values(), 0)
            found.update(dict.fromkeys(_ENGAGEMENT.values(), 0))
    return found


def _count(step: dict[str, Any], outcome: str, lines: int) -> None:
    step["outcomes"][outcome] = step["outcomes"].get(outcome, 0) + lines
    if outcome in ("sent", "skipped", "deferred", "exited", "failed"):
        step[outcome] += lines
    if outcome in step.get("paths", {}):
        step["paths"][outcome] += lines


def _removed(steps: dict[str, dict[str, Any]], scenario: Scenario) -> list[dict[str, Any]]:
    return [s for sid, s in sorted(steps.items()) if sid not in scenario.steps]


def _where_now(conn: sa.Connection, scope: _Scope) -> Iterable[Any]:
    """Live runs per step, each where its latest log line is (the wait it sits in)."""
    r, log = scenario_runs.c, scenario_step_log.c
    live = scope.runs(sa.select(r.id).where(r.scenario_id == scope.id, r.status.in_(LIVE)))
    latest = (
        sa.select(log.run_id, sa.func.max(log.id).label("last"))
        .where(
            log.run_id.in_(live),
            log.step != END_STEP,
            sa.not_(_goal_line()),
        )
        .group_by(log.run_id)
        .subquery()
    )
    return conn.execute(
        sa.select(log.step, sa.func.count())
        .join(latest, log.id == latest.c.last)
        .group_by(log.step)
    )


def _messages(conn: sa.Connection, scope: _Scope, step: Any, scenario: Scenario) -> None:
    """Each send step's messages by outbox status, and distinct messages delivered,
    opened, clicked and unsubscribed from, with the rates over messages sent."""
    o, e = outbox.c, events.c
    sid = str(scope.id)
    rows = conn.execute(
        scope.keyed(
            sa.select(o.step, o.status, sa.func.count())
            .where(o.scenario_id == sid, o.step.is_not(None))
            .group_by(o.step, o.status),
            o.idempotency_key,
        )
    )
    for name, status, n in rows:
        found = step(str(name))
        label = _MESSAGE.get(str(status), str(status))
        messages = found.setdefault("messages", dict.fromkeys(_MESSAGE.values(), 0))
        messages[label] = messages.get(label, 0) + int(n)
    message_id = e.properties["message_id"].as_string()
    step_of = e.properties["step"].as_string()
    query = sa.select(step_of, e.name, sa.func.count(sa.distinct(message_id))).where(
        e.name.in_(list(_ENGAGEMENT)), e.properties["scenario_id"].as_string() == sid
    )
    if scope.since is not None:  # no message of the cohort was opened before it began
        query = query.where(e.occurred_at >= scope.since)
    for name, event, n in conn.execute(scope.keyed(query, message_id).group_by(step_of, e.name)):
        if name is None:
            continue
        found = step(str(name))
        found[_ENGAGEMENT[str(event)]] = found.get(_ENGAGEMENT[str(event)], 0) + int(n)
    for found in (step(s) for s in scenario.order):
        if "messages" in found:
            sent = found["messages"]["sent"]
            found["open_rate"] = _ratio(found["opened"], sent)
            found["click_rate"] = _ratio(found["clicked"], sent)
            found["click_to_open_rate"] = _ratio(found["clicked"], found["opened"])


def _groups(conn: sa.Connection, scope: _Scope, scenario: Scenario) -> dict[str, Any]:
    """For each split step, runs and conversions per path and in the control group.

    A control run ends at the split, so the engine never sees its goal; to compare like
    with like, every group is measured the same way here, from the events: a run converted
    if the goal event (its ``where``, its entity) came within ``within_days`` of the run's
    start, whatever became of the run after the split.
    """
    splits = {sid: s.split for sid, s in scenario.steps.items() if s.split is not None}
    if not splits:
        return {}
    goal = scenario.definition.goal
    log, r, e = scenario_step_log.c, scenario_runs.c, events.c
    groups: dict[str, dict[str, dict[str, Any]]] = {
        sid: {name: {"entered": 0} for name in [*(p.name for p in split.paths), "control"]}
        for sid, split in splits.items()
    }
    members = (
        scope.log(
            sa.select(log.step, log.outcome, log.run_id).where(
                log.step.in_(list(splits)), log.outcome.not_in(NOT_REACHED)
            )
        )
        .distinct()
        .subquery()
    )
    m = members.c
    for sid, outcome, runs in conn.execute(
        sa.select(m.step, m.outcome, sa.func.count()).group_by(m.step, m.outcome)
    ):  # a path only an older version had is listed too
        groups[str(sid)].setdefault(str(outcome), {"entered": 0})["entered"] += int(runs)
    won: dict[tuple[str, str], set[int]] = {}
    if goal is not None:
        candidates = conn.execute(
            sa.select(m.step, m.outcome, m.run_id, r.entity_key, e.properties)
            .join(scenario_runs, r.id == m.run_id)
            .join(
                events,
                sa.and_(
                    e.customer_id == r.customer_id,
                    e.name == goal.event,
                    e.occurred_at >= r.started_at,
                    _within_days(conn, e.occurred_at, r.started_at, goal.within_days),
                ),
            )
        )
        for sid, outcome, run_id, entity, props in candidates:
            props = props or {}
            if not matches(goal.where, props):
                continue
            if goal.same_entity and entity_of(scenario, props) != entity:
                continue
            won.setdefault((str(sid), str(outcome)), set()).add(int(run_id))
    for sid, by_name in groups.items():
        for name, group in by_name.items():
            if goal is None:
                group.update(converted=None, conversion=None)
                continue
            group["converted"] = len(won.get((sid, name), ()))
            group["conversion"] = _ratio(group["converted"], group["entered"])
    return groups


def _within_days(
    conn: sa.Connection, later: Any, earlier: Any, days: int
) -> sa.ColumnElement[bool]:
    """``later - earlier <= days`` on either dialect (SQLite keeps timestamps as text)."""
    if conn.dialect.name == "postgresql":
        return later - earlier <= timedelta(days=days)
    return sa.func.julianday(later) - sa.func.julianday(earlier) <= days


def graph(stats: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The journey map: a node per step with its figures, an edge per way out of it.

    An edge to ``None`` ends the run. Edges that name a choice (then/else, a split path,
    event/timeout, the control group) carry how many passes took them; plain "next" edges
    carry none, since the figure would be the node's own.
    """
    figures = {s["id"]: s for s in stats["steps"]}
    nodes = []
    edges = []
    for sid in scenario.order:
        definition = scenario.steps[sid]
        step_figures = figures.get(sid, {})
        nodes.append(
            {
                "id": sid,
                "kind": definition.kind,
                "definition": definition.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude={"id"}
                ),
                "stats": step_figures,
            }
        )
        paths = step_figures.get("paths", {})
        for label, target in scenario.edges(sid):
            edges.append(
                {
                    "from": sid,
                    "to": target,
                    "label": label,
                    "count": None if label == "next" else paths.get(label, 0),
                }
            )
        if definition.split is not None and definition.split.control:
            edges.append(
                {"from": sid, "to": None, "label": "control", "count": paths.get("control", 0)}
            )
    return {
        "scenario_id": stats["scenario_id"],
        "name": scenario.name,
        "trigger": scenario.definition.trigger,
        "start": scenario.first,
        "runs": stats["runs"],
        "conversion": stats["conversion"],
        "nodes": nodes,
        "edges": edges,
    }


# -- read-outs shown beside the figures --------------------------------------------------


def live_runs(conn: sa.Connection) -> dict[int, int]:
    """Live runs per scenario, for the list of scenarios: read through the index on the
    run status, so it costs the live runs, not every run ever."""
    r = scenario_runs.c
    return {
        int(sid): int(n)
        for sid, n in conn.execute(
            sa.select(r.scenario_id, sa.func.count())
            .where(r.status.in_(LIVE))
            .group_by(r.scenario_id)
        )
    }


def versions(conn: sa.Connection, scenario_id: int) -> list[dict[str, Any]]:
    """Every saved version with its runs, live and in all: which versions still matter."""
    v, r = scenario_versions.c, scenario_runs.c
    counts = {
        int(version): (int(n_live or 0), int(total))
        for version, n_live, total in conn.execute(
            sa.select(
                r.version,
                sa.func.sum(sa.case((r.status.in_(LIVE), 1), else_=0)),
                sa.func.count(),
            )
            .where(r.scenario_id == scenario_id)
            .group_by(r.version)
        )
    }
    return [
        {
            "version": int(version),
            "created_at": created_at,
            "live_runs": counts.get(int(version), (0, 0))[0],
            "runs": counts.get(int(version), (0, 0))[1],
        }
        for version, created_at in conn.execute(
            sa.select(v.version, v.created_at)
            .where(v.scenario_id == scenario_id)
            .order_by(v.version)
        )
    ]


def customer_runs(conn: sa.Connection, customer_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """A customer's runs, newest first, each with its step log in order. Runs stay with
    the profile they started on, so those of profiles merged into this one are included."""
    r, log = scenario_runs.c, scenario_step_log.c
    merged = sa.select(customers.c.id).where(customers.c.merged_into == customer_id)
    customer_ids = [customer_id, *conn.execute(merged).scalars()]
    rows = conn.execute(
        sa.select(scenario_runs, scenarios.c.name.label("scenario"))
        .join(scenarios, scenarios.c.id == r.scenario_id, isouter=True)
        .where(r.customer_id.in_(customer_ids))
        .order_by(r.started_at.desc(), r.id.desc())
        .limit(limit)
    ).all()
    lines: dict[int, list[dict[str, Any]]] = {int(row.id): [] for row in rows}
    if lines:
        for line in conn.execute(
            sa.select(log.run_id, log.step, log.outcome, log.reason, log.at)
            .where(log.run_id.in_(list(lines)))
            .order_by(log.id)
        ):
            lines[int(line.run_id)].append(
                {"step": line.step, "outcome": line.outcome, "reason": line.reason, "at": line.at}
            )
    return [
        {
            "id": int(row.id),
            "scenario_id": int(row.scenario_id),
            "scenario": row.scenario,
            "version": int(row.version),
            "customer_id": int(row.customer_id),
            "status": row.status,
            "step": row.step,
            "wake_at": row.wake_at,
            "waiting_event": row.waiting_event,
            "entity_key": row.entity_key,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "end_reason": row.end_reason,
            "converted": bool((row.context or {}).get("converted_at")),
            "log": lines[int(row.id)],
        }
        for row in rows
    ]


def summaries(conn: sa.Connection, since: datetime, until: datetime) -> dict[int, dict[str, Any]]:
    """Every scenario's runs started in [since, until): entered, messages sent, converted
    and the conversion rate, counted as :func:`scenario_stats` counts them, in three grouped
    statements for all scenarios (a list page would otherwise build a full report each)."""
    r, log = scenario_runs.c, scenario_step_log.c
    window = (r.started_at >= since, r.started_at < until)
    in_window = sa.select(r.id).where(*window)
    pseudo = sa.or_(_goal_line(), log.step == END_STEP)
    counts = {
        "entered": sa.select(r.scenario_id, sa.func.count()).where(*window).group_by(r.scenario_id),
        "sent": sa.select(log.scenario_id, sa.func.count())
        .where(log.outcome == "sent", sa.not_(pseudo), log.run_id.in_(in_window))
        .group_by(log.scenario_id),
        "converted": sa.select(log.scenario_id, sa.func.count(sa.distinct(log.run_id)))
        .where(_goal_line(), log.run_id.in_(in_window))
        .group_by(log.scenario_id),
    }
    found: dict[int, dict[str, Any]] = {}
    for name, query in counts.items():
        for scenario_id, n in conn.execute(query):
            row = found.setdefault(int(scenario_id), {"entered": 0, "sent": 0, "converted": 0})
            row[name] = int(n)
    for row in found.values():
        row["conversion"] = _ratio(row["converted"], row["entered"])
    return found
