"""What the segment list shows beside each name: size, its trend, last refresh, who uses it.

**Trend.** Membership is stored with its history (``segment_members``: a row per stay,
``since`` and ``until``), so the size at any past moment is known exactly, without
replaying events: members at ``t`` = current − entered after ``t`` + left after ``t``.
One grouped query counts, per segment, the stays that began and ended after each day's
end over the last 30 days; only rows that moved in that window are read. The trend is
the stored membership, so a segment created or changed in the window shows the jump of
its (silent) refill on that day, and zero before it existed.

**Usage.** Who reads a segment, and which users block its deletion, is
``scenarios/segment_usage.py`` (the API's delete asks it too).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.scenarios.segment_usage import Use, usage
from rapport.segments.config import read_setting
from rapport.segments.definitions import Segment
from rapport.segments.sweep import SWEEP_STATE
from rapport.store.tables import segment_members
from rapport.web.i18n import N_

TREND_DAYS = 30
# The words of scenarios/segment_usage.py, marked here for the UI's catalog.
USE_WORDS = (N_("its rule"), N_("audience"), N_("trigger"), N_("action"), N_("condition"))
__all__ = ["USE_WORDS", "Use", "day_ends", "refreshed", "sparkline", "trends", "usage"]


def day_ends(now: datetime, days: int = TREND_DAYS) -> list[datetime]:
    """The moments the trend is read at: the end (UTC midnight) of each of the last
    ``days - 1`` days, then now."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [midnight - timedelta(days=days - 2 - i) for i in range(days - 1)] + [now]


def trends(
    conn: sa.Connection, sizes: dict[int, int], now: datetime, segment_ids: list[int]
) -> dict[int, list[int]]:
    """Each segment's size at each of ``day_ends(now)``, oldest first."""
    ends = day_ends(now)
    sm = segment_members.c
    columns = []
    for i, end in enumerate(ends[:-1]):
        columns.append(sa.func.sum(sa.case((sm.since > end, 1), else_=0)).label(f"in{i}"))
        columns.append(
            sa.func.sum(
                sa.case((sa.and_(sm.until.is_not(None), sm.until > end), 1), else_=0)
            ).label(f"out{i}")
        )
    moved = {
        int(row.segment_id): row._mapping
        for row in conn.execute(
            sa.select(sm.segment_id, *columns)
            .where(
                sm.segment_id.in_(segment_ids),
                sa.or_(sm.since > ends[0], sm.until > ends[0]),
            )
            .group_by(sm.segment_id)
        )
    }
    out: dict[int, list[int]] = {}
    for sid in segment_ids:
        now_size = sizes.get(sid, 0)
        row = moved.get(sid)
        past = [
            now_size - int(row[f"in{i}"] or 0) + int(row[f"out{i}"] or 0) if row else now_size
            for i in range(len(ends) - 1)
        ]
        out[sid] = [*past, now_size]
    return out


def sparkline(values: list[int], width: int = 120, height: int = 28) -> str:
    """SVG polyline points for a small trend line (the page draws it, no script)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) * (height - 4) / span:.1f}"
        for i, v in enumerate(values)
    )


def refreshed(conn: sa.Connection, found: list[Segment]) -> dict[int, datetime]:
    """When each segment's membership was last brought up to date: its last sweep, else
    its last change (a save refills it; a list changes when members are added)."""
    swept = read_setting(conn, SWEEP_STATE) or {}
    out: dict[int, datetime] = {}
    for seg in found:
        at = seg.updated_at
        state = swept.get(str(seg.id))
        if seg.kind == "rules" and state:
            at = max(at, datetime.fromisoformat(state["at"]))
        out[seg.id] = at
    return out
