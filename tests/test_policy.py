"""The communication policy on both stores: consent, suppression, frequency caps at their
window edges, quiet hours across timezones (and a DST change), the transactional bypass,
settings validation, and a query count that does not grow with the batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.customers.consents import ConsentChange, set_consents
from rapport.errors import InvalidInput
from rapport.messaging.policy import Decision, decide, load_policy, save_policy
from rapport.store.engine import writing
from rapport.store.tables import app_settings, customers, outbox, suppressions
from tests.delivery_helpers import message, put

NOW = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)


def add(engine: sa.Engine, n: int = 1, **values: Any) -> list[int]:
    row = {"created_at": NOW, "updated_at": NOW, "traits": {}} | values
    with writing(engine) as conn:
        ids = conn.execute(customers.insert().returning(customers.c.id), [row] * n).scalars()
        return [int(i) for i in ids]


def consent(engine: sa.Engine, channel: str, status: str, *ids: int) -> None:
    with writing(engine) as conn:
        set_consents(conn, [ConsentChange(cid, channel, status, "test", NOW) for cid in ids])


def policy(engine: sa.Engine, doc: dict[str, Any]) -> None:
    with writing(engine) as conn:
        save_policy(conn, doc, NOW)


def ask(engine: sa.Engine, ids: list[int], channel: str, *, now: datetime = NOW, **kw: Any):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return decide(conn, ids, channel, now, **kw)


def test_consent_rules(engine: sa.Engine) -> None:
    yes, no, pending, silent = add(engine, 4)
    consent(engine, "sms", "subscribed", yes)
    consent(engine, "sms", "unsubscribed", no)
    consent(engine, "sms", "pending", pending)
    got = ask(engine, [yes, no, pending, silent, 999], "sms")
    assert got == {
        yes: Decision(True),
        no: Decision(False, "unsubscribed from sms"),
        pending: Decision(False, "pending consent for sms"),
        silent: Decision(False, "no consent for sms"),
        999: Decision(False, "customer does not exist"),
    }
    # Transactional messages need no marketing consent, but "unsubscribed" still holds.
    got = ask(engine, [yes, no, pending, silent], "sms", priority="transactional")
    assert [d.allowed for d in got.values()] == [True, False, True, True]
    # An operator may drop the requirement for a channel (soft opt-in for customers).
    policy(engine, {"channels": {"sms": {"require_consent": False}}})
    got = ask(engine, [no, pending, silent], "sms")
    assert [d.allowed for d in got.values()] == [False, True, True]
    # A webhook reaches a system, not a person: no consent needed by default.
    assert ask(engine, [silent], "webhook")[silent].allowed


def test_suppressed_addresses_are_never_sent_to(engine: sa.Engine) -> None:
    ok, bounced = add(engine, 1, email="ok@example.com") + add(
        engine, 1, email="Bounced@Example.com"
    )
    consent(engine, "email", "subscribed", ok, bounced)
    with writing(engine) as conn:
        conn.execute(
            suppressions.insert().values(
                channel="email",
                address="bounced@example.com",
                reason="bounce",
                details={},
                created_at=NOW,
            )
        )
    got = ask(engine, [ok, bounced], "email", priority="transactional")
    assert got[ok].allowed
    assert got[bounced] == Decision(False, "email address is suppressed")


def _sent(engine: sa.Engine, key: str, cid: int, at: datetime, **kw: Any) -> None:
    put(engine, at, message(key, cid, **kw))


def test_frequency_caps_count_the_window_exactly(engine: sa.Engine) -> None:
    (cid,) = add(engine)
    consent(engine, "email", "subscribed", cid)
    consent(engine, "sms", "subscribed", cid)
    policy(engine, {"channels": {"email": {"cap": {"max_messages": 2, "days": 7}}}})
    week = timedelta(days=7)
    _sent(engine, "edge", cid, NOW - week)  # exactly 7 days ago: outside the window
    _sent(engine, "inside", cid, NOW - week + timedelta(seconds=1))
    _sent(engine, "skipped", cid, NOW, skip_reason="no consent")  # skipped rows never count
    _sent(engine, "sms", cid, NOW, channel="sms", recipient="+79990001122")
    assert ask(engine, [cid], "email")[cid].allowed
    _sent(engine, "second", cid, NOW - timedelta(hours=1))
    assert ask(engine, [cid], "email")[cid] == Decision(False, "frequency cap: 2 email per 7 d")
    # One second later the oldest counted message leaves the window.
    later = NOW + timedelta(seconds=1)
    assert ask(engine, [cid], "email", now=later)[cid].allowed
    assert ask(engine, [cid], "email", priority="transactional")[cid].allowed
    # The global cap counts every channel: one email and one sms in the last day.
    policy(engine, {"global_cap": {"max_messages": 2, "days": 1}})
    assert ask(engine, [cid], "sms")[cid] == Decision(False, "frequency cap: 2 per 1 d")
    policy(engine, {"global_cap": {"max_messages": 3, "days": 1}})
    assert ask(engine, [cid], "sms")[cid].allowed


QUIET = {"quiet_hours": {"start": "21:00", "end": "09:00"}}


def test_quiet_hours_follow_each_customers_timezone(engine: sa.Engine) -> None:
    moscow, new_york, utc, unknown = (
        add(engine, 1, timezone="Europe/Moscow")
        + add(engine, 1, timezone="America/New_York")
        + add(engine, 1, timezone="UTC")
        + add(engine, 1, timezone=None)
    )
    everyone = [moscow, new_york, utc, unknown]
    consent(engine, "sms", "subscribed", *everyone)
    consent(engine, "email", "subscribed", *everyone)
    policy(engine, QUIET | {"default_timezone": "Asia/Vladivostok"})
    # 19:00 UTC: 22:00 in Moscow (quiet until 09:00 MSK = 06:00 UTC), 14:00 in New York,
    # 19:00 UTC, 05:00 next day in Vladivostok (quiet until 09:00 = 23:00 UTC).
    got = ask(engine, everyone, "sms")
    assert got[moscow] == Decision(True, send_at=datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    assert got[new_york] == Decision(True)
    assert got[utc] == Decision(True)
    assert got[unknown] == Decision(True, send_at=datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    # 03:00 UTC: 06:00 Moscow, 22:00 (the day before) in New York, 03:00 UTC.
    early = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    got = ask(engine, everyone, "sms", now=early)
    assert got[moscow].send_at == datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    assert got[new_york].send_at == datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    assert got[utc].send_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    # E-mail waits in the inbox: not under quiet hours by default.
    assert all(d == Decision(True) for d in ask(engine, everyone, "email", now=early).values())
    # Transactional messages go at once.
    got = ask(engine, everyone, "sms", now=early, priority="transactional")
    assert all(d == Decision(True) for d in got.values())
    # The night New York moves its clocks forward: 01:00 EST → 09:00 EDT is 13:00 UTC.
    dst = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)
    assert ask(engine, [new_york], "sms", now=dst)[new_york].send_at == datetime(
        2026, 3, 8, 13, 0, tzinfo=UTC
    )


def test_quiet_hours_may_skip_instead_of_defer(engine: sa.Engine) -> None:
    moscow, new_york = add(engine, 1, timezone="Europe/Moscow") + add(
        engine, 1, timezone="America/New_York"
    )
    consent(engine, "sms", "subscribed", moscow, new_york)
    policy(engine, {"quiet_hours": {"start": "21:00", "end": "09:00", "action": "skip"}})
    got = ask(engine, [moscow, new_york], "sms")  # 22:00 in Moscow, 14:00 in New York
    assert got[moscow] == Decision(False, "quiet hours")
    assert got[new_york] == Decision(True)


def test_quiet_hours_are_judged_at_the_planned_moment(engine: sa.Engine) -> None:
    (moscow,) = add(engine, 1, timezone="Europe/Moscow")
    consent(engine, "push", "subscribed", moscow)
    policy(engine, {"quiet_hours": {"start": "13:00", "end": "15:00", "channels": ["push"]}})
    morning = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)  # 09:00 in Moscow
    assert ask(engine, [moscow], "push", now=morning)[moscow] == Decision(True)
    planned = {moscow: datetime(2026, 3, 1, 10, 30, tzinfo=UTC)}  # 13:30 in Moscow
    got = ask(engine, [moscow], "push", now=morning, at=planned)
    assert got[moscow].send_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_bad_settings_name_the_field_and_store_nothing(engine: sa.Engine) -> None:
    with pytest.raises(InvalidInput) as caught:
        policy(
            engine,
            {
                "channels": {"fax": {}, "sms": {"cap": {"max_messages": 0, "days": 1}}},
                "quiet_hours": {"start": "25:00", "end": "09:00"},
                "default_timezone": "Mars/Olympus",
                "extra": 1,
            },
        )
    where = {p.where for p in caught.value.problems}
    assert {
        "channels.fax",
        "channels.sms.cap.max_messages",
        "quiet_hours.start",
        "default_timezone",
        "extra",
    } <= where, where
    with pytest.raises(InvalidInput, match="empty"):
        policy(engine, {"quiet_hours": {"start": "09:00", "end": "09:00"}})
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(app_settings)).scalar() == 0
        assert load_policy(conn).quiet_hours is None


@contextmanager
def counting(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)


def test_a_batch_costs_the_same_queries_whatever_its_size(engine: sa.Engine) -> None:
    policy(
        engine,
        QUIET
        | {
            "channels": {"email": {"cap": {"max_messages": 3, "days": 7}}},
            "global_cap": {"max_messages": 5, "days": 1},
        },
    )
    ids = add(engine, 500, timezone="Europe/Moscow", email="x@example.com")
    consent(engine, "email", "subscribed", *ids[::2])
    put(engine, NOW, *(message(f"k{cid}", cid) for cid in ids[:100]))
    queries = {}
    for n in (10, 500):
        with engine.connect() as conn, counting(engine) as seen:
            got = decide(conn, ids[:n], "email", NOW)
        assert len(got) == n
        queries[n] = len(seen)
    assert queries[10] == queries[500] <= 6, queries
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 100


def test_the_policy_knows_every_channel() -> None:
    from typing import get_args

    from rapport.messaging.channels.base import CHANNELS
    from rapport.messaging.policy import Channel

    assert set(get_args(Channel)) == set(CHANNELS)
