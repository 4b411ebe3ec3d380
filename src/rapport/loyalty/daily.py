"""The programme's daily run: points whose return period ended become spendable, points
past their expiry are lost, tiers follow the rolling window, birthdays get their bonus.

Each step commits in batches of customers, so a long run holds no lock for long; every
change is keyed in the ledger, so a run repeated (or two workers at once) changes nothing
twice. The timeline events go to ``record`` (the pipeline's), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from rapport.loyalty.bonuses import birthdays
from rapport.loyalty.ledger import (
    ACTIVATED,
    EARNED,
    EXPIRED,
    TIER_CHANGED,
    Event,
    lock_account,
    settle,
)
from rapport.loyalty.programme import load
from rapport.loyalty.tiers import retier
from rapport.store.engine import writing
from rapport.store.tables import loyalty_lots

Record = Callable[[sa.Connection, list[Event]], None]
BATCH = 500


@dataclass
class DailyReport:
    activated: int = 0
    expired: int = 0
    tier_changes: int = 0
    birthday_bonuses: int = 0
    customers: set[int] = field(default_factory=set)

    def count(self, events: list[Event]) -> None:
        for cid, name, props in events:
            self.customers.add(cid)
            if name == ACTIVATED:
                self.activated += int(props["points"])
            elif name == EXPIRED:
                self.expired += int(props["points"])
            elif name == TIER_CHANGED:
                self.tier_changes += 1
            elif name == EARNED and props.get("reason") == "birthday":
                self.birthday_bonuses += 1


def due_customers(conn: sa.Connection, now: datetime) -> list[int]:
    """Customers with points to activate or to expire at ``now`` (two indexed scans)."""
    lots = loyalty_lots.c
    pending = sa.select(lots.customer_id).where(
        lots.status == "pending", lots.remaining > 0, lots.activates_at <= now
    )
    expiring = sa.select(lots.customer_id).where(
        lots.status == "active", lots.remaining > 0, lots.expires_at <= now
    )
    found = set(conn.execute(pending).scalars()) | set(conn.execute(expiring).scalars())
    return sorted(int(c) for c in found)


def run_daily(engine: sa.Engine, now: datetime, record: Record) -> DailyReport:
    report = DailyReport()
    with engine.connect() as conn:
        due = due_customers(conn, now)
    for start in range(0, len(due), BATCH):
        with writing(engine) as conn:
            events: list[Event] = []
            for cid in due[start : start + BATCH]:
                lock_account(conn, cid, now)
                events += settle(conn, cid, now)
            _record(conn, record, events, report)
    with writing(engine) as conn:
        programme = load(conn)
        events = retier(conn, programme, now)
        events += birthdays(conn, programme, now)
        _record(conn, record, events, report)
    return report


def _record(conn: sa.Connection, record: Record, events: list[Event], report: DailyReport) -> None:
    if events:
        record(conn, events)
        report.count(events)
