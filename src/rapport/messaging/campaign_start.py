"""Starting a campaign: the frozen audience and the variant draw.

Starting freezes the audience — the segment's live members at that moment, copied into
``campaign_audience`` by one ``INSERT … SELECT`` — so a customer who joins later gets
nothing. Each member's variant is drawn there by a stable hash of (campaign, customer):
the same customer always lands in the same variant, weights are honoured, and the draw
is reproduced exactly by :func:`assignment` in Python. ``control_percent`` of the audience,
by an independent hash, is the holdout: kept in ``campaign_audience`` with status
``control`` for analytics, with nothing sent and nothing written on their card (a holdout
must look untouched). Members of the global control group (``messaging.holdout``) are
kept the same way with status ``global_control``, ahead of the campaign's own draw, so a
report tells the two apart; a transactional campaign reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.campaigns import (
    CONTROL,
    EDITABLE,
    SLOTS,
    Campaign,
    CampaignConflict,
    check_spec,
    get_campaign,
    parse_spec,
)
from rapport.messaging.holdout import REASON as GLOBAL_CONTROL
from rapport.messaging.holdout import global_control, in_global_control_sql
from rapport.messaging.outbox import SKIPPED, Event, event_for
from rapport.segments.bucket import P, salt_number
from rapport.store.engine import upsert
from rapport.store.tables import campaign_audience, campaigns, customers, outbox, segment_members


def _mix(x: int) -> int:
    return ((x * x % P) * 48_271 + 16_807) % P


def slot_of(campaign_id: int, customer_id: int, purpose: str) -> int:
    """The customer's place 0…9999 for ``purpose`` (control or variant) in this campaign.

    Two rounds of the segments' bucket arithmetic (``segments.bucket``), salted by the
    campaign and the purpose, so the control draw and the variant draw are independent and
    each campaign splits its audience differently. :func:`_slot_sql` is the same in SQL.
    """
    x = (customer_id % P + salt_number(f"campaign:{campaign_id}:{purpose}")) % P
    return _mix(_mix(x)) % SLOTS


def _slot_sql(campaign_id: int, customer_id: Any, purpose: str) -> Any:
    def lit(n: int) -> Any:
        return sa.literal_column(str(int(n)), sa.BigInteger)

    def mix(x: Any) -> Any:
        return ((x * x % lit(P)) * lit(48_271) + lit(16_807)) % lit(P)

    x = (customer_id % lit(P) + lit(salt_number(f"campaign:{campaign_id}:{purpose}"))) % lit(P)
    return mix(mix(x)) % lit(SLOTS)


def variant_bounds(variants: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """Each variant's upper slot bound: weights 50/30/20 → A < 5000 ≤ B < 8000 ≤ C."""
    total = sum(float(v["weight"]) for v in variants)
    bounds, running = [], 0.0
    for v in variants:
        running += float(v["weight"])
        bounds.append((str(v["name"]), round(running / total * SLOTS)))
    bounds[-1] = (bounds[-1][0], SLOTS)
    return bounds


def control_slots(control_percent: float) -> int:
    return round(control_percent * SLOTS / 100)


def assignment(campaign: Campaign, customer_id: int) -> str:
    """The variant (or ``control``) this customer draws; what the frozen audience holds."""
    if slot_of(campaign.id, customer_id, "control") < control_slots(campaign.control_percent):
        return CONTROL
    slot = slot_of(campaign.id, customer_id, "variant")
    return next(name for name, bound in variant_bounds(campaign.variants) if slot < bound)


def freeze_audience(conn: sa.Connection, campaign: Campaign, now: datetime) -> int:
    """Copy the segment's current live members into ``campaign_audience``: one statement."""
    sm, c = segment_members.c, customers.c
    cid = sm.customer_id
    variant_slot = _slot_sql(campaign.id, cid, "variant")
    is_control = _slot_sql(campaign.id, cid, "control") < control_slots(campaign.control_percent)
    whens = [
        (variant_slot < bound, sa.literal(name))
        for name, bound in variant_bounds(campaign.variants)
    ]
    held: Any = sa.false()
    if campaign.priority == "marketing":
        held = in_global_control_sql(cid, global_control(conn))
    variant = sa.case((held, sa.literal(CONTROL)), (is_control, sa.literal(CONTROL)), *whens)
    status = sa.case(
        (held, sa.literal(GLOBAL_CONTROL)),
        (is_control, sa.literal("control")),
        else_=sa.literal("pending"),
    )
    reason = sa.case((held, sa.literal(GLOBAL_CONTROL)), else_=sa.cast(sa.null(), sa.String))
    source = (
        sa.select(
            sa.literal(campaign.id, sa.BigInteger),
            cid,
            variant,
            status,
            reason,
            sa.literal(now, campaign_audience.c.updated_at.type),
        )
        .select_from(segment_members.join(customers, c.id == cid))
        .where(
            sm.segment_id == campaign.segment_id,
            sm.until.is_(None),
            c.merged_into.is_(None),
            c.erased_at.is_(None),
        )
    )
    stmt = upsert(conn, campaign_audience).from_select(
        ["campaign_id", "customer_id", "variant", "status", "reason", "updated_at"], source
    )
    result = conn.execute(stmt.on_conflict_do_nothing())
    return int(result.rowcount or 0)


def start_campaign(conn: sa.Connection, campaign_id: int, now: datetime) -> Campaign:
    """Start now (freeze the audience; ``sending``) or, with a future ``send_at``, schedule.

    A scheduled campaign that is due is started the same way. The definition is checked
    again: a template may have been deleted since it was saved.
    """
    current = get_campaign(conn, campaign_id, lock=True)
    if current.status not in EDITABLE:
        raise CampaignConflict(f"campaign {campaign_id} is {current.status} already")
    check_spec(conn, parse_spec(current.spec()))
    values: dict[str, Any] = {"updated_at": now}
    if current.send_at is not None and current.send_at > now:
        values["status"] = "scheduled"
    else:
        values.update(status="sending", started_at=now)
    conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(**values))
    started = get_campaign(conn, campaign_id)
    if started.status == "sending":
        freeze_audience(conn, started, now)
    return started


def cancel_campaign(
    conn: sa.Connection, campaign_id: int, now: datetime
) -> tuple[Campaign, list[Event]]:
    """Stop a campaign: nothing more is queued, and what waits in the outbox is skipped.

    A ``sent`` campaign can still be cancelled while some of its messages wait (for their
    local hour, the end of quiet hours, the throttle). Messages already handed to a dispatcher (``sending``) or sent stay as they are. Returns
    the ``Message Skipped`` events for the caller to record; fallbacks do not start, since
    the operator cancelled the message, not the channel.
    """
    current = get_campaign(conn, campaign_id, lock=True)
    if current.status not in (*EDITABLE, "sending", "sent"):
        raise CampaignConflict(
            f"campaign {campaign_id} is {current.status}; it cannot be cancelled"
        )
    waiting = outbox.c.campaign_id == str(campaign_id), outbox.c.status.in_(("queued", "failed"))
    if (
        current.status == "sent"
        and conn.execute(sa.select(outbox.c.id).where(*waiting).limit(1)).first() is None
    ):
        raise CampaignConflict(f"campaign {campaign_id} is sent; no message of it waits any more")
    reason = "campaign cancelled"
    rows = conn.execute(
        outbox.update()
        .where(*waiting)
        .values(status="skipped", last_error=reason, updated_at=now)
        .returning(*outbox.c)
    ).all()
    events: list[Event] = []
    for row in sorted(rows, key=lambda r: r.id):
        events += event_for(row, SKIPPED, reason=reason)
    a = campaign_audience.c
    stopped = {int(r.customer_id) for r in rows if r.customer_id is not None}
    conn.execute(
        campaign_audience.update()
        .where(a.campaign_id == campaign_id, a.status == "pending")
        .values(status="skipped", reason=reason, updated_at=now)
    )
    if stopped:
        conn.execute(
            campaign_audience.update()
            .where(
                a.campaign_id == campaign_id,
                a.status == "queued",
                a.customer_id == sa.bindparam("b_cid"),
            )
            .values(status="skipped", reason=reason, updated_at=now),
            [{"b_cid": cid} for cid in sorted(stopped)],
        )
    conn.execute(
        campaigns.update()
        .where(campaigns.c.id == campaign_id)
        .values(status="cancelled", updated_at=now, finished_at=now)
    )
    return get_campaign(conn, campaign_id), events
