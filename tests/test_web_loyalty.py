"""The Loyalty pages on SQLite and PostgreSQL: the programme at a glance with customers
per tier (equal to a direct count), the points outstanding (equal to the sum of every
customer's summary), the latest ledger entries linked to the cards; editing the programme
through the API's model (a bad one is a 422 naming the field, nothing stored; a good one
is what ``GET /api/loyalty/programme`` answers, audited as the person); roles that may
not edit see no button and are refused."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.loyalty.coupons import issue, parse_settings
from rapport.loyalty.coupons.store import create_series
from rapport.loyalty.points import add_points
from rapport.loyalty.programme import load_stored, parse
from rapport.loyalty.summary import loyalty_summaries
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import coupon_codes, customers, loyalty_accounts
from tests.conftest import bearer
from tests.helpers import table_counts
from tests.test_coupons import catalog
from tests.test_loyalty_support import BASE, order, send, set_programme
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    """Log in as a new person of ``role`` (forgetting the last one); the CSRF token."""
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/loyalty")


@pytest.fixture
def pipeline(web: TestClient) -> Pipeline:
    return web.app.state.pipeline  # type: ignore[attr-defined]


def shop(engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock) -> dict[str, int]:
    """Two Silver customers, one Gold, one below every tier; order points pending for 14
    days, gifts spendable at once; points expire 20 days after they become spendable."""
    set_programme(engine, clock.now(), expiry_days=20)
    people = {}
    for user, spent in (("sil", 600.0), ("sam", 800.0), ("gil", 2500.0), ("nob", 100.0)):
        people[user] = send(
            pipeline,
            "identify",
            user,
            traits={"email": f"{user}@example.com", "firstName": user.title()},
        )
        order(pipeline, user, f"o-{user}", spent)
    with writing(engine) as conn:
        add_points(conn, people["nob"], 40, "gift-nob", clock.now())
        add_points(conn, people["sil"], 15, "gift-sil", clock.now())
    return people


def _figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert found, name
    return found.group(1).strip()


def _tier_customers(html: str) -> dict[str, int]:
    return {
        name: int(n.replace(",", "").replace("\xa0", ""))
        for name, n in re.findall(
            r'<tr data-tier="([^"]+)">.*?data-figure="customers">([^<]*)<', html, re.S
        )
    }


def _number(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def test_the_programme_at_a_glance_counts_as_the_store_does(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    people = shop(engine, pipeline, clock)
    # 15 days on, before any daily run: the order points' return period has ended.
    clock.advance(timedelta(days=15))
    signed_in(web, engine, "viewer")
    page = web.get("/loyalty")
    assert page.status_code == 200
    html = page.text
    with engine.connect() as conn:
        direct = dict(
            conn.execute(
                sa.select(loyalty_accounts.c.tier, sa.func.count())
                .where(loyalty_accounts.c.tier.is_not(None))
                .group_by(loyalty_accounts.c.tier)
            ).all()
        )
        ids = conn.execute(sa.select(customers.c.id)).scalars().all()
        cards = loyalty_summaries(conn, ids, clock.now())
    assert _tier_customers(html) == {"Silver": direct["Silver"], "Gold": direct["Gold"]}
    assert direct == {"Silver": 2, "Gold": 1}
    assert _figure(html, "enabled") == "On"
    totals = {
        "balance": sum(c["balance"] for c in cards.values()),
        "pending": sum(c["pending"] for c in cards.values()),
        "expiring": sum(c["points_expiring"] for c in cards.values()),
    }
    assert totals["balance"] > 55 and totals["expiring"] > 0  # the orders' points count
    for name, value in totals.items():
        assert _number(_figure(html, name) or "0") == value, name
    text = text_of(html)
    for words in ("5% of the amount paid for goods", "up to 50% of an order", "14 days"):
        assert words in text, words
    # The latest ledger entries, newest first, linked to the cards, addresses masked.
    assert html.index(f'href="/customers/{people["sil"]}">Sil</a>') < html.index(
        f'href="/customers/{people["gil"]}">Gil</a>'
    )
    assert "s***@example.com" in html and "sil@example.com" not in html
    assert "Edit the programme" not in text
    assert 'href="/loyalty/programme"' not in html


def _post_programme(web: TestClient, token: str, text: str) -> Any:
    return web.post(
        "/loyalty/programme",
        data={"csrf_token": token, "programme": text},
        follow_redirects=False,
    )


def test_a_bad_programme_is_refused_whole_with_each_place(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now())
    token = signed_in(web, engine, "marketer")
    before = table_counts(engine)
    bad = yaml.safe_dump(
        {**BASE, "accrual_percent": 200, "tiers": [{"name": "Silver"}], "surprise": 1}
    )
    answer = _post_programme(web, token, bad)
    assert answer.status_code == 422
    text = text_of(answer.text).replace(" : ", ": ")
    assert "tiers[0].threshold: Field required" in text
    assert "accrual_percent: Input should be less than or equal to 100" in text
    assert "surprise: Extra inputs are not permitted" in text
    assert "accrual_percent: 200" in answer.text  # the text comes back to be fixed
    for broken, said in (
        ("enabled: [true", "neither JSON nor YAML"),
        ("- 1\n- 2", "a programme is a mapping of settings"),
        ("", "empty: write the programme as YAML or JSON"),
        ('{"tiers": [{"name": "A", "threshold": 5}, {"name": "B", "threshold": 3}]}', "[1]"),
    ):
        refused = _post_programme(web, token, broken)
        assert refused.status_code == 422, broken
        assert said in text_of(refused.text), (broken, text_of(refused.text))
    assert table_counts(engine) == before
    with engine.connect() as conn:
        assert load_stored(conn).version == 1


def test_a_saved_programme_is_the_apis_and_audited(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, secret_key: str
) -> None:
    token = signed_in(web, engine, "marketer")
    editor = web.get("/loyalty/programme")
    assert editor.status_code == 200 and "enabled: false" in editor.text  # the defaults
    wanted = {**BASE, "starts_at": "2026-01-01", "bonuses": {"birthday": 200}}
    saved = _post_programme(web, token, yaml.safe_dump(wanted))
    assert saved.status_code == 303 and saved.headers["location"] == "/loyalty?done=saved"
    answer = web.get("/api/loyalty/programme", headers=bearer(secret_key)).json()
    assert answer["version"] == 1
    assert answer["programme"] == parse(wanted).model_dump(mode="json")
    assert answer["programme"]["starts_at"] == "2026-01-01T00:00:00Z"
    (entry,) = audit_rows(engine, "loyalty.programme.update")
    assert (entry.actor_kind, entry.actor_name) == ("user", "marketer@example.com")
    assert entry.details["changes"]["enabled"] == [False, True]
    page = web.get("/loyalty?done=saved")
    assert "The programme was saved as version 1." in text_of(page.text)
    assert _tier_customers(page.text) == {"Silver": 0, "Gold": 0}
    # The editor shows the stored programme, which saves back unchanged as JSON too.
    again = web.get("/loyalty/programme").text
    assert "Version 1, saved" in text_of(again)
    resaved = _post_programme(web, token, json.dumps(answer["programme"]))
    assert resaved.status_code == 303
    second = web.get("/api/loyalty/programme", headers=bearer(secret_key)).json()
    assert second["version"] == 2 and second["programme"] == answer["programme"]


def test_roles_that_may_not_edit_see_no_button_and_are_refused(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    set_programme(engine, clock.now())
    for role in ("viewer", "analyst"):
        token = signed_in(web, engine, role)
        assert "/loyalty/programme" not in web.get("/loyalty").text
        assert web.get("/loyalty/programme").status_code == 403
        before = table_counts(engine)
        refused = _post_programme(web, token, yaml.safe_dump({**BASE, "enabled": False}))
        assert refused.status_code == 403, role
        assert table_counts(engine) == before
    signed_in(web, engine, "admin")
    before = table_counts(engine)
    forged = web.post("/loyalty/programme", data={"programme": "enabled: false"})
    assert forged.status_code == 403 and "The form was refused" in forged.text
    assert table_counts(engine) == before
    with engine.connect() as conn:
        assert load_stored(conn).programme.enabled is True


def test_an_empty_store_and_the_russian_page(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "viewer")
    page = text_of(web.get("/loyalty").text)
    assert "never set: orders earn nothing" in page
    assert "The programme has no tiers" in page and "No points have moved yet." in page
    web.cookies.set("rapport_lang", "ru")
    russian = text_of(web.get("/loyalty").text)
    assert "Программа" in russian and "never set" not in russian


# -- coupons -----------------------------------------------------------------------------------

WELCOME_YAML = """
name: welcome
title: Welcome 10%
kind: percent
value: 10
prefix: HI-
valid_days: 14
valid_until: 2026-06-30
include_categories: [shoes]
"""


def _create_series(web: TestClient, token: str, text: str) -> Any:
    return web.post(
        "/loyalty/coupons", data={"csrf_token": token, "series": text}, follow_redirects=False
    )


def _series_row(html: str, name: str) -> dict[str, str]:
    found = re.search(rf'<tr data-series="{name}">(.*?)</tr>', html, re.S)
    assert found, html
    return {
        k: text_of(v).strip()
        for k, v in re.findall(r'data-figure="(\w+)">(.*?)</td>', found.group(1), re.S)
    }


def test_a_series_is_created_paused_and_generated_as_the_api_would(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, secret_key: str
) -> None:
    catalog(engine)
    token = signed_in(web, engine, "marketer")
    made = _create_series(web, token, WELCOME_YAML)
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/loyalty/coupons/welcome?done=created"
    api = web.get("/api/coupons/series/welcome", headers=bearer(secret_key)).json()
    assert (api["kind"], api["value"], api["prefix"], api["valid_days"]) == (
        "percent",
        10,
        "HI-",
        14,
    )
    assert api["valid_until"] == "2026-07-01T00:00:00Z"  # a bare date is included

    paused = web.post("/loyalty/coupons/welcome/pause", data={"csrf_token": token})
    assert paused.status_code == 200 and "The series is paused" in text_of(paused.text)
    assert web.get("/api/coupons/series/welcome", headers=bearer(secret_key)).json()["paused"]
    listed = web.get("/loyalty/coupons").text
    assert _series_row(listed, "welcome")["state"] == "paused"
    assert 'action="/loyalty/coupons/welcome/resume"' in listed
    web.post("/loyalty/coupons/welcome/resume", data={"csrf_token": token})

    generated = web.post(
        "/loyalty/coupons/welcome/codes",
        data={"csrf_token": token, "count": "25"},
        follow_redirects=False,
    )
    assert generated.status_code == 303
    assert generated.headers["location"] == "/loyalty/coupons/welcome?done=generated&n=25"
    page = web.get(generated.headers["location"]).text
    assert "25 codes were generated." in text_of(page)
    assert 'href="/loyalty/coupons/welcome/codes.csv"' in page
    with engine.connect() as conn:
        codes = conn.execute(sa.select(coupon_codes.c.code)).scalars().all()
    assert len(codes) == 25 and all(c.startswith("HI-") and len(c) == 11 for c in codes)
    row = _series_row(web.get("/loyalty/coupons").text, "welcome")
    assert (row["codes"], row["issued"], row["uses"], row["state"]) == ("25", "0", "0", "running")

    csv_page = web.get("/loyalty/coupons/welcome/codes.csv")
    assert csv_page.status_code == 200
    assert csv_page.headers["content-type"].startswith("text/csv")
    csv_api = web.get("/api/coupons/series/welcome/codes.csv", headers=bearer(secret_key))
    assert csv_page.content == csv_api.content
    lines = csv_page.text.strip().splitlines()
    assert lines[0].lstrip("\ufeff").startswith("code,customer_id") and len(lines) == 26
    assert {line.split(",")[0] for line in lines[1:]} == set(codes)

    actions = [
        (e.action, e.actor_name) for e in audit_rows(engine) if e.action.startswith("coupon")
    ]
    assert actions == [
        ("coupon_series.create", "marketer@example.com"),
        ("coupon_series.pause", "marketer@example.com"),
        ("coupon_series.resume", "marketer@example.com"),
        ("coupon_series.generate", "marketer@example.com"),
        ("coupon_series.export", "marketer@example.com"),
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (WELCOME_YAML.replace("value: 10", "value: 120"), "series.value"),
        (WELCOME_YAML + "surprise: 1\n", "series.surprise"),
        (WELCOME_YAML.replace("[shoes]", "[shoes, hats]"), "series.include_categories[1]"),
        (WELCOME_YAML.replace("name: welcome", "name: Has Spaces"), "series.name"),
        ("kind: [", "neither JSON nor YAML"),
        ("- a list", "a series is an object of settings"),
    ],
)
def test_a_bad_series_is_a_422_with_its_field_and_nothing_stored(
    web: TestClient, engine: sa.Engine, text: str, where: str
) -> None:
    catalog(engine)
    token = signed_in(web, engine, "marketer")
    before = table_counts(engine)
    answer = _create_series(web, token, text)
    assert answer.status_code == 422
    assert where in text_of(answer.text), text_of(answer.text)
    assert table_counts(engine) == before


def test_taken_names_and_bad_counts_change_nothing(web: TestClient, engine: sa.Engine) -> None:
    token = signed_in(web, engine, "admin")
    shared = "name: promo\nkind: amount\nvalue: 300\ncodes: shared\nshared_code: spring\n"
    assert _create_series(web, token, shared).status_code == 303
    before = table_counts(engine)
    again = _create_series(web, token, shared)
    assert again.status_code == 422
    assert "a coupon series named 'promo' already exists" in unescape(text_of(again.text))
    same_code = _create_series(web, token, shared.replace("promo", "promo2"))
    assert "the code SPRING already exists (series promo)" in text_of(same_code.text)
    _create_series(web, token, "name: flyers\nkind: amount\nvalue: 50\nlength: 6\n")
    before = table_counts(engine)
    for count, said in (
        ("0", "a whole number from 1 to 100,000"),
        ("abc", "a whole number from 1 to 100,000"),
        ("100001", "a whole number from 1 to 100,000"),
        ("100000", "have room for"),  # 6 characters: too few codes to stay unguessable
    ):
        answer = web.post(
            "/loyalty/coupons/flyers/codes", data={"csrf_token": token, "count": count}
        )
        assert answer.status_code == 422, count
        assert said in text_of(answer.text), (count, text_of(answer.text))
    refused = web.post("/loyalty/coupons/promo/codes", data={"csrf_token": token, "count": "5"})
    assert refused.status_code == 422
    assert "a shared series has its one code" in text_of(refused.text)
    assert table_counts(engine) == before
    assert web.get("/loyalty/coupons/nothing-here").status_code == 404
    missing = web.post("/loyalty/coupons/nothing-here/pause", data={"csrf_token": token})
    assert missing.status_code == 404 and table_counts(engine) == before


def test_look_a_code_up_with_its_owner_masked_for_a_viewer(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, pipeline: Pipeline
) -> None:
    catalog(engine)
    cid = send(pipeline, "identify", "ann", traits={"email": "ann@example.com", "firstName": "Ann"})
    with writing(engine) as conn:
        create_series(conn, parse_settings(yaml.safe_load(WELCOME_YAML)), clock.now())
        code, _events = issue(conn, cid, "welcome", "k-1", clock.now())
    token = signed_in(web, engine, "analyst")
    found = web.get("/loyalty/coupons", params={"code": f"  {code.lower()} "}).text
    assert f'data-code="{code}"' in found
    assert _figure(found, "status") == "active"
    assert f'href="/customers/{cid}">Ann</a>' in found and "ann@example.com" in found
    assert "0 of 1" in text_of(found)
    unknown = web.get("/loyalty/coupons", params={"code": "NOPE-1"})
    assert unknown.status_code == 200 and "unknown code NOPE-1" in text_of(unknown.text)
    # An analyst downloads but changes nothing.
    assert web.get("/loyalty/coupons/welcome/codes.csv").status_code == 200
    assert "Create the series" not in text_of(found) and "/pause" not in found
    before = table_counts(engine)
    for path, data in (
        ("/loyalty/coupons", {"series": WELCOME_YAML.replace("welcome", "other")}),
        ("/loyalty/coupons/welcome/pause", {}),
        ("/loyalty/coupons/welcome/codes", {"count": "3"}),
    ):
        assert web.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert table_counts(engine) == before

    signed_in(web, engine, "viewer")
    seen = web.get("/loyalty/coupons", params={"code": code}).text
    assert "ann@example.com" not in seen and "a***@example.com" in seen
    assert web.get("/loyalty/coupons/welcome/codes.csv").status_code == 403
    detail = web.get("/loyalty/coupons/welcome").text
    assert "codes.csv" not in detail and '/codes"' not in detail and 'name="count"' not in detail
    assert "/resume" not in detail and "/pause" not in detail
