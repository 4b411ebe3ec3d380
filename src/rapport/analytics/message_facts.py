"""What became of each message, kept current as its status events arrive.

Reports need "how many of the messages sent in May were opened" over tens of millions of
status events; reading the timeline for that would take minutes. So the pipeline folds
every message status event into two small tables in the transaction that stores it:

- ``message_facts``, one row per message (the outbox idempotency key): where it came from
  and the *first* time of each outcome, with open and click counts;
- ``message_daily``, per day and origin (channel, campaign, scenario step, variant): how
  many messages reached each outcome — what dashboards sum.

A message is counted on the day it was first recorded (queued, normally), whatever day
its open or click comes: so a campaign's open rate is opens of *its* messages over *its*
deliveries, and a day's rates never exceed 100 %. Repeated opens and clicks raise the
counts on the fact but are unique in the roll-up.

Concurrent writers (several workers on PostgreSQL) lock the facts they change, so an
outcome is counted once even when two of its events land at the same moment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from rapport.store.engine import upsert
from rapport.store.tables import MESSAGE_OUTCOMES, message_daily, message_facts

# The status events (messaging/outbox.py) and the outcome each one records.
OUTCOME_OF_EVENT = {
    "Message Queued": "queued",
    "Message Sent": "sent",
    "Message Delivered": "delivered",
    "Message Opened": "opened",
    "Message Clicked": "clicked",
    "Message Bounced": "bounced",
    "Message Complained": "complained",
    "Message Unsubscribed": "unsubscribed",
    "Message Failed": "failed",
}
ORIGIN = ("channel", "campaign_id", "scenario_id", "step", "variant")
_FACT_COLUMNS = [c.name for c in message_facts.columns]
_TIMES = [f"{name}_at" for name in MESSAGE_OUTCOMES]


def is_message_event(name: str) -> bool:
    return name in OUTCOME_OF_EVENT


def fold_message_events(conn: sa.Connection, rows: Iterable[Mapping[str, Any]] | Any) -> int:
    """Fold stored event rows (customer_id, name, properties, occurred_at) into the facts and
    the daily roll-up; other events are ignored. Returns how many status events counted."""
    items: list[tuple[str, str, Mapping[str, Any]]] = []
    for row in rows:
        outcome = OUTCOME_OF_EVENT.get(row["name"])
        if outcome is None:
            continue
        props = row["properties"] or {}
        key = props.get("message_id")
        if not isinstance(key, str) or not key or not isinstance(props.get("channel"), str):
            continue  # not one of Rapport's own messages: nothing to attach it to
        items.append((key, outcome, row))
    if not items:
        return 0
    items.sort(key=lambda item: item[2]["occurred_at"])
    facts = _lock_or_create(conn, items)
    deltas: Counter[tuple[Any, ...]] = Counter()
    changed: set[str] = set()
    for key, outcome, row in items:
        fact = facts[key]
        column = f"{outcome}_at"
        at = row["occurred_at"]
        if fact[column] is None:
            fact[column] = at
            deltas[(fact["day"], *(fact[n] or "" for n in ORIGIN), outcome)] += 1
        elif at < fact[column]:
            fact[column] = at
        if outcome == "opened":
            fact["opens"] += 1
        elif outcome == "clicked":
            fact["clicks"] += 1
        changed.add(key)
    _write_facts(conn, [facts[k] for k in sorted(changed)])
    _bump_daily(conn, deltas)
    return len(items)


def _lock_or_create(
    conn: sa.Connection, items: list[tuple[str, str, Mapping[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """The facts of these messages, locked; new ones inserted first (ON CONFLICT DO NOTHING
    tells which ones a concurrent writer inserted first, and those are then read)."""
    keys = sorted({key for key, _, _ in items})
    facts = _read(conn, keys)
    fresh: dict[str, dict[str, Any]] = {}
    for key, _, row in items:  # oldest first: the first event gives the day and the origin
        if key in facts or key in fresh:
            continue
        props = row["properties"]
        fact: dict[str, Any] = dict.fromkeys(_FACT_COLUMNS)
        fact.update(
            message_key=key,
            customer_id=int(row["customer_id"]),
            channel=props["channel"],
            day=_day(row["occurred_at"]),
            opens=0,
            clicks=0,
        )
        for name in ("campaign_id", "scenario_id", "step", "template_id", "variant"):
            value = props.get(name)
            fact[name] = None if value is None else str(value)[:100]
        fresh[key] = fact
    if fresh:
        stmt = _statements(conn).insert
        inserted = {r[0] for r in conn.execute(stmt, list(fresh.values()))}
        facts.update({k: v for k, v in fresh.items() if k in inserted})
        lost = sorted(set(fresh) - inserted)
        if lost:
            facts.update(_read(conn, lost))
    return facts


def _read(conn: sa.Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    query = _statements(conn).read
    for start in range(0, len(keys), 500):
        for row in conn.execute(query, {"keys": keys[start : start + 500]}).mappings():
            found[row["message_key"]] = dict(row)
    return found


def _write_facts(conn: sa.Connection, facts: list[dict[str, Any]]) -> None:
    if not facts:
        return
    conn.execute(
        _statements(conn).write,
        [
            {"k": f["message_key"], **{f"v_{n}": f[n] for n in (*_TIMES, "opens", "clicks")}}
            for f in facts
        ],
    )


def _bump_daily(conn: sa.Connection, deltas: Counter[tuple[Any, ...]]) -> None:
    if not deltas:
        return
    per_key: dict[tuple[Any, ...], dict[str, int]] = {}
    for (*key, outcome), n in deltas.items():
        per_key.setdefault(tuple(key), dict.fromkeys(MESSAGE_OUTCOMES, 0))[outcome] += n
    conn.execute(
        _statements(conn).bump,
        [
            {"day": key[0], **dict(zip(ORIGIN, key[1:], strict=True)), **counts}
            for key, counts in sorted(per_key.items())
        ],
    )


@dataclass(frozen=True)
class _Statements:
    """What folding events writes, built once per store: every batch of events the
    pipeline records folds its message events, and building these cost more than
    running them."""

    read: Any
    insert: Any
    write: Any
    bump: Any


_BUILT: dict[str, _Statements] = {}


def _statements(conn: sa.Connection) -> _Statements:
    built = _BUILT.get(conn.dialect.name)
    if built is not None:
        return built
    read = sa.select(message_facts).where(
        message_facts.c.message_key.in_(sa.bindparam("keys", expanding=True))
    )
    if conn.dialect.name == "postgresql":
        read = read.with_for_update()
    insert = (
        upsert(conn, message_facts)
        .on_conflict_do_nothing(index_elements=["message_key"])
        .returning(message_facts.c.message_key)
    )
    write = (
        message_facts.update()
        .where(message_facts.c.message_key == sa.bindparam("k"))
        .values({name: sa.bindparam(f"v_{name}") for name in (*_TIMES, "opens", "clicks")})
    )
    bump = upsert(conn, message_daily)
    bump = bump.on_conflict_do_update(
        index_elements=["day", *ORIGIN],
        set_={
            name: getattr(message_daily.c, name) + getattr(bump.excluded, name)
            for name in MESSAGE_OUTCOMES
        },
    )
    built = _BUILT[conn.dialect.name] = _Statements(read, insert, write, bump)
    return built


def _day(moment: datetime) -> date:
    return moment.date()


def rebuild_daily(conn: sa.Connection) -> int:
    """Recount ``message_daily`` from ``message_facts`` in one statement (after a bulk load
    or a repair); returns the number of roll-up rows."""
    conn.execute(message_daily.delete())
    f = message_facts.c
    origin = [e.label(n) for e, n in zip(_origin_exprs(), ORIGIN, strict=True)]
    counts = [sa.func.count(getattr(f, f"{n}_at")).label(n) for n in MESSAGE_OUTCOMES]
    select = sa.select(f.day, *origin, *counts).group_by(f.day, *_origin_exprs())
    conn.execute(message_daily.insert().from_select(["day", *ORIGIN, *MESSAGE_OUTCOMES], select))
    return int(conn.execute(sa.select(sa.func.count()).select_from(message_daily)).scalar_one())


def _origin_exprs() -> list[Any]:
    f = message_facts.c
    blank: Any = sa.literal_column("''")  # a literal: the same expression in SELECT and GROUP BY
    return [sa.func.coalesce(getattr(f, n), blank) for n in ORIGIN]


def rebuild_facts(conn: sa.Connection, *, chunk: int = 5000, progress: Any = None) -> int:
    """Forget the facts and the roll-up and fold every status event on the timeline again,
    oldest first (after restoring a backup, or on a store older than the facts)."""
    from rapport.store.tables import events

    conn.execute(message_daily.delete())
    conn.execute(message_facts.delete())
    e = events.c
    names = sorted(OUTCOME_OF_EVENT)
    last = 0
    folded = 0
    while True:
        rows = (
            conn.execute(
                sa.select(e.id, e.customer_id, e.name, e.properties, e.occurred_at)
                .where(e.id > last, e.name.in_(names))
                .order_by(e.id)
                .limit(chunk)
            )
            .mappings()
            .all()
        )
        if not rows:
            return folded
        folded += fold_message_events(conn, rows)
        last = rows[-1]["id"]
        if progress is not None:
            progress(len(rows))


def count_status_events(conn: sa.Connection) -> int:
    from rapport.store.tables import events

    query = sa.select(sa.func.count()).where(events.c.name.in_(sorted(OUTCOME_OF_EVENT)))
    return int(conn.execute(query).scalar_one())
