"""Coupons at the checkout: discounts, every refusal, categories, expiry, issue, release,
personal discounts, bulk generation; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.catalog.products import upsert_categories
from rapport.errors import InvalidInput
from rapport.loyalty.coupons import (
    CouponError,
    CouponRefused,
    clear_personal_discount,
    code_status,
    consume,
    customer_coupons,
    issue,
    parse_settings,
    personal_discount,
    quote,
    release,
    set_personal_discount,
)
from rapport.loyalty.coupons.codes import ALPHABET, generate_codes
from rapport.loyalty.coupons.store import Series, create_series, set_paused, update_series
from rapport.loyalty.order import CheckoutOrder, Line
from rapport.store.engine import writing
from rapport.store.tables import coupon_codes, coupon_redemptions
from tests.conftest import T0
from tests.shop_helpers import add_customer

# --- helpers shared by the other coupon tests ---------------------------------------


def catalog(engine: sa.Engine) -> None:
    """shoes > sneakers > running; bags; sale (under shoes)."""
    with writing(engine) as conn:
        upsert_categories(
            conn,
            [
                {"id": "shoes"},
                {"id": "sneakers", "parent_id": "shoes"},
                {"id": "running", "parent_id": "sneakers"},
                {"id": "sale", "parent_id": "shoes"},
                {"id": "bags"},
            ],
        )


def make_series(engine: sa.Engine, name: str = "welcome", **settings: Any) -> Series:
    data = {"name": name, "kind": "percent", "value": 10, **settings}
    with writing(engine) as conn:
        return create_series(conn, parse_settings(data), T0)


def order(customer_id: int, *lines: tuple[str | None, float, int], order_id: str | None = None):  # type: ignore[no-untyped-def]
    return CheckoutOrder(
        customer_id=customer_id,
        lines=tuple(
            Line(f"p{i}", category, price, qty) for i, (category, price, qty) in enumerate(lines)
        ),
        order_id=order_id,
    )


def issue_to(engine: sa.Engine, customer_id: int, series: str, key: str, at=T0) -> str:  # type: ignore[no-untyped-def]
    with writing(engine) as conn:
        code, _ = issue(conn, customer_id, series, key, at)
    return code


def quote_of(engine: sa.Engine, code: str, checkout: CheckoutOrder, at=T0):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return quote(conn, code, checkout, at)


def consume_of(engine: sa.Engine, code: str, checkout: CheckoutOrder, key: str, at=T0):  # type: ignore[no-untyped-def]
    with writing(engine) as conn:
        return consume(conn, code, checkout, key, at)


def refusal(engine: sa.Engine, code: str, checkout: CheckoutOrder, at=T0) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CouponRefused) as caught:
        quote_of(engine, code, checkout, at)
    return caught.value.reason


def uses_of(engine: sa.Engine, code: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(coupon_codes.c.uses).where(coupon_codes.c.code == code)
            ).scalar_one()
        )


# --- discounts ----------------------------------------------------------------------


def test_percent_discount_on_every_line(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "summer", codes="shared", shared_code="summer10", max_uses=None)
    checkout = order(cid, (None, 120.50, 2), ("x", 59.99, 1))
    got = quote_of(engine, " summer10 ", checkout)
    assert got.code == "SUMMER10" and got.series == "summer" and got.kind == "percent"
    assert got.eligible_amount == pytest.approx(checkout.subtotal)
    assert got.discount == round(checkout.subtotal * 0.10, 2)


def test_percent_discount_is_capped(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "big", value=50, max_discount=100, codes="shared", shared_code="BIG50")
    assert quote_of(engine, "BIG50", order(cid, (None, 1000, 1))).discount == 100
    assert quote_of(engine, "BIG50", order(cid, (None, 150, 1))).discount == 75


def test_fixed_amount_never_exceeds_the_eligible_lines(engine: sa.Engine) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    make_series(
        engine,
        "minus300",
        kind="amount",
        value=300,
        codes="shared",
        shared_code="MINUS300",
        include_categories=["bags"],
    )
    full = quote_of(engine, "MINUS300", order(cid, ("bags", 500, 1), ("shoes", 900, 1)))
    assert (full.kind, full.discount, full.eligible_amount) == ("amount", 300, 500)
    small = quote_of(engine, "MINUS300", order(cid, ("bags", 120, 2), ("shoes", 900, 1)))
    assert (small.discount, small.eligible_amount) == (240, 240)


# --- categories, minimum, expiry ----------------------------------------------------------


def test_categories_include_their_children_and_exclusions_win(engine: sa.Engine) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    make_series(
        engine,
        "shoes",
        codes="shared",
        shared_code="SHOES20",
        value=20,
        include_categories=["shoes"],
        exclude_categories=["sale"],
    )
    got = quote_of(
        engine,
        "SHOES20",
        order(
            cid,
            ("running", 100, 1),  # grandchild of shoes: in
            ("sneakers", 50, 2),  # child: in
            ("sale", 400, 1),  # child of shoes, but excluded
            ("bags", 300, 1),  # elsewhere
            (None, 80, 1),  # no category: an include list leaves it out
        ),
    )
    assert got.eligible_amount == 200
    assert got.discount == 40
    assert refusal(engine, "SHOES20", order(cid, ("sale", 100, 1), ("bags", 10, 1))) == (
        "no line in the allowed categories"
    )


def test_exclude_only_series_keeps_uncategorised_lines(engine: sa.Engine) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    make_series(
        engine, "nosale", codes="shared", shared_code="NOSALE", exclude_categories=["shoes"]
    )
    got = quote_of(engine, "NOSALE", order(cid, ("running", 100, 1), (None, 70, 1)))
    assert got.eligible_amount == 70


def test_minimum_order_is_the_whole_subtotal(engine: sa.Engine) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    make_series(
        engine, "min", codes="shared", shared_code="MIN1000", min_subtotal=1000,
        include_categories=["bags"],
    )  # fmt: skip
    reason = refusal(engine, "MIN1000", order(cid, ("bags", 400, 2), ("shoes", 150, 1)))
    assert reason == "order below the minimum of 1000.00 (this order: 950.00)"
    got = quote_of(engine, "MIN1000", order(cid, ("bags", 400, 2), ("shoes", 200, 1)))
    assert got.eligible_amount == 800 and got.discount == 80


def test_absolute_window(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(
        engine,
        "march",
        codes="shared",
        shared_code="MARCH",
        valid_from="2026-03-05",
        valid_until="2026-03-31",  # a bare date is included
    )
    checkout = order(cid, (None, 100, 1))
    assert refusal(engine, "MARCH", checkout) == "not valid before 2026-03-05 00:00 UTC"
    last_minute = T0.replace(day=31, hour=23, minute=59)
    assert quote_of(engine, "MARCH", checkout, last_minute).discount == 10
    after = T0.replace(month=4, day=1)
    assert refusal(engine, "MARCH", checkout, after) == "expired on 2026-04-01 00:00 UTC"


def test_personal_code_ends_n_days_after_issue(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "comeback", valid_days=7)
    issued_at = T0 + timedelta(days=2)
    code = issue_to(engine, cid, "comeback", "k1", issued_at)
    checkout = order(cid, (None, 100, 1))
    assert quote_of(engine, code, checkout, issued_at + timedelta(days=6)).discount == 10
    ends = issued_at + timedelta(days=7)
    assert refusal(engine, code, checkout, ends) == f"expired on {ends:%Y-%m-%d %H:%M} UTC"


def test_n_days_never_outlive_the_series(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "short", valid_days=30, valid_until="2026-03-10")
    code = issue_to(engine, cid, "short", "k1")
    checkout = order(cid, (None, 100, 1))
    assert refusal(engine, code, checkout, T0.replace(day=11)) == "expired on 2026-03-11 00:00 UTC"


# --- refusals -----------------------------------------------------------------------


def test_unknown_and_empty_codes(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    checkout = order(cid, (None, 100, 1))
    assert refusal(engine, "nope-42", checkout) == "unknown code NOPE-42"
    assert refusal(engine, "  ", checkout) == "no code given"


def test_paused_series_refuses_and_resumes(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "promo", title="Spring promo", codes="shared", shared_code="SPRING")
    with writing(engine) as conn:
        set_paused(conn, "promo", True, T0)
    checkout = order(cid, (None, 100, 1))
    assert refusal(engine, "SPRING", checkout) == "the campaign Spring promo is paused"
    with writing(engine) as conn:
        set_paused(conn, "promo", False, T0)
    assert quote_of(engine, "SPRING", checkout).discount == 10


def test_personal_code_belongs_to_its_customer(engine: sa.Engine) -> None:
    owner, other = add_customer(engine, T0), add_customer(engine, T0)
    make_series(engine, "personal")
    code = issue_to(engine, owner, "personal", "k1")
    assert refusal(engine, code, order(other, (None, 100, 1))) == "belongs to another customer"
    assert quote_of(engine, code, order(owner, (None, 100, 1))).discount == 10


def test_single_use_code_is_used_once(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "once")
    code = issue_to(engine, cid, "once", "k1")
    consume_of(engine, code, order(cid, (None, 100, 1), order_id="o1"), "checkout-1")
    assert refusal(engine, code, order(cid, (None, 100, 1))) == "already used"
    with pytest.raises(CouponRefused, match="already used"):
        consume_of(engine, code, order(cid, (None, 100, 1)), "checkout-2")
    assert uses_of(engine, code) == 1


def test_shared_code_limits_total_and_per_customer(engine: sa.Engine) -> None:
    a, b, c = (add_customer(engine, T0) for _ in range(3))
    make_series(
        engine, "two", codes="shared", shared_code="TWO", max_uses=2, max_uses_per_customer=1
    )
    consume_of(engine, "TWO", order(a, (None, 100, 1)), "a1")
    assert refusal(engine, "TWO", order(a, (None, 100, 1))) == "already used by this customer"
    consume_of(engine, "TWO", order(b, (None, 100, 1)), "b1")
    assert refusal(engine, "TWO", order(c, (None, 100, 1))) == "used up: all 2 uses are taken"
    assert uses_of(engine, "TWO") == 2


def test_per_customer_limit_spans_the_series_codes(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    series = make_series(engine, "printed", max_uses_per_customer=2)
    with writing(engine) as conn:
        first, second, third = generate_codes(conn, series.id, series.settings, 3, T0)
    consume_of(engine, first, order(cid, (None, 100, 1)), "k1")
    consume_of(engine, second, order(cid, (None, 100, 1)), "k2")
    assert refusal(engine, third, order(cid, (None, 100, 1))) == (
        "already used 2 times by this customer, the most allowed"
    )


def test_order_without_lines(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "any", codes="shared", shared_code="ANY")
    assert refusal(engine, "ANY", order(cid)) == "the order has no lines"


# --- consume, release -----------------------------------------------------------------


def test_consume_is_idempotent_on_its_key(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "multi", codes="shared", shared_code="MULTI", max_uses=None,
                max_uses_per_customer=None)  # fmt: skip
    first = consume_of(engine, "MULTI", order(cid, (None, 100, 1), order_id="o1"), "key-1")
    again = consume_of(engine, "multi", order(cid, (None, 999, 1), order_id="o1"), "key-1")
    assert again == first
    assert uses_of(engine, "MULTI") == 1
    with pytest.raises(CouponRefused, match="already used for the code MULTI"):
        make_series(engine, "other", codes="shared", shared_code="OTHER")
        consume_of(engine, "OTHER", order(cid, (None, 100, 1)), "key-1")
    assert uses_of(engine, "OTHER") == 0


def test_a_refused_consume_leaves_the_callers_transaction_usable(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "once", codes="shared", shared_code="ONCE")
    consume_of(engine, "ONCE", order(cid, (None, 100, 1)), "k1")
    with writing(engine) as conn:
        with pytest.raises(CouponRefused):
            consume(conn, "ONCE", order(cid, (None, 100, 1)), "k2", T0)
        set_personal_discount(conn, cid, 5, T0)  # the checkout goes on and commits
    with engine.connect() as conn:
        assert personal_discount(conn, cid, T0) == 5
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(coupon_redemptions)).scalar() == 1
        )


def test_release_gives_the_use_back(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "back")
    make_series(engine, "kept", return_on_cancel=False)
    back, kept = issue_to(engine, cid, "back", "i1"), issue_to(engine, cid, "kept", "i2")
    consume_of(engine, back, order(cid, (None, 100, 1), order_id="o-7"), "c1")
    consume_of(engine, kept, order(cid, (None, 100, 1), order_id="o-7"), "c2")
    later = T0 + timedelta(hours=1)
    with writing(engine) as conn:
        assert release(conn, "o-7", later) == 1
        assert release(conn, "o-7", later) == 0  # already given back
    assert uses_of(engine, back) == 0 and uses_of(engine, kept) == 1
    assert quote_of(engine, back, order(cid, (None, 100, 1))).discount == 10
    assert refusal(engine, kept, order(cid, (None, 100, 1))) == "already used"
    with engine.connect() as conn:
        history = code_status(conn, back, later)["redemptions"]
    assert history[0]["order_id"] == "o-7" and history[0]["released_at"] == later.isoformat()


# --- issue ----------------------------------------------------------------------------


def test_issue_is_idempotent_and_returns_the_event(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "welcome", prefix="hi-", length=10, valid_days=14, min_subtotal=500)
    with writing(engine) as conn:
        code, events = issue(conn, cid, "welcome", "run-1:step-2", T0)
        again, none = issue(conn, cid, "welcome", "run-1:step-2", T0)
        other, _ = issue(conn, cid, "welcome", "run-2:step-2", T0)
    assert again == code and none == [] and other != code
    assert code.startswith("HI-") and len(code) == 13
    assert set(code[3:]) <= set(ALPHABET)
    [(who, name, props)] = events
    assert (who, name) == (cid, "Coupon Issued")
    assert props["code"] == code and props["series"] == "welcome" and props["min_subtotal"] == 500
    assert props["expires_at"] == (T0 + timedelta(days=14)).isoformat()


def test_issue_refusals(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "shared", codes="shared", shared_code="SHARED")
    make_series(engine, "paused")
    make_series(engine, "ended", valid_until="2026-02-01")
    with writing(engine) as conn:
        set_paused(conn, "paused", True, T0)
    cases = [
        (cid, "nope", 404, "no coupon series named 'nope'"),
        (cid, "shared", 422, "has one shared code (SHARED)"),
        (cid, "paused", 409, "is paused"),
        (cid, "ended", 409, "ended on 2026-02-02 00:00 UTC"),
        (cid + 1000, "paused", 409, "is paused"),
        (cid + 1000, "ended", 409, "ended"),
    ]
    make_series(engine, "open")
    cases.append((cid + 1000, "open", 404, f"customer {cid + 1000} does not exist"))
    for who, series, status, message in cases:
        with pytest.raises(CouponError) as caught, writing(engine) as conn:
            issue(conn, who, series, f"key-{series}-{who}", T0)
        assert caught.value.status == status and message in caught.value.message
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar() == 1


# --- the card, personal discounts -----------------------------------------------------------


def test_customer_coupons_with_status(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    make_series(engine, "a")
    make_series(engine, "b", valid_days=3)
    make_series(engine, "c", codes="shared", shared_code="SHARED-C")
    used = issue_to(engine, cid, "a", "k1")
    expiring = issue_to(engine, cid, "b", "k2")
    active = issue_to(engine, cid, "a", "k3", T0 + timedelta(minutes=1))
    consume_of(engine, used, order(cid, (None, 100, 1)), "c1")
    consume_of(engine, "SHARED-C", order(cid, (None, 100, 1)), "c2")
    with engine.connect() as conn:
        listed = customer_coupons(conn, cid, T0 + timedelta(days=5))
    status = {c["code"]: (c["status"], c["uses"], c["personal"]) for c in listed}
    assert status == {
        used: ("used", 1, True),
        expiring: ("expired", 0, True),
        active: ("active", 0, True),
        "SHARED-C": ("used", 1, False),
    }


def test_personal_discount_takes_the_largest_running_one(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    with writing(engine) as conn:
        set_personal_discount(conn, cid, 5, T0)
        set_personal_discount(
            conn, cid, 15, T0, source="scenario", valid_until=T0 + timedelta(days=7)
        )
    with engine.connect() as conn:
        assert personal_discount(conn, cid, T0) == 15
        assert personal_discount(conn, cid, T0 + timedelta(days=7)) == 5
    with writing(engine) as conn:
        assert clear_personal_discount(conn, cid, "manual") == 1
    with engine.connect() as conn:
        assert personal_discount(conn, cid, T0 + timedelta(days=8)) == 0
        assert personal_discount(conn, cid + 1, T0) == 0


def test_personal_discount_bad_input_stores_nothing(engine: sa.Engine) -> None:
    cid = add_customer(engine, T0)
    bad = [
        ({"percent": 0}, "body.percent"),
        ({"percent": 101}, "body.percent"),
        ({"percent": 10, "source": "robot"}, "body.source"),
        ({"percent": 10, "valid_until": T0}, "body.valid_until"),
    ]
    for kwargs, where in bad:
        with pytest.raises(InvalidInput) as caught, writing(engine) as conn:
            percent = kwargs.pop("percent")
            set_personal_discount(conn, cid, percent, T0, **kwargs)
        assert caught.value.problems[0].where == where
    with pytest.raises(CouponError, match="does not exist"), writing(engine) as conn:
        set_personal_discount(conn, cid + 50, 10, T0)
    with engine.connect() as conn:
        assert personal_discount(conn, cid, T0) == 0


# --- series, generation -------------------------------------------------------------------


def test_bulk_generation_is_unique(engine: sa.Engine) -> None:
    series = make_series(engine, "print", prefix="P", length=6)
    with writing(engine) as conn:
        first = generate_codes(conn, series.id, series.settings, 12_000, T0)
        second = generate_codes(conn, series.id, series.settings, 3_000, T0)
    assert len(first) == 12_000 and len(second) == 3_000
    assert len(set(first) | set(second)) == 15_000
    assert all(c.startswith("P") and len(c) == 7 and set(c[1:]) <= set(ALPHABET) for c in first)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count(sa.distinct(coupon_codes.c.code))).where(
                coupon_codes.c.series_id == series.id
            )
        ).scalar()
    assert stored == 15_000


def test_generation_refuses_guessable_codes(engine: sa.Engine) -> None:
    series = make_series(engine, "tiny", length=6)  # 31^6 / 10 000 = 88 750 codes
    with pytest.raises(CouponError, match="room for 88,750 more"), writing(engine) as conn:
        generate_codes(conn, series.id, series.settings, 100_000, T0)
    shared = make_series(engine, "shared", codes="shared", shared_code="ONE")
    with pytest.raises(CouponError, match="generate needs unique"), writing(engine) as conn:
        generate_codes(conn, shared.id, shared.settings, 10, T0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar() == 1


def test_series_settings_are_checked_field_by_field() -> None:
    cases = [
        ({"kind": "percent", "value": 120}, "series.value"),
        ({"kind": "bogus", "value": 1}, "series.kind"),
        ({"kind": "amount", "value": -1}, "series.value"),
        ({"kind": "amount", "value": 5, "max_discount": 3}, "series.max_discount"),
        ({"kind": "percent", "value": 5, "codes": "shared"}, "series.shared_code"),
        ({"kind": "percent", "value": 5, "shared_code": "ABC"}, "series.shared_code"),
        ({"kind": "percent", "value": 5, "length": 3}, "series.length"),
        ({"kind": "percent", "value": 5, "prefix": "bad prefix"}, "series.prefix"),
        (
            {
                "kind": "percent",
                "value": 5,
                "valid_from": "2026-03-02",
                "valid_until": "2026-03-01",
            },
            "series.valid_until",
        ),
        (
            {
                "kind": "percent",
                "value": 5,
                "include_categories": ["a"],
                "exclude_categories": ["a"],
            },
            "series.exclude_categories",
        ),
        ({"kind": "percent", "value": 5, "surprise": 1}, "series.surprise"),
        ({"kind": "percent", "value": 5, "max_uses": 0}, "series.max_uses"),
    ]
    for extra, where in cases:
        with pytest.raises(InvalidInput) as caught:
            parse_settings({"name": "s", **extra})
        assert [p.where for p in caught.value.problems] == [where], extra
    with pytest.raises(InvalidInput) as caught:
        parse_settings({"name": "Bad Name", "kind": "percent", "value": 1})
    assert caught.value.problems[0].where == "series.name"


def test_series_update_checks_the_whole_and_keeps_codes_consistent(engine: sa.Engine) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    make_series(engine, "promo", codes="shared", shared_code="OLD")
    make_series(engine, "taken", codes="shared", shared_code="TAKEN")
    with writing(engine) as conn:
        changed = update_series(conn, "promo", {"value": 15, "shared_code": "NEW"}, T0)
    assert changed.settings.value == 15
    assert refusal(engine, "OLD", order(cid, (None, 100, 1))) == "unknown code OLD"
    assert quote_of(engine, "new", order(cid, (None, 100, 1))).discount == 15
    bad = [
        ({"value": 500}, InvalidInput, "body.value"),
        ({"name": "renamed"}, InvalidInput, "body.name"),
        ({"codes": "unique", "shared_code": None}, InvalidInput, "body.codes"),
        ({"include_categories": ["shoes", "hats"]}, InvalidInput, "body.include_categories[1]"),
        ({"shared_code": "TAKEN"}, CouponError, "already exists (series taken)"),
    ]
    for changes, error, where in bad:
        with pytest.raises(error) as caught, writing(engine) as conn:
            update_series(conn, "promo", changes, T0)
        text = caught.value.problems[0].where if error is InvalidInput else str(caught.value)
        assert where in text, changes
    assert quote_of(engine, "NEW", order(cid, (None, 100, 1))).discount == 15
