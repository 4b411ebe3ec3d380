"""Rate limits, the circuit breaker, and dispatchers sharing one PostgreSQL queue."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock, SystemClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.dispatcher import Dispatcher, Retry, Route
from rapport.messaging.limits import CircuitBreaker, TokenBucket
from rapport.messaging.outbox import Fallback, counts_by_status
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import events, outbox
from rapport.worker import DispatchLoop, dispatcher_for
from tests.delivery_helpers import FlakyBackend, message, put, row
from tests.shop_helpers import add_customer


def test_token_bucket(clock: SimulatedClock) -> None:
    bucket = TokenBucket(rate=2, burst=4, clock=clock)
    assert bucket.available() == 4
    bucket.take(4)
    assert bucket.available() == 0 and bucket.wait_seconds() == pytest.approx(0.5)
    clock.advance(timedelta(seconds=1))
    assert bucket.available() == 2
    clock.advance(timedelta(hours=1))
    assert bucket.available() == 4  # never more than the burst
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate=0, burst=None, clock=clock)


def test_rate_limit_holds_rows_back_without_touching_them(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = InMemoryBackend("sms")
    put(engine, clock.now(), *(message(f"k{i}", 1, channel="sms") for i in range(10)))
    dispatcher = Dispatcher(engine, {"sms": Route(backend, rate=2, burst=3)}, clock=clock)
    assert dispatcher.run_once().sent == 3  # the burst
    assert dispatcher.run_once().claimed == 0  # no tokens left, and no time passed
    clock.advance(timedelta(seconds=1))
    assert dispatcher.run_once().sent == 2  # 2 per second
    clock.advance(timedelta(milliseconds=500))
    assert dispatcher.run_once().sent == 1
    with engine.connect() as conn:
        assert counts_by_status(conn) == {"sent": 6, "queued": 4}
    assert row(engine, "k9")["attempts"] == 0  # held back rows spent no attempt


def test_circuit_breaker_states(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(failures=2, open_seconds=30, clock=clock)
    breaker.record(False)
    breaker.record(True)  # not consecutive
    breaker.record(False)
    assert breaker.allowance(100) == 100
    breaker.record(False)
    assert (breaker.state, breaker.allowance(100)) == ("open", 0)
    clock.advance(timedelta(seconds=30))
    assert (breaker.allowance(100), breaker.state) == (1, "half_open")
    breaker.record(False)  # the probe failed: open again for a full period
    assert breaker.allowance(100) == 0 and breaker.retry_in() == 30
    clock.advance(timedelta(seconds=30))
    assert breaker.allowance(100) == 1
    breaker.record(True)
    assert (breaker.state, breaker.allowance(100)) == ("closed", 100)


def test_open_breaker_keeps_rows_queued_then_probes(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = FlakyBackend("email", down=True)
    route = Route(backend, breaker_failures=3, breaker_seconds=60)
    retry = Retry(max_attempts=3, base_seconds=1, max_seconds=1, jitter=0)
    dispatcher = Dispatcher(engine, {"email": route}, clock=clock, retry=retry, batch_size=3)
    put(engine, clock.now(), *(message(f"k{i}", 1) for i in range(10)))

    assert dispatcher.run_once().retrying == 3  # three failures in a row: the breaker opens
    assert dispatcher.breakers["email"].state == "open"
    for _ in range(5):
        clock.advance(timedelta(seconds=10))
        assert dispatcher.run_once().claimed == 0
    assert len(backend.calls) == 3
    with engine.connect() as conn:
        assert counts_by_status(conn) == {"failed": 3, "queued": 7}  # no attempts burned

    clock.advance(timedelta(seconds=10))  # 60 s after opening: one probe, still failing
    assert dispatcher.run_once().claimed == 1
    assert dispatcher.breakers["email"].state == "open"

    backend.down = False
    clock.advance(timedelta(seconds=60))
    assert dispatcher.run_once().sent == 1  # the probe succeeds: closed again
    assert dispatcher.breakers["email"].state == "closed"
    while dispatcher.run_once().claimed:
        pass
    with engine.connect() as conn:
        assert counts_by_status(conn) == {"sent": 10}
    assert Counter(m.id for m in backend.accepted) == Counter(f"k{i}" for i in range(10))


def test_a_backend_that_raises_fails_the_batch_for_retry(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    class Broken(InMemoryBackend):
        async def send(self, messages):  # type: ignore[no-untyped-def]
            raise ConnectionResetError("provider hung up")

    put(engine, clock.now(), message("k", 1))
    report = Dispatcher(engine, {"email": Broken("email")}, clock=clock).run_once()
    assert report.retrying == 1
    assert "provider hung up" in row(engine, "k")["last_error"]


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_two_dispatchers_never_send_the_same_row(engine: sa.Engine) -> None:
    clock = SystemClock()
    backend = InMemoryBackend("email")
    cids = [add_customer(engine, clock.now()) for _ in range(5)]
    put(engine, clock.now(), *(message(f"k{i}", cids[i % 5]) for i in range(400)))
    pipeline = Pipeline(engine, clock)
    errors: list[BaseException] = []

    def work() -> None:
        dispatcher = dispatcher_for(pipeline, {"email": backend}, batch_size=25)
        try:
            while dispatcher.run_once().claimed:
                pass
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            dispatcher.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    sent = Counter(m.id for m in backend.outbox)
    assert len(sent) == 400 and set(sent.values()) == {1}
    with engine.connect() as conn:
        assert counts_by_status(conn) == {"sent": 400}
        n = conn.execute(
            sa.text("SELECT count(*) FROM events WHERE name = 'Message Sent'")
        ).scalar_one()
    assert n == 400


def test_dispatch_loop_delivers_in_the_background(engine: sa.Engine) -> None:
    clock = SystemClock()
    backend = InMemoryBackend("email")
    cid = add_customer(engine, clock.now())
    pipeline = Pipeline(engine, clock)
    loop = DispatchLoop(dispatcher_for(pipeline, {"email": backend}), interval=0.02)
    loop.start()
    try:
        put(engine, clock.now(), message("k", cid))
        for _ in range(500):
            if backend.outbox:
                break
            threading.Event().wait(0.01)
    finally:
        loop.stop()
    assert [m.id for m in backend.outbox] == ["k"]
    assert row(engine, "k")["status"] == "sent"


# -- several batches, the next claimed while one is on the wire ----------------------------


def test_run_batches_ends_as_ticks_one_by_one_would(engine: sa.Engine) -> None:
    """The same outcomes and events as run_once in a loop: sent, rejected with its
    fallback, skipped for an unsubscribe; every row finished, none sent twice."""
    clock = SystemClock()
    cids = [add_customer(engine, clock.now()) for _ in range(3)]
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cids[2], "email", "unsubscribed", "t", clock.now())])
    keys = [f"k{i}" for i in range(57)]
    fallback = Fallback("sms", "+79990001122")
    put(
        engine,
        clock.now(),
        *(
            message(k, cids[i % 3], fallback=(fallback,) if i % 3 == 1 else ())
            for i, k in enumerate(keys)
        ),
    )
    email = InMemoryBackend("email", reject=[f"{k}@example.com" for k in keys[1::3]])
    sms = InMemoryBackend("sms")
    pipeline = Pipeline(engine, clock)
    dispatcher = dispatcher_for(pipeline, {"email": email, "sms": sms}, batch_size=5)
    try:
        report = dispatcher.run_batches(max_batches=4)
        # Four batches, each up to five e-mails and five of the fallback SMS.
        assert 20 <= report.claimed <= 40 and len(email.outbox) < len(keys[0::3])
        # Every batch's sent rows, once each.
        assert len(set(report.sent_ids)) == len(report.sent_ids) == report.sent > 0
        while dispatcher.run_batches(max_batches=4).claimed:
            pass
    finally:
        dispatcher.close()
    assert Counter(m.id for m in email.outbox) == Counter(keys[0::3])
    assert Counter(m.id for m in sms.outbox) == Counter(f"{k}:fallback:sms" for k in keys[1::3])
    with engine.connect() as conn:
        statuses = {
            k: s for k, s in conn.execute(sa.select(outbox.c.idempotency_key, outbox.c.status))
        }
        names = Counter(
            conn.execute(sa.select(events.c.name).where(events.c.name.like("Message %"))).scalars()
        )
    assert all(statuses[k] == "sent" for k in keys[0::3])
    assert all(statuses[k] == "rejected" for k in keys[1::3])
    assert all(statuses[k] == "skipped" for k in keys[2::3])
    assert all(statuses[f"{k}:fallback:sms"] == "sent" for k in keys[1::3])
    assert names["Message Sent"] == len(keys[0::3]) + len(keys[1::3])
    assert names["Message Bounced"] == len(keys[1::3])
    assert names["Message Skipped"] == len(keys[2::3])


def test_rows_claimed_ahead_go_back_untouched_when_the_breaker_opens(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    backend = FlakyBackend("email", down=True)
    route = Route(backend, breaker_failures=3, breaker_seconds=60)
    dispatcher = Dispatcher(engine, {"email": route}, clock=clock, batch_size=4)
    put(engine, clock.now(), *(message(f"k{i}", 1) for i in range(12)))
    with engine.connect() as conn:
        before = {
            r.idempotency_key: r
            for r in conn.execute(sa.select(outbox).where(outbox.c.idempotency_key >= "k4"))
        }
    try:
        report = dispatcher.run_batches(max_batches=3)
    finally:
        dispatcher.close()
    assert (report.claimed, report.retrying) == (4, 4)  # the first batch opened the breaker
    assert backend.calls == ["k0", "k1", "k2", "k3"]
    with engine.connect() as conn:
        assert counts_by_status(conn) == {"failed": 4, "queued": 8}
        after = {
            r.idempotency_key: r
            for r in conn.execute(sa.select(outbox).where(outbox.c.idempotency_key >= "k4"))
        }
    assert after == before  # the four claimed ahead: status, attempts, lease as they were
