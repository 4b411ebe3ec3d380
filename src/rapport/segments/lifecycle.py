"""Lifecycle stages of the CRM funnel: prospect → new → repeat → active → at risk → lapsed,
and back through reactivated.

A stage is a function of the customer's orders and the clock alone (see ``stage_for``), so
the real-time step after an order and the sweep that catches changes made by time alone
(a customer drifting from active to at risk) cannot disagree, and a missed sweep is
repaired by the next one. "Reactivated" is read from the orders too (the latest order came
after a gap longer than the lapse threshold), not from the stage stored before, for the
same reason.

Thresholds are in days. Unless an operator sets them (``app_settings['lifecycle']``),
they follow the store's own rhythm: twice the median time between consecutive orders is
"active", twice that is "lapsed". The precise state machine is in docs/rfm-lifecycle.md.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rapport.customers.computed import COUNTED_ORDER_STATUSES
from rapport.segments.config import read_setting, without_jit, write_setting
from rapport.store.engine import writing
from rapport.store.fast import among, db_time, update_rows
from rapport.store.tables import customers, orders

if TYPE_CHECKING:
    from rapport.pipeline import Pipeline

STAGES = ("prospect", "new", "repeat", "active", "at_risk", "lapsed", "reactivated")
EVENT = "Lifecycle Stage Changed"
SETTINGS_KEY = "lifecycle"
THRESHOLDS_KEY = "lifecycle_thresholds"
DAY = timedelta(days=1)

# Derived defaults: active = ACTIVE_FACTOR × median gap (clamped), lapsed = LAPSED_FACTOR × active.
ACTIVE_FACTOR = 2.0
LAPSED_FACTOR = 2
MIN_ACTIVE_DAYS = 7
MAX_ACTIVE_DAYS = 365
# Below this many repeat purchases a median says little; use the fallback instead.
MIN_GAPS = 30
FALLBACK_ACTIVE_DAYS = 90
DEFAULT_ACTIVE_MIN_ORDERS = 3
# Orders within a day of the previous one are the same shopping occasion, not a repeat.
MIN_GAP = DAY
CHUNK = 500


class LifecycleSettingsError(ValueError):
    """The stored or requested lifecycle settings are not usable."""


@dataclass(frozen=True)
class LifecycleSettings:
    """What an operator may set; a None threshold is derived from the store."""

    active_days: int | None = None
    lapsed_days: int | None = None
    active_min_orders: int = DEFAULT_ACTIVE_MIN_ORDERS

    def __post_init__(self) -> None:
        for name in ("active_days", "lapsed_days"):
            value = getattr(self, name)
            if value is not None and (not _whole(value) or not 1 <= value <= 3650):
                raise LifecycleSettingsError(f"lifecycle.{name} must be a whole number 1..3650")
        if not _whole(self.active_min_orders) or not 3 <= self.active_min_orders <= 1000:
            raise LifecycleSettingsError("lifecycle.active_min_orders must be a whole number ≥ 3")
        if (
            self.active_days is not None
            and self.lapsed_days is not None
            and self.lapsed_days <= self.active_days
        ):
            raise LifecycleSettingsError(
                "lifecycle.lapsed_days must be greater than lifecycle.active_days"
            )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LifecycleThresholds:
    """The thresholds in force, and where they came from (settings, median or fallback)."""

    active_days: int
    lapsed_days: int
    active_min_orders: int = DEFAULT_ACTIVE_MIN_ORDERS
    median_gap_days: float | None = None
    repeat_gaps: int = 0
    source: str = "settings"

    def __post_init__(self) -> None:
        if not 0 < self.active_days < self.lapsed_days:
            raise LifecycleSettingsError("need 0 < active_days < lapsed_days")


def stage_for(
    orders_count: int,
    last_order_at: datetime | None,
    previous_order_at: datetime | None,
    now: datetime,
    thresholds: LifecycleThresholds,
) -> str:
    """The stage of one customer at ``now``.

    ``previous_order_at`` is the time of the order before the latest one (None with fewer
    than two orders); orders are the counted ones (completed, not cancelled or refunded).
    """
    if orders_count <= 0 or last_order_at is None:
        return "prospect"
    idle = now - last_order_at
    if idle > thresholds.lapsed_days * DAY:
        return "lapsed"
    if idle > thresholds.active_days * DAY:
        return "at_risk"
    if (
        orders_count >= 2
        and previous_order_at is not None
        and last_order_at - previous_order_at > thresholds.lapsed_days * DAY
    ):
        return "reactivated"
    if orders_count == 1:
        return "new"
    if orders_count < thresholds.active_min_orders:
        return "repeat"
    return "active"


def lifecycle_settings(conn: sa.Connection) -> LifecycleSettings:
    stored = read_setting(conn, SETTINGS_KEY) or {}
    if not isinstance(stored, dict):
        raise LifecycleSettingsError("the 'lifecycle' setting must be a JSON object")
    unknown = set(stored) - {"active_days", "lapsed_days", "active_min_orders"}
    if unknown:
        raise LifecycleSettingsError(f"unknown lifecycle setting(s): {', '.join(sorted(unknown))}")
    return LifecycleSettings(**stored)


def save_lifecycle_settings(
    conn: sa.Connection, settings: LifecycleSettings, now: datetime
) -> None:
    write_setting(conn, SETTINGS_KEY, asdict(settings), now)


def _gap_seconds(conn: sa.Connection, later: Any, earlier: Any) -> sa.ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def median_gap_days(conn: sa.Connection) -> tuple[float | None, int]:
    """The median time between a customer's consecutive orders, in days, and how many gaps.

    Gaps shorter than a day are left out: a second order placed minutes after the first
    is one shopping occasion split in two, and would pull the median towards zero.
    """
    o = orders.c
    ordered = (
        sa.select(
            o.occurred_at.label("at"),
            sa.func.lag(o.occurred_at)
            .over(partition_by=o.customer_id, order_by=(o.occurred_at, o.id))
            .label("prev"),
        )
        .where(o.status.in_(COUNTED_ORDER_STATUSES))
        .subquery("consecutive")
    )
    gap = _gap_seconds(conn, ordered.c.at, ordered.c.prev)
    gaps = (
        sa.select(gap.label("seconds"))
        .where(ordered.c.prev.is_not(None), gap >= MIN_GAP.total_seconds())
        .subquery("gaps")
    )
    n = int(conn.execute(sa.select(sa.func.count()).select_from(gaps)).scalar_one())
    if n == 0:
        return None, 0
    middle = [
        float(v)
        for v in conn.execute(
            sa.select(gaps.c.seconds)
            .order_by(gaps.c.seconds)
            .limit(1 if n % 2 else 2)
            .offset((n - 1) // 2)
        ).scalars()
    ]
    return sum(middle) / len(middle) / DAY.total_seconds(), n


def derive_thresholds(conn: sa.Connection, settings: LifecycleSettings) -> LifecycleThresholds:
    """Operator settings where given; the rest from the median gap, or the fallback."""
    median, n = median_gap_days(conn)
    if median is not None and n >= MIN_GAPS:
        active = min(MAX_ACTIVE_DAYS, max(MIN_ACTIVE_DAYS, math.ceil(ACTIVE_FACTOR * median)))
        source = "median"
    else:
        active = FALLBACK_ACTIVE_DAYS
        source = "fallback"
    if settings.active_days is not None:
        active = settings.active_days
    lapsed = settings.lapsed_days if settings.lapsed_days is not None else LAPSED_FACTOR * active
    if settings.active_days is not None and settings.lapsed_days is not None:
        source = "settings"
    elif settings.active_days is not None or settings.lapsed_days is not None:
        source = f"settings+{source}"
    if lapsed <= active:
        raise LifecycleSettingsError(
            f"lifecycle.lapsed_days ({lapsed}) must be greater than active_days ({active})"
        )
    return LifecycleThresholds(
        active_days=active,
        lapsed_days=lapsed,
        active_min_orders=settings.active_min_orders,
        median_gap_days=None if median is None else round(median, 3),
        repeat_gaps=n,
        source=source,
    )


def current_thresholds(conn: sa.Connection, now: datetime | None = None) -> LifecycleThresholds:
    """The thresholds of the last sweep (cheap: what the real-time step reads), else derived."""
    stored = read_setting(conn, THRESHOLDS_KEY)
    if isinstance(stored, dict):
        return LifecycleThresholds(**stored)
    # Never swept yet: derive once and (given the time) keep them, so the next order does
    # not scan every order in the store for the median again; the daily sweep refreshes them.
    thresholds = derive_thresholds(conn, lifecycle_settings(conn))
    if now is not None:
        write_setting(conn, THRESHOLDS_KEY, asdict(thresholds), now)
    return thresholds


def _previous_orders(conn: sa.Connection, rows: list[Any]) -> dict[int, datetime]:
    """The order before each customer's latest, for several customers in one query."""
    if not rows:
        return {}
    o = orders.c
    latest = {r.id: r.last_order_at for r in rows}
    found: dict[int, datetime] = {}
    for cid, at in conn.execute(
        sa.select(o.customer_id, o.occurred_at).where(
            o.customer_id.in_(sorted(latest)), o.status.in_(COUNTED_ORDER_STATUSES)
        )
    ):
        if at < latest[cid] and (cid not in found or at > found[cid]):
            found[cid] = at
    return found


def update_stages(
    conn: sa.Connection,
    customer_ids: list[int],
    now: datetime,
    thresholds: LifecycleThresholds | None = None,
) -> list[tuple[int, str | None, str]]:
    """Bring these customers' stages up to date (after their orders changed); returns the
    changes as (customer, from, to) for the caller to announce. Thresholds are read once."""
    if not customer_ids:
        return []
    c = customers.c
    rows = conn.execute(
        sa.select(c.id, c.orders_count, c.last_order_at, c.lifecycle_stage)
        .where(among(conn, c.id, sorted(customer_ids)))
        .order_by(c.id)
    ).all()
    thresholds = thresholds or current_thresholds(conn, now)
    repeat = [r for r in rows if r.orders_count >= 2 and r.last_order_at is not None]
    before = _previous_orders(conn, repeat)
    moves: list[tuple[int, str | None, str]] = []
    for row in rows:
        previous = before.get(row.id)
        stage = stage_for(row.orders_count, row.last_order_at, previous, now, thresholds)
        if stage != row.lifecycle_stage:
            moves.append((row.id, row.lifecycle_stage, stage))
    at = db_time(conn, now)
    update_rows(
        conn,
        "customers",
        "id",
        [("lifecycle_stage", "text", "{new}"), ("lifecycle_changed_at", "timestamptz", "{new}")],
        [(cid, to, at) for cid, _, to in moves],
    )
    return moves


def update_stage(
    conn: sa.Connection,
    pipeline: Pipeline,
    customer_id: int,
    now: datetime,
    thresholds: LifecycleThresholds | None = None,
) -> str | None:
    """One customer's stage, announced on the timeline in the same transaction; returns the
    new stage if it changed."""
    moves = update_stages(conn, [customer_id], now, thresholds)
    if not moves:
        return None
    _, before, after = moves[0]
    pipeline.record(conn, customer_id, EVENT, {"from": before, "to": after})
    return after


@dataclass
class LifecycleSummary:
    computed_at: datetime
    thresholds: LifecycleThresholds
    visited: int = 0
    changed: int = 0
    announced: int = 0
    seconds: float = 0.0
    stages: dict[str, int] = field(default_factory=dict)
    transitions: Counter[tuple[str | None, str]] = field(default_factory=Counter)


def recompute_lifecycle(
    engine: sa.Engine, pipeline: Pipeline, now: datetime, *, chunk: int = CHUNK
) -> LifecycleSummary:
    """The sweep: every live customer's stage at ``now``; changes written and announced.

    The very first sweep of a store classifies everyone silently (a back-fill of history is
    not something that happened to the customers today); later sweeps announce every
    change, including a first stage for customers who arrived since.
    """
    started = time.perf_counter()
    c, o = customers.c, orders.c
    with writing(engine) as conn:
        first_sweep = read_setting(conn, THRESHOLDS_KEY) is None
        thresholds = derive_thresholds(conn, lifecycle_settings(conn))
        write_setting(conn, THRESHOLDS_KEY, asdict(thresholds), now)
    summary = LifecycleSummary(computed_at=now, thresholds=thresholds)

    recent_since = now - thresholds.active_days * DAY
    previous = (
        sa.select(sa.func.max(o.occurred_at))
        .where(
            o.customer_id == c.id,
            o.status.in_(COUNTED_ORDER_STATUSES),
            o.occurred_at < c.last_order_at,
        )
        .scalar_subquery()
    )
    # Only a recent repeat buyer can be reactivated, so only they need the previous order.
    previous_if_needed = sa.case(
        (sa.and_(c.orders_count >= 2, c.last_order_at >= recent_since), previous),
        else_=None,
    )
    query = (
        sa.select(
            c.id,
            c.orders_count,
            c.last_order_at,
            sa.type_coerce(previous_if_needed, o.occurred_at.type).label("previous"),
            c.lifecycle_stage,
        )
        .where(c.merged_into.is_(None))
        .order_by(c.id)
    )
    changes: list[tuple[int, str | None, str]] = []
    with engine.connect() as conn, conn.begin():
        without_jit(conn)
        for row in conn.execute(query.execution_options(yield_per=5000)):
            summary.visited += 1
            stage = stage_for(row.orders_count, row.last_order_at, row.previous, now, thresholds)
            if stage != row.lifecycle_stage:
                changes.append((row.id, row.lifecycle_stage, stage))

    for start in range(0, len(changes), chunk):
        part = changes[start : start + chunk]
        with writing(engine) as conn:
            by_stage: dict[str, list[int]] = {}
            for cid, _, stage in part:
                by_stage.setdefault(stage, []).append(cid)
            # One statement per stage rather than one per customer: a sweep that moves
            # many customers at once (the first one, above all) stays a handful of writes.
            for stage, ids in by_stage.items():
                conn.execute(
                    customers.update()
                    .where(c.id.in_(ids))
                    .values(lifecycle_stage=stage, lifecycle_changed_at=now)
                )
            if not first_sweep:
                for cid, old, stage in part:
                    pipeline.record(conn, cid, EVENT, {"from": old, "to": stage})
                    summary.announced += 1
        for _, old, stage in part:
            summary.transitions[(old, stage)] += 1
    summary.changed = len(changes)

    with engine.connect() as conn:
        summary.stages = stage_counts(conn)
    summary.seconds = time.perf_counter() - started
    return summary


def stage_counts(conn: sa.Connection) -> dict[str, int]:
    """Live customers per stage, in funnel order (customers never classified are left out)."""
    c = customers.c
    rows: dict[str | None, int] = dict(
        conn.execute(
            sa.select(c.lifecycle_stage, sa.func.count())
            .where(c.merged_into.is_(None), c.lifecycle_stage.is_not(None))
            .group_by(c.lifecycle_stage)
        ).all()
    )
    return {stage: int(rows.get(stage, 0)) for stage in STAGES}
