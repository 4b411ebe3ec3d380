"""Offline evaluation on a time split of the store's orders.

Everything before the split trains: the lists are built from it exactly as the nightly
build would have built them that day (``fit`` on a snapshot cut at the split). Each
customer who bought before the split and bought something new to them after it is a test
case: the relevant set R is the products they bought after the split that they had not
bought before (serving never offers those again, so they could not be hits). Each
strategy ranks 10 products for them from their history before the split, through the
same ranking code the API runs, fallbacks included; ``popular`` is the baseline.

    hit rate@10 = share of test customers with at least one relevant product in the 10
    NDCG@10     = mean over customers of DCG / IDCG, DCG = Σ_{i≤10} rel_i / log2(i + 1),
                  IDCG the DCG of a perfect list (min(|R|, 10) hits on top)

Strategies that need a product are asked from the customer's side: bought together with
their last order, compatible with their recent categories.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.recommend.data import DAY, Snapshot, read_purchases, read_snapshot
from rapport.recommend.model import Model, Progress, fit
from rapport.recommend.rank import Ask, History, candidates
from rapport.recommend.strategies import POPULAR, STRATEGIES, BuildOptions, ServeOptions
from rapport.store.tables import orders

K = 10


@dataclass(frozen=True)
class StrategyScore:
    strategy: str
    hit_rate: float
    ndcg: float
    own_share: float  # share of the recommended slots the strategy filled itself

    def as_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "hit_rate_at_10": round(self.hit_rate, 6),
            "ndcg_at_10": round(self.ndcg, 6),
            "own_share": round(self.own_share, 6),
        }


@dataclass
class Evaluation:
    split: datetime
    test_customers: int
    skipped_cold: int
    relevant_items: int
    personal_model: str
    scores: list[StrategyScore] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def baseline(self) -> StrategyScore:
        return next(s for s in self.scores if s.strategy == POPULAR)

    def as_json(self) -> dict[str, Any]:
        return {
            "split": self.split.isoformat(),
            "k": K,
            "test_customers": self.test_customers,
            "skipped_without_history": self.skipped_cold,
            "relevant_items": self.relevant_items,
            "personal_model": self.personal_model,
            "baseline": POPULAR,
            "strategies": [s.as_json() for s in self.scores],
            "seconds": self.seconds,
        }


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, pid in enumerate(ranked[:k]) if pid in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def split_time(conn: sa.Connection, split: datetime | None, holdout_days: int | None) -> datetime:
    """The split given, else ``holdout_days`` before the last completed order."""
    if split is not None:
        return split
    days = 30 if holdout_days is None else holdout_days
    if days <= 0:
        raise InvalidInput([Problem("--holdout-days", "must be a positive number of days")])
    last = conn.execute(
        sa.select(sa.func.max(orders.c.occurred_at)).where(orders.c.status == "completed")
    ).scalar()
    if last is None:
        raise InvalidInput([Problem("orders", "the store has no completed orders to evaluate on")])
    return last - timedelta(days=days)


def _histories(snapshot: Snapshot, customers: np.ndarray) -> dict[int, History]:
    """Each test customer's history at the split, as serving would have read it."""
    ids = snapshot.catalog.ids
    category = snapshot.catalog.category
    names = snapshot.catalog.category_ids
    cutoff = snapshot.cutoff_epoch
    out: dict[int, History] = {int(c): History() for c in customers}
    p = snapshot.purchases
    mine = np.isin(p.customer, customers)
    order = np.lexsort((-p.order[mine], -p.at[mine], p.customer[mine]))
    cust, ordr, item, at = (a[mine][order] for a in (p.customer, p.order, p.item, p.at))
    last: dict[int, int] = {}
    for c, o, i, t in zip(cust.tolist(), ordr.tolist(), item.tolist(), at.tolist(), strict=True):
        h = out[c]
        pid = ids[i]
        if last.setdefault(c, o) == o and pid not in h.last_order:
            h.last_order.append(pid)
        if pid not in h.bought:
            cat = int(category[i])
            h.purchases.append((pid, (cutoff - t) / DAY, names[cat] if cat >= 0 else None))
        h.bought.add(pid)
    v = snapshot.views
    mine = np.isin(v.customer, customers)
    order = np.lexsort((-v.views[mine], -v.last_at[mine], v.customer[mine]))
    for c, i, n, t in zip(
        *(a[mine][order].tolist() for a in (v.customer, v.item, v.views, v.last_at)), strict=True
    ):
        cat = int(category[i])
        out[c].views.append((ids[i], int(n), (cutoff - t) / DAY, names[cat] if cat >= 0 else None))
    return out


def _top(model: Model, ask: Ask, options: ServeOptions) -> list[tuple[str, str]]:
    available = model.snapshot.catalog.available
    index = model.snapshot.catalog.index
    out: list[tuple[str, str]] = []
    for c in candidates(ask, model.get, options):
        i = index.get(c.product_id)
        if i is not None and available[i]:
            out.append((c.product_id, c.strategy))
            if len(out) == ask.limit:
                break
    return out


def evaluate(
    engine: sa.Engine,
    *,
    split: datetime | None = None,
    holdout_days: int | None = None,
    max_customers: int = 20_000,
    build_options: BuildOptions | None = None,
    serve_options: ServeOptions | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Every strategy's hit rate and NDCG at 10 beside the popularity baseline."""
    serve_options = serve_options or ServeOptions()
    started = time.perf_counter()
    with engine.connect() as conn:
        at = split_time(conn, split, holdout_days)
        snapshot = read_snapshot(conn, at)
        after = read_purchases(conn, snapshot.catalog, since=at)
    model = fit(snapshot, build_options or BuildOptions(), progress)
    fitted = time.perf_counter()
    trained = np.unique(snapshot.purchases.customer)
    testers = np.unique(after.customer)
    warm = testers[np.isin(testers, trained)]
    histories = _histories(snapshot, warm)
    relevant: dict[int, set[str]] = {}
    ids = snapshot.catalog.ids
    for c, i in zip(after.customer.tolist(), after.item.tolist(), strict=True):
        if c in histories and ids[i] not in histories[c].bought:
            relevant.setdefault(c, set()).add(ids[i])
    cases = sorted(relevant)
    if len(cases) > max_customers:  # a fixed sample, so two runs compare
        pick = np.random.default_rng(7).choice(len(cases), max_customers, replace=False)
        cases = [cases[i] for i in sorted(pick)]
    if not cases:
        raise InvalidInput(
            [
                Problem(
                    "split",
                    f"no customer bought before {at:%Y-%m-%d} and something new after it; "
                    "choose another split date or holdout",
                )
            ]
        )
    scores = []
    for strategy in STRATEGIES:
        hits, gains, own = 0, 0.0, 0
        for c in cases:
            ranked = _top(model, Ask(strategy, K, history=histories[c]), serve_options)
            names = [pid for pid, _ in ranked]
            hits += any(pid in relevant[c] for pid in names)
            gains += ndcg_at_k(names, relevant[c])
            own += sum(1 for _, served in ranked if served == strategy)
        n = len(cases)
        scores.append(StrategyScore(strategy, hits / n, gains / n, own / (n * K)))
    scores.sort(key=lambda s: (s.strategy != POPULAR, STRATEGIES.index(s.strategy)))
    return Evaluation(
        split=at,
        test_customers=len(cases),
        skipped_cold=int(len(testers) - len(warm)),
        relevant_items=sum(len(relevant[c]) for c in cases),
        personal_model=model.personal_model,
        scores=scores,
        seconds={
            "fit": round(fitted - started, 3),
            "score": round(time.perf_counter() - fitted, 3),
        },
    )
