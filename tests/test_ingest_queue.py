"""Queued ingest: a request is answered once it is in the inbox, applied behind exactly
once, and a request that cannot be applied is parked without holding back the others.
On both stores, through HTTP and the applier as they run in `rapport serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.api.app import create_app
from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.inbox_applier import Applied, InboxApplier, apply_all, apply_once, decoder
from rapport.ingest import inbox
from rapport.ingest.incoming import Incoming
from rapport.pipeline import Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import customers, events, identities, ingest_inbox
from tests.conftest import T0, _clean, basic


def _count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def queued(settings: Settings) -> Settings:
    """Queued ingest with nobody applying: each test applies when it chooses."""
    return settings.model_copy(update={"ingest_queue": True, "ingest_apply": False})


@pytest.fixture
def qclient(queued: Settings, engine: sa.Engine, clock: SimulatedClock):  # type: ignore[no-untyped-def]
    with TestClient(create_app(queued, engine=engine, clock=clock)) as c:
        yield c


def _batch(n: int, prefix: str = "m", user: str = "u1") -> dict[str, Any]:
    return {
        "batch": [
            {"type": "track", "userId": user, "event": "Clicked", "messageId": f"{prefix}{i}"}
            for i in range(n)
        ]
    }


def test_answered_before_applied_then_applied_once(qclient, engine, write_key, queued):
    r = qclient.post("/v1/batch", json=_batch(3), headers=basic(write_key))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    assert _count(engine, events) == 0  # acknowledged, not applied yet
    assert _count(engine, ingest_inbox) == 1
    with engine.connect() as conn:
        assert inbox.status(conn).pending_messages == 3

    pipeline = Pipeline(engine)
    done = apply_all(pipeline, decoder(queued), 5000)
    assert (done.requests, done.stored, done.duplicates, done.parked) == (1, 3, 0, 0)
    assert _count(engine, events) == 3
    assert _count(engine, ingest_inbox) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(customers.c.events_count)).scalar_one() == 3
    # Sent again (a client retry): acknowledged, and applied as duplicates.
    qclient.post("/v1/batch", json=_batch(3), headers=basic(write_key))
    again = apply_all(pipeline, decoder(queued), 5000)
    assert (again.stored, again.duplicates) == (0, 3)
    assert _count(engine, events) == 3


def test_times_are_read_at_receipt_not_at_apply(qclient, engine, write_key, queued, clock):
    # The client's clock runs an hour fast; the correction uses the time the request
    # arrived, which the inbox keeps, however late the request is applied.
    msg = {
        "userId": "u1",
        "event": "Clicked",
        "timestamp": "2026-03-01T12:59:50Z",
        "sentAt": "2026-03-01T13:00:00Z",
    }
    assert qclient.post("/v1/track", json=msg, headers=basic(write_key)).status_code == 200
    clock.advance(timedelta(hours=5))
    apply_all(Pipeline(engine, clock), decoder(queued), 5000)
    with engine.connect() as conn:
        row = conn.execute(sa.select(events.c.occurred_at, events.c.received_at)).one()
    assert row.received_at == T0
    assert row.occurred_at == T0 - timedelta(seconds=10)


RICH_BATCH: dict[str, Any] = {
    "context": {"ip": "203.0.113.7"},
    "sentAt": "2026-03-01T13:00:05Z",
    "batch": [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "messageId": "r1",
            "timestamp": "2026-03-01T13:00:00.123456Z",
            "traits": {
                "email": " Ann@Example.COM ",
                "phone": "+7 (912) 345-67-89",
                "firstName": "Анна",
                "birthday": "1990-02-28",
                "timezone": "Europe/Moscow",
                "plan": {"tier": "gold", "since": 2021},
            },
            "context": {"consents": {"email": True, "sms": "pending"}, "locale": "ru_RU"},
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "messageId": "r2",
            "properties": {"order_id": "o1", "total": 12.5, "products": [{"id": "p", "q": 2}]},
        },
        {"type": "alias", "userId": "u1", "previousId": "a0", "messageId": "r3"},
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"n": 1}, "messageId": "r4"},
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "r5"},
    ],
}


def test_the_inbox_keeps_the_validated_messages_exactly(queued):
    """What an endpoint validated is what the applier gets back: every field, timestamps
    to the microsecond, the typed attributes (a birthday stays a date) and consents."""
    from rapport.ingest.requests import messages_of

    parsed = messages_of(
        "batch", RICH_BATCH, received_at=T0, phone_region="RU", max_message_bytes=32768
    )
    assert parsed[0].attributes is not None and parsed[0].attributes.columns["birthday"]
    stored = inbox.Entry("batch", T0, inbox.encode(parsed), len(parsed))
    assert decoder(queued)(stored) == parsed
    assert inbox.decode(orjson.loads(inbox.encode(parsed))) == parsed


def test_the_inbox_keeps_no_write_key_and_refuses_an_unknown_form(qclient, engine, write_key):
    body = {**_batch(2), "writeKey": write_key}
    assert qclient.post("/v1/batch", json=body).status_code == 200
    with engine.connect() as conn:
        stored = bytes(conn.execute(sa.select(ingest_inbox.c.body)).scalar_one())
    assert write_key.encode() not in stored
    assert b"m0" in stored and b"m1" in stored
    with pytest.raises(InvalidInput, match="unknown inbox format 2"):
        inbox.decode([2, []])
    with pytest.raises(InvalidInput, match="not a stored request"):
        inbox.decode([inbox.FORMAT, ["track", "too", "short"]])


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v1/batch", b"{not json", 400, "malformed JSON"),
        ("/v1/batch", b"[1, 2]", 400, "'batch' list"),
        ("/v1/batch", orjson.dumps({"batch": [{"type": "track", "event": "X"}]}), 400, "batch[0]"),
        ("/v1/batch", orjson.dumps({"batch": [{"type": "nope", "userId": "u"}]}), 400, "batch[0]"),
        ("/v1/track", orjson.dumps({"userId": "u1"}), 400, "event"),
        ("/v1/batch", b'{"batch": [' + b'{"userId":"u"},' * 40000 + b"{}]}", 413, "limit"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_queued(
    qclient, engine, write_key, path, body, status, says
):
    r = qclient.post(
        path, content=body, headers={**basic(write_key), "Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    assert says in r.text
    assert _count(engine, ingest_inbox) == 0


def test_a_wrong_key_queues_nothing(qclient, engine):
    r = qclient.post("/v1/batch", json=_batch(1), headers=basic("wk_not_a_key"))
    assert r.status_code == 401
    assert _count(engine, ingest_inbox) == 0


def test_the_servers_applier_applies_on_its_own(queued, engine, clock, write_key):
    settings = queued.model_copy(update={"ingest_apply": True, "ingest_poll_seconds": 5.0})
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        assert client.post("/v1/batch", json=_batch(5), headers=basic(write_key)).is_success
        # The append wakes the applier: well before its 5 s poll comes round.
        deadline = time.monotonic() + 4
        while _count(engine, events) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(engine, events) == 5
        health = client.get("/health").json()
    assert health["inbox"] == {
        "pending_requests": 0,
        "pending_messages": 0,
        "lag_seconds": 0.0,
        "parked_requests": 0,
    }


def test_health_shows_the_lag(qclient, write_key, clock):
    qclient.post("/v1/batch", json=_batch(2), headers=basic(write_key))
    clock.advance(timedelta(seconds=42))
    got = qclient.get("/health").json()["inbox"]
    assert got == {
        "pending_requests": 1,
        "pending_messages": 2,
        "lag_seconds": 42.0,
        "parked_requests": 0,
    }


def _append(engine: sa.Engine, *entries: inbox.Entry) -> None:
    with writing(engine) as conn:
        inbox.append(conn, list(entries))


def _entry(body: dict[str, Any] | bytes, kind: str = "batch", messages: int = 1) -> inbox.Entry:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return inbox.Entry(kind, T0, raw, messages)


def test_an_unreadable_request_is_parked_and_the_rest_applied(engine, queued):
    _append(
        engine,
        _entry(_batch(2, "a"), messages=2),
        _entry(b"this is not JSON"),
        _entry({"batch": [{"type": "track", "event": "No One"}]}),  # no userId/anonymousId
        _entry(_batch(2, "b"), messages=2),
    )
    done = apply_all(Pipeline(engine), decoder(queued), 5000)
    assert (done.stored, done.parked) == (4, 2)
    assert _count(engine, events) == 4
    with engine.connect() as conn:
        rows = inbox.parked(conn)
        assert inbox.status(conn).pending_requests == 0
    assert [r.attempts for r in rows] == [1, 1]
    assert "cannot be read" in (rows[0].last_error or "")
    assert "userId or anonymousId" in (rows[1].last_error or "")


def test_a_failing_group_is_applied_one_by_one_exactly_once(engine, queued):
    """The group's transaction rolls back whole; applied alone, the good requests are
    stored once and the failing one counts an attempt, and is parked after the last."""
    _append(
        engine,
        _entry(_batch(2, "a"), messages=2),
        _entry(_batch(1, "boom"), messages=1),
        _entry(_batch(2, "b"), messages=2),
    )
    read = decoder(queued)

    def decode(entry: inbox.Entry) -> list[Incoming]:
        msgs = read(entry)
        if msgs[0].message_id.startswith("boom"):
            raise RuntimeError("the pipeline refused it")
        return msgs

    pipeline = Pipeline(engine)
    first = apply_once(pipeline, decode, 5000)
    assert (first.requests, first.stored, first.parked) == (2, 4, 0)
    assert _count(engine, events) == 4
    with engine.connect() as conn:
        row = conn.execute(sa.select(ingest_inbox)).one()
    assert (row.attempts, row.failed_at) == (1, None)
    assert "the pipeline refused it" in row.last_error
    for _ in range(inbox.MAX_ATTEMPTS - 1):
        apply_once(pipeline, decode, 5000)
    with engine.connect() as conn:
        row = conn.execute(sa.select(ingest_inbox)).one()
    assert row.attempts == inbox.MAX_ATTEMPTS and row.failed_at is not None
    assert apply_once(pipeline, decode, 5000).requests == 0  # parked: skipped
    assert _count(engine, events) == 4


def test_groups_respect_the_message_limit(engine, queued):
    _append(engine, *[_entry(_batch(3, f"g{i}-"), messages=3) for i in range(5)])
    pipeline = Pipeline(engine)
    sizes = []
    while (done := apply_once(pipeline, decoder(queued), 7)).requests:
        sizes.append(done.stored)
    assert sizes == [6, 6, 3]
    big = _entry(_batch(10, "big"), messages=10)
    _append(engine, big)  # larger than the limit alone: still applied, by itself
    assert apply_once(pipeline, decoder(queued), 7).stored == 10


def test_concurrent_claims_take_the_next_requests(_engines):
    """On PostgreSQL a claim locks only the requests it takes, so a second applier's claim
    gets the very next ones (it used to lock its 500-row window and send the next applier
    past all of them)."""
    engine = _engines["postgres"]
    _clean(engine)
    _append(engine, *[_entry(_batch(3, f"n{i}-"), messages=3) for i in range(5)])
    with engine.connect() as first, engine.connect() as second, engine.connect() as third:
        first.begin()
        second.begin()
        third.begin()
        taken = [
            [c.id for c in inbox.claim(conn, limit)]
            for conn, limit in ((first, 3), (second, 6), (third, 3))
        ]
        first.rollback()
        assert [c.id for c in inbox.claim(first, 3)] == taken[0]
    assert taken == [[1], [2], [3]]  # the second chose 1 and 2; 1 was held


def test_concurrent_appliers_apply_each_request_once(engine, queued):
    _append(engine, *[_entry(_batch(4, f"c{i}-", user=f"u{i % 7}"), messages=4) for i in range(60)])
    errors: list[BaseException] = []
    totals: list[Applied] = []

    def run() -> None:
        try:
            totals.append(apply_all(Pipeline(engine), decoder(queued), 12))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    # No request was taken by two appliers: none saw another's messages as duplicates.
    assert sum(t.duplicates for t in totals) == 0
    assert sum(t.stored for t in totals) == 240
    assert _count(engine, events) == 240
    assert _count(engine, ingest_inbox) == 0
    assert _count(engine, identities, identities.c.kind == "user_id") == 7
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(customers.c.events_count))).scalar_one() == 240


def test_the_applier_thread_stops_cleanly(engine, queued):
    applier = InboxApplier(
        Pipeline(engine), queued.model_copy(update={"ingest_poll_seconds": 0.05})
    )
    applier.start()
    _append(engine, _entry(_batch(2), messages=2))
    deadline = time.monotonic() + 10
    while _count(engine, events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # no wake-up: found by polling, as another process's appends are
    applier.stop()
    assert _count(engine, events) == 2


def test_cli_status_apply_parked_retry_discard(engine):
    url = _url(engine)
    _append(engine, _entry(_batch(2, "x"), messages=2), _entry(b"{broken"))
    runner = CliRunner()
    status = runner.invoke(cli, ["inbox", "status", "--database-url", url])
    assert status.exit_code == 0, status.output
    assert "pending requests: 2" in status.output
    assert "pending messages: 3" in status.output

    applied = runner.invoke(cli, ["inbox", "apply", "--database-url", url])
    assert applied.exit_code == 1, applied.output  # something was parked
    assert "2 events stored" in applied.output and "1 parked" in applied.output

    listed = runner.invoke(cli, ["inbox", "parked", "--database-url", url])
    assert "cannot be read" in listed.output
    with engine.connect() as conn:
        parked_id = inbox.parked(conn)[0].id

    assert runner.invoke(cli, ["inbox", "retry", "--database-url", url]).exit_code == 2
    retried = runner.invoke(cli, ["inbox", "retry", "--all", "--database-url", url])
    assert "1 requests back in line" in retried.output
    with engine.connect() as conn:
        assert inbox.status(conn).pending_requests == 1
    runner.invoke(cli, ["inbox", "apply", "--database-url", url])  # parked again

    missing = runner.invoke(cli, ["inbox", "discard", "999999", "--database-url", url])
    assert missing.exit_code == 1 and "not parked" in missing.output
    gone = runner.invoke(cli, ["inbox", "discard", str(parked_id), "--database-url", url])
    assert gone.exit_code == 0 and "1 parked requests discarded" in gone.output
    assert _count(engine, ingest_inbox) == 0
    assert _count(engine, events) == 2


def test_an_ingest_only_worker_process_applies_and_stops_on_interrupt(engine):
    """`rapport worker --ingest-only`, as operators run it beside an API-only server."""
    root = Path(__file__).resolve().parent.parent
    command = ["worker", "--ingest-only", "--database-url", _url(engine)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rapport.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root / "src"), "RAPPORT_INGEST_POLL_SECONDS": "0.05"},
    )
    try:
        _append(engine, _entry(_batch(3, "w"), messages=3))
        deadline = time.monotonic() + 60
        while _count(engine, events) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count(engine, events) == 3
        assert _count(engine, ingest_inbox) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert b"Worker running: queued ingest." in out, err.decode()
    assert b"segment sweeps" not in out
