"""The Reports page: each section's figures, its server-drawn chart and CSV, the period
switch, who may download, "not enough data" states and the Russian labels."""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from tests.test_analytics_messages_api import _shop
from tests.test_web_support import signed_in as _signed_in
from tests.test_web_support import (
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> None:
    """Log in as a new person of ``role``, forgetting whoever was logged in before."""
    client.cookies.clear()
    _signed_in(client, engine, role)


SECTIONS = ("messages", "funnel", "cohorts", "ltv", "rfm")


def test_every_role_reads_the_reports_built_from_the_pipeline(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _shop(engine, clock)
    for role in ("viewer", "analyst", "marketer", "admin"):
        signed_in(web, engine, role)
        page = web.get("/reports")
        assert page.status_code == 200, (role, page.text)
        text = text_of(page.text)
        for title in ("Messages", "Attribution", "Funnel", "Cohorts", "LTV by cohort", "RFM grid"):
            assert title in text, (role, title)
        # Campaign 5 mailed two people, one clicked and bought for 120 of 200.
        assert "Revenue from CRM: 120.00 of 200.00 (60.0%)." in text
        assert "email" in text and "50.0%" in text
        for name in ("messages", "funnel"):
            assert f'src="/reports/{name}.svg?period=last_30_days"' in page.text
        downloads = re.findall(r'href="/reports/(\w+)\.csv', page.text)
        if role == "viewer":
            assert downloads == []
        else:
            assert set(downloads) == {*SECTIONS, "attribution"}
        assert "<script>" not in page.text and "style=" not in page.text


def test_the_charts_are_svg_for_any_signed_in_role(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _shop(engine, clock)
    assert web.get("/reports/messages.svg", follow_redirects=False).status_code in (302, 303)
    signed_in(web, engine, "viewer")
    for name in SECTIONS:
        answer = web.get(f"/reports/{name}.svg", params={"period": "last_7_days"})
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["content-type"] == "image/svg+xml"
        assert answer.text.lstrip().startswith(("<?xml", "<svg"))
    assert web.get("/reports/secrets.svg").status_code == 404


def test_csv_is_for_the_export_permission(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _shop(engine, clock)
    signed_in(web, engine, "viewer")
    assert web.get("/reports/messages.csv").status_code == 403
    assert web.get("/reports/attribution.csv").status_code == 403
    signed_in(web, engine, "analyst")
    answer = web.get("/reports/attribution.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = answer.text.lstrip("\ufeff").splitlines()
    assert lines == ["channel,orders,revenue,share", "email,1,120.0,0.6"]
    messages = web.get("/reports/messages.csv").text.lstrip("\ufeff").splitlines()
    assert messages[0].startswith("day,queued,sent") and messages[-1].startswith("2026-03-01,2,2")
    for name in ("funnel", "cohorts", "ltv", "rfm"):
        answer = web.get(f"/reports/{name}.csv", params={"period": "last_90_days"})
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/csv")


def test_a_bad_period_is_said_clearly(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "analyst")
    page = web.get("/reports", params={"period": "forever"})
    assert page.status_code == 200
    assert "Unknown period forever: showing the last 30 days." in text_of(page.text)
    for path in ("/reports/messages.svg", "/reports/funnel.csv"):
        answer = web.get(path, params={"period": "forever"})
        assert answer.status_code == 422 and "Unknown period 'forever'" in answer.text
    escaped = web.get("/reports", params={"period": "<b>x</b>"}).text
    assert "<b>x</b>" not in escaped and "&lt;b&gt;x&lt;/b&gt;" in escaped


def test_an_empty_shop_says_there_is_not_enough_data(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "viewer")
    page = web.get("/reports")
    assert page.status_code == 200
    text = text_of(page.text)
    assert text.count("Not enough data yet for this period.") >= 5
    assert re.findall(r"<img[^>]*>", page.text) == []  # no chart drawn from nothing


def test_the_period_switch_swaps_the_panel(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock
) -> None:
    _shop(engine, clock)
    signed_in(web, engine, "marketer")
    panel = web.get("/reports/panel?period=last_7_days", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert panel.headers["HX-Push-Url"] == "/reports?period=last_7_days"
    assert "<html" not in panel.text and "/reports/funnel.svg?period=last_7_days" in panel.text
    page = web.get("/reports")
    assert 'hx-get="/reports/panel"' in page.text


def test_russian_labels(web: TestClient, engine: sa.Engine, clock: SimulatedClock) -> None:
    _shop(engine, clock)
    signed_in(web, engine, "analyst")
    web.get("/lang/ru", params={"next": "/reports"})
    page = web.get("/reports")
    assert '<html lang="ru">' in page.text
    text = text_of(page.text)
    for label in ("Отчёты", "Атрибуция", "Воронка", "Скачать CSV", "Когорты"):
        assert label in text, label
    chart = web.get("/reports/messages.svg")
    assert "открываемость" in chart.text
