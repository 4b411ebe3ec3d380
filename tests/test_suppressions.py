"""The suppression list on both stores: what it holds, the dispatcher skipping suppressed
addresses (fallback chains go on), its API, the provider status webhook and SMPP delivery
receipts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.customers.consents import consents_of
from rapport.customers.timeline import timeline
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.channels.email_mime import message_id
from rapport.messaging.delivery_reports import apply_receipts, receipt_events
from rapport.messaging.dispatcher import Dispatcher
from rapport.messaging.outbox import Fallback, enqueue
from rapport.messaging.suppressions import (
    SuppressionError,
    get_suppression,
    is_suppressed,
    list_suppressions,
    suppress,
    unsuppress,
)
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import outbox, suppressions
from tests.conftest import T0, bearer
from tests.delivery_helpers import message, put, row
from tests.helpers import count, table_counts
from tests.shop_helpers import identify


def sent(engine: sa.Engine, key: str, cid: int | None, to: str, **kw: Any) -> None:
    provider_id = kw.pop("provider_id", None)
    with writing(engine) as conn:
        enqueue(conn, [message(key, cid, recipient=to, **kw)], T0)
        conn.execute(
            outbox.update()
            .where(outbox.c.idempotency_key == key)
            .values(status="sent", sent_at=T0, attempts=1, provider_id=provider_id)
        )


def card(engine: sa.Engine, cid: int, *names: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(reversed(timeline(conn, cid, names=list(names) or None)))


# -- the store ----------------------------------------------------------------------------


def test_suppress_list_check_and_remove(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        assert suppress(conn, "email", " Ann@Example.COM ", "bounce", T0, {"status": "5.1.1"})
        assert not suppress(conn, "email", "ann@example.com", "complaint", T0)  # first wins
        assert suppress(conn, "email", '"Bob" <bob@example.com>', "manual", T0 + timedelta(1))
        assert suppress(conn, "sms", "+79990001122", "manual", T0)
        with pytest.raises(SuppressionError, match="unknown reason"):
            suppress(conn, "email", "x@example.com", "spite", T0)
        with pytest.raises(SuppressionError, match="empty"):
            suppress(conn, "email", "  ", "manual", T0)
    with engine.connect() as conn:
        entry = get_suppression(conn, "email", "ANN@example.com")
        assert entry is not None and (entry.reason, entry.details) == (
            "bounce",
            {"status": "5.1.1"},
        )
        assert is_suppressed(
            conn, "email", ["Ann@Example.com", "bob@example.com", "carol@example.com"]
        ) == {"Ann@Example.com", "bob@example.com"}
        assert is_suppressed(conn, "sms", ["+79990001122", "+79990000000"]) == {"+79990001122"}
        assert is_suppressed(conn, "email", []) == set()
        page, total = list_suppressions(conn, limit=2)
        assert total == 3 and [s.address for s in page] == ["bob@example.com", "ann@example.com"]
        page, total = list_suppressions(conn, channel="email", contains="ANN")
        assert (total, [s.address for s in page]) == (1, ["ann@example.com"])
        assert list_suppressions(conn, reason="manual")[1] == 2
    with writing(engine) as conn:
        assert unsuppress(conn, "email", "ann@EXAMPLE.com")
        assert not unsuppress(conn, "email", "ann@example.com")
    assert count(engine, suppressions) == 2


def test_many_addresses_are_checked_in_chunks(engine: sa.Engine) -> None:
    addresses = [f"user{i}@example.com" for i in range(1200)]
    with writing(engine) as conn:
        for a in addresses[::100]:
            suppress(conn, "email", a, "bounce", T0)
    with engine.connect() as conn:
        assert is_suppressed(conn, "email", addresses) == set(addresses[::100])


# -- the dispatcher -------------------------------------------------------------------------


def test_dispatcher_skips_suppressed_addresses_and_falls_back(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    with writing(engine) as conn:
        suppress(conn, "email", "gone@example.com", "bounce", T0)
        suppress(conn, "email", "angry@example.com", "complaint", T0)
        suppress(conn, "sms", "+79990000001", "manual", T0)
    put(
        engine,
        clock.now(),
        message("a", 1, recipient="Gone@Example.com", fallback=(Fallback("sms", "+79990001122"),)),
        message("b", 2, recipient="angry@example.com"),
        message("c", 3, recipient="fine@example.com"),
        message("d", 4, channel="sms", recipient="+79990000001"),
    )
    email, sms = InMemoryBackend("email"), InMemoryBackend("sms")
    dispatcher = Dispatcher(engine, {"email": email, "sms": sms}, clock=clock)
    report = dispatcher.run_once()
    assert (report.sent, report.skipped) == (1, 3)
    assert [m.to for m in email.outbox] == ["fine@example.com"]
    assert sms.outbox == []
    assert {k: row(engine, k)["last_error"] for k in "abd"} == {
        "a": "suppressed: bounce",
        "b": "suppressed: complaint",
        "d": "suppressed: manual",
    }
    skipped = [
        (c, p["message_id"], p["reason"]) for c, n, p in report.events if n == "Message Skipped"
    ]
    assert skipped == [
        (1, "a", "suppressed: bounce"),
        (2, "b", "suppressed: complaint"),
        (4, "d", "suppressed: manual"),
    ]
    assert dispatcher.run_once().sent == 1  # the fallback SMS goes out
    assert [m.to for m in sms.outbox] == ["+79990001122"]
    dispatcher.close()


# -- the API --------------------------------------------------------------------------------


def test_suppression_api(client: TestClient, engine: sa.Engine, secret_key: str) -> None:
    auth = bearer(secret_key)
    r = client.post(
        "/api/suppressions",
        json={"address": " Ann@Example.com", "note": "asked by phone"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json() | {"created_at": None} == {
        "channel": "email",
        "address": "ann@example.com",
        "reason": "manual",
        "details": {"source": "api", "note": "asked by phone"},
        "created_at": None,
        "created": True,
    }
    again = client.post("/api/suppressions", json={"address": "ann@example.com"}, headers=auth)
    assert again.status_code == 200 and again.json()["created"] is False
    r = client.post(
        "/api/suppressions",
        json={"channel": "sms", "address": "8 999 000-11-22", "reason": "complaint"},
        headers=auth,
    )
    assert r.status_code == 201 and r.json()["address"] == "+79990001122"
    for i in range(3):
        client.post("/api/suppressions", json={"address": f"u{i}@example.org"}, headers=auth)

    page = client.get("/api/suppressions", params={"limit": 2, "offset": 1}, headers=auth).json()
    assert (page["total"], page["limit"], page["offset"], len(page["suppressions"])) == (5, 2, 1, 2)
    only_sms = client.get("/api/suppressions", params={"channel": "sms"}, headers=auth).json()
    assert [s["address"] for s in only_sms["suppressions"]] == ["+79990001122"]
    found = client.get(
        "/api/suppressions", params={"address": "ANN@example.com"}, headers=auth
    ).json()
    assert [s["address"] for s in found["suppressions"]] == ["ann@example.com"]
    domain = client.get("/api/suppressions", params={"contains": "example.org"}, headers=auth)
    assert domain.json()["total"] == 3

    r = client.delete("/api/suppressions/email/Ann%40Example.com", headers=auth)
    assert r.status_code == 200 and r.json()["deleted"]["address"] == "ann@example.com"
    r = client.delete("/api/suppressions/email/ann@example.com", headers=auth)
    assert r.status_code == 404
    assert count(engine, suppressions) == 4


def _problem(r: Any, status: int, where: str) -> None:
    assert r.status_code == status, r.text
    assert where in [e["where"] for e in r.json()["errors"]], r.json()


def test_suppression_api_bad_input(
    client: TestClient, engine: sa.Engine, secret_key: str, write_key: str
) -> None:
    auth = bearer(secret_key)
    before = table_counts(engine)
    assert client.get("/api/suppressions").status_code == 401
    assert client.get("/api/suppressions", headers=bearer(write_key)).status_code == 401
    r = client.post("/api/suppressions", json={"address": "a@example.com"})
    assert r.status_code == 401
    assert client.delete("/api/suppressions/email/a@example.com").status_code == 401
    _problem(
        client.post("/api/suppressions", json={"address": "not-mail"}, headers=auth), 422, "address"
    )
    _problem(
        client.post("/api/suppressions", json={"channel": "sms", "address": "12"}, headers=auth),
        422,
        "address",
    )
    _problem(
        client.post("/api/suppressions", json={"channel": "fax", "address": "1"}, headers=auth),
        422,
        "body.channel",
    )
    _problem(
        client.post(
            "/api/suppressions", json={"address": "a@example.com", "reason": "spite"}, headers=auth
        ),
        422,
        "body.reason",
    )
    _problem(
        client.post("/api/suppressions", json={"address": "a@example.com", "x": 1}, headers=auth),
        422,
        "body.x",
    )
    _problem(client.get("/api/suppressions", params={"limit": 0}, headers=auth), 422, "query.limit")
    _problem(
        client.get("/api/suppressions", params={"channel": "fax"}, headers=auth),
        422,
        "query.channel",
    )
    r = client.delete("/api/suppressions/fax/a@example.com", headers=auth)
    _problem(r, 422, "path.channel")
    assert table_counts(engine) == before


# -- the provider status webhook ------------------------------------------------------------


def _events(client: TestClient, key: str | None, body: Any) -> Any:
    headers = bearer(key) if key else {}
    return client.post("/api/deliveries/events", json=body, headers=headers)


def test_provider_events_land_on_the_card(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    pipeline: Pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    ann = identify(pipeline, "u-ann", email="ann@example.com")
    bob = identify(pipeline, "u-bob", email="bob@example.com")
    sent(engine, "campaign:5:customer:1", ann, "ann@example.com", campaign_id=5)
    sent(engine, "campaign:5:customer:2", bob, "bob@example.com", campaign_id=5)
    batch = [
        {"message_id": "campaign:5:customer:1", "status": "delivered"},
        {"message_id": "campaign:5:customer:1", "status": "opened", "id": "ev-1"},
        {"message_id": "campaign:5:customer:1", "status": "opened", "id": "ev-2"},
        {
            "message_id": "campaign:5:customer:1",
            "status": "clicked",
            "url": "https://shop.example/sale",
            "occurred_at": "2026-03-01T12:30:00",
        },
        # The Message-ID form (brackets optional), as an SMTP relay's webhook reports it.
        {
            "message_id": message_id("campaign:5:customer:2", "shop.example").strip("<>"),
            "status": "bounced",
            "bounce_type": "hard",
            "diagnostic": "550 5.1.1 user unknown",
        },
        {"message_id": "campaign:99:customer:1", "status": "delivered"},  # not ours
    ]
    r = _events(client, secret_key, {"events": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["recorded_events"]) == (6, 5)
    assert [(x["outcome"], x["matched"]) for x in body["results"]] == [
        ("delivered", True),
        ("opened", True),
        ("opened", True),
        ("clicked", True),
        ("hard", True),
        ("delivered", False),
    ]
    assert [
        e["name"]
        for e in card(engine, ann, "Message Delivered", "Message Opened", "Message Clicked")
    ] == [
        "Message Delivered",
        "Message Opened",
        "Message Opened",
        "Message Clicked",
    ]
    [click] = card(engine, ann, "Message Clicked")
    assert click["properties"]["url"] == "https://shop.example/sale"
    assert click["properties"]["occurred_at"] == "2026-03-01T12:30:00+00:00"
    assert click["properties"]["campaign_id"] == "5"
    [bounce] = card(engine, bob, "Message Bounced")
    assert bounce["properties"]["diagnostic"] == "550 5.1.1 user unknown"
    with engine.connect() as conn:
        assert is_suppressed(conn, "email", ["bob@example.com"]) == {"bob@example.com"}

    before = table_counts(engine)
    retry = _events(client, secret_key, batch).json()  # a bare list works too
    assert retry["recorded_events"] == 0
    assert [x["duplicate"] for x in retry["results"]][:5] == [True] * 5
    assert table_counts(engine) == before


def test_provider_complaint_unsubscribes(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    pipeline: Pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    cid = identify(pipeline, "u-cat", email="cat@example.com")
    sent(engine, "campaign:6:customer:1", cid, "cat@example.com", campaign_id=6)
    r = _events(
        client, secret_key, [{"message_id": "campaign:6:customer:1", "status": "complained"}]
    )
    assert r.status_code == 200 and r.json()["results"][0]["unsubscribed"] is True
    with engine.connect() as conn:
        assert consents_of(conn, cid)[0]["status"] == "unsubscribed"
        entry = get_suppression(conn, "email", "cat@example.com")
    assert entry is not None and entry.reason == "complaint"
    names = [e["name"] for e in card(engine, cid, "Message Complained", "Consent Changed")]
    assert names == ["Message Complained", "Consent Changed"]


def test_provider_soft_bounces_and_failures(
    client: TestClient, engine: sa.Engine, secret_key: str, clock: SimulatedClock
) -> None:
    pipeline: Pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    cid = identify(pipeline, "u-dan", email="dan@example.com")
    for i in range(3):
        sent(engine, f"run:{i}:step:1", cid, "dan@example.com")
    items = [
        {"message_id": f"run:{i}:step:1", "status": "bounced", "bounce_type": "soft"}
        for i in range(2)
    ] + [{"message_id": "run:2:step:1", "status": "failed", "diagnostic": "dropped: spam"}]
    body = _events(client, secret_key, items).json()
    assert [(x["outcome"], x["suppressed"]) for x in body["results"]] == [
        ("soft", False),
        ("soft", False),
        ("failed", False),
    ]
    [failed] = card(engine, cid, "Message Failed")
    assert failed["properties"]["reason"] == "dropped: spam"
    clock.advance(timedelta(days=1))
    third = [{"message_id": "run:2:step:1", "status": "bounced", "bounce_type": "soft"}]
    assert _events(client, secret_key, third).json()["results"][0]["suppressed"] is True


BAD_ITEMS = [
    ({"message_id": "k", "status": "read"}, "events[3].status"),
    ({"status": "delivered"}, "events[3].message_id"),
    ({"message_id": "", "status": "delivered"}, "events[3].message_id"),
    ({"message_id": "k", "status": "bounced", "bounce_type": "medium"}, "events[3].bounce_type"),
    ({"message_id": "k", "status": "opened", "occurred_at": "yesterday"}, "events[3].occurred_at"),
    ({"message_id": "k", "status": "opened", "colour": "red"}, "events[3].colour"),
    ("delivered", "events[3]"),
]


@pytest.mark.parametrize(("item", "where"), BAD_ITEMS)
def test_provider_events_are_all_or_nothing(
    client: TestClient, engine: sa.Engine, secret_key: str, item: Any, where: str
) -> None:
    pipeline: Pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    cid = identify(pipeline, "u-eve", email="eve@example.com")
    sent(engine, "k", cid, "eve@example.com")
    good = {"message_id": "k", "status": "delivered"}
    before = table_counts(engine)
    r = _events(client, secret_key, {"events": [good, good, good, item]})
    _problem(r, 422, where)
    assert where in r.json()["message"]
    assert table_counts(engine) == before


def test_provider_events_bad_requests(
    client: TestClient, engine: sa.Engine, secret_key: str, write_key: str
) -> None:
    before = table_counts(engine)
    ok = {"events": [{"message_id": "k", "status": "delivered"}]}
    assert _events(client, None, ok).status_code == 401
    assert _events(client, write_key, ok).status_code == 401
    _problem(_events(client, secret_key, {"events": []}), 422, "events")
    _problem(_events(client, secret_key, {"items": []}), 422, "events")
    _problem(_events(client, secret_key, "delivered"), 422, "body")
    r = client.post("/api/deliveries/events", content=b"{not json", headers=bearer(secret_key))
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"]
    assert table_counts(engine) == before


# -- SMPP delivery receipts -----------------------------------------------------------------


def test_smpp_receipts_map_to_the_sms(engine: sa.Engine, clock: SimulatedClock) -> None:
    pipeline = Pipeline(engine, clock)
    cid = identify(pipeline, "u-sam", phone="+79990001122")
    sent(
        engine,
        "run:3:step:1",
        cid,
        "+79990001122",
        channel="sms",
        scenario_id="welcome",
        provider_id="0a1,0a2,0a3",
    )
    sent(engine, "run:4:step:1", cid, "+79990001122", channel="sms", provider_id="10a2")
    sent(engine, "run:5:step:1", cid, "+79990001122", channel="sms", provider_id="b_1")

    def receipt(provider_id: str, stat: str) -> list[Any]:
        with writing(engine) as conn:
            found = receipt_events(conn, provider_id, stat, clock.now())
            pipeline.record_many(conn, found)
        return found

    [(who, name, props)] = receipt("0a2", "DELIVRD")  # the middle part of a long SMS
    assert (who, name) == (cid, "Message Delivered")
    assert props["message_id"] == "run:3:step:1" and props["scenario_id"] == "welcome"
    assert props["channel"] == "sms" and props["status"] == "DELIVRD"
    assert receipt("0a3", "DELIVRD") == []  # another part: the message is delivered once
    assert receipt("0a2", "DELIVRD") == []  # the same receipt again
    [(_, name, props)] = receipt("10a2", "UNDELIV")
    assert (name, props["message_id"], props["bounce_type"]) == (
        "Message Bounced",
        "run:4:step:1",
        "hard",
    )
    [(_, name, props)] = receipt("b_1", "expired")
    assert (name, props["bounce_type"], props["status"]) == ("Message Bounced", "soft", "EXPIRED")
    [(_, _, props)] = receipt("0a1", "REJECTD")
    assert props["bounce_type"] == "hard"
    assert receipt("b%1", "DELIVRD") == []  # LIKE wildcards are matched literally
    assert receipt("zzz", "DELIVRD") == []
    assert receipt("0a1", "ENROUTE") == []
    assert count(engine, suppressions) == 0  # SMS bounces are recorded, never suppressed
    names = [e["name"] for e in card(engine, cid, "Message Delivered", "Message Bounced")]
    assert names == ["Message Delivered", "Message Bounced", "Message Bounced", "Message Bounced"]


def test_receipts_of_one_long_sms_in_one_batch(engine: sa.Engine, clock: SimulatedClock) -> None:
    pipeline = Pipeline(engine, clock)
    cid = identify(pipeline, "u-sam", phone="+79990001122")
    sent(engine, "run:3:step:1", cid, "+79990001122", channel="sms", provider_id="p1,p2,p3")
    with writing(engine) as conn:
        found = apply_receipts(conn, [("p1", "DELIVRD"), ("p2", "DELIVRD"), ("p3", "UNDELIV")], T0)
        pipeline.record_many(conn, found)
    assert [(name, props["message_id"]) for _, name, props in found] == [
        ("Message Delivered", "run:3:step:1"),
        ("Message Bounced", "run:3:step:1"),
    ]
    with writing(engine) as conn:
        assert apply_receipts(conn, [("p2", "DELIVRD"), ("p3", "UNDELIV")], T0) == []
