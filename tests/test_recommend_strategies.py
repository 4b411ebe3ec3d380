"""Each strategy on a small shop whose answer is known by construction, built into the
store and served from it, on both stores."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from rapport.recommend.blocks import products_for
from rapport.recommend.build import build, last_build
from rapport.recommend.personal import ModelUnavailable, choose_model
from rapport.recommend.rank import Ask
from rapport.recommend.serve import read_histories, recommend
from rapport.recommend.strategies import BuildOptions
from rapport.store.engine import writing
from rapport.store.tables import products, rec_lists
from tests.conftest import T0
from tests.test_recommend_shop import Shop


def make_shop(engine: sa.Engine) -> tuple[Shop, dict[str, int]]:
    """Phones go with cases (declared); shoes and socks are bought by the same customers
    within weeks (learned); ph1 and c1 share most orders; c3 is out of stock."""
    shop = Shop(engine)
    shop.category("phones", compatible=["cases"])
    shop.category("smartphones", parent="phones")
    shop.category("cases")
    shop.category("chargers")
    shop.category("shoes")
    shop.category("socks")
    shop.products("phones", "ph1", "ph2")
    shop.products("smartphones", "ph3")
    shop.products("cases", "c1", "c2")
    shop.products("cases", "c3", stock=0)
    shop.products("chargers", "ch1", "ch2")
    shop.products("shoes", "s1", "s2")
    shop.products("socks", "so1")
    shop.products("shoes", "n1", days_old=5)
    shop.products("phones", "n2", days_old=3, available="no")
    shop.products("phones", "n3", days_old=2)
    who = {name: shop.customer(name) for name in ("u1", "u2", "u3", "u4", "u5", "u6", "new")}
    for name in ("u1", "u2", "u3"):
        shop.order(who[name], ["ph1", "c1", "c3"], days_ago=20)
    shop.order(who["u4"], ["ph1", "ch1"], days_ago=15)
    shop.order(who["u4"], ["c2"], days_ago=200)
    # Shoes, then socks three weeks later: a learned pair and a personal neighbour.
    for name in ("u5", "u6"):
        shop.order(who[name], ["s1"], days_ago=40)
        shop.order(who[name], ["so1"], days_ago=19)
        shop.order(who[name], ["s2"], days_ago=10)
    shop.order(who["u1"], ["s1"], days_ago=5)
    shop.view(who["u4"], "ph2", days_ago=1, views=2)
    shop.view(who["u4"], "ph3", days_ago=5)
    shop.view(who["u4"], "ph1", days_ago=0.5)  # bought: not "viewed but not bought"
    return shop, who


def ask(engine: sa.Engine, strategy: str, limit: int = 10, customer: int | None = None, **kw):
    with engine.connect() as conn:
        history = read_histories(conn, [customer], T0)[customer] if customer else None
        product = kw.pop("product", None)
        category = None
        if product:
            category = conn.execute(
                sa.select(products.c.category_id).where(products.c.id == product)
            ).scalar_one()
        picks = recommend(
            conn,
            Ask(strategy, limit, product=product, product_category=category, history=history, **kw),
        )
    return [(p.product["id"], p.strategy) for p in picks]


@pytest.fixture
def shop(engine):
    _, who = make_shop(engine)
    build(engine, T0, BuildOptions(personal_model="knn"))
    return who


def own(picks, strategy):
    return [pid for pid, served in picks if served == strategy]


def test_bought_together_ranks_the_usual_partner_first(engine, shop):
    picks = ask(engine, "bought_together", product="ph1")
    # c1 shares 3 of ph1's 4 orders, ch1 one; c3 shares 3 but is out of stock.
    assert own(picks, "bought_together") == ["c1", "ch1"]
    assert "ph1" not in [p for p, _ in picks] and "c3" not in [p for p, _ in picks]
    # The rest of the limit is popular products of the phone's category, then overall.
    assert picks[2] == ("ph3", "popular") or picks[2][1] == "popular"
    assert len(picks) == 10


def test_bought_together_leaves_out_what_the_customer_bought(engine, shop):
    picks = ask(engine, "bought_together", product="ph1", customer=shop["u4"])
    assert picks[0][0] == "c1"
    assert not {"ch1", "c2", "ph1"} & {p for p, _ in picks}  # u4 bought them


def test_bought_together_from_the_customers_last_order(engine, shop):
    picks = ask(engine, "bought_together", customer=shop["u4"])  # last order: ph1 + ch1
    assert own(picks, "bought_together") == ["c1"]


def test_compatible_declared_in_the_catalog(engine, shop):
    picks = ask(engine, "compatible", product="ph3")  # smartphones ⊂ phones → cases
    assert own(picks, "compatible") == ["c1", "c2"]  # most bought case first; c3 sold out


def test_compatible_learned_from_orders(engine, shop):
    picks = ask(engine, "compatible", product="s2")
    assert own(picks, "compatible") == ["so1"]  # shoes and socks: lift 7/3 from 2 customers
    # From a customer's recent purchases, newest category first: u1 bought shoes, and
    # before that a phone and cases. Phones and cases are also learned both ways (3 of the
    # 4 phone buyers bought a case: lift 3·6/(4·4) > 1), so the lists of shoes → socks,
    # phones → cases and cases → phones are interleaved, without what u1 has.
    picks = ask(engine, "compatible", customer=shop["u1"])
    assert own(picks, "compatible") == ["so1", "c2", "ph2", "ph3", "n3"]


def test_viewed_not_bought(engine, shop):
    picks = ask(engine, "viewed_not_bought", customer=shop["u4"], limit=3)
    assert picks[:2] == [("ph2", "viewed_not_bought"), ("ph3", "viewed_not_bought")]
    assert picks[2][1] == "popular"


def test_popular_overall_and_in_a_category(engine, shop):
    picks = ask(engine, "popular", limit=4)
    # Distinct buyers in 90 days: ph1 4, c1 3, s1 3, s2 2, so1 2 (ties by id).
    assert picks == [("ph1", "popular"), ("c1", "popular"), ("s1", "popular"), ("s2", "popular")]
    picks = ask(engine, "popular", category="phones", limit=10)
    assert [p for p, _ in picks][:1] == ["ph1"]
    assert "ph3" in [p for p, _ in picks]  # the sub-category counts for its parent
    assert "n2" not in [p for p, _ in picks]  # not available


def test_new_arrivals(engine, shop):
    picks = ask(engine, "new_arrivals", limit=2, fallback=False)
    assert picks == [("n3", "new_arrivals"), ("n1", "new_arrivals")]  # newest first, n2 sold out
    picks = ask(engine, "new_arrivals", category="shoes", limit=3)
    assert picks[0] == ("n1", "new_arrivals")
    assert picks[1] == ("n3", "new_arrivals")  # then the whole catalog's new arrivals
    assert picks[2][1] == "popular"


def test_personal_neighbours_of_recent_purchases(engine, shop):
    picks = ask(engine, "personal", customer=shop["u1"], limit=3)
    # u1 bought s1 lately; every s1 buyer also bought so1 and s2.
    assert own(picks, "personal")[:2] == ["s2", "so1"]
    assert not {"ph1", "c1", "c3", "s1"} & {p for p, _ in picks}


def test_fallbacks_fill_the_limit_for_a_customer_without_history(engine, shop):
    picks = ask(engine, "personal", customer=shop["new"], limit=100)
    served = {s for _, s in picks}
    assert served == {"popular"}
    # Every available product, once: 13 products, c3 and n2 out of stock.
    assert sorted(p for p, _ in picks) == sorted(
        ["ph1", "ph2", "ph3", "c1", "c2", "ch1", "ch2", "s1", "s2", "so1", "n1", "n3"]
    )


def test_unavailable_after_the_build_is_not_served(engine, shop):
    with writing(engine) as conn:
        conn.execute(
            products.update().where(products.c.id == "c1").values(attributes={"available": False})
        )
    picks = ask(engine, "bought_together", product="ph1")
    assert own(picks, "bought_together") == ["ch1"]


def test_blocks_give_template_products(engine, shop):
    with engine.connect() as conn:
        blocks = products_for(conn, [shop["u1"], shop["new"]], "personal", 2, T0)
    assert [p["id"] for p in blocks[shop["u1"]]] == ["s2", "so1"]
    first = blocks[shop["u1"]][0]
    assert first["name"] == "Product s2" and first["url"] == "https://shop.example/s2"
    assert first["strategy"] == "personal" and first["score"] > 0
    assert [p["strategy"] for p in blocks[shop["new"]]] == ["popular", "popular"]
    with engine.connect() as conn:
        by_product = products_for(conn, [shop["new"]], "bought_together", 1, T0, product="ph1")
    assert [p["id"] for p in by_product[shop["new"]]] == ["c1"]
    with engine.connect() as conn, pytest.raises(ValueError, match="unknown strategy"):
        products_for(conn, [shop["new"]], "trending", 1, T0)


def test_rebuild_replaces_the_lists(engine, shop):
    with engine.connect() as conn:
        first = conn.execute(sa.select(rec_lists).order_by(*rec_lists.primary_key)).all()
        info = last_build(conn)
    assert info is not None and info["personal_model"] == "knn"
    assert info["rows"]["bought_together"] > 0
    build(engine, T0, BuildOptions(personal_model="knn"))
    with engine.connect() as conn:
        again = conn.execute(sa.select(rec_lists).order_by(*rec_lists.primary_key)).all()
    assert again == first
    with writing(engine) as conn:
        conn.execute(products.update().where(products.c.id == "c1").values(attributes={"stock": 0}))
    build(engine, T0 + timedelta(hours=1), BuildOptions(personal_model="knn"))
    with engine.connect() as conn:
        kept = conn.execute(
            sa.select(sa.func.count()).select_from(rec_lists).where(rec_lists.c.product_id == "c1")
        ).scalar_one()
        info = last_build(conn)
    assert kept == 0
    assert info is not None and info["built_at"] == (T0 + timedelta(hours=1)).isoformat()


def test_personal_falls_back_to_knn_without_implicit(engine, shop, monkeypatch):
    monkeypatch.setitem(sys.modules, "implicit", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "implicit.als", None)
    assert choose_model("auto") == "knn"
    with pytest.raises(ModelUnavailable, match="pip install"):
        choose_model("als")
    result = build(engine, T0, BuildOptions(personal_model="auto"))
    assert result.personal_model == "knn"
    assert own(ask(engine, "personal", customer=shop["u1"], limit=3), "personal")[:2] == [
        "s2",
        "so1",
    ]


def test_personal_with_als(engine, shop):
    pytest.importorskip(
        "implicit.als",
        reason="the optional 'implicit' package (rapport[recommend]) is not installed",
    )
    result = build(engine, T0, BuildOptions(personal_model="als", als_factors=8))
    assert result.personal_model == "als"
    assert result.rows["personal"] > 0
    picks = ask(engine, "personal", customer=shop["u1"], limit=5)
    assert own(picks, "personal")  # neighbours from the item factors
    assert not {"ph1", "c1", "s1"} & {p for p, _ in picks}
