"""`rapport clv fit` on CSV files (CDNOW and broken ones) and `rapport clv score` on both
stores, through the real command line."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.segments.definitions import create_segment
from rapport.store.engine import writing
from rapport.store.tables import segment_members
from tests.helpers import table_counts
from tests.test_clv_store import build_shop, stored_scores

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifetimes
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import calibration_and_holdout_data

MASTER = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
COLUMNS = ["--customer", "customer_id", "--date", "date"]


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CDNOW_master as a CSV with its own header (the file is whitespace-separated)."""
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    lines = (",".join(line.split()) for line in MASTER.read_text().splitlines())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cdnow_reference() -> pd.DataFrame:
    df = pd.read_csv(MASTER, sep=r"\s+", dtype={"customer_id": str, "date": str})
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return calibration_and_holdout_data(
        df,
        "customer_id",
        "date",
        calibration_period_end=pd.Timestamp("1997-09-30"),
        freq="D",
        freq_multiplier=7,
        monetary_value_col="dollar_value",
    )


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["clv", *args])
    return result.exit_code, result.output


def test_fit_bgnbd_on_cdnow_with_a_holdout(cdnow_csv: Path, cdnow_reference: pd.DataFrame) -> None:
    code, out = run(
        "fit", str(cdnow_csv), *COLUMNS, "--calibration-end", "1997-09-30",
        "--time-unit", "week", "--model", "bgnbd", "--json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    ref = cdnow_reference
    theirs = BetaGeoFitter().fit(
        ref["frequency_cal"].to_numpy(), ref["recency_cal"].to_numpy(), ref["T_cal"].to_numpy()
    )
    for name, value in theirs.params_.items():
        assert report["params"][name] == pytest.approx(value, rel=5e-4)
    assert report["customers"] == len(ref)
    assert report["repeat_customers"] == int((ref["frequency_cal"] > 0).sum())
    assert report["time_unit"] == "week" and report["calibration_end"] == "1997-09-30"
    check = report["holdout"]
    assert check["duration"] == 39.0
    assert [row["frequency"] for row in check["by_frequency"]] == [*map(str, range(7)), "7+"]
    groups = np.minimum(ref["frequency_cal"].to_numpy().astype(int), 7)
    actual = np.bincount(groups, weights=ref["frequency_holdout"].to_numpy(), minlength=8)
    assert [row["actual"] for row in check["by_frequency"]] == actual.tolist()
    assert [row["customers"] for row in check["by_frequency"]] == np.bincount(groups).tolist()
    predicted = theirs.predict(
        39, ref["frequency_cal"].to_numpy(), ref["recency_cal"].to_numpy(), ref["T_cal"].to_numpy()
    )
    assert check["total"]["predicted"] == pytest.approx(predicted.sum(), rel=1e-4)
    assert check["total"]["actual"] == ref["frequency_holdout"].sum()


def test_fit_gammagamma_and_the_tables(cdnow_csv: Path, cdnow_reference: pd.DataFrame) -> None:
    code, out = run(
        "fit", str(cdnow_csv), *COLUMNS, "--amount", "dollar_value",
        "--calibration-end", "1997-09-30", "--time-unit", "week", "--model", "gammagamma",
        "--json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    ref = cdnow_reference[
        (cdnow_reference["frequency_cal"] > 0) & (cdnow_reference["monetary_value_cal"] > 0)
    ]
    theirs = GammaGammaFitter().fit(
        ref["frequency_cal"].to_numpy(), ref["monetary_value_cal"].to_numpy()
    )
    for ours, name in (("p", "p"), ("q", "q"), ("gamma", "v")):
        assert report["params"][ours] == pytest.approx(theirs.params_[name], rel=5e-4)
    assert report["fitted_customers"] == len(ref)
    assert report["holdout"]["measure"] == "spend per transaction"
    # Without --json: Rich tables with the parameters and the holdout check.
    code, out = run(
        "fit", str(cdnow_csv), *COLUMNS, "--calibration-end", "1997-09-30",
        "--time-unit", "week", "--model", "paretonbd",
    )  # fmt: skip
    assert code == 0, out
    for text in ("Pareto/NBD", "beta", "log-likelihood", "Holdout check", "7+", "all"):
        assert text in out


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "content, extra, message",
    [
        (None, [], "no such file"),
        ("", [], "the file is empty"),
        ("customer_id,date\n", [], "has a header but no transactions"),
        ("customer,date\n1,2024-01-01\n", [], "no column 'customer_id'"),
        ("customer_id,date\n1,2024-01-01\n2,31/01/2024\n", [], "line 3, column 'date'"),
        (
            "customer_id,date,amount\n1,2024-01-01,12.5\n1,2024-01-02,twelve\n",
            ["--amount", "amount"],
            "line 3, column 'amount': 'twelve' is not a number",
        ),
        ("customer_id,date\n1,2024-01-01\n", ["--model", "gammagamma"], "needs an amount"),
        ("customer_id,date\n1,2024-01-01\n", ["--calibration-end", "soon"], "not a date"),
        (
            "customer_id,date\n1,2024-01-01\n1,2024-01-05\n",
            ["--calibration-end", "2024-02-01"],
            "before the observation end",
        ),
        (
            "customer_id,date\n1,2024-01-01\n1,2024-01-05\n2,2024-01-03\n",
            [],
            "1 of 2 customers made a repeat purchase",
        ),
    ],
)
def test_fit_reports_bad_files_clearly(
    tmp_path: Path, content: str | None, extra: list[str], message: str
) -> None:
    path = str(tmp_path / "missing.csv") if content is None else _csv(tmp_path, content)
    code, out = run("fit", path, *COLUMNS, *extra)
    assert code == 1
    assert message in " ".join(out.split()), out


def test_score_through_the_command_line(engine: sa.Engine) -> None:
    # The command asks the system clock, so the shop is built around the real now.
    now = datetime.now(UTC).replace(microsecond=0)
    shop = build_shop(engine, now)
    rule = {"computed": "churn_risk", "op": "gt", "value": 0.5}
    with writing(engine) as conn:
        segment = create_segment(conn, "about to churn", "", rule, now)
    url = engine.url.render_as_string(hide_password=False)
    code, out = run("score", "--database-url", url, "--horizon-months", "6")
    assert code == 0, out
    for text in ("Writing scores", "customers scored", "segment moves"):
        assert text in out
    stored = stored_scores(engine)
    assert all(stored[c][0] is not None for c in shop.customers("regular"))
    assert all(stored[c][0] is None for c in shop.customers("never"))
    with engine.connect() as conn:
        members = set(
            conn.execute(
                sa.select(segment_members.c.customer_id).where(
                    segment_members.c.segment_id == segment.id, segment_members.c.until.is_(None)
                )
            ).scalars()
        )
    assert members == shop.customers("gone")


def test_score_refuses_a_store_with_too_little_history(engine: sa.Engine) -> None:
    build_shop(engine, datetime.now(UTC), regulars=5, gone=5)
    before = table_counts(engine)
    url = engine.url.render_as_string(hide_password=False)
    code, out = run("score", "--database-url", url, "--model", "paretonbd")
    assert code == 1
    text = " ".join(out.split())
    assert "Nothing was written" in text and "at least 20" in text
    assert table_counts(engine) == before
