"""The checkout: what an order costs with the customer's discounts, coupon and points
(``calculate``), and paying with points for real (``redeem``).

How discounts combine, in this order (docs/loyalty.md):

1. the better of the tier's discount and the customer's personal discount (not both);
2. then the coupon, quoted on the prices after that discount;
3. then points, on what is left, at most ``max_redeem_percent`` of it and never more
   than the spendable balance.

Points to earn are estimated on what remains to pay in money, at the customer's tier.

``redeem`` runs in one transaction with the customer's account row locked: it settles
the account to now, prices the order again, consumes the coupon, spends the points and
stores the answer under the Idempotency-Key, so a repeated key answers the same result
and parallel redemptions never spend more than the balance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.loyalty.accrual import Priced, points_for
from rapport.loyalty.ledger import REDEEMED, Event, debit, lock_account, read_account, settle
from rapport.loyalty.offers import (
    CouponQuote,
    CouponRefused,
    consume_coupon,
    personal_discount,
    quote_coupon,
)
from rapport.loyalty.order import CheckoutOrder, Line
from rapport.loyalty.programme import Programme, load
from rapport.loyalty.summary import loyalty_summary
from rapport.store.tables import loyalty_redemptions


@dataclass(frozen=True)
class CheckoutRequest:
    order: CheckoutOrder
    coupon: str | None = None
    points_to_use: int = 0

    def fingerprint(self) -> dict[str, Any]:
        """The request as stored with a redemption: a repeated key must repeat it."""
        return {
            "customer_id": self.order.customer_id,
            "order_id": self.order.order_id,
            "lines": [
                [line.product_id, line.category_id, line.price, line.quantity]
                for line in self.order.lines
            ],
            "coupon": self.coupon,
            "points_to_use": self.points_to_use,
        }


class KeyReused(Exception):
    """The Idempotency-Key was used before for a different request."""


CouponFn = Callable[[CheckoutOrder], CouponQuote]


def _money(value: float) -> float:
    return round(value + 0.0, 2)


def _scaled(order: CheckoutOrder, factor: float) -> CheckoutOrder:
    lines = tuple(replace(line, price=_money(line.price * factor)) for line in order.lines)
    return replace(order, lines=lines)


def price(
    conn: sa.Connection,
    request: CheckoutRequest,
    programme: Programme,
    now: datetime,
    *,
    balance: int,
    tier: str | None,
    coupon: CouponFn | None,
    strict_coupon: bool,
) -> dict[str, Any]:
    """The priced order; InvalidInput when more points are asked than may be used."""
    order = request.order
    subtotal = _money(order.subtotal)
    discounts: list[dict[str, Any]] = []
    tier_rule = programme.tier(tier) if programme.enabled else None
    tier_pct = tier_rule.discount_percent if tier_rule is not None else 0.0
    personal_pct = personal_discount(conn, order.customer_id, now)
    percent = max(tier_pct, personal_pct)
    if percent > 0:
        amount = _money(subtotal * percent / 100)
        if personal_pct > tier_pct:
            label = f"personal discount {percent:g}%"
            kind = "personal"
        else:
            label = f"{tier} tier {percent:g}%"
            kind = "tier"
        discounts.append({"kind": kind, "label": label, "percent": percent, "amount": amount})
    remaining = _money(subtotal - sum(d["amount"] for d in discounts))
    after_percent = _scaled(order, 1 - percent / 100)

    coupon_state: dict[str, Any] | None = None
    if request.coupon is not None and coupon is not None:
        try:
            found = coupon(after_percent)
        except CouponRefused as exc:
            if strict_coupon:
                raise InvalidInput([Problem("coupon", f"{exc.code}: {exc.reason}")]) from None
            coupon_state = {"code": exc.code, "applied": False, "reason": exc.reason}
        else:
            amount = _money(min(max(found.discount, 0.0), remaining))
            coupon_state = {"code": found.code, "applied": True, "reason": None}
            discounts.append(
                {
                    "kind": "coupon",
                    "label": f"coupon {found.code}",
                    "code": found.code,
                    "amount": amount,
                }
            )
            remaining = _money(remaining - amount)

    usable = 0
    if programme.enabled and remaining > 0:
        cap = remaining * programme.max_redeem_percent / 100 / programme.point_value
        usable = max(0, min(balance, math.floor(round(cap, 6))))
    wanted = request.points_to_use
    if wanted > usable:
        raise InvalidInput(
            [
                Problem(
                    "points_to_use",
                    f"{wanted} points asked, at most {usable} may be used on this order "
                    f"(balance {balance}, up to {programme.max_redeem_percent:g}% of "
                    f"{remaining:.2f})",
                )
            ]
        )
    if wanted > 0:
        amount = _money(min(wanted * programme.point_value, remaining))
        discounts.append(
            {"kind": "points", "label": f"{wanted} points", "points": wanted, "amount": amount}
        )
        remaining = _money(remaining - amount)

    to_earn = 0
    if programme.enabled:
        lines = [Priced(line.category_id, line.amount) for line in order.lines]
        to_earn = points_for(programme, tier, remaining, lines)
    return {
        "customer_id": order.customer_id,
        "order_id": order.order_id,
        "subtotal": subtotal,
        "discounts": discounts,
        "discount_total": _money(subtotal - remaining),
        "total": remaining,
        "tier": tier,
        "coupon": coupon_state,
        "points_balance": balance,
        "points_usable": usable,
        "points_used": wanted,
        "points_to_earn": to_earn,
    }


def calculate(conn: sa.Connection, request: CheckoutRequest, now: datetime) -> dict[str, Any]:
    """Price an order without changing anything (a refused coupon is reported, not fatal)."""
    programme = load(conn)
    summary = loyalty_summary(conn, request.order.customer_id, now)
    return price(
        conn,
        request,
        programme,
        now,
        balance=summary["balance"],
        tier=summary["tier"],
        coupon=lambda order: quote_coupon(conn, request.coupon or "", order, now),
        strict_coupon=False,
    )


@dataclass(frozen=True)
class Redeemed:
    result: dict[str, Any]
    events: list[Event]
    replayed: bool


def redeem(conn: sa.Connection, request: CheckoutRequest, key: str, now: datetime) -> Redeemed:
    """Spend the points and use the coupon, once per ``key``; the caller's transaction
    must roll back on any exception (nothing is then stored)."""
    problems = []
    if not key.strip():
        problems.append(Problem("idempotency_key", "is required (header Idempotency-Key)"))
    if request.points_to_use <= 0 and request.coupon is None:
        problems.append(Problem("points_to_use", "give points to use or a coupon to redeem"))
    if problems:
        raise InvalidInput(problems)
    cid = request.order.customer_id
    lock_account(conn, cid, now)  # held until commit: redemptions of one customer queue here
    stored = conn.execute(
        sa.select(loyalty_redemptions).where(loyalty_redemptions.c.key == key)
    ).first()
    if stored is not None:
        if stored.request != request.fingerprint():
            raise KeyReused(f"Idempotency-Key {key!r} was used for a different request")
        return Redeemed(dict(stored.result), [], True)
    programme = load(conn)
    events = settle(conn, cid, now)
    account = read_account(conn, cid)
    assert account is not None
    coupon_key = f"loyalty:{key}"
    result = price(
        conn,
        request,
        programme,
        now,
        balance=account.balance,
        tier=account.tier if programme.enabled else None,
        coupon=lambda order: consume_coupon(conn, request.coupon or "", order, coupon_key, now),
        strict_coupon=True,
    )
    points = request.points_to_use
    if points > 0:
        taken, short = debit(
            conn,
            cid,
            points,
            kind="redeem",
            key=f"redeem:{key}"[:300],
            now=now,
            order_id=request.order.order_id,
            reason="checkout",
            details={"idempotency_key": key},
        )
        assert short == 0, "the balance was checked under the lock"
        props: dict[str, Any] = {"points": taken}
        if request.order.order_id is not None:
            props["order_id"] = request.order.order_id
        events.append((cid, REDEEMED, props))
    after = read_account(conn, cid)
    result["points_balance"] = after.balance if after is not None else 0
    result["idempotency_key"] = key
    conn.execute(
        loyalty_redemptions.insert().values(
            key=key,
            customer_id=cid,
            order_id=request.order.order_id,
            points=points,
            request=request.fingerprint(),
            result=result,
            created_at=now,
        )
    )
    return Redeemed(result, events, False)


def make_order(
    customer_id: int, lines: list[tuple[str, str | None, float, int]], order_id: str | None
) -> CheckoutOrder:
    return CheckoutOrder(
        customer_id=customer_id,
        lines=tuple(Line(p, c, float(price), int(q)) for p, c, price, q in lines),
        order_id=order_id,
    )
