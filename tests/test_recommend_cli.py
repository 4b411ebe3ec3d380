"""`rapport recommend build` and `show`, on both stores."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rapport.cli import app
from tests.test_recommend_strategies import make_shop


def test_build_then_show(engine):
    _, who = make_shop(engine)
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    built = runner.invoke(
        app, ["recommend", "build", "--personal-model", "knn", "--json", "--database-url", url]
    )
    assert built.exit_code == 0, built.output
    body = json.loads(built.output)
    assert body["personal_model"] == "knn" and body["rows"]["popular"] > 0
    assert body["inputs"]["products"] == 14 and body["inputs"]["orders"] == 12
    table = runner.invoke(
        app, ["recommend", "build", "--personal-model", "knn", "--database-url", url]
    )
    assert table.exit_code == 0 and "bought_together" in table.output
    shown = runner.invoke(
        app, ["recommend", "show", "--product", "ph1", "--limit", "2", "--database-url", url]
    )
    assert shown.exit_code == 0, shown.output
    assert "c1" in shown.output and "bought_together" in shown.output
    shown = runner.invoke(app, ["recommend", "show", str(who["u1"]), "--database-url", url])
    assert shown.exit_code == 0 and "personal" in shown.output
    shown = runner.invoke(
        app,
        [
            "recommend",
            "show",
            "--user-id",
            "u4",
            "--strategy",
            "viewed_not_bought",
            "--database-url",
            url,
        ],
    )
    assert shown.exit_code == 0 and "ph2" in shown.output


def test_bad_input_is_a_clear_message(engine):
    make_shop(engine)
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    cases = [
        (["recommend", "show", "--strategy", "personal"], "needs a customer"),
        (["recommend", "show", "--product", "nope"], "does not exist"),
        (["recommend", "show", "999999"], "does not exist"),
        (["recommend", "show", "abc"], "not a Rapport id"),
        (["recommend", "show", "--strategy", "trending"], "unknown strategy"),
        (["recommend", "build", "--personal-model", "deep"], "--personal-model"),
    ]
    for args, words in cases:
        done = runner.invoke(app, [*args, "--database-url", url])
        assert done.exit_code == 1, (args, done.output)
        assert words in done.output, (args, done.output)
