"""The pages: dashboard, customer search, the card and its timeline, coming sections; every
output escaped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.store.tables import customers
from rapport.web import STATIC
from rapport.web.nav import SECTIONS, SETTINGS_PAGES
from tests.conftest import basic
from tests.test_web_support import (
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)

XSS = "<script>alert(1)</script>"


def _send(client: TestClient, write_key: str, kind: str, **body: Any) -> None:
    answer = client.post(f"/v1/{kind}", json=body, headers=basic(write_key))
    assert answer.status_code == 200, answer.text


def _id_of(engine: sa.Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = :v"),
                {"v": user_id},
            ).scalar_one()
        )


def test_the_dashboard_shows_the_period_and_switches_it_in_place(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    _send(
        web,
        write_key,
        "track",
        userId="buyer",
        event="Order Completed",
        timestamp="2026-02-27T10:00:00Z",
        properties={"order_id": "A-1", "total": 1234.5, "currency": "RUB"},
    )
    signed_in(web, engine, "analyst")
    page = web.get("/")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Revenue 1,234.5" in text.replace(".50", ".5") or "1,234" in text
    assert "1 order" in text and "Nothing needs attention." in text
    for stage in ("Acquisition", "Activation", "Repeat", "Retention", "Reactivation"):
        assert stage in text
    # The charts read their figures from a JSON block, not from inline script.
    data = re.search(r'<div id="chart-data" hidden data-json="([^"]*)">', page.text)
    assert data and "&#34;sent&#34;" in data.group(1)
    assert "<script>" not in page.text  # no inline script anywhere
    assert 'src="/static/vendor/chart-4.5.1.umd.min.js' in page.text
    panel = web.get("/dashboard/panel?period=last_7_days", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert panel.headers["HX-Push-Url"] == "/?period=last_7_days"
    assert "<html" not in panel.text and "Feb 23, 2026" in panel.text
    unknown = web.get("/?period=forever")
    assert "Unknown period forever: showing the last 30 days." in text_of(unknown.text)


def test_customers_are_found_by_id_email_phone_and_name(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    _send(
        web,
        write_key,
        "identify",
        userId="u-ann",
        traits={
            "email": "ann@example.com",
            "phone": "+79161234567",
            "firstName": "Ann",
            "lastName": "Lee",
        },
    )
    _send(web, write_key, "identify", userId="u-bob", traits={"firstName": "Bob"})
    ann = _id_of(engine, "u-ann")
    signed_in(web, engine, "marketer")
    for q in (
        str(ann),
        "ANN@example.com",
        "+7 916 123-45-67",
        "89161234567",
        "ann lee",
        "u-ann",
        "Lee",
    ):
        found = web.get("/customers", params={"q": q})
        rows = sorted(set(re.findall(r"<td><a href=\"/customers/(\d+)\">", found.text)))
        assert rows == [str(ann)], q
    assert "No customer matches nobody." in text_of(web.get("/customers?q=nobody").text)
    # Typing in the box asks htmx for the results only; the address bar follows.
    partial = web.get("/customers?q=bob", headers={"HX-Request": "true", "HX-Target": "results"})
    assert "<html" not in partial.text and "Bob" in partial.text
    assert partial.headers["HX-Replace-Url"] == "/customers?q=bob"


def test_the_card_shows_what_the_store_knows(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    _send(
        web,
        write_key,
        "identify",
        userId="u-1",
        traits={"email": "kim@example.com", "firstName": "Kim", "city": "Kazan", "vip": "gold"},
    )
    _send(
        web,
        write_key,
        "track",
        userId="u-1",
        event="Order Completed",
        properties={"order_id": "B-7", "total": 500, "currency": "RUB"},
    )
    cid = _id_of(engine, "u-1")
    signed_in(web, engine, "analyst")
    text = text_of(web.get(f"/customers/{cid}").text)
    for expected in (
        "Kim",
        "kim@example.com",
        "Kazan",
        "vip gold",
        "user_id u-1",
        "Orders 1",
        "Revenue 500.00",
        "Not scored yet",
        "Order Completed",
        "Identify",
    ):
        assert expected in text, expected
    with engine.begin() as conn:
        conn.execute(
            customers.update()
            .where(customers.c.id == cid)
            .values(
                predicted_clv=1234.5,
                expected_purchases_90d=0.75,
                churn_risk=0.125,
                clv_scored_at=sa.func.now(),
            )
        )
    text = text_of(web.get(f"/customers/{cid}").text)
    assert "Predicted CLV 1,234.50" in text
    assert "Expected purchases in 90 days 0.75" in text
    assert "Churn risk 12.5%" in text
    missing = web.get("/customers/999999")
    assert missing.status_code == 404 and "There is no customer 999999." in text_of(missing.text)


def test_the_timeline_filters_and_pages(web: TestClient, engine: sa.Engine, write_key: str) -> None:
    batch = [
        {
            "type": "track",
            "userId": "u-t",
            "event": "Product Viewed",
            "timestamp": f"2026-02-01T10:{i:02d}:00Z",
            "properties": {"product_id": f"p{i}"},
        }
        for i in range(40)
    ] + [
        {
            "type": "track",
            "userId": "u-t",
            "event": "Cart Viewed",
            "timestamp": "2026-02-02T09:00:00Z",
        }
    ]
    _send(web, write_key, "batch", batch=batch)
    cid = _id_of(engine, "u-t")
    signed_in(web, engine, "viewer")
    card = web.get(f"/customers/{cid}").text
    assert card.count("<strong>Product Viewed</strong>") == 29  # 30 a page; the cart is newest
    more = re.search(r'hx-get="(/customers/\d+/timeline\?[^"]+)"', card)
    assert more
    older = web.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert older.text.count("<strong>Product Viewed</strong>") == 11
    assert "Older events" not in older.text  # the last page
    only_cart = web.get(f"/customers/{cid}/timeline", params={"name": "Cart Viewed"})
    assert only_cart.text.count("<tr>") == 1 and "Cart Viewed" in only_cart.text
    bad = web.get(f"/customers/{cid}/timeline", params={"before": "nonsense"})
    assert bad.status_code == 404 and "timeline cursor" in bad.text


def test_a_script_in_a_name_is_shown_as_text(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    _send(
        web,
        write_key,
        "identify",
        userId="u-x",
        traits={"firstName": XSS, "lastName": '"><img src=x onerror=alert(2)>'},
    )
    _send(web, write_key, "track", userId="u-x", event=XSS, properties={"note": XSS})
    cid = _id_of(engine, "u-x")
    signed_in(web, engine, "admin")
    for path in (f"/customers?q={cid}", f"/customers/{cid}", f"/customers/{cid}/timeline"):
        html = web.get(path).text
        assert XSS not in html, path
        assert "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    search = web.get("/customers", params={"q": XSS}).text
    assert XSS not in search and "&lt;script&gt;" in search


def test_sections_not_built_yet_say_so(web: TestClient, engine: sa.Engine) -> None:
    # An admin, so the Settings pages not built yet are reached too.
    signed_in(web, engine, "admin")
    coming = [s for s in (*SECTIONS, *SETTINGS_PAGES) if not s.built]
    for section in coming:
        page = web.get(section.path)
        assert page.status_code == 200, section.path
        text = text_of(page.text)
        assert "This page is not built yet." in text
        assert not re.search(
            r"\d{2,}", text.split("This page is not built yet.")[1].replace("4.5.1", "")
        ), section.path


def test_pages_carry_the_security_headers(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "viewer")
    for path in ("/login", "/", "/customers"):
        headers = web.get(path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
    # The UI stays out of the API's OpenAPI document.
    paths = web.get("/openapi.json").json()["paths"]
    assert "/login" not in paths and "/customers" not in paths


def test_the_vendored_libraries_are_served_with_their_licences(web: TestClient) -> None:
    vendor = Path(STATIC) / "vendor"
    names = sorted(p.name for p in vendor.iterdir())
    assert names == [
        "chart-4.5.1.LICENSE.md",
        "chart-4.5.1.umd.min.js",
        "htmx-2.0.10.LICENSE",
        "htmx-2.0.10.min.js",
    ]
    htmx = web.get("/static/vendor/htmx-2.0.10.min.js")
    assert htmx.status_code == 200 and 'version:"2.0.10"' in htmx.text
    assert "Chart.js v4.5.1" in web.get("/static/vendor/chart-4.5.1.umd.min.js").text
    assert "X-CSRF-Token" in web.get("/static/app.js").text
