"""A template's test send: rendered for a real customer, sent at once, marked "[TEST] ".

Behind ``POST /api/templates/{id}/test-send`` and the template editor's "Send a test".
Not through the outbox, so nothing lands on the customer's card and no policy applies;
opens and clicks are not tracked (links stay as written, no pixel). The subject, or on
channels without one the text, starts with "[TEST] " so nobody takes it for the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.backends import send_now
from rapport.messaging.channel_config import load_channels
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.compose import Tracking, compose
from rapport.messaging.templates.render import product_list
from rapport.messaging.templates.store import get_template
from rapport.messaging.tracking import Links

MARK = "[TEST] "


class ChannelNotConfigured(ValueError):
    """The template's channel has no backend configured: there is nothing to send with."""


class TestCustomerNotFound(LookupError):
    """No customer with that id."""


class CannotSend(ValueError):
    """The message cannot be made for this customer (no address, the template failed for
    their data); ``reason`` says why, ``no_address`` whether giving ``to`` would help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.no_address = reason.startswith("no ")


def send_test_message(
    engine: sa.Engine,
    template_id: int,
    customer_id: int,
    *,
    now: datetime,
    links: Links,
    to: str | None = None,
    locale: str | None = None,
    product_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Render the saved template for ``customer_id`` and send it now to their address, or
    to ``to`` (the marketer's own inbox or phone). Raises ``TemplateNotFound``,
    :class:`ChannelNotConfigured`, :class:`TestCustomerNotFound`, :class:`CannotSend`;
    a refusal by the provider comes back in ``status`` and ``error``."""
    with engine.connect() as conn:
        tpl = get_template(conn, template_id)
        config = load_channels(conn).config
        if getattr(config, tpl.channel, None) is None:
            raise ChannelNotConfigured(f"the {tpl.channel} channel is not configured")
        message = compose(
            conn,
            tpl,
            customer_id,
            key=f"test:{tpl.id}:{uuid.uuid4().hex}",
            now=now,
            tracking=Tracking(links, opens=False, clicks=False),
            recipient=to,
            locale=locale,
            products=product_list(conn, product_ids),
        )
    if message.skip_reason == "customer does not exist":
        raise TestCustomerNotFound(f"no customer {customer_id}")
    if message.skip_reason is not None:
        raise CannotSend(message.skip_reason)
    subject, text = message.subject, message.body_text
    if subject:
        subject = MARK + subject
    else:
        text = MARK + text
    outgoing = OutgoingMessage(
        id=message.idempotency_key,
        channel=message.channel,
        to=message.recipient,
        body_text=text,
        customer_id=message.customer_id,
        subject=subject,
        body_html=message.body_html,
        headers=dict(message.headers),
        data=dict(message.data),
    )
    result = send_now(config, outgoing)  # after the connection is closed: no store held
    return {
        "message_id": result.message_id,
        "status": result.status,
        "provider_id": result.provider_id,
        "error": result.error,
        "to": outgoing.to,
        "subject": subject,
    }
