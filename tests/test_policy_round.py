"""The policy read once for a round of small groups (``PolicyRound``), on both stores: the
same answers as ``decide`` for every rule, the round's own queued messages counted towards
the caps (fallbacks included, skipped rows and keys already present not), customers and
channels that were not announced read when first asked, the queries a round costs, and
bad input refused before anything is read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from rapport.messaging.outbox import QueuedMessage, enqueue
from rapport.messaging.policy import Decision, decide, save_policy
from rapport.messaging.policy_round import PolicyRound
from rapport.store.engine import writing
from rapport.store.tables import app_settings, suppressions
from tests.test_policy import NOW, _sent, add, consent, policy

CAPS = {
    "channels": {
        "email": {"cap": {"max_messages": 2, "days": 7}},
        "sms": {"cap": {"max_messages": 1, "days": 1}},
    },
    "global_cap": {"max_messages": 3, "days": 7},
    "quiet_hours": {"start": "21:00", "end": "09:00"},
}


def people(engine: sa.Engine) -> dict[str, int]:
    """One customer for each way a decision can go."""
    names = ["ok", "no_consent", "unsubscribed", "suppressed", "capped", "moscow", "gone"]
    ids = {name: add(engine, 1, email=f"{name}@example.com", phone=None)[0] for name in names}
    ids["moscow"] = add(
        engine, 1, email="m@example.com", phone="+79990001122", timezone="Europe/Moscow"
    )[0]
    for name in ("ok", "unsubscribed", "suppressed", "capped", "moscow"):
        consent(engine, "email", "subscribed", ids[name])
    consent(engine, "sms", "subscribed", ids["moscow"], ids["ok"])
    consent(engine, "email", "unsubscribed", ids["unsubscribed"])
    with writing(engine) as conn:
        conn.execute(
            suppressions.insert().values(
                channel="email",
                address="suppressed@example.com",
                reason="bounce",
                details={},
                created_at=NOW,
            )
        )
        conn.exec_driver_sql(
            f"UPDATE customers SET erased_at = created_at WHERE id = {ids['gone']}"
        )
    _sent(engine, "a", ids["capped"], NOW - timedelta(days=1))
    _sent(engine, "b", ids["capped"], NOW - timedelta(days=2))
    return ids


def test_the_round_answers_as_decide_does(engine: sa.Engine) -> None:
    ids = people(engine)
    policy(engine, CAPS)
    everyone = [*ids.values(), 999_999]
    with engine.connect() as conn:
        round_ = PolicyRound(conn, NOW, {"email": everyone, "sms": everyone})
        for channel in ("email", "sms", "push"):
            for priority in ("marketing", "transactional"):
                for rank in (0, 50, 100):
                    expected = decide(conn, everyone, channel, NOW, priority, rank=rank)
                    got = round_.decide(everyone, channel, priority, rank=rank)
                    assert got == expected, (channel, priority, rank)
                    assert list(got) == list(expected)
    # The answers themselves, so that two wrong implementations cannot agree.
    assert expected is not None
    with engine.connect() as conn:
        got = PolicyRound(conn, NOW, {}).decide(everyone, "email")
    assert got[ids["ok"]] == Decision(True)
    assert got[ids["no_consent"]] == Decision(False, "no consent for email")
    assert got[ids["unsubscribed"]] == Decision(False, "unsubscribed from email")
    assert got[ids["suppressed"]] == Decision(False, "email address is suppressed")
    assert got[ids["capped"]] == Decision(False, "frequency cap: 2 email per 7 d")
    assert got[ids["gone"]] == Decision(False, "customer does not exist")
    assert got[999_999] == Decision(False, "customer does not exist")
    with engine.connect() as conn:
        sms = PolicyRound(conn, NOW, {"sms": [ids["moscow"]]}).decide([ids["moscow"]], "sms")
    # 19:00 UTC is 22:00 in Moscow: the SMS waits for 09:00 there.
    assert sms[ids["moscow"]].allowed and sms[ids["moscow"]].send_at is not None


def test_the_global_control_group_holds_in_a_round(engine: sa.Engine) -> None:
    ids = add(engine, 40, email="x@example.com")
    consent(engine, "email", "subscribed", *ids)
    with writing(engine) as conn:
        conn.execute(
            app_settings.insert().values(
                key="global_control", value={"percent": 50}, updated_at=NOW
            )
        )
    with engine.connect() as conn:
        expected = decide(conn, ids, "email", NOW)
        got = PolicyRound(conn, NOW, {"email": ids}).decide(ids, "email")
    assert got == expected
    reasons = {d.reason for d in got.values()}
    assert reasons == {None, "global_control"}


def _message(key: str, cid: int, channel: str = "email", **kw: Any) -> QueuedMessage:
    recipient = "x@example.com" if channel == "email" else "+79990001122"
    return QueuedMessage(key, channel, recipient, "hi", customer_id=cid, **kw)


def test_what_the_round_queues_counts_towards_the_caps(engine: sa.Engine) -> None:
    ok, other = add(engine, 2, email="x@example.com", phone="+79990001122")
    consent(engine, "email", "subscribed", ok, other)
    consent(engine, "sms", "subscribed", ok, other)
    policy(engine, CAPS)
    _sent(engine, "old", ok, NOW - timedelta(days=1))  # one of two e-mail slots used
    with writing(engine) as conn:
        round_ = PolicyRound(conn, NOW, {"email": [ok, other], "sms": [ok, other]})
        assert round_.decide([ok], "email")[ok].allowed
        # A skipped row does not count; a key already in the outbox inserts nothing.
        round_.queued(enqueue(conn, [_message("s", ok, skip_reason="test")], NOW))
        round_.queued(enqueue(conn, [_message("old", ok)], NOW))
        assert round_.decide([ok], "email")[ok].allowed
        round_.queued(enqueue(conn, [_message("new", ok)], NOW))
        full = round_.decide([ok, other], "email")
        assert full[ok] == Decision(False, "frequency cap: 2 email per 7 d")
        assert full[other].allowed
        # A fallback queued for a skipped e-mail counts on its own channel, and everywhere.
        fallback = {"channel": "sms", "recipient": "+79990001122", "body_text": "hi"}
        row = _message("fb", other, skip_reason="test")
        row = QueuedMessage(**{**row.__dict__, "fallback": (_fallback(fallback),)})
        round_.queued(enqueue(conn, [row], NOW))
        assert round_.decide([other], "sms")[other] == Decision(
            False, "frequency cap: 1 sms per 1 d"
        )
        # Every answer is what decide() reads from the outbox in the same transaction.
        for channel in ("email", "sms"):
            assert round_.decide([ok, other], channel) == decide(conn, [ok, other], channel, NOW)
        # Customers first asked after messages were queued for them are not counted twice.
        late = PolicyRound(conn, NOW, {})
        late.queued(enqueue(conn, [_message("late", other)], NOW))
        assert late.decide([other], "email") == decide(conn, [other], "email", NOW)
        assert late.decide([other], "sms") == decide(conn, [other], "sms", NOW)


def _fallback(doc: dict[str, Any]) -> Any:
    from rapport.messaging.outbox import Fallback

    return Fallback.from_json(doc)


def test_a_round_reads_once_whatever_the_number_of_groups(engine: sa.Engine) -> None:
    ids = add(engine, 30, email="x@example.com")
    consent(engine, "email", "subscribed", *ids)
    with writing(engine) as conn:
        save_policy(conn, CAPS, NOW)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with engine.connect() as conn:
        round_ = PolicyRound(conn, NOW, {"email": ids})
        event.listen(engine, "before_cursor_execute", count)
        try:
            for i in range(0, 30, 3):  # ten groups of three
                round_.decide(ids[i : i + 3], "email")
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert statements == []


@pytest.mark.parametrize(
    ("channel", "priority", "rank", "error"),
    [
        ("fax", "marketing", 50, "unknown channel 'fax'"),
        ("email", "urgent", 50, "unknown priority 'urgent'"),
        ("email", "marketing", 101, "rank 101 is not from 0 to 100"),
    ],
)
def test_bad_questions_are_refused_by_name(
    engine: sa.Engine, channel: str, priority: str, rank: int, error: str
) -> None:
    (cid,) = add(engine)
    with engine.connect() as conn:
        round_ = PolicyRound(conn, NOW, {"email": [cid]})
        with pytest.raises(ValueError, match=error):
            round_.decide([cid], channel, priority, rank=rank)
