"""The fast serving path answers exactly what whole lists would, in fewer statements.

Serving reads lists only as deep as an answer can reach, the customer with their history
in one statement, and the build's record from memory; ALS's neighbour search selects with
a compiled top-k. Each of those is checked here against the plain way (whole lists read
from the table, brute-force top-k) on both stores.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from bench.loyalty_recs_data import Shape
from bench.loyalty_recs_data import build as build_shop

from rapport.customers.merge import merge_customers
from rapport.recommend import similarity
from rapport.recommend.availability import is_available
from rapport.recommend.build import build
from rapport.recommend.history import read_customer
from rapport.recommend.rank import Ask, candidates
from rapport.recommend.serve import BuildStamp, read_histories, recommend
from rapport.recommend.strategies import STRATEGIES, WHOLE_CATALOG, BuildOptions, ServeOptions
from rapport.store.engine import writing
from rapport.store.tables import categories, identities, products, rec_lists
from tests.conftest import T0, bearer
from tests.test_recommend_shop import Shop

SHAPE = Shape(products=400, customers=300, order_lines=2500)


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    build_shop(engine, SHAPE, T0)
    build(engine, T0, BuildOptions(personal_model="knn"))
    return engine


def whole_list_answer(engine: sa.Engine, ask: Ask) -> list[tuple[str, str]]:
    """The answer from every list read whole: candidates in order, the first ``limit``
    available catalog products (what serving did before it read lists in part)."""
    every: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    r = rec_lists.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.kind, r.list_key, r.product_id, r.score).order_by(
                r.kind, r.list_key, r.position
            )
        )
        for kind, key, pid, score in rows:
            every[(kind, key)].append((pid, float(score)))
        catalog = dict(conn.execute(sa.select(products.c.id, products.c.attributes)).all())
    out: list[tuple[str, str]] = []
    for c in candidates(ask, lambda kind, key: every.get((kind, key), []), ServeOptions()):
        if c.product_id in catalog and is_available(catalog[c.product_id]):
            out.append((c.product_id, c.strategy))
            if len(out) == ask.limit:
                break
    return out


def served(engine: sa.Engine, ask: Ask) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(p.product["id"], p.strategy) for p in recommend(conn, ask)]


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements run on ``engine`` meanwhile (transaction control left out)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append(sql)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def list_reads(seen: list[str]) -> int:
    return sum("rec_lists" in sql for sql in seen)


def test_every_strategy_answers_what_whole_lists_answer(shop: sa.Engine) -> None:
    rng = random.Random(7)
    with shop.connect() as conn:
        customers = [int(c) for c in rng.sample(range(1, SHAPE.customers + 1), 25)]
        histories = read_histories(conn, customers, T0)
        leaves = list(
            conn.execute(
                sa.select(categories.c.id).where(categories.c.parent_id.is_not(None))
            ).scalars()
        )
        catalog = dict(conn.execute(sa.select(products.c.id, products.c.category_id)).all())
    pids = sorted(catalog)
    asked = 0
    for strategy in STRATEGIES:
        for limit in (1, 10, 37):
            for cid in customers[:8]:
                kw: dict[str, Any] = {"history": histories[cid]}
                if strategy in ("popular", "new_arrivals"):
                    kw["category"] = rng.choice([*leaves, None])
                if strategy in ("bought_together", "compatible") and rng.random() < 0.5:
                    kw["product"] = rng.choice(pids)
                    kw["product_category"] = catalog[kw["product"]]
                ask = Ask(strategy, limit, fallback=rng.random() < 0.9, **kw)
                assert served(shop, ask) == whole_list_answer(shop, ask), (strategy, limit, cid)
                asked += 1
    assert asked == len(STRATEGIES) * 3 * 8


def _popular_ids(engine: sa.Engine, key: str = WHOLE_CATALOG) -> list[str]:
    r = rec_lists.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(r.product_id)
                .where(r.kind == "popular", r.list_key == key)
                .order_by(r.position)
            ).scalars()
        )


def test_products_sold_out_since_the_build_make_it_read_on(shop: sa.Engine) -> None:
    best = _popular_ids(shop)
    assert len(best) == 200  # longer than the first read: 10 + a margin
    with writing(shop) as conn:
        conn.execute(
            products.update()
            .where(products.c.id.in_(best[:40]))
            .values(attributes={"available": False})
        )
    ask = Ask("popular", 10)
    with statements(shop) as seen:
        answer = served(shop, ask)
    assert len(answer) == 10
    assert answer == whole_list_answer(shop, ask)
    assert [pid for pid, _ in answer] == best[40:50]
    assert list_reads(seen) == 2  # the first read, then the rest of the list once


def test_a_customer_who_bought_the_bestsellers_still_gets_the_limit(shop: sa.Engine) -> None:
    best = _popular_ids(shop)
    maker = Shop(shop)
    cid = maker.customer("collector")
    maker.order(cid, best[:60], days_ago=3)
    with shop.connect() as conn:
        found = read_customer(conn, T0, customer_id=cid)
        assert found is not None
        history = found[1]
    for strategy in ("popular", "personal", "viewed_not_bought", "compatible"):
        ask = Ask(strategy, 20, history=history)
        with statements(shop) as seen:
            answer = served(shop, ask)
        assert len(answer) == 20, strategy
        assert not {pid for pid, _ in answer} & set(best[:60])
        assert answer == whole_list_answer(shop, ask), strategy
        # The depth read grows with what the customer has: no second read needed.
        assert list_reads(seen) == 1, strategy


def test_one_statement_reads_the_customer_and_their_history(shop: sa.Engine) -> None:
    rng = random.Random(3)
    ids = rng.sample(range(1, SHAPE.customers + 1), 30)
    with shop.connect() as conn:
        batch = read_histories(conn, ids, T0)
        for cid in ids:
            with statements(shop) as seen:
                found = read_customer(conn, T0, customer_id=cid)
            assert len(seen) == 1
            assert found == (cid, batch[cid])
        assert read_customer(conn, T0, customer_id=10**9) is None
        assert read_customer(conn, T0, user_id="nobody") is None
        with pytest.raises(ValueError, match="customer_id or by user_id"):
            read_customer(conn, T0)
        with pytest.raises(ValueError, match="customer_id or by user_id"):
            read_customer(conn, T0, customer_id=1, user_id="u")
    with writing(shop) as conn:
        conn.execute(
            identities.insert().values(
                customer_id=ids[0], kind="user_id", value="site-1", created_at=T0
            )
        )
        merge_customers(conn, ids[1], ids[0], "test", T0)
    with shop.connect() as conn:
        survivor = read_customer(conn, T0, customer_id=ids[1])
        assert survivor is not None
        # The merged profile and its user id answer for the survivor, with both histories.
        assert read_customer(conn, T0, customer_id=ids[0]) == survivor
        assert read_customer(conn, T0, user_id="site-1") == survivor
        assert survivor[1].bought == batch[ids[0]].bought | batch[ids[1]].bought


def test_an_api_request_takes_three_statements(shop: sa.Engine, client: Any, secret_key: str):
    def get(**params: Any) -> dict[str, Any]:
        answer = client.get("/api/recommendations", params=params, headers=bearer(secret_key))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    get(strategy="popular")  # the key check and the build's record, cached from now on
    with shop.connect() as conn:
        leaf = conn.execute(
            sa.select(categories.c.id).where(categories.c.parent_id.is_not(None)).limit(1)
        ).scalar_one()
    cases: list[tuple[dict[str, Any], int]] = [
        ({"customer": 5, "strategy": "personal"}, 3),
        ({"customer": 6, "strategy": "viewed_not_bought"}, 3),
        ({"product": "p0000000007"}, 3),  # the product's category, the lists, the rows
        ({"category": leaf, "strategy": "popular"}, 2),
    ]
    for params, expected in cases:
        with statements(shop) as seen:
            body = get(**params)
        assert len(body["items"]) == 10
        assert len(seen) == expected, (params, seen)


def test_the_build_stamp_is_read_again_after_max_age(engine: sa.Engine) -> None:
    now = [100.0]
    stamp = BuildStamp(max_age=1.0, clock=lambda: now[0])
    Shop(engine).customer("someone")
    with engine.connect() as conn:
        assert stamp.get(conn) is None  # before the first build
    build(engine, T0, BuildOptions(personal_model="knn"))
    with engine.connect() as conn, statements(engine) as seen:
        assert stamp.get(conn) is None  # still the record read a moment ago
        assert seen == []
        now[0] += 1.0
        first = stamp.get(conn)
        assert first is not None and first["built_at"] == T0.isoformat()
        assert len(seen) == 1


def test_the_api_names_a_rebuild_once_the_cached_record_is_stale(
    engine: sa.Engine, app: Any, client: Any, secret_key: str
) -> None:
    now = [0.0]
    app.state.recommendation_build = BuildStamp(max_age=1.0, clock=lambda: now[0])
    Shop(engine).customer("someone")
    build(engine, T0, BuildOptions(personal_model="knn"))

    def built_at() -> str | None:
        answer = client.get("/api/recommendations", headers=bearer(secret_key))
        assert answer.status_code == 200, answer.text
        found: str | None = answer.json()["built_at"]
        return found

    assert built_at() == T0.isoformat()
    later = T0 + timedelta(days=1)
    build(engine, later, BuildOptions(personal_model="knn"))
    assert built_at() == T0.isoformat()  # within max_age: the cached record
    now[0] += 1.5
    assert built_at() == later.isoformat()


def test_requests_leave_pooled_connections_as_they_found_them(
    shop: sa.Engine, client: Any, secret_key: str
) -> None:
    answer = client.get("/api/recommendations", params={"customer": 5}, headers=bearer(secret_key))
    assert answer.status_code == 200
    with shop.connect() as conn:
        assert conn.get_isolation_level() == conn.default_isolation_level


def brute_force(factors: np.ndarray, active: np.ndarray, k: int) -> list[tuple[int, int, int]]:
    """(source, other, position) of the k nearest by cosine, ties by the lower index."""
    f = factors[active].astype(np.float64)
    norms = np.linalg.norm(f, axis=1)
    norms[norms == 0] = 1.0
    f = f / norms[:, None]
    sims = f @ f.T
    out = []
    for i in range(len(active)):
        order = sorted((j for j in range(len(active)) if j != i), key=lambda j: (-sims[i, j], j))
        out += [(int(active[i]), int(active[j]), p) for p, j in enumerate(order[:k])]
    return out


@pytest.mark.parametrize("compiled", [True, False])
def test_factor_neighbours_match_brute_force(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if compiled and similarity._compiled_top_k() is None:
        pytest.skip("the optional implicit package is not installed")
    if not compiled:
        monkeypatch.setattr(similarity, "_compiled_top_k", lambda: None)
    rng = np.random.default_rng(5)
    factors = rng.standard_normal((260, 16)).astype(np.float32)
    factors[17] = 0.0  # a product whose factors are all zero
    active = np.sort(rng.choice(260, 240, replace=False)).astype(np.int64)
    if 17 not in active:
        active = np.sort(np.r_[active[1:], 17]).astype(np.int64)
    found = similarity.factor_top_k(factors, active, 12)
    got = list(
        zip(found.source.tolist(), found.other.tolist(), found.position.tolist(), strict=True)
    )
    # The all-zero product scores 0 with everyone: which 12 it keeps is a tie, unordered.
    zero = [(s, o, p) for s, o, p in got if s == 17]
    assert len(zero) == 12 and 17 not in {o for _, o, _ in zero}
    assert np.all(found.score[found.source == 17] == 0)
    assert [g for g in got if g[0] != 17] == [
        b for b in brute_force(factors, active, 12) if b[0] != 17
    ]
    f = factors[active] / np.maximum(np.linalg.norm(factors[active], axis=1), 1e-30)[:, None]
    index = {int(a): n for n, a in enumerate(active)}
    expected = [
        float(f[index[s]] @ f[index[o]]) for s, o in zip(found.source, found.other, strict=True)
    ]
    assert np.allclose(found.score, expected, atol=1e-5)
    # Fewer active products than k: every other one, once each.
    small = similarity.factor_top_k(factors, active[:5], 12)
    assert len(small) == 5 * 4 and set(small.position.tolist()) == {0, 1, 2, 3}
