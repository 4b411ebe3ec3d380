"""Strategies: a bad file is refused naming the file and the field; the backtest runs two
strategies on one simulated population and reports differences with intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rapport.cli import app
from rapport.demo.compare import difference
from rapport.demo.response import Delivered, ResponseModel, react
from rapport.demo.strategy import DEFAULT, StrategyError, load_strategy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "strategies"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_example_strategy_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        assert load_strategy(path).name


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("scenarios: [welcome, no-such-playbook]\n", "scenarios[1]"),
        ("policy: {channels: {email: {cap: {max_messages: 0, days: 7}}}}\n", "policy."),
        ("global_control: 80\n", "global_control"),
        ("campaigns: [{name: X, day: 1, variants: []}]\n", "campaigns[0].variants"),
        (
            "campaigns: [{name: X, day: 1, segment: {nope: 1}, variants: [{name: A}]}]\n",
            "campaigns[0].segment",
        ),
        ("colour: blue\n", "colour"),
        ("scenarios: [welcome\n", "line"),
        ("- just a list\n", "mapping"),
    ],
)
def test_a_bad_strategy_names_the_file_and_the_field(tmp_path: Path, text: str, where: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(StrategyError) as err:
        load_strategy(path)
    assert str(path) in str(err.value)
    assert where in str(err.value)


def test_the_cli_refuses_a_bad_strategy_before_running_anything(tmp_path: Path) -> None:
    good = EXAMPLES / "with-win-back.yaml"
    bad = _write(tmp_path, "typo.yaml", "scenarios: [welcome, wnback]\n")
    work = tmp_path / "work"
    out = CliRunner().invoke(
        app, ["demo", "compare", str(good), str(bad), "--customers", "5", "--workdir", str(work)]
    )
    assert out.exit_code == 2
    assert "typo.yaml" in out.output and "scenarios[1]" in out.output
    assert not work.exists()  # nothing generated, nothing stored


def test_compare_on_a_tiny_population_is_well_formed(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        [
            "demo", "compare",
            str(EXAMPLES / "without-win-back.yaml"), str(EXAMPLES / "with-win-back.yaml"),
            "--customers", "60", "--months", "1", "--days", "4", "--seed", "3", "--json",
            "--workdir", str(tmp_path / "work"),
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.output[out.output.index("{") :])
    assert result["simulated"] is True and result["customers"] == 60
    assert (
        result["a"]["strategy"] == "without win-back" and result["b"]["strategy"] == "with win-back"
    )
    for key in ("incremental_revenue", "incremental_unsubscribes"):
        d = result[key]
        assert d["ci"][0] <= d["value"] <= d["ci"][1]
        assert d["bootstrap_ci"][0] <= d["bootstrap_ci"][1]
    assert result["a"]["messages"] or result["b"]["messages"]


def test_the_same_strategy_twice_differs_by_nothing(tmp_path: Path) -> None:
    """Both runs start from one store and one history, and everything after is
    deterministic, so a strategy against itself shows exactly zero, interval included."""
    same = str(EXAMPLES / "with-win-back.yaml")
    out = CliRunner().invoke(
        app,
        ["demo", "compare", same, same, "--customers", "50", "--months", "1", "--days", "3",
         "--json", "--workdir", str(tmp_path / "work")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.output[out.output.index("{") :])
    assert result["a"]["revenue"] == result["b"]["revenue"]
    assert result["a"]["messages"] == result["b"]["messages"]
    assert result["incremental_revenue"]["ci"] == [0.0, 0.0]


def test_difference_scales_the_per_customer_interval_to_the_population() -> None:
    values = np.array([0.0] * 90 + [100.0] * 10)
    d = difference(values)
    assert d.value == pytest.approx(1000.0)
    assert d.ci[0] < 1000.0 < d.ci[1]
    assert d.bootstrap_ci[0] < 1000.0 < d.bootstrap_ci[1]


# -- the response model ------------------------------------------------------------------


def _rates(
    fatigue: int, *, playbook: str = "abandoned-cart", discount: float = 0.0
) -> dict[str, float]:
    from rapport.demo.generator import DemoConfig, History

    person = History(DemoConfig(customers=1, months=1, seed=5)).people[0]
    message = Delivered("k", "email", 0.0, playbook, None, None, discount, ())
    rng = np.random.default_rng(1)
    draws = [react(person, message, fatigue, ResponseModel(), rng) for _ in range(4000)]
    opened = [r for r in draws if r.opened_at is not None]
    return {
        "open": len(opened) / len(draws),
        "click": sum(r.clicked_at is not None for r in draws) / len(draws),
        "unsubscribe": sum(r.unsubscribed_at is not None for r in draws) / max(len(opened), 1),
        "buy": sum(r.buys_at is not None for r in draws) / len(draws),
    }


def test_fatigue_lowers_opens_and_raises_unsubscribes() -> None:
    fresh, tired = _rates(0), _rates(8)
    assert tired["open"] < fresh["open"] * 0.6
    assert tired["unsubscribe"] > fresh["unsubscribe"] + 0.02


def test_relevance_and_discount_raise_clicks_and_orders() -> None:
    fitting = _rates(0, playbook="abandoned-cart", discount=0.2)
    loose = _rates(0, playbook="service-offer", discount=0.0)
    assert fitting["click"] > loose["click"] * 1.5
    assert fitting["buy"] > loose["buy"] * 1.5


def test_the_default_strategy_is_valid() -> None:
    assert DEFAULT.scenarios and DEFAULT.campaigns
    assert DEFAULT.parsed_policy().channels
