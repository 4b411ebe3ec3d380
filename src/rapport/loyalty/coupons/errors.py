"""The two ways a coupon call says no.

``CouponRefused`` is the checkout's answer: this code cannot be used on this order, with
a sentence the cashier reads out. ``CouponError`` is the management side's: the series
or customer asked for does not exist, or the change conflicts with what is stored; its
``status`` is the HTTP status the API answers with.
"""

from __future__ import annotations


class CouponRefused(Exception):
    """A code that cannot be used on this order; ``reason`` is meant for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}" if code else reason)
        self.code = code
        self.reason = reason


class CouponError(Exception):
    """A management request that cannot be done: 404 (not found), 409 (conflict), 422."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
