"""Offline evaluation: a generated history with a planted pattern, through the CLI too."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from rapport.cli import app
from rapport.errors import InvalidInput
from rapport.recommend.evaluate import evaluate, ndcg_at_k
from rapport.recommend.strategies import BuildOptions
from tests.conftest import T0
from tests.test_recommend_shop import Shop

PAIRS = 12


def planted_history(engine) -> Shop:
    """Products a_k and b_k are always bought together, while 30 fillers are the
    bestsellers. Before the split, most pair buyers take both in one order; test customers
    took only a_k, and after the split they come back for b_k."""
    rng = random.Random(5)
    shop = Shop(engine)
    shop.category("pairs")
    shop.category("fillers")
    shop.products("pairs", *[f"a{k}" for k in range(PAIRS)], *[f"b{k}" for k in range(PAIRS)])
    fillers = [f"f{k:02d}" for k in range(30)]
    shop.products("fillers", *fillers)
    for n in range(60):  # pair buyers, both in one order, plus a filler now and then
        cid = shop.customer()
        k = n % PAIRS
        shop.order(cid, [f"a{k}", f"b{k}"], days_ago=rng.uniform(40, 120))
        shop.order(cid, rng.sample(fillers, 3), days_ago=rng.uniform(35, 120))
    for _ in range(80):  # filler buyers make the fillers the most popular products
        cid = shop.customer()
        shop.order(cid, rng.sample(fillers, 4), days_ago=rng.uniform(35, 80))
        shop.order(cid, rng.sample(fillers, 2), days_ago=rng.uniform(1, 29))
    for n in range(36):  # the test customers
        cid = shop.customer()
        k = n % PAIRS
        shop.order(cid, [f"a{k}"], days_ago=rng.uniform(35, 60))
        shop.order(cid, [f"b{k}", rng.choice(fillers)], days_ago=rng.uniform(1, 29))
    return shop


def test_ndcg_definition():
    assert ndcg_at_k(["x", "y"], {"x"}) == 1.0
    assert ndcg_at_k(["y", "x"], {"x"}) == pytest.approx(1 / 1.5849625007)
    assert ndcg_at_k(["y", "x"], {"x", "z"}) == pytest.approx(0.63093 / (1 + 0.63093), rel=1e-4)
    assert ndcg_at_k(["y"], {"x"}) == 0.0


def test_bought_together_beats_popularity_on_a_planted_pattern(engine):
    planted_history(engine)
    result = evaluate(
        engine, split=T0 - timedelta(days=30), build_options=BuildOptions(personal_model="knn")
    )
    scores = {s.strategy: s for s in result.scores}
    assert result.scores[0].strategy == "popular"  # the baseline first
    assert result.test_customers >= 36  # and filler buyers, whose new products are fillers
    together, popular = scores["bought_together"], scores["popular"]
    # Each test customer's last order is a_k alone, whose partner is b_k: a hit at rank 1.
    assert together.hit_rate > popular.hit_rate
    assert together.ndcg > popular.ndcg
    assert scores["personal"].ndcg > popular.ndcg  # a_k's buyers also bought b_k
    for s in result.scores:
        assert 0.0 <= s.hit_rate <= 1.0 and 0.0 <= s.ndcg <= 1.0


def test_evaluate_refuses_a_split_with_nothing_to_test(engine):
    planted_history(engine)
    with pytest.raises(InvalidInput, match="no customer bought before"):
        evaluate(engine, split=T0 + timedelta(days=1))


def test_cli_evaluate_prints_json_and_a_table(engine):
    planted_history(engine)
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "recommend",
            "evaluate",
            "--holdout-days",
            "30",
            "--json",
            "--personal-model",
            "knn",
            "--database-url",
            url,
        ],
    )
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert body["baseline"] == "popular" and body["k"] == 10
    names = [s["strategy"] for s in body["strategies"]]
    assert names[0] == "popular" and "bought_together" in names
    table = runner.invoke(
        app, ["recommend", "evaluate", "--split-date", "2026-01-30", "--database-url", url]
    )
    assert table.exit_code == 0, table.output
    assert "hit rate@10" in table.output and "NDCG@10" in table.output
    bad = runner.invoke(
        app, ["recommend", "evaluate", "--split-date", "January", "--database-url", url]
    )
    assert bad.exit_code == 1 and "--split-date" in bad.output
    both = runner.invoke(
        app,
        [
            "recommend",
            "evaluate",
            "--split-date",
            "2026-01-30",
            "--holdout-days",
            "5",
            "--database-url",
            url,
        ],
    )
    assert both.exit_code == 1 and "not both" in both.output
