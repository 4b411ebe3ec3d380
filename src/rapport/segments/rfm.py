"""RFM: recency, frequency and monetary scores 1–5 by quintiles, and the named cells.

Scores are relative to the store: a customer's score says which fifth of this period's
buyers they fall in. The whole store is scored with two statements, whatever its size: one
query reads the four quintile thresholds of each measure (window functions over the
per-customer aggregates), and one ``UPDATE … FROM`` writes the scores and cells of every
buyer whose values changed. Nothing is read into Python per customer, which is what lets
it scale to millions of customers.

Ties are deterministic and independent of ids: customers with equal values always get the
same score, the lowest their group reaches (``score = 1 + floor(5 · L / N)`` where ``L`` is
the number of buyers with a strictly worse value). The thresholds are kept in
``app_settings`` so one customer can be scored later without rescoring the store.
See docs/rfm-lifecycle.md for the definitions and the grid.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.customers.computed import COUNTED_ORDER_STATUSES
from rapport.segments.config import read_setting, without_jit, write_setting
from rapport.store.engine import writing
from rapport.store.tables import customers, orders

SETTINGS_KEY = "rfm"
THRESHOLDS_KEY = "rfm_thresholds"
DEFAULT_PERIOD_DAYS = 365
DAY = timedelta(days=1)

# The cells as stored in ``customers.rfm_cell`` (stable slugs, usable in rules) → names.
CELLS: dict[str, str] = {
    "champions": "Champions",
    "loyal": "Loyal",
    "potential_loyalists": "Potential loyalists",
    "new": "New",
    "promising": "Promising",
    "need_attention": "Need attention",
    "about_to_sleep": "About to sleep",
    "at_risk": "At risk",
    "cant_lose_them": "Can't lose them",
    "hibernating": "Hibernating",
    "lost": "Lost",
}

# The R × FM grid: a row per recency score, a column per FM score 1..5, where
# FM = floor((F + M) / 2). It is the segment map widely used for RFM (R on one axis, the
# combined frequency-and-monetary score on the other), with its low-low corner split into
# Hibernating (R 2, or R 1 with FM 2) and Lost (R 1, FM 1) to give the eleven named cells.
GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose_them"),
    1: ("lost", "hibernating", "at_risk", "at_risk", "cant_lose_them"),
}


class RfmSettingsError(ValueError):
    """The stored or requested RFM settings are not usable."""


def fm_score(frequency: int, monetary: int) -> int:
    """Rounded down: a customer reaches a high FM only when both measures are high."""
    return (frequency + monetary) // 2


def cell_for(recency: int, frequency: int, monetary: int) -> str:
    for score in (recency, frequency, monetary):
        if not 1 <= score <= 5:
            raise ValueError(f"RFM scores are 1..5, got {score}")
    return GRID[recency][fm_score(frequency, monetary) - 1]


@dataclass(frozen=True)
class RfmSettings:
    period_days: int = DEFAULT_PERIOD_DAYS

    def __post_init__(self) -> None:
        if not isinstance(self.period_days, int) or isinstance(self.period_days, bool):
            raise RfmSettingsError("rfm.period_days must be a whole number of days")
        if not 1 <= self.period_days <= 36500:
            raise RfmSettingsError("rfm.period_days must be between 1 and 36500")


def rfm_settings(conn: sa.Connection) -> RfmSettings:
    stored = read_setting(conn, SETTINGS_KEY) or {}
    if not isinstance(stored, dict):
        raise RfmSettingsError("the 'rfm' setting must be a JSON object")
    unknown = set(stored) - {"period_days"}
    if unknown:
        raise RfmSettingsError(f"unknown rfm setting(s): {', '.join(sorted(unknown))}")
    return RfmSettings(**stored)


def save_rfm_settings(conn: sa.Connection, settings: RfmSettings, now: datetime) -> None:
    write_setting(conn, SETTINGS_KEY, asdict(settings), now)


@dataclass(frozen=True)
class Thresholds:
    """The quintile cut points of one scoring run (four per measure).

    ``recency_days[k]`` is the days-since-last-order value at position ceil((k+1)·N/5) from
    the worst end; a buyer scores one point for each cut point they are strictly better
    than. Monetary values are in cents, so sums are exact and ties are real ties.
    """

    computed_at: datetime
    period_days: int
    customers: int
    recency_days: tuple[int, ...]
    frequency: tuple[int, ...]
    monetary_cents: tuple[int, ...]

    def scores(
        self, now: datetime, last_order_at: datetime, frequency: int, monetary: float
    ) -> tuple[int, int, int]:
        """R, F, M of one buyer (its period values at ``now``), as the bulk update does."""
        days = (now - last_order_at) // DAY
        cents = round(monetary * 100)
        r = 1 + sum(1 for t in self.recency_days if days < t)
        f = 1 + sum(1 for q in self.frequency if frequency > q)
        m = 1 + sum(1 for q in self.monetary_cents if cents > q)
        return r, f, m

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["computed_at"] = self.computed_at.isoformat()
        return data


@dataclass
class RfmSummary:
    computed_at: datetime
    period_days: int
    scored: int
    changed: int
    cleared: int
    seconds: float
    thresholds: Thresholds | None
    cells: dict[str, int] = field(default_factory=dict)
    without_orders: int = 0


def _period_aggregates(start: datetime, now: datetime) -> sa.Subquery:
    """Per live customer: orders, monetary (cents) and last order within (start, now]."""
    o = orders.c
    live = customers.alias("live")
    cents = sa.func.round((o.total - o.refunded) * 100)
    return (
        sa.select(
            o.customer_id.label("cid"),
            sa.func.count().label("f"),
            sa.func.sum(cents).label("m"),
            sa.func.max(o.occurred_at).label("last"),
        )
        .select_from(orders.join(live, live.c.id == o.customer_id))
        .where(
            live.c.merged_into.is_(None),
            o.status.in_(COUNTED_ORDER_STATUSES),
            o.occurred_at > start,
            o.occurred_at <= now,
        )
        .group_by(o.customer_id)
        .subquery("rfm_agg")
    )


def _thresholds(
    conn: sa.Connection, agg: sa.Subquery, now: datetime, period_days: int
) -> Thresholds | None:
    """One query: the values at positions ceil(k·N/5), k = 1..4, of each measure."""
    ranked = sa.select(
        agg.c.last,
        agg.c.f,
        agg.c.m,
        sa.func.row_number().over(order_by=agg.c.last).label("rl"),
        sa.func.row_number().over(order_by=agg.c.f).label("rf"),
        sa.func.row_number().over(order_by=agg.c.m).label("rm"),
        sa.func.count().over().label("n"),
    ).subquery("rfm_ranked")
    n = ranked.c.n
    picks: list[sa.ColumnElement[Any]] = [sa.func.max(n)]
    measures = (
        (ranked.c.last, ranked.c.rl, orders.c.occurred_at.type),
        (ranked.c.f, ranked.c.rf, sa.Integer()),
        (ranked.c.m, ranked.c.rm, sa.Float()),
    )
    for value, rank, type_ in measures:
        for k in range(1, 5):
            position = (n * k + 4) // 5  # ceil(k·N/5) in integer arithmetic
            picks.append(sa.type_coerce(sa.func.max(sa.case((rank == position, value))), type_))
    row = conn.execute(sa.select(*picks)).one()
    if not row[0]:
        return None
    lasts: list[datetime] = list(row[1:5])
    return Thresholds(
        computed_at=now,
        period_days=period_days,
        customers=int(row[0]),
        # Days since the last order shrink as the last order grows, so the value at a
        # position of the ascending-last order is the value at that position from the worst.
        recency_days=tuple((now - last) // DAY for last in lasts),
        frequency=tuple(int(v) for v in row[5:9]),
        monetary_cents=tuple(round(float(v)) for v in row[9:13]),
    )


def _score(value: sa.ColumnElement[Any], cuts: list[Any]) -> sa.ColumnElement[int]:
    """1 + the number of cut points ``value`` is strictly above (a tie scores the lower)."""
    expr: sa.ColumnElement[Any] = sa.literal(1, sa.SmallInteger)
    for cut in cuts:
        expr = expr + sa.case((value > cut, 1), else_=0)
    return expr


def _cell_case(r: sa.ColumnElement[Any], fm_sum: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """The grid as one CASE; FM = floor((F+M)/2) means F+M in {2·fm, 2·fm+1}."""
    whens = []
    for recency, row in GRID.items():
        for fm, cell in enumerate(row, start=1):
            low, high = 2 * fm, 2 * fm + 1
            whens.append((sa.and_(r == recency, fm_sum >= low, fm_sum <= high), cell))
    return sa.case(*whens, else_=None)


def recompute_rfm(
    engine: sa.Engine, now: datetime, *, period_days: int | None = None
) -> RfmSummary:
    """Score every buyer of the period and clear the scores of everyone else.

    One transaction: readers see the old scores or the new ones, never a mix.
    """
    started = time.perf_counter()
    with writing(engine) as conn:
        without_jit(conn)
        settings = rfm_settings(conn) if period_days is None else RfmSettings(period_days)
        start = now - settings.period_days * DAY
        agg = _period_aggregates(start, now)
        thresholds = _thresholds(conn, agg, now, settings.period_days)
        c = customers.c
        changed = 0
        if thresholds is not None:
            bounds = [now - days * DAY for days in thresholds.recency_days]
            scored = sa.select(
                agg.c.cid,
                _score(agg.c.last, bounds).label("r"),
                _score(agg.c.f, list(thresholds.frequency)).label("f"),
                _score(agg.c.m, list(thresholds.monetary_cents)).label("m"),
            ).subquery("rfm_scored")
            cell = _cell_case(scored.c.r, scored.c.f + scored.c.m)
            changed = conn.execute(
                customers.update()
                .values(
                    rfm_recency=scored.c.r,
                    rfm_frequency=scored.c.f,
                    rfm_monetary=scored.c.m,
                    rfm_cell=cell,
                )
                .where(
                    c.id == scored.c.cid,
                    sa.or_(
                        c.rfm_recency.is_distinct_from(scored.c.r),
                        c.rfm_frequency.is_distinct_from(scored.c.f),
                        c.rfm_monetary.is_distinct_from(scored.c.m),
                        c.rfm_cell.is_distinct_from(cell),
                    ),
                )
            ).rowcount
            write_setting(conn, THRESHOLDS_KEY, thresholds.as_json(), now)
        cleared = conn.execute(
            customers.update()
            .values(rfm_recency=None, rfm_frequency=None, rfm_monetary=None, rfm_cell=None)
            .where(
                c.rfm_cell.is_not(None),
                c.id.not_in(sa.select(_period_aggregates(start, now).c.cid)),
            )
        ).rowcount
        cells, without = cell_counts(conn)
    return RfmSummary(
        computed_at=now,
        period_days=settings.period_days,
        scored=thresholds.customers if thresholds else 0,
        changed=changed,
        cleared=cleared,
        seconds=time.perf_counter() - started,
        thresholds=thresholds,
        cells=cells,
        without_orders=without,
    )


def cell_counts(conn: sa.Connection) -> tuple[dict[str, int], int]:
    """Live customers per cell, in grid order, and the number without a cell."""
    c = customers.c
    rows: dict[str | None, int] = dict(
        conn.execute(
            sa.select(c.rfm_cell, sa.func.count())
            .where(c.merged_into.is_(None))
            .group_by(c.rfm_cell)
        ).all()
    )
    without = int(rows.pop(None, 0))
    return {slug: int(rows.get(slug, 0)) for slug in CELLS}, without


def stored_thresholds(conn: sa.Connection) -> Thresholds | None:
    """The thresholds of the last run, for scoring one customer between runs."""
    data = read_setting(conn, THRESHOLDS_KEY)
    if not data:
        return None
    return Thresholds(
        computed_at=datetime.fromisoformat(data["computed_at"]),
        period_days=int(data["period_days"]),
        customers=int(data["customers"]),
        recency_days=tuple(data["recency_days"]),
        frequency=tuple(data["frequency"]),
        monetary_cents=tuple(data["monetary_cents"]),
    )
