"""Channel backends made from the stored configuration (``channel_config``).

The configuration is data an operator edits through the API; this module is the one place
that turns a section into a backend object and its dispatcher ``Route`` (rate limits), so
the dispatcher, the settings page's "test" button and a template's test send all build
exactly the same thing. Constructors open no connection (pools and SMPP binds are made on
first send), so building is also how a configuration is checked before it is stored: a
VAPID key that does not parse is refused at the PUT, not at 3 a.m. on the first push.

The webhook channel is special: event subscriptions sign with their own secrets, so its
backend is wrapped in :class:`~rapport.messaging.event_subscriptions.SignedBySubscription`
whenever a subscription lookup is given, and exists even when no ``webhook`` section is
configured (it then signs only subscription deliveries and fails the rest, which have no
secret to be signed with).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channel_config import (
    CHANNEL_NAMES,
    ChannelsConfig,
    FcmConfig,
    MemoryConfig,
    Section,
    SmppConfig,
    SmsHttpConfig,
    SmtpConfig,
    TelegramConfig,
    WebhookConfig,
    WebPushConfig,
)
from rapport.messaging.channels.base import Backend, InMemoryBackend, OutgoingMessage, SendResult
from rapport.messaging.dispatcher import Route
from rapport.messaging.event_subscriptions import SignedBySubscription, SigningLookup

log = logging.getLogger("rapport.channels")

ReceiptHandler = Callable[[str, str], None]
# Called with the channel and why its backend could not be made; that channel is skipped.
SetupErrorHandler = Callable[[str, Exception], None]


# A failure count no batch reaches: the webhook channel's breaker never opens.
NO_BREAKER = 2**62


class ChannelNotConfigured(LookupError):
    """The channel has no section in the stored configuration."""


def build_backend(
    channel: str, section: Section, *, on_receipt: ReceiptHandler | None = None
) -> Backend:
    """The backend one section describes; ValueError or ImportError when it cannot be made.

    ``on_receipt`` receives SMPP delivery receipts (from the SMPP listener thread).
    """
    if isinstance(section, MemoryConfig):
        return InMemoryBackend(channel)
    if isinstance(section, SmtpConfig):
        from rapport.messaging.channels.email_mime import DkimKey
        from rapport.messaging.channels.smtp import SmtpBackend, SmtpSettings

        return SmtpBackend(
            SmtpSettings(
                host=section.host,
                port=section.port,
                security=section.security,
                username=section.username,
                password=section.password,
                sender=section.sender,
                message_id_domain=section.message_id_domain,
                pool_size=section.pool_size,
                timeout=section.timeout,
                dkim=tuple(
                    DkimKey(k.domain, k.selector, k.private_key.encode(), k.algorithm)
                    for k in section.dkim
                ),
            )
        )
    if isinstance(section, SmsHttpConfig):
        from rapport.messaging.channels.sms_http import HttpSmsBackend

        return HttpSmsBackend(
            section.url,
            method=section.method,
            auth_header=section.auth_header,
            body_template=section.body_template,
            sender=section.sender,
            id_path=section.id_path,
            timeout=section.timeout,
        )
    if isinstance(section, SmppConfig):
        from rapport.messaging.channels.sms_smpp import SmppBackend

        return SmppBackend(
            section.host,
            section.port,
            section.system_id,
            section.password,
            source_addr=section.source_addr,
            source_addr_ton=section.source_addr_ton,
            source_addr_npi=section.source_addr_npi,
            system_type=section.system_type,
            on_receipt=on_receipt,
        )
    if isinstance(section, WebPushConfig):
        from rapport.messaging.channels.webpush import WebPushBackend

        return WebPushBackend(section.vapid_private_key, section.subject, ttl=section.ttl)
    if isinstance(section, FcmConfig):
        try:
            from rapport.messaging.channels.fcm import FcmBackend
        except ImportError as exc:
            raise ImportError(f"the FCM backend is not available in this build: {exc}") from None
        return FcmBackend(section.project_id, section.service_account, base_url=section.base_url)
    if isinstance(section, TelegramConfig):
        from rapport.messaging.channels.telegram import TelegramBackend

        return TelegramBackend(section.bot_token, base_url=section.base_url)
    if isinstance(section, WebhookConfig):
        from rapport.messaging.channels.webhook import WebhookBackend

        return WebhookBackend(section.secret, timeout=section.timeout)
    raise ValueError(f"no backend for {type(section).__name__}")


def routes_from_config(
    config: ChannelsConfig,
    *,
    on_receipt: ReceiptHandler | None = None,
    subscriptions: SigningLookup | None = None,
    on_error: SetupErrorHandler | None = None,
) -> dict[str, Route]:
    """A dispatcher route for every configured channel.

    A channel whose backend cannot be made raises InvalidInput naming it, unless
    ``on_error`` is given: then it is reported there and left out, and its messages wait in
    the outbox while the other channels are delivered. With ``subscriptions`` (how to find
    a subscription's secret), the webhook channel is always routed; see the module notes.
    """
    routes: dict[str, Route] = {}
    problems: list[Problem] = []
    for channel in CHANNEL_NAMES:
        section: Section | None = getattr(config, channel)
        if section is None:
            continue
        try:
            backend = build_backend(channel, section, on_receipt=on_receipt)
        except (ValueError, ImportError) as exc:
            if on_error is None:
                problems.append(Problem(channel, str(exc)))
            else:
                on_error(channel, exc)
            continue
        routes[channel] = Route(backend, rate=section.rate, burst=section.burst)
    if problems:
        raise InvalidInput(problems)
    if subscriptions is not None:
        routes["webhook"] = _webhook_route(routes.get("webhook"), subscriptions)
    return routes


def _webhook_route(route: Route | None, subscriptions: SigningLookup) -> Route:
    """The webhook route: subscription signing, and no channel-wide circuit breaker.

    The breaker exists to stop hammering one provider that is down; webhook messages go to
    as many receivers as there are subscriptions, so one partner's broken endpoint would
    open it and hold every other partner's deliveries back. Each delivery's own backoff is
    what spares a failing receiver.
    """
    if route is None:
        from rapport.messaging.channels.webhook import WebhookBackend

        route = Route(WebhookBackend(None))
    return Route(
        SignedBySubscription(route.backend, subscriptions),
        rate=route.rate,
        burst=route.burst,
        breaker_failures=NO_BREAKER,
    )


def check_config(config: ChannelsConfig) -> None:
    """Raise InvalidInput naming each channel whose backend cannot be made from ``config``."""
    routes_from_config(config)


def section_of(config: ChannelsConfig, channel: str) -> Section:
    section: Section | None = getattr(config, channel, None) if channel in CHANNEL_NAMES else None
    if section is None:
        raise ChannelNotConfigured(f"the {channel} channel is not configured")
    return section


def send_now(config: ChannelsConfig, message: OutgoingMessage) -> SendResult:
    """Send one message right away through a fresh backend for its channel, then close it.

    Not through the outbox: this is for a person waiting on a "test" button. Call it from a
    thread with no running event loop (a plain FastAPI route runs in one).
    """
    section = section_of(config, message.channel)
    backend = build_backend(message.channel, section)

    async def run() -> SendResult:
        try:
            [result] = await backend.send([message])
            return result
        except Exception as exc:  # show the operator what broke instead of a 500
            log.exception("test send on %s failed", message.channel)
            return SendResult(message.id, "failed", error=f"backend error: {exc!r}")
        finally:
            await backend.close()

    return asyncio.run(run())
