"""The live count of an unsaved rule, and filling a saved segment's membership.

One place for what the API (``POST /api/segments/preview``, create, change) and the web
builder both do, so the figure a marketer sees while editing is the figure the API gives
for the same rule, checked by the same parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.segments.compiler import count, member_ids
from rapport.segments.membership import SegmentIndex
from rapport.segments.rules import parse_rule, segment_lookup
from rapport.segments.sweep import sweep


@dataclass(frozen=True)
class Preview:
    """How many customers match now, and the first ``len(sample)`` of them by id."""

    count: int
    sample: list[int]


def preview(
    conn: sa.Connection,
    rules: dict[str, Any] | str,
    now: datetime,
    *,
    sample: int = 20,
    segment_id: int | None = None,
) -> Preview:
    """Check ``rules`` (``InvalidInput`` with the path of every bad node) and count them.

    ``segment_id`` is the segment being edited, if any: a draft that refers back to it is
    refused as the save would be (a cycle), instead of being counted.
    """
    rule = parse_rule(rules, "rules", lookup=segment_lookup(conn), segment_id=segment_id)
    return Preview(count(conn, rule, now), member_ids(conn, rule, now, limit=sample))


def refill(conn: sa.Connection, segment_id: int, now: datetime) -> None:
    """A new or changed rule: fill membership in the same transaction (silently, without
    entry events), with the segments that read it. A private index sees the uncommitted
    definition; the caller invalidates the shared one after commit, so a rolled-back
    change never reaches it."""
    index = SegmentIndex().current(conn)
    sweep(conn, index, now, [segment_id, *index.dependents.get(segment_id, [])], backfill=True)
