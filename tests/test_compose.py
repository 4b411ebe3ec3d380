"""Link tokens and composing a template into an outbox message, on SQLite and PostgreSQL."""

from __future__ import annotations

import html as html_lib
import re

import pytest
import sqlalchemy as sa

from rapport.messaging.compose import Origin, Tracking, compose
from rapport.messaging.templates.store import create_template
from rapport.messaging.tracking import BadToken, Links, sign, verify
from rapport.store.engine import writing
from rapport.store.tables import customers
from tests.conftest import T0

KEY = b"k" * 32
LINKS = Links("https://crm.shop.example/", KEY)

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ customer.first_name }}, <a href="https://shop.example/new?a=1&amp;b=2">new</a></mj-text>
<mj-text><a href="{{ unsubscribe_url }}">unsubscribe</a> <a href="mailto:help@shop.example">help</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def test_tokens_round_trip_and_refuse_tampering() -> None:
    token = sign(KEY, "c", "campaign:1:customer:2", "https://shop.example/x")
    assert verify(KEY, "c", token) == ["campaign:1:customer:2", "https://shop.example/x"]
    body, mac = token.split(".")
    for bad in (
        token + "x",
        body[:-2] + "." + mac,
        body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),
        "no-dot",
        "!!!." + mac,
    ):
        with pytest.raises(BadToken):
            verify(KEY, "c", bad)
    with pytest.raises(BadToken):  # made for a click, used as an unsubscribe
        verify(KEY, "u", token)
    with pytest.raises(BadToken):  # another server's key
        verify(b"other", "c", token)


def test_telegram_start_parameter_is_deep_link_safe() -> None:
    start = LINKS.telegram_start(123456789)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", start)
    assert LINKS.telegram_customer(start) == 123456789
    with pytest.raises(BadToken):
        LINKS.telegram_customer(start[:-1] + ("A" if start[-1] != "A" else "B"))


def _customer(engine: sa.Engine, email: str | None) -> int:
    with writing(engine) as conn:
        return int(
            conn.execute(
                customers.insert()
                .values(created_at=T0, updated_at=T0, traits={}, first_name="Анна", email=email)
                .returning(customers.c.id)
            ).scalar_one()
        )


def test_compose_tracks_links_and_keeps_unsubscribe_direct(engine: sa.Engine) -> None:
    cid = _customer(engine, "anna@example.com")
    with writing(engine) as conn:
        template = create_template(
            conn,
            name="news",
            channel="email",
            kind="mjml",
            default_locale="ru",
            variants={"ru": {"subject": "Привет, {{ customer.first_name }}", "body": MJML}},
            now=T0,
        )
        msg = compose(
            conn,
            template,
            cid,
            key="campaign:7:customer:1",
            now=T0,
            tracking=Tracking(LINKS),
            origin=Origin(campaign_id=7, variant="A"),
        )
    assert msg.skip_reason is None
    assert msg.recipient == "anna@example.com"
    assert msg.subject == "Привет, Анна"
    assert msg.campaign_id == 7 and msg.variant == "A" and msg.template_id == template.id
    html = msg.body_html or ""
    hrefs = [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
    clicks = [h for h in hrefs if "/t/c/" in h]
    assert len(clicks) == 1
    token = clicks[0].rsplit("/", 1)[1]
    assert verify(KEY, "c", token) == ["campaign:7:customer:1", "https://shop.example/new?a=1&b=2"]
    unsubscribe = msg.data["unsubscribe_url"]
    assert unsubscribe in hrefs  # not redirected
    assert "mailto:help@shop.example" in hrefs
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html)
    assert pixel is not None
    assert verify(KEY, "o", pixel.group(1).rsplit("/", 1)[1]) == ["campaign:7:customer:1"]


def test_compose_without_address_is_a_recorded_skip(engine: sa.Engine) -> None:
    cid = _customer(engine, None)
    with writing(engine) as conn:
        template = create_template(
            conn,
            name="sms",
            channel="sms",
            kind="text",
            default_locale="ru",
            variants={"ru": {"subject": "", "body": "Привет"}},
            now=T0,
        )
        msg = compose(conn, template, cid, key="k1", now=T0, tracking=Tracking(None))
    assert msg.skip_reason == "no sms address"
