"""The RFM grid: customers and revenue per recency × frequency score, and per named cell.

Scores and cells are the ones stored by the last RFM run (segments/rfm.py, a snapshot of
now); the report's period only chooses which revenue is shown beside them: the counted
orders of the period placed by the customers now in each cell. Their all-time revenue
(``customers.revenue``) is given too, since a cell is about who the customers are now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rapport.analytics.scope import Scope, counted, live_in_scope, net_amount, tune
from rapport.segments.rfm import CELLS
from rapport.store.tables import customers, orders

SCORES = (1, 2, 3, 4, 5)


@dataclass
class Cell:
    customers: int = 0
    revenue: float = 0.0  # in the period
    orders: int = 0  # in the period
    revenue_to_date: float = 0.0

    def add(self, other: Cell) -> None:
        self.customers += other.customers
        self.revenue += other.revenue
        self.orders += other.orders
        self.revenue_to_date += other.revenue_to_date


@dataclass(frozen=True)
class RfmGridReport:
    scope: Scope
    grid: dict[tuple[int, int], Cell]  # (recency, frequency) → cell
    named: dict[str, Cell]  # slug → cell, in CELLS order
    unscored: int  # live customers in scope without a cell (no order in the RFM period)

    @property
    def total_revenue(self) -> float:
        return sum(c.revenue for c in self.named.values())

    @property
    def scored(self) -> int:
        return sum(c.customers for c in self.named.values())

    def as_json(self) -> dict[str, Any]:
        total, scored = self.total_revenue, self.scored
        return {
            **self.scope.as_json(),
            "scored_customers": scored,
            "unscored_customers": self.unscored,
            "grid": [
                {
                    "recency": r,
                    "frequency": f,
                    "customers": cell.customers,
                    "revenue": round(cell.revenue, 2),
                    "orders": cell.orders,
                    "revenue_to_date": round(cell.revenue_to_date, 2),
                }
                for (r, f), cell in sorted(self.grid.items(), key=lambda x: (-x[0][0], x[0][1]))
            ],
            "cells": [
                {
                    "cell": slug,
                    "name": CELLS[slug],
                    "customers": cell.customers,
                    "customer_share": cell.customers / scored if scored else None,
                    "revenue": round(cell.revenue, 2),
                    "revenue_share": cell.revenue / total if total else None,
                    "orders": cell.orders,
                    "revenue_to_date": round(cell.revenue_to_date, 2),
                }
                for slug, cell in self.named.items()
            ],
        }

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["kind", "key", "customers", "orders", "revenue", "revenue_to_date"]
        rows: list[list[Any]] = [
            ["cell", slug, c.customers, c.orders, round(c.revenue, 2), round(c.revenue_to_date, 2)]
            for slug, c in self.named.items()
        ]
        rows += [
            [
                "grid",
                f"R{r}F{f}",
                c.customers,
                c.orders,
                round(c.revenue, 2),
                round(c.revenue_to_date, 2),
            ]
            for (r, f), c in sorted(self.grid.items(), key=lambda x: (-x[0][0], x[0][1]))
        ]
        rows.append(["unscored", "", self.unscored, None, None, None])
        return columns, rows


def rfm_grid_report(conn: sa.Connection, scope: Scope) -> RfmGridReport:
    """Two statements: customers per (R, F, cell), and the period's orders per (R, F, cell)."""
    tune(conn)
    c, o = customers.c, orders.c
    p = scope.period
    keys = (c.rfm_recency, c.rfm_frequency, c.rfm_cell)
    found: dict[tuple[Any, Any, Any], Cell] = {}
    unscored = 0
    for r, f, slug, n, to_date in conn.execute(
        sa.select(*keys, sa.func.count(), sa.func.sum(c.revenue))
        .where(live_in_scope(scope))
        .group_by(*keys)
    ):
        if slug is None or r is None or f is None:
            unscored += int(n)
            continue
        found[(r, f, slug)] = Cell(customers=int(n), revenue_to_date=float(to_date or 0))
    for r, f, slug, n, revenue in conn.execute(
        sa.select(*keys, sa.func.count(), sa.func.sum(net_amount()))
        .select_from(orders.join(customers, c.id == o.customer_id))
        .where(
            live_in_scope(scope),
            c.rfm_cell.is_not(None),
            counted(),
            o.occurred_at >= p.start,
            o.occurred_at < p.end,
        )
        .group_by(*keys)
    ):
        cell = found.setdefault((r, f, slug), Cell())
        cell.orders, cell.revenue = int(n), float(revenue or 0)
    grid = {(r, f): Cell() for r in SCORES for f in SCORES}
    named = {slug: Cell() for slug in CELLS}
    for (r, f, slug), cell in found.items():
        if (int(r), int(f)) in grid:
            grid[(int(r), int(f))].add(cell)
        if slug in named:
            named[slug].add(cell)
    return RfmGridReport(scope, grid, named, unscored)
