"""Loyalty conditions: the tier, the balance, pending points, points about to expire.

``{"loyalty": "tier", "op": "in", "value": ["Silver", "Gold"]}``,
``{"loyalty": "balance", "op": "ge", "value": 500}``,
``{"loyalty": "pending", "op": "gt", "value": 0}``,
``{"loyalty": "points_expiring", "within_days": 14, "at_least": 100}``.

Tier, balance and pending read ``loyalty_accounts``, the programme's per-customer row
(exact as of the customer's latest ledger entry). A customer without a row has never had
points: balance and pending are 0 and the tier is none, so "balance below 100" includes
them. In SQL that is one ``IN`` (or ``NOT IN``, when a customer without a row matches)
over the accounts table, never a join per customer.

Points expiring read the active lots (``loyalty_lots``, status active, points left) whose
``expires_at`` falls in ``(now, now + N days]`` — the query of
:func:`rapport.loyalty.summary.expiring_points`, on its partial index. That answer moves
with time alone, so the condition is time-dependent and its crossing names the customers
with a lot whose expiry entered the window or passed between two sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import Field, PrivateAttr
from sqlalchemy.sql.elements import ColumnElement

from rapport.loyalty.summary import expiring_points
from rapport.segments import ops
from rapport.segments.conditions.base import Condition
from rapport.segments.context import Context, Snapshot
from rapport.segments.crossing import NEVER
from rapport.segments.dependencies import Collector, Dependencies
from rapport.segments.problems import Bad
from rapport.store.fast import among
from rapport.store.tables import customers, loyalty_accounts, loyalty_lots

# Each account field: its kind (``ops``), the operators a rule may use, the value of a
# customer without an account.
ACCOUNT_FIELDS: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "tier": ("string", ("eq", "ne", "in", "not_in", "exists"), None),
    "balance": ("number", (*ops.COMPARE, "between"), 0),
    "pending": ("number", (*ops.COMPARE, "between"), 0),
}
EXPIRING = "points_expiring"
FIELDS = (*ACCOUNT_FIELDS, EXPIRING)
MAX_DAYS = 3650


class LoyaltyCondition(Condition):
    """A condition on the customer's loyalty account or on their soon-expiring points."""

    KEY = "loyalty"
    loyalty: str
    op: str | None = None
    value: Any = None
    within_days: int | None = Field(default=None, strict=True)
    at_least: int | None = Field(default=None, strict=True)
    _value: Any = PrivateAttr(None)

    def check(self, where: str) -> None:
        name = self.loyalty
        if name not in FIELDS:
            raise Bad(
                f"{where}.loyalty",
                f"unknown loyalty field {name!r}; use one of {', '.join(FIELDS)}",
            )
        if name == EXPIRING:
            self._check_expiring(where)
            return
        for extra in ("within_days", "at_least"):
            if getattr(self, extra) is not None:
                raise Bad(f"{where}.{extra}", f"only for {EXPIRING}, not for {name}")
        kind, allowed, _ = ACCOUNT_FIELDS[name]
        if self.op is None:
            raise Bad(f"{where}.op", f"{name} needs an operator: one of {', '.join(allowed)}")
        if self.op not in allowed:
            known = self.op in ops.ALL_OPERATORS
            reason = "does not apply to" if known else "is not an operator for"
            raise Bad(
                f"{where}.op",
                f"{self.op!r} {reason} the loyalty {name}; use one of {', '.join(allowed)}",
            )
        self._value = ops.check(kind, f"the loyalty {name}", self.op, self.value, where)
        if name == "tier" and self.op != "exists":
            items = self._value if isinstance(self._value, tuple) else (self._value,)
            for item in items:
                if not item.strip():
                    raise Bad(f"{where}.value", "a tier name is not empty")

    def _check_expiring(self, where: str) -> None:
        for extra in ("op", "value"):
            if getattr(self, extra) is not None:
                raise Bad(
                    f"{where}.{extra}",
                    f"{EXPIRING} takes within_days and at_least, not {extra}",
                )
        days = self.within_days
        if days is None:
            raise Bad(f"{where}.within_days", f"{EXPIRING} needs within_days (1 to {MAX_DAYS})")
        if not 1 <= days <= MAX_DAYS:
            raise Bad(f"{where}.within_days", f"must be between 1 and {MAX_DAYS} days, not {days}")
        if self.at_least is not None and self.at_least < 1:
            raise Bad(f"{where}.at_least", f"must be 1 point or more, not {self.at_least}")

    @property
    def threshold(self) -> int:
        """At least this many points must expire (1: any)."""
        return 1 if self.at_least is None else self.at_least

    # ------------------------------------------------------------------ SQL

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        if self.loyalty == EXPIRING:
            assert self.within_days is not None
            found = expiring_points(ctx.now, self.within_days).subquery()
            return customers.c.id.in_(
                sa.select(found.c.customer_id).where(found.c.points >= self.threshold)
            )
        kind, _, absent = ACCOUNT_FIELDS[self.loyalty]
        assert self.op is not None
        holds = ops.sql(kind, self.op, self._value, loyalty_accounts.c[self.loyalty], ctx)
        accounts = sa.select(loyalty_accounts.c.customer_id)
        if ops.test(kind, self.op, self._value, absent, ctx):
            # Customers without an account match: everyone but the accounts that do not.
            return customers.c.id.not_in(accounts.where(sa.not_(holds)))
        return customers.c.id.in_(accounts.where(holds))

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        """Expiring points change with time where a lot's expiry entered the window
        (``expires_at`` in ``(a + N, b + N]``) or passed (in ``(a, b]``); the account
        fields only change with a ledger entry, which the real-time step sees."""
        if self.loyalty != EXPIRING:
            return NEVER
        assert self.within_days is not None
        a, b, span = ctx_from.now, ctx_to.now, timedelta(days=self.within_days)
        lots = loyalty_lots.c
        at = lots.expires_at
        return customers.c.id.in_(
            sa.select(lots.customer_id).where(
                lots.status == "active",
                lots.remaining > 0,
                sa.or_(sa.and_(at > a, at <= b), sa.and_(at > a + span, at <= b + span)),
            )
        )

    # ------------------------------------------------------------------ in memory

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        if self.loyalty == EXPIRING:
            assert self.within_days is not None
            horizon = ctx.now + timedelta(days=self.within_days)
            points = sum(n for at, n in snap.lots if ctx.now < at <= horizon)
            return points >= self.threshold
        kind, _, absent = ACCOUNT_FIELDS[self.loyalty]
        assert self.op is not None
        account = snap.loyalty
        x = absent if account is None else account[self.loyalty]
        return ops.test(kind, self.op, self._value, x, ctx)

    def collect(self, deps: Collector) -> None:
        deps.loyalty = True
        if self.loyalty == EXPIRING:
            deps.loyalty_lots = True
            deps.time_dependent = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loyalty": self.loyalty}
        if self.loyalty == EXPIRING:
            out["within_days"] = self.within_days
            if self.at_least is not None:
                out["at_least"] = self.at_least
            return out
        out["op"] = self.op
        if self._value is not None:
            out["value"] = ops.dump(self._value)
        return out


def load_loyalty(
    conn: sa.Connection,
    chunk: Sequence[int],
    found: Mapping[int, Snapshot],
    deps: Dependencies,
    now: datetime,
) -> None:
    """Fill the snapshots of ``chunk`` with the account row and the active lots still to
    expire, when the rule reads them (two queries for the chunk at most)."""
    if not deps.loyalty:
        return
    acc = loyalty_accounts.c
    for cid, balance, pending, tier in conn.execute(
        sa.select(acc.customer_id, acc.balance, acc.pending, acc.tier).where(
            among(conn, acc.customer_id, chunk)
        )
    ):
        if cid in found:
            found[cid].loyalty = {"balance": balance, "pending": pending, "tier": tier}
    if not deps.loyalty_lots:
        return
    lots = loyalty_lots.c
    for cid, expires_at, remaining in conn.execute(
        sa.select(lots.customer_id, lots.expires_at, lots.remaining).where(
            among(conn, lots.customer_id, chunk),
            lots.status == "active",
            lots.remaining > 0,
            lots.expires_at > now,
        )
    ):
        if cid in found:
            found[cid].lots.append((expires_at, int(remaining)))
