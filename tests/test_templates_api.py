"""The templates API on SQLite and PostgreSQL: CRUD, 422 with line/column and nothing
stored, versions, and preview with a real customer's card and catalog products."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.catalog.products import upsert_products
from rapport.store.engine import writing
from rapport.store.tables import customers, templates
from tests.conftest import T0, bearer
from tests.helpers import count

MJML = """<mjml><mj-body>
<mj-section><mj-column>
  <mj-text>{{ customer.first_name }}, {{ customer.orders_count }} {{ customer.orders_count|plural("заказ", "заказа", "заказов") }}</mj-text>
{% for p in products %}
  <mj-text>{{ p.name }} — {{ p.price|money(p.currency) }}</mj-text>
{% endfor %}
  <mj-text>{{ event.properties.coupon }}</mj-text>
</mj-column></mj-section>
</mj-body></mjml>"""


def _customer(engine: sa.Engine) -> int:
    with writing(engine) as conn:
        cid = conn.execute(
            customers.insert()
            .values(
                created_at=T0,
                updated_at=T0,
                traits={},
                first_name="Анна",
                locale="ru-RU",
                timezone="Europe/Moscow",
                orders_count=2,
                revenue=5000.0,
            )
            .returning(customers.c.id)
        ).scalar_one()
        upsert_products(
            conn,
            [{"id": "p1", "name": "Шарф", "price": 1490.0, "currency": "RUB"}],
            T0,
        )
    return int(cid)


def test_crud_and_preview(client: TestClient, secret_key: str, engine: sa.Engine) -> None:
    auth = bearer(secret_key)
    cid = _customer(engine)
    body = {
        "name": "digest",
        "variants": {
            "ru": {"subject": "{{ customer.first_name }}, подборка", "body": MJML},
            "en": {"subject": "{{ customer.first_name }}, picks", "body": MJML},
        },
    }
    r = client.post("/api/templates", json=body, headers=auth)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["version"] == 1
    assert client.post("/api/templates", json=body, headers=auth).status_code == 409

    r = client.post(
        f"/api/templates/{tid}/preview",
        json={
            "customer_id": cid,
            "product_ids": ["p1"],
            "event": {"name": "X", "properties": {"coupon": "HELLO"}},
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["locale"] == "ru" and out["subject"] == "Анна, подборка"
    assert "Анна, 2 заказа" in out["html"] and "Шарф — 1\xa0490,00\xa0₽" in out["html"]
    assert "HELLO" in out["text"]
    r = client.post(
        f"/api/templates/{tid}/preview",
        json={"customer_id": cid, "locale": "en", "product_ids": ["p1"]},
        headers=auth,
    )
    assert r.json()["subject"] == "Анна, picks" and "RUB" in r.json()["html"]
    assert (
        client.post(
            f"/api/templates/{tid}/preview", json={"customer_id": 999}, headers=auth
        ).status_code
        == 404
    )

    r = client.patch(
        f"/api/templates/{tid}",
        json={"variants": {"ru": {"subject": "Новое", "body": MJML}}},
        headers=auth,
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    assert list(client.get(f"/api/templates/{tid}", headers=auth).json()["compiled"]) == ["ru"]
    assert [t["name"] for t in client.get("/api/templates", headers=auth).json()["templates"]] == [
        "digest"
    ]
    assert client.delete(f"/api/templates/{tid}", headers=auth).status_code == 200
    assert client.get(f"/api/templates/{tid}", headers=auth).status_code == 404


def test_bad_template_is_422_with_position_and_nothing_stored(
    client: TestClient, secret_key: str, engine: sa.Engine
) -> None:
    auth = bearer(secret_key)
    bad = MJML.replace("{% endfor %}", "{% endfro %}")
    r = client.post(
        "/api/templates",
        json={"name": "bad", "variants": {"ru": {"subject": "s", "body": bad}}},
        headers=auth,
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["errors"]
    assert problem["where"] == "variants.ru.body:6:4", problem
    assert "endfro" in problem["reason"]
    assert count(engine, templates) == 0

    good = client.post(
        "/api/templates",
        json={"name": "ok", "variants": {"ru": {"subject": "s", "body": MJML}}},
        headers=auth,
    ).json()
    r = client.patch(
        f"/api/templates/{good['id']}",
        json={
            "variants": {
                "ru": {"subject": "s", "body": "<mjml><mj-body>{{ x|nope }}</mj-body></mjml>"}
            }
        },
        headers=auth,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["where"].startswith("variants.ru.body:1:")
    with engine.connect() as conn:
        assert conn.execute(sa.select(templates.c.version)).scalar_one() == 1

    r = client.post(
        "/api/templates",
        json={"name": "x", "channel": "sms", "kind": "mjml", "variants": {"de": {"body": "hi"}}},
        headers=auth,
    )
    assert r.status_code == 422
    assert {p["where"] for p in r.json()["errors"]} == {"kind", "variants.de"}
