"""Message facts, attribution and the message metrics, through the real pipeline on both
stores: status events recorded the way the dispatcher and tracking record them, orders
ingested as a shop sends them."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.analytics.attribution import (
    AttributionSettings,
    parse_attribution,
    rebuild_attribution,
    save_attribution,
)
from rapport.analytics.message_facts import fold_message_events, rebuild_daily
from rapport.analytics.message_metrics import (
    MessageFilter,
    crm_revenue_share,
    message_metrics,
)
from rapport.analytics.periods import Period
from rapport.clock import SimulatedClock
from rapport.errors import InvalidInput
from rapport.ingest.messages import parse_message
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import message_daily, message_facts, order_attributions, segments
from tests.shop_helpers import identify

DAY = timedelta(days=1)


def _status(
    pipeline: Pipeline, cid: int, name: str, key: str, *, channel: str = "email", **origin: Any
) -> None:
    props = {"message_id": key, "channel": channel, **{k: str(v) for k, v in origin.items()}}
    with writing(pipeline.engine) as conn:
        pipeline.record(conn, cid, name, props)


def _send(pipeline: Pipeline, cid: int, key: str, **origin: Any) -> None:
    _status(pipeline, cid, "Message Queued", key, **origin)
    _status(pipeline, cid, "Message Sent", key, **origin)


def _order(pipeline: Pipeline, user: str, order_id: str, total: float) -> None:
    msg = parse_message(
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {"order_id": order_id, "total": total, "currency": "RUB"},
        },
        where="message",
        received_at=pipeline.clock.now(),
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    pipeline.ingest([msg])


def _credit(engine: sa.Engine, order_id: str) -> Any:
    from rapport.store.tables import orders

    with engine.connect() as conn:
        return conn.execute(
            sa.select(order_attributions)
            .join(orders, orders.c.id == order_attributions.c.order_pk)
            .where(orders.c.order_id == order_id)
        ).first()


@pytest.fixture
def pipeline(engine: sa.Engine, clock: SimulatedClock) -> Pipeline:
    return Pipeline(engine, clock)


def test_facts_count_each_outcome_once_and_keep_repeat_counts(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cid = identify(pipeline, "u1", email="u1@example.com")
    _send(pipeline, cid, "m1", campaign_id=7, variant="A")
    clock.advance(timedelta(hours=30))  # opened the next day: still counted on the send day
    for _ in range(3):
        _status(pipeline, cid, "Message Opened", "m1", campaign_id=7, variant="A")
    _status(pipeline, cid, "Message Clicked", "m1", campaign_id=7, variant="A")
    with engine.connect() as conn:
        fact = conn.execute(sa.select(message_facts)).one()
        daily = conn.execute(sa.select(message_daily)).all()
    assert (fact.opens, fact.clicks, fact.campaign_id, fact.variant) == (3, 1, "7", "A")
    assert fact.day == (clock.now() - timedelta(hours=30)).date()
    assert len(daily) == 1
    row = daily[0]
    assert (row.day, row.queued, row.sent, row.opened, row.clicked) == (fact.day, 1, 1, 1, 1)
    assert (row.scenario_id, row.step) == ("", "")


def test_events_without_a_message_key_are_left_out(engine: sa.Engine, pipeline: Pipeline) -> None:
    cid = identify(pipeline, "u1")
    with writing(engine) as conn:
        pipeline.record(conn, cid, "Message Opened", {"channel": "email"})
        pipeline.record(conn, cid, "Message Opened", {"message_id": "x"})
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(message_facts)).scalar() == 0


def test_last_click_wins_over_a_later_open_and_windows_bound_credit(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    a = identify(pipeline, "a")
    b = identify(pipeline, "b")
    c = identify(pipeline, "c")
    d = identify(pipeline, "d")
    for cid, key in ((a, "ma"), (a, "ma2"), (b, "mb"), (c, "mc"), (d, "md")):
        _send(pipeline, cid, key, campaign_id=key)
    _status(pipeline, a, "Message Clicked", "ma", campaign_id="ma")  # 4 days before: click
    _status(pipeline, c, "Message Clicked", "mc", campaign_id="mc")  # 6 days before: too old
    clock.advance(2 * DAY)
    _status(pipeline, d, "Message Opened", "md", campaign_id="md")  # 2 days before: too old
    clock.advance(2 * DAY - timedelta(hours=1))
    _status(pipeline, a, "Message Opened", "ma2", campaign_id="ma2")  # later, but an open
    _status(pipeline, b, "Message Opened", "mb", campaign_id="mb")  # 1 hour before: open
    clock.advance(timedelta(hours=1))
    _order(pipeline, "a", "o-a", 100)
    _order(pipeline, "b", "o-b", 50)
    clock.advance(2 * DAY)
    _order(pipeline, "c", "o-c", 70)
    _order(pipeline, "d", "o-d", 30)
    credit_a = _credit(engine, "o-a")
    assert (credit_a.message_key, credit_a.model, credit_a.campaign_id) == ("ma", "click", "ma")
    credit_b = _credit(engine, "o-b")
    assert (credit_b.message_key, credit_b.model) == ("mb", "open")
    assert _credit(engine, "o-c") is None
    assert _credit(engine, "o-d") is None


def test_per_channel_windows_and_rebuild(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cid = identify(pipeline, "s")
    _send(pipeline, cid, "sms1", channel="sms")
    _status(pipeline, cid, "Message Clicked", "sms1", channel="sms")
    clock.advance(2 * DAY)
    _order(pipeline, "s", "o-s", 40)
    assert _credit(engine, "o-s").model == "click"  # 2 days < the default 5
    with writing(engine) as conn:
        save_attribution(
            conn, parse_attribution({"channels": {"sms": {"click_days": 1}}}), clock.now()
        )
        assert rebuild_attribution(conn) == 0  # the click is now outside sms's window
    assert _credit(engine, "o-s") is None
    with writing(engine) as conn:
        save_attribution(conn, AttributionSettings(), clock.now())
        assert rebuild_attribution(conn) == 1
    assert _credit(engine, "o-s").message_key == "sms1"


def test_bad_attribution_settings_name_the_field(engine: sa.Engine, clock: SimulatedClock) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_attribution({"click_days": -1, "channels": {"email": {"open_days": "x"}}})
    where = {p.where for p in err.value.problems}
    assert where == {"click_days", "channels.email.open_days"}
    with pytest.raises(InvalidInput) as err, writing(engine) as conn:
        save_attribution(conn, parse_attribution({"channels": {"fax": {}}}), clock.now())
    assert err.value.problems[0].where == "channels.fax"


def test_metrics_rates_revenue_and_groups(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    start = clock.now().date()
    users = [f"u{i}" for i in range(10)]
    ids = {u: identify(pipeline, u) for u in users}
    for i, u in enumerate(users):  # campaign 1 variant A (u0-u4), variant B (u5-u9)
        _send(pipeline, ids[u], f"c1-{u}", campaign_id=1, variant="A" if i < 5 else "B")
    _status(pipeline, ids["u9"], "Message Bounced", "c1-u9", campaign_id=1, variant="B")
    for u in ("u0", "u1", "u2", "u5"):
        _status(pipeline, ids[u], "Message Opened", f"c1-{u}", campaign_id=1)
    for u in ("u0", "u5"):
        _status(pipeline, ids[u], "Message Clicked", f"c1-{u}", campaign_id=1)
    _status(pipeline, ids["u1"], "Message Unsubscribed", "c1-u1", campaign_id=1)
    clock.advance(DAY)
    _send(pipeline, ids["u0"], "s1-u0", scenario_id=3, step="welcome")
    _status(pipeline, ids["u0"], "Message Opened", "s1-u0", scenario_id=3, step="welcome")
    _order(pipeline, "u5", "o1", 200)  # credited to c1 B (click)
    _order(pipeline, "u2", "o2", 999)  # opened exactly a day ago: the window includes its edge
    _order(pipeline, "u0", "o3", 80)  # clicked c1 yesterday: the click beats today's open
    period = Period(start, start + DAY)
    with engine.connect() as conn:
        (total,) = message_metrics(conn, period)
        by_campaign = {
            m.key["campaign_id"]: m for m in message_metrics(conn, period, None, "campaign")
        }
        by_variant = message_metrics(conn, period, MessageFilter(campaign_id="1"), "variant")
        by_day = message_metrics(conn, period, None, "day")
        share = crm_revenue_share(conn, Period(start, start + DAY))
    t = total.as_json()
    assert (t["sent"], t["bounced"], t["delivered"], t["opened"], t["clicked"]) == (11, 1, 10, 5, 2)
    assert t["open_rate"] == 0.5 and t["ctr"] == 0.2 and t["ctor"] == 0.4
    assert t["unsubscribe_rate"] == 0.1 and t["bounce_rate"] == round(1 / 11, 6)
    assert _credit(engine, "o2").model == "open"
    credited = 200 + 80 + 999
    assert t["conversions"] == 3
    assert t["revenue"] == credited
    assert t["revenue_per_recipient"] == round(credited / 10, 4)
    c1 = by_campaign["1"].as_json()
    assert (c1["sent"], c1["delivered"], c1["opened"]) == (10, 9, 4)
    assert by_campaign[None].as_json()["sent"] == 1  # the scenario message
    variants = {m.key["variant"]: m.as_json() for m in by_variant}
    assert variants["B"]["bounced"] == 1 and variants["B"]["revenue"] == 200
    assert [m.key["day"] for m in by_day] == [start.isoformat(), (start + DAY).isoformat()]
    assert [m.sent for m in by_day] == [10, 1]
    assert share["revenue"] == 200 + 999 + 80
    assert share["crm_revenue"] == credited
    assert share["crm_share"] == round(credited / (200 + 999 + 80), 6)


def test_segment_filter_counts_members_only(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    from rapport.store.tables import segment_members

    a = identify(pipeline, "a")
    b = identify(pipeline, "b")
    _send(pipeline, a, "ma", campaign_id=1)
    _send(pipeline, b, "mb", campaign_id=1)
    _status(pipeline, b, "Message Clicked", "mb", campaign_id=1)
    clock.advance(timedelta(hours=2))
    _order(pipeline, "b", "ob", 10)
    now = clock.now()
    with writing(engine) as conn:
        sid = conn.execute(
            segments.insert()
            .values(name="vip", kind="static", created_at=now, updated_at=now)
            .returning(segments.c.id)
        ).scalar_one()
        conn.execute(segment_members.insert().values(segment_id=sid, customer_id=b, since=now))
    day = now.date()
    with engine.connect() as conn:
        (m,) = message_metrics(conn, Period(day, day), MessageFilter(segment_id=sid))
        with pytest.raises(LookupError):
            message_metrics(conn, Period(day, day), MessageFilter(segment_id=sid + 99))
        with pytest.raises(InvalidInput):
            message_metrics(conn, Period(day, day), None, "hour")
    assert (m.sent, m.clicked, m.conversions, m.revenue) == (1, 1, 1, 10.0)


def test_rebuild_daily_matches_what_was_kept_incrementally(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    cids = [identify(pipeline, f"u{i}") for i in range(6)]
    for i, cid in enumerate(cids):
        _send(pipeline, cid, f"m{i}", channel="sms" if i % 2 else "email", campaign_id=i % 3)
        if i % 3 == 0:
            _status(
                pipeline, cid, "Message Delivered", f"m{i}", channel="sms" if i % 2 else "email"
            )
        clock.advance(timedelta(hours=9))
    with engine.connect() as conn:
        kept = sorted(tuple(r) for r in conn.execute(sa.select(message_daily)))
    with writing(engine) as conn:
        rebuild_daily(conn)
    with engine.connect() as conn:
        rebuilt = sorted(tuple(r) for r in conn.execute(sa.select(message_daily)))
    assert rebuilt == kept and len(kept) >= 3


def test_concurrent_opens_count_once(engine: sa.Engine, pipeline: Pipeline) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")  # the race needs concurrent writers
    cid = identify(pipeline, "u")
    _send(pipeline, cid, "m")
    now = pipeline.clock.now()
    barrier = threading.Barrier(4)

    def open_it() -> None:
        barrier.wait()
        with writing(engine) as conn:
            row = {
                "customer_id": cid,
                "name": "Message Opened",
                "occurred_at": now,
                "properties": {"message_id": "m", "channel": "email"},
            }
            fold_message_events(conn, [row])

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        assert conn.execute(sa.select(message_daily.c.opened)).scalar_one() == 1
        assert conn.execute(sa.select(message_facts.c.opens)).scalar_one() == 4


def test_an_order_sent_again_with_another_time_moves_its_credit(
    engine: sa.Engine, pipeline: Pipeline, clock: SimulatedClock
) -> None:
    """The CRM share finds credits by their copy of the order's time: it follows the order."""
    cid = identify(pipeline, "u1")
    _send(pipeline, cid, "m1", campaign_id=1)
    _status(pipeline, cid, "Message Clicked", "m1", campaign_id=1)
    clock.advance(timedelta(hours=2))
    _order(pipeline, "u1", "o1", 120)
    first_day = clock.now().date()
    assert _credit(engine, "o1").occurred_at == clock.now()
    clock.advance(DAY * 2)  # the shop sends the order again: its time is now
    _order(pipeline, "u1", "o1", 120)
    assert _credit(engine, "o1").occurred_at == clock.now()
    with engine.connect() as conn:
        before = crm_revenue_share(conn, Period(first_day, first_day + DAY))
        after = crm_revenue_share(conn, Period(clock.now().date(), clock.now().date() + DAY))
    assert (before["revenue"], before["crm_revenue"]) == (0, 0)
    assert (after["revenue"], after["crm_revenue"]) == (120, 120)
