"""The customer card API: lookup, computed fields, e-commerce, timeline, edits, privacy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.store.tables import (
    carts,
    consents,
    customer_groups,
    customer_merges,
    customers,
    event_counters,
    events,
    identities,
    order_lines,
    orders,
    product_views,
)
from tests.conftest import basic, bearer
from tests.helpers import assert_no_orphans, count, live_customers


class Api:
    def __init__(self, client: TestClient, write_key: str, secret_key: str) -> None:
        self.client = client
        self.write = basic(write_key)
        self.secret = bearer(secret_key)

    def send(self, kind: str, **body: Any) -> None:
        r = self.client.post(f"/v1/{kind}", json=body, headers=self.write)
        assert r.status_code == 200, r.text

    def track(self, event: str, user: str = "u1", **props: Any) -> None:
        self.send("track", userId=user, event=event, properties=props)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.client.request(method, path, headers=self.secret, **kwargs)
        assert r.status_code == status, r.text
        return r.json()

    def card(self, cid: int) -> Any:
        return self.call("GET", f"/api/customers/{cid}")

    def find(self, **params: Any) -> list[int]:
        return [c["id"] for c in self.call("GET", "/api/customers", params=params)["customers"]]


@pytest.fixture
def api(client: TestClient, write_key: str, secret_key: str) -> Api:
    return Api(client, write_key, secret_key)


def _ann(api: Api) -> int:
    api.send(
        "identify",
        userId="u1",
        anonymousId="anon-1",
        traits={
            "email": "Ann.Lee@Example.com",
            "phone": "+7 916 123-45-67",
            "firstName": "Ann",
            "lastName": "Lee",
            "birthday": "1990-05-17",
            "timezone": "Europe/Moscow",
            "locale": "ru_RU",
            "address": {"city": "Kazan", "country": "RU"},
            "vip": True,
        },
    )
    return api.find(user_id="u1")[0]


def test_lookup_by_each_identifier_and_search(api: Api) -> None:
    cid = _ann(api)
    api.send("identify", userId="u2", traits={"email": "bob@example.com", "name": "Bob Stone"})
    bob = api.find(user_id="u2")[0]
    assert bob != cid
    assert api.find(email="ann.lee@example.com") == [cid]
    assert api.find(email="  ANN.LEE@example.COM ") == [cid]
    assert api.find(phone="+79161234567") == [cid]
    assert api.find(phone="8 916 123 45 67") == [cid]
    assert api.find(anonymous_id="anon-1") == [cid]
    assert api.find(user_id="u1", email="ann.lee@example.com") == [cid]
    # Identifiers of two different people, or an unknown one, find no one.
    assert api.find(user_id="u1", email="bob@example.com") == []
    assert api.find(user_id="nobody") == []
    assert api.find(q="ann") == [cid]
    assert api.find(q="LEE") == [cid]
    assert api.find(q="ann lee") == [cid]
    assert api.find(q="bob stone") == [bob]
    assert api.find(q="1234567") == [cid]
    assert sorted(api.find(q="example.com")) == sorted([cid, bob])
    assert api.find(q="example.com", limit=1, offset=0) + api.find(
        q="example.com", limit=1, offset=1
    ) == api.find(q="example.com")
    assert api.find(q="zzz") == []
    [summary] = api.call("GET", "/api/customers", params={"user_id": "u1"})["customers"]
    assert summary["email"] == "ann.lee@example.com" and summary["first_name"] == "Ann"


def test_card_profile_and_identities(api: Api) -> None:
    cid = _ann(api)
    api.send("group", userId="u1", groupId="acme", traits={"plan": "enterprise"})
    card = api.card(cid)
    assert card["profile"] == {
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann.lee@example.com",
        "phone": "+79161234567",
        "birthday": "1990-05-17",
        "gender": None,
        "city": "Kazan",
        "country": "RU",
        "timezone": "Europe/Moscow",
        "locale": "ru-RU",
        "traits": {"vip": True, "address": {"city": "Kazan", "country": "RU"}},
    }
    assert {(i["kind"], i["value"]) for i in card["identities"]} == {
        ("user_id", "u1"),
        ("anonymous_id", "anon-1"),
        ("email", "ann.lee@example.com"),
        ("phone", "+79161234567"),
    }
    assert card["groups"] == [{"group_id": "acme", "traits": {"plan": "enterprise"}}]


def _order(api: Api, oid: str, total: float, day: int, **extra: Any) -> None:
    api.send(
        "track",
        userId="u1",
        event="Order Completed",
        timestamp=f"2026-02-{day:02d}T10:00:00Z",
        properties={"order_id": oid, "total": total, **extra},
    )


def test_computed_fields_and_days_since_last_order(api: Api, clock: SimulatedClock) -> None:
    cid = _ann(api)
    assert api.card(cid)["computed"]["orders_count"] == 0
    assert api.card(cid)["computed"]["average_check"] is None
    assert api.card(cid)["computed"]["days_since_last_order"] is None
    _order(api, "o-1", 100.0, 1)
    _order(api, "o-2", 50.5, 20)
    _order(api, "o-3", 30.0, 10)
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"], c["average_check"]) == (3, 180.5, 60.17)
    assert c["first_order_at"] == "2026-02-01T10:00:00+00:00"
    assert c["last_order_at"] == "2026-02-20T10:00:00+00:00"
    assert c["days_since_last_order"] == 9  # the clock is at 2026-03-01 12:00
    assert c["events_count"] == 4
    assert c["first_seen_at"] == "2026-02-01T10:00:00+00:00"
    assert c["last_seen_at"] == "2026-03-01T12:00:00+00:00"
    clock.advance(timedelta(days=30))
    assert api.card(cid)["computed"]["days_since_last_order"] == 39


def _cart(api: Api, cid: int) -> dict[str, Any]:
    cart = api.card(cid)["cart"]
    cart["items"] = {i["product_id"]: (i["quantity"], i["price"]) for i in cart["items"]}
    return cart


def test_cart_follows_the_shop(api: Api, engine: sa.Engine) -> None:
    cid = _ann(api)
    assert api.card(cid)["cart"] is None
    api.track("Product Viewed", product_id="p1", price=10, category="shoes")
    api.track("Product Viewed", product_id="p1", price=10)
    api.track("Product Added", product_id="p1", price=10, quantity=2, cart_id="c1")
    api.track("Product Added", product_id="p2", price=5, cart_id="c1")
    api.track("Product Added", product_id="p1", quantity=1, cart_id="c1")
    api.track("Product Removed", product_id="p2", cart_id="c1")
    cart = _cart(api, cid)
    assert (cart["cart_id"], cart["status"], cart["items"]) == ("c1", "open", {"p1": (3, 10.0)})
    api.track("Product Removed", product_id="p1", quantity=1, cart_id="c1")
    assert _cart(api, cid)["items"] == {"p1": (2, 10.0)}
    # Checkout Started carries the whole cart and replaces what was known.
    api.track(
        "Checkout Started",
        cart_id="c1",
        products=[
            {"product_id": "p1", "price": 9.5, "quantity": 2},
            {"product_id": "p3", "price": 20, "quantity": 1},
        ],
    )
    cart = _cart(api, cid)
    assert (cart["status"], cart["items"]) == ("checkout", {"p1": (2, 9.5), "p3": (1, 20.0)})
    api.track(
        "Order Completed",
        order_id="o-1",
        cart_id="c1",
        total=39,
        products=[
            {"product_id": "p1", "price": 9.5, "quantity": 2, "category": "shoes"},
            {"product_id": "p3", "price": 20, "quantity": 1},
        ],
    )
    assert _cart(api, cid)["status"] == "ordered"
    with engine.connect() as conn:
        lines = conn.execute(
            sa.select(
                order_lines.c.product_id, order_lines.c.quantity, order_lines.c.price
            ).order_by(order_lines.c.product_id)
        ).all()
        views = conn.execute(sa.select(product_views.c.product_id, product_views.c.views)).all()
    assert lines == [("p1", 2, 9.5), ("p3", 1, 20.0)]
    assert views == [("p1", 2)]
    # Adding after the order starts a fresh cart under the same id.
    api.track("Product Added", product_id="p9", price=1, cart_id="c1")
    cart = _cart(api, cid)
    assert (cart["status"], cart["items"]) == ("open", {"p9": (1, 1.0)})
    assert count(engine, carts) == 1


def test_refunds_and_cancellations(api: Api, engine: sa.Engine) -> None:
    cid = _ann(api)
    _order(api, "o-1", 100.0, 1)
    _order(api, "o-2", 60.0, 2)
    _order(api, "o-3", 40.0, 3, products=[{"product_id": "a", "price": 10, "quantity": 4}])
    _order(api, "o-4", 25.0, 4)
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (4, 225.0)

    api.track("Order Refunded", order_id="o-1", total=30)  # partial: still an order
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (4, 195.0)
    api.track("Order Refunded", order_id="o-2")  # no amount: the whole order
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (3, 135.0)
    # A partial refund by items: two of the four lines at 10 each.
    api.track(
        "Order Refunded", order_id="o-3", products=[{"product_id": "a", "price": 10, "quantity": 2}]
    )
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (3, 115.0)
    api.track("Order Cancelled", order_id="o-4")
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"], c["average_check"]) == (2, 90.0, 45.0)
    assert c["last_order_at"] == "2026-02-03T10:00:00+00:00"
    # The rest of o-1 refunded: it stops counting.
    api.track("Order Refunded", order_id="o-1", total=70)
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (1, 20.0)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.select(orders.c.order_id, orders.c.status)).all())
        refunded = dict(conn.execute(sa.select(orders.c.order_id, orders.c.refunded)).all())
    assert got == {"o-1": "refunded", "o-2": "refunded", "o-3": "completed", "o-4": "cancelled"}
    assert refunded == {"o-1": 100.0, "o-2": 60.0, "o-3": 20.0, "o-4": 0.0}
    # A refund for an order nobody knows is stored on the timeline and changes nothing.
    api.track("Order Refunded", order_id="o-unknown", total=5)
    assert api.card(cid)["computed"]["revenue"] == 20.0


def test_order_updated_and_resent_order(api: Api, engine: sa.Engine) -> None:
    cid = _ann(api)
    _order(api, "o-1", 100.0, 1)
    _order(api, "o-2", 50.0, 2)
    api.track("Order Cancelled", order_id="o-2")
    api.track("Order Updated", order_id="o-1", total=120.0)
    api.track("Order Updated", order_id="o-2", total=55.0)  # a cancelled order stays cancelled
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"]) == (1, 120.0)
    assert c["first_order_at"] == "2026-02-01T10:00:00+00:00"  # Updated keeps the order time
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(orders.c.order_id, orders.c.status)).all()) == {
            "o-1": "completed",
            "o-2": "cancelled",
        }


def test_offline_order_with_store(api: Api, engine: sa.Engine) -> None:
    cid = _ann(api)
    api.send(
        "track",
        anonymousId="pos-terminal-3",
        event="Order Completed",
        timestamp="2026-02-25T15:30:00Z",
        context={"traits": {"phone": "8 916 123-45-67"}},
        properties={
            "order_id": "pos-991",
            "store_id": "kazan-1",
            "total": 2500,
            "currency": "RUB",
            "products": [{"product_id": "sku-7", "price": 2500, "quantity": 1}],
        },
    )
    with engine.connect() as conn:
        row = conn.execute(sa.select(orders)).one()
    assert (row.customer_id, row.channel, row.store_id, row.total) == (
        cid,
        "offline",
        "kazan-1",
        2500.0,
    )
    c = api.card(cid)["computed"]
    assert (c["orders_count"], c["revenue"], c["days_since_last_order"]) == (1, 2500.0, 3)
    _order(api, "web-1", 100.0, 26, channel="online")
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(orders.c.channel).where(orders.c.order_id == "web-1")
            ).scalar_one()
            == "online"
        )


def test_timeline_newest_first_with_cursor_and_filters(api: Api) -> None:
    cid = _ann(api)  # received at 2026-03-01 12:00
    for day in range(1, 26):
        api.send(
            "track",
            userId="u1",
            event="Product Viewed" if day % 2 else "Page Scrolled",
            timestamp=f"2026-02-{day:02d}T08:00:00Z",
            properties={"product_id": f"p{day}", "day": day},
        )
    # Two events at the very same moment: the cursor must not lose or repeat either.
    for n in range(2):
        api.send(
            "track", userId="u1", event="Tie", timestamp="2026-02-10T08:00:00Z", properties={"n": n}
        )
    api.send("track", userId="u1", event="Imported", timestamp="2026-01-05T00:00:00Z")
    api.client.post(
        "/v1/import",
        json={
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "Old Purchase",
                    "timestamp": "2025-12-01T00:00:00Z",
                }
            ]
        },
        headers=api.write,
    )

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["before"] = cursor
        page = api.call("GET", f"/api/customers/{cid}/timeline", params=params)
        seen.extend(page["events"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["events"]) == 7
    assert len(seen) == 30 and pages == 5
    assert len({e["id"] for e in seen}) == 30
    stamps = [e["occurred_at"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[0]["name"] == "Identify"
    assert seen[-1]["name"] == "Old Purchase" and seen[-1]["source"] == "import"

    page = api.call(
        "GET", f"/api/customers/{cid}/timeline", params={"name": "Product Viewed", "limit": 5}
    )
    assert [e["properties"]["day"] for e in page["events"]] == [25, 23, 21, 19, 17]
    nxt = api.call(
        "GET",
        f"/api/customers/{cid}/timeline",
        params={"name": "Product Viewed", "limit": 5, "before": page["next_cursor"]},
    )
    assert [e["properties"]["day"] for e in nxt["events"]] == [15, 13, 11, 9, 7]
    both = api.call("GET", f"/api/customers/{cid}/timeline", params={"name": ["Tie", "Imported"]})
    assert [e["name"] for e in both["events"]] == ["Tie", "Tie", "Imported"]
    assert both["next_cursor"] is None
    imported = api.call("GET", f"/api/customers/{cid}/timeline", params={"source": "import"})
    assert [e["name"] for e in imported["events"]] == ["Old Purchase"]


def test_patch(api: Api, engine: sa.Engine) -> None:
    cid = _ann(api)
    api.send("identify", userId="u2", traits={"email": "bob@example.com"})
    card = api.call(
        "PATCH",
        f"/api/customers/{cid}",
        json={
            "first_name": "Anna",
            "city": "Moscow",
            "timezone": "Asia/Yekaterinburg",
            "birthday": "1991-01-02",
            "email": "Anna@New.Example.com",
            "phone": "8 903 000 11 22",
            "traits": {"vip": None, "tier": "gold"},
        },
    )
    p = card["profile"]
    assert (p["first_name"], p["last_name"], p["city"], p["timezone"], p["birthday"]) == (
        "Anna",
        "Lee",
        "Moscow",
        "Asia/Yekaterinburg",
        "1991-01-02",
    )
    assert (p["email"], p["phone"]) == ("anna@new.example.com", "+79030001122")
    assert p["traits"] == {"address": {"city": "Kazan", "country": "RU"}, "tier": "gold"}
    assert api.find(email="anna@new.example.com") == [cid]
    assert api.find(phone="+79030001122") == [cid]
    # The old email still names this customer: identities accumulate, they are not moved.
    assert api.find(email="ann.lee@example.com") == [cid]
    # Setting the email this customer already owns is not a conflict.
    api.call("PATCH", f"/api/customers/{cid}", json={"email": "ann.lee@example.com"})
    err = api.call("PATCH", f"/api/customers/{cid}", 409, json={"email": "bob@example.com"})
    assert "bob@example.com" in err["message"]
    assert api.card(cid)["profile"]["email"] == "ann.lee@example.com"


def test_consents(api: Api, clock: SimulatedClock, engine: sa.Engine) -> None:
    cid = _ann(api)
    card = api.call(
        "POST",
        f"/api/customers/{cid}/consents",
        json={
            "channel": "email",
            "status": "subscribed",
            "source": "checkout form",
            "double_opt_in": "pending",
        },
    )
    assert card["consents"] == [
        {
            "channel": "email",
            "status": "subscribed",
            "source": "checkout form",
            "updated_at": "2026-03-01T12:00:00+00:00",
            "double_opt_in": "pending",
        }
    ]
    clock.advance(timedelta(hours=1))
    api.call("POST", f"/api/customers/{cid}/consents", json={"channel": "sms", "status": "pending"})
    card = api.call(
        "POST",
        f"/api/customers/{cid}/consents",
        json={"channel": "email", "status": "unsubscribed"},
    )
    assert {c["channel"]: (c["status"], c["source"]) for c in card["consents"]} == {
        "email": ("unsubscribed", "api"),
        "sms": ("pending", "api"),
    }
    # An identify carrying an older decision does not overwrite the newer one.
    api.send(
        "identify",
        userId="u1",
        timestamp="2026-02-01T00:00:00Z",
        traits={"consents": {"email": True, "push": True}},
    )
    got = {c["channel"]: c["status"] for c in api.card(cid)["consents"]}
    assert got == {"email": "unsubscribed", "sms": "pending", "push": "subscribed"}
    tl = api.call("GET", f"/api/customers/{cid}/timeline", params={"name": "Consent Changed"})[
        "events"
    ]
    assert [(e["properties"]["channel"], e["properties"]["status"], e["source"]) for e in tl] == [
        ("email", "unsubscribed", "system"),
        ("sms", "pending", "system"),
        ("email", "subscribed", "system"),
    ]
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(event_counters.c.count).where(event_counters.c.name == "Consent Changed")
            ).scalar_one()
            == 3
        )


def _rich_customer(api: Api) -> int:
    cid = _ann(api)
    api.send("page", anonymousId="anon-old", name="Landing")
    api.send("alias", previousId="anon-old", userId="u1")
    api.send("group", userId="u1", groupId="acme", traits={"plan": "pro"})
    api.track("Product Viewed", product_id="p1", price=10)
    api.track("Product Added", product_id="p1", price=10, cart_id="c1")
    _order(api, "o-1", 80.0, 5, coupon="SPRING", products=[{"product_id": "p1", "price": 80}])
    _order(api, "o-2", 20.0, 6)
    api.call(
        "POST", f"/api/customers/{cid}/consents", json={"channel": "email", "status": "subscribed"}
    )
    return cid


def test_export_contains_everything(api: Api) -> None:
    cid = _rich_customer(api)
    data = api.call("GET", f"/api/customers/{cid}/export")
    assert data["id"] == cid
    assert data["profile"]["email"] == "ann.lee@example.com"
    assert {(i["kind"], i["value"]) for i in data["identities"]} >= {
        ("user_id", "u1"),
        ("anonymous_id", "anon-1"),
        ("anonymous_id", "anon-old"),
        ("email", "ann.lee@example.com"),
        ("phone", "+79161234567"),
    }
    assert [c["channel"] for c in data["consents"]] == ["email"]
    assert data["groups"] == [{"group_id": "acme", "traits": {"plan": "pro"}}]
    assert data["cart"]["items"][0]["product_id"] == "p1"
    names = [e["name"] for e in data["events"]]
    assert sorted(names) == sorted(
        [
            "Identify",
            "Page Viewed",
            "Alias",
            "Group",
            "Product Viewed",
            "Product Added",
            "Order Completed",
            "Lifecycle Stage Changed",  # the first order: prospect -> new
            "Lifecycle Stage Changed",  # the second: new -> repeat
            "Order Completed",
            "Consent Changed",
        ]
    )
    assert all("properties" in e and "context" in e for e in data["events"])
    assert [(o["order_id"], o["total"]) for o in data["orders"]] == [("o-1", 80.0), ("o-2", 20.0)]
    assert data["orders"][0]["lines"] == [{"product_id": "p1", "price": 80.0, "quantity": 1}]
    [merge] = data["merges"]
    assert merge["reason"] == "alias"
    assert data["computed"]["orders_count"] == 2
    # The export of a merged id is the survivor's export.
    assert api.call("GET", f"/api/customers/{merge['from_id']}/export")["id"] == cid


def test_delete_erases_personal_data_and_keeps_aggregates(api: Api, engine: sa.Engine) -> None:
    cid = _rich_customer(api)
    api.send("identify", userId="u2", traits={"email": "bob@example.com", "firstName": "Bob"})
    bob = api.find(user_id="u2")[0]
    before = api.card(cid)["computed"]
    merged_from = api.card(cid)["merged_from"]
    with engine.connect() as conn:
        counters_before = conn.execute(
            sa.select(sa.func.sum(event_counters.c.count)).where(
                event_counters.c.customer_id == cid
            )
        ).scalar_one()

    result = api.call("DELETE", f"/api/customers/{cid}")
    assert sorted(result["erased"]) == sorted([cid, *merged_from])
    assert_no_orphans(engine)

    for params in (
        {"user_id": "u1"},
        {"email": "ann.lee@example.com"},
        {"phone": "+79161234567"},
        {"anonymous_id": "anon-1"},
        {"anonymous_id": "anon-old"},
        {"q": "ann"},
        {"q": "lee"},
    ):
        assert api.find(**params) == [], params
    card = api.card(cid)
    assert card["erased_at"] == "2026-03-01T12:00:00+00:00"
    assert card["identities"] == [] and card["consents"] == [] and card["groups"] == []
    assert card["cart"] is None
    assert all(v is None for k, v in card["profile"].items() if k != "traits")
    assert card["profile"]["traits"] == {}
    after = card["computed"]
    for key in ("orders_count", "revenue", "events_count", "first_order_at", "last_order_at"):
        assert after[key] == before[key], key
    assert (after["orders_count"], after["revenue"]) == (2, 100.0)

    with engine.connect() as conn:
        rows = conn.execute(sa.select(events).where(events.c.customer_id == cid)).all()
        # events_count counts the customer's own events, not Rapport's (stage changes, ...)
        assert len([r for r in rows if r.type != "system"]) == before["events_count"]
        assert all(r.properties == {} and r.context == {} for r in rows)
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(identities)
                .where(identities.c.customer_id == cid)
            ).scalar_one()
            == 0
        )
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(consents)
                .where(consents.c.customer_id == cid)
            ).scalar_one()
            == 0
        )
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(customer_groups)
                .where(customer_groups.c.customer_id == cid)
            ).scalar_one()
            == 0
        )
        assert [m.details for m in conn.execute(sa.select(customer_merges))] == [{"erased": True}]
        assert (
            conn.execute(sa.select(orders.c.coupon).where(orders.c.order_id == "o-1")).scalar_one()
            is None
        )
        assert (
            conn.execute(
                sa.select(sa.func.sum(event_counters.c.count)).where(
                    event_counters.c.customer_id == cid
                )
            ).scalar_one()
            == counters_before
        )
        erased_rows = conn.execute(
            sa.select(customers.c.email, customers.c.first_name).where(
                customers.c.id.in_([cid, *merged_from])
            )
        ).all()
        assert all(r == (None, None) for r in erased_rows)
    # Bob is untouched.
    assert api.card(bob)["profile"]["email"] == "bob@example.com"
    # The same person coming back is a new, empty profile.
    api.send("track", userId="u1", event="Came Back")
    new = api.find(user_id="u1")
    assert new and new != [cid]
    assert api.card(new[0])["computed"]["orders_count"] == 0
    assert len(live_customers(engine)) == 3


def test_erasure_removes_message_addresses_and_content(api: Api, engine: sa.Engine) -> None:
    from rapport.messaging.outbox import QueuedMessage, enqueue
    from rapport.store.engine import writing
    from rapport.store.tables import outbox, push_subscriptions, telegram_chats
    from tests.conftest import T0

    api.send("identify", userId="u9", traits={"email": "zoe@example.com"})
    cid = api.find(user_id="u9")[0]
    now = T0
    with writing(engine) as conn:
        conn.execute(
            push_subscriptions.insert().values(
                customer_id=cid,
                kind="fcm",
                endpoint="tok-1",
                keys={},
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(telegram_chats.insert().values(chat_id="42", customer_id=cid, linked_at=now))
        enqueue(
            conn,
            [
                QueuedMessage(
                    idempotency_key=k,
                    channel="email",
                    recipient="zoe@example.com",
                    body_text="Hi Zoe",
                    customer_id=cid,
                    subject="Zoe",
                )
                for k in ("m1", "m2")
            ],
            now,
        )
        conn.execute(outbox.update().where(outbox.c.idempotency_key == "m1").values(status="sent"))
    api.call("DELETE", f"/api/customers/{cid}")
    with engine.connect() as conn:
        assert count(engine, push_subscriptions) == 0 and count(engine, telegram_chats) == 0
        rows = {r.idempotency_key: r for r in conn.execute(sa.select(outbox))}
    assert rows["m1"].status == "sent" and rows["m2"].status == "skipped"
    assert all(r.recipient == "" and r.body_text == "" and r.subject is None for r in rows.values())
