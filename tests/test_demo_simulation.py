"""The demo's simulated days end to end: scenarios send real mail into the catcher,
customers answer through the real tracking and unsubscribe functions, orders get
attributed, the report is written, and its figures are the analytics API's answers."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from rich.console import Console

from rapport.clock import SimulatedClock
from rapport.demo.generator import DemoConfig, History, generate
from rapport.demo.runner import simulate_and_report
from rapport.demo.strategy import parse_strategy
from rapport.settings import Settings
from rapport.store.tables import order_attributions, outbox
from tests.conftest import bearer

END = datetime(2026, 3, 1, tzinfo=UTC)
SMALL = DemoConfig(customers=200, months=1, days=7, seed=11, end=END)
# Half the customers held out of all marketing: the two groups are then large enough, even
# in a small shop, for the global-control interval to mean what it says.
STRATEGY = parse_strategy(
    {
        "name": "test",
        "global_control": 50,
        "campaigns": [
            {
                "name": "Week one",
                "day": 2,
                "variants": [{"name": "A"}, {"name": "B", "discount": 0.15}],
            }
        ],
    },
    "test strategy",
)


def _report_data(path: Path) -> dict:
    html = path.read_text(encoding="utf-8")
    start = html.index('<script type="application/json" id="report-data">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body.replace("<\\/", "</"))


def test_a_small_demo_runs_end_to_end_and_its_report_is_the_apis(
    engine: sa.Engine,
    settings: Settings,
    client: TestClient,
    clock: SimulatedClock,
    secret_key: str,
    tmp_path: Path,
) -> None:
    history = History(SMALL)
    generation = generate(engine, SMALL, history=history)
    report = tmp_path / "demo-report.html"
    maildir = tmp_path / "mail"
    outcome = simulate_and_report(
        engine,
        SMALL,
        history,
        STRATEGY,
        maildir,
        report,
        Console(file=io.StringIO()),
        generation=generation,
        settings=settings,
    )
    sim = outcome.simulation

    # Real SMTP: every e-mail the dispatcher sent is a file in the catcher's Maildir.
    caught = list((maildir / "cur").iterdir())
    assert len(caught) == sim.counts["emails caught"] > 0
    with engine.connect() as conn:
        sent_by_scenarios = conn.execute(
            sa.select(sa.func.count()).where(
                outbox.c.status == "sent",
                outbox.c.channel == "email",
                outbox.c.scenario_id.is_not(None),
            )
        ).scalar_one()
        attributed = conn.execute(
            sa.select(sa.func.count()).select_from(order_attributions)
        ).scalar_one()
    assert sent_by_scenarios > 0
    assert sim.counts["opens"] > 0 and sim.counts["clicks"] > 0
    assert attributed > 0
    # What the response model planted is there, and only as orders messages caused.
    assert outcome.planted_revenue > 0 and sim.caused_orders

    # The report states it is a simulation, and each of its figures is the API's answer.
    html = report.read_text(encoding="utf-8")
    assert "comes from a simulation" in html and "<svg" in html
    assert "<link" not in html and " src=" not in html  # self-contained: loads nothing
    clock.set(sim.end)
    data = _report_data(report)
    assert {
        "business",
        "funnel",
        "ltv",
        "cohorts",
        "attribution",
        "messages",
        "global_control",
    } <= set(data)
    assert any(k.startswith("scenario:") for k in data) and any(
        k.startswith("campaign:") for k in data
    )
    for name, section in data.items():
        answer = client.get(section["path"], params=section["params"], headers=bearer(secret_key))
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json() == section["answer"], name

    # Rapport's own measurement of CRM's incremental revenue against the global control
    # group agrees with what the simulation planted: the planted value is inside its CI.
    incremental = data["global_control"]["answer"]["incremental"]
    low, high = incremental["ci"]
    assert low <= outcome.planted_revenue <= high


def test_the_baseline_goes_on_the_same_whatever_messages_cause() -> None:
    """Purchases a message causes are acted out by a shop of their own, so what the
    baseline customers send is the same message for message with or without them."""
    plain, nudged = History(SMALL), History(SMALL)
    end = SMALL.period()[1].timestamp()
    person = next(p for p in nudged.people if p.known_before)
    nudged.inject_purchase(person, SMALL.history_end().timestamp() + 3600, "sneakers")
    baseline = [(s.at, s.raw) for s in plain.until(end)]
    with_caused = [(s.at, s.raw) for s in nudged.until(end)]
    caused = [m for m in with_caused if "demo11r-" in m[1]["messageId"]]
    assert [m for m in with_caused if m not in caused] == baseline
    assert any(m[1].get("event") == "Order Completed" for m in caused)
    assert all(m[1].get("userId") == person.user_id for m in caused)
