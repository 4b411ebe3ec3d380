"""Product blocks for messages: the ``products`` a template renders, per customer.

A scenario's send step asks for one with ``products: {strategy, limit}``; the answer is
the catalog rows templates already know (``id``, ``name``, ``price``, ``currency``,
``url``, ``image_url``, ``attributes``, …) plus ``strategy`` (which strategy served the
item, fallbacks included) and ``score``. Read set-based for the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.recommend.rank import Ask
from rapport.recommend.serve import product_rows, read_histories, recommend_many
from rapport.recommend.strategies import MAX_LIMIT, NEEDS_PRODUCT_OR_CUSTOMER, STRATEGIES


def products_for(
    conn: sa.Connection,
    customer_ids: Sequence[int],
    strategy: str,
    limit: int,
    now: datetime,
    product: str | Mapping[int, str | None] | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """Per customer, up to ``limit`` recommended products (fallbacks fill the block).

    ``product`` is one product for everyone or one per customer (the product a trigger
    event was about); strategies that need none ignore it.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    ids = list(dict.fromkeys(int(c) for c in customer_ids))
    histories = read_histories(conn, ids, now)
    if strategy not in NEEDS_PRODUCT_OR_CUSTOMER:
        product = None  # e.g. abandoned browse: the viewed product itself is the point
    per_customer = product if isinstance(product, Mapping) else dict.fromkeys(ids, product)
    named = {p for p in per_customer.values() if p}
    categories = {pid: row["category_id"] for pid, row in product_rows(conn, list(named)).items()}
    asks = []
    for cid in ids:
        pid = per_customer.get(cid)
        known = pid if pid in categories else None
        asks.append(
            Ask(
                strategy,
                limit,
                product=known,
                product_category=categories.get(known) if known else None,
                history=histories[cid],
            )
        )
    picks = recommend_many(conn, asks)
    return {cid: [p.as_block() for p in found] for cid, found in zip(ids, picks, strict=True)}
