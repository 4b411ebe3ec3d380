"""The README's screenshots, made again from a fresh demo shop.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

It builds what ``rapport demo run`` builds, only smaller (400 customers, 2 months of
history and 30 simulated days, with the playbook library, the demo's A/B campaign and a
loyalty programme), in a temporary SQLite store; serves the UI on a free loopback port;
logs in with Playwright driving chromium (``/usr/bin/chromium`` or ``$RAPPORT_CHROMIUM``,
as the browser tests do) and saves one 1280×800 PNG of the visible part of each main page.
Every figure in them is the demo's, so every figure is made up (docs/demo.md). The same
seed gives the same shop; the dates follow the day it is run on.

Options: ``--out DIR`` (default docs/screenshots), ``--customers``, ``--months``,
``--days``, ``--seed``, ``--keep DIR`` (keep the store and the caught mail there; run
again with the same ``--keep DIR`` to take the pictures again without building the shop).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from rich.console import Console

from rapport.access.audit import Actor
from rapport.api.app import create_app
from rapport.demo.generator import DemoConfig, History
from rapport.demo.runner import (
    create_demo_admin,
    fresh_maildir,
    generate_with_progress,
    prepare,
    simulate_and_report,
)
from rapport.demo.strategy import DEFAULT
from rapport.loyalty.programme import Programme, save
from rapport.segments.definitions import create_segment
from rapport.segments.membership import SegmentIndex
from rapport.segments.sweep import sweep
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import (
    campaigns,
    customers,
    scenario_runs,
    scenarios,
    segments,
    templates,
)

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 800
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

# The loyalty programme of docs/loyalty.md, in the demo shop's prices.
PROGRAMME = {
    "enabled": True,
    "accrual_percent": 5,
    "pending_days": 14,
    "expiry_days": 365,
    "tiers": [
        {"name": "Silver", "threshold": 15000, "accrual_percent": 7, "discount_percent": 3},
        {"name": "Gold", "threshold": 40000, "accrual_percent": 10, "discount_percent": 5},
    ],
    "bonuses": {"registration": 50, "birthday": 100},
}
# A segment to show in the builder: two conditions and their live count.
LOYAL = {
    "all": [
        {"computed": "orders_count", "op": "ge", "value": 2},
        {"computed": "days_since_last_order", "op": "le", "value": 45},
    ]
}


def chromium() -> str:
    for path in (os.environ.get("RAPPORT_CHROMIUM"), *CHROMIUM, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("no chromium found: install it (apt-get install chromium) or set RAPPORT_CHROMIUM")


def build_shop(work: Path, config: DemoConfig, console: Console) -> None:
    """The demo shop in ``work``: the store, the caught mail and the demo's report."""
    engine = prepare(store_url(work))
    start, end = config.period()
    with writing(engine) as conn:  # before the history, so that its orders earn points
        programme = Programme.model_validate(PROGRAMME | {"starts_at": start.isoformat()})
        save(conn, programme, Actor.cli(), start)
    history = History(config)
    generation = generate_with_progress(engine, config, console, history)
    maildir = fresh_maildir(work / "mail")
    simulate_and_report(
        engine,
        config,
        history,
        DEFAULT,
        maildir,
        work / "report.html",
        console,
        generation=generation,
    )
    with writing(engine) as conn:
        loyal = create_segment(conn, "Loyal and recent", "two orders or more", LOYAL, end)
        sweep(conn, SegmentIndex().current(conn), end, [loyal.id], backfill=True)
    engine.dispose()


def store_url(work: Path) -> str:
    return f"sqlite:///{work / 'shop.db'}"


def admin_login(url: str) -> tuple[str, str]:
    """The demo's admin, with a fresh password for this run."""
    engine = sa.create_engine(url)
    try:
        return create_demo_admin(engine, datetime.now(UTC))
    finally:
        engine.dispose()


@contextmanager
def serving(url: str) -> Iterator[str]:
    """The UI on a free loopback port, on the real clock (the shop ends today), with no
    background work while the pictures are taken."""
    settings = Settings(database_url=url, sweep_seconds=0, dispatch=False, scenario_seconds=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def subjects(url: str) -> dict[str, int]:
    """The ids the pages are about: the busiest customer and scenario, the A/B campaign,
    a template in two languages and the segment made for the builder."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        customer = conn.execute(
            sa.select(customers.c.id)
            .where(customers.c.merged_into.is_(None), customers.c.first_name.is_not(None))
            .order_by(customers.c.orders_count.desc(), customers.c.events_count.desc())
            .limit(1)
        ).scalar_one()
        scenario = conn.execute(
            sa.select(scenarios.c.id)
            .join(scenario_runs, scenario_runs.c.scenario_id == scenarios.c.id)
            .group_by(scenarios.c.id)
            .order_by(sa.func.count().desc())
            .limit(1)
        ).scalar_one()
        campaign = conn.execute(sa.select(campaigns.c.id).limit(1)).scalar_one()
        # The abandoned-cart playbook's first e-mail: written in Russian and English.
        template = conn.execute(
            sa.select(templates.c.id).where(templates.c.name == "playbook-cart-1")
        ).scalar_one()
        segment = conn.execute(
            sa.select(segments.c.id).where(segments.c.name == "Loyal and recent")
        ).scalar_one()
    engine.dispose()
    return {
        "customer": customer,
        "scenario": scenario,
        "campaign": campaign,
        "template": template,
        "segment": segment,
    }


def pages(ids: dict[str, int]) -> list[tuple[str, str, Callable[[Any], None]]]:
    """(file name, path, what to wait for or scroll to before the picture)."""

    def chart(page: Any) -> None:
        page.wait_for_function(
            "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart]'))"
        )
        page.wait_for_timeout(800)  # the charts' entry animation

    def at(selector: str, offset: int = 16) -> Callable[[Any], None]:
        def scroll(page: Any) -> None:
            page.wait_for_selector(selector)
            page.evaluate(
                "([s, o]) => window.scrollTo(0, document.querySelector(s)"
                ".getBoundingClientRect().top + window.scrollY - o)",
                [selector, offset],
            )
            page.wait_for_timeout(300)

        return scroll

    def settle(page: Any) -> None:
        page.wait_for_timeout(300)

    return [
        ("dashboard", "/", chart),
        ("customer-card", f"/customers/{ids['customer']}", settle),
        ("segment-builder", f"/segments/{ids['segment']}", at("#seg-builder")),
        ("scenario-journey-map", f"/scenarios/{ids['scenario']}", at("#map-title", 40)),
        ("campaign-results", f"/campaigns/{ids['campaign']}", at("#results-title", 40)),
        ("template-editor", f"/templates/{ids['template']}", at("#preview-title", 40)),
        ("loyalty", "/loyalty", settle),
        ("reports", "/reports", settle),
    ]


def shoot(base_url: str, email: str, password: str, ids: dict[str, int], out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT}, base_url=base_url, locale="en-US"
        )
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        for name, path, ready in pages(ids):
            answer = page.goto(path)
            if answer is None or answer.status != 200:
                raise RuntimeError(f"{path} answered {answer.status if answer else 'nothing'}")
            page.wait_for_load_state("networkidle")
            ready(page)
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=False)
            print(
                f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
                f"  {target.stat().st_size // 1024} KB"
            )
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--keep", type=Path, help="keep the shop here (reused when it is already there)"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    config = DemoConfig(
        customers=args.customers, months=args.months, days=args.days, seed=args.seed
    )
    with tempfile.TemporaryDirectory(prefix="rapport-screenshots-") as temp:
        work = args.keep or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        began = datetime.now()
        if not (work / "shop.db").exists():
            build_shop(work, config, console)
        url = store_url(work)
        email, password = admin_login(url)
        ids = subjects(url)
        with serving(url) as base_url:
            shoot(base_url, email, password, ids, args.out)
        console.print(f"Done in {(datetime.now() - began).seconds} s.", highlight=False)


if __name__ == "__main__":
    main()
