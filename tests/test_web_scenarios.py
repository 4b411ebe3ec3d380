"""The Scenarios pages on SQLite and PostgreSQL: the list's figures are the stats API's,
the journey map carries the figures on its boxes, status changes are audited and refused
to roles without ``edit_marketing``, a dry run from the page reports what the command
line reports, bad input is said clearly, and the library installs from the page."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rapport.analytics.periods import parse_period
from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.messaging.templates.store import create_template
from rapport.scenarios.diagram import TRIGGER, WORDS
from rapport.scenarios.dry_run_report import CAVEATS
from rapport.scenarios.store import create_scenario, get_scenario
from rapport.store.engine import writing
from rapport.store.tables import scenario_runs, scenarios
from rapport.web.routes.scenario_views import DIAGRAM_WORDS, DRY_RUN_CAVEATS
from tests.conftest import T0, basic, bearer
from tests.helpers import table_counts
from tests.test_scenarios_dry_run import CART
from tests.test_scenarios_dry_run import _shop as cart_history
from tests.test_scenarios_stats import _script
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in

SVG = "{http://www.w3.org/2000/svg}"


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    """Log in as a new person of ``role`` (forgetting the last one); the CSRF token."""
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/scenarios")


def _row(page: str, scenario_id: int) -> dict[str, str]:
    found = re.search(rf'<tr data-scenario="{scenario_id}">(.*?)</tr>', page, re.S)
    assert found, page
    return dict(re.findall(r'data-figure="(\w+)">([^<]*)<', found.group(1)))


def _figures_on_boxes(svg: str) -> dict[str, list[str]]:
    return {
        str(g.get("data-step")): [
            str(t.text) for t in g.iter(f"{SVG}text") if t.get("class") == "jm-figure"
        ]
        for g in ET.fromstring(svg).iter(f"{SVG}g")
        if g.get("data-step")
    }


def _inline_svg(page: str) -> str:
    found = re.search(r"<svg .*?</svg>", page, re.S)
    assert found, page
    return found.group(0)


def _status(engine: sa.Engine, scenario_id: int = 1) -> str:
    with engine.connect() as conn:
        return get_scenario(conn, scenario_id).status


def _template(engine: sa.Engine, name: str = "hi") -> None:
    with writing(engine) as conn:
        create_template(
            conn,
            name=name,
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=T0,
        )


def _draft(engine: sa.Engine, text: str, status: str = "draft") -> int:
    with writing(engine) as conn:
        return create_scenario(conn, text, T0, status).id


HELLO = """
name: hello
trigger: {event: Signed Up}
steps:
  - {id: hello, send: {template: hi}}
"""


# -- the list --------------------------------------------------------------------------------


def test_the_list_shows_what_the_stats_api_counts(
    web: TestClient,
    app: Any,
    engine: sa.Engine,
    clock: SimulatedClock,
    write_key: str,
    secret_key: str,
) -> None:
    _script(web, app, write_key, secret_key, clock)
    now = clock.now()
    period = parse_period(None, None, "last_30_days", now.date())
    window = {"since": period.start.isoformat(), "until": period.end.isoformat()}
    auth = bearer(secret_key)
    stats = web.get("/api/scenarios/1/stats", params=window, headers=auth).json()
    listed = web.get("/api/scenarios", headers=auth).json()["scenarios"][0]
    money = web.get(
        "/api/reports/messages", params={"period": "last_30_days", "scenario": "1"}, headers=auth
    ).json()["rows"][0]
    assert stats["runs"]["entered"] == 7 and listed["live_runs"] == 1  # the script's figures
    for role in ("viewer", "marketer"):
        signed_in(web, engine, role)
        page = web.get("/scenarios")
        assert page.status_code == 200, page.text
        row = _row(page.text, 1)
        assert row["entered"] == str(stats["runs"]["entered"])
        assert row["live"] == str(listed["live_runs"])
        assert row["sent"] == str(sum(s["sent"] for s in stats["steps"]))
        assert row["conversion"] == f"{stats['conversion']:.1%}"
        assert row["orders"] == str(money["conversions"])
        assert row["revenue"] == f"{money['revenue']:,.2f}"
        text = text_of(page.text)
        assert "journey" in text and "Event Signed Up" in text and "active" in text
        buttons = re.findall(r'action="/scenarios/1/(\w+)"', page.text)
        installs = re.findall(r'action="/scenarios/library"', page.text)
        if role == "viewer":
            assert buttons == [] and installs == []
        else:
            assert buttons == ["pause"] and len(installs) == 15
        assert "<script>" not in page.text and "style=" not in page.text


def test_an_empty_store_lists_the_library(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "analyst")
    page = web.get("/scenarios")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "No scenarios yet." in text
    assert "playbook-welcome" in text and "No Order Completed for 60 d" in text
    preview = web.get("/scenarios/library/win-back.svg")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/svg+xml"
    assert ET.fromstring(preview.text).tag == f"{SVG}svg"
    assert web.get("/scenarios/library/nope.svg").status_code == 404


# -- one scenario ----------------------------------------------------------------------------


def test_the_map_carries_the_figures_of_the_graph_api(
    web: TestClient,
    app: Any,
    engine: sa.Engine,
    clock: SimulatedClock,
    write_key: str,
    secret_key: str,
) -> None:
    _script(web, app, write_key, secret_key, clock)
    period = parse_period(None, None, "last_30_days", clock.now().date())
    window = {"since": period.start.isoformat(), "until": period.end.isoformat()}
    graph = web.get("/api/scenarios/1/graph", params=window, headers=bearer(secret_key)).json()
    nodes = {n["id"]: n["stats"] for n in graph["nodes"]}
    signed_in(web, engine, "viewer")
    page = web.get("/scenarios/1")
    assert page.status_code == 200, page.text
    boxes = _figures_on_boxes(_inline_svg(page.text))
    assert set(boxes) >= {TRIGGER, *nodes}
    for sid, figures in nodes.items():
        assert boxes[sid][0].startswith(f"Entered {figures['entered']}"), (sid, boxes[sid])
    hello = nodes["hello"]
    assert f"Sent {hello['sent']} · skipped {hello['skipped']}" in boxes["hello"]
    assert f"Opened {hello['opened']} ({hello['open_rate']:.1%})" in boxes["hello"]
    assert boxes[TRIGGER][:2] == [f"Entered {graph['runs']['entered']}", "In flight 1"]
    edges = {(e["from"], e["label"]): e["count"] for e in graph["edges"]}
    labels = re.findall(r'data-from="ab" data-to="[^"]+" data-label="([^"]+)"', page.text)
    assert f"A 50.0% · conv. 100.0% · {edges['ab', 'A']}" in labels
    assert "Version 1 as YAML" in text_of(page.text) and "name: journey" in page.text
    # The same map alone, to embed elsewhere.
    alone = web.get("/scenarios/1.svg")
    assert alone.status_code == 200 and alone.headers["content-type"] == "image/svg+xml"
    assert _figures_on_boxes(alone.text) == boxes
    # The period switch swaps the panel and puts the period in the address.
    panel = web.get("/scenarios/1/panel", params={"period": "last_7_days"})
    assert panel.status_code == 200 and "<html" not in panel.text
    assert panel.headers["HX-Push-Url"] == "/scenarios/1?period=last_7_days"
    # Runs started in the last 7 days: only u7's (the script ends ten days on).
    assert _figures_on_boxes(_inline_svg(panel.text))[TRIGGER][0] == "Entered 1"
    # Roles that cannot change it see no buttons and no dry run.
    assert 'action="/scenarios/1/' not in page.text
    assert "needs the analyst, marketer or admin role" in text_of(page.text)


def test_the_map_speaks_the_page_language(web: TestClient, engine: sa.Engine) -> None:
    _template(engine)
    _draft(
        engine, HELLO.replace("steps:", "goal: {event: Order Completed, within_days: 7}\nsteps:")
    )
    signed_in(web, engine, "marketer")
    web.get("/lang/ru", params={"next": "/"})
    page = web.get("/scenarios/1")
    svg = _inline_svg(page.text)
    for word in ("Триггер", "Событие Signed Up", "Отправка", "Вошли 0", "Цель: Order Completed"):
        assert word in svg, word
    assert "Карта пути клиента" in page.text and "Пробный прогон" in page.text
    assert "Событие Signed Up" in web.get("/scenarios").text


def test_every_word_of_the_map_and_the_dry_run_is_in_the_catalog() -> None:
    assert set(DIAGRAM_WORDS) == set(WORDS)
    assert set(DRY_RUN_CAVEATS) == set(CAVEATS)


def test_names_are_escaped(web: TestClient, engine: sa.Engine) -> None:
    _template(engine)
    _draft(engine, HELLO.replace("name: hello", 'name: "<script>alert(1)</script>"'))
    signed_in(web, engine, "admin")
    for path in ("/scenarios", "/scenarios/1"):
        page = web.get(path)
        assert "<script>alert(1)</script>" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    ET.fromstring(_inline_svg(web.get("/scenarios/1").text))


def test_bad_input_is_said_clearly(web: TestClient, engine: sa.Engine) -> None:
    _template(engine)
    _draft(engine, HELLO)
    signed_in(web, engine, "viewer")
    for path in ("/scenarios/99", "/scenarios/abc", "/scenarios/99.svg", "/scenarios/99/panel"):
        answer = web.get(path)
        assert answer.status_code == 404, path
    assert "There is no scenario 99." in text_of(web.get("/scenarios/99").text)
    page = web.get("/scenarios/1", params={"period": "forever", "version": "7"})
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Unknown period forever: showing the last 30 days." in text
    assert "There is no version 7: showing version 1." in text
    answer = web.get("/scenarios/1.svg", params={"period": "forever"})
    assert answer.status_code == 422 and "Unknown period 'forever'" in answer.text
    escaped = web.get("/scenarios/1", params={"period": "<b>x</b>"}).text
    assert "<b>x</b>" not in escaped and "&lt;b&gt;x&lt;/b&gt;" in escaped


def test_an_older_version_is_drawn_when_asked(web: TestClient, engine: sa.Engine) -> None:
    _template(engine)
    _draft(engine, HELLO)
    with writing(engine) as conn:
        from rapport.scenarios.store import update_scenario

        update_scenario(conn, 1, HELLO + "  - {id: bye, exit: true}\n", T0)
    signed_in(web, engine, "viewer")
    now = web.get("/scenarios/1").text
    old = web.get("/scenarios/1", params={"version": "1"}).text
    assert 'data-step="bye"' in now and 'data-step="bye"' not in old
    assert "Version 1 as YAML" in text_of(old) and "bye" not in old.split("<pre")[1]


# -- status changes ----------------------------------------------------------------------------


def test_activate_pause_archive_are_audited_and_refused_to_other_roles(
    web: TestClient, app: Any, engine: sa.Engine, write_key: str
) -> None:
    _template(engine)
    _draft(engine, HELLO)
    for role in ("viewer", "analyst"):
        token = signed_in(web, engine, role)
        assert 'action="/scenarios/1/activate"' not in web.get("/scenarios/1").text
        answer = web.post("/scenarios/1/activate", data={"csrf_token": token})
        assert answer.status_code == 403, role
        assert "Not allowed" in text_of(answer.text)
    assert _status(engine) == "draft" and audit_rows(engine, "scenario.activate") == []
    token = signed_in(web, engine, "marketer")
    # Without the session's token nothing changes.
    assert web.post("/scenarios/1/activate", data={}).status_code == 403
    assert _status(engine) == "draft"
    # Pausing a draft is refused, with the reason, and nothing is recorded.
    refused = web.post("/scenarios/1/pause", data={"csrf_token": token})
    assert refused.status_code == 422
    assert "there is nothing to pause" in text_of(refused.text)
    assert _status(engine) == "draft" and audit_rows(engine, "scenario.pause") == []
    answer = web.post(
        "/scenarios/1/activate",
        data={"csrf_token": token, "next": "/scenarios"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/scenarios?done=active"
    assert _status(engine) == "active"
    (entry,) = audit_rows(engine, "scenario.activate")
    assert (entry.object_type, entry.object_id, entry.actor_name) == (
        "scenario",
        "1",
        "marketer@example.com",
    )
    assert entry.details == {"name": "hello", "from": "draft", "to": "active", "version": 1}
    # The engine of this process reacts at once: a sign-up now starts a run.
    r = web.post(
        "/v1/track",
        json={"userId": "u1", "event": "Signed Up", "properties": {}},
        headers=basic(write_key),
    )
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(scenario_runs)).scalar() == 1
    answer = web.post("/scenarios/1/pause", data={"csrf_token": token}, follow_redirects=False)
    assert answer.headers["location"] == "/scenarios/1?done=paused"
    assert _status(engine) == "paused"
    page = web.get("/scenarios/1?done=paused")
    assert "The scenario is paused" in text_of(page.text)
    assert re.findall(r'action="/scenarios/1/(\w+)"', page.text) == ["activate", "archive"]
    # Pausing again changes nothing and records nothing more.
    web.post("/scenarios/1/pause", data={"csrf_token": token})
    assert len(audit_rows(engine, "scenario.pause")) == 1
    web.post("/scenarios/1/archive", data={"csrf_token": token, "next": "https://evil.example"})
    assert _status(engine) == "archived" and len(audit_rows(engine, "scenario.archive")) == 1
    assert web.post("/scenarios/99/activate", data={"csrf_token": token}).status_code == 404
    assert web.post("/scenarios/1/explode", data={"csrf_token": token}).status_code == 404


# -- dry runs ----------------------------------------------------------------------------------


def test_a_dry_run_from_the_page_reports_what_the_command_line_does(
    web: TestClient, engine: sa.Engine, tmp_path: Path
) -> None:
    cart_history(engine)  # a fortnight of carts and orders, ten days before T0
    with writing(engine) as conn:
        create_scenario(conn, CART, T0, "draft")
    token = signed_in(web, engine, "analyst")
    before = table_counts(engine)
    answer = web.post(
        "/scenarios/1/dry-run",
        data={"csrf_token": token, "period": "last_30_days", "limit": ""},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200, answer.text
    assert "<html" not in answer.text
    shown = dict(re.findall(r'data-figure="(\w+)">([^<]*)<', answer.text))
    assert table_counts(engine) == before  # nothing kept
    period = parse_period(None, None, "last_30_days", T0.date())
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli,
        [
            "scenarios",
            "dry-run",
            "abandoned-cart",
            "--from",
            f"{period.first}",
            "--to",
            f"{T0:%Y-%m-%dT%H:%M}",
            "--json",
            str(out),
            "--database-url",
            engine.url.render_as_string(hide_password=False),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())["summary"]
    # dan unsubscribed: both his reminders are refused; the others' go out.
    assert summary["messages"]["skipped"] == 2 and summary["messages"]["sent"] > 2
    assert shown == {
        "runs": str(summary["runs"]),
        "customers": str(summary["customers"]),
        "sent": str(summary["messages"]["sent"]),
        "deferred": str(summary["messages"]["deferred"]),
        "skipped": str(summary["messages"]["skipped"]),
        "converted": str(summary["converted"]),
        "exited": str(summary["statuses"].get("exited", 0)),
        "control": str(summary["statuses"].get("control", 0)),
        "in_flight": str(summary["in_flight"]),
    }
    text = text_of(answer.text)
    assert "unsubscribed from email" in text  # refused by the policy, and why
    assert "ann@example.com" in text and "would send email" in text
    assert "Nothing was sent or stored" in text
    # Without htmx the whole page comes back with the report in it.
    page = web.post(
        "/scenarios/1/dry-run", data={"csrf_token": token, "period": "last_30_days", "limit": "2"}
    )
    assert page.status_code == 200 and "<html" in page.text
    assert re.search(r'data-figure="customers">2<', page.text)
    assert table_counts(engine) == before


def test_a_dry_run_refuses_bad_input_and_roles_without_personal_data(
    web: TestClient, engine: sa.Engine
) -> None:
    _template(engine)
    _draft(engine, HELLO)
    _draft(engine, "name: bday\ntrigger: {date: birthday}\nsteps: [{id: hi, send: {template: hi}}]")
    token = signed_in(web, engine, "viewer")
    answer = web.post("/scenarios/1/dry-run", data={"csrf_token": token, "period": "last_7_days"})
    assert answer.status_code == 403
    token = signed_in(web, engine, "marketer")
    before = table_counts(engine)
    htmx = {"HX-Request": "true"}
    bad = web.post(
        "/scenarios/1/dry-run",
        data={"csrf_token": token, "period": "forever", "limit": "many"},
        headers=htmx,
    )
    assert bad.status_code == 422
    problems = re.findall(r'<span class="field-problem" role="alert">([^<]+)<', bad.text)
    assert problems == [
        "Choose one of the periods offered.",
        "A whole number from 1 to 100,000, or empty for everyone.",
    ]
    assert 'value="many"' in bad.text  # the form comes back as it was sent
    zero = web.post(
        "/scenarios/1/dry-run",
        data={"csrf_token": token, "period": "all", "limit": "0"},
        headers=htmx,
    )
    assert zero.status_code == 422
    dated = web.post(
        "/scenarios/2/dry-run", data={"csrf_token": token, "period": "last_7_days"}, headers=htmx
    )
    assert dated.status_code == 422
    assert "date triggers are not replayed" in text_of(dated.text)
    assert web.post("/scenarios/9/dry-run", data={"csrf_token": token}).status_code == 404
    assert table_counts(engine) == before


# -- the library -------------------------------------------------------------------------------


def test_installing_a_playbook_from_the_page(web: TestClient, engine: sa.Engine) -> None:
    token = signed_in(web, engine, "viewer")
    assert (
        web.post("/scenarios/library", data={"csrf_token": token, "key": "cross-sell"}).status_code
        == 403
    )
    token = signed_in(web, engine, "marketer")
    unknown = web.post("/scenarios/library", data={"csrf_token": token, "key": "nope"})
    assert unknown.status_code == 422
    assert "no playbook 'nope'" in html.unescape(text_of(unknown.text))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(scenarios)).scalar() == 0
    answer = web.post(
        "/scenarios/library",
        data={"csrf_token": token, "key": "cross-sell"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/scenarios/1?done=installed"
    assert _status(engine) == "draft"
    (entry,) = audit_rows(engine, "scenario.install")
    assert entry.object_id == "1" and entry.details["playbook"] == "cross-sell"
    assert entry.details["result"] == "created"
    page = web.get("/scenarios/1?done=installed")
    assert "The playbook was installed as a draft." in text_of(page.text)
    assert 'data-step="compatible"' in page.text
    listing = web.get("/scenarios").text
    assert 'value="cross-sell"' not in listing  # installed: no button any more
