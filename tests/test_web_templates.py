"""The Templates pages on SQLite and PostgreSQL: the editor saves what the API would save,
previews a draft live in Russian and English (for a sample customer or a chosen one, the
HTML in a sandboxed frame), shows a template error with its line and column and saves
nothing, sends a test through a real SMTP server on loopback, and is read-only for
analysts and viewers."""

from __future__ import annotations

import email
import html
import re
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.messaging.templates.store import get_template
from rapport.store.engine import writing
from rapport.store.tables import customers, templates
from tests import smtp_server
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    login,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in

MJML = {
    "ru": """<mjml><mj-body><mj-section><mj-column>
<mj-text>Здравствуйте, {{ customer.first_name }}!</mj-text>
<mj-text>Заказов: {{ customer.orders_count }}</mj-text>
<mj-button href="https://shop.example/new">Смотреть</mj-button>
</mj-column></mj-section></mj-body></mjml>""",
    "en": """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello, {{ customer.first_name }}!</mj-text>
<mj-button href="https://shop.example/new">Look</mj-button>
</mj-column></mj-section></mj-body></mjml>""",
}
SUBJECTS = {"ru": "{{ customer.first_name }}, новинки", "en": "{{ customer.first_name }}, new in"}


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/templates")


def _fields(token: str, name: str = "news", **extra: Any) -> dict[str, Any]:
    data = {
        "csrf_token": token,
        "name": name,
        "channel": "email",
        "kind": "mjml",
        "default_locale": "ru",
        "ru-subject": SUBJECTS["ru"],
        "ru-body": MJML["ru"],
        "en-subject": SUBJECTS["en"],
        "en-body": MJML["en"],
        "customer_id": "",
    }
    return data | extra


def _customer(engine: sa.Engine, **columns: Any) -> int:
    with writing(engine) as conn:
        return int(
            conn.execute(
                customers.insert()
                .values(created_at=T0, updated_at=T0, traits={}, **columns)
                .returning(customers.c.id)
            ).scalar_one()
        )


def _subjects(part: str) -> dict[str, str]:
    """Each locale's rendered subject in the preview partial."""
    found = re.findall(
        r'data-locale="(\w+)".*?<span class="preview-subject">([^<]*)</span>', part, re.S
    )
    return {loc: html.unescape(subject) for loc, subject in found}


def test_edit_a_template_with_a_live_preview_in_russian_and_english(
    web: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    token = signed_in(web, engine, "marketer")
    assert web.get("/templates/new").status_code == 200
    zoya = _customer(engine, first_name="Зоя", email="zoya@shop.example", locale="ru")
    before = table_counts(engine)

    part = web.post("/templates/preview", data=_fields(token))
    assert part.status_code == 200 and "<html" not in part.text
    assert _subjects(part.text) == {"ru": "Анна, новинки", "en": "Anna, new in"}
    assert "sample customer" in part.text
    # Each language's HTML goes into its own sandboxed frame, posted there by app.js.
    for loc in ("ru", "en"):
        assert f'<iframe class="message-frame" name="template-frame-{loc}" sandbox' in part.text
        assert f'target="template-frame-{loc}" data-frame-post' in part.text
    frame = web.post("/templates/frame", data=_fields(token, frame_locale="ru"))
    assert frame.status_code == 200 and "Здравствуйте, Анна!" in frame.text
    assert "Заказов: 3" in frame.text  # the sample customer's orders
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"

    # For a chosen customer, with the real renderer (money and names from the card).
    part = web.post("/templates/preview", data=_fields(token, customer_id=str(zoya)))
    assert _subjects(part.text) == {"ru": "Зоя, новинки", "en": "Зоя, new in"}
    assert f"(#{zoya})" in text_of(part.text)
    frame = web.post("/templates/frame", data=_fields(token, frame_locale="en", customer_id=zoya))
    assert "Hello, Зоя!" in frame.text
    found = web.get("/templates/customers", params={"q": str(zoya)})
    assert f'data-pick-customer="{zoya}"' in found.text

    # A draft written in one language only previews that language for both readers.
    ru_only = _fields(token, **{"en-subject": "", "en-body": ""})
    part = web.post("/templates/preview", data=ru_only)
    assert _subjects(part.text) == {"ru": "Анна, новинки", "en": "Anna, новинки"}
    assert "no en version" in part.text
    assert table_counts(engine) == before  # previews store nothing

    saved = web.post("/templates", data=_fields(token), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    template_id = int(saved.headers["location"].split("/")[2].split("?")[0])
    api = web.post(
        "/api/templates",
        headers=bearer(secret_key),
        json={
            "name": "news through the API",
            "channel": "email",
            "kind": "mjml",
            "default_locale": "ru",
            "variants": {
                loc: {"subject": SUBJECTS[loc], "body": MJML[loc]} for loc in ("ru", "en")
            },
        },
    )
    with engine.connect() as conn:
        mine, theirs = get_template(conn, template_id), get_template(conn, api.json()["id"])
    assert mine.variants == theirs.variants and mine.compiled == theirs.compiled
    assert (mine.kind, mine.default_locale, mine.version) == ("mjml", "ru", 1)
    [entry] = audit_rows(engine, "template.create", kind="user")
    assert entry.details == {"name": "news", "channel": "email", "locales": ["en", "ru"]}

    listing = text_of(web.get("/templates").text)
    assert "news" in listing and "mjml" in listing and "en ru" in listing

    page = web.get(saved.headers["location"])
    assert "The template was saved." in text_of(page.text)
    assert _subjects(page.text) == {"ru": "Анна, новинки", "en": "Anna, new in"}
    src = f"/templates/{template_id}/frame/ru.html"
    assert f'src="{src}"' in page.text
    assert "Здравствуйте, Анна!" in web.get(src).text
    assert "Здравствуйте, Зоя!" in web.get(src, params={"customer_id": zoya}).text

    changed = web.post(
        f"/templates/{template_id}",
        data=_fields(token, **{"en-subject": "{{ customer.first_name }}, fresh"}),
        follow_redirects=False,
    )
    assert changed.status_code == 303
    with engine.connect() as conn:
        tpl = get_template(conn, template_id)
    assert tpl.version == 2 and tpl.variants["en"]["subject"].endswith("fresh")
    assert audit_rows(engine, "template.update", kind="user")[0].details["version"] == 2


def test_a_template_error_shows_its_line_and_column_and_nothing_is_saved(
    web: TestClient, engine: sa.Engine
) -> None:
    token = signed_in(web, engine, "marketer")
    broken = "<mjml><mj-body><mj-section><mj-column>\n<mj-text>\n  {% if customer.first_name %}Hi{% endfro %}\n</mj-text>\n</mj-column></mj-section></mj-body></mjml>"
    before = table_counts(engine)

    answer = web.post("/templates", data=_fields(token, **{"en-body": broken}))
    assert answer.status_code == 422
    found = re.search(r'name="en-body".*?<span class="field-problem">([^<]*)', answer.text, re.S)
    assert found, answer.text
    beside = html.unescape(found.group(1))
    assert beside.startswith("line 3, column ") and "endfro" in beside
    assert "tab-label has-problems" in answer.text  # the English tab is marked
    assert html.escape(broken, quote=False) in answer.text  # the text as typed
    assert table_counts(engine) == before

    # The live preview says the same at once, and stores nothing either.
    part = web.post("/templates/preview", data=_fields(token, **{"en-body": broken}))
    assert part.status_code == 200
    assert "variants.en.body:3:" in part.text and "does not compile" in part.text
    frame = web.post(
        "/templates/frame", data=_fields(token, frame_locale="en", **{"en-body": broken})
    )
    assert frame.status_code == 422 and "variants.en.body:3:" in frame.text

    saved = web.post("/templates", data=_fields(token), follow_redirects=False)
    template_id = int(saved.headers["location"].split("/")[2].split("?")[0])
    bad_subject = web.post(
        f"/templates/{template_id}", data=_fields(token, **{"ru-subject": "{{ customer."})
    )
    assert bad_subject.status_code == 422
    assert "line 1, column" in bad_subject.text
    taken = web.post("/templates", data=_fields(token))
    assert taken.status_code == 422 and "exists" in taken.text
    with engine.connect() as conn:
        assert get_template(conn, template_id).version == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(templates)).scalar() == 1


@pytest.fixture
def mail() -> Iterator[tuple[smtp_server.MailStore, int]]:
    store = smtp_server.MailStore()
    server, port = smtp_server.start(store)
    yield store, port
    server.stop()


def test_a_test_send_arrives_at_the_smtp_server(
    web: TestClient, engine: sa.Engine, secret_key: str, mail: Any
) -> None:
    store, port = mail
    token = signed_in(web, engine, "marketer")
    saved = web.post("/templates", data=_fields(token), follow_redirects=False)
    template_id = int(saved.headers["location"].split("/")[2].split("?")[0])
    zoya = _customer(engine, first_name="Зоя", email="zoya@shop.example", locale="ru")
    before = table_counts(engine)

    def send(**fields: Any) -> Any:
        data = {"csrf_token": token, "customer_id": str(zoya), "to": "", "locale": ""} | fields
        return web.post(f"/templates/{template_id}/test-send", data=data, follow_redirects=False)

    not_configured = send(to="me@shop.example")
    assert not_configured.status_code == 422
    assert "email channel is not configured" in not_configured.text
    smtp = {"backend": "smtp", "port": port, "security": "plain", "sender": "news@shop.example"}
    assert (
        web.put("/api/channels", headers=bearer(secret_key), json={"email": smtp}).status_code
        == 200
    )

    answer = send(to="marketer@shop.example", locale="en")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/templates/{template_id}?test=sent&customer_id={zoya}"
    [received] = store.messages
    assert received.rcpt_tos == ["marketer@shop.example"]
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert parsed["Subject"] == "[TEST] Зоя, new in"
    [entry] = audit_rows(engine, "template.test_send", kind="user")
    assert entry.details["to"] == "marketer@shop.example" and entry.details["status"] == "sent"
    assert "The test message was sent." in text_of(web.get(answer.headers["location"]).text)

    assert send().status_code == 303  # to the customer's own address
    assert store.messages[1].rcpt_tos == ["zoya@shop.example"]

    no_customer = send(customer_id="")
    assert no_customer.status_code == 422 and "choose the customer" in no_customer.text
    unknown = send(customer_id=str(zoya + 1000), to="me@shop.example")
    assert unknown.status_code == 422 and f"no customer {zoya + 1000}" in unknown.text
    nobody = _customer(engine, first_name="Без адреса")
    no_address = send(customer_id=str(nobody))
    assert no_address.status_code == 422 and "no email address" in no_address.text
    assert len(store.messages) == 2
    after = table_counts(engine)
    for table in ("events", "outbox", "templates"):
        assert after[table] == before[table], table


def test_analysts_and_viewers_read_but_change_nothing(web: TestClient, engine: sa.Engine) -> None:
    token = signed_in(web, engine, "marketer")
    saved = web.post("/templates", data=_fields(token), follow_redirects=False)
    template_id = int(saved.headers["location"].split("/")[2].split("?")[0])
    zoya = _customer(engine, first_name="Зоя", email="zoya@shop.example")
    for role in ("analyst", "viewer"):
        token = signed_in(web, engine, role)
        before = table_counts(engine)
        assert "New template" not in web.get("/templates").text
        page = web.get(f"/templates/{template_id}")
        assert page.status_code == 200 and "Read only" in page.text
        forms = re.findall(r'<form method="post" action="([^"]+)"', page.text)
        assert forms == ["/logout"], (role, forms)
        assert _subjects(page.text)["ru"] == "Анна, новинки"  # the saved version, sample
        assert web.get("/templates/new").status_code == 403
        for path in ("/templates", f"/templates/{template_id}", "/templates/preview"):
            assert web.post(path, data=_fields(token)).status_code == 403, (role, path)
        assert (
            web.post("/templates/frame", data=_fields(token, frame_locale="ru")).status_code == 403
        )
        test = {"csrf_token": token, "customer_id": str(zoya)}
        assert web.post(f"/templates/{template_id}/test-send", data=test).status_code == 403
        assert table_counts(engine) == before
    # A viewer does not see a real customer's message; an analyst may.
    frame = f"/templates/{template_id}/frame/ru.html?customer_id={zoya}"
    assert web.get(frame).status_code == 403
    assert "Зоя" not in web.get(f"/templates/{template_id}?customer_id={zoya}").text
    web.cookies.clear()
    assert login(web, "analyst@example.com").status_code == 303
    assert "Здравствуйте, Зоя!" in web.get(frame).text
