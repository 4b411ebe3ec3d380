"""Each condition type against hand-checked expectations, on both stores (SQL and memory)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from rapport.segments.bucket import bucket_of
from rapport.segments.dependencies import dependencies
from rapport.segments.rules import parse_rule
from rapport.store.engine import writing
from tests.conftest import T0
from tests.test_segments_store import (
    add_customer,
    add_events,
    add_member,
    add_segment,
    both,
    set_consent,
)

DAY = timedelta(days=1)


def test_attributes_and_traits(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        ann = add_customer(
            conn,
            city="Kazan",
            email="ann@example.com",
            traits={"plan": "gold", "score": 7, "vip": True},
        )
        bob = add_customer(
            conn, city="Moscow", traits={"plan": "silver", "score": "7", "vip": False}
        )
        eve = add_customer(conn, traits={"a": {"b": "deep"}})
    assert both(engine, {"attribute": "city", "op": "eq", "value": "Kazan"}) == {ann}
    assert both(engine, {"attribute": "city", "op": "ne", "value": "Kazan"}) == {bob, eve}
    assert both(engine, {"attribute": "city", "op": "in", "value": ["Kazan", "Moscow"]}) == {
        ann,
        bob,
    }
    assert both(engine, {"attribute": "city", "op": "not_in", "value": ["Kazan"]}) == {bob, eve}
    assert both(engine, {"attribute": "city", "op": "lt", "value": "L"}) == {ann}
    assert both(engine, {"attribute": "city", "op": "between", "value": ["A", "Z"]}) == {ann, bob}
    assert both(engine, {"attribute": "email", "op": "contains", "value": "@example."}) == {ann}
    assert both(engine, {"attribute": "city", "op": "starts_with", "value": "Mos"}) == {bob}
    assert both(engine, {"attribute": "city", "op": "exists"}) == {ann, bob}
    # A trait compares only with a value of its JSON type: "7" is not 7.
    assert both(engine, {"attribute": "traits.score", "op": "ge", "value": 7}) == {ann}
    assert both(engine, {"attribute": "traits.score", "op": "eq", "value": "7"}) == {bob}
    assert both(engine, {"attribute": "traits.plan", "op": "in", "value": ["gold", "bronze"]}) == {
        ann
    }
    assert both(engine, {"attribute": "traits.vip", "op": "is_true"}) == {ann}
    assert both(engine, {"attribute": "traits.vip", "op": "is_false"}) == {bob}
    assert both(engine, {"not": {"attribute": "traits.vip", "op": "is_true"}}) == {bob, eve}
    assert both(engine, {"attribute": "traits.a.b", "op": "eq", "value": "deep"}) == {eve}
    assert both(engine, {"attribute": "traits.plan", "op": "exists"}) == {ann, bob}


def test_relative_dates_and_birthdays(engine: sa.Engine) -> None:
    # T0 is 2026-03-01, 12:00 UTC; 2026 has no 29 February.
    with writing(engine) as conn:
        leap = add_customer(conn, birthday=date(1992, 2, 29))
        march = add_customer(conn, birthday=date(1990, 3, 7))
        past = add_customer(conn, birthday=date(1990, 2, 27))
        new = add_customer(conn, created_at=T0 - timedelta(days=2), traits={"since": "2026-02-27"})
    everyone = {leap, march, past, new}
    assert both(engine, {"attribute": "birthday", "op": "anniversary_within", "value": 6}) == {
        march
    }
    assert both(engine, {"attribute": "birthday", "op": "anniversary_within", "value": 5}) == set()
    # 29 February is celebrated on 28 February in common years (27 Feb + 1 day holds it).
    assert both(
        engine, {"attribute": "birthday", "op": "anniversary_within", "value": 1}, T0 - 2 * DAY
    ) == {leap, past}
    assert both(
        engine, {"attribute": "birthday", "op": "anniversary_within", "value": 0}, T0 - DAY
    ) == {leap}
    assert both(engine, {"attribute": "created_at", "op": "within_last", "value": 2}) == {new}
    assert both(
        engine, {"attribute": "created_at", "op": "more_than_days_ago", "value": 2}
    ) == everyone - {new}
    assert both(engine, {"attribute": "traits.since", "op": "within_last", "value": 2}) == {new}
    assert both(engine, {"attribute": "traits.since", "op": "within_last", "value": 1}) == set()
    assert both(engine, {"attribute": "birthday", "op": "lt", "value": "1991-01-01"}) == {
        march,
        past,
    }


def test_birthday_window_wraps_the_year(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        jan = add_customer(conn, birthday=date(1985, 1, 2))
        add_customer(conn, birthday=date(1985, 1, 5))
    now = datetime(2025, 12, 30, 9, 0, tzinfo=UTC)
    assert both(engine, {"attribute": "birthday", "op": "anniversary_within", "value": 3}, now) == {
        jan
    }


def test_computed_fields(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        vip = add_customer(
            conn, orders_count=4, revenue=1000.0, last_order_at=T0 - timedelta(days=30, hours=1)
        )
        one = add_customer(
            conn, orders_count=1, revenue=90.0, last_order_at=T0 - timedelta(days=29, hours=23)
        )
        none = add_customer(conn)
    assert both(engine, {"computed": "revenue", "op": "ge", "value": 1000}) == {vip}
    assert both(engine, {"computed": "average_check", "op": "ge", "value": 250}) == {vip}
    assert both(engine, {"computed": "average_check", "op": "lt", "value": 250}) == {one}
    assert both(engine, {"computed": "orders_count", "op": "eq", "value": 0}) == {none}
    # Whole days since, rounded down, as the card shows: 30 days 1 hour is 30, 29 d 23 h is 29.
    assert both(engine, {"computed": "days_since_last_order", "op": "ge", "value": 30}) == {vip}
    assert both(engine, {"computed": "days_since_last_order", "op": "eq", "value": 29}) == {one}
    assert both(engine, {"computed": "days_since_last_order", "op": "lt", "value": 30}) == {one}
    assert both(engine, {"computed": "last_order_at", "op": "within_last", "value": 30}) == {one}


def test_events_counts_windows_and_filters(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        a = add_customer(conn)
        add_events(
            conn,
            a,
            [
                ("Product Viewed", T0 - timedelta(hours=1), {"category": "shoes"}),
                ("Product Viewed", T0 - 7 * DAY, {"category": "shoes"}),
                ("Product Viewed", T0 - 8 * DAY, {"category": "hats"}),
            ],
        )
        b = add_customer(conn)
        add_events(conn, b, [("Product Viewed", T0 - 40 * DAY, {"category": "shoes"})])
        c = add_customer(conn)
    shoes = [{"property": "category", "op": "eq", "value": "shoes"}]
    assert both(
        engine, {"event": "Product Viewed", "times": {"at_least": 2}, "within_last": 7}
    ) == {a}
    # A 7-day window starts at midnight UTC seven days back: the day-8 view is outside.
    assert both(engine, {"event": "Product Viewed", "times": {"exactly": 2}, "within_last": 7}) == {
        a
    }
    assert both(
        engine,
        {"event": "Product Viewed", "where": shoes, "times": {"at_least": 2}, "within_last": 7},
    ) == {a}
    assert (
        both(engine, {"event": "Product Viewed", "where": shoes, "times": {"exactly": 3}}) == set()
    )
    assert both(engine, {"event": "Product Viewed", "where": shoes}) == {a, b}
    assert both(engine, {"event": "Product Viewed", "times": {"at_most": 1}}) == {b, c}
    assert both(engine, {"event": "Product Viewed", "not_for_days": 30}) == {b, c}
    assert both(engine, {"event": "Product Viewed", "last": {"more_than_days_ago": 30}}) == {b}
    assert both(engine, {"event": "Product Viewed", "last": {"before": "2026-02-01"}}) == {b}
    assert both(engine, {"event": "Product Viewed", "last": {"after": "2026-02-27"}}) == {a}
    assert both(
        engine,
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": "hats"}],
            "last": {"within_last": 8},
        },
    ) == {a}


def test_message_outcomes(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        opened = add_customer(conn)
        add_events(
            conn,
            opened,
            [("Message Opened", T0 - DAY, {"campaign_id": "spring", "channel": "email"})],
        )
        clicked = add_customer(conn)
        add_events(
            conn,
            clicked,
            [
                ("Message Opened", T0 - DAY, {"campaign_id": "spring", "channel": "email"}),
                ("Message Clicked", T0 - DAY, {"campaign_id": "spring", "channel": "email"}),
            ],
        )
    rule = {
        "all": [
            {"message": "opened", "campaign_id": "spring", "within_last": 3},
            {"not": {"message": "clicked", "campaign_id": "spring", "within_last": 3}},
        ]
    }
    assert both(engine, rule) == {opened}
    assert both(engine, {"message": "opened", "campaign_id": "autumn"}) == set()
    assert dependencies(parse_rule(rule)).events == {"Message Opened", "Message Clicked"}


def test_consent_segments_rfm_lifecycle(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        a = add_customer(conn, rfm_cell="champions", rfm_recency=5, lifecycle_stage="active")
        b = add_customer(conn, rfm_cell="lost", rfm_recency=1, lifecycle_stage="lapsed")
        set_consent(conn, a, "email", "subscribed")
        set_consent(conn, b, "email", "unsubscribed")
        seg = add_segment(conn, "vip")
        add_member(conn, seg, a)
        add_member(conn, seg, b, left=True)
    assert both(engine, {"consent": "email"}) == {a}
    assert both(engine, {"consent": "email", "status": "unsubscribed"}) == {b}
    assert both(engine, {"segment": seg}) == {a}
    assert both(engine, {"rfm_cell": ["champions", "loyal"]}) == {a}
    assert both(engine, {"computed": "rfm_recency", "op": "le", "value": 2}) == {b}
    assert both(engine, {"lifecycle_stage": "lapsed"}) == {b}


def test_random_bucket_is_stable_and_spread(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        ids = [add_customer(conn) for _ in range(200)]
    members = both(engine, {"bucket": [0, 9], "salt": "holdout"})
    assert members == {i for i in ids if bucket_of(i, "holdout") <= 9}
    assert 5 <= len(members) <= 40
    counts = [0] * 10
    for i in range(1, 100_001):
        counts[bucket_of(i) // 10] += 1
    assert all(9_000 < n < 11_000 for n in counts)
    assert [bucket_of(i, "a") for i in range(1, 50)] != [bucket_of(i, "b") for i in range(1, 50)]


def test_dependencies() -> None:
    rule = parse_rule(
        {
            "all": [
                {"attribute": "traits.plan", "op": "eq", "value": "gold"},
                {"computed": "average_check", "op": "gt", "value": 10},
                {"event": "Product Added", "within_last": 3},
                {"event": "Product Viewed", "where": [{"property": "category", "op": "exists"}]},
                {"consent": "sms"},
                {"segment": 4},
            ]
        }
    )
    deps = dependencies(rule)
    assert deps.events == {"Product Added", "Product Viewed"}
    assert deps.counter_events == {"Product Added"}
    assert deps.logged_events == {"Product Viewed"}
    assert deps.customer_fields == {"traits", "orders_count", "revenue"}
    assert deps.traits == {"plan"}
    assert deps.consent_channels == {"sms"}
    assert deps.segments == {4}
    assert deps.time_dependent and not deps.every_event
    timeless = dependencies(parse_rule({"computed": "events_count", "op": "ge", "value": 3}))
    assert timeless.every_event and not timeless.time_dependent


def test_json_and_yaml_text_round_trip() -> None:
    text = "all:\n  - attribute: city\n    op: eq\n    value: Kazan\n  - event: Order Completed\n    not_for_days: 30\n"
    rule = parse_rule(text)
    assert rule.to_json() == {
        "all": [
            {"attribute": "city", "op": "eq", "value": "Kazan"},
            {"event": "Order Completed", "not_for_days": 30},
        ]
    }
    assert parse_rule(rule.to_json()).to_json() == rule.to_json()
    assert parse_rule('{"consent": "email"}').to_json() == {"consent": "email"}
