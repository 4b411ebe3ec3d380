"""Static lists: segments whose members are added and removed explicitly.

A list is a ``segments`` row of kind ``static``. Membership has history, as for rule
segments: adding opens a ``segment_members`` row (``until`` null), removing closes it, and
adding again opens a new one, so "who was on the VIP list in March" stays answerable.
Entering and leaving are ``Segment Entered`` / ``Segment Exited`` events on the timeline,
recorded through the pipeline in the same transaction as the membership change, so
scenarios can trigger on them and a rolled-back change leaves no event behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rapport.customers.profile import live_id
from rapport.ingest.normalize import normalize_email, normalize_phone
from rapport.store.tables import customers, identities, segment_members, segments

if TYPE_CHECKING:
    from rapport.pipeline import Pipeline

KIND = "static"
ENTERED = "Segment Entered"
EXITED = "Segment Exited"
# Identifier kinds a member can be named by, in the order an import prefers them.
IDENTIFIER_KINDS = ("customer_id", "user_id", "email", "phone")
# The API's plural body fields for each kind.
BODY_FIELDS = {
    "customer_ids": "customer_id",
    "user_ids": "user_id",
    "emails": "email",
    "phones": "phone",
}
IN_CHUNK = 900  # below every driver's limit on bound parameters per statement


class ListError(Exception):
    """A list operation that cannot be done; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class StaticList:
    id: int
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    members: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": KIND,
            "members": self.members,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def member_count(conn: sa.Connection, list_id: int) -> int:
    m = segment_members.c
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(m.segment_id == list_id, m.until.is_(None))
        ).scalar_one()
    )


def _as_list(conn: sa.Connection, row: Any) -> StaticList:
    return StaticList(
        id=int(row.id),
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        members=member_count(conn, int(row.id)),
    )


def get_list(conn: sa.Connection, list_id: int) -> StaticList:
    """The list, or ListError 404 (also for a rule segment: its members are not editable)."""
    row = conn.execute(sa.select(segments).where(segments.c.id == list_id)).first()
    if row is None:
        raise ListError(404, f"list {list_id} does not exist")
    if row.kind != KIND:
        raise ListError(
            404,
            f"segment {list_id} is a rule segment, not a static list; its members follow its rules",
        )
    return _as_list(conn, row)


def find_list(conn: sa.Connection, name: str) -> StaticList | None:
    row = conn.execute(sa.select(segments).where(segments.c.name == name)).first()
    if row is None:
        return None
    if row.kind != KIND:
        raise ListError(409, f"{name!r} is a rule segment, not a static list")
    return _as_list(conn, row)


def all_lists(conn: sa.Connection) -> list[StaticList]:
    rows = conn.execute(
        sa.select(segments).where(segments.c.kind == KIND).order_by(segments.c.id)
    ).all()
    return [_as_list(conn, row) for row in rows]


def create_list(conn: sa.Connection, name: str, description: str, now: datetime) -> StaticList:
    """A new empty list; names are unique across lists and rule segments."""
    name = name.strip()
    if not name:
        raise ListError(422, "name: must not be empty")
    taken = conn.execute(sa.select(segments.c.id).where(segments.c.name == name)).first()
    if taken is not None:
        raise ListError(409, f"name: a segment or list named {name!r} already exists")
    list_id = conn.execute(
        segments.insert()
        .values(
            name=name,
            description=description,
            kind=KIND,
            rules=None,
            created_at=now,
            updated_at=now,
        )
        .returning(segments.c.id)
    ).scalar_one()
    return StaticList(int(list_id), name, description, now, now, 0)


def normalize_identifier(kind: str, value: Any, phone_region: str) -> str | int:
    """The canonical form identities are stored in; ValueError says what is wrong."""
    if kind == "customer_id":
        if isinstance(value, bool):
            raise ValueError("a customer id is a whole number")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a customer id (a whole number)") from None
        if number < 1 or (isinstance(value, float) and value != number):
            raise ValueError(f"{value!r} is not a customer id (a whole number)")
        return number
    if kind == "user_id":
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise ValueError("a user id is a non-empty string")
        return str(value).strip()
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, phone_region)
    raise ValueError(f"unknown identifier kind {kind!r} (expected {', '.join(IDENTIFIER_KINDS)})")


def match_customers(
    conn: sa.Connection, kind: str, values: Iterable[str | int]
) -> dict[str | int, int]:
    """Identifier → the live customer it names; identifiers that name nobody are left out.

    Merged profiles resolve to their survivor; erased profiles are nobody.
    """
    wanted = list(dict.fromkeys(values))
    found: dict[str | int, int] = {}
    for part in _chunks(wanted):
        if kind == "customer_id":
            rows = conn.execute(
                sa.select(customers.c.id, customers.c.id).where(customers.c.id.in_(part))
            ).all()
        else:
            rows = conn.execute(
                sa.select(identities.c.value, identities.c.customer_id).where(
                    identities.c.kind == kind, identities.c.value.in_(part)
                )
            ).all()
        owners = {value: int(cid) for value, cid in rows}
        state = {
            int(r.id): r
            for r in conn.execute(
                sa.select(customers.c.id, customers.c.merged_into, customers.c.erased_at).where(
                    customers.c.id.in_(set(owners.values()))
                )
            )
        }
        for value, cid in owners.items():
            row = state.get(cid)
            if row is None:
                continue
            live = cid if row.merged_into is None else live_id(conn, cid)
            if live is None:
                continue
            if live != cid:
                erased = conn.execute(
                    sa.select(customers.c.erased_at).where(customers.c.id == live)
                ).scalar()
            else:
                erased = row.erased_at
            if erased is None:
                found[value] = live
    return found


def _current(conn: sa.Connection, list_id: int, customer_ids: Sequence[int]) -> set[int]:
    m = segment_members.c
    current: set[int] = set()
    for part in _chunks(customer_ids):
        current.update(
            int(cid)
            for cid in conn.execute(
                sa.select(m.customer_id).where(
                    m.segment_id == list_id, m.until.is_(None), m.customer_id.in_(part)
                )
            ).scalars()
        )
    return current


def add_members(
    conn: sa.Connection,
    pipeline: Pipeline,
    lst: StaticList,
    customer_ids: Iterable[int],
    now: datetime,
) -> tuple[list[int], list[int]]:
    """(added, already members). Each added customer gets a ``Segment Entered`` event."""
    wanted = list(dict.fromkeys(customer_ids))
    present = _current(conn, lst.id, wanted)
    added = [cid for cid in wanted if cid not in present]
    for part in _chunks(added):
        conn.execute(
            segment_members.insert(),
            [
                {"segment_id": lst.id, "customer_id": cid, "since": now, "until": None}
                for cid in part
            ],
        )
    properties = {"segment_id": lst.id, "segment_name": lst.name}
    for cid in added:
        pipeline.record(conn, cid, ENTERED, properties)
    if added:
        _touch(conn, lst.id, now)
    return added, [cid for cid in wanted if cid in present]


def remove_members(
    conn: sa.Connection,
    pipeline: Pipeline,
    lst: StaticList,
    customer_ids: Iterable[int],
    now: datetime,
) -> tuple[list[int], list[int]]:
    """(removed, not members). Removing closes the stay (``until``); history is kept."""
    wanted = list(dict.fromkeys(customer_ids))
    present = _current(conn, lst.id, wanted)
    removed = [cid for cid in wanted if cid in present]
    m = segment_members.c
    for part in _chunks(removed):
        conn.execute(
            segment_members.update()
            .where(m.segment_id == lst.id, m.until.is_(None), m.customer_id.in_(part))
            .values(until=now)
        )
    properties = {"segment_id": lst.id, "segment_name": lst.name}
    for cid in removed:
        pipeline.record(conn, cid, EXITED, properties)
    if removed:
        _touch(conn, lst.id, now)
    return removed, [cid for cid in wanted if cid not in present]


def _touch(conn: sa.Connection, list_id: int, now: datetime) -> None:
    conn.execute(segments.update().where(segments.c.id == list_id).values(updated_at=now))


def members_page(
    conn: sa.Connection, list_id: int, *, limit: int = 50, after: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Current members in the order they joined, a page at a time (keyset on the stay id,
    so a deep page costs what the first one does). Returns (members, next cursor)."""
    m, c = segment_members.c, customers.c
    query = (
        sa.select(
            m.id.label("stay"),
            m.since,
            c.id,
            c.first_name,
            c.last_name,
            c.email,
            c.phone,
            c.orders_count,
            c.revenue,
            c.last_seen_at,
        )
        .select_from(segment_members.join(customers, customers.c.id == m.customer_id))
        .where(m.segment_id == list_id, m.until.is_(None))
        .order_by(m.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(m.id > after)
    rows = conn.execute(query).all()
    members = [
        {
            "id": r.id,
            "first_name": r.first_name,
            "last_name": r.last_name,
            "email": r.email,
            "phone": r.phone,
            "orders_count": r.orders_count,
            "revenue": r.revenue,
            "last_seen_at": r.last_seen_at,
            "since": r.since,
        }
        for r in rows
    ]
    next_cursor = int(rows[-1].stay) if len(rows) == limit else None
    return members, next_cursor


def history(
    conn: sa.Connection, list_id: int, customer_id: int
) -> list[tuple[datetime, datetime | None]]:
    """Every stay of one customer on the list, oldest first: (since, until)."""
    m = segment_members.c
    return [
        (r.since, r.until)
        for r in conn.execute(
            sa.select(m.since, m.until)
            .where(m.segment_id == list_id, m.customer_id == customer_id)
            .order_by(m.id)
        )
    ]
