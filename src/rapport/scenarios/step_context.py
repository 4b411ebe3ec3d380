"""What steps need from outside a scenario: links, the communication policy, list events
and loyalty actions. Kept apart from the steps so the sending and the other step kinds
share it without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from rapport.messaging.compose import Tracking
from rapport.messaging.outbox import Event
from rapport.messaging.policy import DEFAULT_RANK, Decision, decide
from rapport.messaging.templates.store import StoredTemplate, get_template, template_stamps
from rapport.scenarios.store import resolve_ref


class Recorder(Protocol):
    """What list actions need from the pipeline (adding a member records an event)."""

    def record(
        self, conn: sa.Connection, customer_id: int, name: str, properties: dict[str, Any]
    ) -> None: ...


class Hooks(Protocol):
    """Loyalty actions; the loyalty programme implements them (loyalty/hooks.py). A
    coupon that cannot be issued raises ``CouponError``: the step is skipped with its
    reason and the run goes on."""

    def add_points(
        self, conn: sa.Connection, customer_id: int, points: int, key: str, now: datetime
    ) -> list[Event]: ...

    def issue_coupon(
        self, conn: sa.Connection, customer_id: int, series: str, key: str, now: datetime
    ) -> tuple[str, list[Event]]: ...


# (conn, customer ids, channel, now, transactional) → the policy's decision per customer
Decide = Callable[[sa.Connection, list[int], str, datetime, bool], dict[int, Decision]]


def policy_decide(
    conn: sa.Connection,
    ids: list[int],
    channel: str,
    now: datetime,
    transactional: bool,
    rank: int = DEFAULT_RANK,
) -> dict[int, Decision]:
    """The global communication policy (messaging/policy.py); ``rank`` is the scenario's
    priority, which decides who may take a frequency cap's reserved slots."""
    kind = "transactional" if transactional else "marketing"
    return decide(conn, ids, channel, now, kind, rank=rank)


@dataclass
class StepContext:
    """What steps need from outside the scenario: links, policy, list events, loyalty."""

    tracking: Callable[[], Tracking] = lambda: Tracking(None)
    decide: Decide = policy_decide
    recorder: Recorder | None = None
    hooks: Hooks | None = None
    _templates: dict[int, StoredTemplate] = field(default_factory=dict)

    def consult(
        self,
        conn: sa.Connection,
        ids: list[int],
        channel: str,
        now: datetime,
        transactional: bool,
        rank: int,
    ) -> dict[int, Decision]:
        """The policy for a sender of priority ``rank``. A ``decide`` put in place of the
        global policy (a test's, a dry run's) is asked without it."""
        if self.decide is policy_decide:
            return policy_decide(conn, ids, channel, now, transactional, rank)
        return self.decide(conn, ids, channel, now, transactional)

    def template(self, conn: sa.Connection, ref: int | str) -> StoredTemplate | None:
        """The template ``ref`` names (id or name), None when there is none. One light
        query; the row with its compiled bodies is read again only when the template is
        new to this context or changed since (its name, version or last change differ)."""
        stamps = template_stamps(conn)
        tid = resolve_ref(ref, {name: tid for tid, (name, _, _) in stamps.items()})
        if tid is None:
            return None
        cached = self._templates.get(tid)
        if cached is None or (cached.name, cached.version, cached.updated_at) != stamps[tid]:
            cached = self._templates[tid] = get_template(conn, tid)
        return cached
