"""A template's test send on SQLite and PostgreSQL: rendered for a real customer, sent at
once through the configured backend (a real SMTP server, a fake SMS gateway over HTTP),
marked "[TEST] ", and leaving nothing on the customer's card or in the outbox."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.catalog.products import upsert_products
from rapport.store.engine import writing
from rapport.store.tables import customers
from tests import smtp_server
from tests.channel_fakes import Recorded, serve
from tests.conftest import T0, bearer
from tests.helpers import table_counts

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ customer.first_name }}, <a href="https://shop.example/new">new in</a></mj-text>
{% for p in products %}<mj-text>{{ p.name }}</mj-text>{% endfor %}
<mj-text><a href="{{ unsubscribe_url }}">unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


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
        received.append(
            Recorded(request.method, request.url.path, dict(request.headers), await request.body())
        )
        return JSONResponse({"id": f"gw-{len(received)}"})

    with serve(Starlette(routes=[Route("/sms", sms, methods=["POST"])])) as url:
        yield url, received


def _customer(engine: sa.Engine, **columns: Any) -> int:
    with writing(engine) as conn:
        cid = conn.execute(
            customers.insert()
            .values(created_at=T0, updated_at=T0, traits={}, first_name="Анна", **columns)
            .returning(customers.c.id)
        ).scalar_one()
        upsert_products(conn, [{"id": "p1", "name": "Шарф", "price": 1490.0}], T0)
    return int(cid)


def _template(client: TestClient, auth: dict[str, str], **body: Any) -> int:
    answer = client.post("/api/templates", headers=auth, json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _email_template(client: TestClient, auth: dict[str, str]) -> int:
    return _template(
        client,
        auth,
        name="digest",
        variants={
            "ru": {"subject": "{{ customer.first_name }}, подборка", "body": MJML},
            "en": {"subject": "{{ customer.first_name }}, picks", "body": MJML},
        },
    )


def _parsed(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _quiet(engine: sa.Engine) -> dict[str, int]:
    """What a test send must not touch (the link signing key may be made on first use)."""
    counts = table_counts(engine)
    return {name: counts[name] for name in ("events", "outbox", "customers", "consents")}


def test_email_test_send_goes_out_now_and_leaves_no_trace(
    client: TestClient, secret_key: str, engine: sa.Engine, mail: Any
) -> None:
    store, port = mail
    auth = bearer(secret_key)
    smtp = {"backend": "smtp", "port": port, "security": "plain", "sender": "news@shop.example"}
    client.put("/api/channels", headers=auth, json={"email": smtp})
    cid = _customer(engine, email="anna@shop.example", locale="ru-RU")
    tid = _email_template(client, auth)
    before = _quiet(engine)

    answer = client.post(
        f"/api/templates/{tid}/test-send",
        headers=auth,
        json={"customer_id": cid, "product_ids": ["p1"]},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "sent" and result["to"] == "anna@shop.example"
    assert result["message_id"].startswith(f"test:{tid}:")
    assert result["subject"] == "[TEST] Анна, подборка"
    [received] = store.messages
    assert received.rcpt_tos == ["anna@shop.example"]
    sent = _parsed(received.data)
    assert sent["Subject"] == "[TEST] Анна, подборка"
    html = sent.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "Шарф" in content
    # Opens and clicks are not tracked: links stay as written, no pixel.
    assert 'href="https://shop.example/new"' in content
    assert "/t/o/" not in content and "/t/c/" not in content
    assert sent["List-Unsubscribe"] is not None  # the message is what customers get
    assert _quiet(engine) == before

    # Elsewhere, in another language.
    again = client.post(
        f"/api/templates/{tid}/test-send",
        headers=auth,
        json={"customer_id": cid, "to": "marketer@shop.example", "locale": "en"},
    )
    assert again.json()["status"] == "sent"
    assert store.messages[1].rcpt_tos == ["marketer@shop.example"]
    assert _parsed(store.messages[1].data)["Subject"] == "[TEST] Анна, picks"


def test_sms_test_send_marks_the_text(
    client: TestClient, secret_key: str, engine: sa.Engine, gateway: Any
) -> None:
    url, received = gateway
    auth = bearer(secret_key)
    client.put(
        "/api/channels", headers=auth, json={"sms": {"backend": "http", "url": f"{url}/sms"}}
    )
    cid = _customer(engine, phone="+79990001122")
    tid = _template(
        client,
        auth,
        name="code",
        channel="sms",
        kind="text",
        variants={"ru": {"body": "{{ customer.first_name }}, ваш код 1234"}},
    )
    answer = client.post(f"/api/templates/{tid}/test-send", headers=auth, json={"customer_id": cid})
    assert answer.json()["status"] == "sent" and answer.json()["provider_id"] == "gw-1"
    assert received[0].json()["to"] == "+79990001122"
    assert received[0].json()["text"] == "[TEST] Анна, ваш код 1234"


def test_test_send_refusals(
    client: TestClient, secret_key: str, engine: sa.Engine, mail: Any
) -> None:
    _, port = mail
    auth = bearer(secret_key)
    tid = _email_template(client, auth)
    cid = _customer(engine)  # no email address
    before = _quiet(engine)

    def send(template_id: int, **body: Any) -> Any:
        return client.post(f"/api/templates/{template_id}/test-send", headers=auth, json=body)

    not_configured = send(tid, customer_id=cid, to="a@shop.example")
    assert not_configured.status_code == 409
    assert "email channel is not configured" in not_configured.json()["message"]

    smtp = {"backend": "smtp", "port": port, "security": "plain"}
    client.put("/api/channels", headers=auth, json={"email": smtp})
    no_address = send(tid, customer_id=cid)
    assert no_address.status_code == 422 and "no email address" in no_address.json()["message"]
    assert send(tid, customer_id=cid + 100, to="a@shop.example").status_code == 404
    assert send(tid + 100, customer_id=cid).status_code == 404
    assert send(tid, customer_id="x").status_code == 422
    assert _quiet(engine) == before
