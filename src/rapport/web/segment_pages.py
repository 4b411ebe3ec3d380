"""What the segment pages show, gathered from the domains (the route module stays thin).

Nothing here computes a figure of its own: sizes come from ``definitions.sizes``, the live
count from ``segments.preview`` (the API's preview), members from the stored membership
and ``customers.card.summaries``; trends and usage from ``segment_overview``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rapport.access.roles import Permission
from rapport.customers.card import summaries
from rapport.errors import InvalidInput, Problem
from rapport.segments import definitions
from rapport.segments.preview import preview
from rapport.store.tables import event_counters, segment_members
from rapport.web import i18n
from rapport.web.context import Page
from rapport.web.segment_catalog import (
    CHOICES,
    EVENT_MODE_LABELS,
    GROUP_LABELS,
    MESSAGE_LABELS,
    OPERATOR_LABELS,
    STATUS_LABELS,
    field_groups,
)
from rapport.web.segment_forms import Draft, place
from rapport.web.segment_overview import refreshed, sparkline, trends, usage
from rapport.web.segment_tree import EVENT_MODES, FILTER_OPS, value_input
from rapport.web.segment_words import describe

SAMPLE = 10
EVENT_NAMES = 300


def _trend_of(values: list[int]) -> dict[str, Any]:
    return {"values": values, "points": sparkline(values), "change": values[-1] - values[0]}


def list_context(page: Page, q: str) -> dict[str, Any]:
    """Every segment and list whose name contains ``q`` (any case), with its figures."""
    now = page.clock.now()
    wanted = q.strip().casefold()
    with page.engine.connect() as conn:
        found = definitions.all_segments(conn)
        sizes = definitions.sizes(conn)
        uses = usage(conn, found)
        shown = [s for s in found if wanted in s.name.casefold()]
        trend = trends(conn, sizes, now, [s.id for s in shown])
        fresh = refreshed(conn, shown)
    rows = [
        {
            "segment": s,
            "size": sizes.get(s.id, 0),
            "trend": _trend_of(trend[s.id]),
            "refreshed": fresh[s.id],
            "uses": uses.get(s.id, []),
        }
        for s in shown
    ]
    return {"rows": rows, "q": q, "total": len(found)}


def detail_context(page: Page, segment: definitions.Segment) -> dict[str, Any]:
    """A saved segment's size, trend, refresh time, users, members and rule in words."""
    now = page.clock.now()
    sm = segment_members.c
    with page.engine.connect() as conn:
        everything = definitions.all_segments(conn)
        size = definitions.sizes(conn).get(segment.id, 0)
        trend = trends(conn, {segment.id: size}, now, [segment.id])[segment.id]
        ids = list(
            conn.execute(
                sa.select(sm.customer_id)
                .where(sm.segment_id == segment.id, sm.until.is_(None))
                .order_by(sm.customer_id)
                .limit(SAMPLE)
            ).scalars()
        )
        members = summaries(conn, ids)
        uses = usage(conn, everything).get(segment.id, [])
        fresh = refreshed(conn, [segment])[segment.id]
    words = None
    if segment.kind == "rules":
        names = {s.id: s.name for s in everything}
        words = describe(segment.rule().to_json(), lambda s: i18n.gettext(page.language, s), names)
    return {
        "segment": segment,
        "size": size,
        "trend": _trend_of(trend),
        "refreshed": fresh,
        "members": members,
        "uses": uses,
        "blocked": [u for u in uses if u.blocks],
        "words": words,
    }


def preview_context(
    page: Page, draft: Draft, segment: definitions.Segment | None
) -> dict[str, Any]:
    """The draft's count and sample, or its problems, each placed beside its node."""
    rules, problems = draft.rules()
    count: int | None = None
    sample: list[dict[str, Any]] = []
    if not problems:
        with page.engine.connect() as conn:
            try:
                found = preview(
                    conn,
                    rules,
                    page.clock.now(),
                    sample=SAMPLE,
                    segment_id=segment.id if segment else None,
                )
            except InvalidInput as exc:
                problems = exc.problems
            else:
                count, sample = found.count, summaries(conn, found.sample)
    return {"count": count, "sample": sample, **_placed(draft, problems)}


def _placed(draft: Draft, problems: list[Problem]) -> dict[str, Any]:
    root = draft.root if draft.mode == "visual" else None
    by_node, elsewhere = place(problems, root)
    return {
        "problems": problems,
        "by_node": by_node,
        "elsewhere": elsewhere,
        "node_keys": [n.key for n in root.walk()] if root is not None else [],
    }


def builder_context(
    page: Page,
    draft: Draft,
    segment: definitions.Segment | None,
    problems: list[Problem] | None,
) -> dict[str, Any]:
    """The builder's form, its live preview, and the save problems beside their inputs."""
    is_rule = segment is None or segment.kind == "rules"
    live = preview_context(page, draft, segment) if is_rule else {}
    if problems:
        seen = {(p.where, p.reason) for p in live.get("problems", [])}
        extra = [p for p in problems if (p.where, p.reason) not in seen]
        live |= _placed(draft, [*live.get("problems", []), *extra])
    with page.engine.connect() as conn:
        others = [
            s for s in definitions.all_segments(conn) if segment is None or s.id != segment.id
        ]
        events = list(
            conn.execute(
                sa.select(event_counters.c.name)
                .group_by(event_counters.c.name)
                .order_by(event_counters.c.name)
                .limit(EVENT_NAMES)
            ).scalars()
        )
    return {
        "draft": draft,
        "segment": segment,
        "is_rule": is_rule,
        "can_save": page.can(Permission.EDIT_MARKETING) and is_rule,
        "form_problems": {p.where: p for p in (problems or []) if "." not in p.where},
        "preview": live,
        "field_groups": field_groups(),
        "operator_labels": OPERATOR_LABELS,
        "group_labels": GROUP_LABELS,
        "event_modes": EVENT_MODES,
        "event_mode_labels": EVENT_MODE_LABELS,
        "message_labels": MESSAGE_LABELS,
        "status_labels": STATUS_LABELS,
        "filter_ops": FILTER_OPS,
        "choices": CHOICES,
        "other_segments": others,
        "event_names": events,
        "value_input": value_input,
    }
