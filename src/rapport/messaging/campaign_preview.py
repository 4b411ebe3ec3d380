"""A campaign as one customer would get it: every variant and fallback, rendered now.

One function behind ``POST /api/campaigns/{id}/preview`` and the campaign page's preview,
so the two cannot disagree. Nothing is stored: the message is composed exactly as a send
would compose it (same template version, same idempotency key, so the same unsubscribe
link), with the variant the customer draws and what the policy says about them now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.campaign_chunk import message_key
from rapport.messaging.campaign_start import assignment
from rapport.messaging.campaigns import Campaign
from rapport.messaging.compose import Origin, Tracking, compose
from rapport.messaging.policy import decide
from rapport.messaging.policy_facts import customer_facts
from rapport.messaging.templates.store import TemplateNotFound, get_template


class PreviewCustomerNotFound(LookupError):
    """No live customer with that id (merged and erased profiles are not previewed)."""


def preview_campaign(
    conn: sa.Connection,
    campaign: Campaign,
    customer_id: int,
    now: datetime,
    tracking: Tracking,
) -> dict[str, Any]:
    """Subject, HTML and text of every variant and fallback for ``customer_id``.

    ``tracking`` decides whether links are rewritten and the open pixel added: the API
    shows them (what the customer will get); a page in a browser turns them off, so that
    looking at the preview never counts as an open or a click.
    """
    cid = customer_id
    if cid not in customer_facts(conn, [cid]):
        raise PreviewCustomerNotFound(f"no customer {cid}")
    key = message_key(campaign.id, cid)
    decision = decide(
        conn, [cid], campaign.channel, now, campaign.priority, rank=campaign.cap_priority
    )[cid]

    def render(name: str, template_id: int, channel: str, msg_key: str) -> dict[str, Any]:
        try:
            tpl = get_template(conn, template_id)
        except TemplateNotFound:
            return {"name": name, "template_id": template_id, "error": "template deleted"}
        origin = Origin(campaign_id=campaign.id, variant=name)
        msg = compose(
            conn,
            tpl,
            cid,
            key=msg_key,
            now=now,
            tracking=tracking,
            origin=origin,
            channel=channel,
        )
        return {
            "name": name,
            "template_id": template_id,
            "channel": channel,
            "recipient": msg.recipient or None,
            "subject": msg.subject,
            "text": msg.body_text,
            "html": msg.body_html,
            "skip_reason": msg.skip_reason,
        }

    variants = [
        render(str(v["name"]), int(v["template_id"]), campaign.channel, key)
        for v in campaign.variants
    ]
    fallback = [
        render(
            str(f["channel"]),
            int(f["template_id"]),
            str(f["channel"]),
            f"{key}:fallback:{f['channel']}",
        )
        for f in campaign.fallback
    ]
    return {
        "campaign_id": campaign.id,
        "customer_id": cid,
        "assigned": assignment(campaign, cid),
        "policy": {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "send_at": decision.send_at,
        },
        "variants": variants,
        "fallback": fallback,
    }
