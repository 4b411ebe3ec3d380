"""`rapport segments list|count|export|sweep` against a real store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.pipeline import Pipeline
from rapport.segments.definitions import create_segment
from rapport.store.engine import writing
from tests.shop_helpers import identify


def _url(engine) -> str:  # type: ignore[no-untyped-def]
    return engine.url.render_as_string(hide_password=False)


def test_count_list_export(engine, clock, tmp_path):
    pipeline = Pipeline(engine, clock)
    for i, city in enumerate(["Kazan", "Kazan", "Omsk"]):
        identify(pipeline, f"u{i}", city=city)
    rule = {"attribute": "city", "op": "eq", "value": "Kazan"}
    with writing(engine) as conn:
        create_segment(conn, "kazan", "", rule, clock.now())
    runner = CliRunner()
    path = tmp_path / "rule.json"
    path.write_text(json.dumps(rule))
    result = runner.invoke(
        cli, ["segments", "count", "--rule", str(path), "--database-url", _url(engine)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "2"
    result = runner.invoke(cli, ["segments", "count", "kazan", "--database-url", _url(engine)])
    assert result.output.strip().splitlines()[-1] == "2"
    out = tmp_path / "kazan.csv"
    result = runner.invoke(
        cli, ["segments", "export", "kazan", "--out", str(out), "--database-url", _url(engine)]
    )
    assert result.exit_code == 0, result.output
    assert len(out.read_text().strip().splitlines()) == 3  # header and two members
    result = runner.invoke(cli, ["segments", "list", "--database-url", _url(engine)])
    assert "kazan" in result.output


def test_count_reports_a_bad_rule(engine, tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text("attribute: city\nop: gt\nvalue: []\n")
    result = CliRunner().invoke(
        cli, ["segments", "count", "--rule", str(path), "--database-url", _url(engine)]
    )
    assert result.exit_code == 1
    assert "rule" in result.output
