"""Segments through the API: definitions, real-time entry and exit, sweeps, preview, export."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.store.tables import events, segment_members
from rapport.worker import Sweeper, sweep_segments
from tests.conftest import basic, bearer


class Api:
    def __init__(self, client: TestClient, write_key: str, secret_key: str) -> None:
        self.client = client
        self.write = basic(write_key)
        self.secret = bearer(secret_key)

    def track(self, user: str, event: str, **props: Any) -> None:
        r = self.client.post(
            "/v1/track",
            json={"userId": user, "event": event, "properties": props},
            headers=self.write,
        )
        assert r.status_code == 200, r.text

    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=self.secret, **kw)
        assert r.status_code == status, r.text
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    def segment(self, name: str, rules: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/api/segments", 201, json={"name": name, "rules": rules})

    def customer(self, user: str) -> int:
        return int(
            self.call("GET", "/api/customers", params={"user_id": user})["customers"][0]["id"]
        )


def _api(client: TestClient, write_key: str, secret_key: str) -> Api:
    return Api(client, write_key, secret_key)


def _moves(engine: sa.Engine, cid: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.name, events.c.properties)
            .where(events.c.customer_id == cid, events.c.name.like("Segment %"))
            .order_by(events.c.id)
        ).all()
    return [(name, props["segment_name"]) for name, props in rows]


def _members(engine: sa.Engine, segment_id: int) -> set[int]:
    sm = segment_members.c
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(sm.customer_id).where(sm.segment_id == segment_id, sm.until.is_(None))
            ).scalars()
        )


def test_an_event_puts_the_customer_in_at_once(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    seg = api.segment("signed up", {"event": "Signed Up", "within_last": 7})
    assert seg["size"] == 0
    api.track("u1", "Page Viewed")
    cid = api.customer("u1")
    assert _members(engine, seg["id"]) == set()  # an event the rule does not read
    api.track("u1", "Signed Up")
    assert _members(engine, seg["id"]) == {cid}
    assert _moves(engine, cid) == [("Segment Entered", "signed up")]
    # The entry is Rapport's observation: on the timeline, not the customer's activity.
    card = api.call("GET", f"/api/customers/{cid}")
    assert card["computed"]["events_count"] == 2


def test_orders_move_customers_in_and_out(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    seg = api.segment("repeat buyers", {"computed": "orders_count", "op": "ge", "value": 2})
    api.track("u1", "Order Completed", order_id="o1", total=10)
    cid = api.customer("u1")
    assert _members(engine, seg["id"]) == set()
    api.track("u1", "Order Completed", order_id="o2", total=15)
    assert _members(engine, seg["id"]) == {cid}
    api.track("u1", "Order Cancelled", order_id="o2")
    assert _members(engine, seg["id"]) == set()
    assert _moves(engine, cid) == [
        ("Segment Entered", "repeat buyers"),
        ("Segment Exited", "repeat buyers"),
    ]
    with engine.connect() as conn:
        stays = conn.execute(
            sa.select(segment_members.c.since, segment_members.c.until).where(
                segment_members.c.customer_id == cid
            )
        ).all()
    assert len(stays) == 1 and stays[0].until is not None  # history kept


def test_a_segment_of_a_segment_follows_in_the_same_request(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    base = api.segment("moscow", {"attribute": "city", "op": "eq", "value": "Moscow"})
    vip = api.segment(
        "moscow buyers",
        {"all": [{"segment": base["id"]}, {"computed": "orders_count", "op": "ge", "value": 1}]},
    )
    api.track("u1", "Order Completed", order_id="o1", total=10)
    cid = api.customer("u1")
    r = client.post(
        "/v1/identify", json={"userId": "u1", "traits": {"city": "Moscow"}}, headers=api.write
    )
    assert r.status_code == 200
    assert _members(engine, base["id"]) == {cid}
    assert _members(engine, vip["id"]) == {cid}
    assert _moves(engine, cid) == [
        ("Segment Entered", "moscow"),
        ("Segment Entered", "moscow buyers"),
    ]


def test_a_static_list_feeds_a_rule_segment(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    api.track("u1", "Page Viewed")
    cid = api.customer("u1")
    lst = api.call("POST", "/api/lists", 201, json={"name": "beta testers"})
    seg = api.segment("beta", {"segment": lst["id"]})
    api.call("POST", f"/api/lists/{lst['id']}/members", json={"user_ids": ["u1"]})
    assert _members(engine, seg["id"]) == {cid}


def test_time_alone_moves_members_at_the_sweep(client, engine, write_key, secret_key, clock, app):
    api = _api(client, write_key, secret_key)
    seg = api.segment(
        "quiet",
        {
            "all": [
                {"computed": "events_count", "op": "gt", "value": 0},
                {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3},
            ]
        },
    )
    api.track("u1", "Page Viewed")
    cid = api.customer("u1")
    assert _members(engine, seg["id"]) == set()
    clock.advance(timedelta(days=4))
    result = sweep_segments(app.state.pipeline)
    assert (result.entered, result.exited) == (1, 0)
    assert _members(engine, seg["id"]) == {cid}
    assert _moves(engine, cid) == [("Segment Entered", "quiet")]
    api.track("u1", "Page Viewed")  # activity again: out in real time
    assert _members(engine, seg["id"]) == set()


def test_a_new_segment_is_filled_without_events(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    for user in ("u1", "u2", "u3"):
        api.track(user, "Signed Up")
    seg = api.segment("everyone who signed up", {"event": "Signed Up"})
    assert seg["size"] == 3
    assert all(_moves(engine, api.customer(u)) == [] for u in ("u1", "u2", "u3"))


def test_preview_members_and_export(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    for i in range(25):
        api.track(f"u{i}", "Order Completed", order_id=f"o{i}", total=10 + i)
    rule = {"computed": "revenue", "op": "ge", "value": 20}
    preview = api.call("POST", "/api/segments/preview", json={"rules": rule})
    assert preview["count"] == 15 and len(preview["sample"]) == 15
    seg = api.segment("big", rule)
    first = api.call("GET", f"/api/segments/{seg['id']}/members", params={"limit": 10})
    rest = api.call(
        "GET", f"/api/segments/{seg['id']}/members", params={"after": first["next_cursor"]}
    )
    ids = [m["id"] for m in first["members"] + rest["members"]]
    assert len(ids) == len(set(ids)) == 15 and rest["next_cursor"] is None
    csv_text = api.call("GET", f"/api/segments/{seg['id']}/export.csv")
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("id,email") and len(lines) == 16
    listed = api.call("GET", "/api/segments")["segments"]
    assert [(s["name"], s["size"]) for s in listed] == [("big", 15)]


def test_bad_rules_are_refused_with_the_path(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    body = api.call(
        "POST",
        "/api/segments",
        422,
        json={"name": "x", "rules": {"all": [{"attribute": "city", "op": "gt", "value": []}]}},
    )
    assert body["errors"][0]["where"].startswith("rules.all[0]")
    a = api.segment("a", {"attribute": "city", "op": "eq", "value": "Kazan"})
    b = api.segment("b", {"segment": a["id"]})
    cycle = api.call("PATCH", f"/api/segments/{a['id']}", 422, json={"rules": {"segment": b["id"]}})
    assert "cycle" in cycle["errors"][0]["reason"]
    refused = api.call("DELETE", f"/api/segments/{a['id']}", 409)
    assert f"is used by segment {b['id']} 'b' (its rule)" in refused["message"]
    api.call("POST", "/api/segments", 422, json={"name": "dup", "rules": {"nonsense": 1}})
    api.call("POST", "/api/segments", 409, json={"name": "a", "rules": {"event": "X"}})
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM segments ORDER BY id")).scalars().all()
    assert names == ["a", "b"]  # nothing half-stored


def test_the_sweeper_thread_runs_the_sweep(client, engine, write_key, secret_key, clock, app):
    api = _api(client, write_key, secret_key)
    seg = api.segment(
        "quiet",
        {
            "all": [
                {"computed": "events_count", "op": "gt", "value": 0},
                {"computed": "last_seen_at", "op": "more_than_days_ago", "value": 3},
            ]
        },
    )
    api.track("u1", "Page Viewed")
    clock.advance(timedelta(days=4))
    sweeper = Sweeper(app.state.pipeline, interval=0.05)
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while not _members(engine, seg["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert _members(engine, seg["id"]) == {api.customer("u1")}


def test_a_profile_change_through_the_api_moves_members(client, engine, write_key, secret_key):
    api = _api(client, write_key, secret_key)
    seg = api.segment("kazan", {"attribute": "city", "op": "eq", "value": "Kazan"})
    api.track("u1", "Page Viewed")
    cid = api.customer("u1")
    api.call("PATCH", f"/api/customers/{cid}", json={"city": "Kazan"})
    assert _members(engine, seg["id"]) == {cid}
    api.call("PATCH", f"/api/customers/{cid}", json={"traits": {"vip": True}})
    assert _members(engine, seg["id"]) == {cid}  # a field the rule does not read
    api.call("PATCH", f"/api/customers/{cid}", json={"city": "Omsk"})
    assert _members(engine, seg["id"]) == set()
    assert _moves(engine, cid) == [("Segment Entered", "kazan"), ("Segment Exited", "kazan")]
