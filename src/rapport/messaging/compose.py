"""Turn a template and a customer into a message for the outbox.

Every sender — a campaign, a scenario step, a template's test send — goes through
:func:`compose`: find the customer's address on the channel, build the template context,
render the stored compiled version (compiled once at save time, rendered here once per
recipient), add the unsubscribe and preference links, rewrite links for click tracking
and add the open pixel. The loyalty summary is read here unless the caller brings it. The result is a :class:`QueuedMessage` keyed by the caller's
idempotency key; a message that cannot be made for this customer (no address, the
template failed for their data) comes back with ``skip_reason`` set, so the decision is
recorded and the fallback chain still runs.

:func:`compose_many` is the same for a batch of customers (a campaign's chunk): their
addresses and cards are read with a few set-based queries instead of several queries per
customer, which was most of the time of composing a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.summary import loyalty_summaries
from rapport.messaging.outbox import Fallback, Ident, QueuedMessage
from rapport.messaging.recipients import recipient_for
from rapport.messaging.templates.render import (
    RenderError,
    context_for,
    customer_contexts,
    render,
)
from rapport.messaging.templates.store import StoredTemplate
from rapport.messaging.tracking import Links, add_open_pixel, track_clicks
from rapport.store.tables import customers


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


@dataclass(frozen=True)
class Recipient:
    """One customer of a :func:`compose_many` batch, with what differs per customer."""

    customer_id: int
    key: str
    products: Sequence[Mapping[str, Any]] = ()
    event: Mapping[str, Any] | None = None
    loyalty: Mapping[str, Any] | None = None
    recipient: str | None = None
    data: Mapping[str, Any] | None = None
    fallback: Sequence[Fallback] = ()


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
    who = Recipient(customer_id, key, products, event, loyalty, recipient, data, fallback)
    address = recipient or recipient_for(conn, customer_id, channel)
    context = None
    if address:
        # The template's view of the card only (customer_contexts, not card()): the whole
        # card also looks up merged profiles, a scan of the customers table each time.
        found = customer_contexts(conn, [customer_id], now).get(customer_id)
        if found is not None:
            if loyalty is None:
                loyalty = loyalty_summaries(conn, [found["id"]], now)[found["id"]]
            context = context_for(
                found, now, locale=locale, event=event, products=products, loyalty=loyalty
            )
    return _message(template, who, address, context, channel, tracking, origin, send_at)


def compose_many(
    conn: sa.Connection,
    template: StoredTemplate,
    recipients: Sequence[Recipient],
    *,
    now: datetime,
    tracking: Tracking,
    origin: Origin = Origin(),
    channel: str | None = None,
    locale: str | None = None,
    send_at: datetime | None = None,
) -> list[QueuedMessage]:
    """:func:`compose` for each recipient, in order, with set-based reads for the batch."""
    channel = channel or template.channel
    addresses = _addresses(conn, [r.customer_id for r in recipients if not r.recipient], channel)
    reachable = [r.customer_id for r in recipients if r.recipient or addresses.get(r.customer_id)]
    no_loyalty = {r.customer_id for r in recipients if r.loyalty is None}
    cards = customer_contexts(conn, reachable, now)
    # The programme's summary for those the caller gave none: two queries for the batch.
    points = loyalty_summaries(
        conn, [c["id"] for cid, c in cards.items() if cid in no_loyalty], now
    )
    out = []
    for who in recipients:
        address = who.recipient or addresses.get(who.customer_id)
        customer = cards.get(who.customer_id) if address else None
        context = None
        if customer is not None:
            context = context_for(
                customer,
                now,
                locale=locale,
                event=who.event,
                products=who.products,
                loyalty=who.loyalty if who.loyalty is not None else points[customer["id"]],
            )
        out.append(_message(template, who, address, context, channel, tracking, origin, send_at))
    return out


def _addresses(conn: sa.Connection, ids: Sequence[int], channel: str) -> dict[int, str | None]:
    """Each customer's address on ``channel``, as :func:`recipient_for` gives it."""
    if channel not in ("email", "sms"):
        return {cid: recipient_for(conn, cid, channel) for cid in dict.fromkeys(ids)}
    found: dict[int, str | None] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 5000):
        rows = conn.execute(_ADDRESSES[channel], {"ids": unique[start : start + 5000]})
        found.update({int(cid): str(value) if value else None for cid, value in rows})
    return found


# Built once per channel: composing reads them for every small group a scenario sends.
_ADDRESSES = {
    channel: sa.select(customers.c.id, column).where(
        customers.c.id.in_(sa.bindparam("ids", expanding=True)), customers.c.erased_at.is_(None)
    )
    for channel, column in (("email", customers.c.email), ("sms", customers.c.phone))
}


def _message(
    template: StoredTemplate,
    who: Recipient,
    address: str | None,
    context: dict[str, Any] | None,
    channel: str,
    tracking: Tracking,
    origin: Origin,
    send_at: datetime | None,
) -> QueuedMessage:
    """Render one recipient's message from their context (None: no such customer)."""
    key = who.key
    links = tracking.links

    def message(**content: Any) -> QueuedMessage:
        return QueuedMessage(
            idempotency_key=key,
            channel=channel,
            recipient=address or "",
            customer_id=who.customer_id,
            template_id=template.id,
            campaign_id=origin.campaign_id,
            scenario_id=origin.scenario_id,
            step=origin.step,
            variant=origin.variant,
            fallback=tuple(who.fallback),
            send_at=send_at,
            **content,
        )

    if not address:
        return message(body_text="", skip_reason=f"no {channel} address")
    if context is None:
        return message(body_text="", skip_reason="customer does not exist")
    extra: dict[str, Any] = dict(who.data or {})
    keep: set[str] = set()
    if links is not None:
        unsubscribe = links.unsubscribe(who.customer_id, channel, key)
        preferences = links.preferences(who.customer_id)
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
