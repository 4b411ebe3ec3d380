"""`rapport loyalty programme show|set`, `balance`, `adjust`, `run-daily` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.pipeline import Pipeline
from rapport.store.tables import audit_log
from tests.helpers import table_counts
from tests.test_loyalty_support import BASE, check_ledger, send

runner = CliRunner()


def _run(engine: sa.Engine, *args: str) -> tuple[int, str]:
    url = engine.url.render_as_string(hide_password=False)
    split = args.index("--") if "--" in args else len(args)  # options before a negative
    result = runner.invoke(cli, ["loyalty", *args[:split], "--database-url", url, *args[split:]])
    return result.exit_code, result.output


def test_programme_set_and_show(engine: sa.Engine, tmp_path: Path) -> None:
    good = tmp_path / "programme.json"
    good.write_text(json.dumps(BASE))
    code, out = _run(engine, "programme", "set", str(good))
    assert code == 0, out
    assert "version 1 (enabled)" in out
    code, out = _run(engine, "programme", "show")
    assert code == 0, out
    assert '"accrual_percent": 5' in out and "# version 1" in out
    with engine.connect() as conn:
        actor = conn.execute(sa.select(audit_log.c.actor_kind)).scalar_one()
    assert actor == "cli"

    before = table_counts(engine)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**BASE, "pending_days": -1, "tiers": [{"name": "A"}]}))
    code, out = _run(engine, "programme", "set", str(bad))
    assert code == 1
    assert "pending_days" in out and "tiers[0].threshold" in out
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    code, out = _run(engine, "programme", "set", str(broken))
    assert code == 1 and "not a JSON document" in out
    code, out = _run(engine, "programme", "set", str(tmp_path / "missing.json"))
    assert code == 1 and "does not exist" in " ".join(out.split())  # the path may wrap
    assert table_counts(engine) == before


def test_balance_adjust_and_daily(engine: sa.Engine, clock: SimulatedClock, tmp_path: Path) -> None:
    path = tmp_path / "programme.json"
    path.write_text(json.dumps(BASE))
    assert _run(engine, "programme", "set", str(path))[0] == 0
    cid = send(Pipeline(engine, clock), "identify", "ann", traits={"email": "ann@example.com"})

    code, out = _run(engine, "adjust", "ann@example.com", "40", "--reason", "welcome gift")
    assert code == 0, out
    code, out = _run(engine, "adjust", "--reason", "correction", "ann", "--", "-15")
    assert code == 0, out
    assert check_ledger(engine, cid) == (25, 0)
    code, out = _run(engine, "balance", str(cid))
    assert code == 0, out
    assert f"Customer #{cid}: 25 points, 0 pending" in out
    assert "welcome gift" in out and "correction" in out

    before = table_counts(engine)
    code, out = _run(engine, "adjust", "--reason", "too much", str(cid), "--", "-100")
    assert code == 1 and "the balance is 25" in out
    code, out = _run(engine, "adjust", "nobody", "5", "--reason", "x")
    assert code == 1 and "no customer 'nobody'" in out
    assert table_counts(engine) == before

    code, out = _run(engine, "run-daily")
    assert code == 0, out
    assert "0 points activated, 0 expired" in out


def test_help_texts() -> None:
    result = runner.invoke(cli, ["loyalty", "--help"])
    assert result.exit_code == 0
    for command in ("programme", "balance", "adjust", "run-daily"):
        assert command in result.output
    result = runner.invoke(cli, ["loyalty", "adjust", "--help"])
    assert "negative to take away" in result.output
