"""Channel settings through the API on SQLite and PostgreSQL: validation with the bad field
named and nothing stored, secrets redacted and kept on "***", the "test" button against a
real SMTP server and a fake SMS gateway over HTTP, and the dispatcher delivering with the
stored configuration and picking up a change without a restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.api.app import create_app
from rapport.clock import SimulatedClock
from rapport.customers.timeline import timeline
from rapport.messaging.channel_config import REDACTED, load_channels
from rapport.messaging.channels.email_mime import message_id
from rapport.messaging.channels.webpush import generate_vapid_keys
from rapport.pipeline import Pipeline
from rapport.settings import Settings
from rapport.store.tables import app_settings
from rapport.worker import ConfiguredDispatcher
from tests import smtp_server
from tests.channel_fakes import Recorded, serve
from tests.conftest import bearer
from tests.delivery_helpers import message, put, row
from tests.helpers import table_counts
from tests.shop_helpers import add_customer

GATEWAY_KEY = "Bearer gw-key"


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def mail() -> Iterator[tuple[smtp_server.MailStore, int]]:
    store = smtp_server.MailStore()
    server, port = smtp_server.start(store)
    yield store, port
    server.stop()


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[Recorded]]]:
    received: list[Recorded] = []

    async def sms(request: Request) -> Response:
        body = await request.body()
        received.append(Recorded(request.method, request.url.path, dict(request.headers), body))
        if request.headers.get("authorization") != GATEWAY_KEY:
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"messages": [{"id": f"gw-{len(received)}"}]})

    with serve(Starlette(routes=[Route("/v1/sms", sms, methods=["POST"])])) as url:
        yield url, received


def smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "sender": "Shop <news@shop.example>",
        **extra,
    }


def full_config(rsa_pem: str, sms_url: str = "http://127.0.0.1:9/v1/sms") -> dict[str, Any]:
    vapid = generate_vapid_keys()
    return {
        "email": smtp(
            2525,
            username="mailer",
            password="smtp-pass",
            dkim=[{"domain": "shop.example", "selector": "rsa2026", "private_key": rsa_pem}],
        ),
        "sms": {
            "backend": "http",
            "url": sms_url,
            "auth_header": ["Authorization", GATEWAY_KEY],
            "body_template": {"to": "{to}", "text": "{text}"},
            "id_path": "messages.0.id",
            "rate": 10,
        },
        "webpush": {
            "backend": "webpush",
            "vapid_public_key": vapid.public_key,
            "vapid_private_key": vapid.private_key,
            "subject": "mailto:ops@shop.example",
        },
        "push": {
            "backend": "fcm",
            "project_id": "shop-app",
            "service_account": {
                "client_email": "rapport@shop-app.iam.example",
                "private_key": rsa_pem,
                "private_key_id": "k1",
                "token_uri": "https://oauth2.example/token",
            },
        },
        "telegram": {
            "backend": "telegram",
            "bot_token": "123456:BOT-TOKEN",
            "bot_username": "shop_bot",
            "webhook_secret": "tg-hook-secret",
        },
        "webhook": {"backend": "webhook", "secret": "whsec-channel"},
    }


def stored(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return load_channels(conn).config.model_dump(mode="json", exclude_none=True)


def test_secrets_are_redacted_and_kept_when_sent_back(
    client: TestClient, secret_key: str, engine: sa.Engine, rsa_pem: str
) -> None:
    auth = bearer(secret_key)
    assert client.get("/api/channels", headers=auth).json() == {}
    answer = client.put("/api/channels", headers=auth, json=full_config(rsa_pem))
    assert answer.status_code == 200, answer.text
    shown = client.get("/api/channels", headers=auth).json()
    assert shown == answer.json()
    assert shown["email"]["password"] == REDACTED
    assert shown["email"]["dkim"][0]["private_key"] == REDACTED
    assert shown["sms"]["auth_header"] == ["Authorization", REDACTED]
    assert shown["webpush"]["vapid_private_key"] == REDACTED
    assert shown["webpush"]["vapid_public_key"] != REDACTED  # the browser needs it
    assert shown["push"]["service_account"]["private_key"] == REDACTED
    assert shown["push"]["service_account"]["client_email"] == "rapport@shop-app.iam.example"
    assert shown["telegram"]["bot_token"] == REDACTED
    assert shown["telegram"]["webhook_secret"] == REDACTED
    assert shown["telegram"]["bot_username"] == "shop_bot"
    assert shown["webhook"]["secret"] == REDACTED
    assert "smtp-pass" not in answer.text and "BOT-TOKEN" not in answer.text
    before = stored(engine)

    # The settings page sends back what it was shown, with one change.
    shown["email"]["port"] = 587
    again = client.put("/api/channels", headers=auth, json=shown)
    assert again.status_code == 200, again.text
    after = stored(engine)
    assert after["email"]["port"] == 587
    assert after["email"]["password"] == "smtp-pass"
    assert after["email"]["dkim"][0]["private_key"] == rsa_pem
    after["email"]["port"] = 2525
    assert after == before

    # A new secret replaces the stored one.
    shown["telegram"]["bot_token"] = "999:NEW"
    client.put("/api/channels", headers=auth, json=shown)
    assert stored(engine)["telegram"]["bot_token"] == "999:NEW"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"email": {"backend": "smtp", "port": 70000}}, "email.port"),
        ({"email": {"backend": "carrier-pigeon"}}, "email.backend"),
        ({"email": {"port": 25}}, "email.backend"),
        ({"email": {"backend": "smtp", "pool_size": "many"}}, "email.pool_size"),
        ({"sms": {"backend": "http", "url": "ftp://gateway"}}, "sms.url"),
        (
            {
                "sms": {
                    "backend": "smpp",
                    "host": "smsc",
                    "system_id": "x",
                    "password": REDACTED,
                    "source_addr": "Shop",
                }
            },
            "sms.password",
        ),
        (
            {
                "email": {
                    "backend": "smtp",
                    "dkim": [{"domain": "d", "selector": "s", "private_key": "not a key"}],
                }
            },
            "email.dkim[0].private_key",
        ),
        ({"webhook": {"backend": "webhook", "secret": "s", "colour": "red"}}, "webhook.colour"),
        ({"fax": {"backend": "memory"}}, "fax"),
        # Valid as JSON, but the backend cannot be made from it.
        (
            {
                "webpush": {
                    "backend": "webpush",
                    "vapid_public_key": "x",
                    "vapid_private_key": "not-a-key",
                    "subject": "mailto:a@b.example",
                }
            },
            "webpush",
        ),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    client: TestClient, secret_key: str, engine: sa.Engine, change: dict[str, Any], where: str
) -> None:
    auth = bearer(secret_key)
    assert client.put(
        "/api/channels", headers=auth, json={"email": {"backend": "memory"}}
    ).is_success
    before = table_counts(engine), stored(engine)
    answer = client.put("/api/channels", headers=auth, json=change)
    assert answer.status_code == 422, answer.text
    assert where in [e["where"] for e in answer.json()["errors"]], answer.json()
    channel = where.split(".")[0].split("[")[0]
    if channel != "fax":
        section = change[channel]
        patched = client.patch(f"/api/channels/{channel}", headers=auth, json=section)
        assert patched.status_code == 422, patched.text
    assert (table_counts(engine), stored(engine)) == before


def test_patch_and_delete_one_channel(
    client: TestClient, secret_key: str, engine: sa.Engine, rsa_pem: str
) -> None:
    auth = bearer(secret_key)
    client.put("/api/channels", headers=auth, json=full_config(rsa_pem))
    # Fields given are laid over the stored section; the password stays.
    answer = client.patch(
        "/api/channels/email", headers=auth, json={"port": 465, "security": "tls"}
    )
    assert answer.status_code == 200, answer.text
    email = stored(engine)["email"]
    assert (email["port"], email["security"], email["password"]) == (465, "tls", "smtp-pass")
    # Another backend replaces the section.
    client.patch("/api/channels/sms", headers=auth, json={"backend": "memory"})
    assert stored(engine)["sms"] == {"backend": "memory"}
    assert client.delete("/api/channels/telegram", headers=auth).status_code == 200
    assert "telegram" not in stored(engine)
    assert "telegram" not in client.get("/api/channels", headers=auth).json()
    assert client.patch("/api/channels/fax", headers=auth, json={}).status_code == 404
    assert client.get("/api/channels").status_code == 401


def test_test_button_sends_through_smtp_now(
    client: TestClient, secret_key: str, engine: sa.Engine, mail: Any
) -> None:
    store, port = mail
    auth = bearer(secret_key)
    client.put("/api/channels", headers=auth, json={"email": smtp(port)})
    answer = client.post("/api/channels/email/test", headers=auth, json={"to": "ops@shop.example"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "sent" and "queued as Q1" in result["provider_id"]
    [received] = store.messages
    assert received.rcpt_tos == ["ops@shop.example"]
    assert b"Subject: [TEST] Rapport channel test" in received.data
    assert table_counts(engine)["outbox"] == 0  # not through the outbox

    store.reject.add("nobody@shop.example")
    refused = client.post(
        "/api/channels/email/test", headers=auth, json={"to": "nobody@shop.example"}
    )
    assert refused.json()["status"] == "rejected" and refused.json()["error"].startswith("550")


def test_test_button_against_an_http_sms_gateway(
    client: TestClient, secret_key: str, gateway: Any, rsa_pem: str
) -> None:
    url, received = gateway
    auth = bearer(secret_key)
    config = {"sms": full_config(rsa_pem, f"{url}/v1/sms")["sms"]}
    client.put("/api/channels", headers=auth, json=config)
    answer = client.post(
        "/api/channels/sms/test", headers=auth, json={"to": "+79990001122", "text": "Hello"}
    )
    assert answer.json() == {
        "message_id": answer.json()["message_id"],
        "status": "sent",
        "provider_id": "gw-1",
        "error": None,
    }
    assert received[0].json() == {"to": "+79990001122", "text": "Hello"}
    assert received[0].headers["authorization"] == GATEWAY_KEY  # the stored secret, not "***"

    # A wrong key is the operator's problem: failed, with the gateway's answer.
    client.patch("/api/channels/sms", headers=auth, json={"auth_header": ["Authorization", "x"]})
    failed = client.post("/api/channels/sms/test", headers=auth, json={"to": "+79990001122"})
    assert failed.json()["status"] == "failed" and "401" in failed.json()["error"]


def test_test_button_on_an_unconfigured_channel_is_409(client: TestClient, secret_key: str) -> None:
    answer = client.post(
        "/api/channels/telegram/test", headers=bearer(secret_key), json={"to": "1"}
    )
    assert answer.status_code == 409
    assert "not configured" in answer.json()["message"]


def test_dispatcher_delivers_with_the_stored_configuration(
    client: TestClient, secret_key: str, engine: sa.Engine, clock: SimulatedClock, mail: Any
) -> None:
    store, port = mail
    client.put("/api/channels", headers=bearer(secret_key), json={"email": smtp(port)})
    pipeline = Pipeline(engine, clock)
    cid = add_customer(engine, clock.now())
    put(engine, clock.now(), message("campaign:1:customer:1", cid, recipient="anna@shop.example"))
    dispatch = ConfiguredDispatcher(pipeline)
    try:
        report = dispatch.run_once()
    finally:
        dispatch.close()
    assert report.sent == 1
    [received] = store.messages
    assert received.rcpt_tos == ["anna@shop.example"]
    expected = message_id("campaign:1:customer:1", "shop.example")
    assert f"Message-ID: {expected}".encode() in received.data
    assert row(engine, "campaign:1:customer:1")["status"] == "sent"
    with engine.connect() as conn:
        names = [e["name"] for e in timeline(conn, cid)]
    assert "Message Sent" in names


def test_a_changed_configuration_is_picked_up_without_a_restart(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    clock: SimulatedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = bearer(secret_key)
    first, second = smtp_server.MailStore(), smtp_server.MailStore()
    server1, port1 = smtp_server.start(first)
    server2, port2 = smtp_server.start(second)
    dispatch = ConfiguredDispatcher(Pipeline(engine, clock), check_seconds=0)
    try:
        # Nothing configured: the message waits, and the wait is said once.
        put(engine, clock.now(), message("m1"))
        with caplog.at_level(logging.WARNING, logger="rapport.worker"):
            assert dispatch.run_once().claimed == 0
            assert dispatch.run_once().claimed == 0
        waiting = [r for r in caplog.records if "email channel wait" in r.getMessage()]
        assert len(waiting) == 1
        assert row(engine, "m1")["status"] == "queued"

        client.put("/api/channels", headers=auth, json={"email": smtp(port1)})
        assert dispatch.run_once().sent == 1
        old = dispatch.current()
        assert dispatch.current() is old  # unchanged configuration: same dispatcher

        client.patch("/api/channels/email", headers=auth, json={"port": port2})
        put(engine, clock.now(), message("m2"))
        assert dispatch.run_once().sent == 1
        assert dispatch.current() is not old
        assert old._loop.is_closed()  # the old backends were closed with it
        assert [m.rcpt_tos for m in first.messages] == [["m1@example.com"]]
        assert [m.rcpt_tos for m in second.messages] == [["m2@example.com"]]
    finally:
        dispatch.close()
        server1.stop()
        server2.stop()


def test_serve_runs_the_dispatcher_and_reloads_on_a_change(
    settings: Settings, engine: sa.Engine, clock: SimulatedClock, secret_key: str, mail: Any
) -> None:
    store, port = mail
    settings.dispatch = True
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app) as client:
        put(engine, clock.now(), message("welcome:1", recipient="new@shop.example"))
        answer = client.put("/api/channels", headers=bearer(secret_key), json={"email": smtp(port)})
        assert answer.status_code == 200
        deadline = time.monotonic() + 10
        while not store.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.rcpt_tos for m in store.messages] == [["new@shop.example"]]
    assert row(engine, "welcome:1")["status"] == "sent"


def test_configuration_is_one_settings_row(
    client: TestClient, secret_key: str, engine: sa.Engine
) -> None:
    auth = bearer(secret_key)
    client.put("/api/channels", headers=auth, json={"email": {"backend": "memory"}})
    client.put("/api/channels", headers=auth, json={"sms": {"backend": "memory"}})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(app_settings).where(app_settings.c.key == "channels")).all()
    assert [r.value for r in rows] == [{"sms": {"backend": "memory"}}]


def test_smpp_receipts_queued_by_the_listener_become_events(
    client: TestClient, secret_key: str, engine: sa.Engine, clock: SimulatedClock
) -> None:
    client.put("/api/channels", headers=bearer(secret_key), json={"sms": {"backend": "memory"}})
    cid = add_customer(engine, clock.now())
    put(engine, clock.now(), message("sms:1", cid, channel="sms", recipient="+79990001122"))
    dispatch = ConfiguredDispatcher(Pipeline(engine, clock))
    try:
        assert dispatch.run_once().sent == 1
        smsc_id = row(engine, "sms:1")["provider_id"]
        # What the SMPP backend's listener thread does with each receipt.
        dispatch.receipts.put((smsc_id, "DELIVRD"))
        dispatch.receipts.put(("unknown-id", "DELIVRD"))
        dispatch.run_once()
        assert dispatch.receipts.empty()
    finally:
        dispatch.close()
    with engine.connect() as conn:
        [delivered] = timeline(conn, cid, names=["Message Delivered"])
    assert delivered["properties"]["message_id"] == "sms:1"
