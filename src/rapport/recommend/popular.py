"""Popular products (overall and per category) and new arrivals.

Popularity is the number of distinct customers who bought the product in the last
``popular_days`` before the cut-off: recent enough to follow the season, counted per
customer so one bulk buyer does not make a bestseller. Ties (and the long tail with no
recent buyer) are ordered by all-time buyers, then by views, then newest first, so a
shop without orders still gets a list, and every available product of the catalog can
fill a slot. A category's list covers its sub-categories.

New arrivals are products published (``attributes.published_at``, else the time Rapport
first saw the product) within ``new_days`` before the cut-off, the popular ones first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rapport.recommend.data import DAY, Catalog, FloatArray, IntArray, Snapshot
from rapport.recommend.lists import KindLists, ranked
from rapport.recommend.strategies import NEW_ARRIVALS, POPULAR, WHOLE_CATALOG, BuildOptions


@dataclass
class Popularity:
    recent: FloatArray  # distinct buyers in the window, per product
    all_time: FloatArray  # distinct buyers ever (before the cut-off)
    views: FloatArray  # views before the cut-off


def distinct_buyers(customer: IntArray, item: IntArray, n_items: int) -> FloatArray:
    if len(item) == 0:
        return np.zeros(n_items)
    pairs = np.unique(customer * np.int64(n_items) + item)
    return np.bincount(pairs % n_items, minlength=n_items).astype(np.float64)


def popularity(snapshot: Snapshot, options: BuildOptions) -> Popularity:
    n = snapshot.catalog.size
    p = snapshot.purchases
    recent = p.at >= snapshot.cutoff_epoch - options.popular_days * DAY
    views = np.bincount(snapshot.views.item, weights=snapshot.views.views, minlength=n)
    return Popularity(
        recent=distinct_buyers(p.customer[recent], p.item[recent], n),
        all_time=distinct_buyers(p.customer, p.item, n),
        views=views.astype(np.float64),
    )


def with_ancestors(catalog: Catalog, items: IntArray) -> tuple[IntArray, IntArray]:
    """(category, item) for every category an item is in, sub-categories counting for
    their parents; plus (whole catalog, item) for every item. Category indices are
    shifted by one: 0 is the whole catalog."""
    ancestors = catalog.ancestors()
    depth = np.array([len(a) for a in ancestors], dtype=np.int64)
    flat = np.array([c for chain in ancestors for c in chain], dtype=np.int64)
    start = np.r_[0, np.cumsum(depth)[:-1]].astype(np.int64) if len(depth) else depth
    cats = catalog.category[items]
    has = cats >= 0
    in_cat, cat_of = items[has], cats[has]
    reps = depth[cat_of] if len(cat_of) else np.zeros(0, dtype=np.int64)
    item_rep = np.repeat(in_cat, reps)
    first = np.repeat(start[cat_of], reps) if len(cat_of) else reps
    offset = np.arange(len(item_rep)) - np.repeat(np.cumsum(reps) - reps, reps)
    category = flat[first + offset] + 1 if len(item_rep) else item_rep
    return (
        np.r_[np.zeros(len(items), dtype=np.int64), category],
        np.r_[items, item_rep],
    )


def list_keys(catalog: Catalog) -> list[str]:
    """Names of the keys :func:`with_ancestors` numbers."""
    return [WHOLE_CATALOG, *catalog.category_ids]


def popular_lists(snapshot: Snapshot, pop: Popularity, options: BuildOptions) -> KindLists:
    catalog = snapshot.catalog
    items = np.flatnonzero(catalog.available).astype(np.int64)
    key, item = with_ancestors(catalog, items)
    return ranked(
        POPULAR,
        list_keys(catalog),
        key,
        item,
        pop.recent[item],
        [pop.recent[item], pop.all_time[item], pop.views[item], catalog.published[item]],
        options.list_length,
    )


def new_arrival_lists(snapshot: Snapshot, pop: Popularity, options: BuildOptions) -> KindLists:
    catalog = snapshot.catalog
    cutoff = snapshot.cutoff_epoch
    fresh = (
        catalog.available
        & (catalog.published <= cutoff)
        & (catalog.published > cutoff - options.new_days * DAY)
    )
    items = np.flatnonzero(fresh).astype(np.int64)
    key, item = with_ancestors(catalog, items)
    return ranked(
        NEW_ARRIVALS,
        list_keys(catalog),
        key,
        item,
        pop.recent[item],
        [pop.recent[item], pop.views[item], catalog.published[item]],
        options.list_length,
    )
