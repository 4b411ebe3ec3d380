"""The bank variant of the demo (``--vertical bank``): it sends exactly what the bank
playbooks read, through the real ingest path, and the bank playbooks send messages."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from rapport.cli import app
from rapport.demo.bank import BIG_PURCHASE_FROM
from rapport.demo.bank_history import BankHistory
from rapport.demo.generator import DemoConfig, generate
from rapport.demo.response import ResponseModel
from rapport.demo.runner import simulate_and_report
from rapport.demo.simulate import SimulationConfig
from rapport.demo.verticals import default_strategy, make_history
from rapport.scenarios.library_files import load_library
from rapport.settings import Settings
from rapport.store.tables import (
    consents,
    customers,
    events,
    identities,
    orders,
    outbox,
    push_subscriptions,
    scenarios,
)

END = datetime(2026, 3, 1, tzinfo=UTC)
TINY = DemoConfig(customers=80, months=1, seed=7, end=END, vertical="bank")
# The history in six-hour groups (the default is one hour): a small bank's hour is a
# handful of messages, and a transaction for each costs more than the messages themselves.
SMALL = DemoConfig(
    customers=250, months=1, days=5, seed=5, end=END, vertical="bank", group_window=6 * 3600.0
)
BANK = [p for p in load_library() if p.pack == "bank"]


def _stream(config: DemoConfig) -> list[bytes]:
    return [
        orjson.dumps([s.at, s.raw, s.duplicate], option=orjson.OPT_SORT_KEYS)
        for s in make_history(config).messages()
    ]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _pack_reads() -> tuple[set[str], set[str]]:
    """Every event name the bank playbooks trigger on, wait for, exit on, aim at or test in
    a branch, and every customer trait their branches read."""
    names: set[str] = set()
    traits: set[str] = set()
    for playbook in BANK:
        for node in _walk(playbook.scenario.definition.model_dump(exclude_none=True)):
            if isinstance(node.get("event"), str):
                names.add(node["event"])
            attribute = node.get("attribute")
            if isinstance(attribute, str) and attribute.startswith("traits."):
                traits.add(attribute.removeprefix("traits."))
    return names, traits


def test_same_seed_same_bank_other_seed_other_bank() -> None:
    first = _stream(TINY)
    assert first == _stream(TINY)
    assert _stream(DemoConfig(customers=80, months=1, seed=8, end=END, vertical="bank")) != first
    # Not the shop: the same seed makes another business.
    shop = DemoConfig(customers=80, months=1, seed=7, end=END)
    assert _stream(shop) != first


def test_the_bank_sends_every_event_and_trait_the_bank_playbooks_read() -> None:
    history = make_history(TINY)
    assert isinstance(history, BankHistory)
    sent = [s.raw for s in history.messages() if not s.duplicate]
    tracked: dict[str, list[dict[str, Any]]] = {}
    for raw in sent:
        if raw["type"] == "track":
            tracked.setdefault(raw["event"], []).append(raw)
    names, traits = _pack_reads()
    assert names and traits
    for name in names:
        assert tracked.get(name), f"no {name} in the bank's history"
    scored = [r for r in sent if r["type"] == "identify" and "score" in r.get("traits", {})]
    for trait in traits:
        assert any(trait in r["traits"] for r in scored), trait
    assert all(300 <= r["traits"]["score"] <= 850 for r in scored)
    # One run per entity: the keys the playbooks name are on their trigger events.
    for playbook in BANK:
        definition = playbook.scenario.definition
        key = definition.entity_key
        if key is not None:
            trigger = definition.trigger["event"]
            assert all(key in r["properties"] for r in tracked[trigger]), playbook.key
    # The cross-sell playbook fires on large purchases: there are some.
    amounts = [r["properties"]["amount"] for r in tracked["Transaction Made"]]
    assert max(amounts) >= BIG_PURCHASE_FROM > min(amounts)
    # Each card purchase is also the order analytics counts, with the same id and amount.
    by_id = {r["properties"]["order_id"]: r for r in tracked["Order Completed"]}
    for tx in tracked["Transaction Made"]:
        order = by_id[tx["properties"]["transaction_id"]]
        assert order["properties"]["total"] == tx["properties"]["amount"]
        assert order["userId"] == tx["userId"]
    assert len(by_id) == len(tracked["Transaction Made"])
    # Telephony knows only the number: no user id, the phone in context.traits.
    calls = tracked["Support Call"]
    assert all("userId" not in c and c["context"]["traits"]["phone"] for c in calls)


def test_what_messages_cause_leaves_the_baseline_as_planned() -> None:
    """A caused purchase or application comes from the second stream (ids with ``r``) and
    changes nothing the baseline customers do afterwards."""
    config = DemoConfig(customers=80, months=1, days=10, seed=7, end=END, vertical="bank")
    plain, nudged = make_history(config), make_history(config)
    assert isinstance(nudged, BankHistory)
    start, end = config.history_end().timestamp(), config.period()[1].timestamp()
    first = [s.raw for s in plain.messages()]
    assert first == [s.raw for s in nudged.messages()]
    cardholders = [c for c in nudged.clients if c.cards and c.registered][:3]
    assert cardholders
    for k, client in enumerate(cardholders):
        nudged.inject_purchase(client, start + 3600.0 * (k + 1), None)
    nudged.inject_purchase(cardholders[0], start + 7200.0, "savings")
    later = [s.raw for s in nudged.until(end)]
    baseline = [raw for raw in later if "r-" not in raw["messageId"]]
    assert baseline == [s.raw for s in plain.until(end)]
    caused = [raw for raw in later if "r-" in raw["messageId"]]
    bought = [r for r in caused if r.get("event") == "Transaction Made"]
    assert len(bought) == len(cardholders)
    assert nudged.response_bank.response_order_ids == [
        r["properties"]["transaction_id"] for r in bought
    ]
    applied = [r for r in caused if r.get("event") == "Application Submitted"]
    assert [r["properties"]["category"] for r in applied] == ["savings"]
    assert applied[0]["userId"] == cardholders[0].user_id


def test_a_small_bank_demo_runs_and_the_bank_playbooks_send(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    history = make_history(SMALL)
    generation = generate(engine, SMALL, history=history)
    assert generation.stored > 0 and generation.duplicates_dropped == generation.duplicates_sent
    report = tmp_path / "report.html"
    # Customers who open, click and act on every e-mail they can: the caused side shows.
    eager = ResponseModel(open_base=1.0, click_base=1.0, buy_base=1.0, unsubscribe_base=0.0)
    outcome = simulate_and_report(
        engine,
        SMALL,
        history,
        default_strategy("bank"),
        tmp_path / "mail",
        report,
        Console(file=io.StringIO()),
        generation=generation,
        # The worker every 4 simulated hours (2 by default): half the steps, waits end later.
        simulation_config=SimulationConfig(step_hours=4, scan_hours=8, response=eager),
        settings=settings,
    )
    caused = outcome.simulation.caused_orders
    assert caused and outcome.planted_revenue > 0
    with engine.connect() as conn:
        installed = dict(conn.execute(sa.select(scenarios.c.name, scenarios.c.status)).all())
        assert installed == {p.name: "active" for p in BANK}  # the bank pack, not the shop's
        s, o = scenarios.c, outbox.c
        sent = dict(
            conn.execute(
                sa.select(s.name, sa.func.count())
                .join(outbox, o.scenario_id == sa.cast(s.id, sa.String))
                .where(o.status == "sent")
                .group_by(s.name)
            ).all()
        )
        assert set(sent) == {p.name for p in BANK}, sent
        channels = set(
            conn.execute(sa.select(o.channel).distinct().where(o.status == "sent")).scalars()
        )
        assert {"email", "push", "sms"} <= channels
        assert outcome.simulation.counts["emails caught"] == sum(
            1 for _ in (tmp_path / "mail" / "cur").iterdir()
        )

        # Support calls landed on the callers' cards by their phone numbers.
        e, i = events.c, identities.c
        known_calls = conn.execute(
            sa.select(sa.func.count())
            .select_from(events.join(identities, i.customer_id == e.customer_id))
            .where(e.name == "Support Call", i.kind == "user_id")
        ).scalar_one()
        assert known_calls > 0
        # Card purchases are the orders; app users' push tokens were registered with consent.
        purchases = conn.execute(
            sa.select(sa.func.count()).where(e.name == "Transaction Made")
        ).scalar_one()
        card_orders = conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one()
        assert purchases == card_orders > 0
        planted = conn.execute(
            sa.select(sa.func.sum(orders.c.total)).where(orders.c.order_id.in_(caused))
        ).scalar_one()
        assert planted == pytest.approx(outcome.planted_revenue)
        tokens = conn.execute(sa.select(push_subscriptions.c.customer_id)).scalars().all()
        assert tokens
        push_ok = set(
            conn.execute(
                sa.select(consents.c.customer_id).where(
                    consents.c.channel == "push", consents.c.status == "subscribed"
                )
            ).scalars()
        )
        assert set(tokens) <= push_ok
        traits = conn.execute(
            sa.select(customers.c.traits).where(customers.c.merged_into.is_(None))
        ).scalars()
        assert any("score" in t for t in traits)

    html = report.read_text(encoding="utf-8")
    assert "a retail bank" in html and "card spend" in html.lower()
    assert "clothing" not in html


def test_a_bad_vertical_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    for command in (["run", "--no-serve"], ["generate"]):
        out = CliRunner().invoke(
            app, ["demo", *command, "--vertical", "casino", "--database-url", url]
        )
        assert out.exit_code == 2, out.output
        assert "--vertical" in out.output and "casino" in out.output
        assert "shop" in out.output and "bank" in out.output
    ab = [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    out = CliRunner().invoke(app, ["demo", "compare", *ab, "--vertical", "casino"])
    assert out.exit_code == 2 and "casino" in out.output
    assert not list(tmp_path.iterdir())  # nothing was created
    with pytest.raises(ValueError, match="vertical: one of shop, bank, not 'casino'"):
        DemoConfig(vertical="casino")


def test_a_bank_strategy_names_bank_playbooks(tmp_path: Path) -> None:
    retail = tmp_path / "retail.yaml"
    retail.write_text("scenarios: [bank-usage, welcome]\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "run", "--vertical", "bank", "--strategy", str(retail), "--database-url", url]
    out = CliRunner().invoke(app, [*args, "--no-serve"])
    assert out.exit_code == 2, out.output
    assert "retail.yaml" in out.output and "scenarios[1]" in out.output
    assert "no bank playbook 'welcome'" in out.output
    assert not (tmp_path / "demo.db").exists()


def test_demo_run_with_the_bank_vertical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    report = tmp_path / "report.html"
    only = tmp_path / "usage.yaml"
    only.write_text("name: usage only\nscenarios: [bank-usage]\n", encoding="utf-8")
    args = ["--customers", "40", "--months", "1", "--days", "2", "--database-url", url]
    args += ["--vertical", "bank", "--strategy", str(only), "--report", str(report)]
    out = CliRunner().invoke(app, ["demo", "run", *args, "--no-serve"])
    assert out.exit_code == 0, out.output
    assert "Demo bank (synthetic data)" in out.output
    assert "Simulated days at the bank" in out.output
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = conn.execute(sa.select(scenarios.c.name)).scalars().all()
    engine.dispose()
    assert names == ["playbook-bank-usage"]
    assert "usage only" in report.read_text(encoding="utf-8")
