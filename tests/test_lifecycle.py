"""Lifecycle stages: every transition, thresholds from the median gap, events on the timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.segments.lifecycle import (
    EVENT,
    FALLBACK_ACTIVE_DAYS,
    MIN_GAPS,
    LifecycleSettings,
    LifecycleSettingsError,
    LifecycleThresholds,
    current_thresholds,
    derive_thresholds,
    median_gap_days,
    recompute_lifecycle,
    save_lifecycle_settings,
    stage_for,
    update_stage,
)
from rapport.store.engine import writing
from tests.conftest import T0, bearer
from tests.helpers import event_rows
from tests.shop_helpers import add_customer, add_order, customer

DAY = timedelta(days=1)
T = LifecycleThresholds(active_days=30, lapsed_days=90, active_min_orders=3)


@pytest.mark.parametrize(
    ("count", "last_days", "previous_days", "stage"),
    [
        (0, None, None, "prospect"),
        (1, 5, None, "new"),
        (1, 30, None, "new"),  # exactly T_active days: still active
        (2, 5, 20, "repeat"),
        (3, 5, 20, "active"),
        (7, 29, 40, "active"),
        (1, 30.01, None, "at_risk"),
        (5, 60, 70, "at_risk"),
        (5, 90, 100, "at_risk"),  # exactly T_lapsed days: still at risk
        (5, 90.01, 100, "lapsed"),
        (1, 400, None, "lapsed"),
        (2, 5, 96, "reactivated"),  # the gap before the latest order exceeded T_lapsed
        (9, 5, 96, "reactivated"),
        (2, 5, 95, "repeat"),  # a gap of exactly T_lapsed: was at risk, not lapsed
        (2, 40, 200, "at_risk"),  # reactivated only while recent
    ],
)
def test_stage_for(
    count: int, last_days: float | None, previous_days: float | None, stage: str
) -> None:
    last = None if last_days is None else T0 - last_days * DAY
    previous = None if previous_days is None else T0 - previous_days * DAY
    assert stage_for(count, last, previous, T0, T) == stage


def test_thresholds_from_the_median_gap(engine: sa.Engine) -> None:
    # Gaps of 10 days for most repeat buyers, 40 for a few: the median is 10.
    for i in range(MIN_GAPS):
        add_customer(engine, T0, [(5 + i, 20), (15 + i, 20)])
    for _ in range(5):
        add_customer(engine, T0, [(3, 20), (43, 20)])
    # Split orders an hour apart are one occasion: they do not pull the median down.
    for _ in range(20):
        add_customer(engine, T0, [(2, 20), (2 + 1 / 24, 20)])
    add_customer(engine, T0, [(1, 20)])  # a single order has no gap
    with engine.connect() as conn:
        median, n = median_gap_days(conn)
        assert n == MIN_GAPS + 5
        assert median == pytest.approx(10)
        t = derive_thresholds(conn, LifecycleSettings())
    assert (t.active_days, t.lapsed_days, t.source) == (20, 40, "median")


def test_fallback_with_too_few_repeat_buyers_and_settings_override(engine: sa.Engine) -> None:
    for i in range(MIN_GAPS - 1):
        add_customer(engine, T0, [(5 + i, 20), (15 + i, 20)])
    with engine.connect() as conn:
        t = derive_thresholds(conn, LifecycleSettings())
    assert (t.active_days, t.lapsed_days, t.source) == (
        FALLBACK_ACTIVE_DAYS,
        2 * FALLBACK_ACTIVE_DAYS,
        "fallback",
    )
    with writing(engine) as conn:
        save_lifecycle_settings(conn, LifecycleSettings(active_days=45), T0)
    with engine.connect() as conn:
        assert current_thresholds(conn).active_days == 45
        assert current_thresholds(conn).lapsed_days == 90
    with writing(engine) as conn:
        save_lifecycle_settings(conn, LifecycleSettings(active_days=45, lapsed_days=200), T0)
    with engine.connect() as conn:
        t = current_thresholds(conn)
    assert (t.active_days, t.lapsed_days, t.source) == (45, 200, "settings")
    with pytest.raises(LifecycleSettingsError, match="lapsed_days"):
        LifecycleSettings(active_days=60, lapsed_days=60)
    with pytest.raises(LifecycleSettingsError):
        LifecycleSettings(active_min_orders=2)


def _timeline(engine: sa.Engine, cid: int) -> list[tuple[str | None, str]]:
    return [
        (e.properties["from"], e.properties["to"])
        for e in event_rows(engine, customer_id=cid, name=EVENT)
    ]


def test_sweep_moves_stages_with_time_and_announces_them(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        save_lifecycle_settings(conn, LifecycleSettings(active_days=30, lapsed_days=90), T0)
    prospect = add_customer(engine, T0)
    new = add_customer(engine, T0, [(2, 50)])
    repeat = add_customer(engine, T0, [(2, 50), (12, 50)])
    active = add_customer(engine, T0, [(2, 50), (12, 50), (22, 50)])
    at_risk = add_customer(engine, T0, [(45, 50)])
    lapsed = add_customer(engine, T0, [(120, 50)])
    back = add_customer(engine, T0, [(3, 50), (200, 50)])

    first = recompute_lifecycle(engine, pipeline, T0)
    expected = {
        prospect: "prospect",
        new: "new",
        repeat: "repeat",
        active: "active",
        at_risk: "at_risk",
        lapsed: "lapsed",
        back: "reactivated",
    }
    assert {cid: customer(engine, cid).lifecycle_stage for cid in expected} == expected
    assert customer(engine, new).lifecycle_changed_at == T0
    # The first sweep of a store is a back-fill: classified, but nothing announced.
    assert first.changed == 7 and first.announced == 0
    assert event_rows(engine, name=EVENT) == []
    assert first.stages == {
        "prospect": 1,
        "new": 1,
        "repeat": 1,
        "active": 1,
        "at_risk": 1,
        "lapsed": 1,
        "reactivated": 1,
    }

    # Nothing happens in a day: no change, no event.
    clock.advance(DAY)
    assert recompute_lifecycle(engine, pipeline, clock.now()).changed == 0

    # 50 days on: the recent ones are at risk, the at-risk one (95 days) has lapsed.
    clock.set(T0 + 50 * DAY)
    second = recompute_lifecycle(engine, pipeline, clock.now())
    assert second.changed == 5 and second.announced == 5
    assert _timeline(engine, new) == [("new", "at_risk")]
    assert _timeline(engine, back) == [("reactivated", "at_risk")]
    assert _timeline(engine, at_risk) == [("at_risk", "lapsed")]
    assert _timeline(engine, prospect) == []
    assert customer(engine, new).lifecycle_changed_at == T0 + 50 * DAY
    # The event went through the pipeline: it is on the timeline and in the counters, but it
    # is Rapport's observation, not the customer's activity, so events_count does not move.
    assert customer(engine, new).events_count == 0


def test_orders_move_the_stage_in_real_time_including_reactivation(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        save_lifecycle_settings(conn, LifecycleSettings(active_days=30, lapsed_days=90), T0)
    cid = add_customer(engine, T0)
    recompute_lifecycle(engine, pipeline, T0)  # the back-fill: prospect

    def order(total: float) -> str | None:
        add_order(engine, cid, clock.now(), total)
        with writing(engine) as conn:
            return update_stage(conn, pipeline, cid, clock.now())

    assert order(10) == "new"
    clock.advance(10 * DAY)
    assert order(10) == "repeat"
    clock.advance(10 * DAY)
    assert order(10) == "active"
    clock.advance(5 * DAY)
    assert order(10) is None  # still active: no change, no event
    clock.advance(100 * DAY)
    recompute_lifecycle(engine, pipeline, clock.now())
    assert customer(engine, cid).lifecycle_stage == "lapsed"
    clock.advance(DAY)
    assert order(10) == "reactivated"
    clock.advance(31 * DAY)
    recompute_lifecycle(engine, pipeline, clock.now())
    assert _timeline(engine, cid) == [
        ("prospect", "new"),
        ("new", "repeat"),
        ("repeat", "active"),
        ("active", "lapsed"),
        ("lapsed", "reactivated"),
        ("reactivated", "at_risk"),
    ]


def test_an_order_through_the_pipeline_then_the_stage(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    """The real ingest path: an `Order Completed` event feeds orders; the stage follows."""
    pipeline = Pipeline(engine, clock)
    message = parse_message(
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"order_id": "A-1", "total": 99.0, "currency": "RUB"},
        },
        where="message",
        received_at=clock.now(),
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    cid = pipeline.ingest([message]).customer_ids[0]
    assert cid is not None
    # The pipeline brought the stage up to date in the order's own transaction ...
    assert customer(engine, cid).lifecycle_stage == "new"
    with writing(engine) as conn:
        assert update_stage(conn, pipeline, cid, clock.now()) is None  # ... so nothing is left
    # A customer never classified before announces its first stage (from null).
    assert _timeline(engine, cid) == [(None, "new")]


def test_card_shows_the_stage(
    engine: sa.Engine, clock: SimulatedClock, client: TestClient, secret_key: str
) -> None:
    cid = add_customer(engine, T0, [(2, 50)])
    recompute_lifecycle(engine, Pipeline(engine, clock), T0)
    computed = client.get(f"/api/customers/{cid}", headers=bearer(secret_key)).json()["computed"]
    assert computed["lifecycle_stage"] == "new"
    assert computed["lifecycle_changed_at"].startswith("2026-03-01T12:00:00")


def test_cli_prints_customers_per_stage_and_per_cell(engine: sa.Engine) -> None:
    from typer.testing import CliRunner

    from rapport.cli import app as cli_app

    add_customer(engine, T0)
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli_app, ["segments", "lifecycle", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "prospect" in result.output and "reactivated" in result.output
    assert "1 of 1 customers changed stage" in result.output
    result = CliRunner().invoke(cli_app, ["segments", "rfm", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "Can't lose them" in result.output and "Scored 0 buyers" in result.output
