"""The strategies, what each needs, and the settings the build and the serving share."""

from __future__ import annotations

from dataclasses import dataclass

BOUGHT_TOGETHER = "bought_together"
COMPATIBLE = "compatible"
VIEWED_NOT_BOUGHT = "viewed_not_bought"
POPULAR = "popular"
NEW_ARRIVALS = "new_arrivals"
PERSONAL = "personal"

STRATEGIES = (BOUGHT_TOGETHER, COMPATIBLE, VIEWED_NOT_BOUGHT, POPULAR, NEW_ARRIVALS, PERSONAL)

# A product, or else a customer whose history stands in for it (their last order, their
# recent purchases' categories).
NEEDS_PRODUCT_OR_CUSTOMER = frozenset({BOUGHT_TOGETHER, COMPATIBLE})
NEEDS_CUSTOMER = frozenset({VIEWED_NOT_BOUGHT, PERSONAL})
# Only these read a category's own list; the others find their categories themselves.
TAKES_CATEGORY = frozenset({POPULAR, NEW_ARRIVALS})

MAX_LIMIT = 100
WHOLE_CATALOG = ""  # the list_key of a list over every category


def requirement_problem(
    strategy: str, *, has_product: bool, has_customer: bool, has_category: bool
) -> tuple[str, str] | None:
    """(which parameter, why) when a request cannot be served as asked, else None."""
    if strategy not in STRATEGIES:
        return "strategy", f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}"
    if strategy in NEEDS_CUSTOMER and not has_customer:
        return "customer", f"{strategy} needs a customer"
    if strategy in NEEDS_PRODUCT_OR_CUSTOMER and not (has_product or has_customer):
        return "product", f"{strategy} needs a product or a customer"
    if has_category and strategy not in TAKES_CATEGORY:
        return "category", f"a category applies to {' and '.join(sorted(TAKES_CATEGORY))} only"
    return None


def default_strategy(*, has_product: bool, has_customer: bool) -> str:
    """What a request without a strategy gets: the most specific one its inputs allow."""
    if has_product:
        return BOUGHT_TOGETHER
    if has_customer:
        return PERSONAL
    return POPULAR


@dataclass(frozen=True)
class BuildOptions:
    """The knobs of one build; the defaults are what the daily job uses."""

    neighbours: int = 30  # per product, for bought_together and personal
    list_length: int = 200  # popular, new arrivals and compatible lists
    shrink: float = 2.0  # significance weighting of co-occurrence: count / (count + shrink)
    popular_days: int = 90  # popularity counts buyers over this many days
    new_days: int = 30  # a product is a new arrival for this many days
    category_window_days: int = 60  # categories bought within this many days are related
    min_pair_customers: int = 2  # a learned category pair needs this many customers
    max_compatible: int = 10  # compatible categories kept per category
    personal_model: str = "auto"  # auto | knn | als
    als_factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 0.05


@dataclass(frozen=True)
class ServeOptions:
    """How a request weighs the customer's history."""

    seeds: int = 20  # recent purchases (and views) that seed personal recommendations
    purchase_half_life_days: float = 90.0
    view_half_life_days: float = 14.0
    view_weight: float = 0.5  # a view counts this much of a purchase as a seed
    recent_categories: int = 5  # categories of recent purchases used by compatible
    history_lines: int = 1000  # at most this many of the customer's order lines are read
    history_views: int = 200
