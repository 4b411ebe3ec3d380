"""Whether a product may be recommended: the catalog has no stock column, so the shop says
it in the product's attributes.

A product is unavailable when ``attributes.available`` or ``attributes.in_stock`` is false
(``false``, ``0``, ``"false"``, ``"no"``, ``"0"``), or ``attributes.stock`` is a number ≤ 0.
Anything else, a missing attribute included, counts as available: most catalogs never send
stock, and recommending nothing would be worse than an occasional sold-out item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FALSE_WORDS = frozenset({"false", "no", "0", "off", "n"})


def _is_false(value: Any) -> bool:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value.strip().lower() in _FALSE_WORDS
    return False


def is_available(attributes: Mapping[str, Any] | None) -> bool:
    if not attributes:
        return True
    for flag in ("available", "in_stock"):
        if flag in attributes and _is_false(attributes[flag]):
            return False
    stock = attributes.get("stock")
    if isinstance(stock, str):
        try:
            stock = float(stock)
        except ValueError:
            return True
    return not (isinstance(stock, int | float) and not isinstance(stock, bool) and stock <= 0)
