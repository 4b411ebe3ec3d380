"""`rapport scenarios list|show|create|update|activate|pause|archive|stats|runs` against a
real store (SQLite and PostgreSQL), through typer's runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import scenario_versions, scenarios
from tests.conftest import T0
from tests.helpers import table_counts
from tests.shop_helpers import identify

WELCOME = """
name: welcome
trigger: {event: Signed Up}
steps:
  - {id: hello, send: {template: hi}}
  - {id: later, wait: {days: 1}}
  - {id: again, send: {template: hi}}
"""


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _run(engine: sa.Engine, *args: str) -> Any:
    # Wide enough that Rich does not fold the tables' figures.
    runner = CliRunner(env={"COLUMNS": "250"})
    return runner.invoke(cli, ["scenarios", *args, "--database-url", _url(engine)])


def _template(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=T0,
        )


def _file(tmp_path: Path, text: str, name: str = "scenario.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_create_activate_show_and_stats(
    engine: sa.Engine, clock: SimulatedClock, tmp_path: Path
) -> None:
    _template(engine)
    result = _run(engine, "create", "--file", _file(tmp_path, WELCOME), "--activate")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "1"
    assert "active" in result.output

    pipeline = Pipeline(engine, clock)
    cid = identify(pipeline, "u1", email="u1@example.com", consents={"email": "subscribed"})
    with writing(engine) as conn:
        pipeline.record(conn, cid, "Signed Up", {})

    result = _run(engine, "list")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "welcome" in line)
    assert "active" in row and "{event: Signed Up}" in row
    assert row.split("│")[6].strip() == "1"  # one live run

    result = _run(engine, "show", "welcome")
    assert result.exit_code == 0, result.output
    assert "#1 welcome: active, version 1" in result.output
    assert "trigger:\n  event: Signed Up" in result.output  # the definition as YAML
    assert "Runs: 1 entered, 1 live" in result.output

    result = _run(engine, "stats", "1")
    assert result.exit_code == 0, result.output
    hello = next(line for line in result.output.splitlines() if "│ hello" in line)
    cells = [c.strip() for c in hello.split("│")[1:-1]]
    assert cells[:5] == ["hello", "send", "1", "0", "1"]  # entered 1, at it now 0, sent 1
    later = next(line for line in result.output.splitlines() if "│ later" in line)
    assert [c.strip() for c in later.split("│")[1:-1]][:4] == ["later", "wait", "1", "1"]

    result = _run(engine, "stats", "welcome", "--since", "2030-01-01")
    assert result.exit_code == 0, result.output
    assert "Runs: 0 entered" in result.output

    result = _run(engine, "runs", "--customer", str(cid))
    assert result.exit_code == 0, result.output
    assert "welcome" in result.output and "hello:entered → hello:sent" in result.output
    assert _run(engine, "runs", "--customer", "999").exit_code == 1


def test_update_pause_activate_archive(engine: sa.Engine, tmp_path: Path) -> None:
    _template(engine)
    assert _run(engine, "create", "--file", _file(tmp_path, WELCOME)).exit_code == 0
    changed = WELCOME.replace("days: 1", "days: 3")
    result = _run(engine, "update", "welcome", "--file", _file(tmp_path, changed, "v2.yaml"))
    assert result.exit_code == 0, result.output
    assert "Saved version 2 of scenario #1 (welcome)" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(scenario_versions)).scalar() == 2

    result = _run(engine, "pause", "welcome")  # a draft is not running
    assert result.exit_code == 1 and "nothing to pause" in result.output
    for command, status in [("activate", "active"), ("pause", "paused"), ("archive", "archived")]:
        result = _run(engine, command, "welcome")
        assert result.exit_code == 0, result.output
        assert f"is {status}" in result.output
        with engine.connect() as conn:
            assert conn.execute(sa.select(scenarios.c.status)).scalar() == status
    assert _run(engine, "activate", "1").exit_code == 0


def test_errors_print_each_problem_and_store_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    before = table_counts(engine)
    result = _run(engine, "create", "--file", _file(tmp_path, WELCOME))  # no template "hi"
    assert result.exit_code == 1
    assert "scenario.steps[0].send.template: no template 'hi'" in result.output
    assert "scenario.steps[2].send.template: no template 'hi'" in result.output

    broken = "name: x\ntrigger: {event: A}\nsteps:\n  - {id: a, teleport: {to: mars}}\n"
    result = _run(engine, "create", "--file", _file(tmp_path, broken))
    assert result.exit_code == 1 and "scenario.steps[0].teleport" in result.output

    result = _run(engine, "create", "--file", _file(tmp_path, "name: [unclosed"))
    assert result.exit_code == 1 and "neither JSON nor YAML" in result.output

    result = _run(engine, "create", "--file", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2  # typer: the file does not exist

    for command in ("show", "stats", "activate", "pause"):
        result = _run(engine, command, "nope")
        assert result.exit_code == 1 and "no scenario named 'nope'" in result.output
    result = _run(engine, "update", "nope", "--file", _file(tmp_path, WELCOME))
    assert result.exit_code == 1
    assert table_counts(engine) == before

    _template(engine)
    assert _run(engine, "create", "--file", _file(tmp_path, WELCOME)).exit_code == 0
    before = table_counts(engine)
    result = _run(engine, "create", "--file", _file(tmp_path, WELCOME))
    assert result.exit_code == 1 and "already has the name 'welcome'" in result.output
    cycle = WELCOME.replace(
        "  - {id: again, send: {template: hi}}",
        "  - {id: again, send: {template: hi}, next: back}\n"
        "  - {id: back, send: {template: hi}, next: again}",
    )
    result = _run(engine, "update", "welcome", "--file", _file(tmp_path, cycle))
    assert result.exit_code == 1 and "loop without a wait" in result.output
    assert table_counts(engine) == before


def test_help_is_clear() -> None:
    result = CliRunner(env={"COLUMNS": "120"}).invoke(cli, ["scenarios", "--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "create", "update", "activate", "pause", "stats", "runs"):
        assert command in result.output
    result = CliRunner(env={"COLUMNS": "120"}).invoke(cli, ["scenarios", "create", "--help"])
    assert "the new id is the last line" in result.output and "--activate" in result.output
