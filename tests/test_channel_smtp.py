"""E-mail over SMTP against a real aiosmtpd server on loopback: MIME, RFC 8058 headers,
DKIM (RSA and Ed25519) verified with dkimpy, pooled connections, and the failed/rejected
split."""

from __future__ import annotations

import asyncio
import base64
import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import dkim
import nacl.encoding
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.email_mime import DkimKey, message_id
from rapport.messaging.channels.smtp import SmtpBackend, SmtpSettings
from tests.conftest import _free_port
from tests.smtp_server import MailServer, MailStore, self_signed, start

SENDER = "Shop <news@shop.example>"


@pytest.fixture
def mail() -> Iterator[tuple[MailStore, int]]:
    store = MailStore(reject={"nobody@example.com"}, defer={"busy@example.com"})
    server, port = start(store)
    yield store, port
    server.stop()


def backend(port: int, **kwargs: object) -> SmtpBackend:
    settings = SmtpSettings(host="127.0.0.1", port=port, security="plain", sender=SENDER, timeout=5)
    return SmtpBackend(settings.__class__(**(settings.__dict__ | kwargs)))


def message(n: int, to: str = "ann@example.com", **data: object) -> OutgoingMessage:
    return OutgoingMessage(
        id=f"outbox-{n}",
        channel="email",
        to=to,
        subject="Скидка для вас",
        body_text=f"Привет, Анна! #{n}",
        body_html=f"<p>Привет, <b>Анна</b>! #{n}</p>",
        data=dict(data),
    )


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_delivers_multipart_mail_with_stable_message_id_and_rfc8058(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    b = backend(port)
    url = "https://shop.example/u/tok123"
    results = run(
        b.send([message(1, unsubscribe_url=url, unsubscribe_mailto="unsub@shop.example")])
    )
    assert [(r.message_id, r.status) for r in results] == [("outbox-1", "sent")]
    assert results[0].provider_id and "queued as Q1" in results[0].provider_id
    [got] = store.messages
    assert got.rcpt_tos == ["ann@example.com"] and got.mail_from == "news@shop.example"
    mime = parsed(got.data)
    assert mime.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in mime.iter_parts()}
    assert parts["text/plain"].strip() == "Привет, Анна! #1"
    assert "<b>Анна</b>" in parts["text/html"]
    assert mime["Subject"] == "Скидка для вас"
    assert mime["Message-ID"] == "<rapport.outbox-1@shop.example>"
    assert mime["List-Unsubscribe"] == f"<{url}>, <mailto:unsub@shop.example>"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_message_id_is_the_same_on_retry_and_safe_for_odd_ids() -> None:
    assert message_id("a/b c", "x.example") == message_id("a/b c", "x.example")
    assert message_id("a/b c", "x.example").startswith("<rapport.")
    assert " " not in message_id("a/b c", "x.example")


def test_no_one_click_header_without_an_https_url(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    run(backend(port).send([message(1, unsubscribe_mailto="unsub@shop.example"), message(2)]))
    # The pool may deliver the two in either order: tell them apart by their headers.
    got = sorted(
        (parsed(m.data) for m in store.messages), key=lambda m: m["List-Unsubscribe"] is None
    )
    first, second = got
    assert first["List-Unsubscribe"] == "<mailto:unsub@shop.example>"
    assert first["List-Unsubscribe-Post"] is None
    assert second["List-Unsubscribe"] is None


def _rsa_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _ed25519_key() -> tuple[bytes, bytes]:
    key = nacl.signing.SigningKey.generate()
    private = key.encode(encoder=nacl.encoding.Base64Encoder)
    public = key.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    return private, b"v=DKIM1; k=ed25519; p=" + public


def test_dkim_rsa_and_ed25519_signatures_verify_and_cover_list_unsubscribe(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    rsa_private, rsa_record = _rsa_key()
    ed_private, ed_record = _ed25519_key()
    keys = (
        DkimKey("shop.example", "rsa2026", rsa_private, "rsa"),
        DkimKey("shop.example", "ed2026", ed_private, "ed25519"),
    )
    dns = {
        b"rsa2026._domainkey.shop.example.": rsa_record,
        b"ed2026._domainkey.shop.example.": ed_record,
    }

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return dns.get(name, b"")

    run(backend(port, dkim=keys).send([message(1, unsubscribe_url="https://shop.example/u/t")]))
    raw = store.messages[0].data
    verifier = dkim.DKIM(raw)
    signatures = parsed(raw).get_all("DKIM-Signature")
    assert len(signatures) == 2
    for idx in range(2):
        assert verifier.verify(idx=idx, dnsfunc=dnsfunc), idx
    for sig in signatures:
        fields = dict(p.strip().split("=", 1) for p in "".join(str(sig).split()).split(";") if p)
        signed = fields["h"].lower().split(":")
        assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert {
        dict(p.strip().split("=", 1) for p in "".join(str(s).split()).split(";") if p)["a"]
        for s in signatures
    } == {
        "rsa-sha256",
        "ed25519-sha256",
    }
    # Changing the one-click link breaks the signature.
    forged = raw.replace(b"https://shop.example/u/t", b"https://evil.example/u/t")
    assert not dkim.DKIM(forged).verify(idx=0, dnsfunc=dnsfunc)


def test_pool_reuses_connections_across_sends(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    b = backend(port, pool_size=2)

    async def scenario() -> list[str]:
        statuses = []
        for batch in range(3):
            results = await b.send([message(batch * 10 + i) for i in range(10)])
            statuses += [r.status for r in results]
        await b.close()
        return statuses

    statuses = run(scenario())
    assert statuses == ["sent"] * 30
    assert len(store.messages) == 30
    assert store.connections == 2
    ids = sorted(parsed(m.data)["Message-ID"] for m in store.messages)
    assert len(set(ids)) == 30


def test_permanent_refusal_is_rejected_and_temporary_is_failed(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    results = run(
        backend(port, pool_size=1).send(
            [
                message(1),
                message(2, to="nobody@example.com"),
                message(3, to="busy@example.com"),
                message(4),
            ]
        )
    )
    assert [r.status for r in results] == ["sent", "rejected", "failed", "sent"]
    assert results[1].error and results[1].error.startswith("550")
    assert results[2].error and results[2].error.startswith("451")
    assert [m.rcpt_tos for m in store.messages] == [["ann@example.com"], ["ann@example.com"]]
    assert store.connections == 1  # a refusal does not cost the connection


def test_server_down_is_failed() -> None:
    port = _free_port()  # nothing listens here
    results = run(backend(port).send([message(1), message(2)]))
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(r.error for r in results)


def test_a_pooled_connection_the_server_dropped_is_replaced(mail) -> None:  # type: ignore[no-untyped-def]
    store, port = mail
    b = backend(port, pool_size=1)

    async def scenario() -> list[str]:
        first = await b.send([message(1)])
        for client in b._idle:  # the server (or a NAT) closes the idle session
            client.transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        second = await b.send([message(2)])
        await b.close()
        return [r.status for r in first + second]

    assert run(scenario()) == ["sent", "sent"]
    assert len(store.messages) == 2


def test_starttls_and_auth(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)
    store = MailStore()
    server, port = start(store, tls_context=server_ctx, auth=("mailer", "s3cret"))
    try:
        ok = backend(
            port, security="starttls", tls_context=client_ctx, username="mailer", password="s3cret"
        )
        assert [r.status for r in run(ok.send([message(1)]))] == ["sent"]
        wrong = backend(
            port, security="starttls", tls_context=client_ctx, username="mailer", password="nope"
        )
        assert [r.status for r in run(wrong.send([message(2)]))] == ["failed"]
        plain = backend(port, security="plain")  # the server insists on STARTTLS
        assert [r.status for r in run(plain.send([message(3)]))] != ["sent"]
    finally:
        server.stop()
    assert len(store.messages) == 1


def test_implicit_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)
    store = MailStore()
    port = _free_port()
    server = MailServer(store, port, ssl_context=server_ctx)
    server.start()
    try:
        b = backend(port, security="tls", tls_context=client_ctx)
        assert [r.status for r in run(b.send([message(1)]))] == ["sent"]
    finally:
        server.stop()
    assert len(store.messages) == 1
