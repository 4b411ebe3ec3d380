"""Executing steps: a run moves through instant steps until it waits or ends.

Each step kind is a small function. Sends are made in groups by :mod:`sending` (the
policy, the composing, the outbox); sends reached in the same round go in the order of
their scenarios' ``priority`` (higher first, then first come), so when a customer's
frequency cap has one slot left, the more important message takes it. Actions that need
parts other issues provide (loyalty points, coupons) go through the context's hooks
(:mod:`step_context`); without them the step is logged as skipped, with the reason, and
the run goes on.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from rapport.customers.edit import patch_customer
from rapport.loyalty.coupons.errors import CouponError
from rapport.messaging.outbox import CLICKED, DELIVERED, OPENED, Event, QueuedMessage, enqueue
from rapport.scenarios.model import Scenario, Step
from rapport.scenarios.runs import Run, end
from rapport.scenarios.sending import PendingSend, message_key, reached, send_groups, send_many
from rapport.scenarios.step_context import StepContext
from rapport.scenarios.store import resolve_segment
from rapport.segments.evaluator import evaluate
from rapport.store.tables import customers, events, tasks

__all__ = ["StepContext", "advance", "advance_many"]

MAX_STEPS_PER_TICK = 100
OUTCOME_EVENTS = {"delivered": DELIVERED, "opened": OPENED, "clicked": CLICKED}


def advance(
    conn: sa.Connection, ctx: StepContext, scenario: Scenario, run: Run, now: datetime
) -> list[Event]:
    """Run instant steps from ``run.step`` until the run waits or ends."""
    return advance_many(conn, ctx, [(scenario, run)], now)


def advance_many(
    conn: sa.Connection, ctx: StepContext, runs: list[tuple[Scenario, Run]], now: datetime
) -> list[Event]:
    """:func:`advance` for many runs (a worker's claim), in rounds of one step per run.

    Each run executes its steps in its own order exactly as alone; but the sends that
    runs reach in the same round at the same step are made together, with one policy
    decision, one template lookup, set-based reads of the customers' cards and one
    outbox INSERT for the group instead of a dozen queries per message.
    """
    events: list[Event] = []
    moving = runs
    for _ in range(MAX_STEPS_PER_TICK):
        if not moving:
            return events
        going: list[tuple[Scenario, Run]] = []
        sends: dict[tuple[int, int, str, str | None], list[PendingSend]] = {}
        for scenario, run in moving:
            if run.status != "active":
                continue
            if run.step is None or run.step not in scenario.steps:
                end(run, "done", "end of scenario")
                continue
            step = scenario.steps[run.step]
            visits = run.context.setdefault("visits", {})
            visits[step.id] = visits.get(step.id, 0) + 1
            if step.send is not None:
                item = reached(scenario, run, step)
                group = (run.scenario_id, run.version, step.id, item.variant)
                sends.setdefault(group, []).append(item)
                run.step = scenario.following(step.id)
                going.append((scenario, run))
                continue
            target, stop = _execute(conn, ctx, scenario, run, step, now, events)
            run.step = target
            if not stop:  # a wait stops (a trailing one still waits; it ends when it wakes)
                going.append((scenario, run))
        # Higher priority first when frequency caps collide; sorted() is stable, so equal
        # priorities keep the order the runs came in (first come, first served).
        if sends:
            groups = sorted(sends.values(), key=lambda group: -group[0].rank)
            events.extend(send_groups(conn, ctx, groups, now))
        moving = going
    for _, run in moving:
        if run.status == "active":
            end(run, "failed", f"more than {MAX_STEPS_PER_TICK} steps without a wait")
    return events


def _execute(
    conn: sa.Connection,
    ctx: StepContext,
    scenario: Scenario,
    run: Run,
    step: Step,
    now: datetime,
    events: list[Event],
) -> tuple[str | None, bool]:
    """(the next step, whether the run stops here for now)."""
    after = scenario.following(step.id)
    if step.exit:
        end(run, "done", "exit step")
        return None, True
    if step.send is not None:
        events.extend(send_many(conn, ctx, [reached(scenario, run, step)], now))
        return after, False
    if step.wait is not None:
        return _wait(conn, scenario, run, step, now)
    if step.branch is not None:
        branch = step.branch
        if step.id in scenario.rules:
            taken = bool(evaluate(conn, scenario.rules[step.id], [run.customer_id], now))
        else:
            taken = _outcome(conn, run, branch.step or "", branch.outcome or "")
        run.note(step.id, "then" if taken else "else")
        return ((branch.then if taken else branch.else_) or after), False
    if step.split is not None:
        path = _split(scenario, run, step)
        if path is None:
            end(run, "control", "control group")
            return None, True
        run.note(step.id, path.name)
        run.context.setdefault("paths", {})[step.id] = path.name
        return (path.next or after), False
    if step.action is not None:
        events.extend(_act(conn, ctx, run, step, now))
        return after, False
    raise AssertionError(f"step {step.id} has no kind")


def _wait(
    conn: sa.Connection, scenario: Scenario, run: Run, step: Step, now: datetime
) -> tuple[str | None, bool]:
    wait = step.wait
    assert wait is not None
    after = scenario.following(step.id)
    if wait.duration is not None:
        run.wake_at = now + wait.duration.delta
        run.note(step.id, "waiting")
        return after, True
    if wait.until_window is not None:
        at = _next_in_window(conn, run.customer_id, wait.until_window, now)
        if at <= now:
            return after, False
        run.wake_at = at
        run.note(step.id, "waiting", f"until {at.isoformat()}")
        return after, True
    assert wait.event is not None and wait.timeout is not None
    run.status = "waiting"
    run.waiting_event = wait.event
    run.wake_at = now + wait.timeout.delta
    run.note(step.id, "waiting", wait.event)
    return step.id, True


def _next_in_window(conn: sa.Connection, customer_id: int, window: str, now: datetime) -> datetime:
    """Now if the customer's local time is inside ``HH:MM-HH:MM``, else the window's next
    start, in UTC. A window that wraps midnight (21:00-09:00) is allowed."""
    tz_name = conn.execute(_TIMEZONE, {"id": customer_id}).scalar_one_or_none()
    try:
        zone = ZoneInfo(tz_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    start_s, end_s = window.split("-")
    start = time(int(start_s[:2]), int(start_s[3:]))
    stop = time(int(end_s[:2]), int(end_s[3:]))
    local = now.astimezone(zone)
    t = local.time()
    inside = start <= t < stop if start < stop else (t >= start or t < stop)
    if inside:
        return now
    day = local.date() if t < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, zone).astimezone(now.tzinfo)


_TIMEZONE = sa.select(customers.c.timezone).where(customers.c.id == sa.bindparam("id"))


def _outcome(conn: sa.Connection, run: Run, step_id: str, outcome: str) -> bool:
    """Did the message an earlier send step queued reach ``outcome`` (opened, …)?"""
    key = run.context.get("sent", {}).get(step_id)
    if key is None:
        return False
    name = OUTCOME_EVENTS[outcome]
    rows = conn.execute(
        _OUTCOMES, {"customer": run.customer_id, "name": name, "since": run.started_at}
    ).scalars()
    return any((props or {}).get("message_id") == key for props in rows)


_OUTCOMES = sa.select(events.c.properties).where(
    events.c.customer_id == sa.bindparam("customer"),
    events.c.name == sa.bindparam("name"),
    events.c.occurred_at >= sa.bindparam("since", type_=events.c.occurred_at.type),
)


def _bucket(*parts: object) -> float:
    """A stable number in [0, 100) for the parts: the same customer always splits alike."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _split(scenario: Scenario, run: Run, step: Step) -> Any:
    split = step.split
    assert split is not None
    point = _bucket("split", run.scenario_id, step.id, run.customer_id)
    if point < split.control:
        return None
    total = sum(p.weight for p in split.paths)
    at = (point - split.control) / (100 - split.control) * total
    for path in split.paths:
        if at < path.weight:
            return path
        at -= path.weight
    return split.paths[-1]


def _act(conn: sa.Connection, ctx: StepContext, run: Run, step: Step, now: datetime) -> list[Event]:
    action = step.action
    assert action is not None
    kind = action.kind
    key = message_key(run, step.id)
    cid = run.customer_id
    if kind == "set_attribute":
        assert action.set_attribute is not None
        patch_customer(conn, cid, dict(action.set_attribute), now)
        run.note(step.id, "done", kind)
        fields = sorted(action.set_attribute)
        return [
            (cid, "Profile Updated", {"fields": fields, "source": f"scenario:{run.scenario_id}"})
        ]
    if kind in ("add_points", "issue_coupon"):
        if ctx.hooks is None:
            run.note(step.id, "skipped", "no loyalty programme")
            return []
        if kind == "add_points":
            assert action.add_points is not None
            found = ctx.hooks.add_points(conn, cid, action.add_points, key, now)
        else:
            assert action.issue_coupon is not None
            try:
                code, found = ctx.hooks.issue_coupon(conn, cid, action.issue_coupon, key, now)
            except CouponError as exc:  # a paused or ended series: the run goes on without
                run.note(step.id, "skipped", exc.message)
                return []
            run.context.setdefault("coupons", {})[step.id] = code
        run.note(step.id, "done", kind)
        return found
    if kind == "webhook":
        assert action.webhook is not None
        body = {"scenario_id": run.scenario_id, "run_id": run.id, "customer_id": cid}
        message = QueuedMessage(
            idempotency_key=key,
            channel="webhook",
            recipient=action.webhook,
            body_text="",
            customer_id=cid,
            scenario_id=run.scenario_id,
            step=step.id,
            data={"payload": body},
        )
        run.note(step.id, "done", kind)
        return enqueue(conn, [message], now)
    if kind in ("add_to_list", "remove_from_list"):
        from rapport.segments.lists import add_members, get_list, remove_members

        ref = action.add_to_list if kind == "add_to_list" else action.remove_from_list
        list_id = resolve_segment(conn, ref) if ref is not None else None
        if list_id is None or ctx.recorder is None:
            run.note(step.id, "skipped", f"list {ref!r} not available")
            return []
        lst = get_list(conn, list_id)
        change = add_members if kind == "add_to_list" else remove_members
        change(conn, ctx.recorder, lst, [cid], now)  # type: ignore[arg-type]
        run.note(step.id, "done", kind)
        return []
    if kind == "task":
        conn.execute(
            tasks.insert().values(
                customer_id=cid,
                scenario_id=run.scenario_id,
                run_id=run.id,
                title=action.task,
                status="open",
                created_at=now,
            )
        )
        run.note(step.id, "done", kind)
        return [(cid, "Task Created", {"title": action.task, "scenario_id": str(run.scenario_id)})]
    raise AssertionError(kind)
