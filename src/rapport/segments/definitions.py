"""Rule segments as stored definitions: create, change, delete, list with sizes.

A definition is validated whole before it is stored (unknown fields, bad values and
cycles through other segments are refused with the path of the bad node), and each
change bumps its version. Membership is not computed here but by ``membership``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.segments.dependencies import dependencies
from rapport.segments.rules import Rule, parse_rule, segment_lookup
from rapport.store.tables import segment_members, segments


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    description: str
    kind: str
    rules: dict[str, Any] | None
    version: int
    created_at: datetime
    updated_at: datetime

    def rule(self) -> Rule:
        if self.rules is None:
            raise ValueError(f"segment {self.id} is a static list and has no rule")
        return parse_rule(self.rules)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "rules": self.rules,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class SegmentNotFound(LookupError):
    pass


class SegmentConflict(ValueError):
    """The change collides with other segments: a taken name, or a segment still in use."""


def _row(row: Any) -> Segment:
    return Segment(
        row.id,
        row.name,
        row.description,
        row.kind,
        row.rules,
        row.version,
        row.created_at,
        row.updated_at,
    )


def _check_name(conn: sa.Connection, name: str, own_id: int | None) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        raise InvalidInput([Problem("name", "must be 1 to 200 characters")])
    taken = conn.execute(sa.select(segments.c.id).where(segments.c.name == name)).scalar()
    if taken is not None and taken != own_id:
        raise SegmentConflict(f"name: segment {taken} already has the name {name!r}")
    return name


def create_segment(
    conn: sa.Connection, name: str, description: str, rules: Any, now: datetime
) -> Segment:
    name = _check_name(conn, name, None)
    rule = parse_rule(rules, "rules", lookup=segment_lookup(conn))
    row = conn.execute(
        segments.insert()
        .values(
            name=name,
            description=description or "",
            kind="rules",
            rules=rule.to_json(),
            version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(*segments.c)
    ).one()
    return _row(row)


def update_segment(
    conn: sa.Connection,
    segment_id: int,
    now: datetime,
    *,
    name: str | None = None,
    description: str | None = None,
    rules: Any = None,
) -> Segment:
    current = get_segment(conn, segment_id)
    values: dict[str, Any] = {"updated_at": now, "version": current.version + 1}
    if name is not None:
        values["name"] = _check_name(conn, name, segment_id)
    if description is not None:
        values["description"] = description
    if rules is not None:
        if current.kind != "rules":
            raise InvalidInput([Problem("rules", "a static list has no rules")])
        rule = parse_rule(rules, "rules", lookup=segment_lookup(conn), segment_id=segment_id)
        values["rules"] = rule.to_json()
    conn.execute(segments.update().where(segments.c.id == segment_id).values(**values))
    return get_segment(conn, segment_id)


def delete_segment(conn: sa.Connection, segment_id: int, now: datetime) -> None:
    """Refused while another segment's rule reads this one. Its membership rows go with
    it (they reference the segment); the timelines keep their entered/exited events."""
    get_segment(conn, segment_id)
    users = [s.id for s in all_segments(conn) if s.kind == "rules" and segment_id in _reads(s)]
    if users:
        raise SegmentConflict(f"segments {users} use this segment; change them first")
    conn.execute(segment_members.delete().where(segment_members.c.segment_id == segment_id))
    conn.execute(segments.delete().where(segments.c.id == segment_id))


def _reads(segment: Segment) -> frozenset[int]:
    try:
        return dependencies(segment.rule()).segments
    except (InvalidInput, ValueError):
        return frozenset()


def get_segment(conn: sa.Connection, segment_id: int) -> Segment:
    row = conn.execute(sa.select(segments).where(segments.c.id == segment_id)).first()
    if row is None:
        raise SegmentNotFound(f"segment {segment_id} does not exist")
    return _row(row)


def find_segment(conn: sa.Connection, key: str) -> Segment:
    """By id or by name (the CLI takes either)."""
    if key.isdigit():
        return get_segment(conn, int(key))
    row = conn.execute(sa.select(segments).where(segments.c.name == key)).first()
    if row is None:
        raise SegmentNotFound(f"no segment named {key!r}")
    return _row(row)


def all_segments(conn: sa.Connection, kind: str | None = None) -> list[Segment]:
    query = sa.select(segments).order_by(segments.c.id)
    if kind is not None:
        query = query.where(segments.c.kind == kind)
    return [_row(r) for r in conn.execute(query)]


def sizes(conn: sa.Connection) -> dict[int, int]:
    """Current members per segment, from the stored membership."""
    sm = segment_members.c
    rows = conn.execute(
        sa.select(sm.segment_id, sa.func.count()).where(sm.until.is_(None)).group_by(sm.segment_id)
    )
    return {int(sid): int(n) for sid, n in rows}
