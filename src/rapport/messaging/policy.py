"""The communication policy: may this customer get this message on this channel, and when.

One policy covers every sender (campaigns now, scenario steps next), so a customer in
three campaigns and two scenarios still gets no more than the operator allows. DESIGN.md
places the policy under ``scenarios/``; it lives here because campaigns in ``messaging``
need it and ``scenarios`` imports ``messaging``, never the other way round.

Rules, checked in this order (the first that says no is the reason):

0. **Global control group** — a stable share of customers (``messaging.holdout``) gets no
   marketing at all, so what CRM as a whole earns can be measured; reason
   ``global_control``.
1. **Suppression** — an address that hard-bounced or complained is never sent to.
2. **Consent** — ``unsubscribed`` always blocks; with ``require_consent`` (the default for
   every customer channel) only ``subscribed`` allows a marketing message, so an absent or
   ``pending`` (double opt-in not confirmed) decision blocks too.
3. **Frequency caps** — at most N messages per customer per D days on a channel, and
   optionally across all channels, counted from the outbox rows created in the window
   that were not skipped. A cap may keep its last slots for senders of a high priority
   (``reserve``): a scenario's or campaign's priority, 0–100, decides who gets them.
4. **Quiet hours** — inside the window (customer's timezone) a message is not refused
   but delayed to the window's end: ``Decision.send_at``.

A ``transactional`` message (an order confirmation, a password reset) bypasses the global
control group, caps, quiet hours and the consent requirement, but not an explicit
``unsubscribed`` (the dispatcher enforces that at send time anyway) nor a suppressed
address.

:func:`decide` answers for a whole batch in a handful of queries, independent of its size:
campaigns call it for a thousand customers at a time. It reads what the rules need
(:class:`Seen`) and :func:`judge` applies them without a query, so a caller that read once
for many small groups (``policy_round``, a round of scenario sends) answers each from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rapport.errors import InvalidInput, Problem
from rapport.messaging import holdout
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.holdout import REASON as GLOBAL_CONTROL
from rapport.messaging.holdout import GlobalControl, control_from, in_global_control
from rapport.messaging.policy_facts import (
    Reachable,
    Seen,
    consent_statuses,
    customer_facts,
    recent_counts,
    suppressed_customers,
)
from rapport.segments.config import read_setting, write_setting
from rapport.store.tables import app_settings

SETTING = "policy"
PRIORITIES = ("marketing", "transactional")
Priority = Literal["marketing", "transactional"]
Channel = Literal["email", "sms", "push", "webpush", "telegram", "webhook"]  # base.CHANNELS
# Channels that reach a person; a webhook goes to a system and needs no consent.
CUSTOMER_CHANNELS = ("email", "sms", "push", "webpush", "telegram")
# Channels that interrupt (a phone buzzes); an e-mail waits in the inbox until it is read.
INTERRUPTING = ("sms", "push", "webpush", "telegram")
# A sender's priority when frequency caps collide (a scenario's ``priority``, a campaign's
# ``cap_priority``): 0–100, higher wins; "normal" when it names none.
DEFAULT_RANK = 50


class Reserve(BaseModel):
    """The last ``slots`` of a cap are kept for senders of priority ``min_priority`` or more,
    so a welcome or a cart reminder still gets through after a busy week of promotions."""

    model_config = ConfigDict(extra="forbid")

    slots: int = Field(ge=1, le=10_000)
    min_priority: int = Field(ge=1, le=100)


class Cap(BaseModel):
    """At most ``max_messages`` per customer in any ``days``-day window."""

    model_config = ConfigDict(extra="forbid")

    max_messages: int = Field(ge=1, le=10_000)
    days: int = Field(ge=1, le=365)
    reserve: Reserve | None = None

    @model_validator(mode="after")
    def _room(self) -> Cap:
        if self.reserve is not None and self.reserve.slots >= self.max_messages:
            raise ValueError(
                f"reserve.slots ({self.reserve.slots}) must be below max_messages "
                f"({self.max_messages}): lower priorities would get no slot at all"
            )
        return self

    def limit(self, rank: int) -> int:
        """How many messages in the window a sender of priority ``rank`` may fill."""
        if self.reserve is None or rank >= self.reserve.min_priority:
            return self.max_messages
        return self.max_messages - self.reserve.slots

    def refusal(self, count: int, rank: int, what: str) -> str | None:
        """Why a sender of ``rank`` gets no slot with ``count`` used; None when it does."""
        if count < self.limit(rank):
            return None
        reason = f"frequency cap: {self.max_messages} {what}per {self.days} d"
        if count < self.max_messages and self.reserve is not None:
            reserve = self.reserve
            reason += f", the last {reserve.slots} kept for priority {reserve.min_priority}+"
        return reason


class ChannelRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    require_consent: bool = True
    cap: Cap | None = None


class QuietHours(BaseModel):
    """A nightly window, e.g. 21:00–09:00; it may cross midnight but not be empty."""

    model_config = ConfigDict(extra="forbid")

    start: time
    end: time
    channels: list[str] = Field(default_factory=lambda: list(INTERRUPTING))
    # defer: send when the window ends; skip: do not send (a flash sale at night is stale
    # by morning).
    action: Literal["defer", "skip"] = "defer"

    @field_validator("channels")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in CHANNELS:
                raise ValueError(f"unknown channel {name!r} (one of {', '.join(CHANNELS)})")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are the same: the window would be empty")
        return self


class Policy(BaseModel):
    """What ``app_settings['policy']`` holds; every field has a safe default."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[Channel, ChannelRules] = Field(default_factory=dict)
    global_cap: Cap | None = None
    quiet_hours: QuietHours | None = None
    # For customers whose card has no (valid) timezone.
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if _zone(value) is None:
            raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Moscow'")
        return value

    def rules(self, channel: str) -> ChannelRules:
        found = next((r for name, r in self.channels.items() if name == channel), None)
        if found is not None:
            return found
        return ChannelRules(require_consent=channel in CUSTOMER_CHANNELS)


@dataclass(frozen=True)
class Decision:
    """``allowed`` False comes with the ``reason``; ``send_at`` delays an allowed message."""

    allowed: bool
    reason: str | None = None
    send_at: datetime | None = None


ALLOW = Decision(True)


# -- settings ------------------------------------------------------------------------


def field_path(loc: Sequence[Any]) -> str:
    """A validation error's location as the API writes it: ``variants[1].weight``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad dictionary key: the key is the place
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_policy(doc: Any) -> Policy:
    """Validate a policy document; InvalidInput names each bad field."""
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(
            [
                Problem(field_path(e["loc"]) or "policy", e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
        ) from None


def load_policy(conn: sa.Connection) -> Policy:
    stored = read_setting(conn, SETTING)
    return Policy() if stored is None else Policy.model_validate(stored)


def load_settings(conn: sa.Connection) -> tuple[Policy, GlobalControl]:
    """The policy and the global control group in one query (both are read per decision)."""
    stored = dict(conn.execute(_SETTINGS).all())
    doc = stored.get(SETTING)
    policy = Policy() if doc is None else Policy.model_validate(doc)
    return policy, control_from(stored.get(holdout.SETTING))


_SETTINGS = sa.select(app_settings.c.key, app_settings.c.value).where(
    app_settings.c.key.in_((SETTING, holdout.SETTING))
)


def save_policy(conn: sa.Connection, doc: Any, now: datetime) -> Policy:
    policy = parse_policy(doc)
    write_setting(conn, SETTING, policy.model_dump(mode="json"), now)
    return policy


# -- helpers shared with campaigns ----------------------------------------------------


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The customer's zone; the default for a missing or unknown one."""
    return _zone(name) or _zone(default) or ZoneInfo("UTC")


def quiet_until(moment: datetime, window: QuietHours, zone: ZoneInfo) -> datetime | None:
    """The end of the quiet window ``moment`` falls in (UTC), or None outside it."""
    local = moment.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    start, end = window.start, window.end
    if start < end:
        inside, end_day = start <= t < end, local.date()
    elif t >= start:
        inside, end_day = True, local.date() + timedelta(days=1)
    else:
        inside, end_day = t < end, local.date()
    if not inside:
        return None
    return _local(end_day, end, zone)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` as UTC.

    A time a spring-forward change skips comes out an hour later (PEP 495, fold 0 takes
    the offset before the change); a repeated autumn time is its first occurrence.
    """
    return datetime.combine(day, at).replace(tzinfo=zone).astimezone(UTC)


def next_local_hour(after: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """The first ``hour``:00 in ``zone`` at or after ``after`` (UTC)."""
    local = after.astimezone(zone)
    for extra in range(3):
        candidate = _local(local.date() + timedelta(days=extra), time(hour), zone)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable")


# -- the decision --------------------------------------------------------------------


def checked_request(
    customer_ids: Sequence[int], channel: str, priority: str, rank: int
) -> list[int]:
    """The customers of a decision request, each once; a request the policy cannot judge
    (an unknown channel or priority, a rank outside 0–100) is refused."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
    if not 0 <= rank <= 100:
        raise ValueError(f"rank {rank} is not from 0 to 100")
    return list(dict.fromkeys(int(i) for i in customer_ids))


def decide(
    conn: sa.Connection,
    customer_ids: Sequence[int],
    channel: str,
    now: datetime,
    priority: str = "marketing",
    *,
    at: Mapping[int, datetime] | None = None,
    policy: Policy | None = None,
    facts: Mapping[int, Reachable] | None = None,
    rank: int = DEFAULT_RANK,
    control: GlobalControl | None = None,
) -> dict[int, Decision]:
    """A decision for every customer in ``customer_ids`` on ``channel``.

    ``at`` gives the moment each message is planned for (a campaign's local hour), so
    quiet hours are judged when the message would arrive; absent, ``now``. ``policy``,
    ``facts`` (from :func:`customer_facts`) and ``control`` (the global control group) may
    be passed by a caller that has them already. ``rank`` is the sender's priority (0–100),
    which decides who may take a cap's reserved slots. A few queries for the whole batch,
    whatever its size.
    """
    ids = checked_request(customer_ids, channel, priority, rank)
    if not ids:
        return {}
    if policy is None and control is None and priority == "marketing":
        policy, control = load_settings(conn)
    policy = policy or load_policy(conn)
    marketing = priority == "marketing"
    if marketing and control is None:
        control = holdout.global_control(conn)
    facts = customer_facts(conn, ids) if facts is None else facts
    alive = [cid for cid in ids if cid in facts]
    refused = control_refusals(alive, control) if marketing else set()
    left = [cid for cid in alive if cid not in refused]
    blocked = suppressed_customers(conn, channel, {cid: facts[cid] for cid in left})
    left = [cid for cid in left if cid not in blocked]
    rules = policy.rules(channel)
    status = consent_statuses(conn, left, channel) if needs_consents(rules, channel) else {}
    left = [c for c in left if _consent_refusal(status.get(c), channel, rules, marketing) is None]
    counts: dict[int, tuple[int, int]] = {}
    if marketing and (rules.cap is not None or policy.global_cap is not None):
        counts = recent_counts(conn, left, channel, now, rules.cap, policy.global_cap)
    seen = Seen(facts, refused, blocked, status, counts)
    return judge(ids, channel, now, priority, rank, policy, seen, at)


def control_refusals(ids: Sequence[int], control: GlobalControl | None) -> set[int]:
    """Who among ``ids`` is in the global control group."""
    if control is None or not control.enabled:
        return set()
    return {cid for cid in ids if in_global_control(cid, control)}


def needs_consents(rules: ChannelRules, channel: str) -> bool:
    return rules.require_consent or channel in CUSTOMER_CHANNELS


def judge(
    ids: Sequence[int],
    channel: str,
    now: datetime,
    priority: str,
    rank: int,
    policy: Policy,
    seen: Seen,
    at: Mapping[int, datetime] | None = None,
) -> dict[int, Decision]:
    """The rules applied, in order, to what :class:`Seen` holds: no query."""
    rules = policy.rules(channel)
    marketing = priority == "marketing"
    out: dict[int, Decision] = {}
    quiet = policy.quiet_hours
    for cid in ids:
        facts = seen.facts.get(cid)
        if facts is None:
            out[cid] = Decision(False, "customer does not exist")
        elif marketing and cid in seen.in_control:
            out[cid] = Decision(False, GLOBAL_CONTROL)
        elif cid in seen.suppressed:
            out[cid] = Decision(False, f"{channel} address is suppressed")
        elif (refusal := _consent_refusal(seen.consents.get(cid), channel, rules, marketing)) or (
            marketing and (refusal := _cap_refusal(seen.counts.get(cid), channel, rank, policy))
        ):
            out[cid] = Decision(False, refusal)
        elif marketing and quiet is not None and channel in quiet.channels:
            zone = zone_of(facts.timezone, policy.default_timezone)
            moment = (at or {}).get(cid) or now
            until = quiet_until(max(moment, now), quiet, zone)
            if until is None:
                out[cid] = ALLOW
            elif quiet.action == "skip":
                out[cid] = Decision(False, "quiet hours")
            else:
                out[cid] = Decision(True, send_at=until)
        else:
            out[cid] = ALLOW
    return out


def _consent_refusal(
    said: str | None, channel: str, rules: ChannelRules, marketing: bool
) -> str | None:
    if not needs_consents(rules, channel):
        return None
    if said == "unsubscribed":
        return f"unsubscribed from {channel}"
    if marketing and rules.require_consent and said != "subscribed":
        return f"{'pending' if said == 'pending' else 'no'} consent for {channel}"
    return None


def _cap_refusal(
    counts: tuple[int, int] | None, channel: str, rank: int, policy: Policy
) -> str | None:
    mine, total = counts or (0, 0)
    cap = policy.rules(channel).cap
    refused = cap.refusal(mine, rank, f"{channel} ") if cap is not None else None
    if refused is None and policy.global_cap is not None:
        refused = policy.global_cap.refusal(total, rank, "")
    return refused
