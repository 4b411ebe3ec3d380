"""The scenario actions ``add_points`` and ``issue_coupon``, as the engine's ``Hooks``.

The scenario engine (scenarios/steps.py) knows nothing of the programme; the pipeline
hands it :class:`LoyaltyHooks`. Each call runs in the transaction that advances the run,
keyed by the step's idempotency key (``run:{run}:step:{step}``), so a step retried after a
crash or a rolled-back batch credits its points and issues its code once. The events
answered are recorded by the caller through the pipeline, like the step's other events.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rapport.loyalty import coupons
from rapport.loyalty.ledger import Event
from rapport.loyalty.points import add_points

SCENARIO_REASON = "scenario"


class LoyaltyHooks:
    """Points and coupons for scenario steps; ``CouponError`` tells the step why not."""

    def add_points(
        self, conn: sa.Connection, customer_id: int, points: int, key: str, now: datetime
    ) -> list[Event]:
        return add_points(conn, customer_id, points, key, now, reason=SCENARIO_REASON)

    def issue_coupon(
        self, conn: sa.Connection, customer_id: int, series: str, key: str, now: datetime
    ) -> tuple[str, list[Event]]:
        return coupons.issue(conn, customer_id, series, key, now)
