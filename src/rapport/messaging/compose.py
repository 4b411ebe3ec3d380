"""Turn a template and a customer into a message for the outbox.

Every sender — a campaign, a scenario step, a template's test send — goes through
:func:`compose`: find the customer's address on the channel, build the template context,
render the stored compiled version (compiled once at save time, rendered here once per
recipient), add the unsubscribe and preference links, rewrite links for click tracking
and add the open pixel. The result is a :class:`QueuedMessage` keyed by the caller's
idempotency key; a message that cannot be made for this customer (no address, the
template failed for their data) comes back with ``skip_reason`` set, so the decision is
recorded and the fallback chain still runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.outbox import Fallback, Ident, QueuedMessage
from rapport.messaging.recipients import recipient_for
from rapport.messaging.templates.render import RenderError, build_context, render
from rapport.messaging.templates.store import StoredTemplate
from rapport.messaging.tracking import Links, add_open_pixel, track_clicks


@dataclass(frozen=True)
class Tracking:
    """What a send adds to its messages; ``links`` None sends plain messages (tests, SMS
    gateways that count characters)."""

    links: Links | None
    opens: bool = True
    clicks: bool = True


@dataclass(frozen=True)
class Origin:
    """Where a message comes from; carried onto the outbox row and every status event."""

    campaign_id: Ident = None
    scenario_id: Ident = None
    step: Ident = None
    variant: str | None = None


def compose(
    conn: sa.Connection,
    template: StoredTemplate,
    customer_id: int,
    *,
    key: str,
    now: datetime,
    tracking: Tracking,
    origin: Origin = Origin(),
    channel: str | None = None,
    recipient: str | None = None,
    event: Mapping[str, Any] | None = None,
    products: Sequence[Mapping[str, Any]] = (),
    loyalty: Mapping[str, Any] | None = None,
    locale: str | None = None,
    fallback: Sequence[Fallback] = (),
    send_at: datetime | None = None,
    data: Mapping[str, Any] | None = None,
) -> QueuedMessage:
    """The message for ``customer_id`` under idempotency key ``key``."""
    channel = channel or template.channel
    links = tracking.links
    address = recipient or recipient_for(conn, customer_id, channel)

    def message(**content: Any) -> QueuedMessage:
        return QueuedMessage(
            idempotency_key=key,
            channel=channel,
            recipient=address or "",
            customer_id=customer_id,
            template_id=template.id,
            campaign_id=origin.campaign_id,
            scenario_id=origin.scenario_id,
            step=origin.step,
            variant=origin.variant,
            fallback=tuple(fallback),
            send_at=send_at,
            **content,
        )

    if not address:
        return message(body_text="", skip_reason=f"no {channel} address")
    context = build_context(
        conn, customer_id, now, locale=locale, event=event, products=products, loyalty=loyalty
    )
    if context is None:
        return message(body_text="", skip_reason="customer does not exist")
    extra: dict[str, Any] = dict(data or {})
    keep: set[str] = set()
    if links is not None:
        unsubscribe = links.unsubscribe(customer_id, channel, key)
        preferences = links.preferences(customer_id)
        context["unsubscribe_url"] = unsubscribe
        context["preferences_url"] = preferences
        keep = {unsubscribe, preferences}
        if channel == "email":
            extra.setdefault("unsubscribe_url", unsubscribe)
    _, variant = template.variant(context["locale"])
    try:
        rendered = render(variant, context)
    except RenderError as exc:
        return message(body_text="", skip_reason=f"template failed: {exc}")
    html = rendered.html
    if html is not None and links is not None and channel == "email":
        if tracking.clicks:
            html = track_clicks(html, links, key, frozenset(keep))
        if tracking.opens:
            html = add_open_pixel(html, links.open_pixel(key))
    return message(
        subject=rendered.subject or None,
        body_text=rendered.text,
        body_html=html,
        data=extra,
    )
