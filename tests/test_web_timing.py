"""How long every page takes on a demo store of a few thousand customers.

Measured and printed (run with ``-s`` to see the table), not asserted: timed assertions
do not belong in the suite (DESIGN.md, conventions). The issue's budget is 300 ms.

The store is the demo shop's history with the playbook library active while it happens
(so the scenarios have runs to count) and a scenario that leaves a task for each call to
the contact centre; then, through the management API as an operator would, a few
segments, a campaign with two variants and a control group that is started and
delivered, and a coupon series with printed codes.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.demo.generator import DemoConfig, generate
from rapport.messaging.channels.base import InMemoryBackend
from rapport.scenarios.library import install
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.store.tables import customers, scenario_runs, tasks, templates
from rapport.worker import dispatcher_for
from tests.conftest import bearer
from tests.test_web_support import (
    csrf_of,
    signed_in,
    web_client,  # noqa: F401  (the `web` fixture)
)

SHOP = DemoConfig(customers=2000, months=1, seed=11, end=datetime(2026, 3, 1, tzinfo=UTC))
BUDGET_MS = 300

CALLBACKS = """
name: callbacks
trigger: {event: Call Completed}
entry: {mode: every_time}
steps:
  - {id: call, action: {task: Call the customer back}}
"""
SEGMENTS = {
    "Buyers": {"computed": "orders_count", "op": "ge", "value": 1},
    "Repeat buyers": {"computed": "orders_count", "op": "ge", "value": 2},
    "Big spenders": {"computed": "revenue", "op": "ge", "value": 300},
    "Moscow": {"attribute": "city", "op": "eq", "value": "Moscow"},
}
LIVE_RULE = "all:\n  - computed: orders_count\n    op: ge\n    value: 2\n  - attribute: city\n    op: ne\n    value: Moscow\n"


def _median_ms(client: TestClient, path: str, runs: int = 5, **post: Any) -> float:
    """The median time of ``runs`` GETs of ``path`` (a POST when form data is given)."""

    def ask() -> Any:
        return client.post(path, **post) if post else client.get(path)

    assert ask().status_code == 200, path  # warm: templates compiled once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = ask()
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200
    return statistics.median(times)


def _ok(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def _stock(web: TestClient, app: Any, engine: sa.Engine, secret_key: str) -> dict[str, Any]:
    """The shop, its scenarios, segments, campaign and coupons (see the module docstring)."""
    with writing(engine) as conn:
        install(conn, SHOP.period()[0], activate=True)
        callbacks = create_scenario(conn, CALLBACKS, SHOP.period()[0])
        set_status(conn, callbacks.id, "active", SHOP.period()[0])
    generate(engine, SHOP)
    key = bearer(secret_key)
    made = {
        name: _ok(web.post("/api/segments", json={"name": name, "rules": rule}, headers=key))
        for name, rule in SEGMENTS.items()
    }
    with engine.connect() as conn:
        emails = conn.execute(
            sa.select(templates.c.id)
            .where(templates.c.channel == "email")
            .order_by(templates.c.id)
            .limit(2)
        ).scalars()
        pairs = zip("AB", emails, strict=True)
        variants = [{"name": n, "template_id": t, "weight": 1} for n, t in pairs]
    campaign = _ok(
        web.post(
            "/api/campaigns",
            json={
                "name": "Spring news",
                "channel": "email",
                "segment_id": made["Buyers"]["id"],
                "variants": variants,
                "control_percent": 10,
            },
            headers=key,
        )
    )
    # Started as the API starts it: the audience is queued after the answer.
    _ok(web.post(f"/api/campaigns/{campaign['id']}/start", headers=key), 200)
    dispatcher = dispatcher_for(app.state.pipeline, {"email": InMemoryBackend("email")})
    while dispatcher.run_once().claimed:
        pass
    dispatcher.close()
    series = {"name": "spring-10", "title": "Spring, 10% off", "kind": "percent", "value": 10}
    _ok(web.post("/api/coupons/series", json=series, headers=key))
    codes = web.post("/api/coupons/series/spring-10/codes", json={"count": 1000}, headers=key)
    _ok(codes)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to a store soon after a bulk load: without statistics the
        # planner takes every fresh table for empty, which no running store is.
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    with engine.connect() as conn:
        busiest = conn.execute(
            sa.select(scenario_runs.c.scenario_id)
            .group_by(scenario_runs.c.scenario_id)
            .order_by(sa.func.count().desc())
            .limit(1)
        ).scalar_one()
        task_count = conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one()
    return {
        "segment": made["Buyers"]["id"],
        "campaign": campaign["id"],
        "template": variants[0]["template_id"],
        "scenario": busiest,
        "tasks": task_count,
    }


def test_every_page_render_time(
    web: TestClient, app: Any, engine: sa.Engine, secret_key: str
) -> None:
    made = _stock(web, app, engine, secret_key)
    with engine.connect() as conn:
        shoppers = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        runs = conn.execute(sa.select(sa.func.count()).select_from(scenario_runs)).scalar_one()
        busiest = conn.execute(
            sa.select(customers.c.id)
            .where(customers.c.merged_into.is_(None))
            .order_by(customers.c.events_count.desc())
            .limit(1)
        ).scalar_one()
    signed_in(web, engine, "admin")
    token = csrf_of(web, "/segments/new")
    campaign, segment, template = made["campaign"], made["segment"], made["template"]
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("dashboard, last 30 days", "/", {}),
        ("dashboard, this year", "/dashboard/panel?period=this_year", {}),
        ("customer search by name", "/customers?q=ann", {}),
        (f"card of the busiest customer (#{busiest})", f"/customers/{busiest}", {}),
        ("segments", "/segments", {}),
        ("segment page with its builder", f"/segments/{segment}", {}),
        ("new segment (the builder)", "/segments/new", {}),
        (
            "live count of a two-condition rule",
            "/segments/preview",
            {"data": {"mode": "text", "rules_text": LIVE_RULE}, "headers": {"X-CSRF-Token": token}},
        ),
        ("scenarios (16, with the library)", "/scenarios", {}),
        (
            f"journey map of the busiest scenario (#{made['scenario']})",
            f"/scenarios/{made['scenario']}",
            {},
        ),
        ("its map alone (SVG)", f"/scenarios/{made['scenario']}.svg", {}),
        ("campaigns", "/campaigns", {}),
        ("new campaign (the composer)", "/campaigns/new", {}),
        ("a sent campaign: results and verdict", f"/campaigns/{campaign}", {}),
        (
            "its preview for the busiest customer",
            f"/campaigns/{campaign}?customer_id={busiest}",
            {},
        ),
        ("templates", "/templates", {}),
        ("template editor with its preview", f"/templates/{template}", {}),
        ("loyalty", "/loyalty", {}),
        ("coupon series", "/loyalty/coupons", {}),
        ("a series with 1,000 codes", "/loyalty/coupons/spring-10", {}),
        (f"tasks ({made['tasks']})", "/tasks", {}),
        ("reports, last 30 days", "/reports", {}),
        ("settings: channels", "/settings/channels", {}),
        ("audit log", "/audit", {}),
    ]
    print(
        f"\n{engine.dialect.name}: {shoppers} customer profiles, {runs} scenario runs;"
        f" median of 5, budget {BUDGET_MS} ms"
    )
    for label, path, post in rows:
        ms = _median_ms(web, path, **post)
        flag = "" if ms < BUDGET_MS else "  OVER BUDGET"
        print(f"  {label:<52} {ms:7.1f} ms{flag}")
