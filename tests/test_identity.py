"""Identity resolution: anonymous to known, merges by email and phone, conflicts, history."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.store.tables import (
    cart_items,
    carts,
    consents,
    customer_merges,
    customers,
    event_counters,
    events,
    identities,
    product_views,
)
from tests.conftest import basic, bearer
from tests.helpers import assert_no_orphans, event_rows, live_customers


class Sender:
    def __init__(self, client: TestClient, write_key: str, secret_key: str) -> None:
        self.client = client
        self.write = basic(write_key)
        self.secret = bearer(secret_key)

    def send(self, kind: str, **body: Any) -> None:
        r = self.client.post(f"/v1/{kind}", json=body, headers=self.write)
        assert r.status_code == 200, r.text

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params, headers=self.secret)
        assert r.status_code == 200, r.text
        return r.json()

    def lookup(self, **params: str) -> list[int]:
        return [c["id"] for c in self.get("/api/customers", **params)["customers"]]


@pytest.fixture
def api(client: TestClient, write_key: str, secret_key: str) -> Sender:
    return Sender(client, write_key, secret_key)


def _identities(engine: sa.Engine, cid: int) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(identities.c.kind, identities.c.value).where(
                    identities.c.customer_id == cid
                )
            ).all()
        )


def _merges(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(customer_merges).order_by(customer_merges.c.id)))


def test_anonymous_becomes_known_on_identify(api: Sender, engine: sa.Engine) -> None:
    api.send("page", anonymousId="a1", name="Home")
    api.send("track", anonymousId="a1", event="Product Viewed", properties={"product_id": "p1"})
    [anon] = live_customers(engine)
    api.send("identify", anonymousId="a1", userId="u1", traits={"firstName": "Ann"})
    api.send("track", userId="u1", event="Signed In")
    [card] = live_customers(engine)
    assert card.id == anon.id  # the anonymous profile simply became known: no merge needed
    assert _merges(engine) == []
    assert _identities(engine, card.id) == {("anonymous_id", "a1"), ("user_id", "u1")}
    assert (card.first_name, card.events_count) == ("Ann", 4)
    assert api.lookup(anonymous_id="a1") == api.lookup(user_id="u1") == [card.id]


def test_anonymous_profile_merges_into_known_user(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", traits={"email": "ann@example.com"})
    api.send("track", anonymousId="a2", event="Product Viewed", properties={"product_id": "p1"})
    api.send("track", anonymousId="a2", event="Product Added", properties={"product_id": "p1"})
    known, anon = live_customers(engine)
    # Signing in on a new device: the device's history joins the known profile.
    api.send("identify", userId="u1", anonymousId="a2")
    [card] = live_customers(engine)
    assert card.id == known.id
    assert card.events_count == 4
    assert {r.customer_id for r in event_rows(engine)} == {known.id}
    [merge] = _merges(engine)
    assert (merge.into_id, merge.from_id, merge.reason) == (
        known.id,
        anon.id,
        "anonymous id seen with user id",
    )
    assert api.get(f"/api/customers/{known.id}")["cart"]["items"] == [
        {"product_id": "p1", "quantity": 1, "price": None}
    ]


def test_alias_merges_previous_id(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", traits={"firstName": "Ann"})
    api.send("page", anonymousId="old-device", name="Pricing")
    api.send("page", anonymousId="old-device", name="Signup")
    known, anon = live_customers(engine)
    api.send("alias", previousId="old-device", userId="u1")
    [card] = live_customers(engine)
    assert card.id == known.id
    assert ("anonymous_id", "old-device") in _identities(engine, card.id)
    assert card.events_count == 4  # identify, two pages, alias
    [merge] = _merges(engine)
    assert (merge.from_id, merge.reason) == (anon.id, "alias")
    assert api.lookup(anonymous_id="old-device") == [known.id]


def test_alias_of_an_unknown_previous_id_and_of_a_known_user(
    api: Sender, engine: sa.Engine
) -> None:
    # An alias naming an id nobody used yet just creates the profile with both ids.
    api.send("alias", previousId="never-seen", userId="u9")
    [first] = live_customers(engine)
    assert _identities(engine, first.id) == {("user_id", "u9")}
    # Alias is explicit: a profile under an old user id is merged even though both are known.
    api.send("identify", userId="legacy-42", traits={"city": "Kazan"})
    api.send("identify", userId="u9", traits={"firstName": "Ann"})
    api.send("alias", previousId="legacy-42", userId="u9")
    [card] = live_customers(engine)
    assert card.id == first.id
    assert (card.first_name, card.city) == ("Ann", "Kazan")
    assert {("user_id", "u9"), ("user_id", "legacy-42")} <= _identities(engine, card.id)
    assert api.lookup(user_id="legacy-42") == [card.id]


def _at(day: int, hour: int = 12) -> str:
    return f"2026-02-{day:02d}T{hour:02d}:00:00Z"


def test_email_match_merges_everything(api: Sender, engine: sa.Engine) -> None:
    # Profile A: a visitor who left an email in a pop-up, then bought and added to a cart.
    api.send(
        "identify",
        anonymousId="anon-a",
        timestamp=_at(10),
        traits={
            "email": "ann@example.com",
            "firstName": "Ann",
            "city": "Kazan",
            "plan": "a",
            "consents": {"email": True, "push": True},
        },
    )
    api.send(
        "track",
        anonymousId="anon-a",
        timestamp=_at(20, 10),
        event="Product Viewed",
        properties={"product_id": "p1"},
    )
    api.send(
        "track",
        anonymousId="anon-a",
        timestamp=_at(11),
        event="Order Completed",
        properties={"order_id": "o-a", "total": 100},
    )
    api.send(
        "track",
        anonymousId="anon-a",
        timestamp=_at(20),
        event="Product Added",
        properties={"product_id": "p1", "price": 10},
    )
    # Profile B: a registered user on another device, same email not yet given.
    api.send(
        "identify",
        userId="u1",
        timestamp=_at(12),
        traits={"firstName": "Anna", "plan": "b", "consents": {"email": False}},
    )
    api.send("identify", userId="u1", timestamp=_at(1), traits={"consents": {"push": False}})
    api.send(
        "track",
        userId="u1",
        timestamp=_at(20, 11),
        event="Product Viewed",
        properties={"product_id": "p1"},
    )
    api.send(
        "track",
        userId="u1",
        timestamp=_at(15),
        event="Order Completed",
        properties={"order_id": "o-b", "total": 50},
    )
    api.send(
        "track",
        userId="u1",
        timestamp=_at(21),
        event="Product Added",
        properties={"product_id": "p2", "price": 20, "quantity": 2},
    )
    a, b = live_customers(engine)
    assert (a.orders_count, b.orders_count) == (1, 1)

    api.send("identify", userId="u1", timestamp=_at(22), traits={"email": "ANN@example.com"})

    [card] = live_customers(engine)
    assert card.id == b.id  # the profile with a user id survives
    assert_no_orphans(engine)
    assert _identities(engine, card.id) == {
        ("anonymous_id", "anon-a"),
        ("user_id", "u1"),
        ("email", "ann@example.com"),
    }
    # Attributes: the survivor's values win, the other profile fills the gaps.
    assert (card.first_name, card.city, card.email) == ("Anna", "Kazan", "ann@example.com")
    assert card.traits == {"plan": "b"}
    # Computed fields combined.
    assert (card.events_count, card.orders_count, card.revenue) == (10, 2, 150.0)
    assert card.first_order_at.isoformat() == "2026-02-11T12:00:00+00:00"
    assert card.last_order_at.isoformat() == "2026-02-15T12:00:00+00:00"
    assert card.first_seen_at.isoformat() == "2026-02-01T12:00:00+00:00"
    assert card.last_seen_at.isoformat() == "2026-02-22T12:00:00+00:00"
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(events.c.customer_id)).scalars()) == {card.id}
        counters = conn.execute(
            sa.select(event_counters.c.customer_id, event_counters.c.count).where(
                event_counters.c.name == "Product Viewed"
            )
        ).all()
        views = conn.execute(sa.select(product_views.c.customer_id, product_views.c.views)).all()
        got = {
            r.channel: (r.status, r.source)
            for r in conn.execute(sa.select(consents).where(consents.c.customer_id == card.id))
        }
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(consents)
                .where(consents.c.customer_id == a.id)
            ).scalar_one()
            == 0
        )
        [cart] = conn.execute(sa.select(carts)).all()
        items = dict(conn.execute(sa.select(cart_items.c.product_id, cart_items.c.quantity)).all())
    assert counters == [(card.id, 2)]  # same name, same day: one counter, summed
    assert views == [(card.id, 2)]
    # The most recent decision per channel wins, whichever profile it came from.
    assert got == {
        "email": ("unsubscribed", "api:identify"),  # B's, 12 Feb, beats A's of 10 Feb
        "push": ("subscribed", "api:identify"),  # A's, 10 Feb, beats B's of 1 Feb
    }
    assert cart.customer_id == card.id
    assert items == {"p1": 1, "p2": 2}

    [merge] = _merges(engine)
    assert (merge.into_id, merge.from_id, merge.reason) == (b.id, a.id, "same email")
    details = merge.details
    # A's four events and the stage change its order caused moved over.
    assert details["events"] == 5 and details["orders"] == 1
    assert {"kind": "email", "value": "ann@example.com"} in details["identities"]
    assert {"kind": "anonymous_id", "value": "anon-a"} in details["identities"]
    assert "city" in details["filled"]

    card_json = api.get(f"/api/customers/{a.id}")
    assert card_json["id"] == b.id and card_json["requested_id"] == a.id
    assert card_json["merged_from"] == [a.id]
    assert card_json["computed"]["orders_count"] == 2
    timeline = api.get(f"/api/customers/{a.id}/timeline")["events"]
    # Ten events sent to the two profiles, plus the stage change each first order caused.
    assert len([e for e in timeline if e["type"] != "system"]) == 10
    assert [e["name"] for e in timeline if e["type"] == "system"] == ["Lifecycle Stage Changed"] * 2


def test_phone_from_a_call_lands_on_the_known_profile(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", traits={"phone": "+7 916 123-45-67", "firstName": "Ann"})
    [known] = live_customers(engine)
    # The telephony system knows only the caller's number, written the local way.
    api.send(
        "track",
        anonymousId="call-7731",
        event="Call Completed",
        properties={"duration": 95, "direction": "inbound"},
        context={"traits": {"phone": "8 (916) 123-45-67"}},
    )
    [card] = live_customers(engine)
    assert card.id == known.id
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one() == 1
    call = event_rows(engine, name="Call Completed")[0]
    assert call.customer_id == known.id
    assert call.properties == {"duration": 95, "direction": "inbound"}
    assert ("anonymous_id", "call-7731") in _identities(engine, known.id)
    assert api.lookup(phone="89161234567") == [known.id]


def test_phone_from_a_call_merges_a_known_anonymous_caller(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", traits={"phone": "+79161234567"})
    api.send("track", anonymousId="line-1", event="Call Missed")  # a caller id without a number
    known, caller = live_customers(engine)
    api.send(
        "track",
        anonymousId="line-1",
        event="Call Completed",
        context={"traits": {"phone": "+7 916 123 45 67"}},
    )
    [card] = live_customers(engine)
    assert card.id == known.id
    assert {r.customer_id for r in event_rows(engine)} == {known.id}
    [merge] = _merges(engine)
    assert (merge.from_id, merge.reason) == (caller.id, "same phone")


def test_two_users_sharing_an_email_are_not_merged(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", traits={"email": "family@example.com"})
    api.send("identify", userId="u2", traits={"email": "family@example.com", "firstName": "Bo"})
    api.send(
        "track", userId="u2", event="Signed In", context={"traits": {"email": "family@example.com"}}
    )
    one, two = live_customers(engine)
    assert _merges(engine) == []
    assert ("email", "family@example.com") in _identities(engine, one.id)
    assert _identities(engine, two.id) == {("user_id", "u2")}
    conflicts = [r for r in event_rows(engine) if r.customer_id == two.id]
    assert [r.context["rapport"]["identity_conflicts"] for r in conflicts] == [
        ["email family@example.com belongs to another user"]
    ] * 2
    assert "rapport" not in event_rows(engine, customer_id=one.id)[0].context
    assert api.lookup(email="family@example.com") == [one.id]
    assert api.lookup(user_id="u2") == [two.id]


def test_anonymous_id_of_another_user_is_not_taken(api: Sender, engine: sa.Engine) -> None:
    api.send("identify", userId="u1", anonymousId="shared-tablet")
    api.send("identify", userId="u2", anonymousId="shared-tablet")
    one, two = live_customers(engine)
    assert _merges(engine) == []
    assert ("anonymous_id", "shared-tablet") in _identities(engine, one.id)
    [event] = event_rows(engine, customer_id=two.id)
    assert event.context["rapport"]["identity_conflicts"] == [
        "anonymous_id shared-tablet belongs to another user"
    ]


def test_merged_ids_still_resolve_through_a_chain(api: Sender, engine: sa.Engine) -> None:
    api.send("page", anonymousId="a1")
    api.send("page", anonymousId="a2")
    api.send("identify", userId="u1")
    first, second, known = live_customers(engine)
    api.send("identify", userId="u1", anonymousId="a2")  # second → known
    api.send("identify", anonymousId="a1", traits={"email": "z@example.com"})
    api.send("identify", userId="u1", traits={"email": "z@example.com"})  # first → known
    [card] = live_customers(engine)
    assert card.id == known.id
    for old in (first.id, second.id, known.id):
        got = api.get(f"/api/customers/{old}")
        assert (got["id"], got["requested_id"]) == (known.id, old)
    assert sorted(api.get(f"/api/customers/{known.id}")["merged_from"]) == [first.id, second.id]
    assert [m.reason for m in _merges(engine)] == ["anonymous id seen with user id", "same email"]


def test_one_batch_resolves_in_order(api: Sender, engine: sa.Engine, client: TestClient) -> None:
    batch = [
        {"type": "page", "anonymousId": "b1", "name": "Home"},
        {
            "type": "track",
            "anonymousId": "b1",
            "event": "Product Viewed",
            "properties": {"product_id": "p1"},
        },
        {
            "type": "identify",
            "anonymousId": "b1",
            "userId": "u1",
            "traits": {"email": "b@example.com"},
        },
        {
            "type": "track",
            "anonymousId": "b2",
            "event": "Call Completed",
            "context": {"traits": {"email": "B@example.com"}},
        },
        {"type": "alias", "previousId": "b3", "userId": "u1"},
    ]
    r = client.post("/v1/batch", json={"batch": batch}, headers=api.write)
    assert r.status_code == 200, r.text
    [card] = live_customers(engine)
    assert card.events_count == 5
    assert _identities(engine, card.id) == {
        ("anonymous_id", "b1"),
        ("anonymous_id", "b2"),
        ("user_id", "u1"),
        ("email", "b@example.com"),
    }
