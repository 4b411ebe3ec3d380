"""Executing steps: a run moves through instant steps until it waits or ends.

Each step kind is a small function. A send consults the communication policy, composes
the message and puts it in the outbox under the key ``run:{run}:step:{step}`` (with the
visit number when a loop returns to a step), in the caller's transaction. What the policy
refused is enqueued as a skipped row with its reason, so it is on the card's timeline like
every other message status. Sends reached in the same round go in the order of their
scenarios' ``priority`` (higher first, then first come), so when a customer's frequency
cap has one slot left, the more important message takes it. Actions that need parts other
issues provide (loyalty points, coupons) go through :class:`Hooks`; without them the step
is logged as skipped, with the reason, and the run goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from rapport.customers.edit import patch_customer
from rapport.loyalty.coupons.errors import CouponError
from rapport.loyalty.summary import loyalty_summaries
from rapport.messaging.compose import Origin, Recipient, Tracking, compose_many
from rapport.messaging.outbox import (
    CLICKED,
    DELIVERED,
    OPENED,
    Event,
    Fallback,
    QueuedMessage,
    enqueue,
)
from rapport.messaging.policy import DEFAULT_RANK, Decision, decide
from rapport.messaging.templates.store import StoredTemplate, get_template
from rapport.recommend.blocks import products_for
from rapport.scenarios.model import Scenario, Step
from rapport.scenarios.runs import Run, end
from rapport.scenarios.store import resolve_segment, resolve_template
from rapport.segments.evaluator import evaluate
from rapport.store.tables import customers, events, tasks

MAX_STEPS_PER_TICK = 100
OUTCOME_EVENTS = {"delivered": DELIVERED, "opened": OPENED, "clicked": CLICKED}


class Recorder(Protocol):
    """What list actions need from the pipeline (adding a member records an event)."""

    def record(
        self, conn: sa.Connection, customer_id: int, name: str, properties: dict[str, Any]
    ) -> None: ...


class Hooks(Protocol):
    """Loyalty actions; the loyalty programme implements them (loyalty/hooks.py). A
    coupon that cannot be issued raises ``CouponError``: the step is skipped with its
    reason and the run goes on."""

    def add_points(
        self, conn: sa.Connection, customer_id: int, points: int, key: str, now: datetime
    ) -> list[Event]: ...

    def issue_coupon(
        self, conn: sa.Connection, customer_id: int, series: str, key: str, now: datetime
    ) -> tuple[str, list[Event]]: ...


# (conn, customer ids, channel, now, transactional) → the policy's decision per customer
Decide = Callable[[sa.Connection, list[int], str, datetime, bool], dict[int, Decision]]


def policy_decide(
    conn: sa.Connection,
    ids: list[int],
    channel: str,
    now: datetime,
    transactional: bool,
    rank: int = DEFAULT_RANK,
) -> dict[int, Decision]:
    """The global communication policy (messaging/policy.py); ``rank`` is the scenario's
    priority, which decides who may take a frequency cap's reserved slots."""
    kind = "transactional" if transactional else "marketing"
    return decide(conn, ids, channel, now, kind, rank=rank)


@dataclass
class StepContext:
    """What steps need from outside the scenario: links, policy, list events, loyalty."""

    tracking: Callable[[], Tracking] = lambda: Tracking(None)
    decide: Decide = policy_decide
    recorder: Recorder | None = None
    hooks: Hooks | None = None
    _templates: dict[int, StoredTemplate] = field(default_factory=dict)

    def consult(
        self,
        conn: sa.Connection,
        ids: list[int],
        channel: str,
        now: datetime,
        transactional: bool,
        rank: int,
    ) -> dict[int, Decision]:
        """The policy for a sender of priority ``rank``. A ``decide`` put in place of the
        global policy (a test's, a dry run's) is asked without it."""
        if self.decide is policy_decide:
            return policy_decide(conn, ids, channel, now, transactional, rank)
        return self.decide(conn, ids, channel, now, transactional)

    def template(self, conn: sa.Connection, ref: int | str) -> StoredTemplate | None:
        tid = resolve_template(conn, ref)
        if tid is None:
            return None
        return get_template(conn, tid)


def advance(
    conn: sa.Connection, ctx: StepContext, scenario: Scenario, run: Run, now: datetime
) -> list[Event]:
    """Run instant steps from ``run.step`` until the run waits or ends."""
    return advance_many(conn, ctx, [(scenario, run)], now)


@dataclass
class _Send:
    """A send step one run reached in this round; sent with the others of its group."""

    run: Run
    step: Step
    key: str
    variant: str | None
    rank: int  # the scenario's priority


def _reached(scenario: Scenario, run: Run, step: Step) -> _Send:
    key = message_key(run, step.id)
    run.context.setdefault("sent", {})[step.id] = key
    variant = run.context.get("paths", {}).get("ab")
    return _Send(run, step, key, variant, scenario.definition.priority)


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
        sends: dict[tuple[int, int, str, str | None], list[_Send]] = {}
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
                item = _reached(scenario, run, step)
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
        for items in sorted(sends.values(), key=lambda group: -group[0].rank):
            for part in _one_per_customer(items):
                events.extend(_send_many(conn, ctx, part, now))
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
        events.extend(_send_many(conn, ctx, [_reached(scenario, run, step)], now))
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


def message_key(run: Run, step_id: str) -> str:
    visit = run.context.get("visits", {}).get(step_id, 1)
    key = f"run:{run.id}:step:{step_id}"
    return key if visit <= 1 else f"{key}:{visit}"


def _one_per_customer(items: list[_Send]) -> list[list[_Send]]:
    """The group in parts with each customer at most once, so that the second message
    to a customer (two runs of one scenario for two carts) is decided after the first is
    queued, and frequency caps count it."""
    parts: list[list[_Send]] = []
    seen: dict[int, int] = {}  # customer → how many parts have them already
    for item in items:
        k = seen.get(item.run.customer_id, 0)
        seen[item.run.customer_id] = k + 1
        if k == len(parts):
            parts.append([])
        parts[k].append(item)
    return parts


def _send_many(
    conn: sa.Connection, ctx: StepContext, items: list[_Send], now: datetime
) -> list[Event]:
    """The messages of one send step (of one scenario version and variant) for many runs."""
    send = items[0].step.send
    assert send is not None
    step_id = items[0].step.id
    template = ctx.template(conn, send.template)
    if template is None:
        for item in items:
            item.run.note(step_id, "skipped", f"template {send.template!r} no longer exists")
        return []
    channel = send.channel or template.channel
    scenario_id = items[0].run.scenario_id
    ids, rank = [i.run.customer_id for i in items], items[0].rank
    decisions = ctx.consult(conn, ids, channel, now, send.transactional, rank)
    origin = Origin(scenario_id=scenario_id, step=step_id, variant=items[0].variant)
    loyalty = _loyalty(conn, items, now)
    chains = _fallback_chains(conn, ctx, items, origin, now, loyalty)
    messages: dict[str, QueuedMessage] = {}
    allowed: list[_Send] = []
    for item in items:
        run, decision = item.run, decisions[item.run.customer_id]
        if decision.allowed:
            allowed.append(item)
            continue
        messages[item.key] = QueuedMessage(
            idempotency_key=item.key,
            channel=channel,
            recipient="",
            body_text="",
            customer_id=run.customer_id,
            template_id=template.id,
            scenario_id=scenario_id,
            step=step_id,
            skip_reason=decision.reason or "policy",
            fallback=chains.get(item.key, ()),
        )
        run.note(step_id, "skipped", decision.reason)
    if not allowed:
        return enqueue(conn, list(messages.values()), now)
    blocks = _product_blocks(conn, send, allowed, now)
    composed = compose_many(
        conn,
        template,
        [
            Recipient(
                i.run.customer_id,
                i.key,
                products=blocks.get(i.run.customer_id, ()),
                event=_trigger(i.run),
                loyalty=loyalty[i.key],
                fallback=chains.get(i.key, ()),
            )
            for i in allowed
        ],
        now=now,
        tracking=ctx.tracking(),
        origin=origin,
        channel=channel,
    )
    for item, message in zip(allowed, composed, strict=True):
        send_at = decisions[item.run.customer_id].send_at
        if send_at is not None:
            message = replace(message, send_at=send_at)
        messages[item.key] = message
        if message.skip_reason is not None:
            item.run.note(step_id, "skipped", message.skip_reason)
        elif send_at is not None and send_at > now:
            item.run.note(step_id, "deferred", f"until {send_at.isoformat()}")
        else:
            item.run.note(step_id, "sent")
    return enqueue(conn, [messages[i.key] for i in items], now)


def _trigger(run: Run) -> dict[str, Any]:
    return dict(run.context.get("event") or run.context.get("trigger") or {})


def _loyalty(conn: sa.Connection, items: list[_Send], now: datetime) -> dict[str, dict[str, Any]]:
    """Per message key, the template's ``loyalty``: the programme's summary (read for the
    whole group at once) and the codes this run's ``issue_coupon`` steps issued, by step
    id, with the latest as ``coupon``."""
    summaries = loyalty_summaries(conn, [i.run.customer_id for i in items], now)
    out = {}
    for item in items:
        codes = dict(item.run.context.get("coupons") or {})
        latest = list(codes.values())[-1] if codes else None
        out[item.key] = {**summaries[item.run.customer_id], "coupons": codes, "coupon": latest}
    return out


def _product_blocks(
    conn: sa.Connection, send: Any, items: list[_Send], now: datetime
) -> dict[int, list[dict[str, Any]]]:
    """The recommender's picks for each customer when the send asks for a block."""
    if send.products is None:
        return {}
    product = {
        i.run.customer_id: (_trigger(i.run).get("properties") or {}).get("product_id")
        for i in items
    }
    return products_for(
        conn, list(product), send.products.strategy, send.products.limit, now, product=product
    )


def _fallback_chains(
    conn: sa.Connection,
    ctx: StepContext,
    items: list[_Send],
    origin: Origin,
    now: datetime,
    loyalty: dict[str, dict[str, Any]],
) -> dict[str, tuple[Fallback, ...]]:
    """Per message key, the channels to try when the first does not deliver: each fallback
    channel the policy allows and the customer can be reached on, rendered from its own
    template (push → Telegram → SMS)."""
    send = items[0].step.send
    assert send is not None
    chains: dict[str, list[Fallback]] = {}
    ids = [i.run.customer_id for i in items]
    for spec in send.fallback:
        template = ctx.template(conn, spec.template)
        if template is None:
            continue
        decisions = ctx.consult(conn, ids, spec.channel, now, send.transactional, items[0].rank)
        allowed = [i for i in items if decisions[i.run.customer_id].allowed]
        composed = compose_many(
            conn,
            template,
            [
                Recipient(
                    i.run.customer_id,
                    f"{i.key}:fallback:{spec.channel}",
                    event=_trigger(i.run),
                    loyalty=loyalty[i.key],
                )
                for i in allowed
            ],
            now=now,
            tracking=ctx.tracking(),
            origin=origin,
            channel=spec.channel,
        )
        for item, msg in zip(allowed, composed, strict=True):
            if msg.skip_reason is None:  # empty, not None: nothing of the first is inherited
                chains.setdefault(item.key, []).append(
                    Fallback(
                        spec.channel,
                        msg.recipient,
                        subject=msg.subject or "",
                        body_text=msg.body_text,
                        body_html=msg.body_html or "",
                        data=dict(msg.data),
                    )
                )
    return {key: tuple(chain) for key, chain in chains.items()}


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
    tz_name = conn.execute(
        sa.select(customers.c.timezone).where(customers.c.id == customer_id)
    ).scalar_one_or_none()
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


def _outcome(conn: sa.Connection, run: Run, step_id: str, outcome: str) -> bool:
    """Did the message an earlier send step queued reach ``outcome`` (opened, …)?"""
    key = run.context.get("sent", {}).get(step_id)
    if key is None:
        return False
    name = OUTCOME_EVENTS[outcome]
    rows = conn.execute(
        sa.select(events.c.properties).where(
            events.c.customer_id == run.customer_id,
            events.c.name == name,
            events.c.occurred_at >= run.started_at,
        )
    ).scalars()
    return any((props or {}).get("message_id") == key for props in rows)


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
