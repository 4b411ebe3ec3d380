"""Coupons and promo codes, and personal discounts (docs/coupons.md).

The checkout calls :func:`quote` and :func:`consume` (and :func:`release` when an order
is cancelled); scenarios call :func:`issue`; the card reads :func:`customer_coupons` and
:func:`personal_discount`. Series are managed through :mod:`.store` and :mod:`.codes`.
"""

from rapport.loyalty.coupons.errors import CouponError, CouponRefused
from rapport.loyalty.coupons.issue import issue
from rapport.loyalty.coupons.model import SeriesSettings, parse_settings
from rapport.loyalty.coupons.personal import (
    clear_personal_discount,
    personal_discount,
    set_personal_discount,
)
from rapport.loyalty.coupons.redeem import CouponQuote, consume, quote, release
from rapport.loyalty.coupons.wallet import code_status, customer_coupons

__all__ = [
    "CouponError",
    "CouponQuote",
    "CouponRefused",
    "SeriesSettings",
    "clear_personal_discount",
    "code_status",
    "consume",
    "customer_coupons",
    "issue",
    "parse_settings",
    "personal_discount",
    "quote",
    "release",
    "set_personal_discount",
]
