"""GET /api/recommendations: answers, keys, and every kind of bad input (both stores)."""

from __future__ import annotations

import pytest

from rapport.recommend.build import build
from rapport.recommend.strategies import BuildOptions
from tests.conftest import T0, basic, bearer
from tests.test_recommend_strategies import make_shop


@pytest.fixture
def shop(engine):
    _, who = make_shop(engine)
    build(engine, T0, BuildOptions(personal_model="knn"))
    return who


def get(client, key, **params):
    return client.get("/api/recommendations", params=params, headers=bearer(key))


def test_product_recommendations(client, secret_key, shop):
    answer = get(client, secret_key, product="ph1", limit=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["strategy"] == "bought_together"  # the default with a product
    assert [i["product_id"] for i in body["items"]][:2] == ["c1", "ch1"]
    assert body["items"][0]["product"]["name"] == "Product c1"
    assert body["served"] == {"bought_together": 2, "popular": 1}
    assert body["built_at"] == T0.isoformat()


def test_customer_by_id_or_user_id(client, secret_key, shop):
    by_id = get(client, secret_key, customer=shop["u1"], strategy="personal", limit=2).json()
    by_user = get(client, secret_key, user_id="u1", strategy="personal", limit=2).json()
    assert by_id["items"] == by_user["items"]
    assert [i["product_id"] for i in by_id["items"]] == ["s2", "so1"]
    assert by_id["customer_id"] == shop["u1"]


def test_write_key_gets_product_lists_but_not_customers(client, write_key, shop):
    ok = client.get(
        "/api/recommendations", params={"product": "ph1", "limit": 1}, headers=basic(write_key)
    )
    assert ok.status_code == 200 and ok.json()["items"][0]["product_id"] == "c1"
    refused = client.get(
        "/api/recommendations", params={"customer": shop["u1"]}, headers=basic(write_key)
    )
    assert refused.status_code == 403
    assert "secret key" in refused.json()["message"]
    assert client.get("/api/recommendations").status_code == 401
    wrong = client.get("/api/recommendations", headers=basic("nope"))
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("params", "where", "words"),
    [
        ({"strategy": "trending"}, "query.strategy", "unknown strategy"),
        ({"strategy": "personal"}, "query.customer", "needs a customer"),
        ({"strategy": "viewed_not_bought"}, "query.customer", "needs a customer"),
        ({"strategy": "bought_together"}, "query.product", "needs a product or a customer"),
        ({"limit": 0}, "query.limit", "greater than or equal to 1"),
        ({"limit": 101}, "query.limit", "less than or equal to 100"),
        ({"limit": "many"}, "query.limit", "integer"),
        ({"strategy": "personal", "customer": 1, "category": "x"}, "query.category", "popular"),
        ({"customer": 1, "user_id": "u1"}, "query.user_id", "not both"),
    ],
)
def test_bad_input_is_422_naming_the_parameter(client, secret_key, shop, params, where, words):
    answer = get(client, secret_key, **params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["errors"][0]["where"] == where
    assert words in body["errors"][0]["reason"]


def test_unknown_customer_or_product_is_404(client, secret_key, shop):
    assert get(client, secret_key, customer=999999).status_code == 404
    missing = get(client, secret_key, user_id="nobody")
    assert missing.status_code == 404 and "nobody" in missing.json()["message"]
    missing = get(client, secret_key, product="nothing")
    assert missing.status_code == 404 and "nothing" in missing.json()["message"]


def test_popular_in_a_category_and_without_fallback(client, secret_key, shop):
    body = get(client, secret_key, strategy="new_arrivals", category="shoes", fallback=False).json()
    # Without fallbacks, only the category's own new arrivals (not the whole catalog's).
    assert [(i["product_id"], i["strategy"]) for i in body["items"]] == [("n1", "new_arrivals")]
    body = get(client, secret_key, strategy="popular", limit=100).json()
    assert len(body["items"]) == 12  # every available product


def test_before_any_build_the_answer_says_so(client, secret_key, engine):
    make_shop(engine)
    body = get(client, secret_key, strategy="popular").json()
    assert body["items"] == [] and body["built_at"] is None
