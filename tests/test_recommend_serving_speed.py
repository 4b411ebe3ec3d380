"""The fast serving path answers exactly what whole lists would, in fewer statements.

Serving reads lists only as deep as an answer can reach, the customer with their history
in one statement, and the build's record from memory; ALS's neighbour search selects with
a compiled top-k. Each of those is checked here against the plain way (whole lists read
from the table, brute-force top-k) on both stores.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from bench.loyalty_recs_data import Shape
from bench.loyalty_recs_data import build as build_shop

from rapport.customers.merge import merge_customers
from rapport.recommend import similarity
from rapport.recommend.availability import is_available
from rapport.recommend.build import build
from rapport.recommend.history import read_customer
from rapport.recommend.rank import Ask, History, candidates
from rapport.recommend.serve import (
    BuildStamp,
    UnknownProduct,
    first_round,
    read_histories,
    recommend,
)
from rapport.recommend.strategies import STRATEGIES, WHOLE_CATALOG, BuildOptions, ServeOptions
from rapport.store import engine as engine_module
from rapport.store.engine import create_engine, writing
from rapport.store.tables import categories, identities, products, rec_lists
from tests.conftest import T0, _clean, bearer
from tests.test_recommend_shop import Shop

SHAPE = Shape(products=400, customers=300, order_lines=2500)


@pytest.fixture
def shop(engine: sa.Engine) -> sa.Engine:
    build_shop(engine, SHAPE, T0)
    build(engine, T0, BuildOptions(personal_model="knn"))
    return engine


def whole_list_answer(engine: sa.Engine, ask: Ask) -> list[tuple[str, str, float]]:
    """The answer from every list read whole: candidates in order, the first ``limit``
    available catalog products, with their scores (what serving did before it read lists
    in part and before PostgreSQL summed the neighbour lists itself)."""
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
    out: list[tuple[str, str, float]] = []
    for c in candidates(ask, lambda kind, key: every.get((kind, key), []), ServeOptions()):
        if c.product_id in catalog and is_available(catalog[c.product_id]):
            out.append((c.product_id, c.strategy, c.score))
            if len(out) == ask.limit:
                break
    return out


def served(engine: sa.Engine, ask: Ask, **kw: Any) -> list[tuple[str, str, float]]:
    """The answer as served: product, strategy and score (compared exactly: the sums
    PostgreSQL makes must be the floats the Python sums make)."""
    with engine.connect() as conn:
        return [(p.product["id"], p.strategy, p.score) for p in recommend(conn, ask, **kw)]


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
    for strategy in STRATEGIES:  # no customer, or one with no history yet
        for history in (None, History()):
            for limit in (1, 10, 37):
                ask = Ask(strategy, limit, history=history)
                assert served(shop, ask) == whole_list_answer(shop, ask), (strategy, limit)


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
    assert [pid for pid, _, _ in answer] == best[40:50]
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
        assert not {pid for pid, _, _ in answer} & set(best[:60])
        assert answer == whole_list_answer(shop, ask), strategy
        # The depth read grows with what the customer has: no second read needed.
        assert list_reads(seen) == 1, strategy


def test_a_product_page_finds_its_category_in_the_same_statement(shop: sa.Engine) -> None:
    with shop.connect() as conn:
        catalog = dict(conn.execute(sa.select(products.c.id, products.c.category_id)).all())
        history = read_histories(conn, [3], T0)[3]
    rng = random.Random(5)
    summing = shop.dialect.name == "postgresql"
    for pid in rng.sample(sorted(catalog), 10):
        for strategy in ("bought_together", "compatible", "popular", "viewed_not_bought"):
            for limit in (3, 10, 40):
                hist = history if strategy == "viewed_not_bought" else None
                told = Ask(
                    strategy, limit, product=pid, product_category=catalog[pid], history=hist
                )
                ask = Ask(strategy, limit, product=pid, history=hist)
                with statements(shop) as seen:
                    answer = served(shop, ask, find_category=True)
                assert answer == served(shop, told) == whole_list_answer(shop, told)
                assert len(answer) == limit
                if strategy != "bought_together" or summing:
                    assert len(seen) == 1, (strategy, seen)
    with pytest.raises(UnknownProduct), shop.connect() as conn:
        recommend(conn, Ask("bought_together", 10, product="no-such-product"), find_category=True)
    # A product without a category: no category lists, popular overall fills the answer.
    lonely = sorted(catalog)[7]
    with writing(shop) as conn:
        conn.execute(products.update().where(products.c.id == lonely).values(category_id=None))
    for strategy in ("bought_together", "compatible"):
        told = Ask(strategy, 10, product=lonely)
        found = served(shop, Ask(strategy, 10, product=lonely), find_category=True)
        assert found == whole_list_answer(shop, told)
        assert len(found) == 10


def _sell_out(engine: sa.Engine, ids: list[str]) -> None:
    with writing(engine) as conn:
        conn.execute(
            products.update().where(products.c.id.in_(ids)).values(attributes={"available": False})
        )


def _first_candidates(engine: sa.Engine, ask: Ask, n: int) -> list[str]:
    every: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    r = rec_lists.c
    with engine.connect() as conn:
        for kind, key, pid, score in conn.execute(
            sa.select(r.kind, r.list_key, r.product_id, r.score).order_by(
                r.kind, r.list_key, r.position
            )
        ):
            every[(kind, key)].append((pid, float(score)))
    found = candidates(ask, lambda kind, key: every.get((kind, key), []), ServeOptions())
    return [c.product_id for c, _ in zip(found, range(n), strict=False)]


def test_products_sold_out_since_the_build_make_a_sum_read_on(shop: sa.Engine) -> None:
    """The first round's summed candidates all sold out: the rest of the sums is read
    (on PostgreSQL, the database's sums from where the first read stopped)."""
    with shop.connect() as conn:
        histories = read_histories(conn, list(range(1, 80)), T0)
    cid = max(histories, key=lambda c: len(histories[c].purchases))
    ask = Ask("personal", 10, history=histories[cid])
    gone = _first_candidates(shop, ask, first_round(10))
    assert len(gone) == first_round(10)
    _sell_out(shop, gone)
    with statements(shop) as seen:
        answer = served(shop, ask)
    assert len(answer) == 10
    assert not {pid for pid, _, _ in answer} & set(gone)
    assert answer == whole_list_answer(shop, ask)
    assert len(seen) >= 2  # the first statement, then the rest
    if shop.dialect.name == "postgresql":  # the sums read on from where they stopped
        assert any("OFFSET" in sql.upper() for sql in seen[1:]), seen


def test_fallbacks_left_unread_are_read_when_a_stream_gets_there(shop: sa.Engine) -> None:
    """Viewed products that fill the first round leave the fallbacks unread; when they
    turn out sold out, the fallback lists are read then, and the answer is the same."""
    with shop.connect() as conn:
        pids = sorted(conn.execute(sa.select(products.c.id)).scalars())
    maker = Shop(shop)
    cid = maker.customer("browser")
    viewed = pids[-30:]
    for n, pid in enumerate(viewed):
        maker.view(cid, pid, days_ago=1 + n / 10)
    with shop.connect() as conn:
        found = read_customer(conn, T0, customer_id=cid)
        assert found is not None
        history = found[1]
    ask = Ask("viewed_not_bought", 10, history=history)
    with statements(shop) as seen:
        first = served(shop, ask)
    assert first == whole_list_answer(shop, ask)
    assert len(seen) == 1 and list_reads(seen) == 0  # the views' rows only: no list read
    _sell_out(shop, viewed)
    with statements(shop) as seen:
        answer = served(shop, ask)
    assert len(answer) == 10 and {s for _, s, _ in answer} == {"popular"}
    assert answer == whole_list_answer(shop, ask)
    assert list_reads(seen) >= 1


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


def test_an_api_request_takes_one_or_two_statements(
    shop: sa.Engine, client: Any, secret_key: str
) -> None:
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
    # PostgreSQL sums the neighbour lists itself and returns the best with their rows;
    # SQLite reads the lists whole, so the best ones' rows take one more statement.
    summing = shop.dialect.name == "postgresql"
    cases: list[tuple[dict[str, Any], int]] = [
        ({"customer": 5, "strategy": "personal"}, 2 if summing else 3),  # customer, lists
        ({"customer": 6, "strategy": "viewed_not_bought"}, 2),
        ({"product": "p0000000007"}, 1 if summing else 2),  # category, lists and rows
        ({"category": leaf, "strategy": "popular"}, 1),
    ]
    for params, expected in cases:
        with statements(shop) as seen:
            body = get(**params)
        assert len(body["items"]) == 10
        assert len(seen) == expected, (params, seen)
        assert not any(sql.strip().upper() == "SELECT 1" for sql in seen)  # no liveness ping


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


# ------------------------------------------------------------------ pooled connections


@pytest.fixture
def own_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A PostgreSQL engine of the test's own (its connections are killed on purpose)."""
    made = create_engine(postgres_url)
    yield made
    made.dispose()


@pytest.fixture
def pings(own_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the liveness pings (``SELECT 1`` round trips) the engine sends."""
    sent: list[int] = []
    ping = own_engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        sent.append(1)
        return ping(dbapi_conn)

    monkeypatch.setattr(own_engine.dialect, "do_ping", counted)
    return sent


def _backend(conn: sa.Connection) -> int:
    return int(conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]


def _terminate(url: str, pid: int) -> None:
    """End a server session from outside, and wait until its client has been told."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(200):
            gone = c.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            if gone is None:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} did not end")


def test_a_pooled_connection_in_use_is_not_pinged(own_engine: sa.Engine, pings: list[int]):
    for _ in range(20):
        with own_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
    assert pings == []  # pool_pre_ping would have sent 19 (the first connection is new)


def test_an_idle_connection_is_pinged_before_use(
    own_engine: sa.Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
    with own_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert pings == [1]


def test_a_connection_the_server_ended_is_replaced_without_an_error(
    own_engine: sa.Engine, pings: list[int], postgres_url: str
) -> None:
    with own_engine.connect() as conn:
        ended = _backend(conn)
    _terminate(postgres_url, ended)  # the pooled connection is now dead, and was used just now
    with own_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 3")).scalar_one() == 3
        assert _backend(conn) != ended
    assert pings == [1]  # the server's farewell was waiting on the socket: pinged, failed


def test_a_request_whose_connection_dies_under_it_runs_again(postgres_url: str) -> None:
    """The connection is lost after it was taken from the pool, before the first
    statement: the read fails as a disconnect and the request runs once more."""
    from fastapi.testclient import TestClient

    from rapport.access.keys import create_key
    from rapport.api.app import create_app
    from rapport.clock import SimulatedClock
    from rapport.settings import Settings

    made = create_engine(postgres_url)
    _clean(made)
    Shop(made).customer("someone")
    build(made, T0, BuildOptions(personal_model="knn"))
    key = create_key(made, "secret", "tests", T0).key
    settings = Settings(
        database_url=postgres_url, sweep_seconds=0, dispatch=False, scenario_seconds=0
    )
    killed: list[int] = []

    def kill_once(conn: sa.Connection, *_: Any) -> None:
        if not killed:
            killed.append(_backend(conn))
            _terminate(postgres_url, killed[0])

    try:
        app = create_app(settings, engine=made, clock=SimulatedClock(T0))
        with TestClient(app) as client:
            assert client.get("/api/recommendations", headers=bearer(key)).status_code == 200
            sa.event.listen(made, "before_cursor_execute", kill_once)
            answer = client.get("/api/recommendations", headers=bearer(key))
            assert killed, "no statement ran"
            assert answer.status_code == 200, answer.text
            assert answer.json()["built_at"] == T0.isoformat()
    finally:
        sa.event.remove(made, "before_cursor_execute", kill_once) if killed else None
        made.dispose()
        _clean(made)


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
