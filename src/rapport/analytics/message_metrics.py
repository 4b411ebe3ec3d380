"""The message metrics: sent, delivered, open rate, CTR, CTOR, unsubscribes, bounces,
conversions, attributed orders and revenue, revenue per recipient (docs/metrics.md).

They count the messages *first recorded* in the period and everything those messages
earned so far, whenever it came: a campaign's figures are the same whichever week you look
from, and no rate can exceed 100 %. They read the daily roll-up (``message_daily``), or the
per-message facts when the question is about a segment's members, and the credited orders
(``order_attributions``) for conversions and revenue.

Definitions that differ between tools, and the choice made here:

- **delivered** = sent − bounced (what email senders report as "successful deliveries");
  the providers' explicit delivery receipts, where a channel has them, are ``confirmed``.
- **open rate** and **CTR** are unique opens and clicks over delivered; **CTOR** is clicks
  over opens; **unsubscribe rate** over delivered; **bounce rate** over sent.
- **conversions** are credited orders (last click within N days, else last open within M:
  analytics/attribution.py) that still count (completed, not fully refunded); **revenue** is
  their total less refunds; **revenue per recipient** is revenue over delivered.

A rate whose denominator is zero is ``None`` ("no data"), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from rapport.analytics.periods import Period
from rapport.customers.computed import counted_order
from rapport.errors import InvalidInput, Problem
from rapport.store.tables import (
    MESSAGE_OUTCOMES,
    message_daily,
    message_facts,
    order_attributions,
    orders,
    segment_members,
    segments,
)

GroupBy = Literal[
    "total", "day", "week", "month", "channel", "campaign", "scenario_step", "variant"
]
GROUPS: tuple[str, ...] = (
    "total",
    "day",
    "week",
    "month",
    "channel",
    "campaign",
    "scenario_step",
    "variant",
)
# The origin columns each grouping keeps (the time groupings keep the day).
_KEYS: dict[str, tuple[str, ...]] = {
    "total": (),
    "day": ("day",),
    "week": ("day",),
    "month": ("day",),
    "channel": ("channel",),
    "campaign": ("campaign_id",),
    "scenario_step": ("scenario_id", "step"),
    "variant": ("campaign_id", "scenario_id", "step", "variant"),
}


@dataclass(frozen=True)
class MessageFilter:
    """Which messages: any of these left None is not a restriction."""

    channel: str | None = None
    campaign_id: str | None = None
    scenario_id: str | None = None
    step: str | None = None
    variant: str | None = None
    segment_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class MessageMetrics:
    key: dict[str, Any] = field(default_factory=dict)
    queued: int = 0
    sent: int = 0
    confirmed: int = 0  # explicit delivery receipts
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    conversions: int = 0
    revenue: float = 0.0

    @property
    def delivered(self) -> int:
        return max(self.sent - self.bounced, 0)

    def add(self, other: MessageMetrics) -> None:
        for name in (*_COUNTS, "conversions", "revenue"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        d = self.delivered
        return {
            **self.key,
            "queued": self.queued,
            "sent": self.sent,
            "delivered": d,
            "confirmed_delivered": self.confirmed,
            "opened": self.opened,
            "clicked": self.clicked,
            "bounced": self.bounced,
            "complained": self.complained,
            "unsubscribed": self.unsubscribed,
            "failed": self.failed,
            "open_rate": _rate(self.opened, d),
            "ctr": _rate(self.clicked, d),
            "ctor": _rate(self.clicked, self.opened),
            "unsubscribe_rate": _rate(self.unsubscribed, d),
            "complaint_rate": _rate(self.complained, d),
            "bounce_rate": _rate(self.bounced, self.sent),
            "conversions": self.conversions,
            "conversion_rate": _rate(self.conversions, d),
            "revenue": round(self.revenue, 2),
            "revenue_per_recipient": None if d == 0 else round(self.revenue / d, 4),
        }


_COUNTS = (
    "queued",
    "sent",
    "confirmed",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
    "failed",
)
# Roll-up column → MessageMetrics attribute.
_ATTR = {name: ("confirmed" if name == "delivered" else name) for name in MESSAGE_OUTCOMES}


def _rate(num: float, den: float) -> float | None:
    return None if not den else round(num / den, 6)


def check_group(group_by: str) -> str:
    if group_by not in GROUPS:
        raise InvalidInput([Problem("group_by", f"must be one of {', '.join(GROUPS)}")])
    return group_by


def message_metrics(
    conn: sa.Connection,
    period: Period,
    flt: MessageFilter | None = None,
    group_by: str = "total",
) -> list[MessageMetrics]:
    """The metrics of the messages first recorded in the period, grouped as asked."""
    flt = flt or MessageFilter()
    check_group(group_by)
    if flt.segment_id is not None:
        _check_segment(conn, flt.segment_id)
    keys = _KEYS[group_by]
    rows: dict[tuple[Any, ...], MessageMetrics] = {}
    for key, counts in _outcome_counts(conn, period, flt, keys):
        m = rows.setdefault(key, MessageMetrics())
        for name, value in counts.items():
            setattr(m, _ATTR[name], getattr(m, _ATTR[name]) + int(value or 0))
    for key, n, revenue in _conversions(conn, period, flt, keys):
        m = rows.setdefault(key, MessageMetrics())
        m.conversions += int(n)
        m.revenue += float(revenue or 0)
    return _regroup(rows, keys, group_by, period)


def _check_segment(conn: sa.Connection, segment_id: int) -> None:
    found = conn.execute(sa.select(segments.c.id).where(segments.c.id == segment_id)).first()
    if found is None:
        raise LookupError(f"segment {segment_id} does not exist")


def _outcome_counts(
    conn: sa.Connection, period: Period, flt: MessageFilter, keys: Sequence[str]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    if flt.segment_id is None:
        t = message_daily.c
        cols = [sa.func.sum(getattr(t, n)).label(n) for n in MESSAGE_OUTCOMES]
        where = [t.day >= period.first, t.day <= period.last, *_origin_filter(t, flt)]
    else:  # members only: count the facts themselves
        t = message_facts.c
        cols = [sa.func.count(getattr(t, f"{n}_at")).label(n) for n in MESSAGE_OUTCOMES]
        where = [
            t.day >= period.first,
            t.day <= period.last,
            *_origin_filter(t, flt),
            _member(t.customer_id, flt.segment_id),
        ]
    group = [getattr(t, k) for k in keys]
    query = sa.select(*group, *cols).where(*where)
    if group:
        query = query.group_by(*group)
    out = []
    for row in conn.execute(query).mappings():
        key = tuple(_blank(row[k]) for k in keys)
        out.append((key, {n: row[n] for n in MESSAGE_OUTCOMES}))
    return out


def _conversions(
    conn: sa.Connection, period: Period, flt: MessageFilter, keys: Sequence[str]
) -> list[tuple[tuple[Any, ...], int, float]]:
    a = order_attributions.c
    o = orders.c
    group = [a.message_day if k == "day" else getattr(a, k) for k in keys]
    where = [
        a.message_day >= period.first,
        a.message_day <= period.last,
        counted_order(),
        *_origin_filter(a, flt),
    ]
    if flt.segment_id is not None:
        where.append(_member(a.customer_id, flt.segment_id))
    query = (
        sa.select(*group, sa.func.count(), sa.func.sum(o.total - o.refunded))
        .select_from(order_attributions.join(orders, orders.c.id == a.order_pk))
        .where(*where)
    )
    if group:
        query = query.group_by(*group)
    return [
        (tuple(_blank(v) for v in row[: len(keys)]), row[-2], row[-1])
        for row in conn.execute(query)
    ]


def _origin_filter(t: Any, flt: MessageFilter) -> list[Any]:
    """Equality on each origin given (a given value is never the roll-up's "")."""
    out = []
    for name in ("channel", "campaign_id", "scenario_id", "step", "variant"):
        value = getattr(flt, name)
        if value is not None:
            out.append(getattr(t, name) == str(value))
    return out


def _member(customer_id: Any, segment_id: int | None) -> Any:
    m = segment_members.c
    return customer_id.in_(
        sa.select(m.customer_id).where(m.segment_id == segment_id, m.until.is_(None))
    )


def _blank(value: Any) -> Any:
    """The roll-up's "" (not applicable) reads as None, like the facts' NULL."""
    return None if value == "" else value


def _regroup(
    rows: dict[tuple[Any, ...], MessageMetrics],
    keys: Sequence[str],
    group_by: str,
    period: Period,
) -> list[MessageMetrics]:
    if group_by == "total":
        total = rows.get((), MessageMetrics())
        total.key = {}
        return [total]
    if group_by in ("day", "week", "month"):
        buckets: dict[date, MessageMetrics] = {}
        day = period.first
        while day <= period.last:  # every bucket of the period, empty ones too (for charts)
            buckets.setdefault(_bucket(day, group_by), MessageMetrics())
            day += timedelta(days=1)
        for (d,), m in rows.items():
            if isinstance(d, str):
                d = date.fromisoformat(d)
            buckets.setdefault(_bucket(d, group_by), MessageMetrics()).add(m)
        out = []
        for start, m in sorted(buckets.items()):
            m.key = {group_by: start.isoformat()}
            out.append(m)
        return out
    result = []
    for key, m in sorted(rows.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        m.key = dict(zip(keys, key, strict=True))
        result.append(m)
    return result


def _bucket(day: date, group_by: str) -> date:
    if group_by == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if group_by == "month":
        return day.replace(day=1)
    return day


def crm_revenue_share(
    conn: sa.Connection, period: Period, segment_id: int | None = None
) -> dict[str, Any]:
    """Revenue of the orders *placed* in the period, and the part credited to a message,
    in total and per channel."""
    o = orders.c
    a = order_attributions.c
    kept: list[sa.ColumnElement[bool]] = [counted_order()]
    if segment_id is not None:
        _check_segment(conn, segment_id)
        kept.append(_member(o.customer_id, segment_id))
    total_orders, total = conn.execute(
        sa.select(sa.func.count(), sa.func.sum(o.total - o.refunded)).where(
            o.occurred_at >= period.start, o.occurred_at < period.end, *kept
        )
    ).one()
    # The credited orders are found by their own copy of the order's time (an index range
    # of order_attributions, a few per cent of the orders), then each order by its key:
    # with the order's time in the statement too, the planner would rather scan every
    # order of the period and hash the credits.
    per_channel = conn.execute(
        sa.select(a.channel, sa.func.count(), sa.func.sum(o.total - o.refunded))
        .select_from(order_attributions.join(orders, a.order_pk == o.id))
        .where(a.occurred_at >= period.start, a.occurred_at < period.end, *kept)
        .group_by(a.channel)
        .order_by(a.channel)
    ).all()
    total = float(total or 0)
    crm = sum(float(r[2] or 0) for r in per_channel)
    return {
        "period": period.as_json(),
        "orders": int(total_orders or 0),
        "revenue": round(total, 2),
        "crm_orders": sum(int(r[1]) for r in per_channel),
        "crm_revenue": round(crm, 2),
        "crm_share": _rate(crm, total),
        "channels": [
            {
                "channel": r[0],
                "orders": int(r[1]),
                "revenue": round(float(r[2] or 0), 2),
                "share": _rate(float(r[2] or 0), total),
            }
            for r in per_channel
        ],
    }
