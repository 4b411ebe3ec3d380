"""Send steps: the messages that runs reaching the same send step in one round make together.

A send consults the communication policy, composes the message and puts it in the outbox
under the key ``run:{run}:step:{step}`` (with the visit number when a loop returns to a
step), in the caller's transaction. What the policy refused is enqueued as a skipped row
with its reason, so it is on the card's timeline like every other message status.

The groups of one round share a :class:`SendRound`: each template is looked up once, and
the global policy reads what all the round's decisions need at once
(:class:`~rapport.messaging.policy_round.PolicyRound`) instead of a handful of queries
per group; the groups are still decided one after the other, each counting what the ones
before it queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.summary import loyalty_summaries
from rapport.messaging.compose import Origin, Recipient, compose_many
from rapport.messaging.outbox import Event, Fallback, QueuedMessage, enqueue
from rapport.messaging.policy import Decision
from rapport.messaging.policy_round import PolicyRound
from rapport.messaging.templates.store import StoredTemplate
from rapport.recommend.blocks import products_for
from rapport.scenarios.model import Scenario, Step
from rapport.scenarios.runs import Run
from rapport.scenarios.step_context import StepContext, policy_decide


@dataclass
class PendingSend:
    """A send step one run reached in this round; sent with the others of its group."""

    run: Run
    step: Step
    key: str
    variant: str | None
    rank: int  # the scenario's priority


def reached(scenario: Scenario, run: Run, step: Step) -> PendingSend:
    key = message_key(run, step.id)
    run.context.setdefault("sent", {})[step.id] = key
    variant = run.context.get("paths", {}).get("ab")
    return PendingSend(run, step, key, variant, scenario.definition.priority)


def message_key(run: Run, step_id: str) -> str:
    visit = run.context.get("visits", {}).get(step_id, 1)
    key = f"run:{run.id}:step:{step_id}"
    return key if visit <= 1 else f"{key}:{visit}"


def one_per_customer(items: list[PendingSend]) -> list[list[PendingSend]]:
    """The group in parts with each customer at most once, so that the second message
    to a customer (two runs of one scenario for two carts) is decided after the first is
    queued, and frequency caps count it."""
    parts: list[list[PendingSend]] = []
    seen: dict[int, int] = {}  # customer → how many parts have them already
    for item in items:
        k = seen.get(item.run.customer_id, 0)
        seen[item.run.customer_id] = k + 1
        if k == len(parts):
            parts.append([])
        parts[k].append(item)
    return parts


@dataclass
class SendRound:
    """What the send groups of one round share: the templates they use, looked up once,
    and the global policy's reads for all of them (None: the context's own ``decide``, a
    test's or a dry run's, is asked group by group)."""

    ctx: StepContext
    now: datetime
    policy: PolicyRound | None = None
    templates: dict[int | str, StoredTemplate | None] = field(default_factory=dict)

    def template(self, conn: sa.Connection, ref: int | str) -> StoredTemplate | None:
        if ref not in self.templates:
            self.templates[ref] = self.ctx.template(conn, ref)
        return self.templates[ref]

    def consult(
        self, conn: sa.Connection, ids: list[int], channel: str, transactional: bool, rank: int
    ) -> dict[int, Decision]:
        if self.policy is None:
            return self.ctx.consult(conn, ids, channel, self.now, transactional, rank)
        kind = "transactional" if transactional else "marketing"
        return self.policy.decide(ids, channel, kind, rank=rank)

    def queued(self, events: list[Event]) -> list[Event]:
        """Count what was just queued towards the caps; the events, unchanged."""
        if self.policy is not None:
            self.policy.queued(events)
        return events


def send_groups(
    conn: sa.Connection, ctx: StepContext, groups: Sequence[list[PendingSend]], now: datetime
) -> list[Event]:
    """The groups of one round in the order given, each customer once per part (see
    :func:`one_per_customer`), with one template lookup and one policy read for all."""
    round_ = SendRound(ctx, now)
    if ctx.decide is policy_decide:
        wanted: dict[str, list[int]] = {}
        for items in groups:
            send = items[0].step.send
            assert send is not None
            template = round_.template(conn, send.template)
            if template is None:
                continue
            ids = [i.run.customer_id for i in items]
            wanted.setdefault(send.channel or template.channel, []).extend(ids)
            for spec in send.fallback:
                wanted.setdefault(spec.channel, []).extend(ids)
        round_.policy = PolicyRound(conn, now, wanted)
    events: list[Event] = []
    for items in groups:
        for part in one_per_customer(items):
            events.extend(send_many(conn, ctx, part, now, round_))
    return events


def send_many(
    conn: sa.Connection,
    ctx: StepContext,
    items: list[PendingSend],
    now: datetime,
    round_: SendRound | None = None,
) -> list[Event]:
    """The messages of one send step (of one scenario version and variant) for many runs."""
    round_ = round_ or SendRound(ctx, now)
    send = items[0].step.send
    assert send is not None
    step_id = items[0].step.id
    template = round_.template(conn, send.template)
    if template is None:
        for item in items:
            item.run.note(step_id, "skipped", f"template {send.template!r} no longer exists")
        return []
    channel = send.channel or template.channel
    scenario_id = items[0].run.scenario_id
    ids, rank = [i.run.customer_id for i in items], items[0].rank
    decisions = round_.consult(conn, ids, channel, send.transactional, rank)
    origin = Origin(scenario_id=scenario_id, step=step_id, variant=items[0].variant)
    loyalty = _loyalty(conn, items, now)
    chains = _fallback_chains(conn, round_, items, origin, now, loyalty)
    messages: dict[str, QueuedMessage] = {}
    allowed: list[PendingSend] = []
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
        return round_.queued(enqueue(conn, list(messages.values()), now))
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
    return round_.queued(enqueue(conn, [messages[i.key] for i in items], now))


def _trigger(run: Run) -> dict[str, Any]:
    return dict(run.context.get("event") or run.context.get("trigger") or {})


def _loyalty(
    conn: sa.Connection, items: list[PendingSend], now: datetime
) -> dict[str, dict[str, Any]]:
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
    conn: sa.Connection, send: Any, items: list[PendingSend], now: datetime
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
    round_: SendRound,
    items: list[PendingSend],
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
        template = round_.template(conn, spec.template)
        if template is None:
            continue
        decisions = round_.consult(conn, ids, spec.channel, send.transactional, items[0].rank)
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
            tracking=round_.ctx.tracking(),
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
