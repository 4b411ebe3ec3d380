"""The business reports over HTTP: JSON, CSV, charts, and the errors (401, 404, 422)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.analytics.business import MIN_REPEAT_GAPS
from rapport.analytics.periods import Period
from tests.conftest import T0, bearer
from tests.test_analytics_business import (
    LAPSED_DAYS,
    add_segment,
    expected,
    in_city,
    ingest_shop,
    make_shop,
)

SPAN = {"from": "2025-09-01", "to": "2026-02-28"}
PERIOD = Period(date(2025, 9, 1), date(2026, 2, 28))


KAZAN: dict[str, int] = {}


@pytest.fixture
def shop(engine: sa.Engine, client: Any, secret_key: str) -> list[Any]:
    buyers = make_shop(seed=31, n=120)
    ingest_shop(engine, buyers)
    KAZAN["id"] = add_segment(client, secret_key, "Kazan", "Kazan")
    return buyers


def test_business_json_and_csv(client: Any, secret_key: str, shop: list[Any]) -> None:
    want = expected(shop, PERIOD, LAPSED_DAYS, 3)
    r = client.get("/api/reports/business", params=SPAN, headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["period"] == {"from": SPAN["from"], "to": SPAN["to"]}
    assert doc["revenue"] == pytest.approx(want.revenue, abs=0.01)
    assert (doc["orders"], doc["buyers"], doc["active_customers"]) == (
        want.orders,
        want.buyers,
        want.active,
    )
    assert doc["lapsed_days"] == LAPSED_DAYS
    assert doc["average_check"] == {
        "status": "ok",
        "value": pytest.approx(want.revenue / want.orders),
    }
    median = doc["time_to_repeat"]["median_days"]
    assert median["status"] == ("ok" if len(want.gaps) >= MIN_REPEAT_GAPS else "insufficient_data")
    assert sum(b["customers"] for b in doc["time_to_repeat"]["buckets"]) == len(want.gaps)

    r = client.get(
        "/api/reports/business", params={**SPAN, "format": "csv"}, headers=bearer(secret_key)
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_metric = {row["metric"]: row for row in rows}
    assert float(by_metric["revenue"]["value"]) == pytest.approx(want.revenue, abs=0.01)
    assert int(by_metric["orders"]["value"]) == want.orders
    # An estimate that could not be made is an empty field with its reason, never a zero.
    for row in rows:
        if row["status"] == "insufficient_data":
            assert row["value"] == "" and row["reason"]


def test_segment_by_name_or_id(client: Any, secret_key: str, shop: list[Any]) -> None:
    want = expected(in_city(shop, "Kazan"), PERIOD, LAPSED_DAYS, 3)
    for ref in ("Kazan", str(KAZAN["id"])):
        r = client.get(
            "/api/reports/business", params={**SPAN, "segment": ref}, headers=bearer(secret_key)
        )
        assert r.status_code == 200, r.text
        assert r.json()["segment"] == {"id": KAZAN["id"], "name": "Kazan"}
        assert r.json()["orders"] == want.orders


@pytest.mark.parametrize(
    ("name", "first_column"),
    [("ltv", "group"), ("cohorts", "cohort"), ("funnel", "stage"), ("rfm", "kind")],
)
def test_each_report_as_json_and_csv(
    client: Any, secret_key: str, shop: list[Any], name: str, first_column: str
) -> None:
    r = client.get(f"/api/reports/{name}", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    assert r.json()["period"]["to"] == T0.date().isoformat()  # the default period ends today
    r = client.get(f"/api/reports/{name}", params={"format": "csv"}, headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    header = r.text.splitlines()[0].split(",")
    assert header[0] == first_column
    assert len(r.text.splitlines()) > 1


def test_funnel_report_over_http(client: Any, secret_key: str, shop: list[Any]) -> None:
    want = expected(shop, PERIOD, LAPSED_DAYS, 3)
    r = client.get("/api/reports/funnel", params=SPAN, headers=bearer(secret_key))
    stages = {s["stage"]: s for s in r.json()["stages"]}
    assert {k: s["customers"] for k, s in stages.items()} == want.funnel
    assert stages["reactivation"]["lifecycle_stage"] == "reactivated"
    assert stages["activation"]["eligible"] == want.eligible["activation"]


@pytest.mark.parametrize("name", ["funnel", "cohorts", "ltv", "rfm"])
def test_charts_as_svg_and_png(client: Any, secret_key: str, shop: list[Any], name: str) -> None:
    r = client.get(f"/api/reports/{name}.svg", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/svg+xml"
    assert "<svg" in r.text
    r = client.get(f"/api/reports/{name}.png", params=SPAN, headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_funnel_chart_labels_the_conversions(client: Any, secret_key: str, shop: list[Any]) -> None:
    doc = client.get("/api/reports/funnel", params=SPAN, headers=bearer(secret_key)).json()
    svg = client.get("/api/reports/funnel.svg", params=SPAN, headers=bearer(secret_key)).text
    for stage in doc["stages"]:
        if stage["conversion"] and stage["conversion"]["value"] is not None:
            assert f"{stage['conversion']['value'] * 100:.1f}% of eligible" in svg


def test_unknown_segment_is_404(client: Any, secret_key: str) -> None:
    for path in ("/api/reports/business", "/api/reports/cohorts.svg"):
        r = client.get(path, params={"segment": "nobody"}, headers=bearer(secret_key))
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
    r = client.get("/api/reports/ltv", params={"segment": "42"}, headers=bearer(secret_key))
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"from": "2026-13-01"}, "query.from"),
        ({"to": "yesterday"}, "query.to"),
        ({"period": "last_week"}, "query.period"),
        ({"period": "all", "from": "2026-01-01"}, "query.period"),
        ({"from": "2026-02-10", "to": "2026-02-01"}, "query.from"),
        ({"margin": "1.5"}, "query.margin"),
        ({"margin": "0"}, "query.margin"),
    ],
)
def test_bad_query_is_422_naming_the_parameter(
    client: Any, secret_key: str, params: dict[str, str], where: str
) -> None:
    for path in ("/api/reports/business", "/api/reports/ltv.svg"):
        r = client.get(path, params=params, headers=bearer(secret_key))
        assert r.status_code == 422, r.text
        assert where in [e["where"] for e in r.json()["errors"]]


def test_bad_format_and_no_key(client: Any, secret_key: str) -> None:
    r = client.get("/api/reports/funnel.gif", headers=bearer(secret_key))
    assert r.status_code == 422
    r = client.get("/api/reports/rfm", params={"format": "xml"}, headers=bearer(secret_key))
    assert r.status_code == 422
    assert client.get("/api/reports/business").status_code == 401
    assert client.get("/api/reports/funnel.svg").status_code == 401


def test_insufficient_data_reaches_the_api(client: Any, secret_key: str, engine: sa.Engine) -> None:
    ingest_shop(engine, make_shop(seed=32, n=8))
    doc = client.get("/api/reports/business", headers=bearer(secret_key)).json()
    assert doc["churn_rate"]["status"] == "insufficient_data"
    assert doc["churn_rate"]["value"] is None
    assert "reason" in doc["churn_rate"] and "numbers" in doc["churn_rate"]
    assert doc["ltv"]["ltv"]["status"] == "insufficient_data"
    assert doc["time_to_repeat"]["median_days"]["status"] == "insufficient_data"
