"""The Segment tracking API end to end through HTTP, on both stores."""

from __future__ import annotations

import gzip

import orjson
import sqlalchemy as sa

from rapport.store.tables import customers, events, identities
from tests.conftest import basic


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_track_is_stored(client, engine, write_key):
    r = client.post(
        "/v1/track",
        json={"anonymousId": "a1", "event": "Signed Up", "messageId": "m1"},
        headers=basic(write_key),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    with engine.connect() as conn:
        row = conn.execute(sa.select(events)).one()
    assert (row.name, row.type, row.message_id) == ("Signed Up", "track", "m1")


def test_write_key_in_body_and_gzip(client, engine, write_key):
    body = {"writeKey": write_key, "batch": [{"type": "page", "userId": "u1", "name": "Home"}]}
    r = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        row = conn.execute(sa.select(events)).one()
    assert row.name == "Page Viewed"
    assert row.properties == {"name": "Home"}


def test_duplicate_message_id_is_stored_once(client, engine, write_key):
    msg = {"userId": "u1", "event": "Clicked", "messageId": "same"}
    for _ in range(3):
        assert client.post("/v1/track", json=msg, headers=basic(write_key)).status_code == 200
    assert count(engine, events) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(customers.c.events_count)).scalar_one() == 1


def test_sent_at_corrects_client_clock_skew(client, engine, write_key, clock):
    # The client's clock runs 1 hour fast: its timestamp and sentAt are both an hour ahead.
    msg = {
        "userId": "u1",
        "event": "Clicked",
        "timestamp": "2026-03-01T12:59:50Z",
        "sentAt": "2026-03-01T13:00:00Z",
    }
    assert client.post("/v1/track", json=msg, headers=basic(write_key)).status_code == 200
    with engine.connect() as conn:
        occurred = conn.execute(sa.select(events.c.occurred_at)).scalar_one()
    assert occurred.isoformat() == "2026-03-01T11:59:50+00:00"  # server time T0 minus 10 s


def test_identify_then_track_builds_one_card(client, engine, write_key, secret_key):
    h = basic(write_key)
    client.post(
        "/v1/track",
        json={
            "anonymousId": "anon-1",
            "event": "Product Viewed",
            "properties": {"product_id": "p1", "price": 10},
        },
        headers=h,
    )
    client.post(
        "/v1/identify",
        json={
            "anonymousId": "anon-1",
            "userId": "42",
            "traits": {"email": "Ann@Example.com", "firstName": "Ann"},
        },
        headers=h,
    )
    client.post(
        "/v1/track",
        json={
            "userId": 42,
            "event": "Order Completed",
            "properties": {"order_id": "o-1", "total": 99.5},
        },
        headers=h,
    )
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(identities.c.kind, identities.c.customer_id)).all())
        assert len(set(ids.values())) == 1
        row = conn.execute(sa.select(customers).where(customers.c.merged_into.is_(None))).one()
    assert (row.email, row.first_name, row.orders_count, row.revenue) == (
        "ann@example.com",
        "Ann",
        1,
        99.5,
    )
    assert row.events_count == 3


def test_tracking_calls_are_answered_before_routing(app, engine, write_key):
    """The tracking paths are answered by ``TrackingShortcut`` with the answers and errors
    of the routes (which stay, for OpenAPI); anything else goes on to the router."""
    from fastapi.responses import Response
    from fastapi.testclient import TestClient

    from rapport.api.ingest_routes import TrackingShortcut

    assert {"/v1/track", "/v1/batch", "/v1/identify", "/v1/import"} <= set(app.openapi()["paths"])
    routed: list[str] = []

    async def router(scope, receive, send):  # type: ignore[no-untyped-def]
        routed.append(f"{scope['method']} {scope['path']}")
        await Response(b"routed", status_code=418)(scope, receive, send)

    shortcut = TrackingShortcut(router)

    async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
        scope["app"] = app  # what the app sets before its middleware runs
        await shortcut(scope, receive, send)

    client = TestClient(asgi)
    app.state.writer.start()
    try:
        ok = client.post(
            "/v1/track", json={"userId": "u1", "event": "Clicked"}, headers=basic(write_key)
        )
        assert (ok.status_code, ok.json()) == (200, {"success": True})
        batch = client.post(
            "/v1/batch",
            json={"batch": [{"type": "page", "userId": "u1", "name": "Home"}]},
            headers=basic(write_key),
        )
        assert batch.status_code == 200, batch.text
        bad = client.post("/v1/track", json={"event": "Clicked"}, headers=basic(write_key))
        assert bad.status_code == 400
        assert bad.json()["success"] is False and "userId" in bad.json()["message"]
        unauthorised = client.post("/v1/track", json={"userId": "u1", "event": "x"})
        assert (unauthorised.status_code, unauthorised.json()["code"]) == (401, "unauthorized")
        assert client.get("/v1/track").status_code == 418
        assert client.post("/v1/nothing", json={}).status_code == 418
    finally:
        app.state.writer.stop()
    assert routed == ["GET /v1/track", "POST /v1/nothing"]
    assert count(engine, events) == 2
