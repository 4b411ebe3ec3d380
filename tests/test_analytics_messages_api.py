"""The message reports over HTTP (JSON, CSV, charts, errors) and in the terminal."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import order_attributions
from tests.conftest import bearer
from tests.shop_helpers import identify
from tests.test_analytics_messages import _order, _send, _status


def _shop(engine, clock) -> str:  # type: ignore[no-untyped-def]
    """Two customers mailed by campaign 5; one clicks and buys for 120. Returns the day."""
    pipeline = Pipeline(engine, clock)
    a = identify(pipeline, "a")
    b = identify(pipeline, "b")
    _send(pipeline, a, "m-a", campaign_id=5)
    _send(pipeline, b, "m-b", campaign_id=5)
    _status(pipeline, a, "Message Opened", "m-a", campaign_id=5)
    _status(pipeline, a, "Message Clicked", "m-a", campaign_id=5)
    clock.advance(timedelta(hours=3))
    _order(pipeline, "a", "o-1", 120)
    _order(pipeline, "b", "o-2", 80)  # no touch: not CRM revenue
    return clock.now().date().isoformat()


def test_messages_report_json_csv_and_chart(client, engine, clock, secret_key) -> None:  # type: ignore[no-untyped-def]
    day = _shop(engine, clock)
    auth = bearer(secret_key)
    r = client.get(f"/api/reports/messages?from={day}&to={day}", headers=auth)
    assert r.status_code == 200, r.text
    (row,) = r.json()["rows"]
    assert (row["sent"], row["opened"], row["clicked"], row["conversions"]) == (2, 1, 1, 1)
    assert row["open_rate"] == 0.5 and row["revenue"] == 120
    r = client.get(
        f"/api/reports/messages?from={day}&to={day}&group_by=campaign&format=csv", headers=auth
    )
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("campaign_id,queued,sent") and lines[1].startswith("5,2,2")
    r = client.get(f"/api/reports/messages.svg?from={day}&to={day}&locale=ru", headers=auth)
    assert r.headers["content-type"] == "image/svg+xml" and "открываемость" in r.text
    r = client.get(f"/api/reports/messages.png?from={day}&to={day}", headers=auth)
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_attribution_report_and_settings(client, engine, clock, secret_key) -> None:  # type: ignore[no-untyped-def]
    day = _shop(engine, clock)
    auth = bearer(secret_key)
    r = client.get(f"/api/reports/attribution?from={day}&to={day}", headers=auth)
    doc = r.json()
    assert (doc["revenue"], doc["crm_revenue"], doc["crm_share"]) == (200, 120, 0.6)
    assert doc["channels"] == [{"channel": "email", "orders": 1, "revenue": 120, "share": 0.6}]
    assert doc["campaigns"][0]["campaign_id"] == "5"
    r = client.put(
        "/api/settings/attribution",
        headers=auth,
        json={"click_days": 2, "channels": {"sms": {"click_days": 1, "open_days": 0}}},
    )
    assert r.status_code == 200 and r.json()["channels"]["sms"]["open_days"] == 0
    assert client.get("/api/settings/attribution", headers=auth).json()["click_days"] == 2


def test_bad_report_requests_say_what_and_where(client, engine, clock, secret_key) -> None:  # type: ignore[no-untyped-def]
    auth = bearer(secret_key)
    r = client.get("/api/reports/messages?from=2026-13-01", headers=auth)
    assert r.status_code == 422 and "from" in r.text
    r = client.get("/api/reports/messages?from=2026-02-01&to=2026-01-01", headers=auth)
    assert r.status_code == 422
    r = client.get("/api/reports/messages?period=fortnight", headers=auth)
    assert r.status_code == 422 and "period" in r.text
    r = client.get("/api/reports/messages?group_by=hour", headers=auth)
    assert r.status_code == 422 and "group_by" in r.text
    assert client.get("/api/reports/messages?segment=999", headers=auth).status_code == 404
    assert client.get("/api/reports/messages").status_code == 401
    r = client.put("/api/settings/attribution", headers=auth, json={"click_days": 200, "x": 1})
    assert r.status_code == 422 and {p["where"] for p in r.json()["errors"]} >= {
        "click_days",
        "x",
    }
    r = client.put("/api/settings/attribution", headers=auth, content=b"{nope")
    assert r.status_code == 400
    assert client.get("/api/settings/attribution", headers=auth).json()["click_days"] == 5


def test_cli_reports_and_rebuild(engine, clock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    day = _shop(engine, clock)
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    out = tmp_path / "m.csv"
    chart = tmp_path / "m.svg"
    result = runner.invoke(
        cli,
        [
            "report",
            "messages",
            "--from",
            day,
            "--to",
            day,
            "--group-by",
            "day",
            "--csv",
            str(out),
            "--chart",
            str(chart),
            "--database-url",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    header, row = out.read_text(encoding="utf-8-sig").splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert (values["day"], values["open_rate"], values["revenue"]) == (day, "0.5", "120.0")
    assert chart.read_text().startswith("<?xml")
    result = runner.invoke(
        cli, ["report", "attribution", "--from", day, "--to", day, "--database-url", url]
    )
    assert result.exit_code == 0 and "60.0" in result.output
    result = runner.invoke(
        cli, ["report", "messages", "--period", "fortnight", "--database-url", url]
    )
    assert result.exit_code == 1 and "period" in result.output
    with writing(engine) as conn:
        conn.execute(order_attributions.delete())
    result = runner.invoke(cli, ["analytics", "rebuild", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "1 orders credited" in result.output
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(order_attributions)).scalar() == 1
        )
    result = runner.invoke(
        cli,
        [
            "analytics",
            "attribution",
            "--channel",
            "sms",
            "--click-days",
            "1",
            "--database-url",
            url,
        ],
    )
    assert result.exit_code == 0 and '"sms"' in result.output
    result = runner.invoke(
        cli, ["analytics", "attribution", "--click-days", "-3", "--database-url", url]
    )
    assert result.exit_code == 1 and "click_days" in result.output


def test_dashboard_figures_and_alerts(client, engine, clock, secret_key) -> None:  # type: ignore[no-untyped-def]
    from rapport.analytics.message_facts import fold_message_events
    from rapport.store.tables import outbox

    day = _shop(engine, clock)
    now = clock.now()
    cid = identify(Pipeline(engine, clock), "bulk")
    rows = []
    for d, sent, bounced in ((3, 400, 4), (2, 400, 4), (1, 300, 30)):  # a spike yesterday
        at = now - timedelta(days=d)
        for i in range(sent):
            props = {"message_id": f"b{d}-{i}", "channel": "sms"}
            rows.append(
                {"customer_id": cid, "name": "Message Sent", "occurred_at": at, "properties": props}
            )
            if i < bounced:
                rows.append(
                    {
                        "customer_id": cid,
                        "name": "Message Bounced",
                        "occurred_at": at,
                        "properties": props,
                    }
                )
    with writing(engine) as conn:
        fold_message_events(conn, rows)
        conn.execute(
            outbox.insert(),
            [
                {
                    "idempotency_key": f"dead-{i}",
                    "channel": "email",
                    "recipient": "x@example.com",
                    "body_text": "",
                    "headers": {},
                    "data": {},
                    "fallback": [],
                    "status": "dead",
                    "attempts": 5,
                    "next_attempt_at": now,
                    "last_error": "550 relay denied",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(12)
            ],
        )
    r = client.get("/api/reports/dashboard?period=last_7_days", headers=bearer(secret_key))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["crm"]["crm_revenue"] == 120 and doc["business"]["revenue"] == 200
    assert doc["messages"]["sent"] == 2 + 1100
    assert any(t["day"] == day and t["sent"] == 2 for t in doc["trend"])
    assert doc["active_scenarios"] == 0
    codes = {(a["code"], a["channel"]) for a in doc["alerts"]}
    assert codes == {("channel_failing", "email"), ("bounce_spike", "sms")}
    spike = next(a for a in doc["alerts"] if a["code"] == "bounce_spike")
    assert spike["bounce_rate"] == 0.1 and spike["usual_bounce_rate"] == 0.01
