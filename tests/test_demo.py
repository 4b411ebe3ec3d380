"""The demo shop goes through the real ingest path and leaves a consistent store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from rapport.cli import app
from rapport.demo.generator import DemoConfig, History, generate
from rapport.store.tables import customer_merges, customers, events, identities, orders

SMALL = DemoConfig(customers=60, months=1, seed=7, end=datetime(2026, 3, 1, tzinfo=UTC))


def _stream(config: DemoConfig) -> list[bytes]:
    return [
        orjson.dumps([s.at, s.raw, s.duplicate], option=orjson.OPT_SORT_KEYS)
        for s in History(config).messages()
    ]


def test_same_seed_same_shop_other_seed_other_shop() -> None:
    first = _stream(SMALL)
    assert first == _stream(SMALL)
    other = _stream(DemoConfig(customers=60, months=1, seed=8, end=SMALL.end))
    assert other != first


def test_messages_are_sent_in_time_order_within_the_history() -> None:
    history = History(SMALL)
    moments = [s.at for s in history.messages()]
    assert moments == sorted(moments)
    assert history.start.timestamp() <= moments[0]
    assert moments[-1] <= history.end.timestamp()


def test_generation_fills_a_consistent_store(engine: sa.Engine) -> None:
    result = generate(engine, SMALL)

    with engine.connect() as conn:
        by_name = dict(
            conn.execute(
                sa.select(events.c.name, sa.func.count())
                .where(events.c.type != "system")  # Rapport's own events: stage changes
                .group_by(events.c.name)
            ).all()
        )
        # Every distinct message stored once; SDK resends were dropped as duplicates.
        assert sum(by_name.values()) == result.stored == sum(result.sent.values())
        assert result.duplicates_dropped == result.duplicates_sent
        assert by_name["Order Completed"] == result.sent["Order Completed"] > 20
        for name in ("Product Viewed", "Product List Filtered", "Cart Viewed", "Call Completed"):
            assert by_name.get(name, 0) > 0, name

        # Orders: one per Order Completed; those not cancelled = completed minus cancellations.
        statuses = dict(
            conn.execute(
                sa.select(orders.c.status, sa.func.count()).group_by(orders.c.status)
            ).all()
        )
        assert sum(statuses.values()) == by_name["Order Completed"]
        not_cancelled = sum(n for s, n in statuses.items() if s != "cancelled")
        assert not_cancelled == by_name["Order Completed"] - by_name.get("Order Cancelled", 0)
        offline = conn.execute(
            sa.select(sa.func.count()).where(orders.c.store_id.is_not(None))
        ).scalar_one()
        assert offline > 0

        # Computed fields agree with the orders table, customer by customer.
        o = orders.c
        truth = {
            r.customer_id: (r.n, round(float(r.revenue), 2))
            for r in conn.execute(
                sa.select(
                    o.customer_id,
                    sa.func.count().label("n"),
                    sa.func.sum(o.total - o.refunded).label("revenue"),
                )
                .where(o.status == "completed")
                .group_by(o.customer_id)
            )
        }
        cards = {
            r.id: (r.orders_count, round(float(r.revenue), 2))
            for r in conn.execute(
                sa.select(customers.c.id, customers.c.orders_count, customers.c.revenue).where(
                    customers.c.merged_into.is_(None)
                )
            )
        }
        assert {cid: v for cid, v in cards.items() if v != (0, 0.0)} == truth
        # Orders only ever belong to live (unmerged) profiles.
        assert set(truth) <= set(cards)

        # Anonymous browsing was merged into known profiles.
        reasons = dict(
            conn.execute(
                sa.select(customer_merges.c.reason, sa.func.count()).group_by(
                    customer_merges.c.reason
                )
            ).all()
        )
        assert reasons.get("anonymous id seen with user id", 0) > 0

        # Calls from customers' phones landed on their known profiles; strangers' did not.
        has_user = sa.exists().where(
            identities.c.customer_id == events.c.customer_id, identities.c.kind == "user_id"
        )
        on_known = conn.execute(
            sa.select(sa.func.count()).where(events.c.name == "Call Completed", has_user)
        ).scalar_one()
        assert result.shop.calls_known > 0
        assert on_known == result.shop.calls_known
        assert by_name["Call Completed"] == result.shop.calls_known + result.shop.calls_unknown

        # Every generated customer ended up identified, with the traits they signed up with.
        identified = conn.execute(
            sa.select(sa.func.count()).where(identities.c.kind == "user_id")
        ).scalar_one()
        assert identified == SMALL.customers
        with_email = conn.execute(
            sa.select(sa.func.count()).where(
                customers.c.merged_into.is_(None), customers.c.email.is_not(None)
            )
        ).scalar_one()
        assert with_email >= SMALL.customers


@pytest.mark.parametrize("command", [["demo", "run"], ["demo"]], ids=["run", "bare"])
def test_demo_run_prints_keys_login_summary_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """`rapport demo run` and plain `rapport demo` (what the issue calls the demo) alike."""
    monkeypatch.chdir(tmp_path)  # the demo's mail directory is made in the working directory
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    report = tmp_path / "report.html"
    args = ["--customers", "20", "--months", "1", "--days", "2", "--database-url", url]
    out = CliRunner().invoke(app, [*command, *args, "--report", str(report), "--no-serve"])
    assert out.exit_code == 0, out.output
    assert "Demo shop (synthetic data)" in out.output
    assert "Simulated days (synthetic data)" in out.output
    lines = out.output.splitlines()
    assert any(line.startswith("Write key") and "wk_" in line for line in lines)
    assert any(line.startswith("Secret key") and "sk_" in line for line in lines)
    login = next(line for line in lines if line.startswith("UI login:"))
    email, password = login.split()[2], login.split()[4]
    engine = sa.create_engine(url)
    from rapport.access.users import authenticate
    from rapport.clock import SystemClock

    assert authenticate(engine, email, password, SystemClock().now()) is not None
    engine.dispose()
    assert report.exists() and "comes from a simulation" in report.read_text(encoding="utf-8")


def test_the_generator_makes_the_full_size_shop_by_default() -> None:
    """`rapport demo generate` alone: 20,000 customers, 12 months; the demo runs 1,000."""
    import typer

    def defaults(*path: str) -> dict[str, object]:
        command: Any = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        return {p.name: p.default for p in command.params if p.name in ("customers", "months")}

    assert defaults("demo", "generate") == {"customers": 20_000, "months": 12}
    assert defaults("demo", "run") == {"customers": 1000, "months": 12}


def test_a_bad_strategy_stops_the_demo_before_it_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: [welcome]\nglobal_control: -1\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = CliRunner().invoke(
        app, ["demo", "run", "--strategy", str(bad), "--database-url", url, "--no-serve"]
    )
    assert out.exit_code == 2
    assert "bad.yaml" in out.output and "global_control" in out.output
    assert not (tmp_path / "demo.db").exists()


def test_history_before_simulated_days_is_the_same_shop() -> None:
    """With simulated days, the history ends earlier; for one seed and span it is
    identical, byte for byte, and ends where the simulation starts."""
    config = DemoConfig(customers=40, months=1, days=5, seed=7, end=SMALL.end)
    assert _stream(config) == _stream(config)
    history = History(config)
    moments = [s.at for s in history.messages()]
    assert moments[-1] <= config.history_end().timestamp()
    later = [s.at for s in history.until(config.period()[1].timestamp())]
    assert later and min(later) >= moments[-1] and later == sorted(later)
