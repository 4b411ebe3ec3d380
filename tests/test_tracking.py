"""Open pixel, click redirect, one-click unsubscribe and the preference page, over HTTP on
SQLite and PostgreSQL: what each records on the card, that forged links record nothing,
and that merged and erased customers are handled."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.merge import merge_customers
from rapport.customers.privacy import erase_customer
from rapport.messaging.compose import Origin, Tracking, compose
from rapport.messaging.outbox import QueuedMessage, enqueue, unsubscribed
from rapport.messaging.templates.store import create_template
from rapport.messaging.tracking import Links, sign
from rapport.public_links import links_of
from rapport.store.engine import writing
from rapport.store.tables import consents, customers, outbox
from tests.conftest import T0, basic, bearer
from tests.helpers import event_rows, table_counts

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _customer(engine: sa.Engine, **columns: Any) -> int:
    with writing(engine) as conn:
        return int(
            conn.execute(
                customers.insert()
                .values(created_at=T0, updated_at=T0, traits={}, **columns)
                .returning(customers.c.id)
            ).scalar_one()
        )


def _message(engine: sa.Engine, key: str, customer_id: int | None, **kw: Any) -> None:
    options: dict[str, Any] = {
        "channel": "email",
        "recipient": "anna@example.com",
        "body_text": "Hello",
        "subject": "Hi",
        "campaign_id": 12,
        "template_id": 7,
        "step": 2,
        "variant": "B",
    }
    options.update(kw)
    with writing(engine) as conn:
        enqueue(conn, [QueuedMessage(idempotency_key=key, customer_id=customer_id, **options)], T0)


def _consent(engine: sa.Engine, cid: int, channel: str, status: str, at: Any = T0) -> None:
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, channel, status, "api", at)])


def _consents(engine: sa.Engine, cid: int) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(consents).where(consents.c.customer_id == cid))
        return {r.channel: (r.status, r.source) for r in rows}


def _links(app: FastAPI) -> Links:
    return links_of(app)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _names(engine: sa.Engine) -> list[str]:
    return [r.name for r in event_rows(engine)]


MESSAGE_PROPS = {
    "message_id": "campaign:12:customer:1",
    "channel": "email",
    "campaign_id": "12",
    "template_id": "7",
    "step": "2",
    "variant": "B",
}


# -- open pixel -------------------------------------------------------------------------


def test_every_open_is_recorded_with_the_message_properties(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    key = "campaign:12:customer:1"
    _message(engine, key, cid)
    pixel = _path(_links(app).open_pixel(key))
    for _ in range(2):
        r = client.get(pixel)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
        assert r.content.startswith(b"GIF89a") and len(r.content) == 42
        assert "no-store" in r.headers["cache-control"]
        assert r.headers["pragma"] == "no-cache"
    opened = event_rows(engine, name="Message Opened")
    assert len(opened) == 2
    assert {r.customer_id for r in opened} == {cid}
    assert opened[0].properties == {**MESSAGE_PROPS, "message_id": key}
    assert opened[0].type == "system"


def test_open_of_an_unknown_message_is_404_and_of_an_erased_customer_410(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    links = _links(app)
    r = client.get(_path(links.open_pixel("never-queued")))
    assert r.status_code == 404 and r.headers["content-type"] == "image/gif"
    cid = _customer(engine, email="gone@example.com")
    _message(engine, "m-gone", cid)
    with writing(engine) as conn:
        erase_customer(conn, cid, T0)
    r = client.get(_path(links.open_pixel("m-gone")))
    assert r.status_code == 410 and r.content.startswith(b"GIF89a")
    assert event_rows(engine, name="Message Opened") == []


# -- click --------------------------------------------------------------------------------


def test_click_redirects_to_exactly_the_signed_url(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    key = "campaign:12:customer:1"
    _message(engine, key, cid)
    target = "https://shop.example/sale/boots?utm_source=rapport&size=38&q=a%20b#top"
    r = client.get(_path(_links(app).click(key, target)), follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == target
    assert "no-store" in r.headers["cache-control"]
    (clicked,) = event_rows(engine, name="Message Clicked")
    assert clicked.customer_id == cid
    assert clicked.properties == {**MESSAGE_PROPS, "url": target}


def test_click_of_an_unknown_message_still_redirects_and_records_nothing(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    r = client.get(
        _path(_links(app).click("preview", "http://shop.example/")), follow_redirects=False
    )
    assert r.status_code == 302 and r.headers["location"] == "http://shop.example/"
    assert event_rows(engine, name="Message Clicked") == []


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example/",
        "https://x.example/\r\nSet-Cookie: a=b",
    ],
)
def test_click_never_redirects_outside_http(
    client: TestClient, app: FastAPI, engine: sa.Engine, target: str
) -> None:
    links = _links(app)
    before = table_counts(engine)
    token = sign(links.key, "c", "m1", target)
    r = client.get(f"/t/c/{token}", follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert table_counts(engine) == before


# -- bad tokens ---------------------------------------------------------------------------


def _altered_payload(token: str) -> str:
    body, _, mac = token.partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    forged = payload.replace(b"1", b"2") if b"1" in payload else payload + b"x"
    return base64.urlsafe_b64encode(forged).rstrip(b"=").decode() + "." + mac


def _altered_mac(token: str) -> str:
    body, _, mac = token.partition(".")
    return body + "." + ("A" if mac[0] != "A" else "B") + mac[1:]


def _token(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


BAD_TOKENS = {
    "altered payload": _altered_payload,
    "altered mac": _altered_mac,
    "truncated": lambda t: t[: len(t) - 3],
    "mac only": lambda t: t.partition(".")[2],
    "no mac": lambda t: t.partition(".")[0],
    "not base64": lambda t: "%%%%." + t.partition(".")[2],
    "garbage": lambda t: "hello",
}


@pytest.mark.parametrize("how", sorted(BAD_TOKENS))
def test_forged_tokens_are_refused_and_nothing_is_stored(
    client: TestClient, app: FastAPI, engine: sa.Engine, how: str
) -> None:
    cid = _customer(engine, email="anna@example.com", locale="en")
    _consent(engine, cid, "email", "subscribed")
    _message(engine, "m1", cid)
    links = _links(app)
    forge = BAD_TOKENS[how]
    before = table_counts(engine)
    requests = [
        ("GET", "t/o", links.open_pixel("m1")),
        ("GET", "t/c", links.click("m1", "https://shop.example/")),
        ("GET", "u", links.unsubscribe(cid, "email", "m1")),
        ("POST", "u", links.unsubscribe(cid, "email", "m1")),
        ("GET", "p", links.preferences(cid)),
        ("POST", "p", links.preferences(cid)),
    ]
    for method, prefix, url in requests:
        path = f"/{prefix}/{forge(_token(url))}"
        body = "List-Unsubscribe=One-Click" if prefix == "u" else "action=unsubscribe_all"
        r = client.request(
            method,
            path,
            content=body if method == "POST" else None,
            headers=FORM,
            follow_redirects=False,
        )
        assert r.status_code == 400, (method, path, r.status_code)
        assert "location" not in r.headers
    assert table_counts(engine) == before
    assert _consents(engine, cid) == {"email": ("subscribed", "api")}


def test_a_token_of_another_kind_is_refused(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    _consent(engine, cid, "email", "subscribed")
    _message(engine, "m1", cid)
    links = _links(app)
    before = table_counts(engine)
    open_token = _token(links.open_pixel("m1"))
    unsubscribe_token = _token(links.unsubscribe(cid, "email", "m1"))
    preferences_token = _token(links.preferences(cid))
    for method, path in [
        ("POST", f"/u/{open_token}"),  # an open token cannot unsubscribe anyone
        ("POST", f"/u/{preferences_token}"),
        ("POST", f"/p/{unsubscribe_token}"),
        ("GET", f"/t/o/{unsubscribe_token}"),
        ("GET", f"/t/c/{open_token}"),
        ("GET", f"/p/{open_token}"),
    ]:
        r = client.request(
            method,
            path,
            content="List-Unsubscribe=One-Click",
            headers=FORM,
            follow_redirects=False,
        )
        assert r.status_code == 400, (method, path)
    assert table_counts(engine) == before


def test_a_token_signed_with_another_key_is_refused(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    _consent(engine, cid, "email", "subscribed")
    _links(app)  # the server's own key exists before counting
    before = table_counts(engine)
    other = Links("http://x", b"another key")
    r = client.post(_path(other.unsubscribe(cid, "email", "m1")), content="", headers=FORM)
    assert r.status_code == 400
    assert "text/html" in r.headers["content-type"]
    assert table_counts(engine) == before


# -- one-click unsubscribe ------------------------------------------------------------------


def test_one_click_unsubscribe_is_immediate_and_idempotent(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com", locale="en-GB")
    _consent(engine, cid, "email", "subscribed")
    key = "campaign:12:customer:1"
    _message(engine, key, cid)
    url = _path(_links(app).unsubscribe(cid, "email", key))

    r = client.post(url, content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert "unsubscribed from email" in r.text
    assert _consents(engine, cid) == {"email": ("unsubscribed", "unsubscribe-link")}
    with engine.connect() as conn:
        row = conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == key)).one()
        assert unsubscribed(conn, [row]) == {(cid, "email")}  # the dispatcher will skip it

    changed = event_rows(engine, name="Consent Changed")
    assert [e.properties for e in changed] == [
        {
            "channel": "email",
            "status": "unsubscribed",
            "source": "unsubscribe-link",
            "double_opt_in": "none",
        }
    ]
    (unsub,) = event_rows(engine, name="Message Unsubscribed")
    assert unsub.customer_id == cid and unsub.properties == MESSAGE_PROPS

    before = table_counts(engine)
    for body in ("List-Unsubscribe=One-Click", ""):
        again = client.post(url, content=body, headers=ONE_CLICK)
        assert again.status_code == 200
    assert "already unsubscribed from email" in client.get(url).text
    assert table_counts(engine) == before


def test_concurrent_one_click_posts_change_the_consent_once(
    live_server: str, app: FastAPI, engine: sa.Engine
) -> None:
    """A mail provider's POST and the customer's own click can arrive together."""
    cid = _customer(engine, email="anna@example.com")
    _consent(engine, cid, "email", "subscribed")
    _message(engine, "m1", cid)
    url = live_server + _path(_links(app).unsubscribe(cid, "email", "m1"))

    def post(_: int) -> int:
        with httpx.Client(timeout=30) as http:
            return http.post(
                url, content="List-Unsubscribe=One-Click", headers=ONE_CLICK
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(post, range(8))) == [200] * 8
    assert len(event_rows(engine, name="Consent Changed")) == 1
    assert len(event_rows(engine, name="Message Unsubscribed")) == 1


def test_one_click_accepts_an_empty_body_and_multipart(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    links = _links(app)
    first = _customer(engine, email="a@example.com")
    second = _customer(engine, phone="+79990001122")
    r = client.post(_path(links.unsubscribe(first, "email", "m-a")))
    assert r.status_code == 200
    r = client.post(
        _path(links.unsubscribe(second, "sms", "m-b")),
        files={"List-Unsubscribe": (None, "One-Click")},
    )
    assert r.status_code == 200, r.text
    assert _consents(engine, first) == {"email": ("unsubscribed", "unsubscribe-link")}
    assert _consents(engine, second) == {"sms": ("unsubscribed", "unsubscribe-link")}
    # No outbox rows: the consent changes, but there is no message to credit.
    assert event_rows(engine, name="Message Unsubscribed") == []
    assert len(event_rows(engine, name="Consent Changed")) == 2


def test_a_post_that_is_not_one_click_is_refused(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    _consent(engine, cid, "email", "subscribed")
    url = _path(_links(app).unsubscribe(cid, "email", "m1"))
    before = table_counts(engine)
    for body in ("List-Unsubscribe=Maybe", "hello=world", "x" * 20_000):
        r = client.post(url, content=body, headers=ONE_CLICK)
        assert r.status_code == 400
    assert table_counts(engine) == before


def test_get_shows_a_confirmation_and_does_not_unsubscribe(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com", locale="ru-RU")
    _consent(engine, cid, "email", "subscribed")
    url = _path(_links(app).unsubscribe(cid, "email", "m1"))
    before = table_counts(engine)
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert 'method="post"' in r.text
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert "Отписаться" in r.text and "«Электронная почта»" in r.text
    action = re.search(r'action="([^"]+)"', r.text)
    assert action is not None and url.endswith("/" + unescape(action.group(1)))
    assert table_counts(engine) == before
    assert _consents(engine, cid) == {"email": ("subscribed", "api")}
    english = client.get(url + "?lang=en")
    assert "Unsubscribe" in english.text and 'lang="en"' in english.text


def test_unsubscribe_wins_over_a_decision_stored_with_a_clock_ahead(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com")
    _consent(engine, cid, "email", "subscribed", at=T0 + timedelta(days=1))
    r = client.post(_path(_links(app).unsubscribe(cid, "email", "m1")))
    assert r.status_code == 200
    assert _consents(engine, cid)["email"][0] == "unsubscribed"


# -- preference page ----------------------------------------------------------------------


def _boxes(html: str) -> dict[str, bool]:
    return {
        m.group(1): bool(m.group(2))
        for m in re.finditer(r'name="channel" value="(\w+)"( checked)?', html)
    }


@pytest.mark.parametrize(
    ("locale", "query", "words"),
    [
        ("ru-RU", "", ("Настройки подписок", "Сохранить", "Настройки сохранены.")),
        ("ru-RU", "?lang=en", ("Subscription preferences", "Save", "Your preferences are saved.")),
        ("en", "", ("Subscription preferences", "Save", "Your preferences are saved.")),
    ],
)
def test_preference_page_round_trip(
    client: TestClient,
    app: FastAPI,
    engine: sa.Engine,
    locale: str,
    query: str,
    words: tuple[str, str, str],
) -> None:
    title, save, saved = words
    cid = _customer(engine, email="anna.petrova@example.com", phone="+79991234567", locale=locale)
    _consent(engine, cid, "email", "subscribed")
    _consent(engine, cid, "sms", "subscribed")
    _consent(engine, cid, "whatsapp", "pending")
    url = _path(_links(app).preferences(cid))

    page = client.get(url + query)
    assert page.status_code == 200
    assert title in page.text and save in page.text and saved not in page.text
    assert "a***a@example.com" in page.text and "anna.petrova" not in page.text
    assert "+7••••••4567" in page.text and "1234567" not in page.text
    assert _boxes(page.text) == {"email": True, "sms": True, "whatsapp": False}

    before = len(event_rows(engine))
    # Keep email, clear sms, leave whatsapp (pending) untouched.
    action = unescape(re.search(r'action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    r = client.post(
        url.rsplit("/", 1)[0] + "/" + action,
        content="channel=email&action=save",
        headers=FORM,
        follow_redirects=False,
    )
    assert r.status_code == 303
    location = r.headers["location"]
    assert "saved=1" in location and ("lang=en" in location) == ("lang=en" in query)

    done = client.get(url.rsplit("/", 1)[0] + "/" + location)
    assert saved in done.text
    assert _boxes(done.text) == {"email": True, "sms": False, "whatsapp": False}
    assert _consents(engine, cid) == {
        "email": ("subscribed", "api"),
        "sms": ("unsubscribed", "preference-page"),
        "whatsapp": ("pending", "api"),
    }
    changes = event_rows(engine)[before:]
    assert [(e.name, e.properties) for e in changes if e.name == "Consent Changed"] == [
        (
            "Consent Changed",
            {
                "channel": "sms",
                "status": "unsubscribed",
                "source": "preference-page",
                "double_opt_in": "none",
            },
        )
    ]


def test_preference_page_subscribes_and_unsubscribes_from_everything(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="bo@example.com", locale="en")
    url = _path(_links(app).preferences(cid))
    page = client.get(url, headers={"Accept-Language": "ru"})
    assert "Subscription preferences" in page.text  # the card's locale wins over the browser
    assert "b***@example.com" in page.text
    assert _boxes(page.text) == {"email": False}  # reachable by email, never decided

    r = client.post(url, content="action=save", headers=FORM, follow_redirects=False)
    assert r.status_code == 303
    assert event_rows(engine, name="Consent Changed") == []  # an untouched box is no change

    client.post(url, content="channel=email&action=save", headers=FORM)
    assert _consents(engine, cid) == {"email": ("subscribed", "preference-page")}
    _consent(engine, cid, "viber", "subscribed")
    client.post(url, content="channel=email&channel=viber&action=unsubscribe_all", headers=FORM)
    assert _consents(engine, cid) == {
        "email": ("unsubscribed", "preference-page"),
        "viber": ("unsubscribed", "preference-page"),
    }
    assert [e.properties["status"] for e in event_rows(engine, name="Consent Changed")] == [
        "subscribed",
        "unsubscribed",
        "unsubscribed",
    ]
    before = table_counts(engine)
    client.post(url, content="action=unsubscribe_all", headers=FORM)
    assert table_counts(engine) == before


def test_preference_page_language_from_the_browser_without_a_card_locale(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="x@example.com")
    url = _path(_links(app).preferences(cid))
    assert (
        "Subscription preferences"
        in client.get(url, headers={"Accept-Language": "de-DE,en;q=0.8,ru;q=0.5"}).text
    )
    assert "Настройки подписок" in client.get(url, headers={"Accept-Language": "fr"}).text


def test_preference_form_with_an_unknown_action_is_refused(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="x@example.com")
    _consent(engine, cid, "email", "subscribed")
    url = _path(_links(app).preferences(cid))
    before = table_counts(engine)
    r = client.post(url, content="action=delete_me", headers=FORM)
    assert r.status_code == 400
    assert table_counts(engine) == before


# -- merged and erased customers ------------------------------------------------------------


def test_links_of_a_merged_customer_act_on_the_survivor(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    survivor = _customer(engine, email="anna@example.com", locale="en")
    loser = _customer(engine, phone="+79990001122")
    _consent(engine, loser, "email", "subscribed")
    _message(engine, "m-old", loser)
    links = _links(app)
    unsubscribe_url = _path(links.unsubscribe(loser, "email", "m-old"))
    preferences_url = _path(links.preferences(loser))
    with writing(engine) as conn:
        merge_customers(conn, survivor, loser, "test", T0)

    assert client.get(_path(links.open_pixel("m-old"))).status_code == 200
    r = client.post(unsubscribe_url, content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200
    assert _consents(engine, survivor) == {"email": ("unsubscribed", "unsubscribe-link")}
    assert _consents(engine, loser) == {}
    recorded = event_rows(engine)
    mine = [
        e
        for e in recorded
        if e.name in ("Message Opened", "Consent Changed", "Message Unsubscribed")
    ]
    assert [e.name for e in mine] == ["Message Opened", "Consent Changed", "Message Unsubscribed"]
    assert {e.customer_id for e in mine} == {survivor}

    page = client.get(preferences_url)
    assert page.status_code == 200
    assert "a***a@example.com" in page.text  # the survivor's email, the loser's phone moved
    assert _boxes(page.text) == {"email": False, "sms": False}


def test_erased_customers_get_410_and_nothing_is_recorded(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    cid = _customer(engine, email="anna@example.com", locale="en")
    _consent(engine, cid, "email", "subscribed")
    _message(engine, "m1", cid)
    links = _links(app)
    with writing(engine) as conn:
        erase_customer(conn, cid, T0)
    before = table_counts(engine)
    for method, url in [
        ("GET", links.unsubscribe(cid, "email", "m1")),
        ("POST", links.unsubscribe(cid, "email", "m1")),
        ("GET", links.preferences(cid)),
        ("POST", links.preferences(cid)),
    ]:
        r = client.request(method, _path(url), content="", headers=FORM)
        assert r.status_code == 410, (method, url)
        assert "text/html" in r.headers["content-type"]
    r = client.get(_path(links.click("m1", "https://shop.example/")), follow_redirects=False)
    assert r.status_code == 302  # the recipient still gets where they wanted to go
    assert table_counts(engine) == before
    assert event_rows(engine, name="Message Clicked") == []


def test_links_for_a_customer_that_never_existed_answer_404(
    client: TestClient, app: FastAPI, engine: sa.Engine
) -> None:
    links = _links(app)
    before = table_counts(engine)
    assert client.get(_path(links.preferences(999))).status_code == 404
    assert client.post(_path(links.unsubscribe(999, "email", "m"))).status_code == 404
    assert table_counts(engine) == before


def test_tracking_routes_stay_out_of_the_openapi_schema(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/customers/{customer_id}/consents" in paths
    assert not any(p.startswith(("/t/", "/u/", "/p/")) for p in paths)
    assert client.get("/docs").status_code == 200


# -- end to end: a composed email's links, clicked, on the card's timeline ------------------

EMAIL = """<html><body>
<p>{{ customer.first_name }}, spring sale!</p>
<p><a href="https://shop.example/sale?from=mail&amp;x=1">See the sale</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · <a href="{{ preferences_url }}">Preferences</a></p>
</body></html>"""


def test_a_composed_email_end_to_end(
    client: TestClient,
    app: FastAPI,
    engine: sa.Engine,
    write_key: str,
    secret_key: str,
) -> None:
    r = client.post(
        "/v1/identify",
        json={
            "userId": "u-1",
            "traits": {
                "email": "anna@example.com",
                "firstName": "Anna",
                "locale": "en-US",
                "consents": {"email": "subscribed"},
            },
        },
        headers=basic(write_key),
    )
    assert r.status_code == 200, r.text
    lookup = client.get("/api/customers", params={"user_id": "u-1"}, headers=bearer(secret_key))
    cid = lookup.json()["customers"][0]["id"]

    now = app.state.clock.now()
    links = links_of(app)  # made outside the transaction: it may store the signing key
    with writing(engine) as conn:
        template = create_template(
            conn,
            name="spring",
            channel="email",
            kind="html",
            variants={"en": {"subject": "Spring sale", "body": EMAIL}},
            now=now,
        )
        msg = compose(
            conn,
            template,
            cid,
            key=f"campaign:3:customer:{cid}",
            now=now,
            tracking=Tracking(links),
            origin=Origin(campaign_id=3),
        )
        app.state.pipeline.record_many(conn, enqueue(conn, [msg], now))
    assert msg.body_html is not None and msg.skip_reason is None
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', msg.body_html)]
    (pixel,) = re.findall(r'<img src="([^"]+)"', msg.body_html)
    click_url, unsubscribe_url, preferences_url = hrefs
    assert "/t/c/" in click_url
    assert unsubscribe_url == msg.data["unsubscribe_url"]  # the List-Unsubscribe target
    assert "/p/" in preferences_url

    assert client.get(_path(pixel)).status_code == 200
    r = client.get(_path(click_url), follow_redirects=False)
    assert r.headers["location"] == "https://shop.example/sale?from=mail&x=1"
    confirm = client.get(_path(unsubscribe_url))
    assert "Unsubscribe" in confirm.text and 'method="post"' in confirm.text
    r = client.post(_path(unsubscribe_url), content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200
    assert "Subscription preferences" in client.get(_path(preferences_url)).text

    timeline = client.get(f"/api/customers/{cid}/timeline", headers=bearer(secret_key))
    assert timeline.status_code == 200
    events = {e["name"]: e["properties"] for e in timeline.json()["events"]}
    key = f"campaign:3:customer:{cid}"
    common = {
        "message_id": key,
        "channel": "email",
        "campaign_id": "3",
        "template_id": str(template.id),
    }
    assert events["Message Queued"] == common
    assert events["Message Opened"] == common
    assert events["Message Clicked"] == {**common, "url": "https://shop.example/sale?from=mail&x=1"}
    assert events["Message Unsubscribed"] == common
    assert events["Consent Changed"]["source"] == "unsubscribe-link"
    card = client.get(f"/api/customers/{cid}", headers=bearer(secret_key)).json()
    assert {c["channel"]: c["status"] for c in card["consents"]} == {"email": "unsubscribed"}
