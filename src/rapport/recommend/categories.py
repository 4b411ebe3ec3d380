"""Compatible categories: which categories go with which, and the products they offer.

Two sources, merged per category:

* **Declared** in the catalog (``compatible_categories``, from the importer or the
  e-commerce events): the merchandiser's word, so these come first. A declaration on a
  parent category holds for its sub-categories, on both sides.
* **Learned** from orders: categories a and b are related when customers buy both within
  ``category_window_days`` of each other (the same order included). The strength is lift,

      lift(a, b) = n_ab · N / (n_a · n_b)

  with n_ab the customers who bought a and b within the window, n_a those who bought a,
  N every customer with a purchase. Lift is right here, where cosine was right for
  products: categories are few and all well supported, and lift says how much more often
  than chance the pair is bought, without favouring the biggest categories. Pairs need
  ``min_pair_customers`` customers and lift above 1.

A category's compatible products interleave the popular lists of its compatible
categories in their order (the best of each category, then the second of each, …), so a
phone's list offers a case, a charger and a screen protector before a second case.
"""

from __future__ import annotations

import numpy as np

from rapport.recommend.data import DAY, Catalog, FloatArray, IntArray, Snapshot
from rapport.recommend.lists import KindLists, ranked
from rapport.recommend.strategies import COMPATIBLE, BuildOptions

MAX_LAG = 50  # events of one customer compared with at most this many later ones


def descendants(catalog: Catalog) -> list[list[int]]:
    """Per category: itself and every category below it."""
    out: list[list[int]] = [[] for _ in catalog.category_ids]
    for c, chain in enumerate(catalog.ancestors()):
        for a in chain:
            out[a].append(c)
    return out


def declared_pairs(catalog: Catalog) -> set[tuple[int, int]]:
    below = descendants(catalog)
    return {
        (a2, b2) for a, b in catalog.compatible for a2 in below[a] for b2 in below[b] if a2 != b2
    }


def learned_pairs(
    snapshot: Snapshot, options: BuildOptions
) -> tuple[IntArray, IntArray, FloatArray]:
    """(a, b, lift) both ways for every related pair of categories."""
    catalog, p = snapshot.catalog, snapshot.purchases
    cat = catalog.category[p.item]
    has = cat >= 0
    customer, cat, day = p.customer[has], cat[has], np.floor(p.at[has] / DAY).astype(np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if len(cat) == 0:
        return empty, empty.copy(), np.zeros(0)
    order = np.lexsort((cat, day, customer))
    customer, cat, day = customer[order], cat[order], day[order]
    new = np.r_[
        True, (customer[1:] != customer[:-1]) | (day[1:] != day[:-1]) | (cat[1:] != cat[:-1])
    ]
    customer, cat, day = customer[new], cat[new], day[new]
    n_cat = len(catalog.category_ids)
    found: list[IntArray] = []
    for lag in range(1, min(MAX_LAG, len(cat) - 1) + 1):
        i = np.arange(len(cat) - lag)
        j = i + lag
        near = (customer[i] == customer[j]) & (day[j] - day[i] <= options.category_window_days)
        if not near.any():
            break
        pick = near & (cat[i] != cat[j])
        lo = np.minimum(cat[i][pick], cat[j][pick])
        hi = np.maximum(cat[i][pick], cat[j][pick])
        found.append((customer[i][pick] * n_cat + lo) * n_cat + hi)
    buyers = np.bincount(np.unique(customer * n_cat + cat) % n_cat, minlength=n_cat)
    total = len(np.unique(customer))
    if not found:
        return empty, empty.copy(), np.zeros(0)
    pairs = np.unique(np.concatenate(found)) % (n_cat * n_cat)
    pair, count = np.unique(pairs, return_counts=True)
    a, b = pair // n_cat, pair % n_cat
    lift = count * total / (buyers[a] * buyers[b]).astype(np.float64)
    keep = (count >= options.min_pair_customers) & (lift > 1.0)
    a, b, lift = a[keep], b[keep], lift[keep]
    return np.r_[a, b], np.r_[b, a], np.r_[lift, lift]


def compatible_categories(snapshot: Snapshot, options: BuildOptions) -> KindLists:
    """Per category, its compatible categories, declared ones first, then by lift."""
    catalog = snapshot.catalog
    a, b, lift = learned_pairs(snapshot, options)
    strength = {(int(x), int(y)): float(v) for x, y, v in zip(a, b, lift, strict=True)}
    declared = declared_pairs(catalog)
    everything = sorted(declared | set(strength))
    src = np.array([x for x, _ in everything], dtype=np.int64)
    dst = np.array([y for _, y in everything], dtype=np.int64)
    is_declared = np.array([float(p in declared) for p in everything])
    score = np.array([strength.get(p, 0.0) for p in everything])
    return ranked(
        "compatible_categories",
        catalog.category_ids,
        src,
        dst,
        score,
        [is_declared, score],
        options.max_compatible,
    )


def compatible_lists(
    snapshot: Snapshot, popular: KindLists, options: BuildOptions
) -> tuple[KindLists, KindLists]:
    """(compatible products per category, compatible categories per category)."""
    catalog = snapshot.catalog
    related = compatible_categories(snapshot, options)
    keys: list[IntArray] = []
    items: list[IntArray] = []
    slot: list[IntArray] = []
    rank: list[IntArray] = []
    weight: list[FloatArray] = []
    for src, dst, pos, score in zip(
        related.key.tolist(),
        related.item.tolist(),
        related.position.tolist(),
        related.score.tolist(),
        strict=True,
    ):
        offered = popular.items_of(catalog.category_ids[dst])[: options.list_length]
        n = len(offered)
        keys.append(np.full(n, src, dtype=np.int64))
        items.append(offered.astype(np.int64))
        slot.append(np.arange(n, dtype=np.int64))
        rank.append(np.full(n, pos, dtype=np.int64))
        weight.append(np.full(n, 1.0 if score == 0 else score))
    if not keys:
        z = np.zeros(0, dtype=np.int64)
        return KindLists(
            COMPATIBLE, catalog.category_ids, z, z.copy(), z.copy(), np.zeros(0)
        ), related
    key_a, item_a = np.concatenate(keys), np.concatenate(items)
    slot_a, rank_a, weight_a = np.concatenate(slot), np.concatenate(rank), np.concatenate(weight)
    order = np.lexsort((rank_a, slot_a, key_a))  # round robin over the categories
    key_a, item_a, weight_a = key_a[order], item_a[order], weight_a[order]
    _, first = np.unique(key_a * catalog.size + item_a, return_index=True)
    first.sort()  # a product offered through two categories keeps its first slot
    key_a, item_a, weight_a = key_a[first], item_a[first], weight_a[first]
    sequence = -np.arange(len(key_a), dtype=np.float64)  # keep the round-robin order
    lists = ranked(
        COMPATIBLE, catalog.category_ids, key_a, item_a, weight_a, [sequence], options.list_length
    )
    return lists, related
