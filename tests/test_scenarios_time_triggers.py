"""Date, inactivity and schedule triggers on SQLite and PostgreSQL, with a simulated clock:
local days by timezone, offsets, trait dates, one run per occasion, 29 February, spells of
inactivity, cron fires that survive restarts, paused scenarios, and a scan whose number of
statements does not grow with the number of customers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios import time_triggers
from rapport.scenarios.store import create_scenario, set_status
from rapport.scenarios.time_triggers import scan_time_triggers
from rapport.segments.lists import add_members, create_list
from rapport.store.engine import writing
from rapport.store.tables import (
    app_settings,
    customers,
    events,
    outbox,
    scenario_runs,
    scenarios,
)
from tests.conftest import T0, _clean
from tests.shop_helpers import add_order

HELLO = "  - {id: hello, send: {template: hello}}\n"


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _pipeline(engine: sa.Engine, clock: SimulatedClock) -> Pipeline:
    pipeline = Pipeline(engine, clock)
    pipeline.scenarios.index.ttl = 0  # see status changes at once
    with writing(engine) as conn:
        create_template(
            conn,
            name="hello",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello {{ customer.first_name }}"}},
            now=T0,
        )
    return pipeline


def _customer(engine: sa.Engine, **values: Any) -> int:
    values.setdefault("traits", {})
    with writing(engine) as conn:
        cid = int(
            conn.execute(
                customers.insert()
                .values(created_at=T0, updated_at=T0, email="c@example.com", **values)
                .returning(customers.c.id)
            ).scalar_one()
        )
        set_consents(conn, [ConsentChange(cid, "email", "subscribed", "test", T0)])
    return cid


def _scenario(engine: sa.Engine, trigger: str, steps: str = HELLO, at: datetime = T0) -> int:
    name = f"s-{trigger}"[:200]
    text = f"name: '{name}'\ntrigger: {trigger}\nentry: {{mode: every_time}}\nsteps:\n{steps}"
    with writing(engine) as conn:
        stored = create_scenario(conn, text, at)
        set_status(conn, stored.id, "active", at)
    return stored.id


def _runs(engine: sa.Engine, scenario_id: int | None = None) -> list[tuple[int, str]]:
    r = scenario_runs.c
    query = sa.select(r.customer_id, r.entity_key).order_by(r.customer_id, r.id)
    if scenario_id is not None:
        query = query.where(r.scenario_id == scenario_id)
    with engine.connect() as conn:
        return [(int(c), k) for c, k in conn.execute(query)]


def _scan(pipeline: Pipeline, clock: SimulatedClock, at: datetime) -> dict[int, int]:
    clock.set(at)
    return scan_time_triggers(pipeline, at)


# -- date ------------------------------------------------------------------------------


def test_birthday_at_the_local_hour_of_each_timezone(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    moscow = _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    new_york = _customer(engine, birthday=date(1985, 3, 1), timezone="America/New_York")
    nowhere = _customer(engine, birthday=date(1970, 3, 1))  # no timezone: UTC
    mars = _customer(engine, birthday=date(1970, 3, 1), timezone="Mars/Olympus")  # UTC too
    _customer(engine, birthday=date(1990, 3, 2), timezone="Europe/Moscow")
    _customer(engine, timezone="Europe/Moscow")  # no birthday
    sid = _scenario(engine, "{date: birthday, at_hour: 10}", at=_at(2026, 2, 1))

    # 07:30 UTC: 10:30 in Moscow, 02:30 in New York, 07:30 in UTC
    assert _scan(pipeline, clock, _at(2026, 3, 1, 7, 30)) == {sid: 1}
    assert _runs(engine) == [(moscow, "birthday:2026")]
    # 15:30 UTC: New York's 10:30 and UTC's afternoon; Moscow's run is not repeated
    assert _scan(pipeline, clock, _at(2026, 3, 1, 15, 30)) == {sid: 3}
    assert _runs(engine) == [
        (moscow, "birthday:2026"),
        (new_york, "birthday:2026"),
        (nowhere, "birthday:2026"),
        (mars, "birthday:2026"),
    ]
    # the first step ran at once, and the entry is on the card
    with engine.connect() as conn:
        keys = sorted(conn.execute(sa.select(outbox.c.idempotency_key)).scalars())
        entered = conn.execute(
            sa.select(sa.func.count()).where(events.c.name == "Scenario Entered")
        ).scalar_one()
        trigger = conn.execute(
            sa.select(scenario_runs.c.context).where(scenario_runs.c.customer_id == moscow)
        ).scalar_one()["trigger"]
    assert keys == [f"run:{i}:step:hello" for i in (1, 2, 3, 4)]
    assert entered == 4
    assert trigger == {
        "name": "Date",
        "properties": {"date": "birthday", "occasion": "2026-03-01", "offset_days": 0},
    }


def test_the_same_moment_is_a_different_day_in_moscow_and_new_york(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    # 2026-03-01 22:30 UTC is 01:30 on 2 March in Moscow and 17:30 on 1 March in New York
    moscow = _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    new_york = _customer(engine, birthday=date(1990, 3, 1), timezone="America/New_York")
    moscow_2nd = _customer(engine, birthday=date(1990, 3, 2), timezone="Europe/Moscow")
    _scenario(engine, "{date: birthday, at_hour: 0}", at=_at(2026, 2, 1))
    _scan(pipeline, clock, _at(2026, 3, 1, 22, 30))
    assert _runs(engine) == [(new_york, "birthday:2026"), (moscow_2nd, "birthday:2026")]
    assert moscow not in dict(_runs(engine))


def test_three_days_before_the_birthday(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    soon = _customer(engine, birthday=date(1990, 3, 4), timezone="Europe/Moscow")
    _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    new_year = _customer(engine, birthday=date(1990, 1, 2))
    _scenario(engine, "{date: birthday, offset_days: -3, at_hour: 10}", at=_at(2025, 12, 1))
    _scan(pipeline, clock, _at(2026, 3, 1, 9, 0))
    assert _runs(engine) == [(soon, "birthday:2026")]
    # three days before 2 January is 30 December of the year before: the occasion is 2027's
    _scan(pipeline, clock, _at(2026, 12, 30, 11, 0))
    assert (new_year, "birthday:2027") in _runs(engine)


def test_a_date_in_the_traits(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    signed = _customer(engine, traits={"contract_date": "2021-03-01"})
    stamped = _customer(engine, traits={"contract_date": "2019-03-01T09:15:00Z"})
    _customer(engine, traits={"contract_date": "2021-03-02"})
    _customer(engine, traits={"contract_date": "soon"})
    _customer(engine, traits={"contract_date": 20210301})
    _customer(engine, traits={})
    renews = _customer(engine, traits={"renewal": "2026-03-01"})
    _customer(engine, traits={"renewal": "2025-03-01"})
    yearly = _scenario(engine, "{date: traits.contract_date, at_hour: 9}", at=_at(2026, 2, 1))
    once = _scenario(
        engine, "{date: traits.renewal, yearly: false, at_hour: 9}", at=_at(2026, 2, 1)
    )
    assert _scan(pipeline, clock, _at(2026, 3, 1, 9, 0)) == {yearly: 2, once: 1}
    assert _runs(engine, yearly) == [
        (signed, "traits.contract_date:2026"),
        (stamped, "traits.contract_date:2026"),
    ]
    assert _runs(engine, once) == [(renews, "traits.renewal:2026-03-01")]
    # a date that is not yearly never comes back
    assert _scan(pipeline, clock, _at(2027, 3, 1, 9, 0)) == {yearly: 2, once: 0}


def test_one_run_per_year(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    cid = _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    sid = _scenario(engine, "{date: birthday, at_hour: 10}", at=_at(2026, 2, 1))
    assert _scan(pipeline, clock, _at(2026, 3, 1, 8, 0)) == {sid: 1}
    assert _scan(pipeline, clock, _at(2026, 3, 1, 8, 1)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 1, 20, 0)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 2, 8, 0)) == {sid: 0}
    assert _runs(engine) == [(cid, "birthday:2026")]
    assert _scan(pipeline, clock, _at(2027, 3, 1, 8, 0)) == {sid: 1}
    assert _runs(engine) == [(cid, "birthday:2026"), (cid, "birthday:2027")]


def test_29_february_is_28_february_in_a_common_year(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    leap = _customer(engine, birthday=date(2000, 2, 29))
    feb28 = _customer(engine, birthday=date(2001, 2, 28))
    sid = _scenario(engine, "{date: birthday, at_hour: 10}", at=_at(2026, 1, 1))
    assert _scan(pipeline, clock, _at(2026, 2, 28, 12, 0)) == {sid: 2}
    assert _scan(pipeline, clock, _at(2026, 3, 1, 12, 0)) == {sid: 0}
    assert _runs(engine) == [(leap, "birthday:2026"), (feb28, "birthday:2026")]
    # in a leap year each on their own day
    assert _scan(pipeline, clock, _at(2028, 2, 28, 12, 0)) == {sid: 1}
    assert _runs(engine)[-1] == (feb28, "birthday:2028")
    assert _scan(pipeline, clock, _at(2028, 2, 29, 12, 0)) == {sid: 1}
    assert (leap, "birthday:2028") in _runs(engine)


# -- inactivity ------------------------------------------------------------------------


def test_thirty_days_without_an_order_and_a_new_spell(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    dormant = _customer(engine)
    recent = _customer(engine)
    _customer(engine)  # never ordered: not inactive, never active
    add_order(engine, dormant, T0 - timedelta(days=40), 100)
    add_order(engine, recent, T0 - timedelta(days=10), 100)
    sid = _scenario(engine, "{inactive: Order Completed, days: 30}")
    last = (T0 - timedelta(days=40)).date().isoformat()
    assert _scan(pipeline, clock, T0) == {sid: 1}
    assert _runs(engine) == [(dormant, f"inactive-since:{last}")]
    assert _scan(pipeline, clock, T0 + timedelta(minutes=1)) == {sid: 0}
    # 30 days after the recent order: not yet; a minute more than 30 days: yes
    assert _scan(pipeline, clock, T0 + timedelta(days=20)) == {sid: 0}
    assert _scan(pipeline, clock, T0 + timedelta(days=20, minutes=1)) == {sid: 1}
    # the dormant customer orders again, and falls silent again: a new spell, a new run
    add_order(engine, dormant, T0 + timedelta(days=25), 50)
    assert _scan(pipeline, clock, T0 + timedelta(days=50)) == {sid: 0}
    assert _scan(pipeline, clock, T0 + timedelta(days=56)) == {sid: 1}
    spell = (T0 + timedelta(days=25)).date().isoformat()
    assert _runs(engine, sid) == [
        (dormant, f"inactive-since:{last}"),
        (dormant, f"inactive-since:{spell}"),
        (recent, f"inactive-since:{(T0 - timedelta(days=10)).date().isoformat()}"),
    ]
    with engine.connect() as conn:
        context = conn.execute(
            sa.select(scenario_runs.c.context).where(scenario_runs.c.id == 1)
        ).scalar_one()
    assert context["trigger"] == {
        "name": "Inactivity",
        "properties": {"event": "Order Completed", "days": 30, "last": last},
    }


def test_inactivity_on_a_custom_event(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    gone, back, _never = (_customer(engine) for _ in range(3))

    def opened(cid: int, days_ago: int) -> None:
        at = T0 - timedelta(days=days_ago)
        with writing(engine) as conn:
            Pipeline(engine, SimulatedClock(at)).record(conn, cid, "App Opened", {})

    opened(gone, 45)
    opened(gone, 40)
    opened(back, 50)
    opened(back, 3)
    sid = _scenario(engine, "{inactive: App Opened, days: 30}")
    gone_since = (T0 - timedelta(days=40)).date().isoformat()
    assert _scan(pipeline, clock, T0) == {sid: 1}
    assert _runs(engine) == [(gone, f"inactive-since:{gone_since}")]
    # days: the cut-off is a whole day; "back" opened on day -3, so on day +28 it is
    # 31 days ago
    assert _scan(pipeline, clock, T0 + timedelta(days=27)) == {sid: 0}
    assert _scan(pipeline, clock, T0 + timedelta(days=28)) == {sid: 1}
    assert _scan(pipeline, clock, T0 + timedelta(days=28, minutes=1)) == {sid: 0}
    opened(gone, -30)  # opens the app again (on day +30) ...
    assert _scan(pipeline, clock, T0 + timedelta(days=61)) == {sid: 1}  # ... and leaves
    assert [k for c, k in _runs(engine) if c == gone] == [
        f"inactive-since:{gone_since}",
        f"inactive-since:{(T0 + timedelta(days=30)).date().isoformat()}",
    ]


# -- schedule ----------------------------------------------------------------------------


def _women(engine: sa.Engine, pipeline: Pipeline, members: list[int]) -> None:
    with writing(engine) as conn:
        lst = create_list(conn, "Women", "", T0)
        add_members(conn, pipeline, lst, members, T0)


WOMENS_DAY = '{schedule: "0 10 8 3 *", segment: Women, timezone: Europe/Moscow}'
FIRE = "2026-03-08T10:00:00+03:00"  # 07:00 UTC


def test_a_schedule_over_a_list_fires_once_across_restarts(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    a, b, c = (_customer(engine) for _ in range(3))
    _women(engine, pipeline, [a, b])
    sid = _scenario(engine, WOMENS_DAY)
    assert _scan(pipeline, clock, _at(2026, 3, 8, 6, 59)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 8, 7, 0, 30)) == {sid: 2}
    assert _runs(engine) == [(a, FIRE), (b, FIRE)]
    assert _scan(pipeline, clock, _at(2026, 3, 8, 7, 1, 30)) == {sid: 0}
    # a restart: a new process, a new index, the same store
    restarted = Pipeline(engine, clock)
    assert _scan(restarted, clock, _at(2026, 3, 8, 7, 5)) == {sid: 0}
    # even a crash between the runs and the mark repeats nothing: the fire is the key
    with writing(engine) as conn:
        conn.execute(app_settings.delete())
    assert _scan(restarted, clock, _at(2026, 3, 8, 7, 6)) == {sid: 0}
    assert c not in dict(_runs(engine))
    with engine.connect() as conn:
        trigger = conn.execute(sa.select(scenario_runs.c.context).limit(1)).scalar_one()["trigger"]
    assert trigger["properties"]["fired_at"] == FIRE


def test_missed_fires_within_a_day_start_once_and_older_ones_are_skipped(
    engine: sa.Engine,
) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    a = _customer(engine)
    _women(engine, pipeline, [a])
    sid = _scenario(engine, '{schedule: "0 10 * * *", segment: Women, timezone: Europe/Moscow}')
    assert _scan(pipeline, clock, _at(2026, 3, 2, 7, 0, 30)) == {sid: 1}
    # down over the next fire: two hours late, it still starts
    assert _scan(pipeline, clock, _at(2026, 3, 3, 9, 0)) == {sid: 1}
    # down over two fires: the latest (23 h old) starts, the one before does not
    assert _scan(pipeline, clock, _at(2026, 3, 6, 6, 0)) == {sid: 1}
    assert [k for _, k in _runs(engine)] == [
        "2026-03-02T10:00:00+03:00",
        "2026-03-03T10:00:00+03:00",
        "2026-03-05T10:00:00+03:00",
    ]


def test_a_fire_missed_by_more_than_a_day_is_skipped(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    a = _customer(engine)
    _women(engine, pipeline, [a])
    sid = _scenario(engine, WOMENS_DAY)
    assert _scan(pipeline, clock, _at(2026, 3, 8, 6, 0)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 9, 7, 1)) == {sid: 0}  # 24 h 1 min late
    assert _runs(engine) == []


# -- paused scenarios, the loop, the cost of a scan ---------------------------------------


def test_paused_scenarios_start_nothing(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    a = _customer(engine, birthday=date(1990, 3, 8), timezone="Europe/Moscow")
    add_order(engine, a, T0 - timedelta(days=60), 10)
    _women(engine, pipeline, [a])
    ids = [
        _scenario(engine, WOMENS_DAY),
        _scenario(engine, "{date: birthday, at_hour: 10}"),
        _scenario(engine, "{inactive: Order Completed, days: 30}"),
    ]
    assert _scan(pipeline, clock, _at(2026, 3, 8, 6, 0)) == {ids[0]: 0, ids[1]: 0, ids[2]: 1}
    with writing(engine) as conn:
        for sid in ids:
            set_status(conn, sid, "paused", _at(2026, 3, 8, 6, 30))
    assert _scan(pipeline, clock, _at(2026, 3, 8, 7, 30)) == {}
    assert len(_runs(engine)) == 1
    with writing(engine) as conn:
        for sid in ids:
            set_status(conn, sid, "active", _at(2026, 3, 8, 8, 0))
    # resumed the same day: the fire passed while paused and stays skipped; the birthday
    # is still today in Moscow
    assert _scan(pipeline, clock, _at(2026, 3, 8, 8, 0)) == {ids[0]: 0, ids[1]: 1, ids[2]: 0}


def test_a_long_scan_goes_on_at_the_next_one(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time_triggers, "CHUNK", 2)
    monkeypatch.setattr(time_triggers, "SCAN_SECONDS", 0.0)  # one page per scan
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    members = [_customer(engine) for _ in range(5)]
    _women(engine, pipeline, members)
    sid = _scenario(engine, WOMENS_DAY)
    fire = _at(2026, 3, 8, 7, 0, 30)
    started = [_scan(pipeline, clock, fire + timedelta(minutes=i))[sid] for i in range(4)]
    assert started == [2, 2, 1, 0]
    assert sorted(c for c, _ in _runs(engine)) == members
    with engine.connect() as conn:
        mark = conn.execute(sa.select(app_settings.c.value)).scalar_one()
    assert mark == {"last": (fire + timedelta(minutes=2)).isoformat()}  # once complete


def test_a_fire_while_paused_is_not_started_on_resume(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    _women(engine, pipeline, [_customer(engine)])
    sid = _scenario(engine, '{schedule: "0 10 * * *", segment: Women, timezone: Europe/Moscow}')
    assert _scan(pipeline, clock, _at(2026, 3, 2, 7, 0, 30)) == {sid: 1}
    with writing(engine) as conn:
        set_status(conn, sid, "paused", _at(2026, 3, 3, 6, 0))
    assert _scan(pipeline, clock, _at(2026, 3, 3, 7, 30)) == {}
    with writing(engine) as conn:
        set_status(conn, sid, "active", _at(2026, 3, 3, 8, 0))
    assert _scan(pipeline, clock, _at(2026, 3, 3, 8, 0)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 4, 7, 0, 30)) == {sid: 1}
    assert [k for _, k in _runs(engine)] == [
        "2026-03-02T10:00:00+03:00",
        "2026-03-04T10:00:00+03:00",
    ]


def test_a_scenario_another_worker_is_scanning_is_left_to_it(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: two scans cannot overlap there")
    clock = SimulatedClock(T0)
    pipeline = _pipeline(engine, clock)
    _customer(engine, birthday=date(1990, 3, 1))
    sid = _scenario(engine, "{date: birthday, at_hour: 10}", at=_at(2026, 2, 1))
    with engine.connect() as other, other.begin():
        other.execute(
            sa.select(scenarios.c.id).where(scenarios.c.id == sid).with_for_update()
        ).one()
        assert _scan(pipeline, clock, _at(2026, 3, 1, 12, 0)) == {sid: 0}
    assert _scan(pipeline, clock, _at(2026, 3, 1, 12, 1)) == {sid: 1}


def test_the_scenario_loop_scans_at_most_once_a_minute(engine: sa.Engine) -> None:
    from rapport.worker import ScenarioLoop

    clock = SimulatedClock(_at(2026, 3, 1, 6, 0))
    pipeline = _pipeline(engine, clock)
    a = _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    b = _customer(engine, birthday=date(1990, 3, 1), timezone="Europe/Moscow")
    _scenario(engine, "{date: birthday, at_hour: 10}", at=_at(2026, 2, 1))
    loop = ScenarioLoop(pipeline)
    clock.set(_at(2026, 3, 1, 7, 0))
    loop.run_once()
    assert [c for c, _ in _runs(engine)] == [a, b]
    with writing(engine) as conn:
        conn.execute(scenario_runs.delete())
    clock.advance(timedelta(seconds=30))
    loop.run_once()
    assert _runs(engine) == []  # within the minute: no scan
    clock.advance(timedelta(seconds=31))
    loop.run_once()
    assert [c for c, _ in _runs(engine)] == [a, b]


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _population(engine: sa.Engine, pipeline: Pipeline, n: int) -> None:
    """``n`` customers who all qualify for every trigger, and three scenarios whose first
    step waits (so starting is measured, not sending)."""
    ids = [_customer(engine, birthday=date(1990, 3, 8), timezone="Europe/Moscow") for _ in range(n)]
    with writing(engine) as conn:
        conn.execute(
            customers.update()
            .where(customers.c.id.in_(ids))
            .values(last_order_at=T0 - timedelta(days=40), orders_count=1)
        )
        add_members(conn, pipeline, create_list(conn, "Women", "", T0), ids, T0)
    wait = "  - {id: later, wait: {hours: 1}}\n" + HELLO
    for trigger in (
        WOMENS_DAY,
        "{date: birthday, at_hour: 10}",
        "{inactive: Order Completed, days: 30}",
    ):
        _scenario(engine, trigger, wait)


def test_statements_per_scan_do_not_grow_with_customers(engine: sa.Engine) -> None:
    fire = _at(2026, 3, 8, 7, 0, 30)
    counts: dict[int, tuple[int, int]] = {}
    for n in (10, 300):
        _clean(engine)
        clock = SimulatedClock(T0)
        pipeline = _pipeline(engine, clock)
        _population(engine, pipeline, n)
        with _statements(engine) as first:
            assert sorted(_scan(pipeline, clock, fire).values()) == [n, n, n]
        with _statements(engine) as again:
            assert sum(_scan(pipeline, clock, fire + timedelta(minutes=1)).values()) == 0
        if engine.dialect.name == "sqlite":
            # On SQLite, SQLAlchemy sends the engine's INSERT … RETURNING of runs once per
            # row (it cannot keep a multi-row one in order there); in process, no round
            # trip. Every statement of the scan itself is still counted.
            first = [s for s in first if not s.startswith("INSERT INTO scenario_runs")]
        # The webhook subscriptions are reloaded every 2 s of wall time, not per customer:
        # a slow machine crosses that boundary in one run and not the other.
        first = [s for s in first if "FROM webhook_subscriptions" not in s]
        again = [s for s in again if "FROM webhook_subscriptions" not in s]
        counts[n] = (len(first), len(again))
    assert counts[10] == counts[300], counts
