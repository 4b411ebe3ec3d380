"""Outgoing event subscriptions on SQLite and PostgreSQL: the API, pattern matching in the
pipeline, signed deliveries to a subscriber over real HTTP, retries with backoff on the
simulated clock and dead letters, paused and deleted subscriptions, and deliveries that
never trigger deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapport.clock import SimulatedClock
from rapport.ingest.messages import parse_message
from rapport.messaging.channels.webhook import (
    NO_SECRET,
    SIGNATURE_HEADER,
    InvalidSignature,
    verify_signature,
)
from rapport.messaging.dispatcher import Retry
from rapport.messaging.event_subscriptions import Matcher, Target
from rapport.messaging.outbox import dead_letters, enqueue
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import events, outbox, webhook_subscriptions
from rapport.worker import ConfiguredDispatcher
from tests.channel_fakes import Recorded, serve
from tests.conftest import bearer
from tests.delivery_helpers import message, row
from tests.helpers import count, table_counts


@dataclass
class Subscriber:
    """A partner's endpoint: verifies every request as a receiver would, then records it."""

    url: str
    secrets: dict[str, str] = field(default_factory=dict)  # path → the secret it expects
    received: list[Recorded] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def bodies(self, path: str) -> list[Any]:
        return [r.json() for r in self.received if r.path == path]


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    state = Subscriber("")

    async def hook(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        if path == "/boom":
            state.received.append(Recorded("POST", path, dict(request.headers), body))
            return Response("down for maintenance", status_code=500)
        try:
            verify_signature(
                state.secrets.get(path, "-"),
                request.headers.get(SIGNATURE_HEADER),
                body,
                datetime.now(UTC),
            )
        except InvalidSignature as exc:
            state.refused.append(f"{path}: {exc}")
            return JSONResponse({"error": str(exc)}, status_code=401)
        state.received.append(Recorded("POST", path, dict(request.headers), body))
        return JSONResponse({"ok": True})

    with serve(Starlette(routes=[Route("/{name}", hook, methods=["POST"])])) as url:
        state.url = url
        yield state


def subscribe(client: TestClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.post("/api/event-subscriptions", headers=auth, json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def track(pipeline: Pipeline, user_id: str, name: str, **props: Any) -> str:
    message_id = f"m-{uuid.uuid4().hex}"
    incoming = parse_message(
        {
            "type": "track",
            "userId": user_id,
            "event": name,
            "properties": props,
            "messageId": message_id,
        },
        where="message",
        received_at=pipeline.clock.now(),
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    pipeline.ingest([incoming])
    return message_id


def deliveries(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(outbox)
                .where(outbox.c.idempotency_key.like("sub:%"))
                .order_by(outbox.c.id)
            ).all()
        )


def test_crud_shows_the_secret_once(client: TestClient, secret_key: str) -> None:
    auth = bearer(secret_key)
    created = subscribe(
        client, auth, name="erp", url="https://erp.example/hooks", event_names=["Order *"]
    )
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    sid = created["id"]
    listed = client.get("/api/event-subscriptions", headers=auth).json()["subscriptions"]
    assert [s["name"] for s in listed] == ["erp"] and "secret" not in listed[0]
    shown = client.get(f"/api/event-subscriptions/{sid}", headers=auth).json()
    assert shown["event_names"] == ["Order *"] and shown["active"] is True
    assert "secret" not in shown

    paused = client.patch(
        f"/api/event-subscriptions/{sid}", headers=auth, json={"active": False}
    ).json()
    assert paused["active"] is False and "secret" not in paused
    rotated = client.patch(
        f"/api/event-subscriptions/{sid}", headers=auth, json={"rotate_secret": True}
    ).json()
    assert rotated["secret"] != secret

    own = subscribe(
        client,
        auth,
        name="bi",
        url="http://bi.example/in",
        event_names=["*"],
        secret="a-secret-of-our-own",
    )
    assert own["secret"] == "a-secret-of-our-own"
    duplicate = client.post(
        "/api/event-subscriptions",
        headers=auth,
        json={"name": "bi", "url": "https://x.example", "event_names": ["*"]},
    )
    assert duplicate.status_code == 409
    assert client.delete(f"/api/event-subscriptions/{sid}", headers=auth).status_code == 200
    assert client.get(f"/api/event-subscriptions/{sid}", headers=auth).status_code == 404
    assert client.delete(f"/api/event-subscriptions/{sid}", headers=auth).status_code == 404
    assert client.get("/api/event-subscriptions").status_code == 401


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"url": "ftp://erp.example/x"}, "url"),
        ({"url": "erp.example/x"}, "url"),
        ({"event_names": []}, "event_names"),
        ({"event_names": ["Order Completed", "Mes*sage"]}, "event_names[1]"),
        ({"event_names": ["  "]}, "event_names[0]"),
        ({"secret": "short"}, "secret"),
        ({"name": " "}, "name"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_bad_input_is_422_and_stores_nothing(
    client: TestClient, secret_key: str, engine: sa.Engine, body: dict[str, Any], where: str
) -> None:
    before = table_counts(engine)
    full = {"name": "erp", "url": "https://erp.example/hooks", "event_names": ["*"], **body}
    answer = client.post("/api/event-subscriptions", headers=bearer(secret_key), json=full)
    assert answer.status_code == 422, answer.text
    assert where in [e["where"] for e in answer.json()["errors"]]
    assert table_counts(engine) == before


def test_patterns() -> None:
    a, b, c = Target(1, "a"), Target(2, "b"), Target(3, "c")
    matcher = Matcher(
        [(a, ["Order Completed", "Message *"]), (b, ["*"]), (c, ["Message Sent", "Message *"])]
    )
    assert matcher.matching("Order Completed") == (a, b)
    assert matcher.matching("Message Sent") == (a, b, c)  # once each, in id order
    assert matcher.matching("Message Opened") == (a, b, c)
    assert matcher.matching("Messages") == (b,)
    assert matcher.matching("order completed") == (b,)  # names are exact
    assert not Matcher([])


def test_the_pipeline_queues_one_delivery_per_matching_subscription(
    client: TestClient, secret_key: str, engine: sa.Engine, app: Any
) -> None:
    auth = bearer(secret_key)
    orders = subscribe(
        client, auth, name="orders", url="https://erp.example/o", event_names=["Order Completed"]
    )
    subscribe(client, auth, name="messages", url="https://erp.example/m", event_names=["Message *"])
    everything = subscribe(client, auth, name="all", url="https://bi.example/", event_names=["*"])
    subscribe(
        client, auth, name="paused", url="https://x.example/", event_names=["*"], active=False
    )
    pipeline: Pipeline = app.state.pipeline
    completed = track(pipeline, "u1", "Order Completed", order_id="A-1", total=1490)
    viewed = track(pipeline, "u1", "Product Viewed", product_id="p1")

    rows = deliveries(engine)
    by_sub: dict[int, list[Any]] = {}
    for r in rows:
        by_sub.setdefault(r.data["subscription_id"], []).append(r)
    assert [r.idempotency_key for r in by_sub.pop(orders["id"])] == [
        f"sub:{orders['id']}:event:{completed}"
    ]
    # "*" also gets what Rapport observed itself (the first order moved the lifecycle stage).
    for_all = {r.data["payload"]["id"]: r.data["payload"] for r in by_sub.pop(everything["id"])}
    assert {completed, viewed} <= set(for_all)
    assert {p["type"] for i, p in for_all.items() if i not in (completed, viewed)} == {"system"}
    assert by_sub == {}  # "Message *" saw no message event, the paused one gets nothing
    first = next(r for r in rows if r.idempotency_key.startswith(f"sub:{orders['id']}:"))
    assert (first.channel, first.recipient, first.customer_id) == (
        "webhook",
        "https://erp.example/o",
        None,
    )
    assert first.data["subscription_id"] == orders["id"]
    assert "secret" not in first.data  # looked up when sent, never copied
    payload = first.data["payload"]
    assert payload["id"] == completed and payload["name"] == "Order Completed"
    assert payload["type"] == "track" and isinstance(payload["customer_id"], int)
    assert payload["properties"] == {"order_id": "A-1", "total": 1490}
    assert datetime.fromisoformat(payload["occurred_at"]) == pipeline.clock.now()

    # A replayed batch (same message ids) queues nothing twice.
    n = count(engine, outbox)
    with pytest.raises(RuntimeError), writing(engine) as conn:
        track_in = parse_message(
            {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "m-x"},
            where="message",
            received_at=pipeline.clock.now(),
            phone_region="RU",
            max_bytes=32 * 1024,
        )
        pipeline.ingest_in(conn, [track_in])
        raise RuntimeError("the batch failed after the events were stored")
    assert count(engine, outbox) == n  # rolled back with the events


def test_deliveries_are_signed_with_the_subscription_secret(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    app: Any,
    subscriber: Subscriber,
    clock: SimulatedClock,
) -> None:
    auth = bearer(secret_key)
    sub = subscribe(client, auth, name="erp", url=f"{subscriber.url}/erp", event_names=["Order *"])
    subscriber.secrets["/erp"] = sub["secret"]
    pipeline: Pipeline = app.state.pipeline
    completed = track(pipeline, "u1", "Order Completed", order_id="A-1")
    # A message of the webhook channel itself, with no secret configured for it yet.
    with writing(engine) as conn:
        partner = message("partner:1", channel="webhook", recipient=f"{subscriber.url}/partner")
        enqueue(conn, [partner], clock.now())
    subscriber.secrets["/partner"] = "whsec-channel-secret"

    dispatch = ConfiguredDispatcher(pipeline, check_seconds=0)
    try:
        report = dispatch.run_once()  # no webhook section: the default backend
        assert report.sent == 1 and report.retrying == 1, report
        [got] = subscriber.received
        assert got.path == "/erp" and subscriber.refused == []
        assert got.headers["idempotency-key"] == f"sub:{sub['id']}:event:{completed}"
        assert got.json()["id"] == completed and got.json()["name"] == "Order Completed"
        assert got.json()["properties"] == {"order_id": "A-1"}
        assert sub["secret"].encode() not in got.body
        assert row(engine, "partner:1")["last_error"] == NO_SECRET

        # Configure the channel: its own messages sign with its secret, deliveries with theirs.
        client.put(
            "/api/channels",
            headers=auth,
            json={"webhook": {"backend": "webhook", "secret": "whsec-channel-secret"}},
        )
        rotated = client.patch(
            f"/api/event-subscriptions/{sub['id']}", headers=auth, json={"rotate_secret": True}
        ).json()
        subscriber.secrets["/erp"] = rotated["secret"]  # the old secret no longer verifies
        track(pipeline, "u1", "Order Refunded", order_id="A-1")
        clock.advance(timedelta(minutes=5))
        assert dispatch.run_once().sent == 2
        assert subscriber.refused == []
        assert sorted(r.path for r in subscriber.received) == ["/erp", "/erp", "/partner"]
        assert subscriber.bodies("/erp")[1]["name"] == "Order Refunded"
        assert subscriber.bodies("/partner")[0]["id"] == "partner:1"
    finally:
        dispatch.close()


def test_a_failing_subscriber_is_retried_with_backoff_then_dead_lettered(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    app: Any,
    subscriber: Subscriber,
    clock: SimulatedClock,
) -> None:
    auth = bearer(secret_key)
    subscribe(client, auth, name="down", url=f"{subscriber.url}/boom", event_names=["*"])
    pipeline: Pipeline = app.state.pipeline
    track(pipeline, "u1", "Signed Up")
    [queued] = deliveries(engine)
    retry = Retry(max_attempts=3, base_seconds=10, max_seconds=3600, jitter=0)
    dispatch = ConfiguredDispatcher(pipeline, retry=retry)
    try:
        assert dispatch.run_once().retrying == 1
        first = row(engine, queued.idempotency_key)
        assert first["status"] == "failed" and first["last_error"].startswith("HTTP 500")
        assert first["next_attempt_at"] == clock.now() + timedelta(seconds=10)
        assert dispatch.run_once().claimed == 0  # not due yet
        clock.advance(timedelta(seconds=10))
        assert dispatch.run_once().retrying == 1
        assert row(engine, queued.idempotency_key)["next_attempt_at"] == clock.now() + timedelta(
            seconds=20
        )
        clock.advance(timedelta(seconds=19))
        assert dispatch.run_once().claimed == 0
        clock.advance(timedelta(seconds=1))
        assert dispatch.run_once().dead == 1
    finally:
        dispatch.close()
    assert len(subscriber.received) == 3
    with engine.connect() as conn:
        [dead] = dead_letters(conn)
        failed_events = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.name.like("Message %"))
        ).scalar_one()
    assert dead["idempotency_key"] == queued.idempotency_key and dead["attempts"] == 3
    assert failed_events == 0  # nobody's card: the delivery has no customer


def test_one_broken_receiver_does_not_hold_back_the_others(
    client: TestClient, secret_key: str, app: Any, subscriber: Subscriber
) -> None:
    auth = bearer(secret_key)
    subscribe(client, auth, name="down", url=f"{subscriber.url}/boom", event_names=["Signed Up"])
    ok = subscribe(client, auth, name="ok", url=f"{subscriber.url}/ok", event_names=["Read"])
    subscriber.secrets["/ok"] = ok["secret"]
    pipeline: Pipeline = app.state.pipeline
    for i in range(8):
        track(pipeline, f"u{i}", "Signed Up")
    dispatch = ConfiguredDispatcher(pipeline)
    try:
        assert dispatch.run_once().retrying == 8  # a channel breaker would open here
        track(pipeline, "u1", "Read")
        assert dispatch.run_once().sent == 1
    finally:
        dispatch.close()
    assert len(subscriber.bodies("/ok")) == 1


def test_paused_and_deleted_subscriptions_get_nothing(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    app: Any,
    subscriber: Subscriber,
) -> None:
    auth = bearer(secret_key)
    pipeline: Pipeline = app.state.pipeline
    subscribe(
        client, auth, name="off", url=f"{subscriber.url}/off", event_names=["*"], active=False
    )
    track(pipeline, "u1", "Signed Up")
    assert deliveries(engine) == []

    paused = subscribe(client, auth, name="p", url=f"{subscriber.url}/p", event_names=["*"])
    deleted = subscribe(client, auth, name="d", url=f"{subscriber.url}/d", event_names=["*"])
    track(pipeline, "u1", "Signed Up")
    assert len(deliveries(engine)) == 2
    client.patch(f"/api/event-subscriptions/{paused['id']}", headers=auth, json={"active": False})
    client.delete(f"/api/event-subscriptions/{deleted['id']}", headers=auth)
    track(pipeline, "u1", "Newsletter Read")
    assert len(deliveries(engine)) == 2  # nothing new for either

    dispatch = ConfiguredDispatcher(pipeline)
    try:
        assert dispatch.run_once().rejected == 2
    finally:
        dispatch.close()
    assert subscriber.received == []
    assert {r.last_error for r in deliveries(engine)} == {
        f"subscription {deleted['id']} was deleted",
        f"subscription {paused['id']} is paused",
    }


def test_delivery_outcomes_never_trigger_deliveries(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    app: Any,
    clock: SimulatedClock,
) -> None:
    auth = bearer(secret_key)
    client.put("/api/channels", headers=auth, json={"webhook": {"backend": "memory"}})
    subscribe(client, auth, name="all", url="https://bi.example/", event_names=["*"])
    pipeline: Pipeline = app.state.pipeline
    track(pipeline, "u1", "Signed Up")
    [customer_id] = {r.data["payload"]["customer_id"] for r in deliveries(engine)}
    # A message to the customer's own webhook: its statuses are events on the card, and
    # those are what a "*" subscriber asked for.
    with writing(engine) as conn:
        queued = enqueue(
            conn,
            [message("scenario:1", customer_id, channel="webhook", recipient="https://c.example")],
            clock.now(),
        )
        pipeline.record_many(conn, queued)
    dispatch = ConfiguredDispatcher(pipeline)
    try:
        for _ in range(4):
            dispatch.run_once()
            clock.advance(timedelta(seconds=1))
    finally:
        dispatch.close()
    names = sorted(r.data["payload"]["name"] for r in deliveries(engine))
    # The event, the customer's message queued and sent; nothing about the deliveries.
    assert names == ["Message Queued", "Message Sent", "Signed Up"]
    assert {r.status for r in deliveries(engine)} == {"sent"}
    with engine.connect() as conn:
        on_cards = conn.execute(
            sa.select(events.c.name).where(events.c.name.like("Message %")).order_by(events.c.id)
        ).scalars()
        assert list(on_cards) == ["Message Queued", "Message Sent"]
    assert count(engine, webhook_subscriptions) == 1
