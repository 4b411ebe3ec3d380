"""The ingest inbox: requests acknowledged before they are applied.

With queued ingest (``RAPPORT_INGEST_QUEUE``) an endpoint validates a request, appends its
body here and answers; an applier (``rapport.applier``) takes the oldest rows in large
groups, applies them through the pipeline and deletes them in the same transaction, so a
row is applied exactly once however the process stops. The store is the queue: nothing
else to install, back up or monitor, and the rows survive a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.ingest.incoming import Incoming
from rapport.ingest.lanes import split
from rapport.ingest.traits import Attributes
from rapport.store.fast import db_time, run_many
from rapport.store.tables import ingest_inbox as inbox

# A request that failed this many times on its own is parked until an operator retries it.
MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One acknowledged request (or its share of one lane, :func:`entries`): the
    endpoint, when it arrived, and its body: the validated messages (:func:`encode`), or,
    in rows from before that form, the body as received."""

    kind: str
    received_at: datetime
    body: bytes
    messages: int
    lane: int = 0


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    entry: Entry
    attempts: int


@dataclass(frozen=True, slots=True)
class Status:
    pending_requests: int
    pending_messages: int
    oldest_received_at: datetime | None
    parked_requests: int


# A request is kept as the messages it was validated into, not as its body: reading the
# body again cost the applier about a third of applying it (parsing, validation,
# normalisation). The form is a JSON array, [FORMAT, message, ...], each message the
# values of ``Incoming``'s fields in order; a request body is always a JSON object, so rows
# appended as raw bodies (before this form) are still told apart and read the old way.
FORMAT = 1
_FIELDS = tuple(f.name for f in fields(Incoming))
_OCCURRED, _RECEIVED = _FIELDS.index("occurred_at"), _FIELDS.index("received_at")
_ATTRIBUTES = _FIELDS.index("attributes")


def encode(batch: Sequence[Incoming]) -> bytes:
    """Validated messages as the inbox keeps them (the write key is not among them)."""
    return orjson.dumps([FORMAT, *([getattr(m, f) for f in _FIELDS] for m in batch)])


def entries(
    kind: str, received_at: datetime, batch: Sequence[Incoming], lanes: int = 1
) -> list[Entry]:
    """A validated request as the inbox keeps it: one row per lane its messages fall in
    (``rapport.ingest.lanes``), one row with a single lane."""
    return [
        Entry(kind, received_at, encode(part), len(part), lane)
        for lane, part in split(batch, lanes)
    ]


def decode(stored: list[Any]) -> list[Incoming]:
    """The messages of a request kept by :func:`encode`, from its parsed JSON (whose
    lists are reused as the messages' values, so it is not to be read afterwards)."""
    if not stored or stored[0] != FORMAT:
        version = stored[0] if stored else None
        raise InvalidInput([Problem("body", f"unknown inbox format {version!r}")])
    out = []
    # A request's messages share one time of receipt: read once and shared, as the parser
    # shares it, so later steps that cache by object (the events' COPY text) hit.
    receipt: tuple[str, datetime] | None = None
    try:
        for values in stored[1:]:
            values[_OCCURRED] = datetime.fromisoformat(values[_OCCURRED])
            if receipt is None or receipt[0] != values[_RECEIVED]:
                receipt = (values[_RECEIVED], datetime.fromisoformat(values[_RECEIVED]))
            values[_RECEIVED] = receipt[1]
            attributes = values[_ATTRIBUTES]
            if attributes is not None:
                birthday = attributes["columns"].get("birthday")
                if birthday is not None:
                    attributes["columns"]["birthday"] = date.fromisoformat(birthday)
                values[_ATTRIBUTES] = Attributes(**attributes)
            out.append(Incoming(*values))
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise InvalidInput([Problem("body", f"not a stored request: {exc}")]) from None
    return out


def append(conn: sa.Connection, entries: Sequence[Entry]) -> None:
    """One hand-written statement: this runs once per acknowledged request, where the
    table form's per-call preparation was a fifth of the request's CPU."""
    run_many(
        conn,
        "INSERT INTO ingest_inbox (kind, received_at, body, messages, lane) "
        "VALUES (%s, %s, %s, %s, %s)",
        [(e.kind, db_time(conn, e.received_at), e.body, e.messages, e.lane) for e in entries],
    )


def claim(
    conn: sa.Connection,
    max_messages: int,
    *,
    only: int | None = None,
    lanes: Sequence[int] | None = None,
    rows: int = 500,
) -> list[Claimed]:
    """The oldest pending requests holding at most ``max_messages`` messages (always at
    least one request), of any lane or of ``lanes`` only.

    The group is chosen from a plain read, then only its rows are locked and read; rows
    another applier holds are skipped (PostgreSQL), and if it holds every chosen row the
    next ones are tried. Locking the whole window read (500 rows for a group of 50
    requests) made a second applier skip far past the rows right after the group."""
    after = 0
    while True:
        heads = sa.select(inbox.c.id, inbox.c.messages).where(inbox.c.failed_at.is_(None))
        if only is not None:
            heads = heads.where(inbox.c.id == only)
        if lanes is not None:
            heads = heads.where(inbox.c.lane.in_(list(lanes)))
        if after:
            heads = heads.where(inbox.c.id > after)
        chosen: list[int] = []
        total = 0
        for row_id, messages in conn.execute(heads.order_by(inbox.c.id).limit(rows)):
            if chosen and total + messages > max_messages:
                break
            chosen.append(row_id)
            total += messages
        if not chosen:
            return []
        read = (
            sa.select(
                inbox.c.id,
                inbox.c.kind,
                inbox.c.received_at,
                inbox.c.body,
                inbox.c.messages,
                inbox.c.attempts,
                inbox.c.lane,
            )
            .where(inbox.c.id.in_(chosen), inbox.c.failed_at.is_(None))
            .order_by(inbox.c.id)
        )
        if conn.dialect.name == "postgresql":
            read = read.with_for_update(skip_locked=True)
        got = [
            Claimed(
                r.id, Entry(r.kind, r.received_at, bytes(r.body), r.messages, r.lane), r.attempts
            )
            for r in conn.execute(read)
        ]
        if got:
            return got
        after = chosen[-1]


def remove(conn: sa.Connection, ids: Sequence[int]) -> None:
    conn.execute(inbox.delete().where(inbox.c.id.in_(list(ids))))


def record_failure(
    conn: sa.Connection, row_id: int, error: str, now: datetime, *, park: bool = False
) -> bool:
    """Count a failed attempt; park the request when it has failed ``MAX_ATTEMPTS`` times
    (or at once with ``park``). Returns whether it is now parked."""
    attempts = conn.execute(
        sa.select(inbox.c.attempts).where(inbox.c.id == row_id)
    ).scalar_one_or_none()
    if attempts is None:
        return False
    parked = park or attempts + 1 >= MAX_ATTEMPTS
    conn.execute(
        inbox.update()
        .where(inbox.c.id == row_id)
        .values(attempts=attempts + 1, last_error=error[:2000], failed_at=now if parked else None)
    )
    return parked


def status(conn: sa.Connection) -> Status:
    pending = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(inbox.c.messages), 0)).where(
            inbox.c.failed_at.is_(None)
        )
    ).one()
    oldest = conn.execute(
        sa.select(inbox.c.received_at)
        .where(inbox.c.failed_at.is_(None))
        .order_by(inbox.c.id)
        .limit(1)
    ).scalar_one_or_none()
    parked = conn.execute(
        sa.select(sa.func.count()).where(inbox.c.failed_at.is_not(None))
    ).scalar_one()
    return Status(int(pending[0]), int(pending[1]), oldest, int(parked))


def health(current: Status, now: datetime) -> dict[str, Any]:
    """The inbox's lag as the health endpoint and ``rapport ingest status`` show it."""
    oldest = current.oldest_received_at
    return {
        "pending_requests": current.pending_requests,
        "pending_messages": current.pending_messages,
        "lag_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
        "parked_requests": current.parked_requests,
    }


def parked(
    conn: sa.Connection, limit: int = 100
) -> list[sa.Row[tuple[int, str, datetime, int, int, str]]]:
    return list(
        conn.execute(
            sa.select(
                inbox.c.id,
                inbox.c.kind,
                inbox.c.received_at,
                inbox.c.messages,
                inbox.c.attempts,
                inbox.c.last_error,
            )
            .where(inbox.c.failed_at.is_not(None))
            .order_by(inbox.c.id)
            .limit(limit)
        )
    )


def retry(conn: sa.Connection, ids: Sequence[int] | None = None) -> int:
    """Put parked requests back in line (all of them without ``ids``)."""
    stmt = inbox.update().where(inbox.c.failed_at.is_not(None))
    if ids is not None:
        stmt = stmt.where(inbox.c.id.in_(list(ids)))
    return int(conn.execute(stmt.values(failed_at=None, attempts=0)).rowcount)


def discard(conn: sa.Connection, ids: Sequence[int]) -> int:
    """Drop parked requests for good (an operator's decision, after reading the error)."""
    return int(
        conn.execute(
            inbox.delete().where(inbox.c.failed_at.is_not(None), inbox.c.id.in_(list(ids)))
        ).rowcount
    )
