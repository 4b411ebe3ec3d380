"""The dashboard: the figures a marketer opens the product for, in one call.

Revenue and the share of it CRM earned, the messages and their open/click trend, the
funnel, the active scenarios, and alerts that need a person: a channel whose messages are
failing, a bounce rate jumping above its usual level. Everything is read from the roll-ups
and indexed ranges (message_daily, order_days, order_attributions by time), so it stays
fast on a store of millions of customers (bench/analytics.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.analytics.business import dashboard_business
from rapport.analytics.message_metrics import crm_revenue_share, message_metrics
from rapport.analytics.periods import Period
from rapport.store.tables import message_daily, outbox, scenarios

# An alert when at least this many messages of a channel ended dead in the last day…
FAILING_MIN = 10
# …or when yesterday's bounce rate is this many times the rest of the period's and above
# this floor.
BOUNCE_SPIKE_RATIO = 2.0
BOUNCE_SPIKE_FLOOR = 0.02
BOUNCE_SPIKE_MIN_SENT = 200


def dashboard(conn: sa.Connection, period: Period, now: datetime) -> dict[str, Any]:
    (messages,) = message_metrics(conn, period)
    (before,) = message_metrics(conn, period.previous())
    trend = message_metrics(conn, period, None, "day")
    return {
        "period": period.as_json(),
        "business": dashboard_business(conn, period),
        "crm": crm_revenue_share(conn, period),
        "messages": messages.as_json(),
        "messages_previous_period": before.as_json(),
        "trend": [
            {k: d[k] for k in ("day", "sent", "open_rate", "ctr", "revenue")}
            for d in (m.as_json() for m in trend)
        ],
        "active_scenarios": int(
            conn.execute(
                sa.select(sa.func.count()).where(scenarios.c.status == "active")
            ).scalar_one()
        ),
        "alerts": alerts(conn, period, now),
    }


def alerts(conn: sa.Connection, period: Period, now: datetime) -> list[dict[str, Any]]:
    """What needs a person now, each with a code, the channel and the figures behind it."""
    found: list[dict[str, Any]] = []
    o = outbox.c
    dead = conn.execute(
        sa.select(o.channel, sa.func.count(), sa.func.max(o.last_error))
        .where(o.status == "dead", o.updated_at >= now - timedelta(days=1))
        .group_by(o.channel)
    ).all()
    for channel, n, error in dead:
        if n >= FAILING_MIN:
            found.append(
                {
                    "code": "channel_failing",
                    "channel": channel,
                    "dead_last_day": int(n),
                    "last_error": error,
                }
            )
    d = message_daily.c
    yesterday = now.date() - timedelta(days=1)
    rows = conn.execute(
        sa.select(
            d.channel,
            sa.func.sum(sa.case((d.day == yesterday, d.sent), else_=0)),
            sa.func.sum(sa.case((d.day == yesterday, d.bounced), else_=0)),
            sa.func.sum(d.sent),
            sa.func.sum(d.bounced),
        )
        .where(d.day >= period.first, d.day <= period.last)
        .group_by(d.channel)
    ).all()
    for channel, sent_y, bounced_y, sent, bounced in rows:
        sent_y, bounced_y, sent, bounced = (int(v or 0) for v in (sent_y, bounced_y, sent, bounced))
        if sent_y < BOUNCE_SPIKE_MIN_SENT or sent == sent_y:
            continue  # too few to judge, or no other day to compare with
        rate_y, usual = bounced_y / sent_y, (bounced - bounced_y) / (sent - sent_y)
        if rate_y >= BOUNCE_SPIKE_FLOOR and rate_y >= BOUNCE_SPIKE_RATIO * usual:
            found.append(
                {
                    "code": "bounce_spike",
                    "channel": channel,
                    "day": yesterday.isoformat(),
                    "bounce_rate": round(rate_y, 4),
                    "usual_bounce_rate": round(usual, 4),
                }
            )
    return found
