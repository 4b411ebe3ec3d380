"""Where push messages go: browsers' web-push subscriptions and mobile apps' FCM tokens.

A subscription is an address, like an e-mail: it belongs to one customer, the newest live
one is where ``recipients.recipient_for`` sends, and it dies when the push service says
so (``revoke``). The endpoint URL (web push) or registration token (FCM) is unique, so a
device that subscribes again, or passes to another profile (someone else signs in on it),
updates its one row instead of piling up duplicates.

Consent: subscribing is an explicit opt-in (the browser's or the phone's permission
prompt), so a subscription that is new to the customer sets their consent for its channel
(``webpush`` for browsers, ``push`` for the app) to subscribed. Re-sending a live
subscription the customer already has changes no consent: pages and apps re-sync their
subscription on every start, and that must not undo an unsubscribe made through a link.
Revoking changes no consent either: the address is gone, the decision stays.

messaging knows no pipeline: ``subscribe`` returns the events to record and the caller
records them in its transaction.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rapport.customers.consents import ConsentChange, set_consents
from rapport.messaging.channel_config import ChannelsConfig, WebPushConfig
from rapport.messaging.channels.base import SendResult
from rapport.messaging.channels.fcm import token_gone
from rapport.segments.config import read_setting
from rapport.store.engine import upsert
from rapport.store.tables import consents, push_subscriptions

KINDS = ("webpush", "fcm")
PLATFORMS = ("ios", "android", "web")
CHANNEL_OF_KIND = {"webpush": "webpush", "fcm": "push"}
CONSENT_SOURCE = "push-subscription"
SUBSCRIBED_EVENT = "Push Subscribed"
MAX_ENDPOINT = 2000  # the column's size; real endpoints and tokens are far shorter
MAX_USER_AGENT = 500

Event = tuple[int, str, dict[str, Any]]


def _b64url_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("is not base64url") from None


class WebPushKeys(BaseModel):
    """The browser's keys; checked here because a broken key fails every send later."""

    model_config = ConfigDict(extra="ignore")

    p256dh: str
    auth: str

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        raw = _b64url_bytes(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("must be an uncompressed P-256 public key (65 bytes, base64url)")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if len(_b64url_bytes(value)) != 16:
            raise ValueError("must be a 16-byte secret (base64url)")
        return value


class WebPushIn(BaseModel):
    """``PushSubscription.toJSON()`` as the browser gives it (``expirationTime`` ignored)."""

    model_config = ConfigDict(extra="ignore")

    endpoint: Annotated[str, Field(max_length=MAX_ENDPOINT)]
    keys: WebPushKeys

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be the push service's http(s) URL")
        return value


class FcmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT)]
    platform: Literal["ios", "android", "web"]

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError("must not contain spaces")
        return value


class SubscriptionIn(BaseModel):
    """The subscription part of ``POST /v1/push/subscriptions`` (who it is for is the
    ingest API's business: ``userId`` / ``anonymousId``)."""

    model_config = ConfigDict(extra="forbid")

    webpush: WebPushIn | None = None
    fcm: FcmIn | None = None
    userAgent: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SubscriptionIn:
        if (self.webpush is None) == (self.fcm is None):
            raise ValueError("give exactly one of webpush, fcm")
        return self

    def subscription(self) -> Subscription:
        agent = self.userAgent[:MAX_USER_AGENT] if self.userAgent else None
        if self.webpush is not None:
            keys = {"p256dh": self.webpush.keys.p256dh, "auth": self.webpush.keys.auth}
            return Subscription("webpush", self.webpush.endpoint, keys, "web", agent)
        assert self.fcm is not None
        return Subscription(
            "fcm", self.fcm.token, {"platform": self.fcm.platform}, self.fcm.platform, agent
        )


@dataclass(frozen=True)
class Subscription:
    kind: Literal["webpush", "fcm"]
    endpoint: str  # the push service URL (webpush) or the registration token (fcm)
    keys: dict[str, str]  # p256dh and auth (webpush); platform (fcm)
    platform: str
    user_agent: str | None = None

    @property
    def channel(self) -> str:
        return CHANNEL_OF_KIND[self.kind]


def subscribe(
    conn: sa.Connection, customer_id: int, sub: Subscription, now: datetime
) -> list[Event]:
    """Store (or move, refresh, revive) the subscription; the events to record."""
    ps = push_subscriptions.c
    before = conn.execute(
        sa.select(ps.customer_id, ps.revoked_at).where(ps.endpoint == sub.endpoint)
    ).first()
    stmt = upsert(conn, push_subscriptions).values(
        customer_id=customer_id,
        kind=sub.kind,
        endpoint=sub.endpoint,
        keys=sub.keys,
        user_agent=sub.user_agent,
        created_at=now,
        updated_at=now,
        revoked_at=None,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["endpoint"],
        set_={
            "customer_id": stmt.excluded.customer_id,
            "kind": stmt.excluded.kind,
            "keys": stmt.excluded["keys"],
            "user_agent": sa.func.coalesce(stmt.excluded.user_agent, ps.user_agent),
            "updated_at": stmt.excluded.updated_at,
            "revoked_at": None,
        },
    )
    conn.execute(stmt)
    new_to_customer = (
        before is None or before.revoked_at is not None or before.customer_id != customer_id
    )
    if not new_to_customer:
        return []
    return opt_in(conn, customer_id, sub.channel, CONSENT_SOURCE, now)


def opt_in(
    conn: sa.Connection, customer_id: int, channel: str, source: str, now: datetime
) -> list[Event]:
    """Consent ``subscribed`` unless it already is; a ``Consent Changed`` when it changes,
    so segments on consent see it (an unchanged consent keeps its original source)."""
    return _consent(conn, customer_id, channel, "subscribed", source, now)


def opt_out(
    conn: sa.Connection, customer_id: int, channel: str, source: str, now: datetime
) -> list[Event]:
    return _consent(conn, customer_id, channel, "unsubscribed", source, now)


def _consent(
    conn: sa.Connection, customer_id: int, channel: str, status: str, source: str, now: datetime
) -> list[Event]:
    current = conn.execute(
        sa.select(consents.c.status).where(
            consents.c.customer_id == customer_id, consents.c.channel == channel
        )
    ).scalar_one_or_none()
    if current == status:
        return []
    set_consents(conn, [ConsentChange(customer_id, channel, status, source, now)])
    properties = {"channel": channel, "status": status, "source": source, "double_opt_in": "none"}
    return [(customer_id, "Consent Changed", properties)]


def revoke(conn: sa.Connection, endpoint_or_token: str, now: datetime) -> bool:
    """Stop sending to a subscription (the user unsubscribed, or the push service said the
    address is gone); True if a live one was revoked. Idempotent; consent is kept."""
    result = conn.execute(
        push_subscriptions.update()
        .where(
            push_subscriptions.c.endpoint == endpoint_or_token,
            push_subscriptions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now, updated_at=now)
    )
    return bool(result.rowcount)


def gone(result: SendResult, channel: str) -> bool:
    """Whether a backend's answer means the subscription will never work again, so the
    delivery side should ``revoke`` it: web push's 404/410, FCM's UNREGISTERED and the
    other dead-token codes."""
    if result.status != "rejected":
        return False
    if channel == "push":
        return token_gone(result)
    return channel == "webpush" and (result.error or "").startswith("subscription gone")


def vapid_public_key(conn: sa.Connection) -> str | None:
    """The browser's ``applicationServerKey``; None when web push is not configured with
    VAPID keys (no section, or the in-memory backend)."""
    config = ChannelsConfig.model_validate(read_setting(conn, "channels") or {})
    section = config.webpush
    return section.vapid_public_key if isinstance(section, WebPushConfig) else None
