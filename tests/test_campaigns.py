"""Campaigns on SQLite and PostgreSQL: the frozen audience, variant weights and the control
group, policy skips and fallbacks, resuming after a crash, local hours, throttling,
scheduled starts, cancelling, and a whole send through the outbox and the dispatcher
whose report matches what was delivered."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.errors import InvalidInput
from rapport.messaging.campaign_report import campaign_report
from rapport.messaging.campaign_send import SendReport, send_campaign, start_due_campaigns
from rapport.messaging.campaign_start import (
    assignment,
    cancel_campaign,
    slot_of,
    start_campaign,
    variant_bounds,
)
from rapport.messaging.campaigns import (
    Campaign,
    CampaignConflict,
    create_campaign,
    get_campaign,
    set_options,
    update_campaign,
)
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.compose import Origin, Tracking, compose
from rapport.messaging.outbox import CLICKED, OPENED, Fallback, event_for
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template, get_template
from rapport.messaging.tracking import Links
from rapport.pipeline import Pipeline
from rapport.segments.definitions import create_segment
from rapport.segments.lists import create_list
from rapport.segments.membership import SegmentIndex
from rapport.segments.sweep import sweep
from rapport.store.engine import writing
from rapport.store.tables import campaign_audience, customers, events, outbox, segment_members
from rapport.worker import campaign_recorder, dispatcher_for, run_campaigns
from tests.conftest import T0
from tests.helpers import table_counts

LINKS = Links("https://shop.example", b"k" * 32)
TRACKING = Tracking(LINKS)
_numbers = itertools.count(1)


# -- building a shop -------------------------------------------------------------------


def people(engine: sa.Engine, n: int, **values: Any) -> list[int]:
    """``n`` customers with distinct e-mail addresses (``email=None`` for none)."""
    rows = []
    for _ in range(n):
        i = next(_numbers)
        row = {
            "created_at": T0,
            "updated_at": T0,
            "traits": {},
            "first_name": f"P{i}",
            "email": f"c{i}@example.com",
        }
        rows.append(row | values)
    with writing(engine) as conn:
        ids = conn.execute(customers.insert().returning(customers.c.id), rows).scalars()
        return sorted(int(i) for i in ids)


def subscribe(
    engine: sa.Engine, channel: str, ids: Sequence[int], status: str = "subscribed"
) -> None:
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, channel, status, "test", T0) for cid in ids])


def template(engine: sa.Engine, name: str, subject: str, channel: str = "email") -> int:
    if channel == "email":
        kind = "html"
        body = '<p>Hi {{ customer.first_name }}</p><a href="https://shop.example/sale">Sale</a>'
    else:
        kind, body = "text", f"{subject} for {{{{ customer.first_name }}}}"
    with writing(engine) as conn:
        tpl = create_template(
            conn,
            name=name,
            channel=channel,
            kind=kind,
            variants={"en": {"subject": subject, "body": body}},
            now=T0,
        )
    return tpl.id


def audience(engine: sa.Engine, ids: Sequence[int], name: str = "audience") -> int:
    with writing(engine) as conn:
        lst = create_list(conn, name, "", T0)
        join_in(conn, lst.id, ids)
    return lst.id


def join_in(conn: sa.Connection, list_id: int, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(
            segment_members.insert(),
            [{"segment_id": list_id, "customer_id": c, "since": T0} for c in ids],
        )


def campaign(engine: sa.Engine, now: datetime = T0, **fields: Any) -> Campaign:
    with writing(engine) as conn:
        return create_campaign(conn, {"name": f"c{next(_numbers)}"} | fields, now)


def start(engine: sa.Engine, campaign_id: int, now: datetime) -> Campaign:
    with writing(engine) as conn:
        return start_campaign(conn, campaign_id, now)


def send(engine: sa.Engine, campaign_id: int, clock: SimulatedClock, **kw: Any) -> SendReport:
    options: dict[str, Any] = {
        "clock": clock,
        "record": campaign_recorder(Pipeline(engine, clock)),
        "tracking": TRACKING,
    }
    return send_campaign(engine, campaign_id, **(options | kw))


def rows(engine: sa.Engine, table: sa.Table, *where: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).where(*where)).all())


def simple(engine: sa.Engine, ids: Sequence[int], **fields: Any) -> Campaign:
    """An e-mail campaign with one variant to a new list of ``ids``."""
    tpl = template(engine, f"t{next(_numbers)}", "Hello {{ customer.first_name }}")
    list_id = audience(engine, ids, f"l{next(_numbers)}")
    spec = {
        "channel": "email",
        "segment_id": list_id,
        "variants": [{"name": "A", "template_id": tpl}],
    }
    return campaign(engine, **(spec | fields))


# -- tests -----------------------------------------------------------------------------


def test_audience_is_frozen_at_start(engine: sa.Engine, clock: SimulatedClock) -> None:
    early = people(engine, 5)
    erased = people(engine, 1, erased_at=T0)
    subscribe(engine, "email", early + erased)
    c = simple(engine, early + erased)
    started = start(engine, c.id, clock.now())
    assert started.status == "sending" and started.started_at == T0
    late = people(engine, 1)
    subscribe(engine, "email", late)
    with writing(engine) as conn:
        join_in(conn, c.segment_id, late)  # joins after the start, before the send
    report = send(engine, c.id, clock)
    assert (report.status, report.queued, report.skipped) == ("sent", 5, 0)
    sent_to = {r.customer_id for r in rows(engine, outbox)}
    assert sent_to == set(early)
    assert {r.customer_id for r in rows(engine, campaign_audience)} == set(early)
    with pytest.raises(CampaignConflict):
        start(engine, c.id, clock.now())  # a second start does nothing
    assert get_campaign_(engine, c.id).status == "sent"


def get_campaign_(engine: sa.Engine, campaign_id: int) -> Campaign:
    with engine.connect() as conn:
        return get_campaign(conn, campaign_id)


def test_rule_segments_are_read_from_their_current_members(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    kazan = people(engine, 3, city="Kazan")
    people(engine, 2, city="Omsk")
    with writing(engine) as conn:
        seg = create_segment(
            conn, "kazan", "", {"attribute": "city", "op": "eq", "value": "Kazan"}, T0
        )
        sweep(conn, SegmentIndex().current(conn), T0, [seg.id], backfill=True)
    tpl = template(engine, "t", "Hi")
    c = campaign(
        engine, channel="email", segment_id=seg.id, variants=[{"name": "A", "template_id": tpl}]
    )
    start(engine, c.id, clock.now())
    assert sorted(r.customer_id for r in rows(engine, campaign_audience)) == kazan


def test_variant_weights_and_control_group_are_honoured(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    ids = people(engine, 5000)
    list_id = audience(engine, ids)
    a, b, c_ = (template(engine, n, n) for n in ("ta", "tb", "tc"))
    variants = [
        {"name": "A", "template_id": a, "weight": 50},
        {"name": "B", "template_id": b, "weight": 30},
        {"name": "C", "template_id": c_, "weight": 20},
    ]
    c = campaign(engine, channel="email", segment_id=list_id, variants=variants, control_percent=10)
    started = start(engine, c.id, clock.now())
    got = {r.customer_id: r for r in rows(engine, campaign_audience)}
    assert len(got) == 5000
    # Reproducible: the SQL draw is exactly the Python one, customer by customer.
    for cid, row in got.items():
        assert row.variant == assignment(started, cid)
        assert row.status == ("control" if row.variant == "control" else "pending")
    counts = Counter(r.variant for r in got.values())
    expected = {"control": 500, "A": 2250, "B": 1350, "C": 900}
    chi2 = sum((counts[k] - e) ** 2 / e for k, e in expected.items())
    assert chi2 < 16.27, (counts, chi2)  # df = 3, p = 0.001
    # The control draw is independent of the variant draw: the holdout takes its 10 % from
    # every variant alike, so the variants the control customers would have drawn keep the
    # weights too.
    bounds = variant_bounds(started.variants)
    would = Counter(
        next(n for n, bound in bounds if slot_of(c.id, cid, "variant") < bound)
        for cid, row in got.items()
        if row.variant == "control"
    )
    total = sum(would.values())
    chi2 = sum(
        (would[k] - total * w) ** 2 / (total * w) for k, w in (("A", 0.5), ("B", 0.3), ("C", 0.2))
    )
    assert chi2 < 13.82, would  # df = 2, p = 0.001
    assert rows(engine, outbox) == []


def test_policy_skips_and_fallbacks(engine: sa.Engine, clock: SimulatedClock) -> None:
    a, b, c, d = people(engine, 3, phone="+79990001122") + people(engine, 1, email=None)
    subscribe(engine, "email", [a, d])
    subscribe(engine, "email", [c], "unsubscribed")
    subscribe(engine, "sms", [b])
    email = template(engine, "mail", "Spring")
    sms = template(engine, "sms", "SMS", channel="sms")
    camp = campaign(
        engine,
        channel="email",
        segment_id=audience(engine, [a, b, c, d]),
        variants=[{"name": "A", "template_id": email}],
        fallback=[{"channel": "sms", "template_id": sms}],
    )
    start(engine, camp.id, clock.now())
    report = send(engine, camp.id, clock)
    assert (report.queued, report.skipped) == (1, 3)
    status = {r.customer_id: (r.status, r.reason) for r in rows(engine, campaign_audience)}
    assert status == {
        a: ("queued", None),
        b: ("skipped", "no consent for email"),
        c: ("skipped", "unsubscribed from email"),
        d: ("skipped", "no email address"),
    }
    msgs = {r.idempotency_key: r for r in rows(engine, outbox)}
    fallback = msgs[f"campaign:{camp.id}:customer:{b}:fallback:sms"]
    assert (fallback.status, fallback.channel, fallback.recipient) == (
        "queued",
        "sms",
        "+79990001122",
    )
    names = {r.id: r.first_name for r in rows(engine, customers)}
    assert fallback.body_text == f"SMS for {names[b]}"
    assert fallback.subject == "SMS" and fallback.variant == "A"  # its own, not "Spring"
    assert msgs[f"campaign:{camp.id}:customer:{a}"].fallback == []  # a has no sms consent
    with engine.connect() as conn:
        data = campaign_report(conn, get_campaign(conn, camp.id))
    assert data["total"]["skipped_by_reason"] == {
        "no consent for email": 1,
        "unsubscribed from email": 1,
        "no email address": 1,
    }
    assert data["by_channel"]["sms"] == {"waiting": 1}


def test_a_crash_mid_campaign_resumes_without_sending_twice(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    ids = people(engine, 25)
    subscribe(engine, "email", ids)
    c = simple(engine, ids)
    start(engine, c.id, clock.now())
    real = campaign_recorder(Pipeline(engine, clock))
    calls = 0

    def crash_on_second_chunk(conn: sa.Connection, events: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the worker died")
        real(conn, events)

    with pytest.raises(RuntimeError):
        send(engine, c.id, clock, record=crash_on_second_chunk, chunk_size=10, worker_id="w1")
    by_status = Counter(r.status for r in rows(engine, campaign_audience))
    assert by_status == {"queued": 10, "pending": 15}
    assert len(rows(engine, outbox)) == 10
    # Another worker resumes at once: the failed one gave its lease back.
    report = send(engine, c.id, clock, chunk_size=10, worker_id="w2")
    assert (report.status, report.queued, report.done, report.total) == ("sent", 15, 25, 25)
    keys = [r.idempotency_key for r in rows(engine, outbox)]
    assert sorted(keys) == sorted(f"campaign:{c.id}:customer:{cid}" for cid in ids)
    queued = Counter(r.customer_id for r in rows(engine, events, events.c.name == "Message Queued"))
    assert queued == dict.fromkeys(ids, 1)


def test_one_process_sends_a_campaign_at_a_time(engine: sa.Engine, clock: SimulatedClock) -> None:
    ids = people(engine, 3)
    subscribe(engine, "email", ids)
    c = simple(engine, ids)
    start(engine, c.id, clock.now())
    with writing(engine) as conn:
        until = (clock.now() + timedelta(minutes=5)).isoformat()
        set_options(
            conn, get_campaign(conn, c.id, lock=True), lease={"by": "other", "until": until}
        )
    assert send(engine, c.id, clock).busy
    assert rows(engine, outbox) == []
    clock.advance(timedelta(minutes=6))  # the other process died: its lease ran out
    assert send(engine, c.id, clock).status == "sent"
    assert len(rows(engine, outbox)) == 3


def _due(engine: sa.Engine) -> dict[int, datetime]:
    return {r.customer_id: r.next_attempt_at for r in rows(engine, outbox)}


def test_local_hour_sends_at_each_customers_own_hour(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    moscow, new_york, utc, unknown = (
        people(engine, 1, timezone="Europe/Moscow")
        + people(engine, 1, timezone="America/New_York")
        + people(engine, 1, timezone="UTC")
        + people(engine, 1, timezone=None)
    )
    everyone = [moscow, new_york, utc, unknown]
    subscribe(engine, "email", everyone)
    # 12:00 UTC: 10:00 has passed in Moscow and UTC (tomorrow), not yet in New York.
    c = simple(engine, everyone, local_hour=10, throttle_per_minute=1)
    start(engine, c.id, clock.now())
    send(engine, c.id, clock)
    assert _due(engine) == {
        moscow: datetime(2026, 3, 2, 7, 0, tzinfo=UTC),
        new_york: datetime(2026, 3, 1, 15, 0, tzinfo=UTC),
        utc: datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        unknown: datetime(2026, 3, 2, 10, 1, tzinfo=UTC),  # UTC too; the throttle moves it
    }
    # A local hour inside quiet hours waits for their end: 22:00 Moscow → 09:00 Moscow.
    with writing(engine) as conn:
        save_policy(
            conn, {"quiet_hours": {"start": "21:00", "end": "09:00", "channels": ["email"]}}, T0
        )
    late = simple(engine, [moscow], local_hour=22)
    start(engine, late.id, clock.now())
    send(engine, late.id, clock)
    key = f"campaign:{late.id}:customer:{moscow}"
    (row,) = rows(engine, outbox, outbox.c.idempotency_key == key)
    assert row.next_attempt_at == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def test_throttle_spreads_messages_across_minutes_even_across_a_crash(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    ids = people(engine, 25)
    subscribe(engine, "email", ids)
    c = simple(engine, ids, throttle_per_minute=10)
    start(engine, c.id, clock.now())
    real = campaign_recorder(Pipeline(engine, clock))
    calls = 0

    def crash_on_third(conn: sa.Connection, events: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the worker died")
        real(conn, events)

    with pytest.raises(RuntimeError):
        send(engine, c.id, clock, record=crash_on_third, chunk_size=7)
    clock.advance(timedelta(seconds=30))
    send(engine, c.id, clock, chunk_size=7)
    per_minute = Counter(_due(engine).values())
    assert per_minute == {T0: 10, T0 + timedelta(minutes=1): 10, T0 + timedelta(minutes=2): 5}


def test_a_scheduled_campaign_starts_when_due(engine: sa.Engine, clock: SimulatedClock) -> None:
    first = people(engine, 2)
    subscribe(engine, "email", first)
    c = simple(engine, first, send_at=T0 + timedelta(hours=2))
    assert start(engine, c.id, clock.now()).status == "scheduled"
    assert rows(engine, campaign_audience) == []  # the audience is read at the start
    record = campaign_recorder(Pipeline(engine, clock))
    clock.advance(timedelta(hours=1))
    assert start_due_campaigns(engine, clock, record, tracking=TRACKING) == []
    joined = people(engine, 1)
    subscribe(engine, "email", joined)
    with writing(engine) as conn:
        join_in(conn, c.segment_id, joined)
    clock.advance(timedelta(hours=1))
    (report,) = start_due_campaigns(engine, clock, record, tracking=TRACKING)
    assert (report.status, report.queued) == ("sent", 3)
    done = get_campaign_(engine, c.id)
    assert done.started_at == T0 + timedelta(hours=2) and done.finished_at == done.started_at
    assert start_due_campaigns(engine, clock, record, tracking=TRACKING) == []


def test_the_worker_beat_starts_due_campaigns(engine: sa.Engine, clock: SimulatedClock) -> None:
    ids = people(engine, 2)
    subscribe(engine, "email", ids)
    c = simple(engine, ids, send_at=T0 + timedelta(minutes=30))
    start(engine, c.id, clock.now())
    pipeline = Pipeline(engine, clock)
    assert run_campaigns(pipeline, LINKS) == []
    clock.advance(timedelta(minutes=30))
    assert [r.status for r in run_campaigns(pipeline, LINKS)] == ["sent"]
    queued = rows(engine, events, events.c.name == "Message Queued")
    assert sorted(e.customer_id for e in queued) == ids
    assert all(e.properties["campaign_id"] == str(c.id) for e in queued)


def test_cancel_skips_what_still_waits(engine: sa.Engine, clock: SimulatedClock) -> None:
    ids = people(engine, 3, timezone="UTC")
    subscribe(engine, "email", ids)
    c = simple(engine, ids, local_hour=9)  # tomorrow morning
    start(engine, c.id, clock.now())
    send(engine, c.id, clock)
    with writing(engine) as conn:
        cancelled, events_ = cancel_campaign(conn, c.id, clock.now())
        campaign_recorder(Pipeline(engine, clock))(conn, events_)
    assert cancelled.status == "cancelled"
    assert [name for _, name, _ in events_] == ["Message Skipped"] * 3
    assert {r.status for r in rows(engine, outbox)} == {"skipped"}
    assert {(r.status, r.reason) for r in rows(engine, campaign_audience)} == {
        ("skipped", "campaign cancelled")
    }
    backend = InMemoryBackend("email")
    clock.advance(timedelta(days=1))
    dispatcher = dispatcher_for(Pipeline(engine, clock), {"email": backend})
    assert dispatcher.run_once().claimed == 0
    dispatcher.close()
    with pytest.raises(CampaignConflict), writing(engine) as conn:
        cancel_campaign(conn, c.id, clock.now())


def test_bad_definitions_name_each_field_and_store_nothing(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    mail = template(engine, "mail", "Hi")
    sms = template(engine, "sms", "Hi", channel="sms")
    list_id = audience(engine, people(engine, 1))
    before = table_counts(engine)
    bad = {
        "name": "spring",
        "channel": "email",
        "segment_id": 999,
        "variants": [
            {"name": "A", "template_id": mail},
            {"name": "B", "template_id": 9999},
            {"name": "A", "template_id": sms},
        ],
        "fallback": [
            {"channel": "email", "template_id": mail},
            {"channel": "sms", "template_id": mail},
        ],
    }
    with pytest.raises(InvalidInput) as caught:
        campaign(engine, **bad)
    problems = {p.where: p.reason for p in caught.value.problems}
    assert problems == {
        "segment_id": "segment 999 does not exist",
        "variants[1].template_id": "template 9999 does not exist",
        "variants[2].name": "'A' is used twice",
        "variants[2].template_id": f"template {sms} is for sms, not email",
        "fallback[0].channel": "email is already in the chain",
        "fallback[1].template_id": f"template {mail} is for email, not sms",
    }
    shape = {
        "name": "",
        "channel": "webhook",
        "segment_id": list_id,
        "variants": [{"name": "control", "template_id": mail, "weight": 0}],
        "control_percent": 60,
        "local_hour": 24,
        "throttle_per_minute": 0,
        "priority": "urgent",
    }
    with pytest.raises(InvalidInput) as caught:
        campaign(engine, **shape)
    where = {p.where for p in caught.value.problems}
    assert where == {
        "name",
        "variants[0].name",
        "variants[0].weight",
        "control_percent",
        "local_hour",
        "throttle_per_minute",
        "priority",
    }
    with pytest.raises(InvalidInput, match="channel: must be one of email"):
        campaign(
            engine,
            channel="webhook",
            segment_id=list_id,
            variants=[{"name": "A", "template_id": mail}],
        )
    with pytest.raises(InvalidInput, match="variants: List should have at least 1 item"):
        campaign(engine, channel="email", segment_id=list_id, variants=[])
    assert table_counts(engine) == before


def test_changes_only_before_sending(engine: sa.Engine, clock: SimulatedClock) -> None:
    ids = people(engine, 2)
    c = simple(engine, ids, name="spring")
    with writing(engine) as conn:
        changed = update_campaign(
            conn, c.id, {"control_percent": 20, "priority": "transactional"}, T0
        )
    assert (changed.control_percent, changed.priority, changed.name) == (
        20,
        "transactional",
        "spring",
    )
    other = simple(engine, ids)
    with pytest.raises(CampaignConflict, match="name"), writing(engine) as conn:
        update_campaign(conn, other.id, {"name": "spring"}, T0)
    with pytest.raises(InvalidInput, match=r"variants\[0\]\.template_id"), writing(engine) as conn:
        update_campaign(conn, c.id, {"variants": [{"name": "A", "template_id": 777}]}, T0)
    later = T0 + timedelta(days=1)
    with writing(engine) as conn:
        update_campaign(conn, c.id, {"send_at": later.isoformat()}, T0)
    assert start(engine, c.id, T0).status == "scheduled"
    with writing(engine) as conn:  # a scheduled campaign still changes
        assert update_campaign(conn, c.id, {"local_hour": 9}, T0).local_hour == 9
    start(engine, c.id, later)
    with pytest.raises(CampaignConflict, match="sending"), writing(engine) as conn:
        update_campaign(conn, c.id, {"control_percent": 0}, T0)


def test_end_to_end_through_the_dispatcher(engine: sa.Engine, clock: SimulatedClock) -> None:
    consenting = people(engine, 40)
    silent = people(engine, 4)
    subscribe(engine, "email", consenting)
    ta = template(engine, "ta", "Spring A {{ customer.first_name }}")
    tb = template(engine, "tb", "Spring B {{ customer.first_name }}")
    c = campaign(
        engine,
        channel="email",
        segment_id=audience(engine, consenting + silent),
        variants=[{"name": "A", "template_id": ta}, {"name": "B", "template_id": tb}],
        control_percent=20,
    )
    start(engine, c.id, clock.now())
    send(engine, c.id, clock, chunk_size=16)
    pipeline = Pipeline(engine, clock)
    backend = InMemoryBackend("email")
    dispatcher = dispatcher_for(pipeline, {"email": backend})
    while dispatcher.run_once().claimed:
        pass
    dispatcher.close()

    drawn = {r.customer_id: r.variant for r in rows(engine, campaign_audience)}
    first_names = {r.id: r.first_name for r in rows(engine, customers)}
    should_get = {cid: v for cid, v in drawn.items() if v != "control" and cid in consenting}
    assert 0 < sum(v == "control" for v in drawn.values()) < 44
    got = Counter(m.customer_id for m in backend.outbox)
    assert got == dict.fromkeys(should_get, 1)  # exactly one each, nobody else
    for m in backend.outbox:
        assert m.subject == f"Spring {should_get[m.customer_id]} {first_names[m.customer_id]}"
        assert "https://shop.example/t/o/" in (m.body_html or "")
        assert "https://shop.example/t/c/" in (m.body_html or "")
    control = [cid for cid, v in drawn.items() if v == "control"]
    with engine.connect() as conn:
        on_cards = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.customer_id.in_(control))
        ).scalar()
    assert on_cards == 0  # the holdout is untouched

    # Opens and clicks come back as events (twice for one message: it counts once).
    sent_a = [r for r in rows(engine, outbox) if r.variant == "A" and r.status == "sent"]
    with writing(engine) as conn:
        happened = [*event_for(sent_a[0], OPENED), *event_for(sent_a[0], OPENED)]
        happened += [*event_for(sent_a[1], OPENED), *event_for(sent_a[1], CLICKED)]
        pipeline.record_many(conn, happened)
    with engine.connect() as conn:
        data = campaign_report(conn, get_campaign(conn, c.id))
    per_variant = Counter(should_get.values())
    assert data["status"] == "sent"
    assert data["audience"] == 44 and data["control"] == len(control)
    assert data["total"]["queued"] == len(should_get)
    assert data["total"]["skipped_by_reason"] == {
        "no consent for email": sum(1 for cid in silent if drawn[cid] != "control")
    }
    for name in ("A", "B"):
        part = data["variants"][name]
        assert part["messages"]["sent"] == per_variant[name]
        assert part["queued"] == per_variant[name]
    assert (data["variants"]["A"]["opened"], data["variants"]["A"]["clicked"]) == (2, 1)
    assert data["variants"]["A"]["click_to_open_rate"] == 0.5
    assert data["variants"]["B"]["opened"] == 0
    assert data["total"]["messages"]["sent"] == len(should_get)


def test_chunk_messages_are_what_compose_makes_for_each_customer(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    """A chunk composes its customers as batches (one per variant and channel); every
    message, fallback chain included, is the one ``compose`` makes for that customer."""
    both = people(engine, 6, phone="+79990001133")
    mail_only = people(engine, 3)
    no_address = people(engine, 2, email=None, phone="+79990001144")
    everyone = both + mail_only + no_address
    subscribe(engine, "email", both + mail_only + no_address)
    subscribe(engine, "sms", both + no_address)
    ta = template(engine, "va", "A for {{ customer.first_name }}")
    tb = template(engine, "vb", "B for {{ customer.first_name }}")
    sms = template(engine, "vs", "SMS", channel="sms")
    camp = campaign(
        engine,
        channel="email",
        segment_id=audience(engine, everyone),
        variants=[{"name": "A", "template_id": ta}, {"name": "B", "template_id": tb}],
        fallback=[{"channel": "sms", "template_id": sms}],
    )
    start(engine, camp.id, clock.now())
    send(engine, camp.id, clock, chunk_size=7)  # chunks that mix the variants
    drawn = {r.customer_id: r.variant for r in rows(engine, campaign_audience)}
    assert set(drawn.values()) == {"A", "B"}
    stored = {r.idempotency_key: r for r in rows(engine, outbox)}
    with engine.connect() as conn:
        templates = {t: get_template(conn, t) for t in (ta, tb, sms)}
        for cid in everyone:
            key = f"campaign:{camp.id}:customer:{cid}"
            origin = Origin(campaign_id=camp.id, variant=drawn[cid])
            chain = []
            if cid in both or cid in no_address:
                fb = compose(
                    conn,
                    templates[sms],
                    cid,
                    key=f"{key}:fallback:sms",
                    now=clock.now(),
                    tracking=TRACKING,
                    origin=origin,
                    channel="sms",
                )
                chain = [
                    Fallback(
                        "sms",
                        fb.recipient,
                        subject=fb.subject or "",
                        body_text=fb.body_text,
                        body_html=fb.body_html or "",
                        data=dict(fb.data),
                    )
                ]
            row = stored[key]
            assert row.fallback == [f.as_json() for f in chain]
            assert row.variant == drawn[cid]
            if cid in no_address:
                assert (row.status, row.last_error) == ("skipped", "no email address")
                assert stored[f"{key}:fallback:sms"].body_text == chain[0].body_text
                continue
            want = compose(
                conn,
                templates[ta if drawn[cid] == "A" else tb],
                cid,
                key=key,
                now=clock.now(),
                tracking=TRACKING,
                origin=origin,
                fallback=chain,
            )
            assert row.status == "queued"
            got = (row.recipient, row.subject, row.body_text, row.body_html, row.data)
            assert got == (want.recipient, want.subject, want.body_text, want.body_html, want.data)
            assert row.template_id == str(want.template_id)
