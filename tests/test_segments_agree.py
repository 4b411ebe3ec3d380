"""The SQL compiler and the in-memory evaluator agree, on SQLite and on PostgreSQL.

Hypothesis builds a small store (customers with attributes, traits of every JSON type,
computed fields, events with properties spread over days, consents, RFM cells, lifecycle
stages, memberships, loyalty accounts and point lots expiring around the window bounds)
and random rule trees, and checks that ``member_ids`` (SQL) and
``evaluate`` (Python) return the same customers. ``now`` is drawn around day and year
boundaries and a leap day, where the two would most easily disagree.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from rapport.segments.compiler import member_ids
from rapport.segments.evaluator import evaluate
from rapport.segments.lifecycle import STAGES
from rapport.segments.rfm import CELLS
from rapport.segments.rules import parse_rule
from rapport.store.engine import writing
from rapport.store.tables import customers, loyalty_accounts, loyalty_lots
from tests.test_segments_store import (
    add_customer,
    add_events,
    add_member,
    add_segment,
    set_consent,
    wipe,
)

NOWS = [
    datetime(2026, 3, 1, 0, 30, tzinfo=UTC),
    datetime(2025, 12, 30, 23, 45, tzinfo=UTC),
    datetime(2028, 2, 28, 12, 0, tzinfo=UTC),
    datetime(2027, 2, 28, 18, 0, tzinfo=UTC),
]
EVENTS = ["Product Viewed", "Order Completed", "Message Opened", "Message Clicked"]
CITIES = ["Kazan", "Moscow", "kazan", "Omsk", "Ёлки"]
PLANS = ["gold", "silver", "Gold", "gold-plus"]
CATEGORIES = ["shoes", "bags", "hats"]
CAMPAIGNS = ["c1", "c2"]
CHANNELS = ["email", "sms"]
TIERS = ["Silver", "Gold", "gold"]
SEGMENTS = 2

days = st.integers(min_value=0, max_value=45)
moment = st.tuples(days, st.integers(0, 23 * 60 + 59))  # days back, minute of the day
# When a lot expires, from now: hours either side, and exactly on the window bounds.
EXPIRY_DAYS = [1, 7, 30]
expiry = st.one_of(
    st.none(),
    st.integers(-48, 40 * 24).map(lambda h: timedelta(hours=h)),
    st.sampled_from([0, *EXPIRY_DAYS]).map(lambda d: timedelta(days=d)),
)
lot = st.tuples(st.sampled_from(["active", "active", "pending"]), st.integers(0, 120), expiry)
loyalty = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "balance": st.sampled_from([0, 1, 99, 100, 250]),
            "pending": st.sampled_from([0, 5]),
            "tier": st.one_of(st.none(), st.sampled_from(TIERS)),
            "lots": st.lists(lot, max_size=4),
        }
    ),
)


def _json_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.sampled_from(PLANS),
        st.integers(-5, 5),
        st.floats(-5, 5, allow_nan=False, width=32).map(lambda f: round(f, 2)),
        st.booleans(),
        st.sampled_from(["2026-02-27", "1990-03-01", "2025-12-31T10:00:00Z", "1992-02-29", "x"]),
        st.just(["gold"]),
    )


customer = st.fixed_dictionaries(
    {
        "city": st.one_of(st.none(), st.sampled_from(CITIES)),
        "birthday": st.one_of(st.none(), st.dates(date(1960, 1, 1), date(2010, 12, 31))),
        "birthday_near": st.one_of(st.none(), st.integers(-3, 10)),
        "created_back": days,
        "traits": st.dictionaries(
            st.sampled_from(["plan", "score", "since", "vip"]), _json_value(), max_size=3
        ),
        "nested": st.one_of(st.none(), st.sampled_from(PLANS), st.integers(0, 3)),
        "orders": st.integers(0, 4),
        "revenue": st.sampled_from([0.0, 99.5, 100.0, 250.25, 1000.0]),
        "last_order": st.one_of(st.none(), moment),
        "rfm": st.one_of(st.none(), st.sampled_from(sorted(CELLS))),
        "score": st.one_of(st.none(), st.integers(1, 5)),
        "stage": st.one_of(st.none(), st.sampled_from(STAGES)),
        "gone": st.sampled_from([None, None, None, None, "merged", "erased"]),
        "consents": st.dictionaries(
            st.sampled_from(CHANNELS), st.sampled_from(["subscribed", "unsubscribed"])
        ),
        "segments": st.dictionaries(st.integers(1, SEGMENTS), st.booleans()),
        "events": st.lists(
            st.tuples(
                st.sampled_from(EVENTS),
                moment,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "category": st.sampled_from(CATEGORIES),
                        "price": st.integers(0, 300),
                        "campaign_id": st.sampled_from(CAMPAIGNS),
                    },
                ),
            ),
            max_size=6,
        ),
        "loyalty": loyalty,
    }
)


# ---------------------------------------------------------------- rules


def _attribute() -> st.SearchStrategy[dict[str, Any]]:
    string_ops = st.one_of(
        st.tuples(st.sampled_from(["eq", "ne", "lt", "ge"]), st.sampled_from(CITIES)),
        st.tuples(st.sampled_from(["in", "not_in"]), st.lists(st.sampled_from(CITIES), min_size=1)),
        st.tuples(st.sampled_from(["contains", "starts_with"]), st.sampled_from(["az", "K", "Ё"])),
        st.tuples(st.just("exists"), st.none()),
    )
    city = string_ops.map(lambda t: {"attribute": "city", "op": t[0], "value": t[1]})
    relative = st.tuples(
        st.sampled_from(["within_last", "within_next", "more_than_days_ago", "anniversary_within"]),
        st.integers(0, 40),
    )
    birthday = st.one_of(
        relative,
        st.tuples(st.sampled_from(["lt", "ge"]), st.sampled_from(["1980-01-01", "1992-02-29"])),
    ).map(lambda t: {"attribute": "birthday", "op": t[0], "value": t[1]})
    created = relative.map(lambda t: {"attribute": "created_at", "op": t[0], "value": t[1]})
    trait_name = st.sampled_from(["traits.plan", "traits.score", "traits.since", "traits.vip"])
    trait_op = st.one_of(
        st.tuples(
            st.sampled_from(["eq", "ne"]),
            st.one_of(st.sampled_from(PLANS), st.integers(-5, 5), st.booleans()),
        ),
        st.tuples(
            st.sampled_from(["lt", "le", "gt", "ge"]),
            st.one_of(st.sampled_from(PLANS), st.integers(-5, 5), st.just(1.5)),
        ),
        st.tuples(
            st.just("in"),
            st.one_of(
                st.lists(st.sampled_from(PLANS), min_size=1),
                st.lists(st.integers(-5, 5), min_size=1),
            ),
        ),
        st.tuples(st.just("between"), st.sampled_from([[-1, 2], ["gold", "silver"], [0.5, 4]])),
        st.tuples(
            st.sampled_from(["contains", "starts_with"]), st.sampled_from(["old", "gold", "2026"])
        ),
        st.tuples(st.sampled_from(["exists", "is_true", "is_false"]), st.none()),
        relative,
    )
    trait = st.tuples(trait_name, trait_op).map(
        lambda t: {"attribute": t[0], "op": t[1][0], "value": t[1][1]}
    )
    nested = st.sampled_from(PLANS).map(
        lambda v: {"attribute": "traits.a.b", "op": "eq", "value": v}
    )
    return st.one_of(city, birthday, created, trait, nested).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def _computed() -> st.SearchStrategy[dict[str, Any]]:
    numbers = st.tuples(
        st.sampled_from(
            ["orders_count", "revenue", "average_check", "rfm_recency", "events_count"]
        ),
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
        st.sampled_from([0, 1, 2, 3, 50, 99.5, 100]),
    )
    since = st.tuples(
        st.sampled_from(["days_since_last_order", "days_since_created"]),
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
        st.integers(0, 40),
    )
    dated = st.tuples(
        st.sampled_from(["last_order_at", "last_seen_at"]),
        st.sampled_from(["within_last", "more_than_days_ago", "anniversary_within"]),
        st.integers(0, 30),
    )
    return st.one_of(numbers, since, dated).map(
        lambda t: {"computed": t[0], "op": t[1], "value": t[2]}
    )


def _event() -> st.SearchStrategy[dict[str, Any]]:
    where = st.lists(
        st.one_of(
            st.sampled_from(CATEGORIES).map(
                lambda v: {"property": "category", "op": "eq", "value": v}
            ),
            st.integers(0, 300).map(lambda v: {"property": "price", "op": "ge", "value": v}),
            st.just({"property": "campaign_id", "op": "exists"}),
            st.just({"property": "category", "op": "ne", "value": "hats"}),
        ),
        max_size=2,
    )
    times = st.one_of(
        st.none(),
        st.builds(
            lambda k, n: {k: n},
            st.sampled_from(["at_least", "at_most", "exactly"]),
            st.integers(0, 3),
        ),
    )
    window = st.one_of(st.none(), st.integers(0, 40))
    counted = st.builds(
        lambda name, w, t, d: {"event": name, "where": w, "times": t, "within_last": d},
        st.sampled_from(EVENTS),
        where,
        times,
        window,
    )
    quiet = st.builds(
        lambda name, w, d: {"event": name, "where": w, "not_for_days": d},
        st.sampled_from(EVENTS),
        where,
        st.integers(0, 40),
    )
    last = st.builds(
        lambda name, w, last: {"event": name, "where": w, "last": last},
        st.sampled_from(EVENTS),
        where,
        st.one_of(
            st.builds(
                lambda k, d: {k: d},
                st.sampled_from(["more_than_days_ago", "within_last"]),
                st.integers(0, 40),
            ),
            st.builds(
                lambda k, d: {k: d},
                st.sampled_from(["before", "after"]),
                st.sampled_from(["2026-02-20", "2025-12-25", "2028-02-20"]),
            ),
        ),
    )
    message = st.builds(
        lambda outcome, campaign, d: {
            "message": outcome,
            "campaign_id": campaign,
            "within_last": d,
        },
        st.sampled_from(["opened", "clicked"]),
        st.one_of(st.none(), st.sampled_from(CAMPAIGNS)),
        window,
    )
    return st.one_of(counted, quiet, last, message).map(
        lambda d: {k: v for k, v in d.items() if v not in (None, [])}
    )


def _profile() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda c, s: {"consent": c, "status": s},
            st.sampled_from(CHANNELS),
            st.sampled_from(["subscribed", "unsubscribed"]),
        ),
        st.integers(1, SEGMENTS).map(lambda s: {"segment": s}),
        st.lists(st.sampled_from(sorted(CELLS)), min_size=1, max_size=3).map(
            lambda c: {"rfm_cell": c}
        ),
        st.lists(st.sampled_from(STAGES), min_size=1, max_size=3).map(
            lambda s: {"lifecycle_stage": s}
        ),
        st.builds(
            lambda a, w, salt: {"bucket": [a, a + w], "salt": salt},
            st.integers(0, 60),
            st.integers(0, 39),
            st.sampled_from(["", "holdout"]),
        ),
    )


def _loyalty() -> st.SearchStrategy[dict[str, Any]]:
    tier = st.one_of(
        st.tuples(st.sampled_from(["eq", "ne"]), st.sampled_from(TIERS)),
        st.tuples(st.sampled_from(["in", "not_in"]), st.lists(st.sampled_from(TIERS), min_size=1)),
        st.tuples(st.just("exists"), st.none()),
    ).map(lambda t: {"loyalty": "tier", "op": t[0], "value": t[1]})
    points = st.builds(
        lambda name, op, value: {"loyalty": name, "op": op, "value": value},
        st.sampled_from(["balance", "pending"]),
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
        st.sampled_from([0, 1, 5, 99.5, 100]),
    )
    spread = st.sampled_from([[0, 0], [1, 100], [5, 250]]).map(
        lambda v: {"loyalty": "balance", "op": "between", "value": v}
    )
    expiring = st.builds(
        lambda d, x: {"loyalty": "points_expiring", "within_days": d, "at_least": x},
        st.sampled_from(EXPIRY_DAYS),
        st.one_of(st.none(), st.sampled_from([1, 50, 120])),
    )
    return st.one_of(tier, points, spread, expiring).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


leaf = st.one_of(_attribute(), _computed(), _event(), _profile(), _loyalty())
rules = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


# ---------------------------------------------------------------- the store


def _store(engine: sa.Engine, now: datetime, people: list[dict[str, Any]]) -> list[int]:
    def back(m: tuple[int, int]) -> datetime:
        d, minute = m
        midnight = datetime.combine(now.date() - timedelta(days=d), datetime.min.time(), UTC)
        return midnight + timedelta(minutes=minute)

    ids: list[int] = []
    with writing(engine) as conn:
        wipe(conn)
        for table in (loyalty_lots, loyalty_accounts):
            conn.execute(table.delete())
        for s in range(1, SEGMENTS + 1):
            assert add_segment(conn, f"s{s}") is not None
        seg_ids = [
            int(i) for i in conn.exec_driver_sql("SELECT id FROM segments ORDER BY id").scalars()
        ]
        for p in people:
            birthday = p["birthday"]
            if birthday is not None and p["birthday_near"] is not None:
                near = now.date() + timedelta(days=p["birthday_near"])
                birthday = (
                    date(1988, near.month, near.day)
                    if (near.month, near.day) != (2, 29)
                    else date(1988, 2, 29)
                )
            traits = dict(p["traits"])
            if p["nested"] is not None:
                traits["a"] = {"b": p["nested"]}
            last = back(p["last_order"]) if p["last_order"] else None
            cid = add_customer(
                conn,
                city=p["city"],
                birthday=birthday,
                created_at=now - timedelta(days=p["created_back"], hours=3),
                traits=traits,
                orders_count=p["orders"] if last else 0,
                revenue=p["revenue"] if last else 0.0,
                last_order_at=last,
                first_order_at=last,
                rfm_cell=p["rfm"],
                rfm_recency=p["score"],
                lifecycle_stage=p["stage"],
                erased_at=now if p["gone"] == "erased" else None,
            )
            if p["gone"] == "merged" and ids:
                conn.execute(
                    customers.update().where(customers.c.id == cid).values(merged_into=ids[0])
                )
            ids.append(cid)
            if p["events"]:
                add_events(conn, cid, [(name, back(m), props) for name, m, props in p["events"]])
                latest = max(back(m) for _, m, _ in p["events"])
                conn.execute(
                    customers.update()
                    .where(customers.c.id == cid)
                    .values(events_count=len(p["events"]), last_seen_at=latest)
                )
            for channel, status in p["consents"].items():
                set_consent(conn, cid, channel, status)
            for s, left in p["segments"].items():
                add_member(conn, seg_ids[s - 1], cid, left=left)
            if p["loyalty"] is not None:
                _add_loyalty(conn, cid, now, p["loyalty"])
    return ids


def _add_loyalty(conn: sa.Connection, cid: int, now: datetime, data: dict[str, Any]) -> None:
    """The account row and lots as the ledger leaves them (the evaluators read only these)."""
    conn.execute(
        loyalty_accounts.insert().values(
            customer_id=cid,
            balance=data["balance"],
            pending=data["pending"],
            tier=data["tier"],
            updated_at=now,
        )
    )
    for i, (status, remaining, ahead) in enumerate(data["lots"]):
        conn.execute(
            loyalty_lots.insert().values(
                customer_id=cid,
                entry_id=i + 1,
                points=max(remaining, 1),
                remaining=remaining,
                status=status,
                activates_at=now + timedelta(days=1) if status == "pending" else None,
                expires_at=None if ahead is None else now + ahead,
                created_at=now,
            )
        )


def _remap_segments(rule: Any, seg_ids: list[int]) -> Any:
    if isinstance(rule, dict):
        return {
            k: (seg_ids[v - 1] if k == "segment" else _remap_segments(v, seg_ids))
            for k, v in rule.items()
        }
    if isinstance(rule, list):
        return [_remap_segments(v, seg_ids) for v in rule]
    return rule


@settings(
    max_examples=int(os.environ.get("SEGMENTS_AGREE_EXAMPLES", "40")),
    derandomize=os.environ.get("SEGMENTS_AGREE_EXAMPLES") is None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    now=st.sampled_from(NOWS),
    people=st.lists(customer, min_size=1, max_size=8),
    trees=st.lists(rules, min_size=1, max_size=6),
)
def test_sql_and_memory_agree(
    engine: sa.Engine, now: datetime, people: list[dict[str, Any]], trees: list[Any]
) -> None:
    ids = _store(engine, now, people)
    with engine.connect() as conn:
        seg_ids = [
            int(i) for i in conn.exec_driver_sql("SELECT id FROM segments ORDER BY id").scalars()
        ]
        for tree in trees:
            rule = parse_rule(_remap_segments(tree, seg_ids))
            by_sql = set(member_ids(conn, rule, now))
            in_memory = evaluate(conn, rule, ids, now)
            assert by_sql == in_memory, (rule.to_json(), sorted(by_sql), sorted(in_memory))
            event("no members" if not by_sql else "some members")
