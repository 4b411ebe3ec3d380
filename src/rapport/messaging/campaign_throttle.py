"""Throttling a campaign: at most N of its messages become due in any minute.

Messages get minute-aligned due times, so the rule can be checked by counting the outbox
rows per ``next_attempt_at``; that count is also how a resumed send learns which minutes
an earlier run filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.store.tables import outbox

MINUTE = timedelta(minutes=1)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Throttle:
    """At most ``per_minute`` messages become due in any minute.

    Each message takes the first minute, at or after its earliest moment, that has room;
    the message is due at that minute's start. Full minutes point past themselves (path
    compression), so finding room stays cheap when thousands of minutes are full.
    """

    def __init__(self, per_minute: int, load: Mapping[datetime, int] | None = None) -> None:
        self.per_minute = per_minute
        self.load: dict[datetime, int] = dict(load or {})
        self._next: dict[datetime, datetime] = {}

    def _room(self, minute: datetime) -> datetime:
        path = []
        while self.load.get(minute, 0) >= self.per_minute:
            path.append(minute)
            minute = self._next.get(minute, minute + MINUTE)
        for full in path:
            self._next[full] = minute
        return minute

    def take(self, earliest: datetime, now: datetime) -> datetime:
        if earliest <= now:
            start = floor_minute(now)
        else:
            floor = floor_minute(earliest)
            start = floor if floor == earliest else floor + MINUTE
        minute = self._room(start)
        self.load[minute] = self.load.get(minute, 0) + 1
        return minute


def throttle_load(conn: sa.Connection, campaign_id: int, now: datetime) -> dict[datetime, int]:
    """The minutes already taken by this campaign's messages, from the outbox (a resume)."""
    o = outbox.c
    rows = conn.execute(
        sa.select(o.next_attempt_at, sa.func.count())
        .where(
            o.campaign_id == str(campaign_id),
            o.status != "skipped",
            o.idempotency_key.like(f"campaign:{campaign_id}:customer:%"),
            ~o.idempotency_key.contains(":fallback:"),
            o.next_attempt_at >= floor_minute(now),
        )
        .group_by(o.next_attempt_at)
    )
    load: dict[datetime, int] = {}
    for moment, n in rows:
        minute = floor_minute(moment)
        load[minute] = load.get(minute, 0) + int(n)
    return load
