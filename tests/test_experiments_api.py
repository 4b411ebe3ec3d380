"""Experiment reports over HTTP and from the command line, on SQLite and PostgreSQL: the
JSON is the domain's report, CSV and charts come out whole, bad options are 422 naming
the parameter, unknown campaigns, scenarios and steps are 404, a key is required."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.analytics.experiments.incrementality import global_control_report
from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.sample_size import mean_sample_size, rate_sample_size
from rapport.analytics.experiments.splits import campaign_experiment
from rapport.analytics.periods import Period
from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.messaging.holdout import GlobalControl, save_global_control
from rapport.store.engine import writing
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_experiments_splits import (
    _campaign,
    _scenario,
    _shop_orders,
    identify_many,
    ingest,
    send_orders,
)

DAY = timedelta(days=1)
BASE = "/api/reports/experiments"


@pytest.fixture
def shop(app: Any, engine: sa.Engine, clock: SimulatedClock) -> dict[str, Any]:
    """A started campaign (A, B and a 20 % control) with orders, a scenario with a split
    that some customers passed, and a global control group."""
    pipeline = app.state.pipeline
    users = [f"c{i}" for i in range(80)]
    ids = identify_many(pipeline, users)
    with writing(engine) as conn:
        save_global_control(conn, GlobalControl(10.0, "api"), T0)
    campaign_id = _campaign(engine, list(ids.values()), control_percent=20)
    scenario_id = _scenario(engine, "api-split", "")
    pipeline.scenarios.index.invalidate()  # the scenario was stored behind its back
    ingest(pipeline, ({"type": "track", "userId": u, "event": "Signed Up"} for u in users[:40]))
    clock.set(T0 + 20 * DAY)
    send_orders(pipeline, _shop_orders(dict.fromkeys(users, "A"), seed=2))
    return {"campaign": campaign_id, "scenario": scenario_id, "ids": ids}


def _problems(r: Any) -> set[str]:
    return {p["where"] for p in r.json()["errors"]}


def test_campaign_report_json_csv_and_chart(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    clock: SimulatedClock,
    shop: dict[str, Any],
) -> None:
    auth = bearer(secret_key)
    cid = shop["campaign"]
    r = client.get(f"{BASE}/campaigns/{cid}?window_days=7&locale=ru", headers=auth)
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        expected = campaign_experiment(conn, cid, Options(window_days=7, locale="ru"), clock.now())
    assert r.json() == orjson.loads(orjson.dumps(expected, option=orjson.OPT_NON_STR_KEYS))
    assert r.json()["verdict"]["locale"] == "ru"

    r = client.get(f"{BASE}/campaigns/{cid}?format=csv", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    overall = [row for row in rows if row["week"] == ""]
    assert [row["group"] for row in overall] == ["A", "B", "control"]
    report = client.get(f"{BASE}/campaigns/{cid}", headers=auth).json()
    for row, group in zip(overall, report["groups"], strict=True):
        assert int(row["recipients"]) == group["recipients"]
        assert float(row["revenue"]) == pytest.approx(group["revenue"])
    assert overall[2]["conversion_p_value"] == ""  # the reference has no comparison
    assert len(rows) == 3 + 3 * len(report["weeks"])

    svg = client.get(f"{BASE}/campaigns/{cid}.svg", headers=auth)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content and b"Revenue per recipient" in svg.content
    png = client.get(f"{BASE}/campaigns/{cid}.png", headers=auth)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_campaign_report_errors(
    client: TestClient, secret_key: str, engine: sa.Engine, shop: dict[str, Any]
) -> None:
    auth = bearer(secret_key)
    cid = shop["campaign"]
    before = table_counts(engine)
    r = client.get(f"{BASE}/campaigns/999", headers=auth)
    assert r.status_code == 404 and "999" in r.json()["message"]
    assert client.get(f"{BASE}/campaigns/999.svg", headers=auth).status_code == 404
    r = client.get(f"{BASE}/campaigns/{cid}?mde=-1&metric=clicks&locale=de", headers=auth)
    assert r.status_code == 422
    assert _problems(r) == {"query.mde", "query.metric", "query.locale"}
    r = client.get(f"{BASE}/campaigns/{cid}?window_days=soon", headers=auth)
    assert r.status_code == 422 and _problems(r) == {"query.window_days"}
    r = client.get(f"{BASE}/campaigns/{cid}?format=xml", headers=auth)
    assert r.status_code == 422 and _problems(r) == {"query.format"}
    assert client.get(f"{BASE}/campaigns/{cid}.gif", headers=auth).status_code == 422
    assert client.get(f"{BASE}/campaigns/{cid}").status_code == 401
    assert table_counts(engine) == before  # a report writes nothing


def test_scenario_split_report(client: TestClient, secret_key: str, shop: dict[str, Any]) -> None:
    auth = bearer(secret_key)
    sid = shop["scenario"]
    r = client.get(f"{BASE}/scenarios/{sid}/steps/ab", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["step"] == "ab" and body["reference"] == "control"
    assert body["recipients"] == sum(g["recipients"] for g in body["groups"]) > 0
    assert client.get(f"{BASE}/scenarios/{sid}/steps/ab?format=csv", headers=auth).text.startswith(
        "week,group,reference"
    )
    assert client.get(f"{BASE}/scenarios/{sid}/steps/ab.svg", headers=auth).status_code == 200
    r = client.get(f"{BASE}/scenarios/{sid}/steps/nowhere", headers=auth)
    assert r.status_code == 404 and "nowhere" in r.json()["message"]
    assert client.get(f"{BASE}/scenarios/999/steps/ab", headers=auth).status_code == 404
    r = client.get(f"{BASE}/scenarios/{sid}/steps/hello", headers=auth)
    assert r.status_code == 422 and _problems(r) == {"path.step"}


def test_global_control_report(
    client: TestClient,
    secret_key: str,
    engine: sa.Engine,
    clock: SimulatedClock,
    shop: dict[str, Any],
) -> None:
    auth = bearer(secret_key)
    r = client.get(f"{BASE}/global-control?from=2026-03-01&to=2026-03-31", headers=auth)
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        expected = global_control_report(
            conn,
            Period(T0.date(), T0.date() + 30 * DAY),
            Options(metric="revenue"),
            clock.now(),
        )
    assert r.json() == orjson.loads(orjson.dumps(expected, option=orjson.OPT_NON_STR_KEYS))
    r = client.get(f"{BASE}/global-control?period=all&format=csv", headers=auth)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["group"] for row in rows] == ["global_control", "crm"]
    assert rows[1]["incremental_revenue"] != "" and rows[0]["incremental_revenue"] == ""
    r = client.get(f"{BASE}/global-control?from=March&period=forever", headers=auth)
    assert r.status_code == 422
    assert _problems(r) == {"query.from", "query.period"}


def test_sample_size(client: TestClient, secret_key: str) -> None:
    auth = bearer(secret_key)
    body = {"baseline": 0.05, "mde": 0.1, "relative": True, "power": 0.8, "ratio": 4}
    r = client.post(f"{BASE}/sample-size", json=body, headers=auth)
    assert r.status_code == 200, r.text
    expected = rate_sample_size(0.05, 0.1, relative=True, ratio=4)
    assert r.json()["reference"] == expected.reference
    assert r.json()["treatment"] == expected.treatment
    r = client.post(
        f"{BASE}/sample-size?format=csv",
        json={"metric": "mean", "sd": 30, "mde": 2},
        headers=auth,
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert int(rows[0]["reference"]) == mean_sample_size(30, 2).reference
    r = client.post(f"{BASE}/sample-size", json={"baseline": 0.9, "mde": 0.2}, headers=auth)
    assert r.status_code == 422 and _problems(r) == {"body.mde"}
    r = client.post(
        f"{BASE}/sample-size", json={"baseline": 2, "mde": 0.1, "power": 3}, headers=auth
    )
    assert r.status_code == 422 and _problems(r) == {"body.baseline", "body.power"}
    r = client.post(f"{BASE}/sample-size", json={"mde": 0.1, "colour": 1}, headers=auth)
    assert r.status_code == 422 and "body.colour" in _problems(r)
    r = client.post(f"{BASE}/sample-size", json={"metric": "mean", "mde": 0.1}, headers=auth)
    assert r.status_code == 422 and _problems(r) == {"body.sd"}


# -- the command line ---------------------------------------------------------------------


def _url(engine: sa.Engine) -> list[str]:
    return ["--database-url", engine.url.render_as_string(hide_password=False)]


def test_cli_experiment(engine: sa.Engine, shop: dict[str, Any], tmp_path: Any) -> None:
    runner = CliRunner()
    out_csv, out_svg = tmp_path / "exp.csv", tmp_path / "exp.svg"
    r = runner.invoke(
        cli,
        [
            "report",
            "experiment",
            "--campaign",
            str(shop["campaign"]),
            "--csv",
            str(out_csv),
            "--chart",
            str(out_svg),
            "--locale",
            "ru",
            *_url(engine),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "control" in r.output and "Победителя пока нет" in r.output
    assert out_csv.read_text().startswith("week,group,reference")
    assert "<svg" in out_svg.read_text()
    r = runner.invoke(
        cli,
        ["report", "experiment", "--scenario", "api-split", "--step", "ab", *_url(engine)],
    )
    assert r.exit_code == 0, r.output
    assert "step ab" in r.output and "No winner yet" in r.output
    r = runner.invoke(cli, ["report", "experiment", *_url(engine)])
    assert r.exit_code == 1 and "--campaign" in r.output
    r = runner.invoke(
        cli, ["report", "experiment", "--campaign", "nope", "--mde", "-2", *_url(engine)]
    )
    assert r.exit_code == 1 and "mde" in r.output
    r = runner.invoke(cli, ["report", "experiment", "--campaign", "nope", *_url(engine)])
    assert r.exit_code == 1 and "nope" in r.output


def test_cli_global_control_and_sample_size(engine: sa.Engine, shop: dict[str, Any]) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["report", "global-control", "--period", "all", *_url(engine)])
    assert r.exit_code == 0, r.output
    assert "global_control" in r.output and "crm" in r.output
    r = runner.invoke(cli, ["report", "global-control", "--from", "soon", *_url(engine)])
    assert r.exit_code == 1 and "from" in r.output
    r = runner.invoke(
        cli, ["report", "sample-size", "--baseline", "0.05", "--mde", "0.1", "--relative"]
    )
    assert r.exit_code == 0, r.output
    assert f"{rate_sample_size(0.05, 0.1, relative=True).reference:,}" in r.output
    r = runner.invoke(cli, ["report", "sample-size", "--sd", "30", "--mde", "2"])
    assert r.exit_code == 0 and f"{mean_sample_size(30, 2).reference:,}" in r.output
    r = runner.invoke(cli, ["report", "sample-size", "--baseline", "1.5", "--mde", "0.1"])
    assert r.exit_code == 1 and "baseline" in r.output
    r = runner.invoke(cli, ["report", "sample-size", "--mde", "0.1"])
    assert r.exit_code == 1 and "--baseline" in r.output
