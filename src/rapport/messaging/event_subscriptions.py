"""Outgoing event subscriptions: stored events POSTed to a partner's URL, signed.

A subscription names a URL and the events it wants: exact names, ``*`` for all, or a
prefix ending in ``*`` (``Message *``). Deliveries do not call out from the pipeline —
that would put a partner's latency and outages inside every ingest transaction — but
become outbox rows on the ``webhook`` channel, written in the transaction that stores the
events (:func:`notify`), so they get the dispatcher's retries with backoff, dead letters
and exactly-once bookkeeping, and nothing is sent for events that were rolled back.

One row per (subscription, event), keyed ``sub:{subscription}:event:{event message id}``
so a replayed batch queues nothing twice. The row has no customer: status changes of a
customer-less row produce no events (``outbox.event_for``), so a delivery can never be an
event that triggers another delivery. The row names its subscription, not its secret:
:class:`SignedBySubscription` looks the secret, URL and state up when the row is sent, so
a rotated secret or a changed URL applies to what is still queued, and the secret is never
copied into the outbox.

The pipeline matches every stored event against the active subscriptions, so it keeps
them in a :class:`SubscriptionIndex` (reloaded every few seconds, or at once after a change
through the API) and memoises the answer per event name: with no subscriptions the cost
per batch is one clock read.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channels.base import Backend, OutgoingMessage, SendResult
from rapport.messaging.outbox import QueuedMessage, enqueue
from rapport.store.tables import webhook_subscriptions

KEY_PREFIX = "sub:"
MAX_PATTERNS = 100
MIN_SECRET = 16


class SubscriptionNotFound(LookupError):
    pass


class SubscriptionConflict(ValueError):
    pass


@dataclass(frozen=True)
class Subscription:
    id: int
    name: str
    url: str
    event_names: tuple[str, ...]
    active: bool
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """What the API shows; the secret is shown once, when it is made."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "event_names": list(self.event_names),
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# -- validation ------------------------------------------------------------------------


def _problems(
    *,
    name: str | None = None,
    url: str | None = None,
    event_names: Sequence[str] | None = None,
    secret: str | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    if name is not None and not 1 <= len(name.strip()) <= 200:
        problems.append(Problem("name", "1 to 200 characters"))
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(Problem("url", f"not an http(s) URL: {url!r}"))
        elif len(url) > 2000:
            problems.append(Problem("url", "longer than 2000 characters"))
    if event_names is not None:
        if not event_names:
            problems.append(Problem("event_names", "name at least one event, or '*' for all"))
        if len(event_names) > MAX_PATTERNS:
            problems.append(Problem("event_names", f"at most {MAX_PATTERNS} names"))
        for i, pattern in enumerate(event_names):
            if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 200:
                problems.append(Problem(f"event_names[{i}]", "1 to 200 characters"))
            elif "*" in pattern[:-1]:
                problems.append(
                    Problem(f"event_names[{i}]", "'*' may only end a name ('Message *')")
                )
    if secret is not None and not MIN_SECRET <= len(secret) <= 200:
        problems.append(Problem("secret", f"{MIN_SECRET} to 200 characters"))
    return problems


def _check(**fields: Any) -> None:
    problems = _problems(**fields)
    if problems:
        raise InvalidInput(problems)


# -- storage ---------------------------------------------------------------------------


def _from_row(row: Any) -> Subscription:
    return Subscription(
        id=int(row.id),
        name=row.name,
        url=row.url,
        event_names=tuple(row.event_names),
        active=bool(row.active),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_name(conn: sa.Connection, name: str, own_id: int | None = None) -> None:
    found = conn.execute(
        sa.select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.name == name)
    ).scalar_one_or_none()
    if found is not None and found != own_id:
        raise SubscriptionConflict(f"an event subscription named {name!r} exists (id {found})")


def create_subscription(
    conn: sa.Connection,
    *,
    name: str,
    url: str,
    event_names: Sequence[str],
    now: datetime,
    secret: str | None = None,
    active: bool = True,
) -> tuple[Subscription, str]:
    """Store a subscription; returns it and its secret (made here when not given)."""
    _check(name=name, url=url, event_names=event_names, secret=secret)
    name = name.strip()
    _check_name(conn, name)
    secret = secret or new_secret()
    row = conn.execute(
        webhook_subscriptions.insert()
        .values(
            name=name,
            url=url,
            event_names=[p.strip() for p in event_names],
            secret=secret,
            active=active,
            created_at=now,
            updated_at=now,
        )
        .returning(*webhook_subscriptions.c)
    ).one()
    return _from_row(row), secret


def get_subscription(conn: sa.Connection, subscription_id: int) -> Subscription:
    row = conn.execute(
        sa.select(webhook_subscriptions).where(webhook_subscriptions.c.id == subscription_id)
    ).first()
    if row is None:
        raise SubscriptionNotFound(f"no event subscription {subscription_id}")
    return _from_row(row)


def all_subscriptions(conn: sa.Connection) -> list[Subscription]:
    rows = conn.execute(sa.select(webhook_subscriptions).order_by(webhook_subscriptions.c.id))
    return [_from_row(r) for r in rows]


def update_subscription(
    conn: sa.Connection,
    subscription_id: int,
    now: datetime,
    *,
    name: str | None = None,
    url: str | None = None,
    event_names: Sequence[str] | None = None,
    active: bool | None = None,
    secret: str | None = None,
) -> Subscription:
    _check(name=name, url=url, event_names=event_names, secret=secret)
    get_subscription(conn, subscription_id)
    values: dict[str, Any] = {"updated_at": now}
    if name is not None:
        values["name"] = name.strip()
        _check_name(conn, values["name"], subscription_id)
    if url is not None:
        values["url"] = url
    if event_names is not None:
        values["event_names"] = [p.strip() for p in event_names]
    if active is not None:
        values["active"] = active
    if secret is not None:
        values["secret"] = secret
    conn.execute(
        webhook_subscriptions.update()
        .where(webhook_subscriptions.c.id == subscription_id)
        .values(**values)
    )
    return get_subscription(conn, subscription_id)


def delete_subscription(conn: sa.Connection, subscription_id: int) -> None:
    result = conn.execute(
        webhook_subscriptions.delete().where(webhook_subscriptions.c.id == subscription_id)
    )
    if not result.rowcount:
        raise SubscriptionNotFound(f"no event subscription {subscription_id}")


# -- matching (the pipeline's side) ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the pipeline needs of an active subscription to queue a delivery."""

    id: int
    url: str


class Matcher:
    """Active subscriptions by pattern; answers which want an event name, memoised."""

    def __init__(self, subscriptions: Iterable[tuple[Target, Sequence[str]]]) -> None:
        self.exact: dict[str, list[Target]] = {}
        self.prefixes: list[tuple[str, Target]] = []
        for target, patterns in subscriptions:
            for pattern in patterns:
                if pattern.endswith("*"):
                    self.prefixes.append((pattern[:-1], target))
                else:
                    self.exact.setdefault(pattern, []).append(target)
        self._memo: dict[str, tuple[Target, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def matching(self, name: str) -> tuple[Target, ...]:
        found = self._memo.get(name)
        if found is None:
            chosen = {t.id: t for t in self.exact.get(name, ())}
            for prefix, target in self.prefixes:
                if name.startswith(prefix):
                    chosen.setdefault(target.id, target)
            found = tuple(chosen[i] for i in sorted(chosen))
            if len(self._memo) < 10_000:  # event names are few; guard against odd producers
                self._memo[name] = found
        return found


class SubscriptionIndex:
    """The active subscriptions, reloaded every ``ttl`` seconds or after ``invalidate``.

    Like the segment index: the API process invalidates after a change, other processes
    pick it up within ``ttl``.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded = -1.0
        self._matcher = Matcher(())

    def invalidate(self) -> None:
        self._loaded = -1.0

    def current(self, conn: sa.Connection) -> Matcher:
        if time.monotonic() - self._loaded > self.ttl:
            with self._lock:
                t = webhook_subscriptions.c
                rows = conn.execute(sa.select(t.id, t.url, t.event_names).where(t.active.is_(True)))
                self._matcher = Matcher((Target(int(r.id), r.url), r.event_names) for r in rows)
                self._loaded = time.monotonic()
        return self._matcher


def event_document(row: dict[str, Any]) -> dict[str, Any]:
    """The body a subscriber receives for one stored event."""
    occurred = row["occurred_at"]
    return {
        "id": row["message_id"],
        "name": row["name"],
        "type": row["type"],
        "customer_id": row["customer_id"],
        "properties": row["properties"],
        "occurred_at": occurred.isoformat() if isinstance(occurred, datetime) else occurred,
    }


def notify(
    conn: sa.Connection, matcher: Matcher, rows: Sequence[dict[str, Any]], now: datetime
) -> int:
    """Queue one delivery per (matching subscription, event) in the caller's transaction.

    ``rows`` are the events as stored (message_id, name, type, customer_id, properties,
    occurred_at). Returns how many deliveries were queued.
    """
    if not matcher:
        return 0
    messages = []
    for row in rows:
        targets = matcher.matching(row["name"])
        if not targets or _about_a_delivery(row):
            continue
        doc = event_document(row)
        for target in targets:
            messages.append(
                QueuedMessage(
                    idempotency_key=f"{KEY_PREFIX}{target.id}:event:{row['message_id']}",
                    channel="webhook",
                    recipient=target.url,
                    body_text="",
                    subject=row["name"],
                    data={"subscription_id": target.id, "payload": doc},
                )
            )
    if messages:
        enqueue(conn, messages, now)  # no customer: no events come back
    return len(messages)


def _about_a_delivery(row: dict[str, Any]) -> bool:
    """A status event of a subscription delivery. None exist (deliveries have no
    customer), but if one ever did, answering it would start a loop: refuse outright."""
    message_id = row["properties"].get("message_id") if row["properties"] else None
    return isinstance(message_id, str) and message_id.startswith(KEY_PREFIX)


# -- signing at send time (the dispatcher's side) --------------------------------------


@dataclass(frozen=True)
class Signing:
    url: str
    secret: str
    active: bool


SigningLookup = Callable[[set[int]], dict[int, Signing]]


def signing_lookup(engine: sa.Engine) -> SigningLookup:
    """Reads the current URL, secret and state of the subscriptions a batch names."""

    def lookup(ids: set[int]) -> dict[int, Signing]:
        t = webhook_subscriptions.c
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.id, t.url, t.secret, t.active).where(t.id.in_(sorted(ids)))
            )
            return {int(r.id): Signing(r.url, r.secret, bool(r.active)) for r in rows}

    return lookup


class SignedBySubscription(Backend):
    """The webhook channel's backend, giving subscription deliveries their own secret.

    A message naming ``data["subscription_id"]`` goes to that subscription's current URL,
    signed with its current secret (passed to the inner backend as ``data["secret"]``); a
    subscription deleted or paused since the row was queued gets nothing (``rejected``).
    Other messages pass through unchanged.
    """

    channel = "webhook"

    def __init__(self, inner: Backend, lookup: SigningLookup) -> None:
        self.inner = inner
        self.lookup = lookup

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        ids = {sid for m in messages if (sid := _subscription_of(m)) is not None}
        found = await asyncio.to_thread(self.lookup, ids) if ids else {}
        results: dict[int, SendResult] = {}
        passing: list[tuple[int, OutgoingMessage]] = []
        for i, msg in enumerate(messages):
            sid = _subscription_of(msg)
            if sid is None:
                passing.append((i, msg))
                continue
            signing = found.get(sid)
            if signing is None:
                results[i] = SendResult(msg.id, "rejected", error=f"subscription {sid} was deleted")
            elif not signing.active:
                results[i] = SendResult(msg.id, "rejected", error=f"subscription {sid} is paused")
            else:
                data = {**msg.data, "secret": signing.secret}
                passing.append((i, replace(msg, to=signing.url, data=data)))
        if passing:
            answers = await self.inner.send([m for _, m in passing])
            by_id = {a.message_id: a for a in answers}
            for i, msg in passing:
                results[i] = by_id.get(msg.id) or SendResult(
                    msg.id, "failed", error="the backend gave no result"
                )
        return [results[i] for i in range(len(messages))]

    async def close(self) -> None:
        await self.inner.close()


def _subscription_of(msg: OutgoingMessage) -> int | None:
    value = msg.data.get("subscription_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
