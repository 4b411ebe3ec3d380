"""Points given by hand or by a scenario, outside any order.

:func:`add_points` is the scenario action ``add_points`` (scenarios/steps.py ``Hooks``);
:func:`adjust` is an operator's correction, audited, which may also take points away.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa

from rapport.access.audit import Actor, record
from rapport.errors import InvalidInput, Problem
from rapport.loyalty.ledger import (
    ADJUSTED,
    EARNED,
    Event,
    credit,
    debit,
    has_key,
    lock_account,
    settle,
)
from rapport.loyalty.programme import load


def add_points(
    conn: sa.Connection,
    customer_id: int,
    points: int,
    key: str,
    now: datetime,
    *,
    reason: str = "scenario",
) -> list[Event]:
    """Credit ``points`` once per ``key`` (and customer); spendable at once, expiring as
    the programme says. A negative number takes points away, never below zero (what is
    missing is recorded as the entry's shortfall). A repeated key changes nothing and
    answers no event; 0 does nothing.
    """
    if points == 0:
        return []
    entry_key = f"add:{customer_id}:{key}"[:300]
    programme = load(conn)
    lock_account(conn, customer_id, now)
    if has_key(conn, entry_key):
        return []
    if points > 0:
        credit(
            conn,
            customer_id,
            points,
            kind="bonus",
            key=entry_key,
            now=now,
            expiry_days=programme.expiry_days,
            reason=reason,
        )
        return [(customer_id, EARNED, {"points": points, "reason": reason, "pending": False})]
    events = settle(conn, customer_id, now)
    taken, short = debit(
        conn, customer_id, -points, kind="adjust", key=entry_key, now=now, reason=reason
    )
    return [*events, (customer_id, ADJUSTED, {"points": -taken, "reason": reason, "short": short})]


def adjust(
    conn: sa.Connection,
    customer_id: int,
    points: int,
    reason: str,
    actor: Actor,
    now: datetime,
    *,
    key: str | None = None,
) -> list[Event]:
    """An operator's correction, audited. Taking away more than the spendable balance is
    refused (InvalidInput on ``points``) and nothing is written. A repeated ``key``
    changes nothing."""
    problems = []
    if points == 0:
        problems.append(Problem("points", "must not be 0"))
    if not reason.strip():
        problems.append(Problem("reason", "say why the points change"))
    if problems:
        raise InvalidInput(problems)
    entry_key = f"adjust:{customer_id}:{key or uuid.uuid4()}"
    programme = load(conn)
    account = lock_account(conn, customer_id, now)
    if has_key(conn, entry_key):
        return []
    events = settle(conn, customer_id, now)
    if points > 0:
        credit(
            conn,
            customer_id,
            points,
            kind="adjust",
            key=entry_key,
            now=now,
            expiry_days=programme.expiry_days,
            reason=reason,
            details={"by": actor.name},
        )
    else:
        account = lock_account(conn, customer_id, now)
        if -points > account.balance:
            raise InvalidInput(
                [Problem("points", f"cannot take {-points}: the balance is {account.balance}")]
            )
        debit(
            conn,
            customer_id,
            -points,
            kind="adjust",
            key=entry_key,
            now=now,
            reason=reason,
            details={"by": actor.name},
        )
    record(
        conn,
        actor,
        "loyalty.adjust",
        "customer",
        customer_id,
        now,
        {"points": points, "reason": reason},
    )
    return [*events, (customer_id, ADJUSTED, {"points": points, "reason": reason})]
