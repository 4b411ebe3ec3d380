"""The unchanged Segment and RudderStack Python SDKs, over real HTTP, against Rapport.

What they send (read from their source): both POST ``{host}/v1/batch`` with HTTP Basic
(write key as username) and JSON carrying ``batch``, ``sentAt`` and (Segment) ``writeKey``.
Segment gzips only when asked; RudderStack always gzips. Each message has an ISO
``timestamp`` (the client's clock), a ``messageId``, ``context.library`` and
``integrations``; RudderStack adds ``channel: "server"`` and puts identify traits in
``context.traits`` instead of ``traits``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from rapport.store.tables import (
    carts,
    customer_groups,
    events,
    identities,
    orders,
    product_views,
)
from tests.conftest import T0, bearer
from tests.helpers import live_customers

PRODUCTS = [
    {"product_id": "p-1", "sku": "SKU-1", "name": "Boots", "price": 60.0, "quantity": 2},
    {"product_id": "p-2", "sku": "SKU-2", "name": "Socks", "price": 30.0, "quantity": 1},
]


def _segment(url: str, key: str, errors: list[Any], gzip: bool) -> Any:
    return SegmentClient(
        key,
        host=url,
        gzip=gzip,
        max_retries=0,
        upload_interval=0.05,
        on_error=lambda exc, batch: errors.append(exc),
    )


def _rudder(url: str, key: str, errors: list[Any], gzip: bool) -> Any:
    return RudderClient(
        key,
        host=url,
        gzip=gzip,
        max_retries=0,
        upload_interval=0.05,
        on_error=lambda exc, batch: errors.append(exc),
    )


def _send_journey(sdk: Any) -> None:
    """A visitor browses anonymously, signs in, buys, and an older anonymous id is aliased."""
    sdk.page(anonymous_id="anon-1", category="Shop", name="Home", properties={"path": "/"})
    sdk.track(
        anonymous_id="anon-1",
        event="Product Viewed",
        properties={**PRODUCTS[0], "category": "shoes"},
    )
    sdk.track(
        anonymous_id="anon-1",
        event="Product Added",
        properties={**PRODUCTS[0], "cart_id": "c-1"},
    )
    sdk.identify(
        user_id="u-1",
        anonymous_id="anon-1",
        traits={
            "email": "Ann@Example.com",
            "firstName": "Ann",
            "lastName": "Lee",
            "birthday": "1990-05-17",
            "phone": "+7 916 123-45-67",
            "plan": "gold",
        },
    )
    sdk.track(
        user_id="u-1",
        event="Checkout Started",
        properties={"cart_id": "c-1", "products": PRODUCTS},
    )
    sdk.track(
        user_id="u-1",
        event="Order Completed",
        properties={
            "order_id": "o-1",
            "cart_id": "c-1",
            "total": 150.0,
            "currency": "USD",
            "products": PRODUCTS,
        },
    )
    sdk.screen(user_id="u-1", name="Orders", properties={"tab": "recent"})
    sdk.group(user_id="u-1", group_id="acme", traits={"name": "Acme Inc"})
    sdk.page(anonymous_id="anon-2", name="Pricing")
    sdk.alias(previous_id="anon-2", user_id="u-1")
    sdk.flush()
    sdk.shutdown()


def _check_store(engine: sa.Engine, url: str, secret_key: str) -> None:
    [card] = live_customers(engine)
    with engine.connect() as conn:
        ids = set(
            conn.execute(
                sa.select(identities.c.kind, identities.c.value).where(
                    identities.c.customer_id == card.id
                )
            ).all()
        )
        # What the SDK sent (Rapport's own events, such as stage changes, are left out).
        rows = conn.execute(
            sa.select(events).where(events.c.type != "system").order_by(events.c.id)
        ).all()
        order = conn.execute(sa.select(orders)).one()
        cart = conn.execute(sa.select(carts)).one()
        views = conn.execute(sa.select(product_views)).one()
        group = conn.execute(sa.select(customer_groups)).one()
    assert ids == {
        ("user_id", "u-1"),
        ("anonymous_id", "anon-1"),
        ("anonymous_id", "anon-2"),
        ("email", "ann@example.com"),
        ("phone", "+79161234567"),
    }
    assert {r.customer_id for r in rows} == {card.id}
    assert sorted(r.name for r in rows) == sorted(
        [
            "Page Viewed",
            "Product Viewed",
            "Product Added",
            "Identify",
            "Checkout Started",
            "Order Completed",
            "Screen Viewed",
            "Group",
            "Page Viewed",
            "Alias",
        ]
    )
    for row in rows:
        assert row.context["library"]["name"] == "analytics-python"
        # sentAt corrects the client's clock: events land at the server's (simulated) time.
        assert abs(row.occurred_at - T0) < timedelta(minutes=1), row
    page = next(r for r in rows if r.name == "Page Viewed" and r.properties.get("path"))
    assert page.properties == {"path": "/", "name": "Home", "category": "Shop"}
    screen = next(r for r in rows if r.name == "Screen Viewed")
    assert screen.properties == {"tab": "recent", "name": "Orders"}

    assert (card.first_name, card.last_name, card.email, card.phone) == (
        "Ann",
        "Lee",
        "ann@example.com",
        "+79161234567",
    )
    assert card.birthday.isoformat() == "1990-05-17"
    assert card.traits == {"plan": "gold"}
    assert (card.events_count, card.orders_count, card.revenue) == (10, 1, 150.0)
    assert (order.order_id, order.total, order.customer_id) == ("o-1", 150.0, card.id)
    assert (cart.cart_id, cart.status) == ("c-1", "ordered")
    assert (views.product_id, views.views) == ("p-1", 1)
    assert (group.group_id, group.traits) == ("acme", {"name": "Acme Inc"})

    r = httpx.get(f"{url}/api/customers", params={"user_id": "u-1"}, headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    [found] = r.json()["customers"]
    assert found["id"] == card.id
    r = httpx.get(f"{url}/api/customers/{card.id}", headers=bearer(secret_key))
    computed = r.json()["computed"]
    assert (computed["orders_count"], computed["revenue"], computed["average_check"]) == (
        1,
        150.0,
        150.0,
    )


Factory = Callable[[str, str, list[Any], bool], Any]


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("factory", [_segment, _rudder], ids=["segment", "rudderstack"])
def test_sdk_journey(
    factory: Factory,
    gzip: bool,
    engine: sa.Engine,
    live_server: str,
    write_key: str,
    secret_key: str,
) -> None:
    errors: list[Any] = []
    _send_journey(factory(live_server, write_key, errors, gzip))
    assert errors == []
    _check_store(engine, live_server, secret_key)


@pytest.mark.parametrize("factory", [_segment, _rudder], ids=["segment", "rudderstack"])
def test_sdk_with_wrong_key_stores_nothing(
    factory: Factory, engine: sa.Engine, live_server: str, write_key: str
) -> None:
    errors: list[Any] = []
    sdk = factory(live_server, "wk_not-a-key", errors, True)
    sdk.track(user_id="u-1", event="Clicked")
    sdk.flush()
    sdk.shutdown()
    assert [e.status for e in errors] == [401]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 0


def test_module_level_clients(engine: sa.Engine, live_server: str, write_key: str) -> None:
    """The documented set-up: module attributes ``write_key`` and ``host`` / ``dataPlaneUrl``."""
    import rudderstack.analytics as rudder_analytics
    import segment.analytics as segment_analytics

    saved = (segment_analytics.write_key, segment_analytics.host)
    saved_rudder = (rudder_analytics.write_key, rudder_analytics.dataPlaneUrl)
    try:
        segment_analytics.write_key, segment_analytics.host = write_key, live_server
        segment_analytics.track("seg-user", "Signed Up", {"plan": "free"})
        segment_analytics.flush()
        rudder_analytics.write_key, rudder_analytics.dataPlaneUrl = write_key, live_server
        rudder_analytics.track("rud-user", "Signed Up", {"plan": "pro"})
        rudder_analytics.flush()
    finally:
        for module in (segment_analytics, rudder_analytics):
            if module.default_client is not None:
                module.default_client.join()
            module.default_client = None
        segment_analytics.write_key, segment_analytics.host = saved
        rudder_analytics.write_key, rudder_analytics.dataPlaneUrl = saved_rudder
    with engine.connect() as conn:
        got = dict(
            conn.execute(
                sa.select(identities.c.value, events.c.properties).join(
                    events, events.c.customer_id == identities.c.customer_id
                )
            ).all()
        )
    assert got == {"seg-user": {"plan": "free"}, "rud-user": {"plan": "pro"}}
