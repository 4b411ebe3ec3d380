"""A campaign's figures, overall and per variant, read from three places:

* ``campaign_audience`` — who was in it: the frozen audience, the control group, what the
  policy decided (queued, or skipped with the reason);
* ``outbox`` — what became of each message (sent, rejected, dead, still waiting), the
  fallback channels' messages included;
* ``events`` — what customers did with them: ``Message Delivered``, ``Opened``,
  ``Clicked`` and ``Unsubscribed`` carry the campaign id and the variant; each counts
  distinct messages, so an e-mail opened five times is one open.

Rates are over messages sent (open rate, click rate) and over opened (click-to-open).
Conversions and revenue belong to attribution in analytics, which reads the same rows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rapport.messaging.campaigns import CONTROL, Campaign
from rapport.messaging.outbox import CLICKED, DELIVERED, OPENED, UNSUBSCRIBED
from rapport.store.tables import campaign_audience, events, outbox

_ENGAGEMENT = {
    DELIVERED: "delivered",
    OPENED: "opened",
    CLICKED: "clicked",
    UNSUBSCRIBED: "unsubscribed",
}
# Outbox statuses, as the report names them.
_MESSAGE = {
    "queued": "waiting",
    "failed": "waiting",
    "sending": "waiting",
    "sent": "sent",
    "rejected": "bounced",
    "dead": "failed",
    "skipped": "skipped",
}


def _empty() -> dict[str, Any]:
    return {
        "audience": 0,
        "pending": 0,
        "queued": 0,
        "skipped": 0,
        "skipped_by_reason": {},
        "messages": {"waiting": 0, "sent": 0, "bounced": 0, "failed": 0, "skipped": 0},
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "unsubscribed": 0,
    }


def _rates(part: dict[str, Any]) -> None:
    sent = part["messages"]["sent"]
    part["open_rate"] = part["opened"] / sent if sent else None
    part["click_rate"] = part["clicked"] / sent if sent else None
    part["click_to_open_rate"] = part["clicked"] / part["opened"] if part["opened"] else None


def campaign_report(conn: sa.Connection, campaign: Campaign) -> dict[str, Any]:
    """Four grouped queries, whatever the audience size."""
    a, o, e = campaign_audience.c, outbox.c, events.c
    names = [str(v["name"]) for v in campaign.variants]
    variants: dict[str, dict[str, Any]] = {n: _empty() for n in names}
    total = _empty()
    control = 0
    global_control = 0  # customers kept out of all marketing (messaging/holdout.py)

    def part(name: Any) -> dict[str, Any]:
        return variants.setdefault(str(name), _empty())  # a variant renamed after the start

    rows = conn.execute(
        sa.select(a.variant, a.status, a.reason, sa.func.count())
        .where(a.campaign_id == campaign.id)
        .group_by(a.variant, a.status, a.reason)
    )
    for variant, status, reason, n in rows:
        n = int(n)
        if status == "control":
            control += n
            continue
        if status == "global_control":
            global_control += n
            continue
        for p in (part(variant), total):
            p["audience"] += n
            if status in ("pending", "queued", "skipped"):
                p[status] += n
            if status == "skipped":
                key = str(reason or "unknown")
                p["skipped_by_reason"][key] = p["skipped_by_reason"].get(key, 0) + n

    by_channel: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        sa.select(o.variant, o.channel, o.status, sa.func.count())
        .where(o.campaign_id == str(campaign.id))
        .group_by(o.variant, o.channel, o.status)
    )
    for variant, channel, status, n in rows:
        label = _MESSAGE.get(str(status), str(status))
        for p in (part(variant), total):
            p["messages"][label] = p["messages"].get(label, 0) + int(n)
        counts = by_channel.setdefault(str(channel), {})
        counts[label] = counts.get(label, 0) + int(n)

    variant_of = e.properties["variant"].as_string()
    query = (
        sa.select(
            e.name, variant_of, sa.func.count(sa.distinct(e.properties["message_id"].as_string()))
        )
        .where(
            e.name.in_(list(_ENGAGEMENT)),
            e.properties["campaign_id"].as_string() == str(campaign.id),
        )
        .group_by(e.name, variant_of)
    )
    if campaign.started_at is not None:
        query = query.where(e.occurred_at >= campaign.started_at)  # uses the name/time index
    for name, variant, n in conn.execute(query):
        key = _ENGAGEMENT[str(name)]
        for p in (part(variant or "unknown"), total):
            p[key] += int(n)

    for p in (*variants.values(), total):
        _rates(p)
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "channel": campaign.channel,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "audience": total["audience"] + control + global_control,
        CONTROL: control,
        "global_control": global_control,
        "total": total,
        "variants": variants,
        "by_channel": by_channel,
    }
