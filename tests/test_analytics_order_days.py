"""The dashboard's business figures from the order roll-ups equal the statement over the
orders, on a random shop that goes through everything that moves an order's place in its
customer's history: orders arriving late and out of order, ties in time, partial and full
refunds, cancellations, updated totals, profiles merged (anonymous activity identified, an
alias), and erasure. Both stores, many periods and lapse settings; and the roll-ups kept
order by order equal the ones rebuilt set-based and the ones the migration fills.
"""

from __future__ import annotations

import random
import threading
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.analytics.business import dashboard_business
from rapport.analytics.order_days import rebuild, window_facts
from rapport.analytics.periods import EPOCH, Period
from rapport.analytics.scope import Scope, known_since
from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.customers.privacy import erase_customer
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.segments.lifecycle import LifecycleThresholds
from rapport.store.engine import create_engine, writing
from rapport.store.migrate import upgrade
from rapport.store.tables import (
    customer_merges,
    customers,
    order_days,
    order_nth_days,
    order_sequence,
    orders,
)
from tests.conftest import T0
from tests.helpers import assert_no_orphans
from tests.postgres_server import create_database, server_url

DAY = timedelta(days=1)
RATIOS = ("average_check", "arpu", "repeat_order_share")


def _message(raw: dict[str, Any]) -> Any:
    return parse_message(raw, where="message", received_at=T0, phone_region="RU", max_bytes=32768)


def _track(who: dict[str, str], event: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        **who,
        "event": event,
        "properties": props,
        "timestamp": at.isoformat(),
    }


class Shop:
    """Random people and their orders, sent through the pipeline in shuffled batches."""

    def __init__(self, engine: sa.Engine, seed: int, people: int) -> None:
        self.engine = engine
        self.rng = random.Random(seed)
        self.pipeline = Pipeline(engine, SimulatedClock(T0))
        self.people = people
        self.placed: list[tuple[dict[str, str], str, datetime, float]] = []
        self.numbers = 0
        self.anonymous = set(self.rng.sample(range(people), people // 4))
        self.twins = set(self.rng.sample(sorted(set(range(people)) - self.anonymous), people // 8))

    def send(self, raws: list[dict[str, Any]], *, shuffle: bool = True) -> None:
        if shuffle:
            self.rng.shuffle(raws)
        while raws:
            size = self.rng.randint(1, 60)
            self.pipeline.ingest([_message(r) for r in raws[:size]])
            raws = raws[size:]

    def order(self, who: dict[str, str], at: datetime) -> dict[str, Any]:
        self.numbers += 1
        oid = f"o{self.numbers}"
        total = round(self.rng.uniform(5, 400), 2)
        self.placed.append((who, oid, at, total))
        return _track(who, "Order Completed", at, order_id=oid, total=total)

    def orders_of(self, i: int, signup: datetime) -> list[dict[str, Any]]:
        k = self.rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 4, 6, 9, 14])
        out: list[dict[str, Any]] = []
        at = signup
        for j in range(k):
            if self.rng.random() >= 0.06 or j == 0:  # some ties: two orders at one moment
                at = signup + (T0 - signup) * self.rng.random()
            who = {"userId": f"u{i}"}
            if i in self.anonymous and j % 2 == 0:
                who = {"anonymousId": f"a{i}"}
            elif i in self.twins and j % 3 == 0:
                who = {"userId": f"v{i}"}
            out.append(self.order(who, at))
        return out

    def first_phase(self) -> None:
        """People sign up; their orders arrive in any order."""
        raws: list[dict[str, Any]] = []
        signups: list[dict[str, Any]] = []
        for i in range(self.people):
            signup = T0 - DAY * self.rng.uniform(1, 500)
            signups.append({"type": "identify", "userId": f"u{i}", "timestamp": signup.isoformat()})
            if i in self.twins:
                signups.append(
                    {"type": "identify", "userId": f"v{i}", "timestamp": signup.isoformat()}
                )
            raws += self.orders_of(i, signup)
        self.send(signups, shuffle=False)
        self.send(raws)

    def second_phase(self) -> None:
        """Merges, refunds, cancellations, updated totals and more late orders, mixed."""
        raws: list[dict[str, Any]] = []
        for i in self.anonymous:
            raws.append(
                {
                    "type": "identify",
                    "userId": f"u{i}",
                    "anonymousId": f"a{i}",
                    "timestamp": T0.isoformat(),
                }
            )
        for i in self.twins:
            raws.append(
                {
                    "type": "alias",
                    "userId": f"u{i}",
                    "previousId": f"v{i}",
                    "timestamp": T0.isoformat(),
                }
            )
        raws += self.changes(0.25)
        for _ in range(self.people // 3):
            i = self.rng.randrange(self.people)
            raws.append(self.order({"userId": f"u{i}"}, T0 - DAY * self.rng.uniform(0, 480)))
        self.send(raws)

    def changes(self, share: float) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        for who, oid, at, total in self.rng.sample(self.placed, int(len(self.placed) * share)):
            later = at + DAY * self.rng.uniform(0, 3)
            roll = self.rng.random()
            if roll < 0.3:
                raws.append(_track(who, "Order Cancelled", later, order_id=oid))
            elif roll < 0.55:
                raws.append(_track(who, "Order Refunded", later, order_id=oid))
            elif roll < 0.85:
                part = round(total * self.rng.uniform(0.05, 0.6), 2)
                raws.append(_track(who, "Order Refunded", later, order_id=oid, total=part))
            else:
                raws.append(
                    _track(
                        who,
                        "Order Updated",
                        later,
                        order_id=oid,
                        total=round(self.rng.uniform(5, 400), 2),
                    )
                )
        return raws

    def third_phase(self) -> None:
        """Some customers are erased; their orders stay (and are refunded); those people
        come back as new profiles and order again."""
        with self.engine.connect() as conn:
            live = list(
                conn.execute(
                    sa.select(customers.c.id).where(
                        customers.c.merged_into.is_(None), customers.c.orders_count > 0
                    )
                ).scalars()
            )
        erased = self.rng.sample(sorted(live), max(3, len(live) // 12))
        with writing(self.engine) as conn:
            for cid in erased:
                erase_customer(conn, cid, T0)
        # Updated totals now come under the person's user id, which names a new profile:
        # the order stays with the erased one, whose figures follow it.
        raws = self.changes(0.08)
        for i in self.rng.sample(range(self.people), self.people // 5):
            raws.append(self.order({"userId": f"u{i}"}, T0 - DAY * self.rng.uniform(0, 300)))
        self.send(raws)


def _periods(rng: random.Random, count: int) -> list[tuple[Period, LifecycleThresholds]]:
    today = T0.date()
    out = [
        (Period(today - 29 * DAY, today), LifecycleThresholds(10, 20, 3)),
        (Period(EPOCH, today), LifecycleThresholds(45, 120, 4)),
    ]
    while len(out) < count:
        first = today - DAY * rng.randint(-3, 520)
        last = first + DAY * rng.randint(0, 150)
        lapsed = rng.choice([1, 2, 7, 20, 45, rng.randint(2, 400)])
        active = rng.randint(1, lapsed - 1) if lapsed > 1 else None
        if active is None:
            lapsed, active = 2, 1
        out.append((Period(first, last), LifecycleThresholds(active, lapsed, rng.randint(3, 7))))
    return out


def assert_same(engine: sa.Engine, rng: random.Random, count: int) -> int:
    """The roll-ups' figures and the statement's for ``count`` periods; returns how many
    of the periods had orders (so a test can tell the comparison was not empty)."""
    busy = 0
    with engine.connect() as conn:
        for period, thresholds in _periods(rng, count):
            fast = dashboard_business(conn, period, thresholds=thresholds)
            slow = dashboard_business(conn, period, thresholds=thresholds, from_orders=True)
            where = f"{period} {thresholds}"
            assert fast.keys() == slow.keys(), where
            for key in fast:
                if key in RATIOS:
                    a, b = fast[key], slow[key]
                    assert (a["status"], a.get("reason")) == (b["status"], b.get("reason")), where
                    if b["value"] is None:
                        assert a["value"] is None, where
                    else:
                        assert a["value"] == pytest.approx(b["value"], rel=1e-9), where
                else:
                    assert fast[key] == slow[key], f"{key} over {where}"
            busy += fast["orders"] > 0
    return busy


def snapshot(conn: sa.Connection) -> tuple[Any, Any, Any]:
    """The three tables as sets/maps; counters at zero are the same as no row."""
    s = order_sequence.c
    places = set(conn.execute(sa.select(s.order_pk, s.customer_id, s.day, s.prev_day, s.nth,
                                         s.net_micros)).all())  # fmt: skip
    d = order_days.c  # summed over the stripes, as readers do
    gaps = {
        (day, prev): (n, money)
        for day, prev, n, money in conn.execute(
            sa.select(
                d.day, d.prev_day, sa.func.sum(d.orders), sa.func.sum(d.revenue_micros)
            ).group_by(d.day, d.prev_day)
        )
        if n or money
    }
    r = order_nth_days.c
    nths = {
        (nth, day): n
        for nth, day, n in conn.execute(
            sa.select(r.nth, r.day, sa.func.sum(r.orders)).group_by(r.nth, r.day)
        )
        if n
    }
    return places, gaps, nths


def assert_rebuild_agrees(engine: sa.Engine) -> None:
    """What was kept order by order is what ``rebuild`` makes of the orders (rolled back)."""
    with engine.connect() as conn:
        kept = snapshot(conn)
        conn.rollback()
        counted = rebuild(conn)
        rebuilt = snapshot(conn)
        conn.rollback()
    assert counted == len(kept[0])
    assert kept[0] == rebuilt[0]
    assert kept[1] == rebuilt[1]
    assert kept[2] == rebuilt[2]


def test_the_roll_ups_give_the_statements_figures(engine: sa.Engine) -> None:
    shop = Shop(engine, seed=41, people=120)
    rng = random.Random(5)
    shop.first_phase()
    assert assert_same(engine, rng, 12) >= 8
    assert_rebuild_agrees(engine)
    shop.second_phase()
    assert assert_same(engine, rng, 12) >= 8
    assert_rebuild_agrees(engine)
    shop.third_phase()
    assert assert_same(engine, rng, 40) >= 25
    assert_rebuild_agrees(engine)
    assert_no_orphans(engine)
    # What the shop went through, so the comparisons above covered it.
    with engine.connect() as conn:
        merges = conn.execute(sa.select(customer_merges.c.details)).scalars().all()
        assert sum(1 for m in merges if m.get("orders")) >= 10
        statuses = dict(
            conn.execute(
                sa.select(orders.c.status, sa.func.count()).group_by(orders.c.status)
            ).all()
        )
        assert statuses.get("cancelled", 0) >= 10 and statuses.get("refunded", 0) >= 10
        partly = conn.execute(
            sa.select(sa.func.count()).where(orders.c.status == "completed", orders.c.refunded > 0)
        ).scalar_one()
        assert partly >= 10
        erased_buyers = conn.execute(
            sa.select(sa.func.count()).where(
                customers.c.erased_at.is_not(None), customers.c.orders_count > 0
            )
        ).scalar_one()
        assert erased_buyers >= 3
        # Orders placed earlier than one of the same customer's stored before them.
        a, b = orders.alias("a"), orders.alias("b")
        late = conn.execute(
            sa.select(sa.func.count()).where(
                a.c.customer_id == b.c.customer_id,
                a.c.id > b.c.id,
                a.c.occurred_at < b.c.occurred_at,
            )
        ).scalar_one()
        assert late >= 50


def test_concurrent_writers_keep_the_roll_ups_exact(engine: sa.Engine) -> None:
    """Several pipelines ordering for the same customers at once: each history is written
    by difference under the customer's lock, so no count is lost or counted twice."""
    people = [f"c{i}" for i in range(12)]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        pipeline = Pipeline(engine, SimulatedClock(T0))
        try:
            for batch in range(12):
                raws = []
                for k in range(rng.randint(1, 8)):
                    at = T0 - DAY * rng.uniform(0, 90)
                    oid = f"w{seed}-{batch}-{k}"
                    who = {"userId": rng.choice(people)}
                    raws.append(_track(who, "Order Completed", at, order_id=oid, total=10.5))
                    if rng.random() < 0.2:
                        raws.append(_track(who, "Order Cancelled", at + DAY, order_id=oid))
                pipeline.ingest([_message(r) for r in raws])
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    Pipeline(engine, SimulatedClock(T0)).ingest(
        [_message({"type": "identify", "userId": p}) for p in people]
    )
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_rebuild_agrees(engine)
    assert assert_same(engine, random.Random(2), 10) >= 5


def test_a_store_upgraded_with_orders_gets_its_roll_ups(tmp_path: Any) -> None:
    """Migration 0014 fills the roll-ups from the orders already stored, as ``rebuild``."""
    sqlite_url = f"sqlite:///{tmp_path}/upgrade.db"
    pg_url, drop = create_database(server_url(), "rapport_order_days")
    try:
        for url in (sqlite_url, pg_url):
            engine = create_engine(url)
            upgrade(engine, "0013")
            rng = random.Random(3)
            with writing(engine) as conn:
                for cid in range(1, 61):
                    conn.execute(
                        customers.insert().values(
                            id=cid, created_at=T0 - 400 * DAY, updated_at=T0, traits={}
                        )
                    )
                at = T0
                for n in range(400):
                    if rng.random() > 0.1:  # ties now and then
                        at = T0 - DAY * rng.uniform(0, 400)
                    total = round(rng.uniform(1, 90), 2)
                    status = rng.choice(["completed"] * 8 + ["refunded", "cancelled"])
                    conn.execute(
                        orders.insert().values(
                            order_id=f"m{n}",
                            customer_id=rng.randint(1, 60),
                            status=status,
                            total=total,
                            refunded=round(total * rng.random(), 2) if rng.random() < 0.2 else 0,
                            channel="online",
                            occurred_at=at,
                            updated_at=at,
                        )
                    )
            upgrade(engine)
            assert_rebuild_agrees(engine)
            with engine.connect() as conn:
                assert conn.execute(
                    sa.select(sa.func.count()).select_from(order_sequence)
                ).scalar_one()
            engine.dispose()
    finally:
        drop()  # type: ignore[operator]


def test_a_segment_is_counted_from_its_orders(engine: sa.Engine) -> None:
    """The roll-ups count everyone; asked for a segment's figures they refuse, and the
    dashboard's business block goes to the orders instead."""
    period = Period(date(2026, 2, 1), date(2026, 2, 28))
    scope = Scope(period, LifecycleThresholds(10, 20, 3), segment_id=1, segment_name="Kazan")
    with engine.connect() as conn, pytest.raises(ValueError, match="segment"):
        window_facts(conn, scope)


def test_acquisitions_read_the_index_of_first_known_moments(engine: sa.Engine) -> None:
    """The customers first known in the period are an index range, not a scan of every
    customer: the query's expression is the index's (migration 0014)."""
    period = Period(date(2026, 2, 1), date(2026, 2, 28))
    known = known_since()
    query = sa.select(sa.func.count()).where(
        customers.c.merged_into.is_(None), known >= period.start, known < period.end
    )
    with engine.connect() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql.replace("%", "%%"))
            )
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_customers_known_since" in plan, plan


def test_the_rebuild_command_restores_the_roll_ups(engine: sa.Engine) -> None:
    """Orders written around the pipeline (a bulk load, a restore) leave the roll-ups behind;
    ``rapport analytics rebuild`` numbers the orders again and the figures are right."""
    shop = Shop(engine, seed=7, people=40)
    shop.first_phase()
    with engine.connect() as conn:
        kept = snapshot(conn)
    with writing(engine) as conn:
        for table in (order_nth_days, order_days, order_sequence):
            conn.execute(table.delete())
    with engine.connect() as conn:
        period = Period(T0.date() - 89 * DAY, T0.date())
        assert dashboard_business(conn, period)["orders"] == 0  # what a stale store shows
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        cli, ["analytics", "rebuild", "--no-facts", "--no-attribution", "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    assert f"{len(kept[0]):,} counted orders" in result.output
    with engine.connect() as conn:
        assert snapshot(conn) == kept
    assert assert_same(engine, random.Random(9), 8) >= 4


def test_an_order_updated_by_another_profile_moves_its_owners_figures(engine: sa.Engine) -> None:
    """An order of an erased profile, updated afterwards under the person's user id (which
    now names a new profile): the order keeps its owner, whose figures must follow it."""
    pipeline = Pipeline(engine, SimulatedClock(T0))
    at = T0 - 5 * DAY
    who = {"userId": "erased-later"}
    pipeline.ingest([_message(_track(who, "Order Completed", at, order_id="x1", total=100.0))])
    with writing(engine) as conn:
        owner = conn.execute(sa.select(orders.c.customer_id)).scalar_one()
        erase_customer(conn, owner, T0)
    pipeline.ingest([_message(_track(who, "Order Updated", at, order_id="x1", total=40.0))])
    with engine.connect() as conn:
        assert conn.execute(sa.select(orders.c.customer_id, orders.c.total)).one() == (owner, 40.0)
        assert conn.execute(
            sa.select(customers.c.revenue).where(customers.c.id == owner)
        ).scalar_one() == pytest.approx(40.0)
    assert_rebuild_agrees(engine)
