"""Bought together: products that share orders, by cosine over orders (similarity.py).

The baskets are orders, not customers: "bought together" means in the same purchase (a
phone and its case), while what one customer buys over a year is the personal
recommender's matter. Only available products are kept as neighbours; every product
with a co-purchase keeps its list, available or not, since a sold-out product's page
still deserves suggestions.
"""

from __future__ import annotations

from rapport.recommend.data import Snapshot
from rapport.recommend.lists import KindLists, item_lists
from rapport.recommend.similarity import Neighbours, binary_matrix, cosine_top_k, top_k_per_row
from rapport.recommend.strategies import BOUGHT_TOGETHER, BuildOptions


def only_available(neighbours: Neighbours, snapshot: Snapshot, k: int) -> Neighbours:
    """Drops unavailable neighbours and renumbers positions (the lists were cut to more
    than ``k`` so that dropping some still leaves ``k``)."""
    keep = snapshot.catalog.available[neighbours.other]
    src, dst, score, pos = top_k_per_row(
        neighbours.source[keep], neighbours.other[keep], neighbours.score[keep], k
    )
    return Neighbours(src, dst, score, pos)


def bought_together_lists(snapshot: Snapshot, options: BuildOptions) -> KindLists:
    p = snapshot.purchases
    baskets = binary_matrix(p.order, p.item, snapshot.catalog.size)
    found = cosine_top_k(baskets, options.neighbours * 2, options.shrink)
    found = only_available(found, snapshot, options.neighbours)
    return item_lists(BOUGHT_TOGETHER, found, snapshot.catalog.ids)
