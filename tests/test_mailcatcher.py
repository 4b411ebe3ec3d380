"""The demo's mail catcher: real SMTP in, a Maildir on disk, and the /mail pages out.

Mail is sent through Rapport's real SmtpBackend to the catcher on loopback; the Maildir
holds it after the catcher stops; the pages list it and show it with everything that came
from the sender escaped.
"""

from __future__ import annotations

import asyncio
import mailbox
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.api.app import create_app
from rapport.cli import app as cli_app
from rapport.demo.mailcatcher import MailCatcher, list_mail
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.email_mime import message_id
from rapport.messaging.channels.smtp import SmtpBackend, SmtpSettings
from rapport.settings import Settings

HOSTILE = '<script>alert("subject")</script> & <b>bold</b>'


def message(n: int, **kw: object) -> OutgoingMessage:
    base: dict[str, object] = {
        "id": f"campaign:1:customer:{n}",
        "channel": "email",
        "to": f"anna{n}@example.com",
        "subject": f"Подборка №{n}",
        "body_text": f"Привет, Анна! #{n}",
        "body_html": f"<p>Привет, <b>Анна</b>! #{n}</p>",
    }
    return OutgoingMessage(**(base | kw))  # type: ignore[arg-type]


def send(port: int, messages: list[OutgoingMessage]) -> list[str]:
    backend = SmtpBackend(
        SmtpSettings(port=port, security="plain", sender="Shop <news@shop.example>", timeout=5)
    )

    async def go() -> list[str]:
        try:
            return [r.status for r in await backend.send(messages)]
        finally:
            await backend.close()

    return asyncio.run(go())


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "caught"


@pytest.fixture
def client(tmp_path: Path, maildir: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        sweep_seconds=0,
        dispatch=False,
        mail_catcher_dir=str(maildir),
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_smtp_backend_to_catcher_lands_in_a_maildir_that_outlives_it(maildir: Path) -> None:
    with MailCatcher(maildir) as catcher:
        assert catcher.port > 0
        assert send(catcher.port, [message(1), message(2)]) == ["sent", "sent"]
        assert catcher.received == 2
    box = mailbox.Maildir(maildir, create=False)
    got = sorted(box, key=lambda m: str(m["Delivered-To"]))
    assert sorted(m["Message-ID"] for m in got) == sorted(
        message_id(f"campaign:1:customer:{n}", "shop.example") for n in (1, 2)
    )
    assert got[0]["Delivered-To"] == "anna1@example.com"
    assert got[0]["Return-Path"] == "<news@shop.example>"
    # A new catcher on the same directory (a restart) adds to what is there, and counts
    # only its own.
    with MailCatcher(maildir) as again:
        assert send(again.port, [message(3)]) == ["sent"]
        assert again.received == 1
    assert again.received == 1  # still known after it stopped
    items, total = list_mail(maildir)
    assert total == 3
    assert items[0].subject == "Подборка №3"  # newest first
    assert {m.to for m in items} == {"anna1@example.com", "anna2@example.com", "anna3@example.com"}


def test_catcher_takes_a_given_port(maildir: Path) -> None:
    with MailCatcher(maildir) as first:
        port = first.port
    with MailCatcher(maildir, port=port) as second:
        assert second.port == port
        assert send(port, [message(1)]) == ["sent"]


def test_a_catcher_on_a_taken_port_says_so(maildir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"mail catcher on 127.0.0.1:{port}: .*") as err:
            MailCatcher(maildir, port=port).start()
    assert "did not start in time" not in str(err.value)


def test_mail_pages_list_and_show_a_message_escaped(client: TestClient, maildir: Path) -> None:
    hostile_html = '<p>Hi</p><script>alert("body")</script><img src="x" onerror="alert(1)">'
    with MailCatcher(maildir) as catcher:
        statuses = send(
            catcher.port,
            [
                message(1),
                message(
                    2,
                    subject=HOSTILE,
                    body_html=hostile_html,
                    body_text='text <i>part</i> "quoted"',
                    headers={"From": '"<img src=x onerror=alert(2)>" <evil@example.com>'},
                ),
            ],
        )
    assert statuses == ["sent", "sent"]

    listing = client.get("/mail", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert listing.status_code == 200
    page = listing.text
    assert "Caught mail" in page and "Total: 2" in page
    assert "anna1@example.com" in page and "Подборка №1" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold" in page
    assert listing.headers["content-security-policy"].startswith("default-src 'none'")
    links = re.findall(r'href="(/mail/[^"?]+)"', page)
    assert len(links) == 2

    hostile_link = next(
        link for link in links if "alert" in client.get(link).text.split("<h1>")[1][:200]
    )
    shown = client.get(hostile_link, headers={"Accept-Language": "en"})
    assert shown.status_code == 200
    body = shown.text
    assert "<script>" not in body and "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(2)&gt;" in body  # the From header, escaped
    # The HTML part only inside a sandboxed iframe's srcdoc, attribute-escaped.
    frame = re.search(r'<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="([^"]*)">', body)
    assert frame is not None
    assert "&lt;script&gt;alert(&#34;body&#34;)&lt;/script&gt;" in frame.group(1)
    assert "<pre>text &lt;i&gt;part&lt;/i&gt; &#34;quoted&#34;" in body  # the text part
    assert "Raw source" in body and "Message-ID" in body

    raw = client.get(hostile_link + "/raw")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("message/rfc822")
    assert b"Delivered-To: anna2@example.com" in raw.content

    russian = client.get("/mail", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert "Пойманные письма" in russian.text and "Всего: 2" in russian.text
    assert client.get("/mail/no-such-key").status_code == 404


def test_mail_list_is_paginated(client: TestClient, maildir: Path) -> None:
    with MailCatcher(maildir) as catcher:
        assert send(catcher.port, [message(n) for n in range(55)]) == ["sent"] * 55
    first = client.get("/mail", headers={"Accept-Language": "en"}).text
    assert first.count('<td class="date">') == 50
    assert 'href="/mail?page=2"' in first and "page=0" not in first
    second = client.get("/mail?page=2", headers={"Accept-Language": "en"}).text
    assert second.count('<td class="date">') == 5
    assert 'href="/mail?page=1"' in second and "page=3" not in second


def test_no_mail_pages_without_a_catcher_directory(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'store.db'}", sweep_seconds=0, dispatch=False
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/mail").status_code == 404


def test_cli_has_the_mailcatcher_command() -> None:
    result = CliRunner().invoke(cli_app, ["demo", "mailcatcher", "--help"])
    assert result.exit_code == 0
    assert "--dir" in result.output and "--port" in result.output
