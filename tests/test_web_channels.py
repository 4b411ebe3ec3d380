"""Settings → Channels on SQLite and PostgreSQL: set SMTP up from the page against a real
SMTP server on loopback and press Test (the mail arrives, signed, through the password
the page never showed), secrets never in the HTML and kept when left empty, a bad form
answered 422 with each problem's path and nothing stored, the last test with the
backend's own words, removal, roles without ``manage_channels`` refused, every change
audited as the person."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from rapport.messaging import channel_config
from rapport.messaging.channel_config import CHANNEL_NAMES, load_channels
from rapport.web.channel_forms import SECRET_FIELDS, backends_of, form_fields
from tests import smtp_server
from tests.conftest import bearer
from tests.helpers import table_counts
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in

PASSWORD = "smtp-secret-pass"


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def mail() -> Iterator[tuple[smtp_server.MailStore, int]]:
    """A loopback SMTP server that asks for the login mailer / PASSWORD."""
    store = smtp_server.MailStore()
    server, port = smtp_server.start(store, auth=("mailer", PASSWORD))
    yield store, port
    server.stop()


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/settings")


def stored(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return channel_config.dump(load_channels(conn).config)


def smtp_form(token: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "backend": "smtp",
        "f-host": "127.0.0.1",
        "f-port": str(port),
        "f-security": "plain",
        "f-sender": "Shop <news@shop.example>",
        "dkim_rows": "1",
        **extra,
    }


def _problems(html: str) -> set[str]:
    """The paths the page names beside its problems."""
    return set(re.findall(r'<span class="field-problem"><code>([^<]+)</code>', html))


def test_set_up_smtp_and_press_test_the_mail_arrives(
    web: TestClient, engine: sa.Engine, mail: Any, rsa_pem: str
) -> None:
    store, port = mail
    token = signed_in(web, engine, "admin")
    listing = web.get("/settings/channels")
    assert listing.status_code == 200
    assert text_of(listing.text).count("not configured") == 6

    form = web.get("/settings/channels/email?backend=smtp")
    assert form.status_code == 200 and 'name="f-port"' in form.text
    sent = smtp_form(
        token,
        port,
        **{
            "f-username": "mailer",
            "f-password": PASSWORD,
            "f-dkim-0-domain": "shop.example",
            "f-dkim-0-selector": "rsa2026",
            "f-dkim-0-algorithm": "rsa",
            "f-dkim-0-private_key": rsa_pem.replace("\n", "\r\n"),
        },
    )
    saved = web.post("/settings/channels/email", data=sent, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    email = stored(engine)["email"]
    assert (email["host"], email["port"], email["security"]) == ("127.0.0.1", port, "plain")
    assert email["password"] == PASSWORD and email["dkim"][0]["private_key"] == rsa_pem.strip()
    [entry] = audit_rows(engine, "channel.update")
    assert (entry.actor_kind, entry.actor_name, entry.object_id) == (
        "user",
        "admin@example.com",
        "email",
    )
    assert entry.details == {"backend": "smtp", "backend_before": None}

    # The secrets are never sent to the browser: the list and the form say "set".
    pem_line = rsa_pem.splitlines()[1]
    for path in ("/settings/channels", "/settings/channels/email"):
        html = web.get(path).text
        assert PASSWORD not in html and pem_line not in html, path
        assert "set" in text_of(html)
    assert 'data-secret="password">set<' in web.get("/settings/channels/email").text

    # Saving again with the secrets left empty keeps them (the new sender is taken).
    again = smtp_form(
        token,
        port,
        **{
            "f-username": "mailer",
            "f-sender": "Shop <hello@shop.example>",
            "f-dkim-0-domain": "shop.example",
            "f-dkim-0-selector": "rsa2026",
            "dkim_rows": "2",
        },
    )
    assert (
        web.post("/settings/channels/email", data=again, follow_redirects=False).status_code == 303
    )
    email = stored(engine)["email"]
    assert email["sender"] == "Shop <hello@shop.example>"
    assert email["password"] == PASSWORD and email["dkim"][0]["private_key"] == rsa_pem.strip()

    # Test: through the kept password (the server asks for it) and signed with the kept key.
    tested = web.post(
        "/settings/channels/email/test",
        data={"csrf_token": token, "to": "ops@shop.example"},
        follow_redirects=False,
    )
    assert tested.status_code == 303
    [received] = store.messages
    assert received.rcpt_tos == ["ops@shop.example"]
    assert b"Subject: [TEST] Rapport channel test" in received.data
    assert b"DKIM-Signature:" in received.data and b"s=rsa2026" in received.data
    page = web.get(tested.headers["location"])
    shown = re.search(r'data-channel="email".*?</section>', page.text, re.S)
    assert shown is not None
    assert "Sent: the provider accepted it." in shown.group(0)
    assert "queued as Q1" in shown.group(0)
    [test_entry] = audit_rows(engine, "channel.test")
    assert test_entry.details["status"] == "sent" and test_entry.details["to"] == "ops@shop.example"
    assert test_entry.actor_name == "admin@example.com"


def test_a_failed_test_shows_the_backends_words(
    web: TestClient, engine: sa.Engine, mail: Any
) -> None:
    store, port = mail
    token = signed_in(web, engine, "admin")
    form = smtp_form(token, port, **{"f-username": "mailer", "f-password": PASSWORD})
    web.post("/settings/channels/email", data=form, follow_redirects=False)
    store.reject.add("nobody@shop.example")
    answer = web.post(
        "/settings/channels/email/test", data={"csrf_token": token, "to": "nobody@shop.example"}
    )
    assert answer.status_code == 200  # after the redirect
    text = text_of(answer.text)
    assert "Rejected: the provider refused it for this recipient." in text
    assert "550" in re.search(r'data-figure="test-error">([^<]*)<', answer.text).group(1)  # type: ignore[union-attr]

    # No address, and a channel that is not configured: 422 beside the form, nothing sent.
    before = table_counts(engine)
    empty = web.post("/settings/channels/email/test", data={"csrf_token": token, "to": " "})
    assert empty.status_code == 422 and "Say where the test goes." in empty.text
    unset = web.post("/settings/channels/sms/test", data={"csrf_token": token, "to": "+7999"})
    assert unset.status_code == 422 and "not configured" in unset.text
    assert table_counts(engine) == before
    assert len(store.messages) == 0


def test_bad_settings_are_422_with_their_paths_and_nothing_is_stored(
    web: TestClient, engine: sa.Engine
) -> None:
    token = signed_in(web, engine, "admin")
    before = table_counts(engine)
    bad = smtp_form(
        token,
        0,
        **{
            "f-timeout": "soon",
            "f-dkim-0-domain": "shop.example",
            "f-dkim-0-selector": "s1",
            "f-dkim-0-private_key": "not a key",
        },
    )
    answer = web.post("/settings/channels/email", data=bad)
    assert answer.status_code == 422
    assert _problems(answer.text) == {"email.port", "email.timeout", "email.dkim[0].private_key"}
    assert "Nothing was saved" in answer.text
    # The form comes back filled as it was sent (never a secret).
    assert 'name="f-timeout" value="soon"' in answer.text and "not a key" not in answer.text

    # Another backend: a missing required setting, JSON that is not an object.
    sms = {
        "csrf_token": token,
        "backend": "http",
        "f-url": "ftp://gateway.example",
        "f-body_template": "[1, 2]",
        "f-auth_header-name": "Authorization",
    }
    answer = web.post("/settings/channels/sms", data=sms)
    assert answer.status_code == 422
    assert _problems(answer.text) == {"sms.url", "sms.body_template", "sms.auth_header[1]"}
    smpp = {"csrf_token": token, "backend": "smpp", "f-host": "smsc.example"}
    answer = web.post("/settings/channels/sms", data=smpp)
    assert answer.status_code == 422
    assert {"sms.system_id", "sms.password", "sms.source_addr"} <= _problems(answer.text)
    assert table_counts(engine) == before
    assert stored(engine) == {}


def test_a_gateway_key_is_kept_and_can_be_removed(web: TestClient, engine: sa.Engine) -> None:
    token = signed_in(web, engine, "admin")
    sms = {
        "csrf_token": token,
        "backend": "http",
        "f-url": "https://gateway.example/v1/sms",
        "f-auth_header-name": "Authorization",
        "f-auth_header-value": "Bearer gw-key",
        "f-body_template": '{"to": "{to}", "text": "{text}"}',
    }
    assert web.post("/settings/channels/sms", data=sms, follow_redirects=False).status_code == 303
    assert stored(engine)["sms"]["auth_header"] == ["Authorization", "Bearer gw-key"]
    page = web.get("/settings/channels/sms")
    assert "gw-key" not in page.text and 'value="Authorization"' in page.text
    # The form sent back as shown: the value left empty is kept.
    del sms["f-auth_header-value"]
    sms["f-rate"] = "5"
    assert web.post("/settings/channels/sms", data=sms, follow_redirects=False).status_code == 303
    assert stored(engine)["sms"]["auth_header"] == ["Authorization", "Bearer gw-key"]
    assert stored(engine)["sms"]["rate"] == 5
    assert "gw-key" not in web.get("/settings/channels").text
    # Removing it is a box to tick.
    sms["clear-auth_header"] = "yes"
    assert web.post("/settings/channels/sms", data=sms, follow_redirects=False).status_code == 303
    assert "auth_header" not in stored(engine)["sms"]


def test_removing_a_channel_needs_the_box_and_is_audited(
    web: TestClient, engine: sa.Engine
) -> None:
    token = signed_in(web, engine, "admin")
    form = {"csrf_token": token, "backend": "memory"}
    assert (
        web.post("/settings/channels/telegram", data=form, follow_redirects=False).status_code
        == 303
    )
    assert stored(engine) == {"telegram": {"backend": "memory"}}
    refused = web.post("/settings/channels/telegram/remove", data={"csrf_token": token})
    assert refused.status_code == 422 and "Tick the box to confirm." in refused.text
    assert stored(engine) == {"telegram": {"backend": "memory"}}
    done = web.post(
        "/settings/channels/telegram/remove",
        data={"csrf_token": token, "confirm": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and stored(engine) == {}
    [entry] = audit_rows(engine, "channel.remove")
    assert (entry.object_id, entry.details["backend_before"]) == ("telegram", "memory")


def test_a_test_through_the_api_is_the_channels_last_test(
    web: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    auth = bearer(secret_key)
    assert (
        web.put("/api/channels", json={"telegram": {"backend": "memory"}}, headers=auth).status_code
        == 200
    )
    answer = web.post("/api/channels/telegram/test", json={"to": "4242"}, headers=auth)
    assert answer.json()["status"] == "sent"
    signed_in(web, engine, "admin")
    shown = re.search(
        r'data-channel="telegram".*?</section>', web.get("/settings/channels").text, re.S
    )
    assert shown is not None and "4242" in shown.group(0) and "tests" in shown.group(0)


@pytest.mark.parametrize("role", ["marketer", "analyst", "viewer"])
def test_roles_without_manage_channels_see_no_form_and_get_403(
    web: TestClient, engine: sa.Engine, role: str
) -> None:
    token = signed_in(web, engine, role)
    for path in ("/settings/channels", "/settings/channels/email"):
        page = web.get(path)
        assert page.status_code == 403
        assert '<form method="post" action="/settings/channels' not in page.text
    assert "/settings/channels" not in web.get("/settings").text
    before = table_counts(engine)
    form = {"csrf_token": token, "backend": "memory"}
    assert web.post("/settings/channels/email", data=form).status_code == 403
    assert web.post("/settings/channels/email/test", data=form | {"to": "a@b.c"}).status_code == 403
    assert (
        web.post("/settings/channels/email/remove", data=form | {"confirm": "1"}).status_code == 403
    )
    assert table_counts(engine) == before


def test_every_backend_has_a_form_with_an_input_per_setting(
    web: TestClient, engine: sa.Engine
) -> None:
    signed_in(web, engine, "admin")
    inputs = {"header": "f-auth_header-name", "dkim": "f-dkim-0-private_key"}
    for channel in CHANNEL_NAMES:
        for backend, model in backends_of(channel).items():
            page = web.get(f"/settings/channels/{channel}", params={"backend": backend})
            assert page.status_code == 200, (channel, backend)
            assert f'name="backend" value="{backend}"' in page.text
            for f in form_fields(backend, model):
                assert f'name="{inputs.get(f.kind, "f-" + f.name)}"' in page.text, (backend, f)


def test_unknown_channel_is_404(web: TestClient, engine: sa.Engine) -> None:
    token = signed_in(web, engine, "admin")
    assert web.get("/settings/channels/fax").status_code == 404
    assert web.post("/settings/channels/fax", data={"csrf_token": token}).status_code == 404


def test_the_forms_secrets_are_the_ones_the_api_redacts() -> None:
    """The form's list of secrets and channel_config's must not drift apart."""
    api = {
        backend: {str(path[0]) for path in paths if path[0] not in ("dkim", "auth_header")}
        for backend, paths in channel_config._SECRETS.items()
    }
    form = {backend: set(SECRET_FIELDS.get(backend, ())) for backend in api}
    assert form == api
    assert channel_config._SECRETS["smtp"][1][0] == "dkim"
    assert channel_config._SECRETS["http"] == (("auth_header", 1),)
