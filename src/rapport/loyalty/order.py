"""The order a checkout asks about, as both the points programme and coupons see it.

One shape for both so a checkout call is parsed once: the lines carry their category
(coupons restrict by it, accrual multiplies by it) and the amount actually charged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    product_id: str
    category_id: str | None
    price: float  # unit price, before any discount
    quantity: int

    @property
    def amount(self) -> float:
        return self.price * self.quantity


@dataclass(frozen=True)
class CheckoutOrder:
    customer_id: int
    lines: tuple[Line, ...]
    order_id: str | None = None  # the shop's order id, once it has one

    @property
    def subtotal(self) -> float:
        return sum(line.amount for line in self.lines)
