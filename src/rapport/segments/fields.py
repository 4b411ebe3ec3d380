"""What a rule can name on the card: standard attributes, traits, computed fields.

Computed fields are a registry so a later feature (predicted CLV, churn risk, loyalty tier
and balance) adds one ``register(...)`` call, and both evaluators and the dependency index
pick it up: the entry says how to read the value in SQL and in Python, and which columns
of ``customers`` it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from rapport.store.tables import customers

c = customers.c

# Standard attribute columns and their kinds (see ``ops.OPERATORS``).
ATTRIBUTES: dict[str, str] = {
    "first_name": "string",
    "last_name": "string",
    "email": "string",
    "phone": "string",
    "gender": "string",
    "city": "string",
    "country": "string",
    "timezone": "string",
    "locale": "string",
    "birthday": "date",
    "created_at": "datetime",
}


@dataclass(frozen=True)
class ComputedField:
    """One computed field: its kind, its SQL expression and its Python value.

    ``kind == "days"`` fields name the datetime they count from: SQL compares that column
    with bounds computed from ``now`` and Python takes whole days since it.
    ``every_event`` marks fields that change with any event at all (the real-time step uses
    it to know that no event name is needed to affect them).
    """

    name: str
    kind: str
    sql: Callable[[], ColumnElement[Any]]
    value: Callable[[Mapping[str, Any]], Any]
    columns: tuple[str, ...]
    every_event: bool = False


COMPUTED: dict[str, ComputedField] = {}


def register(field: ComputedField) -> None:
    COMPUTED[field.name] = field


def column_field(name: str, kind: str, *, every_event: bool = False) -> ComputedField:
    """A computed field kept in a ``customers`` column of the same name."""
    return ComputedField(
        name,
        kind,
        sql=lambda: c[name],
        value=lambda row: row[name],
        columns=(name,),
        every_event=every_event,
    )


def days_since(name: str, column: str, *, every_event: bool = False) -> ComputedField:
    return ComputedField(
        name,
        "days",
        sql=lambda: c[column],
        value=lambda row: row[column],
        columns=(column,),
        every_event=every_event,
    )


def _average_check(row: Mapping[str, Any]) -> float | None:
    n = row["orders_count"]
    return row["revenue"] / n if n else None


for _field in (
    column_field("events_count", "number", every_event=True),
    column_field("first_seen_at", "datetime", every_event=True),
    column_field("last_seen_at", "datetime", every_event=True),
    column_field("orders_count", "number"),
    column_field("revenue", "number"),
    column_field("first_order_at", "datetime"),
    column_field("last_order_at", "datetime"),
    # revenue / orders_count, unrounded (the card rounds it for display); null without orders.
    ComputedField(
        "average_check",
        "number",
        sql=lambda: sa.case(
            (c.orders_count > 0, c.revenue / sa.cast(c.orders_count, sa.Float)),
            else_=sa.null(),
        ),
        value=_average_check,
        columns=("orders_count", "revenue"),
    ),
    days_since("days_since_last_order", "last_order_at"),
    days_since("days_since_first_order", "first_order_at"),
    days_since("days_since_last_seen", "last_seen_at", every_event=True),
    days_since("days_since_created", "created_at"),
    column_field("rfm_recency", "number"),
    column_field("rfm_frequency", "number"),
    column_field("rfm_monetary", "number"),
    column_field("lifecycle_changed_at", "datetime"),
    # Written by the CLV scoring run (analytics/clv/scoring.py); null until then.
    column_field("predicted_clv", "number"),
    column_field("expected_purchases_90d", "number"),
    column_field("churn_risk", "number"),
):
    register(_field)
