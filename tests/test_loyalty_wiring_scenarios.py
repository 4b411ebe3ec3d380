"""Scenario actions through the real pipeline: ``add_points`` and ``issue_coupon`` land once,
the code reaches the next send's template, a refused coupon skips its step and the run goes
on, segments with loyalty conditions follow the points at once, and dry runs touch nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.loyalty.coupons.store import set_paused
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.dry_run import dry_run
from rapport.scenarios.runs import Run
from rapport.scenarios.steps import advance
from rapport.scenarios.store import create_scenario, set_status
from rapport.segments.definitions import create_segment
from rapport.store.engine import writing
from rapport.store.tables import (
    coupon_codes,
    loyalty_ledger,
    outbox,
    scenario_runs,
    scenario_step_log,
    segment_members,
)
from tests.conftest import T0
from tests.test_coupons import make_series
from tests.test_loyalty_support import check_ledger, order, send, set_programme, timeline, track

GIFT = """
name: quiz-gift
trigger: {event: Quiz Done}
steps:
  - {id: gift, action: {add_points: 150}}
  - {id: code, action: {issue_coupon: quiz}}
  - {id: mail, send: {template: gift}}
"""
BODY = (
    "Balance {{ loyalty.balance }}, pending {{ loyalty.pending }}, "
    "tier {{ loyalty.tier or 'none' }}; code {{ loyalty.coupon or 'none' }} "
    "(step code: {{ loyalty.coupons.code or 'none' }})"
)


def _shop(engine: sa.Engine, clock: SimulatedClock, *, paused: bool = False) -> Pipeline:
    set_programme(engine, T0)
    make_series(engine, "quiz", valid_days=30)
    with writing(engine) as conn:
        if paused:
            set_paused(conn, "quiz", True, T0)
        create_template(
            conn,
            name="gift",
            channel="email",
            kind="text",
            variants={"en": {"subject": "A gift", "body": BODY}},
            now=T0,
        )
        stored = create_scenario(conn, GIFT, T0)
        set_status(conn, stored.id, "active", T0)
    return Pipeline(engine, clock)


def _customer(pipeline: Pipeline, user: str) -> int:
    traits = {"email": f"{user}@example.com", "consents": {"email": "subscribed"}}
    return send(pipeline, "identify", user, traits=traits)


def _mail(engine: sa.Engine, cid: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(outbox).where(outbox.c.customer_id == cid, outbox.c.step == "mail")
        ).one()


def _step_log(engine: sa.Engine, cid: int) -> list[tuple[str, str, str | None]]:
    log = scenario_step_log.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(log.step, log.outcome, log.reason)
            .where(log.customer_id == cid)
            .order_by(log.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _scenario_entries(engine: sa.Engine, cid: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(loyalty_ledger).where(
                    loyalty_ledger.c.customer_id == cid, loyalty_ledger.c.reason == "scenario"
                )
            ).all()
        )


def test_points_and_a_code_reach_the_next_message(engine: sa.Engine, clock: SimulatedClock):
    pipeline = _shop(engine, clock)
    cid = _customer(pipeline, "ann")
    order(pipeline, "ann", "o-1", 600)  # spend 600: Silver; 5 % of it waits 14 days
    track(pipeline, "ann", "Quiz Done")

    [entry] = _scenario_entries(engine, cid)
    assert (entry.kind, entry.points, entry.pending) == ("bonus", 150, 0)
    assert check_ledger(engine, cid) == (150, 30)
    [earned] = [
        e for e in timeline(engine, cid, "Loyalty Points Earned") if e["reason"] == "scenario"
    ]
    assert earned["points"] == 150
    with engine.connect() as conn:
        [code] = conn.execute(
            sa.select(coupon_codes.c.code).where(coupon_codes.c.customer_id == cid)
        ).scalars()
    [issued] = timeline(engine, cid, "Coupon Issued")
    assert issued["code"] == code and issued["series"] == "quiz"
    mail = _mail(engine, cid)
    assert mail.body_text == (
        f"Balance 150, pending 30, tier Silver; code {code} (step code: {code})"
    )
    assert [s for s in _step_log(engine, cid) if s[1] != "entered"] == [
        ("gift", "done", "add_points"),
        ("code", "done", "issue_coupon"),
        ("mail", "sent", None),
        ("-", "done", "end of scenario"),
    ]


def test_a_retried_step_credits_its_points_once(engine: sa.Engine, clock: SimulatedClock):
    pipeline = _shop(engine, clock)
    cid = _customer(pipeline, "ann")
    track(pipeline, "ann", "Quiz Done")
    with engine.connect() as conn:
        row = conn.execute(sa.select(scenario_runs).where(scenario_runs.c.customer_id == cid)).one()
    code_before = _mail(engine, cid).body_text
    # The same run at the same steps again (a worker repeating a step it had done): the
    # step keys are the same, so nothing is credited or issued a second time.
    clock.advance(timedelta(minutes=5))
    run = Run.of(row)
    run.status, run.step, run.context = "active", "gift", {}
    with writing(engine) as conn:
        scenario = pipeline.scenarios.index.version(conn, run.scenario_id, run.version)
        events = advance(conn, pipeline.scenarios.steps, scenario, run, clock.now())
    assert not [e for e in events if e[1] in ("Loyalty Points Earned", "Coupon Issued")]
    assert len(_scenario_entries(engine, cid)) == 1
    assert check_ledger(engine, cid) == (150, 0)
    with engine.connect() as conn:
        codes = conn.execute(
            sa.select(coupon_codes.c.code).where(coupon_codes.c.customer_id == cid)
        ).all()
    assert len(codes) == 1
    assert run.context["coupons"] == {"code": codes[0].code}  # the same code, given back
    assert _mail(engine, cid).body_text == code_before  # one message per step key


def test_a_paused_series_skips_the_step_and_the_run_goes_on(
    engine: sa.Engine, clock: SimulatedClock
):
    pipeline = _shop(engine, clock, paused=True)
    cid = _customer(pipeline, "ann")
    track(pipeline, "ann", "Quiz Done")

    log = _step_log(engine, cid)
    assert ("code", "skipped", "series 'quiz' is paused: it issues no codes") in log
    assert ("mail", "sent", None) in log
    assert _mail(engine, cid).body_text == (
        "Balance 150, pending 0, tier none; code none (step code: none)"
    )
    assert check_ledger(engine, cid) == (150, 0)  # the step before still counted
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar() == 0
        run = conn.execute(sa.select(scenario_runs).where(scenario_runs.c.customer_id == cid)).one()
    assert run.status == "done"


def test_a_segment_on_the_balance_follows_the_scenarios_points(
    engine: sa.Engine, clock: SimulatedClock
):
    pipeline = _shop(engine, clock)
    with writing(engine) as conn:
        rich = create_segment(
            conn, "rich", "", {"loyalty": "balance", "op": "ge", "value": 100}, T0
        )
    cid = _customer(pipeline, "ann")
    track(pipeline, "ann", "Quiz Done")  # the step's events are recorded without reactions
    with engine.connect() as conn:
        members = conn.execute(
            sa.select(segment_members.c.customer_id).where(
                segment_members.c.segment_id == rich.id, segment_members.c.until.is_(None)
            )
        ).scalars()
        assert list(members) == [cid]
    [entered] = timeline(engine, cid, "Segment Entered")
    assert entered["segment_name"] == "rich"


def test_a_dry_run_leaves_points_and_coupons_alone(engine: sa.Engine, clock: SimulatedClock):
    pipeline = _shop(engine, clock)
    cid = _customer(pipeline, "ann")
    track(pipeline, "ann", "Quiz Done")
    with engine.connect() as conn:
        before = (
            conn.execute(sa.select(sa.func.count()).select_from(loyalty_ledger)).scalar(),
            conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar(),
        )
    report = dry_run(engine, "quiz-gift", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert report.customers == [cid]
    assert {a.step for a in report.actions} == {"gift", "code"}  # listed, not performed
    with engine.connect() as conn:
        after = (
            conn.execute(sa.select(sa.func.count()).select_from(loyalty_ledger)).scalar(),
            conn.execute(sa.select(sa.func.count()).select_from(coupon_codes)).scalar(),
        )
    assert after == before
    assert check_ledger(engine, cid) == (150, 0)
