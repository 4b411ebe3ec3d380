"""What a dry run found: per customer, the runs, the would-be messages and actions.

Read from the dry run's shadow tables (:mod:`rapport.scenarios.dry_run`) before they are
rolled back. Kept apart from the replay because the report is what the CLI, the JSON file
and, later, the UI read, while the replay is about not disturbing the live store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.scenarios.model import Scenario
from rapport.store.tables import (
    customers,
    identities,
    outbox,
    scenario_runs,
    scenario_step_log,
    templates,
)

# An action step runs in a dry run as a split whose one path is named ACTION + its kind.
ACTION = "action:"

CAVEATS = (
    "Nothing was sent or stored: the replay ran in a transaction that was rolled back.",
    "Consents, suppressions, the policy's settings, customer attributes and segment "
    "membership are read as they are now, not as they were then.",
    "Frequency caps count the messages really queued at the time plus the dry run's own.",
    "Actions are listed, not performed, so later steps do not see their effects.",
    "Message outcomes (delivered, opened, clicked) are unknown: an outcome branch takes "
    "its 'else' path.",
)


_VERB = {"sent": "would send", "deferred": "would defer", "skipped": "would skip"}


@dataclass(frozen=True)
class WouldSend:
    """A message a send step would have queued; ``outcome`` is sent, deferred or skipped."""

    customer_id: int
    run_id: int
    step: str
    channel: str
    template: str | None
    subject: str | None
    recipient: str
    at: datetime  # when the step ran
    send_at: datetime  # when it would have gone out (later when quiet hours deferred it)
    outcome: str
    reason: str | None = None


@dataclass(frozen=True)
class WouldAct:
    """An action step a run reached; a dry run does not perform it."""

    customer_id: int
    run_id: int
    step: str
    action: str
    at: datetime


@dataclass(frozen=True)
class RunResult:
    """Where a run stood at the end of the range (``active``/``waiting``: still going)."""

    run_id: int
    customer_id: int
    entity_key: str
    started_at: datetime
    status: str
    reason: str | None
    ended_at: datetime | None
    converted_at: datetime | None
    step: str | None
    wake_at: datetime | None


@dataclass
class DryRunReport:
    scenario: str
    scenario_id: int | None  # None for an unsaved definition no saved one shares a name with
    version: int
    saved: bool
    start: datetime
    end: datetime
    events: int  # replayed
    wakeups: int  # runs advanced at their wake-up time
    limit_customers: int | None
    entity_key: str | None = None  # the event property that names a run's entity
    runs: list[RunResult] = field(default_factory=list)
    messages: list[WouldSend] = field(default_factory=list)
    actions: list[WouldAct] = field(default_factory=list)
    steps: dict[str, dict[str, int]] = field(default_factory=dict)  # step → outcome → runs
    labels: dict[int, str] = field(default_factory=dict)  # customer → email or user id
    caveats: list[str] = field(default_factory=lambda: list(CAVEATS))

    @property
    def customers(self) -> list[int]:
        """Customers with a run, in the order they entered."""
        return list(dict.fromkeys(r.customer_id for r in self.runs))

    @property
    def converted(self) -> int:
        return sum(r.converted_at is not None for r in self.runs)

    def statuses(self) -> Counter[str]:
        return Counter(r.status for r in self.runs)

    def outcomes(self) -> Counter[str]:
        return Counter(m.outcome for m in self.messages)

    def by_step(self) -> list[tuple[str, str, int, int, int]]:
        """(step, channel, sent, deferred, skipped), in the scenario's step order."""
        counts: dict[tuple[str, str], Counter[str]] = {}
        for m in self.messages:
            counts.setdefault((m.step, m.channel), Counter())[m.outcome] += 1
        order = {step: i for i, step in enumerate(self.steps)}
        keys = sorted(counts, key=lambda k: (order.get(k[0], len(order)), k))
        return [
            (s, ch, counts[s, ch]["sent"], counts[s, ch]["deferred"], counts[s, ch]["skipped"])
            for s, ch in keys
        ]

    def skipped_by_reason(self) -> Counter[str]:
        return Counter(m.reason or "?" for m in self.messages if m.outcome == "skipped")

    def exits_by_reason(self) -> Counter[str]:
        return Counter(r.reason or "?" for r in self.runs if r.status == "exited")

    def label(self, customer_id: int) -> str:
        return self.labels.get(customer_id) or f"#{customer_id}"

    def timeline(self, customer_id: int) -> list[tuple[datetime, str, str, str]]:
        """(when, step, what, detail) for one customer, in time order: the sample table."""
        items: list[tuple[datetime, str, str, str]] = []
        for r in (r for r in self.runs if r.customer_id == customer_id):
            entity = f"{self.entity_key}={r.entity_key}" if r.entity_key else ""
            items.append((r.started_at, "", "entered", entity))
            if r.converted_at is not None:
                items.append((r.converted_at, "", "converted", "goal reached"))
            if r.ended_at is not None and r.status != "converted":
                items.append((r.ended_at, "", r.status, r.reason or ""))
            elif r.ended_at is None:
                wake = f" until {r.wake_at:%Y-%m-%d %H:%M}" if r.wake_at else ""
                items.append((self.end, r.step or "", "in flight", f"{r.status}{wake}"))
        for m in (m for m in self.messages if m.customer_id == customer_id):
            what = f"{_VERB[m.outcome]} {m.channel}"
            detail = f"{m.template or '?'}: {m.subject}" if m.subject else (m.template or "?")
            if m.outcome == "deferred":
                detail += f" (goes at {m.send_at:%Y-%m-%d %H:%M})"
            elif m.outcome == "skipped":
                detail += f" ({m.reason})"
            items.append((m.at, m.step, what, detail))
        for a in (a for a in self.actions if a.customer_id == customer_id):
            items.append((a.at, a.step, "action", f"{a.action} (not performed)"))
        last = {"done", "exited", "converted", "control", "failed", "in flight"}
        return sorted(
            items, key=lambda i: (i[0], 0 if i[2] == "entered" else 2 if i[2] in last else 1)
        )

    def summary(self) -> dict[str, Any]:
        outcomes = self.outcomes()
        statuses = self.statuses()
        return {
            "runs": len(self.runs),
            "customers": len(self.customers),
            "converted": self.converted,
            "statuses": dict(sorted(statuses.items())),
            "in_flight": statuses["active"] + statuses["waiting"],
            "messages": {k: outcomes[k] for k in ("sent", "deferred", "skipped")},
            "by_step": [
                {"step": s, "channel": ch, "sent": a, "deferred": b, "skipped": c}
                for s, ch, a, b, c in self.by_step()
            ],
            "skipped_by_reason": dict(self.skipped_by_reason().most_common()),
            "exited_by_reason": dict(self.exits_by_reason().most_common()),
            "actions": dict(Counter(a.action for a in self.actions).most_common()),
        }

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (times in ISO 8601, UTC)."""

        def plain(obj: Any) -> Any:
            if isinstance(obj, datetime):
                return obj.isoformat()
            if isinstance(obj, dict):
                return {k: plain(v) for k, v in obj.items()}
            if isinstance(obj, list | tuple):
                return [plain(v) for v in obj]
            return obj

        people = [
            {
                "customer_id": cid,
                "label": self.label(cid),
                "runs": [asdict(r) for r in self.runs if r.customer_id == cid],
                "messages": [asdict(m) for m in self.messages if m.customer_id == cid],
                "actions": [asdict(a) for a in self.actions if a.customer_id == cid],
            }
            for cid in self.customers
        ]
        return plain(
            {
                "scenario": {
                    "id": self.scenario_id,
                    "name": self.scenario,
                    "version": self.version,
                    "saved": self.saved,
                },
                "from": self.start,
                "to": self.end,
                "events_replayed": self.events,
                "wakeups": self.wakeups,
                "limit_customers": self.limit_customers,
                "entity_key": self.entity_key,
                "summary": self.summary(),
                "steps": self.steps,
                "customers": people,
                "caveats": self.caveats,
            }
        )


def collect_report(
    conn: sa.Connection,
    scenario_id: int,
    scenario: Scenario,
    *,
    version: int,
    saved: bool,
    start: datetime,
    end: datetime,
    events: int,
    wakeups: int,
    limit_customers: int | None,
) -> DryRunReport:
    """Read the dry run's runs, outbox rows and step log (still in its transaction)."""
    report = DryRunReport(
        scenario=scenario.name,
        scenario_id=scenario_id if saved or scenario_id else None,
        version=version,
        saved=saved,
        start=start,
        end=end,
        events=events,
        wakeups=wakeups,
        limit_customers=limit_customers,
        entity_key=scenario.definition.entity_key,
    )
    if limit_customers is not None:
        report.caveats.append(f"Only the first {limit_customers:,} customers were replayed.")
    r = scenario_runs.c
    for row in conn.execute(
        sa.select(scenario_runs).where(r.scenario_id == scenario_id).order_by(r.started_at, r.id)
    ):
        converted = (row.context or {}).get("converted_at")
        report.runs.append(
            RunResult(
                run_id=int(row.id),
                customer_id=int(row.customer_id),
                entity_key=row.entity_key,
                started_at=row.started_at,
                status=row.status,
                reason=row.end_reason,
                ended_at=row.ended_at,
                converted_at=datetime.fromisoformat(converted) if converted else None,
                step=row.step,
                wake_at=row.wake_at,
            )
        )
    names = {int(i): str(n) for i, n in conn.execute(sa.select(templates.c.id, templates.c.name))}
    o = outbox.c
    rows = conn.execute(
        sa.select(outbox)
        .where(o.scenario_id == str(scenario_id), o.idempotency_key.like("run:%"))
        .order_by(o.created_at, o.id)
    )
    for row in rows:
        if row.status == "skipped":
            outcome = "skipped"
        elif row.next_attempt_at > row.created_at:
            outcome = "deferred"
        else:
            outcome = "sent"
        template = row.template_id
        report.messages.append(
            WouldSend(
                customer_id=int(row.customer_id),
                run_id=_run_of(row.idempotency_key),
                step=str(row.step),
                channel=row.channel,
                template=names.get(int(template)) if template and template.isdigit() else template,
                subject=row.subject,
                recipient=row.recipient,
                at=row.created_at,
                send_at=row.next_attempt_at,
                outcome=outcome,
                reason=row.last_error if outcome == "skipped" else None,
            )
        )
    actions = {s.id for s in scenario.definition.steps if s.action is not None}
    steps: dict[str, Counter[str]] = {s.id: Counter() for s in scenario.definition.steps}
    log = scenario_step_log.c
    for row in conn.execute(
        sa.select(log.run_id, log.customer_id, log.step, log.outcome, log.at)
        .where(log.scenario_id == scenario_id)
        .order_by(log.id)
    ):
        outcome = row.outcome
        if row.step in actions and outcome.startswith(ACTION):
            kind = outcome.removeprefix(ACTION)
            report.actions.append(
                WouldAct(int(row.customer_id), int(row.run_id), row.step, kind, row.at)
            )
            outcome = "action"
        steps.setdefault(row.step, Counter())[outcome] += 1
    report.steps = {step: dict(c) for step, c in steps.items()}
    report.labels = _labels(conn, report.customers)
    return report


def _run_of(key: str) -> int:
    """``run:{id}:step:…`` → id."""
    return int(key.split(":")[1])


def _labels(conn: sa.Connection, ids: list[int]) -> dict[int, str]:
    """A name a marketer recognises: the e-mail, else the user id."""
    out: dict[int, str] = {}
    for start in range(0, len(ids), 5000):
        part = ids[start : start + 5000]
        for cid, email in conn.execute(
            sa.select(customers.c.id, customers.c.email).where(customers.c.id.in_(part))
        ):
            if email:
                out[int(cid)] = str(email)
        i = identities.c
        for cid, value in conn.execute(
            sa.select(i.customer_id, i.value)
            .where(i.customer_id.in_(part), i.kind == "user_id")
            .order_by(i.id)
        ):
            out.setdefault(int(cid), str(value))
    return out
