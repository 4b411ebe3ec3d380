"""One chunk of a campaign send: the policy for the whole chunk, one message per customer.

The policy answers for the chunk in a few queries. Each allowed customer's message is
composed from their variant's template; a refused one is still written to the outbox, as
``skipped`` with the reason, so the decision is on the card and the fallback chain (each
entry rendered from its own channel's template, and only for channels the policy allows
and the customer can be reached on) still runs. Due times come from the campaign's start
or the customer's local hour, then quiet hours, then the throttle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.summary import loyalty_summaries
from rapport.messaging.campaign_throttle import Throttle
from rapport.messaging.campaigns import Campaign
from rapport.messaging.compose import Origin, Recipient, Tracking, compose_many
from rapport.messaging.holdout import GlobalControl, global_control
from rapport.messaging.outbox import Event, Fallback, QueuedMessage, enqueue
from rapport.messaging.policy import Decision, Policy, decide, next_local_hour, zone_of
from rapport.messaging.policy_facts import Reachable, customer_facts
from rapport.messaging.templates.store import StoredTemplate, TemplateNotFound, get_template
from rapport.store.tables import campaign_audience


def message_key(campaign_id: int, customer_id: int) -> str:
    return f"campaign:{campaign_id}:customer:{customer_id}"


@dataclass
class Run:
    """What one send run keeps between chunks: the policy, the throttle, the templates
    (each read once per run, not once per customer)."""

    campaign: Campaign
    now: datetime
    tracking: Tracking
    policy: Policy
    throttle: Throttle | None
    templates: dict[int, StoredTemplate | None] = field(default_factory=dict)
    control: GlobalControl | None = None

    def template(self, conn: sa.Connection, template_id: int) -> StoredTemplate | None:
        if template_id not in self.templates:
            try:
                self.templates[template_id] = get_template(conn, template_id)
            except TemplateNotFound:
                self.templates[template_id] = None
        return self.templates[template_id]


def _planned(run: Run, facts: Mapping[int, Reachable], ids: list[int]) -> dict[int, datetime]:
    """When each message is meant to arrive: the start, or the local hour after it."""
    c = run.campaign
    start = c.started_at or run.now
    if c.local_hour is None:
        return dict.fromkeys(ids, start)
    default = run.policy.default_timezone
    return {
        cid: next_local_hour(
            start, c.local_hour, zone_of(getattr(facts.get(cid), "timezone", None), default)
        )
        for cid in ids
    }


def _address(facts: Mapping[int, Reachable], cid: int, channel: str) -> str | None:
    """The e-mail or phone already read for the policy, saving compose a query; None lets
    compose look the address up (the other channels, a customer without one)."""
    found = facts.get(cid)
    if found is None:
        return None
    return {"email": found.email, "sms": found.phone}.get(channel) or None


def _fallbacks(
    run: Run,
    conn: sa.Connection,
    ids: list[int],
    variants: Mapping[int, str],
    allowed: list[dict[int, Decision]],
    facts: Mapping[int, Reachable],
    loyalty: Mapping[int, Mapping[str, Any]],
) -> dict[int, tuple[Fallback, ...]]:
    """Each customer's chain: every fallback channel the policy allows and the customer
    can be reached on, rendered from that channel's own template (a batch per channel)."""
    c = run.campaign
    chains: dict[int, list[Fallback]] = {cid: [] for cid in ids}
    for spec, decisions in zip(c.fallback, allowed, strict=True):
        tpl = run.template(conn, int(spec["template_id"]))
        if tpl is None:
            continue
        channel = str(spec["channel"])
        batch = [
            Recipient(
                cid,
                f"{message_key(c.id, cid)}:fallback:{channel}",
                loyalty=loyalty[cid],
                recipient=_address(facts, cid, channel),
            )
            for cid in ids
            if decisions[cid].allowed
        ]
        for msg in _compose(run, conn, tpl, batch, variants, channel=channel):
            if msg.skip_reason is not None:
                continue
            # Empty rather than None, so nothing of the first channel's content is inherited.
            assert msg.customer_id is not None
            chains[msg.customer_id].append(
                Fallback(
                    channel,
                    msg.recipient,
                    subject=msg.subject or "",
                    body_text=msg.body_text,
                    body_html=msg.body_html or "",
                    data=dict(msg.data),
                )
            )
    return {cid: tuple(chain) for cid, chain in chains.items()}


def _compose(
    run: Run,
    conn: sa.Connection,
    tpl: StoredTemplate,
    batch: list[Recipient],
    variants: Mapping[int, str],
    *,
    channel: str | None = None,
) -> list[QueuedMessage]:
    """``compose_many`` for the batch, one call per A/B variant (each its own origin),
    the messages in the batch's order."""
    groups: dict[str, list[Recipient]] = {}
    for who in batch:
        groups.setdefault(variants[who.customer_id], []).append(who)
    by_key: dict[str, QueuedMessage] = {}
    for variant, group in groups.items():
        origin = Origin(campaign_id=run.campaign.id, variant=variant)
        for msg in compose_many(
            conn, tpl, group, now=run.now, tracking=run.tracking, origin=origin, channel=channel
        ):
            by_key[msg.idempotency_key] = msg
    return [by_key[who.key] for who in batch]


def compose_chunk(
    run: Run, conn: sa.Connection, rows: list[Any]
) -> tuple[list[QueuedMessage], list[Event]]:
    """Policy, compose and enqueue for these audience rows; mark them queued or skipped."""
    c = run.campaign
    ids = [int(r.customer_id) for r in rows]
    facts = customer_facts(conn, ids)
    planned = _planned(run, facts, ids)
    if run.control is None:  # read once per run, like the policy
        run.control = global_control(conn)
    decisions = {
        channel: decide(
            conn,
            ids,
            channel,
            run.now,
            c.priority,
            at=planned if channel == c.channel else None,
            policy=run.policy,
            facts=facts,
            rank=c.cap_priority,
            control=run.control,
        )
        for channel in (c.channel, *(str(f["channel"]) for f in c.fallback))
    }
    fallback_decisions = [decisions[str(f["channel"])] for f in c.fallback]
    points = loyalty_summaries(conn, ids, run.now)  # for every template's ``loyalty``
    by_name = {str(v["name"]): int(v["template_id"]) for v in c.variants}
    variants = {int(r.customer_id): str(r.variant) for r in rows}
    chains = _fallbacks(run, conn, ids, variants, fallback_decisions, facts, points)
    # Each variant's allowed customers composed as one batch (set-based reads of their
    # cards): one by one, reading each card took most of a campaign's time.
    batches: dict[int, list[Recipient]] = {}
    refused: dict[int, QueuedMessage] = {}
    for cid in ids:
        variant = variants[cid]
        key = message_key(c.id, cid)
        template_id = by_name.get(variant)
        tpl = None if template_id is None else run.template(conn, template_id)
        decision = decisions[c.channel][cid]
        reason = decision.reason
        if decision.allowed and tpl is None:
            reason = f"template {template_id} was deleted"
        if reason is not None or tpl is None or template_id is None:
            refused[cid] = QueuedMessage(
                idempotency_key=key,
                channel=c.channel,
                recipient="",
                body_text="",
                customer_id=cid,
                campaign_id=c.id,
                template_id=template_id,
                variant=variant,
                fallback=chains[cid],
                skip_reason=reason,
            )
            continue
        batches.setdefault(template_id, []).append(
            Recipient(
                cid,
                key,
                loyalty=points[cid],
                recipient=_address(facts, cid, c.channel),
                fallback=chains[cid],
            )
        )
    composed: dict[int, QueuedMessage] = {}
    for template_id, batch in batches.items():
        tpl = run.template(conn, template_id)
        assert tpl is not None
        for msg in _compose(run, conn, tpl, batch, variants):
            assert msg.customer_id is not None
            composed[msg.customer_id] = msg
    messages: list[QueuedMessage] = []
    for cid in ids:
        if cid in refused:
            messages.append(refused[cid])
            continue
        msg = composed[cid]
        if msg.skip_reason is None:
            decision = decisions[c.channel][cid]
            due = planned[cid]
            if decision.send_at is not None:
                due = max(due, decision.send_at)
            if run.throttle is not None:
                due = run.throttle.take(due, run.now)
            msg = replace(msg, send_at=due if due > run.now else None)
        messages.append(msg)
    events = enqueue(conn, messages, run.now)
    a = campaign_audience.c
    conn.execute(
        campaign_audience.update()
        .where(a.campaign_id == c.id, a.customer_id == sa.bindparam("b_cid"))
        .values(
            status=sa.bindparam("b_status"),
            reason=sa.bindparam("b_reason"),
            updated_at=run.now,
        ),
        [
            {
                "b_cid": m.customer_id,
                "b_status": "skipped" if m.skip_reason is not None else "queued",
                "b_reason": None if m.skip_reason is None else m.skip_reason[:200],
            }
            for m in messages
        ],
    )
    return messages, events
