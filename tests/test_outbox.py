"""The outbox and the dispatcher on both stores: enqueue once, send once, retry, give up,
fall back, take over a dead worker's lease, and put every status on the customer's card."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.customers.timeline import timeline
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.dispatcher import Dispatcher, Retry
from rapport.messaging.outbox import (
    Fallback,
    OutboxError,
    QueuedMessage,
    counts_by_status,
    dead_letters,
    enqueue,
    requeue_dead,
)
from rapport.pipeline import Pipeline
from rapport.segments.definitions import create_segment
from rapport.store.engine import writing
from rapport.store.tables import outbox, segment_members
from rapport.worker import dispatcher_for
from tests.delivery_helpers import FlakyBackend, message, put, row
from tests.helpers import count, table_counts
from tests.shop_helpers import add_customer


def test_enqueue_is_idempotent(engine: sa.Engine, clock: SimulatedClock) -> None:
    first = put(engine, clock.now(), message("run:9:step:3", 1), message("run:9:step:3", 1))
    again = put(engine, clock.now(), message("run:9:step:3", 1, body_text="changed"))
    assert [name for _, name, _ in first] == ["Message Queued"]
    assert again == []
    assert count(engine, outbox) == 1
    assert row(engine, "run:9:step:3")["body_text"] == "Hello"


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    with pytest.raises(RuntimeError), writing(engine) as conn:
        enqueue(conn, [message("k1", 1)], clock.now())
        raise RuntimeError("the scenario step failed after queueing")
    assert count(engine, outbox) == 0


def test_bad_messages_are_refused_before_anything_is_stored(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    before = table_counts(engine)
    with pytest.raises(OutboxError, match="unknown channel 'fax'"):
        put(engine, clock.now(), message("ok", 1), message("bad", 1, channel="fax"))
    with pytest.raises(OutboxError, match="idempotency key"):
        put(engine, clock.now(), message("", 1))
    assert table_counts(engine) == before


def test_full_cycle_sends_once_with_statuses_and_events(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = InMemoryBackend("email")
    put(
        engine,
        clock.now(),
        message("campaign:12:customer:1", 1, campaign_id=12, template_id=7, variant="A"),
        message("campaign:12:customer:2", 2, campaign_id=12, template_id=7, variant="B"),
    )
    dispatcher = Dispatcher(engine, {"email": backend}, clock=clock)
    report = dispatcher.run_once()
    assert (report.claimed, report.sent) == (2, 2)
    assert dispatcher.run_once().claimed == 0  # nothing is sent twice
    assert [m.id for m in backend.outbox] == ["campaign:12:customer:1", "campaign:12:customer:2"]
    sent = row(engine, "campaign:12:customer:1")
    assert sent["status"] == "sent" and sent["attempts"] == 1
    assert sent["sent_at"] == clock.now() and sent["provider_id"] == "mem-1"
    assert sent["claimed_by"] is None
    assert report.events[0] == (
        1,
        "Message Sent",
        {
            "message_id": "campaign:12:customer:1",
            "channel": "email",
            "campaign_id": "12",
            "template_id": "7",
            "variant": "A",
            "provider_id": "mem-1",
        },
    )
    dispatcher.close()


def test_scheduled_messages_wait_for_their_time(engine: sa.Engine, clock: SimulatedClock) -> None:
    backend = InMemoryBackend("sms")
    later = clock.now() + timedelta(hours=2)
    put(
        engine, clock.now(), message("k", 1, channel="sms", recipient="+79990001122", send_at=later)
    )
    dispatcher = Dispatcher(engine, {"sms": backend}, clock=clock)
    assert dispatcher.run_once().claimed == 0
    clock.advance(timedelta(hours=2))
    assert dispatcher.run_once().sent == 1


def test_failures_back_off_then_die(engine: sa.Engine, clock: SimulatedClock) -> None:
    backend = FlakyBackend("email", down=True)
    retry = Retry(max_attempts=3, base_seconds=10, max_seconds=1000, jitter=0.5)
    dispatcher = Dispatcher(engine, {"email": backend}, clock=clock, retry=retry)
    put(engine, clock.now(), message("k", 1, fallback=()))

    assert dispatcher.run_once().retrying == 1
    first = row(engine, "k")
    assert first["status"] == "failed" and first["attempts"] == 1
    assert first["last_error"] == "503 try later"
    wait = (first["next_attempt_at"] - clock.now()).total_seconds()
    assert 5 <= wait <= 10  # 10 s, minus up to half of it as jitter

    assert dispatcher.run_once().claimed == 0  # not due yet
    clock.advance(timedelta(seconds=10))
    assert dispatcher.run_once().retrying == 1
    second = row(engine, "k")
    assert 10 <= (second["next_attempt_at"] - clock.now()).total_seconds() <= 20  # doubled

    clock.advance(timedelta(seconds=20))
    report = dispatcher.run_once()
    assert report.dead == 1
    assert [(name, props["reason"], props["attempts"]) for _, name, props in report.events] == [
        ("Message Failed", "503 try later", "3")
    ]
    assert backend.calls == ["k", "k", "k"]
    with engine.connect() as conn:
        assert [d["idempotency_key"] for d in dead_letters(conn)] == ["k"]
        assert counts_by_status(conn) == {"dead": 1}
    clock.advance(timedelta(days=1))
    assert dispatcher.run_once().claimed == 0  # the dead stay dead

    backend.down = False  # the provider is fixed; an operator retries the dead letters
    with writing(engine) as conn:
        assert requeue_dead(conn, [row(engine, "k")["id"]], clock.now()) == 1
    assert dispatcher.run_once().sent == 1


def test_rejected_falls_back_to_the_next_channel(engine: sa.Engine, clock: SimulatedClock) -> None:
    push = InMemoryBackend("push", reject=["token-1"])
    telegram = InMemoryBackend("telegram", reject=["chat-1"])
    sms = InMemoryBackend("sms")
    chain = (
        Fallback("telegram", "chat-1"),
        Fallback("sms", "+79990001122", body_text="Short text for SMS"),
    )
    put(
        engine,
        clock.now(),
        message(
            "run:1:step:2",
            5,
            channel="push",
            recipient="token-1",
            scenario_id="welcome",
            fallback=chain,
        ),
    )
    dispatcher = Dispatcher(engine, {"push": push, "telegram": telegram, "sms": sms}, clock=clock)

    first = dispatcher.run_once()
    assert [(n, p["channel"]) for _, n, p in first.events] == [
        ("Message Bounced", "push"),
        ("Message Queued", "telegram"),
    ]
    second = dispatcher.run_once()
    assert [(n, p["channel"]) for _, n, p in second.events] == [
        ("Message Bounced", "telegram"),
        ("Message Queued", "sms"),
    ]
    third = dispatcher.run_once()
    assert [(n, p["channel"], p["scenario_id"]) for _, n, p in third.events] == [
        ("Message Sent", "sms", "welcome")
    ]
    assert [(m.id, m.to, m.body_text) for m in sms.outbox] == [
        ("run:1:step:2:fallback:telegram:fallback:sms", "+79990001122", "Short text for SMS")
    ]
    assert row(engine, "run:1:step:2")["status"] == "rejected"
    assert row(engine, "run:1:step:2:fallback:telegram")["body_text"] == "Hello"  # inherited
    assert dispatcher.run_once().claimed == 0


def test_dead_and_skipped_fall_back_too(engine: sa.Engine, clock: SimulatedClock) -> None:
    cid = add_customer(engine, clock.now())
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, "email", "unsubscribed", "test", clock.now())])
    skipped_by_policy = message(
        "a", cid, skip_reason="quiet hours", fallback=(Fallback("sms", "+79990001122"),)
    )
    unsubscribed = message("b", cid, fallback=(Fallback("telegram", "chat-9"),))
    events = put(engine, clock.now(), skipped_by_policy, unsubscribed)
    assert [(n, p["message_id"]) for _, n, p in events] == [
        ("Message Skipped", "a"),
        ("Message Queued", "b"),
        ("Message Queued", "a:fallback:sms"),
    ]
    email, sms, telegram = (
        InMemoryBackend("email"),
        InMemoryBackend("sms"),
        InMemoryBackend("telegram"),
    )
    dispatcher = Dispatcher(engine, {"email": email, "sms": sms, "telegram": telegram}, clock=clock)
    report = dispatcher.run_once()
    assert email.outbox == []  # unsubscribed after it was queued: not sent
    assert row(engine, "b")["status"] == "skipped"
    assert row(engine, "b")["last_error"] == "unsubscribed from email"
    assert report.skipped == 1 and report.sent == 1
    # Only the row that became sent is reported by id (the fallback SMS), not the skipped one.
    assert report.sent_ids == [row(engine, "a:fallback:sms")["id"]]
    dispatcher.run_once()
    assert [m.to for m in sms.outbox] == ["+79990001122"]
    assert [m.to for m in telegram.outbox] == ["chat-9"]


def test_an_expired_lease_is_taken_over_and_sent_once(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = InMemoryBackend("email")
    put(engine, clock.now(), message("k", 1))
    crashed = Dispatcher(engine, {"email": backend}, clock=clock, lease_seconds=60)
    claim = crashed.claim()  # ... and the process dies before sending
    assert len(claim) == 1 and row(engine, "k")["status"] == "sending"

    other = Dispatcher(engine, {"email": backend}, clock=clock, lease_seconds=60)
    assert other.run_once().claimed == 0  # the lease still holds
    clock.advance(timedelta(seconds=61))
    report = other.run_once()
    assert report.sent == 1
    assert [m.id for m in backend.outbox] == ["k"]
    assert row(engine, "k")["attempts"] == 2

    # The first worker was only paused and comes back: it no longer owns the row.
    late = crashed.finish(claim, crashed.send(claim))
    assert (late.lost, late.sent, late.events) == (1, 0, [])
    assert row(engine, "k")["status"] == "sent"


def test_a_row_that_keeps_killing_workers_goes_dead(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = InMemoryBackend("email")
    put(engine, clock.now(), message("poison", 1))
    for _ in range(2):
        Dispatcher(engine, {"email": backend}, clock=clock, lease_seconds=1).claim()
        clock.advance(timedelta(seconds=2))
    dispatcher = Dispatcher(engine, {"email": backend}, clock=clock, retry=Retry(max_attempts=2))
    assert dispatcher.run_once().dead == 1
    assert backend.outbox == []


def test_statuses_land_on_the_card_and_feed_segments(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    pipeline = Pipeline(engine, clock)
    cid = add_customer(engine, clock.now())
    with writing(engine) as conn:
        segment = create_segment(
            conn, "got spring", "", {"message": "received", "campaign_id": "12"}, clock.now()
        )
        pipeline.record_many(
            conn,
            enqueue(conn, [message("campaign:12:customer:x", cid, campaign_id=12)], clock.now()),
        )
    dispatcher = dispatcher_for(pipeline, {"email": InMemoryBackend("email")})
    dispatcher.run_once()
    with engine.connect() as conn:
        names = [e["name"] for e in timeline(conn, cid)]
        members = (
            conn.execute(
                sa.select(segment_members.c.customer_id).where(
                    segment_members.c.segment_id == segment.id, segment_members.c.until.is_(None)
                )
            )
            .scalars()
            .all()
        )
        sent = timeline(conn, cid, names=["Message Sent"])[0]
    assert {"Message Queued", "Message Sent", "Segment Entered"} <= set(names)
    assert sent["properties"]["campaign_id"] == "12" and sent["type"] == "system"
    assert members == [cid]
    dispatcher.close()


def test_messages_without_a_customer_send_without_events(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    hook = InMemoryBackend("webhook")
    events = put(engine, clock.now(), QueuedMessage("hook:1", "webhook", "http://x.test/h", "{}"))
    report = Dispatcher(engine, {"webhook": hook}, clock=clock).run_once()
    assert events == [] and report.sent == 1 and report.events == []
    assert report.sent_ids == [row(engine, "hook:1")["id"]]  # by id, with or without a card


def test_channels_without_a_backend_wait(engine: sa.Engine, clock: SimulatedClock) -> None:
    put(engine, clock.now(), message("k", 1, channel="sms"))
    dispatcher = Dispatcher(engine, {"email": InMemoryBackend("email")}, clock=clock)
    assert dispatcher.run_once().claimed == 0
    assert row(engine, "k")["status"] == "queued"
