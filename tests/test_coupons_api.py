"""The coupons management API over real HTTP (TestClient), on SQLite and PostgreSQL:
series, codes, issue, look-up, personal discounts; roles, audit, and every bad input
answered 422/404/409 with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.audit import entries
from rapport.access.keys import create_key
from rapport.store.tables import coupon_codes, events
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.shop_helpers import add_customer
from tests.test_coupons import catalog

WELCOME = {
    "name": "welcome",
    "title": "Welcome 10%",
    "kind": "percent",
    "value": 10,
    "prefix": "HI-",
    "valid_days": 14,
    "min_subtotal": 1000,
    "include_categories": ["shoes"],
}


def _create(client: TestClient, key: str, body: dict[str, Any]) -> Any:
    return client.post("/api/coupons/series", json=body, headers=bearer(key))


def _actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [e.action for e in reversed(entries(conn))]


def test_series_lifecycle_with_audit(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    catalog(engine)
    created = _create(client, secret_key, WELCOME)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "welcome" and body["prefix"] == "HI-" and body["max_uses"] == 1
    assert body["offer"] == "10% off" and body["codes"] == "unique" and body["paused"] is False
    assert body["counts"] == {"codes": 0, "issued": 0, "uses": 0}

    changed = client.patch(
        "/api/coupons/series/welcome", json={"value": 15, "max_discount": 500},
        headers=bearer(secret_key),
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["offer"] == "15% off (at most 500.00)"

    paused = client.post("/api/coupons/series/welcome/pause", headers=bearer(secret_key))
    assert paused.json()["paused"] is True
    listed = client.get("/api/coupons/series", headers=bearer(secret_key)).json()["series"]
    assert [(s["name"], s["paused"], s["value"]) for s in listed] == [("welcome", True, 15)]
    resumed = client.post("/api/coupons/series/welcome/resume", headers=bearer(secret_key))
    assert resumed.json()["paused"] is False
    assert (
        client.get("/api/coupons/series/welcome", headers=bearer(secret_key)).json()["max_discount"]
        == 500
    )
    assert _actions(engine) == [
        "coupon_series.create",
        "coupon_series.update",
        "coupon_series.pause",
        "coupon_series.resume",
    ]
    with engine.connect() as conn:
        first = entries(conn)[-1]
    assert (first.actor_kind, first.actor_name, first.object_id) == ("key", "tests", "welcome")


BAD_SERIES = [
    ({**WELCOME, "kind": "bogus"}, "body.kind"),
    ({**WELCOME, "value": 120}, "body.value"),
    ({**WELCOME, "value": "ten"}, "body.value"),
    ({**WELCOME, "surprise": True}, "body.surprise"),
    ({**WELCOME, "name": "Has Spaces"}, "body.name"),
    ({**WELCOME, "codes": "shared"}, "body.shared_code"),
    ({**WELCOME, "valid_days": 0}, "body.valid_days"),
    ({**WELCOME, "valid_until": "next week"}, "body.valid_until"),
    ({**WELCOME, "include_categories": ["shoes", "hats"]}, "body.include_categories[1]"),
    ({**WELCOME, "exclude_categories": ["shoes"]}, "body.exclude_categories"),
    ({**WELCOME, "min_subtotal": -5}, "body.min_subtotal"),
    ({k: v for k, v in WELCOME.items() if k != "kind"}, "body.kind"),
]


@pytest.mark.parametrize(("body", "where"), BAD_SERIES)
def test_bad_series_is_422_with_the_field_and_stores_nothing(
    client: TestClient, engine: sa.Engine, secret_key: str, body: dict[str, Any], where: str
) -> None:
    catalog(engine)
    before = table_counts(engine)
    answer = _create(client, secret_key, body)
    assert answer.status_code == 422, answer.text
    assert where in [e["where"] for e in answer.json()["errors"]], answer.json()
    assert table_counts(engine) == before


def test_series_conflicts_and_unknowns(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    shared = {"name": "promo", "kind": "amount", "value": 300, "codes": "shared",
              "shared_code": "SPRING"}  # fmt: skip
    assert _create(client, secret_key, shared).status_code == 201
    before = table_counts(engine)
    again = _create(client, secret_key, shared)
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    same_code = _create(client, secret_key, {**shared, "name": "promo2"})
    assert same_code.status_code == 409
    assert same_code.json()["message"] == "the code SPRING already exists (series promo)"
    not_object = client.post("/api/coupons/series", json=[1], headers=bearer(secret_key))
    assert not_object.status_code == 422
    h = bearer(secret_key)
    for answer in (
        client.get("/api/coupons/series/nope", headers=h),
        client.patch("/api/coupons/series/nope", json={"value": 1}, headers=h),
        client.post("/api/coupons/series/nope/pause", headers=h),
        client.post("/api/coupons/series/nope/codes", json={"count": 5}, headers=h),
        client.post("/api/coupons/series/nope/issue", json={"customer_id": 1}, headers=h),
    ):
        assert answer.status_code == 404 and answer.json()["message"] == (
            "no coupon series named 'nope'"
        )
    renamed = client.patch("/api/coupons/series/promo", json={"name": "x"}, headers=h)
    assert renamed.status_code == 422 and renamed.json()["errors"][0]["where"] == "body.name"
    bad_value = client.patch("/api/coupons/series/promo", json={"value": -1}, headers=h)
    assert bad_value.json()["errors"][0]["where"] == "body.value"
    assert table_counts(engine) == before


def test_generate_codes_and_export_them(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    _create(client, secret_key, {"name": "print", "kind": "amount", "value": 5, "prefix": "P"})
    made = client.post(
        "/api/coupons/series/print/codes", json={"count": 250}, headers=bearer(secret_key)
    )
    assert made.status_code == 201, made.text
    codes = made.json()["codes"]
    assert made.json()["generated"] == 250 and len(set(codes)) == 250
    exported = client.get("/api/coupons/series/print/codes.csv", headers=bearer(secret_key))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.lstrip("\ufeff").splitlines()
    assert lines[0] == "code,customer_id,issued_at,expires_at,uses"
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(codes)
    before = table_counts(engine)
    for body, where in (({"count": 0}, "body.count"), ({"count": "many"}, "body.count"),
                        ({"count": 1, "extra": 1}, "body.extra")):  # fmt: skip
        answer = client.post(
            "/api/coupons/series/print/codes", json=body, headers=bearer(secret_key)
        )
        assert answer.status_code == 422 and answer.json()["errors"][0]["where"] == where
    assert table_counts(engine) == before
    _create(client, secret_key, {"name": "short", "kind": "amount", "value": 5, "length": 6})
    before = table_counts(engine)
    too_many = client.post(
        "/api/coupons/series/short/codes", json={"count": 100_000}, headers=bearer(secret_key)
    )
    assert too_many.status_code == 422 and "raise the series' length" in too_many.json()["message"]
    assert table_counts(engine) == before


def test_issue_look_up_and_the_customer_wallet(
    client: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    _create(client, secret_key, WELCOME)
    h = bearer(secret_key)
    issued = client.post(
        "/api/coupons/series/welcome/issue", json={"customer_id": cid, "key": "k-1"}, headers=h
    )
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert code.startswith("HI-") and issued.json()["customer_id"] == cid
    again = client.post(
        "/api/coupons/series/welcome/issue", json={"customer_id": cid, "key": "k-1"}, headers=h
    )
    assert again.status_code == 200 and again.json()["code"] == code
    assert again.json()["created"] is False
    with engine.connect() as conn:
        recorded = (
            conn.execute(sa.select(events.c.properties).where(events.c.name == "Coupon Issued"))
            .scalars()
            .all()
        )
    assert [p["code"] for p in recorded] == [code]

    looked = client.get(f"/api/coupons/codes/{code.lower()}", headers=h).json()
    assert (looked["status"], looked["uses"], looked["customer_id"]) == ("active", 0, cid)
    unknown = client.get("/api/coupons/codes/NOPE", headers=h)
    assert unknown.status_code == 404 and unknown.json()["message"] == "unknown code NOPE"

    wallet = client.get(f"/api/coupons/customers/{cid}", headers=h).json()
    assert [(c["code"], c["status"]) for c in wallet["coupons"]] == [(code, "active")]
    assert wallet["personal_discount"] == 0
    assert _actions(engine) == ["coupon_series.create", "coupon.issue"]

    before = table_counts(engine)
    for body, status, text in (
        ({"customer_id": cid + 99}, 404, f"customer {cid + 99} does not exist"),
        ({"customer_id": "someone"}, 422, "body.customer_id"),
        ({}, 422, "body.customer_id"),
        ({"customer_id": cid, "key": ""}, 422, "body.key"),
    ):
        answer = client.post("/api/coupons/series/welcome/issue", json=body, headers=h)
        assert answer.status_code == status and text in answer.text, answer.text
    assert table_counts(engine) == before
    shared = {"name": "spring", "kind": "percent", "value": 5, "codes": "shared",
              "shared_code": "SPRING"}  # fmt: skip
    _create(client, secret_key, shared)
    before = table_counts(engine)
    refused = client.post("/api/coupons/series/spring/issue", json={"customer_id": cid}, headers=h)
    assert refused.status_code == 422 and "one shared code (SPRING)" in refused.json()["message"]
    assert table_counts(engine) == before


def test_personal_discounts(client: TestClient, engine: sa.Engine, secret_key: str) -> None:
    cid = add_customer(engine, T0)
    h = bearer(secret_key)
    url = f"/api/coupons/customers/{cid}/discount"
    assert client.put(url, json={"percent": 5}, headers=h).json()["personal_discount"] == 5
    scenario = {"percent": 12.5, "source": "scenario", "valid_until": "2026-03-08T00:00:00Z"}
    assert client.put(url, json=scenario, headers=h).json()["personal_discount"] == 12.5
    wallet = client.get(f"/api/coupons/customers/{cid}", headers=h).json()
    assert [(d["source"], d["percent"], d["active"]) for d in wallet["discounts"]] == [
        ("manual", 5, True),
        ("scenario", 12.5, True),
    ]
    before = table_counts(engine)
    for body, where in (
        ({"percent": 0}, "body.percent"),
        ({"percent": 150}, "body.percent"),
        ({"percent": "lots"}, "body.percent"),
        ({"percent": 5, "source": "robot"}, "body.source"),
        ({"percent": 5, "valid_until": "2026-01-01T00:00:00Z"}, "body.valid_until"),
        ({"percent": 5, "valid_until": "2026-01-01T00:00:00"}, "body.valid_until"),
        ({"percent": 5, "valid_until": "soon"}, "body.valid_until"),
        ({"percent": 5, "colour": "red"}, "body.colour"),
    ):
        answer = client.put(url, json=body, headers=h)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["where"] == where
    assert client.put(f"/api/coupons/customers/{cid + 9}/discount", json={"percent": 5},
                      headers=h).status_code == 404  # fmt: skip
    bad_source = client.delete(url, params={"source": "robot"}, headers=h)
    assert bad_source.status_code == 422
    assert bad_source.json()["errors"][0]["where"] == "query.source"
    assert table_counts(engine) == before
    cleared = client.delete(url, params={"source": "scenario"}, headers=h).json()
    assert (cleared["removed"], cleared["personal_discount"]) == (1, 5)
    assert client.get(f"/api/coupons/customers/{cid + 9}", headers=h).status_code == 404
    assert _actions(engine) == [
        "personal_discount.set",
        "personal_discount.set",
        "personal_discount.clear",
    ]


def test_roles_marketer_changes_analyst_and_viewer_read(
    client: TestClient, engine: sa.Engine
) -> None:
    keys = {
        role: create_key(engine, "secret", role, T0, role=role).key
        for role in ("marketer", "analyst", "viewer")
    }
    body = {"name": "r", "kind": "amount", "value": 1}
    assert _create(client, keys["marketer"], body).status_code == 201
    for role in ("analyst", "viewer"):
        denied = _create(client, keys[role], {**body, "name": f"r-{role}"})
        assert denied.status_code == 403, role
        assert client.get("/api/coupons/series/r", headers=bearer(keys[role])).status_code == 200
        denied = client.put(
            "/api/coupons/customers/1/discount", json={"percent": 5}, headers=bearer(keys[role])
        )
        assert denied.status_code == 403
    csv_url = "/api/coupons/series/r/codes.csv"
    assert client.get(csv_url, headers=bearer(keys["analyst"])).status_code == 200
    assert client.get(csv_url, headers=bearer(keys["viewer"])).status_code == 403
    assert client.get("/api/coupons/series").status_code == 401
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar() == 0
