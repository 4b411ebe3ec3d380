"""What the Loyalty page shows besides the programme itself: customers per tier, the points
outstanding, the latest ledger entries; and the programme as text to edit.

The programme is read and checked by ``loyalty.programme`` (the API's model and store);
the figures here are sums over the store the domain has no function for yet, each one
query. The point totals count as ``loyalty.summary`` counts for one customer (points whose
return period has just ended are spendable, points just past their end are gone), so they
are the sum of what the customers' cards say even before the daily run has caught up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yaml

from rapport.errors import InvalidInput, Problem
from rapport.loyalty import programme as programme_store
from rapport.loyalty.summary import EXPIRING_DAYS
from rapport.segments.rules import load_text
from rapport.store.tables import loyalty_accounts, loyalty_ledger, loyalty_lots
from rapport.web.i18n import N_

RECENT_ENTRIES = 20

# The ledger's kinds (docs/loyalty.md) as the page names them.
KIND_LABELS = {
    "earn": N_("earned on an order"),
    "bonus": N_("bonus"),
    "activate": N_("became spendable"),
    "redeem": N_("paid for an order"),
    "return": N_("returned from a cancelled order"),
    "reverse": N_("taken back (refund)"),
    "expire": N_("points expired"),
    "adjust": N_("adjusted by hand"),
    "transfer": N_("moved by a merge"),
}


def tier_counts(conn: sa.Connection) -> dict[str, int]:
    """Customers holding each tier now: one grouped query on ``loyalty_accounts.tier``."""
    acc = loyalty_accounts.c
    rows = conn.execute(
        sa.select(acc.tier, sa.func.count()).where(acc.tier.is_not(None)).group_by(acc.tier)
    ).all()
    return {str(tier): int(n) for tier, n in rows}


def tier_rows(programme: programme_store.Programme, counts: dict[str, int]) -> list[dict[str, Any]]:
    """The programme's tiers, lowest first, with their customers; then any tier customers
    still hold that the programme no longer has (renamed or removed: the daily run moves
    them), so no holder goes uncounted."""
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "threshold": t.threshold,
            "accrual_percent": programme.rate_for(t.name),
            "own_rate": t.accrual_percent is not None,
            "discount_percent": t.discount_percent,
            "customers": counts.get(t.name, 0),
            "in_programme": True,
        }
        for t in programme.tiers
    ]
    known = {t.name for t in programme.tiers}
    rows += [
        {"name": name, "customers": n, "in_programme": False}
        for name, n in sorted(counts.items())
        if name not in known
    ]
    return rows


def _sum(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> int:
    lots = loyalty_lots.c
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(lots.remaining), 0)).where(
            lots.remaining > 0, *where
        )
    ).scalar_one()
    return int(total)


def point_totals(conn: sa.Connection, now: datetime) -> dict[str, int]:
    """Points spendable now, waiting for a return period, and expiring within 30 days,
    over every customer: three sums over the open lots."""
    lots = loyalty_lots.c
    waiting = sa.and_(lots.status == "pending", lots.activates_at > now)
    alive = sa.or_(lots.expires_at.is_(None), lots.expires_at > now)
    horizon = now + timedelta(days=EXPIRING_DAYS)
    return {
        "balance": _sum(conn, sa.not_(waiting), alive),
        "pending": _sum(conn, waiting),
        "expiring": _sum(conn, sa.not_(waiting), lots.expires_at > now, lots.expires_at <= horizon),
        "expiring_days": EXPIRING_DAYS,
    }


def recent_entries(conn: sa.Connection, limit: int = RECENT_ENTRIES) -> list[dict[str, Any]]:
    """The latest ledger entries of all customers, newest first."""
    led = loyalty_ledger.c
    rows = conn.execute(
        sa.select(
            led.id,
            led.customer_id,
            led.kind,
            led.points,
            led.pending,
            led.order_id,
            led.reason,
            led.created_at,
        )
        .order_by(led.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": int(r.id),
            "customer_id": int(r.customer_id),
            "kind": r.kind,
            "points": int(r.points),
            "pending": int(r.pending),
            "order_id": r.order_id,
            "reason": r.reason,
            "at": r.created_at,
        }
        for r in rows
    ]


def programme_text(programme: programme_store.Programme) -> str:
    """The programme as YAML to edit, in the order the model lists its fields."""
    return yaml.safe_dump(
        programme.model_dump(mode="json"), allow_unicode=True, sort_keys=False, width=100
    )


def parse_programme_text(text: str) -> programme_store.Programme:
    """YAML or JSON checked by the API's model; ``InvalidInput`` names each bad field as
    the model does (``tiers[0].threshold``) or the text itself (``programme``)."""
    data = load_text(text, "programme")
    if data is None:
        raise InvalidInput([Problem("programme", "empty: write the programme as YAML or JSON")])
    if not isinstance(data, dict):
        raise InvalidInput([Problem("programme", "a programme is a mapping of settings")])
    return programme_store.parse(data)
