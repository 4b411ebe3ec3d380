"""`rapport coupons series create|list|show|pause|resume`, `generate`, `issue`, `check`
against a real store (SQLite and PostgreSQL), through typer's runner."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.store.tables import coupon_codes, events
from tests.conftest import T0
from tests.helpers import table_counts
from tests.shop_helpers import add_customer
from tests.test_coupons import catalog, consume_of, order

WELCOME = """
name: welcome
title: Welcome 10%
kind: percent
value: 10
prefix: HI-
valid_days: 14
min_subtotal: 1000
include_categories: [shoes]
"""


def _run(engine: sa.Engine, *args: str) -> Any:
    runner = CliRunner(env={"COLUMNS": "250"})
    url = engine.url.render_as_string(hide_password=False)
    return runner.invoke(cli, ["coupons", *args, "--database-url", url])


def _file(tmp_path: Path, text: str, name: str = "series.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_create_list_show_pause(engine: sa.Engine, tmp_path: Path) -> None:
    catalog(engine)
    created = _run(engine, "series", "create", _file(tmp_path, WELCOME))
    assert created.exit_code == 0, created.output
    assert "Coupon series welcome" in created.output and "HI-" in created.output
    listed = _run(engine, "series", "list")
    assert listed.exit_code == 0 and "welcome" in listed.output and "10% off" in listed.output
    assert _run(engine, "series", "pause", "welcome").exit_code == 0
    shown = _run(engine, "series", "show", "welcome")
    assert shown.exit_code == 0 and "paused" in shown.output and "yes" in shown.output
    assert _run(engine, "series", "resume", "welcome").exit_code == 0
    missing = _run(engine, "series", "show", "nope")
    assert missing.exit_code == 1 and "no coupon series named 'nope'" in missing.output


def test_bad_settings_file_names_each_field_and_stores_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    catalog(engine)
    before = table_counts(engine)
    bad = WELCOME.replace("value: 10", "value: 250").replace("[shoes]", "[hats]")
    answer = _run(engine, "series", "create", _file(tmp_path, bad))
    assert answer.exit_code == 1
    assert "series.value: a percent discount is at most 100" in answer.output
    assert "nothing was stored" in answer.output
    answer = _run(engine, "series", "create", _file(tmp_path, WELCOME.replace("[shoes]", "[hats]")))
    assert "series.include_categories[0]: no category 'hats' in the catalog" in answer.output
    broken = _run(engine, "series", "create", _file(tmp_path, "name: [unclosed"))
    assert broken.exit_code == 1 and "neither JSON nor YAML" in broken.output
    assert table_counts(engine) == before


def test_generate_to_csv(engine: sa.Engine, tmp_path: Path) -> None:
    _run(engine, "series", "create", _file(tmp_path, "name: print\nkind: amount\nvalue: 300\n"))
    out = tmp_path / "codes.csv"
    answer = _run(engine, "generate", "print", "12000", "--out", str(out))
    assert answer.exit_code == 0, answer.output
    assert "12,000 codes of print written" in answer.output
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12_000 and len({r["code"] for r in rows}) == 12_000
    assert rows[0]["series"] == "print"
    with engine.connect() as conn:
        stored = set(conn.execute(sa.select(coupon_codes.c.code)).scalars())
    assert stored == {r["code"] for r in rows}
    plain = _run(engine, "generate", "print", "3")
    assert plain.exit_code == 0 and len(plain.output.split()) == 3
    before = table_counts(engine)
    refused = _run(engine, "generate", "print", "0")
    assert refused.exit_code == 1 and "count: give 1 to 1,000,000 codes, not 0" in refused.output
    assert _run(engine, "generate", "nope", "5").exit_code == 1
    assert table_counts(engine) == before


def test_issue_and_check(engine: sa.Engine, tmp_path: Path) -> None:
    catalog(engine)
    cid = add_customer(engine, T0)
    _run(engine, "series", "create", _file(tmp_path, WELCOME))
    issued = _run(engine, "issue", str(cid), "welcome", "--key", "k-1")
    assert issued.exit_code == 0, issued.output
    code = issued.output.strip()
    assert code.startswith("HI-")
    assert _run(engine, "issue", str(cid), "welcome", "--key", "k-1").output.strip() == code
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(events)
                .where(events.c.name == "Coupon Issued")
            ).scalar()
            == 1
        )
    ok = _run(engine, "check", code, "--customer", str(cid))
    assert ok.exit_code == 0 and f"usable by customer {cid}" in ok.output
    priced = _run(engine, "check", code.lower(), "--customer", str(cid),
                  "--line", "600x2@running", "--line", "300@bags")  # fmt: skip
    assert priced.exit_code == 0, priced.output
    assert "discount 120.00 on eligible lines of 1200.00" in priced.output
    below = _run(engine, "check", code, "--customer", str(cid), "--line", "900@shoes")
    assert below.exit_code == 1 and "order below the minimum of 1000.00" in below.output
    other = add_customer(engine, T0)
    assert (
        "belongs to another customer"
        in _run(engine, "check", code, "--customer", str(other)).output
    )
    consume_of(engine, code, order(cid, ("shoes", 1000, 1)), "used-1")
    used = _run(engine, "check", code, "--customer", str(cid))
    assert used.exit_code == 1 and "already used" in used.output
    bad_line = _run(engine, "check", code, "--customer", str(cid), "--line", "lots@shoes")
    assert bad_line.exit_code == 2 and "PRICE[xQTY][@CATEGORY]" in bad_line.output
    nobody = _run(engine, "issue", "999999", "welcome")
    assert nobody.exit_code == 1 and "customer 999999 does not exist" in nobody.output


def test_help_explains_the_commands() -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    top = runner.invoke(cli, ["coupons", "--help"])
    assert top.exit_code == 0
    for command in ("series", "generate", "issue", "check"):
        assert command in top.output
    check = runner.invoke(cli, ["coupons", "check", "--help"])
    assert "PRICE[xQTY][@CATEGORY]" in check.output
