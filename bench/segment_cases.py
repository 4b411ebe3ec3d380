"""Twenty typical segments, each as a Rapport rule and as the pandas a data analyst would write.

The pandas side is the baseline: it answers the same question from the raw events (and the
customer attributes and consents), computing every aggregate it needs (orders, revenue,
last seen, windowed counts) itself, as a notebook or a nightly batch job over an event
export would. It follows docs/segments.md independently of Rapport's code — whole UTC days
for event windows, exact times for datetime fields, the bucket hash as documented — so
equal counts check both sides.

The frames are typed columns: event names as codes, properties already extracted (category,
campaign, order total). That favours pandas (no JSON parsing is timed), and it is said so in
the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bench.segment_fixture import CATEGORIES, CITIES, CODE, DAYS, salt_number

DAY_S = 86400
TODAY = DAYS - 1  # day index of today
HOLDOUT_SALT = "holdout-2026"
CAMPAIGN_WEEK = (TODAY - 10) // 7  # a weekly campaign sent ten days ago


@dataclass
class Frames:
    """The raw events and the customer table as pandas sees them; ``now_t`` is now."""

    ev: pd.DataFrame
    customers: pd.DataFrame
    now_t: int
    today: date


def frames(
    events: dict[str, np.ndarray],
    customers: dict[str, np.ndarray],
    cards: pd.DataFrame,
    now_t: int,
    today: date,
) -> Frames:
    """``cards`` holds what the store computed and pandas takes as given (RFM, stage)."""
    name = events["name"]
    item = events["item"]
    product = np.isin(
        name,
        [CODE[x] for x in ("Product Viewed", "Product Added", "Cart Viewed", "Checkout Started")],
    )
    filt = name == CODE["Product List Filtered"]
    msg = np.isin(name, [CODE[x] for x in ("Message Sent", "Message Opened", "Message Clicked")])
    total = np.full(len(name), np.nan)
    total[events["order_pos"]] = events["order_total"]
    ev = pd.DataFrame(
        {
            "customer": events["customer"],
            "name": name,
            "t": events["t"],
            "day": (events["t"] // DAY_S).astype(np.int16),
            "category": np.where(product, item % 8, np.where(filt, item, -1)).astype(np.int8),
            "campaign": np.where(msg, item, -1).astype(np.int16),
            "total": total,
        }
    )
    cust = pd.DataFrame(
        {
            "id": customers["id"],
            "birthday": customers["birthday"],
            "city": customers["city"],
            "consent_email": customers["consent_email"],
            "consent_sms": customers["consent_sms"],
            "consent_push": customers["consent_push"],
        }
    ).merge(cards, on="id", how="left")
    return Frames(ev, cust, now_t, today)


# ------------------------------------------------------------------------ pandas helpers


def _who(f: Frames, name: str, since_day: int | None = None) -> np.ndarray:
    ev = f.ev
    mask = ev.name.to_numpy() == CODE[name]
    if since_day is not None:
        mask &= ev.day.to_numpy() >= since_day
    return ev.customer.to_numpy()[mask]


def _at_least(f: Frames, name: str, n: int, since_day: int, extra: Any = None) -> np.ndarray:
    ev = f.ev
    mask = (ev.name.to_numpy() == CODE[name]) & (ev.day.to_numpy() >= since_day)
    if extra is not None:
        mask &= extra
    counts = pd.Series(ev.customer.to_numpy()[mask]).value_counts()
    return counts.index[counts >= n].to_numpy()


def _orders(f: Frames) -> pd.core.groupby.DataFrameGroupBy:
    ev = f.ev
    return ev[ev.name.to_numpy() == CODE["Order Completed"]].groupby("customer")


def _revenue(g: pd.core.groupby.DataFrameGroupBy) -> pd.Series:
    return g.total.sum().round(2)  # money is kept to the cent


def _bucket(ids: np.ndarray, salt: str) -> np.ndarray:
    p = 2_147_483_647
    x = (ids.astype(np.int64) % p + salt_number(salt)) % p
    x = ((x * x % p) * 48_271 + 16_807) % p
    return x % 100


def _anniversaries(today: date, days: int) -> set[int]:
    """month*100+day of the next ``days`` days; 29 February on 28 February of common years."""
    out = set()
    for k in range(days + 1):
        d = today + timedelta(days=k)
        out.add(d.month * 100 + d.day)
        leap = d.year % 4 == 0 and (d.year % 100 != 0 or d.year % 400 == 0)
        if (d.month, d.day) == (2, 28) and not leap:
            out.add(229)
    return out


def _customers_with(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


# ------------------------------------------------------------------------ the twenty


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    reads: str  # which table carries the work: customers, counters, events, consents
    rule: dict[str, Any]
    pandas: Callable[[Frames], int]


def _inactive(f: Frames) -> int:
    last = f.ev.groupby("customer").t.max()
    return int((last <= f.now_t - 30 * DAY_S).sum())


def _cart_abandoners(f: Frames) -> int:
    added = np.unique(_who(f, "Product Added", TODAY - 7))
    ordered = np.unique(_who(f, "Order Completed", TODAY - 7))
    return len(np.setdiff1d(added, ordered, assume_unique=True))


def _vip(f: Frames) -> int:
    return int((_revenue(_orders(f)) >= 250).sum())


def _repeat(f: Frames) -> int:
    return int((_orders(f).size() >= 2).sum())


def _birthday(f: Frames) -> int:
    b = f.customers.birthday.to_numpy()
    known = b[b >= 0].astype("datetime64[D]")
    md = pd.DatetimeIndex(known)
    key = md.month * 100 + md.day
    return int(np.isin(key, list(_anniversaries(f.today, 7))).sum())


def _shoes(f: Frames) -> int:
    shoes = f.ev.category.to_numpy() == CATEGORIES.index("shoes")
    return len(_at_least(f, "Product Viewed", 2, TODAY - 7, shoes))


def _opened_not_clicked(f: Frames) -> int:
    opened = np.unique(_who(f, "Message Opened", TODAY - 14))
    clicked = np.unique(_who(f, "Message Clicked", TODAY - 14))
    return len(np.setdiff1d(opened, clicked, assume_unique=True))


def _email_in_kazan(f: Frames) -> int:
    c = f.customers
    return _customers_with(
        (c.consent_email.to_numpy() == 1) & (c.city.to_numpy() == CITIES.index("Kazan"))
    )


def _rfm_best(f: Frames) -> int:
    return int(f.customers.rfm_cell.isin(["champions", "loyal"]).sum())


def _at_risk(f: Frames) -> int:
    return int((f.customers.lifecycle_stage == "at_risk").sum())


def _holdout(f: Frames) -> int:
    b = _bucket(f.customers.id.to_numpy(), HOLDOUT_SALT)
    return _customers_with((b >= 0) & (b <= 9))


def _new_buyers(f: Frames) -> int:
    first = _orders(f).t.min()
    return int(((first >= f.now_t - 30 * DAY_S) & (first <= f.now_t)).sum())


def _big_check(f: Frames) -> int:
    g = _orders(f)
    return int((_revenue(g) / g.size() >= 150).sum())


def _lapsed_regulars(f: Frames) -> int:
    g = _orders(f)
    return int(((g.size() >= 3) & (g.t.max() <= f.now_t - 90 * DAY_S)).sum())


def _browsers(f: Frames) -> int:
    viewers = _at_least(f, "Product Viewed", 5, TODAY - 30)
    adders = _who(f, "Product Added", TODAY - 30)
    buyers = _who(f, "Order Completed")
    interested = np.union1d(viewers, adders)
    return len(np.setdiff1d(interested, buyers))


def _win_back(f: Frames) -> int:
    buyers = np.unique(_who(f, "Order Completed"))
    recent = _who(f, "Order Completed", TODAY - 60)
    browsing = _who(f, "Page Viewed", TODAY - 14)
    return len(np.intersect1d(np.setdiff1d(buyers, recent), browsing))


def _reachable_elsewhere(f: Frames) -> int:
    c = f.customers
    other = (c.consent_sms.to_numpy() == 1) | (c.consent_push.to_numpy() == 1)
    return _customers_with(other & (c.consent_email.to_numpy() != 1))


def _checkout_no_order(f: Frames) -> int:
    started = _at_least(f, "Checkout Started", 2, TODAY - 30)
    ordered = _who(f, "Order Completed", TODAY - 30)
    return len(np.setdiff1d(started, ordered))


def _long_ago(f: Frames) -> int:
    last_day = _orders(f).day.max()
    return int((last_day < TODAY - 180).sum())


def _campaign_clickers(f: Frames) -> int:
    ev = f.ev
    mask = (
        (ev.name.to_numpy() == CODE["Message Clicked"])
        & (ev.campaign.to_numpy() == CAMPAIGN_WEEK)
        & (ev.day.to_numpy() >= TODAY - 30)
    )
    clicked = np.unique(ev.customer.to_numpy()[mask])
    c = f.customers
    capitals = np.isin(
        c.city.to_numpy(), [CITIES.index("Moscow"), CITIES.index("Saint Petersburg")]
    )
    b = _bucket(c.id.to_numpy(), HOLDOUT_SALT)
    chosen = c.id.to_numpy()[capitals & ~((b >= 0) & (b <= 9))]
    return len(np.intersect1d(clicked, chosen))


HOLDOUT = {"bucket": [0, 9], "salt": HOLDOUT_SALT}

CASES: list[Case] = [
    Case(
        "inactive_30d",
        "Inactive for 30 days",
        "customers",
        {"computed": "days_since_last_seen", "op": "ge", "value": 30},
        _inactive,
    ),
    Case(
        "cart_abandoners",
        "Added to cart in 7 days, no order since",
        "counters",
        {
            "all": [
                {"event": "Product Added", "within_last": 7},
                {"event": "Order Completed", "not_for_days": 7},
            ]
        },
        _cart_abandoners,
    ),
    Case(
        "vip_revenue",
        "VIP: revenue ≥ 250",
        "customers",
        {"computed": "revenue", "op": "ge", "value": 250},
        _vip,
    ),
    Case(
        "repeat_buyers",
        "Repeat buyers (2+ orders)",
        "customers",
        {"computed": "orders_count", "op": "ge", "value": 2},
        _repeat,
    ),
    Case(
        "birthday_week",
        "Birthday within 7 days",
        "customers",
        {"attribute": "birthday", "op": "anniversary_within", "value": 7},
        _birthday,
    ),
    Case(
        "viewed_shoes",
        "Viewed shoes ≥ 2 times in 7 days",
        "events",
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": "shoes"}],
            "times": {"at_least": 2},
            "within_last": 7,
        },
        _shoes,
    ),
    Case(
        "opened_not_clicked",
        "Opened, not clicked (14 days)",
        "counters",
        {
            "all": [
                {"message": "opened", "within_last": 14},
                {"not": {"message": "clicked", "within_last": 14}},
            ]
        },
        _opened_not_clicked,
    ),
    Case(
        "email_kazan",
        "Email-subscribed in Kazan",
        "consents",
        {"all": [{"consent": "email"}, {"attribute": "city", "op": "eq", "value": "Kazan"}]},
        _email_in_kazan,
    ),
    Case(
        "rfm_best",
        "RFM champions or loyal",
        "customers",
        {"rfm_cell": ["champions", "loyal"]},
        _rfm_best,
    ),
    Case(
        "at_risk",
        "Lifecycle stage: at risk",
        "customers",
        {"lifecycle_stage": "at_risk"},
        _at_risk,
    ),
    Case("holdout", "Holdout: bucket 0–9", "customers", HOLDOUT, _holdout),
    Case(
        "new_buyers",
        "First order in the last 30 days",
        "customers",
        {"computed": "first_order_at", "op": "within_last", "value": 30},
        _new_buyers,
    ),
    Case(
        "big_check",
        "Average check ≥ 150",
        "customers",
        {"computed": "average_check", "op": "ge", "value": 150},
        _big_check,
    ),
    Case(
        "lapsed_regulars",
        "3+ orders, none for 90 days",
        "customers",
        {
            "all": [
                {"computed": "orders_count", "op": "ge", "value": 3},
                {"computed": "days_since_last_order", "op": "ge", "value": 90},
            ]
        },
        _lapsed_regulars,
    ),
    Case(
        "browsers",
        "Browsing (5+ views or a cart add in 30 d), never bought",
        "counters",
        {
            "all": [
                {
                    "any": [
                        {"event": "Product Viewed", "times": {"at_least": 5}, "within_last": 30},
                        {"event": "Product Added", "within_last": 30},
                    ]
                },
                {"not": {"computed": "orders_count", "op": "ge", "value": 1}},
            ]
        },
        _browsers,
    ),
    Case(
        "win_back",
        "Bought before, not in 60 d, browsing in 14 d",
        "counters",
        {
            "all": [
                {"computed": "orders_count", "op": "ge", "value": 1},
                {"event": "Order Completed", "not_for_days": 60},
                {"event": "Page Viewed", "within_last": 14},
            ]
        },
        _win_back,
    ),
    Case(
        "reachable_elsewhere",
        "SMS or push, but no email consent",
        "consents",
        {
            "all": [
                {"any": [{"consent": "sms"}, {"consent": "push"}]},
                {"not": {"consent": "email"}},
            ]
        },
        _reachable_elsewhere,
    ),
    Case(
        "checkout_no_order",
        "2+ checkouts in 30 d, no order",
        "counters",
        {
            "all": [
                {"event": "Checkout Started", "times": {"at_least": 2}, "within_last": 30},
                {"event": "Order Completed", "not_for_days": 30},
            ]
        },
        _checkout_no_order,
    ),
    Case(
        "last_order_long_ago",
        "Last order more than 180 days ago",
        "counters",
        {"event": "Order Completed", "last": {"more_than_days_ago": 180}},
        _long_ago,
    ),
    Case(
        "campaign_clickers",
        "Clicked a campaign, in a capital, not holdout",
        "events",
        {
            "all": [
                {
                    "message": "clicked",
                    "campaign_id": f"weekly-{CAMPAIGN_WEEK:02d}",
                    "within_last": 30,
                },
                {"attribute": "city", "op": "in", "value": ["Moscow", "Saint Petersburg"]},
                {"not": HOLDOUT},
            ]
        },
        _campaign_clickers,
    ),
]

assert len(CASES) == 20
