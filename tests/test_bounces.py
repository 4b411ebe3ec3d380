"""Bounces and complaints: real DSN, ARF and plain-text notices parsed, acted on in both
stores (suppression, card events, consent), taken in over the API and from a mailbox, and
an e-mail sent over real SMTP whose bounce stops the next message to that address."""

from __future__ import annotations

import email
import mailbox
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, consents_of, set_consents
from rapport.customers.timeline import timeline
from rapport.messaging.bounces import (
    UnparseableReport,
    key_digest,
    outbox_ref,
    outcome_of,
    parse_report,
)
from rapport.messaging.channels.email_mime import message_id
from rapport.messaging.channels.smtp import SmtpBackend, SmtpSettings
from rapport.messaging.delivery_reports import Applied, apply_report
from rapport.messaging.outbox import enqueue
from rapport.messaging.suppressions import get_suppression
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import outbox, suppressions
from rapport.worker import dispatcher_for
from tests.conftest import T0, basic, bearer
from tests.delivery_helpers import message, row
from tests.helpers import count, table_counts
from tests.shop_helpers import identify
from tests.smtp_server import MailStore, start

DATA = Path(__file__).parent / "data" / "bounces"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sent(engine: sa.Engine, key: str, cid: int | None, to: str, **kw: Any) -> None:
    """An outbox row as the dispatcher leaves it after the provider accepted it."""
    with writing(engine) as conn:
        enqueue(conn, [message(key, cid, recipient=to, **kw)], T0)
        conn.execute(
            outbox.update()
            .where(outbox.c.idempotency_key == key)
            .values(status="sent", sent_at=T0, attempts=1)
        )


def process(pipeline: Pipeline, raw: bytes) -> Applied:
    """What the API and the CLI do: parse, act and record in one transaction."""
    report = parse_report(raw)
    with writing(pipeline.engine) as conn:
        applied = apply_report(conn, report, pipeline.clock.now())
        pipeline.record_many(conn, applied.events)
    return applied


def card(engine: sa.Engine, cid: int, *names: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(reversed(timeline(conn, cid, names=list(names) or None)))


# -- parsing ------------------------------------------------------------------------------

GMAIL_ID = message_id("campaign:12:customer:345", "shop.example")


@pytest.mark.parametrize(
    ("name", "kind", "fmt", "mid", "recipients"),
    [
        ("gmail_hard.eml", "bounce", "dsn", GMAIL_ID, [("ann.gone@gmail.com", "hard", "5.1.1")]),
        (
            "postfix_hard.eml",
            "bounce",
            "dsn",
            "<rapport.welcome-5581@shop.example>",
            [("bob@example.org", "hard", "5.1.1")],
        ),
        (
            "postfix_mailbox_full.eml",
            "bounce",
            "dsn",
            message_id("run:77:step:2", "shop.example"),
            [("dave@example.net", "soft", "4.2.2")],
        ),
        (
            "postfix_delayed.eml",
            "bounce",
            "dsn",
            message_id("run:77:step:2", "shop.example"),
            [("dave@example.net", "delayed", "4.4.1")],
        ),
        (
            "arf_abuse.eml",
            "complaint",
            "arf",
            message_id("campaign:12:customer:346", "shop.example"),
            [("carol@yahoo.com", "complaint", None)],
        ),
        (
            "arf_redacted.eml",
            "complaint",
            "arf",
            message_id("campaign:12:customer:347", "shop.example"),
            [(None, "complaint", None)],
        ),
        (
            "qmail_plain.eml",
            "bounce",
            "plain",
            "<rapport.welcome-5590@shop.example>",
            [("erin@example.com", "hard", "5.1.1")],
        ),
        (
            "exim_failed_recipients.eml",
            "bounce",
            "plain",
            message_id("run:77:step:9", "shop.example"),
            [("frank@example.net", "hard", "5.1.1")],
        ),
    ],
)
def test_parses_real_reports(
    name: str, kind: str, fmt: str, mid: str, recipients: list[tuple[Any, ...]]
) -> None:
    report = parse_report(fixture(name))
    assert (report.kind, report.format, report.message_id) == (kind, fmt, mid)
    assert [(r.address, r.outcome, r.status) for r in report.recipients] == recipients
    assert report.report_id  # the report's own id: how a second reading is recognised
    assert report.original_date == T0


def test_dsn_details_and_arf_feedback_fields() -> None:
    postfix = parse_report(fixture("postfix_hard.eml"))
    [bob] = postfix.recipients
    assert bob.action == "failed" and bob.original_address is None  # same address, other case
    assert bob.diagnostic == (
        "550 5.1.1 <bob@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert postfix.reporter == "mail.shop.example"
    assert postfix.report_id == "<20260301120004.4TqL3K1mXzz9sRk@mail.shop.example>"
    arf = parse_report(fixture("arf_abuse.eml"))
    assert (arf.feedback_type, arf.reporter) == ("abuse", "Yahoo!-Mail-Feedback/2.0")


def test_positive_dsn_and_non_complaint_feedback() -> None:
    raw = fixture("postfix_hard.eml").decode()
    delivered = raw.replace("Action: failed\nStatus: 5.1.1", "Action: delivered\nStatus: 2.0.0")
    [rcpt] = parse_report(delivered.encode()).recipients
    assert (rcpt.outcome, rcpt.status) == ("delivered", "2.0.0")
    not_spam = fixture("arf_abuse.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    report = parse_report(not_spam)
    assert (report.kind, report.feedback_type, report.recipients) == ("feedback", "not-spam", ())


def test_a_positive_dsn_records_delivery(engine: sa.Engine, pipeline: Pipeline) -> None:
    cid = identify(pipeline, "u-bob", email="bob@example.org")
    sent(engine, "welcome-5581", cid, "bob@example.org")
    raw = fixture("postfix_hard.eml").replace(
        b"Action: failed\nStatus: 5.1.1", b"Action: delivered\nStatus: 2.0.0"
    )
    applied = process(pipeline, raw)
    assert [(n, p["message_id"]) for _, n, p in applied.events] == [
        ("Message Delivered", "welcome-5581")
    ]
    assert count(engine, suppressions) == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (fixture("garbage.eml"), "no headers"),
        (fixture("out_of_office.eml"), "not a bounce or complaint"),
        (
            b"From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable: hi\r\n\r\n"
            b"Something went wrong, sorry.\r\n",
            "names no failed recipient",
        ),
        (
            b"From: MAILER-DAEMON@mx.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/"
            b'report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: '
            b"message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n--b--\r\n",
            "names no recipient",
        ),
        (
            b"From: fbl@provider.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/"
            b'report; report-type=feedback-report; boundary="b"\r\n\r\n--b\r\nContent-Type: '
            b"message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n--b--\r\n",
            "neither the original message nor its recipient",
        ),
    ],
)
def test_unreadable_input_is_a_clear_error(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableReport, match=reason):
        parse_report(raw)


@pytest.mark.parametrize(
    "key",
    [
        "welcome-5581",
        "campaign:12:customer:345",
        "run:9:step:3:fallback:email",
        "a b",
        ".leading-dot",
        "two..dots",
        "x" * 250,
        "0123456789abcdef0123456789abcdef01234567",  # 40 hex: embedded verbatim
    ],
)
def test_message_id_inverse(key: str) -> None:
    ref = outbox_ref(message_id(key, "news.shop.example"))
    assert ref is not None and ref.domain == "news.shop.example"
    assert ref.key == key or ref.digest == key_digest(key)


def test_foreign_message_ids_are_not_ours() -> None:
    for other in ("<CAF=abc@mail.gmail.com>", "<rapport.@shop.example>", "rapport", ""):
        assert outbox_ref(other) is None


@pytest.mark.parametrize(
    ("status", "action", "outcome"),
    [
        ("5.1.1", "failed", "hard"),
        ("5.4.4", "failed", "hard"),
        ("4.2.2", "failed", "soft"),
        ("5.2.2", "failed", "soft"),  # mailbox full: persistent transient (RFC 3463)
        ("5.7.1", "failed", "soft"),  # policy: about the sender, not the address
        (None, "failed", "soft"),
        ("4.4.1", "delayed", "delayed"),
        ("2.0.0", "delivered", "delivered"),
    ],
)
def test_hard_or_soft(status: str | None, action: str, outcome: str) -> None:
    assert outcome_of(status, action) == outcome


# -- effects, on both stores ----------------------------------------------------------


@pytest.fixture
def pipeline(engine: sa.Engine, clock: SimulatedClock) -> Pipeline:
    return Pipeline(engine, clock)


def test_hard_bounce_suppresses_and_lands_on_the_card(
    engine: sa.Engine, pipeline: Pipeline
) -> None:
    cid = identify(pipeline, "u-bob", email="bob@example.org")
    sent(engine, "welcome-5581", cid, "bob@example.org", scenario_id="welcome", step=1)
    applied = process(pipeline, fixture("postfix_hard.eml"))
    [result] = applied.results
    assert (result.outcome, result.message_key, result.customer_id) == ("hard", "welcome-5581", cid)
    assert result.matched and result.suppressed and not result.duplicate
    with engine.connect() as conn:
        entry = get_suppression(conn, "email", "Bob@Example.org")
    assert entry is not None and entry.reason == "bounce"
    assert entry.details["message_id"] == "welcome-5581" and entry.details["status"] == "5.1.1"
    [bounced] = card(engine, cid, "Message Bounced")
    assert bounced["properties"] | {"diagnostic": "…"} == {
        "message_id": "welcome-5581",
        "channel": "email",
        "scenario_id": "welcome",
        "step": "1",
        "recipient": "bob@example.org",
        "bounce_type": "hard",
        "status": "5.1.1",
        "diagnostic": "…",
        "report_id": "<20260301120004.4TqL3K1mXzz9sRk@mail.shop.example>",
    }
    assert "User unknown" in bounced["properties"]["diagnostic"]

    before = table_counts(engine)
    again = process(pipeline, fixture("postfix_hard.eml"))
    assert again.events == [] and again.results[0].duplicate
    assert table_counts(engine) == before


def test_hashed_message_id_is_found_through_the_address(
    engine: sa.Engine, pipeline: Pipeline
) -> None:
    cid = identify(pipeline, "u-ann", email="ann.gone@gmail.com")
    sent(engine, "campaign:12:customer:345", cid, "ann.gone@gmail.com", campaign_id=12)
    sent(engine, "campaign:12:customer:999", cid, "ann.gone@gmail.com", campaign_id=12)
    applied = process(pipeline, fixture("gmail_hard.eml"))
    assert applied.results[0].message_key == "campaign:12:customer:345"
    [bounced] = card(engine, cid, "Message Bounced")
    assert bounced["properties"]["campaign_id"] == "12"
    assert bounced["properties"]["message_id"] == "campaign:12:customer:345"


def test_unknown_message_to_a_customer_still_suppresses(
    engine: sa.Engine, pipeline: Pipeline
) -> None:
    cid = identify(pipeline, "u-erin", email="erin@example.com")
    applied = process(pipeline, fixture("qmail_plain.eml"))  # no outbox row for its id
    [result] = applied.results
    assert result.matched and result.suppressed and result.message_key is None
    [bounced] = card(engine, cid, "Message Bounced")
    assert "message_id" not in bounced["properties"]
    assert bounced["properties"]["recipient"] == "erin@example.com"
    assert bounced["properties"]["bounce_type"] == "hard"
    assert process(pipeline, fixture("qmail_plain.eml")).events == []  # same report again


def test_reports_about_strangers_are_ignored(engine: sa.Engine, pipeline: Pipeline) -> None:
    before = table_counts(engine)
    applied = process(pipeline, fixture("exim_failed_recipients.eml"))
    assert [(r.outcome, r.matched) for r in applied.results] == [("hard", False)]
    assert applied.events == [] and table_counts(engine) == before


def test_exim_bounce_for_a_hashed_key(engine: sa.Engine, pipeline: Pipeline) -> None:
    cid = identify(pipeline, "u-frank", email="frank@example.net")
    sent(engine, "run:77:step:9", cid, "frank@example.net", scenario_id="cart")
    applied = process(pipeline, fixture("exim_failed_recipients.eml"))
    assert applied.results[0].message_key == "run:77:step:9" and applied.results[0].suppressed


def _mailbox_full(key: str, n: int) -> bytes:
    raw = fixture("postfix_mailbox_full.eml").decode()
    raw = raw.replace(message_id("run:77:step:2", "shop.example"), message_id(key, "shop.example"))
    return raw.replace("5VwQ8Z2nYyz4tTm@", f"5VwQ8Z2nYyz4tTm{n}@").encode()


def test_soft_bounces_suppress_on_the_third_within_a_week(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cid = identify(pipeline, "u-dave", email="dave@example.net")
    for day in range(5):
        sent(engine, f"run:77:step:{day}", cid, "dave@example.net")
    results = []
    for n, day in enumerate((0, 4, 8, 9)):  # 0, 4, 8: never three within 7 days; 9: three
        clock.set(T0 + timedelta(days=day))
        results.append(process(pipeline, _mailbox_full(f"run:77:step:{n}", n)).results[0])
    assert [(r.outcome, r.suppressed) for r in results] == [
        ("soft", False),
        ("soft", False),
        ("soft", False),
        ("soft", True),
    ]
    with engine.connect() as conn:
        entry = get_suppression(conn, "email", "dave@example.net")
    assert entry is not None and entry.details["soft_bounces"] == 3
    bounces = card(engine, cid, "Message Bounced")
    assert [e["properties"]["bounce_type"] for e in bounces] == ["soft"] * 4


def test_a_delay_warning_changes_nothing(engine: sa.Engine, pipeline: Pipeline) -> None:
    cid = identify(pipeline, "u-dave", email="dave@example.net")
    sent(engine, "run:77:step:2", cid, "dave@example.net")
    before = table_counts(engine)
    applied = process(pipeline, fixture("postfix_delayed.eml"))
    assert [(r.outcome, r.matched) for r in applied.results] == [("delayed", True)]
    assert table_counts(engine) == before


def test_complaint_suppresses_and_unsubscribes(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cid = identify(pipeline, "u-carol", email="carol@yahoo.com")
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, "email", "subscribed", "form", T0, "confirmed")])
    sent(engine, "campaign:12:customer:346", cid, "carol@yahoo.com", campaign_id=12)
    clock.advance(timedelta(days=1))
    applied = process(pipeline, fixture("arf_abuse.eml"))
    assert [(c, n) for c, n, _ in applied.events] == [
        (cid, "Message Complained"),
        (cid, "Consent Changed"),
    ]
    [result] = applied.results
    assert result.suppressed and result.unsubscribed
    with engine.connect() as conn:
        entry = get_suppression(conn, "email", "carol@yahoo.com")
        consent = consents_of(conn, cid)
    assert entry is not None and entry.reason == "complaint"
    assert entry.details["feedback_type"] == "abuse"
    assert [(c["channel"], c["status"], c["source"], c["double_opt_in"]) for c in consent] == [
        ("email", "unsubscribed", "complaint", "confirmed")
    ]
    [complained] = card(engine, cid, "Message Complained")
    assert complained["properties"]["campaign_id"] == "12"
    assert complained["properties"]["feedback_type"] == "abuse"
    [changed] = card(engine, cid, "Consent Changed")
    assert changed["properties"]["source"] == "complaint"

    before = table_counts(engine)
    assert process(pipeline, fixture("arf_abuse.eml")).events == []
    assert table_counts(engine) == before


def test_redacted_complaint_is_matched_by_its_message_id(
    engine: sa.Engine, pipeline: Pipeline
) -> None:
    cid = identify(pipeline, "u-hidden", email="hidden@outlook.example")
    sent(engine, "campaign:12:customer:346", None, "someone@else.example")
    sent(engine, "campaign:12:customer:347", cid, "hidden@outlook.example", campaign_id=12)
    applied = process(pipeline, fixture("arf_redacted.eml"))
    [result] = applied.results
    assert (result.message_key, result.address) == (
        "campaign:12:customer:347",
        "hidden@outlook.example",
    )
    assert result.suppressed and result.unsubscribed


# -- the API ------------------------------------------------------------------------------


def _bounce(client: TestClient, raw: bytes, key: str | None, ctype: str = "message/rfc822") -> Any:
    headers = {"Content-Type": ctype} | (bearer(key) if key else {})
    return client.post("/api/deliveries/bounce", content=raw, headers=headers)


def test_bounce_endpoint(
    client: TestClient, engine: sa.Engine, secret_key: str, write_key: str
) -> None:
    pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    cid = identify(pipeline, "u-bob", email="bob@example.org")
    sent(engine, "welcome-5581", cid, "bob@example.org")
    before = table_counts(engine)
    for auth in ({}, bearer(write_key), basic(write_key), bearer("not-a-key")):
        r = client.post("/api/deliveries/bounce", content=fixture("postfix_hard.eml"), headers=auth)
        assert r.status_code == 401, r.text
    r = _bounce(client, fixture("postfix_hard.eml"), secret_key, "application/json")
    assert r.status_code == 415 and "message/rfc822" in r.json()["message"]
    for raw in (fixture("garbage.eml"), fixture("out_of_office.eml"), b""):
        r = _bounce(client, raw, secret_key)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["where"] == "body"
    assert table_counts(engine) == before

    r = _bounce(client, fixture("postfix_hard.eml"), secret_key, "text/plain; charset=utf-8")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["kind"], body["format"], body["recorded_events"]) == ("bounce", "dsn", 1)
    assert body["results"][0] | {"customer_id": 0} == {
        "outcome": "hard",
        "address": "bob@example.org",
        "message_key": "welcome-5581",
        "customer_id": 0,
        "matched": True,
        "duplicate": False,
        "suppressed": True,
        "unsubscribed": False,
    }
    again = _bounce(client, fixture("postfix_hard.eml"), secret_key).json()
    assert again["recorded_events"] == 0 and again["results"][0]["duplicate"] is True


def test_oversized_bounce_is_refused(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    from rapport.api.delivery_routes import MAX_REPORT_BYTES

    r = _bounce(client, b"x" * (MAX_REPORT_BYTES + 1), secret_key)
    assert r.status_code == 413
    assert count(engine, suppressions) == 0


# -- end to end: real SMTP, a DSN back, the next send skipped ----------------------------


def _dsn_for(original: bytes, recipient: str) -> bytes:
    """A Postfix-style DSN for a message our SMTP server received, quoting its headers."""
    headers = original.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    return f"""Return-Path: <>
Date: Sun,  1 Mar 2026 12:05:00 +0000 (UTC)
From: MAILER-DAEMON@relay.shop.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@shop.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"
Message-Id: <20260301120500.E2E@relay.shop.example>

--B1
Content-Type: text/plain; charset=us-ascii

<{recipient}>: host mx.example.com said: 550 5.1.1 <{recipient}>: Recipient
    address rejected: User unknown (in reply to RCPT TO command)

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.shop.example

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--B1
Content-Type: text/rfc822-headers

{headers}

--B1--
""".encode()


def test_end_to_end_a_bounced_address_gets_nothing_more(
    client: TestClient, engine: sa.Engine, clock: SimulatedClock, secret_key: str
) -> None:
    mail = MailStore()
    server, port = start(mail)
    pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    smtp = SmtpBackend(
        SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="plain",
            sender="Shop <news@shop.example>",
            timeout=5,
        )
    )
    dispatcher = dispatcher_for(pipeline, {"email": smtp})
    try:
        cid = identify(pipeline, "u-zoe", email="zoe@example.com")
        first = message("campaign:7:customer:1", cid, recipient="zoe@example.com", campaign_id=7)
        with writing(engine) as conn:
            pipeline.record_many(conn, enqueue(conn, [first], clock.now()))
        assert dispatcher.run_once().sent == 1
        [got] = mail.messages
        mid = email.message_from_bytes(got.data, policy=policy.default)["Message-ID"]
        assert mid == message_id("campaign:7:customer:1", "shop.example")

        r = _bounce(client, _dsn_for(got.data, "zoe@example.com"), secret_key)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["suppressed"] is True
        listed = client.get(
            "/api/suppressions", params={"address": "zoe@example.com"}, headers=bearer(secret_key)
        ).json()
        assert [(s["address"], s["reason"]) for s in listed["suppressions"]] == [
            ("zoe@example.com", "bounce")
        ]
        events = client.get(
            f"/api/customers/{cid}/timeline",
            params={"name": "Message Bounced"},
            headers=bearer(secret_key),
        ).json()["events"]
        assert [
            (e["properties"]["message_id"], e["properties"]["bounce_type"]) for e in events
        ] == [("campaign:7:customer:1", "hard")]

        second = message("campaign:8:customer:1", cid, recipient="zoe@example.com", campaign_id=8)
        with writing(engine) as conn:
            pipeline.record_many(conn, enqueue(conn, [second], clock.now()))
        report = dispatcher.run_once()
        assert (report.sent, report.skipped) == (0, 1)
        assert len(mail.messages) == 1  # nothing more reached the SMTP server
        assert row(engine, "campaign:8:customer:1")["status"] == "skipped"
        assert row(engine, "campaign:8:customer:1")["last_error"] == "suppressed: bounce"
        [skipped] = card(engine, cid, "Message Skipped")
        assert skipped["properties"]["reason"] == "suppressed: bounce"
    finally:
        dispatcher.close()
        server.stop()


# -- the CLI ------------------------------------------------------------------------------


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_cli_reads_an_mbox_and_reports_every_message(
    engine: sa.Engine, pipeline: Pipeline, tmp_path: Path
) -> None:
    bob = identify(pipeline, "u-bob", email="bob@example.org")
    carol = identify(pipeline, "u-carol", email="carol@yahoo.com")
    identify(pipeline, "u-dave", email="dave@example.net")
    sent(engine, "welcome-5581", bob, "bob@example.org")
    sent(engine, "campaign:12:customer:346", carol, "carol@yahoo.com")
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for name in (
        "postfix_hard.eml",
        "garbage.eml",
        "arf_abuse.eml",
        "postfix_mailbox_full.eml",
        "out_of_office.eml",
        "exim_failed_recipients.eml",  # about nobody we know
    ):
        box.add(fixture(name))
    box.flush()
    box.close()
    runner = CliRunner()
    args = ["bounces", "read", str(tmp_path / "bounces.mbox"), "--database-url", _url(engine)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = result.output
    for label, n in (
        ("messages", 6),
        ("hard bounces", 1),
        ("soft bounces", 1),
        ("complaints", 1),
        ("not about our mail (ignored)", 1),
        ("unparsed", 2),
        ("addresses suppressed", 2),
    ):
        assert any(label in line and f" {n} " in line for line in out.splitlines()), (label, out)
    assert "no headers" in out and "not a bounce or complaint" in out
    with engine.connect() as conn:
        listed = {r.address: r.reason for r in conn.execute(sa.select(suppressions))}
    assert listed == {"bob@example.org": "bounce", "carol@yahoo.com": "complaint"}

    before = table_counts(engine)
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and table_counts(engine) == before
    assert any("already processed" in line and " 3 " in line for line in again.output.splitlines())


def test_cli_reads_a_maildir_and_refuses_what_is_not_a_mailbox(
    engine: sa.Engine, pipeline: Pipeline, tmp_path: Path
) -> None:
    cid = identify(pipeline, "u-erin", email="erin@example.com")
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(fixture("qmail_plain.eml"))
    result = CliRunner().invoke(
        cli, ["bounces", "read", str(tmp_path / "Maildir"), "--database-url", _url(engine)]
    )
    assert result.exit_code == 0, result.output
    assert [e["name"] for e in card(engine, cid, "Message Bounced")] == ["Message Bounced"]

    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "plain-dir").mkdir()
    for bad in ("notes.txt", "plain-dir", "missing.mbox"):
        result = CliRunner().invoke(
            cli, ["bounces", "read", str(tmp_path / bad), "--database-url", _url(engine)]
        )
        assert result.exit_code == 2, result.output
        assert "Cannot read" in result.output
