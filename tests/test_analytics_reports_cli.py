"""`rapport report business|ltv|cohorts|funnel|rfm`: tables, CSV and charts, and bad input."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.analytics.periods import Period
from rapport.cli import app as cli
from tests.test_analytics_business import LAPSED_DAYS, expected, ingest_shop, make_shop

SPAN = ["--from", "2025-09-01", "--to", "2026-02-28"]
PERIOD = Period(date(2025, 9, 1), date(2026, 2, 28))


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _run(engine: sa.Engine, *args: str) -> Any:
    result = CliRunner(env={"COLUMNS": "220"}).invoke(
        cli, ["report", *args, "--database-url", _url(engine)]
    )
    return result


@pytest.fixture
def shop(engine: sa.Engine) -> list[Any]:
    buyers = make_shop(seed=41, n=100)
    ingest_shop(engine, buyers)
    return buyers


def test_business_table_and_csv(engine: sa.Engine, shop: list[Any], tmp_path: Path) -> None:
    out = tmp_path / "business.csv"
    result = _run(engine, "business", *SPAN, "--csv", str(out), "--margin", "0.5")
    assert result.exit_code == 0, result.output
    want = expected(shop, PERIOD, LAPSED_DAYS, 3)
    assert "Business 2025-09-01 – 2026-02-28" in result.output
    assert f"{want.revenue:,.2f}" in result.output
    assert "CAC ceiling (margin 0.5)" in result.output
    assert "Time to repeat purchase" in result.output
    rows = {r["metric"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert int(rows["buyers"]["value"]) == want.buyers
    assert float(rows["revenue"]["value"]) == pytest.approx(want.revenue, abs=0.01)
    assert f"wrote {out}" in result.output


@pytest.mark.parametrize(
    ("name", "suffix", "magic"),
    [
        ("cohorts", "svg", b"<?xml"),
        ("funnel", "png", b"\x89PNG"),
        ("ltv", "svg", b"<?xml"),
        ("rfm", "png", b"\x89PNG"),
    ],
)
def test_reports_with_charts(
    engine: sa.Engine, shop: list[Any], tmp_path: Path, name: str, suffix: str, magic: bytes
) -> None:
    chart = tmp_path / f"{name}.{suffix}"
    table = tmp_path / f"{name}.csv"
    result = _run(engine, name, *SPAN, "--chart", str(chart), "--csv", str(table))
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(magic)
    assert len(table.read_text(encoding="utf-8").splitlines()) > 1


def test_funnel_and_cohort_tables(engine: sa.Engine, shop: list[Any]) -> None:
    want = expected(shop, PERIOD, LAPSED_DAYS, 3)
    result = _run(engine, "funnel", *SPAN)
    assert result.exit_code == 0, result.output
    for stage, n in want.funnel.items():
        line = next(x for x in result.output.splitlines() if f" {stage} " in x)
        assert f" {n:,} " in line, line
    result = _run(engine, "cohorts", *SPAN)
    assert result.exit_code == 0, result.output
    assert "Retention by month of first order" in result.output
    assert "2025-09" in result.output and "+1" in result.output


def test_unknown_segment(engine: sa.Engine, shop: list[Any]) -> None:
    result = _run(engine, "business", *SPAN, "--segment", "nobody")
    assert result.exit_code == 1
    assert "no segment named 'nobody'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["business", "--from", "2026-02-30"], "from: must be a date"),
        (["ltv", "--period", "fortnight"], "period: must be one of"),
        (["funnel", "--from", "2026-02-10", "--to", "2026-02-01"], "is after to=2026-02-01"),
        (["business", "--margin", "2"], "margin: must be a number above 0 and at most 1"),
        (["cohorts", "--chart", "chart.gif"], "--chart: must end in .svg or .png"),
    ],
)
def test_bad_input_exits_with_the_reason(engine: sa.Engine, args: list[str], message: str) -> None:
    result = _run(engine, *args)
    assert result.exit_code == 1, result.output
    assert message in result.output
