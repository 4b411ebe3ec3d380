"""What the customer card shows of the programme: points, coupons, recommendations.

The card API (``GET /api/customers/{id}``) and the web card read this one function, so
both show the same thing. It is kept apart from ``customers.card.card``: templates read
that for every recipient of a campaign, and must not pay for a recommendation per
message. Nothing here is personal data beyond what the card already shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.coupons import customer_coupons, personal_discount
from rapport.loyalty.coupons.personal import discounts_of
from rapport.loyalty.summary import loyalty_summary
from rapport.recommend.blocks import products_for
from rapport.recommend.build import last_build
from rapport.recommend.strategies import PERSONAL

HISTORY = 10  # ledger entries on the card, newest first
PICKS = 4  # personal recommendations on the card
_PRODUCT_FIELDS = ("id", "name", "price", "currency", "url", "image_url", "category_id")


def programme_sections(conn: sa.Connection, customer_id: int, now: datetime) -> dict[str, Any]:
    """``loyalty`` (the summary with the latest ledger entries), ``coupons`` (the codes and
    their status), ``personal_discount`` (the running percent and every discount set) and
    ``recommendations`` (the top personal picks; None before the first build)."""
    summary = loyalty_summary(conn, customer_id, now)
    summary["history"] = summary["history"][:HISTORY]
    return {
        "loyalty": summary,
        "coupons": customer_coupons(conn, customer_id, now),
        "personal_discount": {
            "percent": personal_discount(conn, customer_id, now),
            "discounts": discounts_of(conn, customer_id, now),
        },
        "recommendations": recommendations(conn, customer_id, now),
    }


def recommendations(
    conn: sa.Connection, customer_id: int, now: datetime
) -> list[dict[str, Any]] | None:
    """The personal top picks (fallbacks fill the list, as in messages); None when the
    lists were never built, so the card can say so instead of showing nothing."""
    if last_build(conn) is None:
        return None
    picks = products_for(conn, [customer_id], PERSONAL, PICKS, now).get(customer_id, [])
    return [
        {
            **{name: item.get(name) for name in _PRODUCT_FIELDS},
            "strategy": item.get("strategy"),
            "score": item.get("score"),
        }
        for item in picks
    ]
