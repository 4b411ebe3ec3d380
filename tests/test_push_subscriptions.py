"""Push subscriptions over the API: store, re-sync, move, revoke, merge; and bad input."""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.messaging import push_subscriptions as subs
from rapport.messaging.channel_config import ChannelsConfig, MemoryConfig, WebPushConfig
from rapport.messaging.channels.base import SendResult
from rapport.messaging.channels.webpush import generate_vapid_keys
from rapport.messaging.recipients import recipient_for
from rapport.segments.config import write_setting
from rapport.store.engine import writing
from rapport.store.tables import consents, push_subscriptions
from tests.conftest import T0, basic, bearer
from tests.helpers import event_rows, live_customers, table_counts

ENDPOINT = "https://push.example.net/send/abc123"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def browser_keys() -> dict[str, str]:
    """What a browser's PushManager makes: a P-256 public key and a 16-byte secret."""
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": _b64(public), "auth": _b64(os.urandom(16))}


def webpush(endpoint: str = ENDPOINT, keys: dict[str, str] | None = None) -> dict[str, Any]:
    return {"endpoint": endpoint, "expirationTime": None, "keys": keys or browser_keys()}


class Api:
    def __init__(self, client: TestClient, engine: sa.Engine, write_key: str, secret: str):
        self.client = client
        self.engine = engine
        self.write = basic(write_key)
        self.secret = bearer(secret)

    def subscribe(self, status: int = 200, **body: Any) -> Any:
        r = self.client.post("/v1/push/subscriptions", json=body, headers=self.write)
        assert r.status_code == status, r.text
        return r.json()

    def unsubscribe(self, status: int = 200, **body: Any) -> Any:
        r = self.client.request(
            "DELETE", "/v1/push/subscriptions", content=orjson.dumps(body), headers=self.write
        )
        assert r.status_code == status, r.text
        return r.json()

    def send(self, kind: str, **body: Any) -> None:
        r = self.client.post(f"/v1/{kind}", json=body, headers=self.write)
        assert r.status_code == 200, r.text

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.select(push_subscriptions).order_by(push_subscriptions.c.id))
            )

    def consent(self, customer_id: int, channel: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(consents.c.status, consents.c.source).where(
                    consents.c.customer_id == customer_id, consents.c.channel == channel
                )
            ).first()

    def recipient(self, customer_id: int, channel: str) -> str | None:
        with self.engine.connect() as conn:
            return recipient_for(conn, customer_id, channel)


@pytest.fixture
def api(client: TestClient, engine: sa.Engine, write_key: str, secret_key: str) -> Api:
    return Api(client, engine, write_key, secret_key)


def test_an_anonymous_browser_subscribes_and_the_subscription_follows_the_merge(api: Api):
    api.send("identify", userId="u1", traits={"email": "ann@example.com"})
    [known] = [c.id for c in live_customers(api.engine)]
    keys = browser_keys()

    assert api.subscribe(anonymousId="anon-1", webpush=webpush(keys=keys), userAgent="Firefox")
    anonymous = next(c.id for c in live_customers(api.engine) if c.id != known)
    [row] = api.rows()
    assert (row.customer_id, row.kind, row.endpoint, row.user_agent) == (
        anonymous,
        "webpush",
        ENDPOINT,
        "Firefox",
    )
    assert row._mapping["keys"] == keys and row.revoked_at is None
    [event] = event_rows(api.engine, name="Push Subscribed")
    assert event.customer_id == anonymous
    assert event.properties == {"kind": "webpush", "platform": "web"}
    assert event.context["userAgent"] == "Firefox"
    assert tuple(api.consent(anonymous, "webpush")) == ("subscribed", "push-subscription")
    [changed] = event_rows(api.engine, name="Consent Changed")
    assert changed.customer_id == anonymous and changed.properties["channel"] == "webpush"
    assert orjson.loads(api.recipient(anonymous, "webpush") or "") == {
        "endpoint": ENDPOINT,
        "keys": keys,
    }

    # The visitor signs in: the anonymous profile merges into the known one, and the
    # subscription (and its consent) goes with it.
    api.send("identify", userId="u1", anonymousId="anon-1")
    assert [c.id for c in live_customers(api.engine)] == [known]
    [row] = api.rows()
    assert row.customer_id == known
    assert api.recipient(known, "webpush") is not None
    assert api.consent(known, "webpush").status == "subscribed"


def test_an_app_registers_its_fcm_token_for_a_known_user(api: Api):
    api.subscribe(userId="u7", fcm={"token": "fcm-token-1", "platform": "android"})
    [customer] = live_customers(api.engine)
    [row] = api.rows()
    assert (row.kind, row.endpoint, row._mapping["keys"]) == (
        "fcm",
        "fcm-token-1",
        {"platform": "android"},
    )
    assert api.recipient(customer.id, "push") == "fcm-token-1"
    assert api.recipient(customer.id, "webpush") is None
    assert tuple(api.consent(customer.id, "push")) == ("subscribed", "push-subscription")
    [event] = event_rows(api.engine, name="Push Subscribed")
    assert event.properties == {"kind": "fcm", "platform": "android"}


def test_a_re_sync_updates_keys_without_touching_consent(api: Api, clock: SimulatedClock):
    api.subscribe(userId="u1", webpush=webpush())
    [customer] = live_customers(api.engine)
    # The customer unsubscribes from web push through a link...
    r = api.client.post(
        f"/api/customers/{customer.id}/consents",
        json={"channel": "webpush", "status": "unsubscribed", "source": "unsubscribe-link"},
        headers=api.secret,
    )
    assert r.status_code == 200, r.text
    # ...and the page re-sends its (rotated) subscription on the next visit.
    fresh = browser_keys()
    api.subscribe(userId="u1", webpush=webpush(keys=fresh))
    [row] = api.rows()
    assert row._mapping["keys"] == fresh
    assert api.consent(customer.id, "webpush").status == "unsubscribed"
    assert len(event_rows(api.engine, name="Push Subscribed")) == 2
    assert len(event_rows(api.engine, name="Consent Changed")) == 2  # subscribe, link


def test_a_browser_used_by_someone_else_moves_to_them(api: Api):
    api.subscribe(userId="u1", webpush=webpush())
    api.subscribe(userId="u2", webpush=webpush())
    first, second = (c.id for c in live_customers(api.engine))
    [row] = api.rows()
    assert row.customer_id == second
    assert api.recipient(first, "webpush") is None
    assert api.recipient(second, "webpush") is not None
    assert api.consent(second, "webpush").status == "subscribed"


def test_revoking_is_idempotent_and_subscribing_again_revives(api: Api, clock: SimulatedClock):
    api.subscribe(anonymousId="a1", fcm={"token": "tok-1", "platform": "ios"})
    [customer] = live_customers(api.engine)
    assert api.unsubscribe(token="tok-1") == {"success": True}
    assert api.unsubscribe(token="tok-1") == {"success": True}
    assert api.unsubscribe(endpoint="https://push.example.net/never-seen") == {"success": True}
    [row] = api.rows()
    assert row.revoked_at == T0
    assert api.recipient(customer.id, "push") is None
    assert api.consent(customer.id, "push").status == "subscribed"  # the decision stays

    api.subscribe(anonymousId="a1", fcm={"token": "tok-1", "platform": "ios"})
    [row] = api.rows()
    assert row.revoked_at is None
    assert api.recipient(customer.id, "push") == "tok-1"


def test_the_delivery_side_revokes_what_a_push_service_says_is_gone(
    api: Api, engine: sa.Engine, clock: SimulatedClock
):
    api.subscribe(userId="u1", webpush=webpush())
    api.subscribe(userId="u1", fcm={"token": "tok-1", "platform": "android"})
    webpush_gone = SendResult("m1", "rejected", error="subscription gone: HTTP 410: Gone")
    fcm_gone = SendResult("m2", "rejected", error="UNREGISTERED: Requested entity was not found.")
    assert subs.gone(webpush_gone, "webpush") and subs.gone(fcm_gone, "push")
    assert not subs.gone(SendResult("m3", "failed", error="HTTP 503"), "push")
    assert not subs.gone(SendResult("m4", "rejected", error="INVALID_ARGUMENT: bad data"), "push")
    with writing(engine) as conn:
        assert subs.revoke(conn, ENDPOINT, clock.now())
        assert subs.revoke(conn, "tok-1", clock.now())
        assert not subs.revoke(conn, "tok-1", clock.now())
    assert all(r.revoked_at is not None for r in api.rows())


def test_the_vapid_public_key_is_served_when_web_push_is_configured(
    api: Api, engine: sa.Engine, clock: SimulatedClock
):
    r = api.client.get("/v1/push/vapid-public-key")
    assert r.status_code == 404 and "web push is not configured" in r.json()["message"]
    with writing(engine) as conn:
        config = ChannelsConfig(webpush=MemoryConfig())
        write_setting(conn, "channels", config.model_dump(mode="json"), clock.now())
    assert api.client.get("/v1/push/vapid-public-key").status_code == 404

    keys = generate_vapid_keys()
    section = WebPushConfig(
        vapid_public_key=keys.public_key,
        vapid_private_key=keys.private_key,
        subject="mailto:ops@shop.example",
    )
    with writing(engine) as conn:
        config = ChannelsConfig(webpush=section)
        write_setting(conn, "channels", config.model_dump(mode="json"), clock.now())
    r = api.client.get("/v1/push/vapid-public-key")
    assert r.status_code == 200 and r.json() == {"publicKey": keys.public_key}


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        ({"webpush": webpush()}, "", "either userId or anonymousId is required"),
        ({"userId": "u1"}, "", "give exactly one of webpush, fcm"),
        (
            {"userId": "u1", "webpush": webpush(), "fcm": {"token": "t", "platform": "ios"}},
            "",
            "give exactly one of webpush, fcm",
        ),
        (
            {"userId": "u1", "webpush": webpush(keys={"p256dh": "AAAA", "auth": "x"})},
            "webpush.keys.p256dh",
            "must be an uncompressed P-256 public key (65 bytes, base64url)",
        ),
        (
            {"userId": "u1", "webpush": {"endpoint": "ftp://x", "keys": browser_keys()}},
            "webpush.endpoint",
            "must be the push service's http(s) URL",
        ),
        (
            {"userId": "u1", "webpush": {"endpoint": ENDPOINT}},
            "webpush.keys",
            "Field required",
        ),
        (
            {"userId": "u1", "fcm": {"token": "t", "platform": "windows"}},
            "fcm.platform",
            "Input should be 'ios', 'android' or 'web'",
        ),
        (
            {"userId": "u1", "fcm": {"token": "two words", "platform": "ios"}},
            "fcm.token",
            "must not contain spaces",
        ),
        (
            {"userId": "u1", "fcm": {"token": "t", "platform": "ios"}, "colour": "red"},
            "colour",
            "unknown field",
        ),
    ],
)
def test_a_bad_subscription_names_the_field_and_stores_nothing(
    api: Api, body: dict[str, Any], where: str, reason: str
):
    before = table_counts(api.engine)
    answer = api.subscribe(400, **body)
    assert answer["success"] is False and answer["code"] == "invalid_request"
    assert {"where": where, "reason": reason} in answer["errors"], answer
    assert table_counts(api.engine) == before


def test_authentication_and_malformed_bodies(api: Api, secret_key: str):
    before = table_counts(api.engine)
    body = {"userId": "u1", "fcm": {"token": "t", "platform": "ios"}}
    r = api.client.post("/v1/push/subscriptions", json=body)
    assert r.status_code == 401 and "write key is required" in r.json()["message"]
    r = api.client.post("/v1/push/subscriptions", json=body, headers=bearer(secret_key))
    assert r.status_code == 401
    r = api.client.post("/v1/push/subscriptions", json=body, headers=basic(secret_key))
    assert r.status_code == 401 and "secret key cannot send events" in r.json()["message"]
    r = api.client.post("/v1/push/subscriptions", content=b"{nope", headers=api.write)
    assert r.status_code == 400 and r.json()["message"].startswith("body: malformed JSON")
    r = api.client.post("/v1/push/subscriptions", json=[body], headers=api.write)
    assert r.status_code == 400 and r.json()["message"] == "body: must be a JSON object"
    r = api.client.post(
        "/v1/push/subscriptions", content=b"{" + b" " * 20000 + b"}", headers=api.write
    )
    assert r.status_code == 413
    r = api.client.request("DELETE", "/v1/push/subscriptions", json={"token": "t"})
    assert r.status_code == 401
    assert table_counts(api.engine) == before


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        ({}, "", "give exactly one of endpoint, token"),
        ({"endpoint": ENDPOINT, "token": "t"}, "", "give exactly one of endpoint, token"),
        ({"token": 5}, "token", "must be a non-empty string"),
        ({"token": "t", "extra": 1}, "extra", "unknown field"),
    ],
)
def test_a_bad_unsubscribe_names_the_field(api: Api, body: dict[str, Any], where: str, reason: str):
    api.subscribe(userId="u1", fcm={"token": "t", "platform": "ios"})
    answer = api.unsubscribe(400, **body)
    assert {"where": where, "reason": reason} in answer["errors"], answer
    assert api.rows()[0].revoked_at is None
