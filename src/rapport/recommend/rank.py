"""One request's ranking, from the customer's history and the stored lists.

Pure functions shared by the serving (lists read from ``rec_lists``) and the offline
evaluation (lists held in memory), so what is measured is what is served.

Every strategy yields candidates in order, then the fallbacks: popular in the context's
categories (the product's, else the customer's favourite ones), then popular overall;
``new_arrivals`` first falls back to new arrivals of the whole catalog. Each candidate
carries the strategy that produced it. The customer's purchases and the asked product
are never candidates; availability is checked by the caller, which holds the products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rapport.recommend.strategies import (
    BOUGHT_TOGETHER,
    COMPATIBLE,
    NEW_ARRIVALS,
    PERSONAL,
    POPULAR,
    VIEWED_NOT_BOUGHT,
    WHOLE_CATALOG,
    ServeOptions,
)

# (kind, list key) → (product id, score), best first. Serving may read a list lazily, so
# it is only iterated, once per use, in order.
Lists = Callable[[str, str], Iterable[tuple[str, float]]]
# kind → a neighbour strategy's summed candidates (``_weighted_sum``'s order and scores,
# the ask's skipped products may be left out) when the store summed them itself.
Sums = Callable[[str], Iterable[tuple[str, float]]]

FAVOURITE_CATEGORIES = 3


@dataclass
class History:
    """What one customer did, newest first; ages in days before the request."""

    bought: set[str] = field(default_factory=set)  # every product bought (or returned)
    purchases: list[tuple[str, float, str | None]] = field(default_factory=list)
    last_order: list[str] = field(default_factory=list)
    views: list[tuple[str, int, float, str | None]] = field(default_factory=list)

    def favourite_categories(self) -> list[str]:
        weight: dict[str, float] = {}
        for _, _, category in self.purchases:
            if category:
                weight[category] = weight.get(category, 0.0) + 1.0
        for pid, _, _, category in self.views:
            if category and pid not in self.bought:
                weight[category] = weight.get(category, 0.0) + 0.5
        ranked = sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))
        return [c for c, _ in ranked[:FAVOURITE_CATEGORIES]]


@dataclass
class Ask:
    strategy: str
    limit: int
    product: str | None = None
    product_category: str | None = None
    category: str | None = None
    history: History | None = None
    fallback: bool = True


@dataclass(frozen=True)
class Candidate:
    product_id: str
    strategy: str
    score: float


def _personal_seeds(history: History, options: ServeOptions) -> dict[str, float]:
    seeds: dict[str, float] = {}
    for pid, age, _ in history.purchases[: options.seeds]:
        seeds[pid] = max(seeds.get(pid, 0.0), 0.5 ** (age / options.purchase_half_life_days))
    viewed = [v for v in history.views if v[0] not in history.bought][: options.seeds]
    for pid, _, age, _ in viewed:
        w = options.view_weight * 0.5 ** (age / options.view_half_life_days)
        seeds[pid] = max(seeds.get(pid, 0.0), w)
    return seeds


def _seeds(ask: Ask, options: ServeOptions) -> dict[str, float]:
    """The products whose neighbour lists a neighbour-based strategy sums."""
    h = ask.history
    if ask.strategy == BOUGHT_TOGETHER:
        if ask.product is not None:
            return {ask.product: 1.0}
        return dict.fromkeys(h.last_order, 1.0) if h else {}
    if ask.strategy == PERSONAL and h is not None:
        return _personal_seeds(h, options)
    return {}


def _compatible_keys(ask: Ask, options: ServeOptions) -> list[str]:
    if ask.product is not None:
        return [ask.product_category] if ask.product_category else []
    keys: list[str] = []
    for _, _, category in ask.history.purchases if ask.history else []:
        if category and category not in keys:
            keys.append(category)
            if len(keys) >= options.recent_categories:
                break
    return keys


def _fallback_keys(ask: Ask) -> list[tuple[str, str]]:
    if not ask.fallback:
        return []
    out: list[tuple[str, str]] = []
    if ask.strategy == NEW_ARRIVALS and ask.category:
        out.append((NEW_ARRIVALS, WHOLE_CATALOG))
    if ask.category:
        context = [ask.category]
    elif ask.product is not None:
        context = [ask.product_category] if ask.product_category else []
    else:
        context = ask.history.favourite_categories() if ask.history else []
    out.extend((POPULAR, c) for c in context)
    out.append((POPULAR, WHOLE_CATALOG))
    return out


def skipped(ask: Ask) -> set[str]:
    """The products never offered to this ask: the customer's, and the asked product."""
    skip = set(ask.history.bought) if ask.history else set()
    if ask.product is not None:
        skip.add(ask.product)
    return skip


@dataclass(frozen=True)
class Plan:
    """What one ask's candidate stream reads, in the order it reads it (see ``reads`` for
    why ``depth`` is enough for a list read in order)."""

    seeds: dict[str, float]  # neighbour lists summed (bought_together, personal)
    own: list[tuple[str, str]]  # lists the strategy reads in order (interleaved if several)
    items: list[str]  # products the strategy starts from, known already (viewed_not_bought)
    fallbacks: list[tuple[str, str]]  # then these lists in order, none of them among ``own``
    skip: set[str]
    depth: int  # how deep the first ``wanted`` candidates can reach into a list read in order


def plan(ask: Ask, options: ServeOptions, wanted: int) -> Plan:
    """The lists (and known products) the ask's stream reads, for a server that fetches the
    first ``wanted`` candidates' worth in one statement. ``items`` holds at most
    ``wanted`` products: the stream's own first ones, distinct and none skipped."""
    skip = skipped(ask)
    s = ask.strategy
    seeds = _seeds(ask, options) if s in (BOUGHT_TOGETHER, PERSONAL) else {}
    own: list[tuple[str, str]] = []
    items: list[str] = []
    if s == COMPATIBLE:
        own = [(COMPATIBLE, key) for key in dict.fromkeys(_compatible_keys(ask, options))]
    elif s in (POPULAR, NEW_ARRIVALS):
        own = [(s, ask.category or WHOLE_CATALOG)]
    elif s == VIEWED_NOT_BOUGHT:
        for pid, _ in _own(ask, lambda _k, _n: (), options):
            if pid not in skip and pid not in items:
                items.append(pid)
                if len(items) >= wanted:
                    break
    fallbacks = [f for f in dict.fromkeys(_fallback_keys(ask)) if f not in own]
    depth = wanted + len(ask.history.bought if ask.history else ()) + (ask.product is not None)
    return Plan(seeds, own, items, fallbacks, skip, depth)


def reads(ask: Ask, options: ServeOptions, wanted: int) -> list[tuple[str, str, int | None]]:
    """Every (kind, list key) the ask may read, and how deep its first ``wanted``
    candidates can reach into it (None: the whole list), so a server fetches them at once.

    Neighbour lists (``bought_together``, ``personal``) are summed, so each is read
    whole: every term moves the ranking. Any other list is read in order, and the
    stream's first ``wanted`` candidates use fewer than ``wanted + |skip|`` of its
    positions, ``skip`` being the products never offered (bought, or the asked one):
    each position before the last one read holds a distinct product that was either
    yielded already (fewer than ``wanted`` before the last yield) or skipped. That holds
    for a list interleaved with others (``compatible``) too.
    """
    skip = (len(ask.history.bought) if ask.history else 0) + (ask.product is not None)
    depth = wanted + skip
    s = ask.strategy
    own: list[tuple[str, str, int | None]] = []
    if s in (BOUGHT_TOGETHER, PERSONAL):
        own = [(s, pid, None) for pid in _seeds(ask, options)]
    elif s == COMPATIBLE:
        own = [(COMPATIBLE, key, depth) for key in _compatible_keys(ask, options)]
    elif s in (POPULAR, NEW_ARRIVALS):
        own = [(s, ask.category or WHOLE_CATALOG, depth)]
    fallbacks = [(kind, key, depth) for kind, key in _fallback_keys(ask)]
    deepest: dict[tuple[str, str], int | None] = {}
    for kind, key, d in [*own, *fallbacks]:
        known = deepest.get((kind, key), 0)
        deepest[(kind, key)] = None if known is None or d is None else max(known, d)
    return [(kind, key, d) for (kind, key), d in deepest.items()]


def _weighted_sum(seeds: dict[str, float], kind: str, lists: Lists) -> list[tuple[str, float]]:
    total: dict[str, float] = {}
    for seed, weight in seeds.items():
        for other, score in lists(kind, seed):
            total[other] = total.get(other, 0.0) + weight * score
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))


def _interleaved(keys: list[str], kind: str, lists: Lists) -> Iterator[tuple[str, float]]:
    """The lists' first items in key order, then their second items, and so on."""
    streams = [iter(lists(kind, key)) for key in keys]
    while streams:
        alive = []
        for stream in streams:
            item = next(stream, None)
            if item is not None:
                yield item
                alive.append(stream)
        streams = alive


def _own(
    ask: Ask, lists: Lists, options: ServeOptions, sums: Sums | None = None
) -> Iterable[tuple[str, float]]:
    s = ask.strategy
    if s in (BOUGHT_TOGETHER, PERSONAL):
        if sums is not None:
            return sums(s)
        return _weighted_sum(_seeds(ask, options), s, lists)
    if s == COMPATIBLE:
        return _interleaved(_compatible_keys(ask, options), COMPATIBLE, lists)
    if s == VIEWED_NOT_BOUGHT:
        h = ask.history or History()
        views = [v for v in h.views if v[0] not in h.bought]
        return [(pid, float(n)) for pid, n, _, _ in views]
    return lists(s, ask.category or WHOLE_CATALOG)


def candidates(
    ask: Ask, lists: Lists, options: ServeOptions, sums: Sums | None = None
) -> Iterator[Candidate]:
    """The ask's candidates, best first, each product once, bought ones and the asked
    product left out; availability is the caller's to check. ``sums`` stands in for
    summing the neighbour lists when the store has summed them (serving on PostgreSQL)."""
    skip = skipped(ask)
    for pid, score in _own(ask, lists, options, sums):
        if pid not in skip:
            skip.add(pid)
            yield Candidate(pid, ask.strategy, score)
    for kind, key in _fallback_keys(ask):
        for pid, score in lists(kind, key):
            if pid not in skip:
                skip.add(pid)
                yield Candidate(pid, kind, score)
