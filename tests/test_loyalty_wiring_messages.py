"""The programme in what customers read: templates of campaign sends (the summary read in
bulk for a chunk), template previews, and the Telegram bot's ``/balance``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from babel.dates import format_date

from rapport.clock import SimulatedClock
from rapport.loyalty.points import add_points
from rapport.messaging.templates.preview import preview_template
from rapport.messaging.templates.store import create_template, get_template
from rapport.pipeline import Pipeline
from rapport.store.engine import writing
from rapport.store.tables import customers, loyalty_accounts, outbox
from tests.conftest import T0
from tests.test_campaigns import audience, campaign, people, send, start, subscribe
from tests.test_loyalty_support import order, set_programme
from tests.test_telegram_bot import Bot, bot  # noqa: F401  (the `bot` fixture)

BODY = "{{ customer.first_name }}: {{ loyalty.balance }} points, tier {{ loyalty.tier or 'none' }}"


def _loyalty_template(engine: sa.Engine) -> int:
    with writing(engine) as conn:
        return create_template(
            conn,
            name="points",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Your points", "body": BODY}},
            now=T0,
        ).id


def _statements(engine: sa.Engine, found: list[str]) -> Any:
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        found.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    return lambda: sa.event.remove(engine, "before_cursor_execute", count)


def test_a_campaign_renders_each_recipients_points(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    ids = people(engine, 6)
    subscribe(engine, "email", ids)
    with writing(engine) as conn:
        for n, cid in enumerate(ids[:4]):
            add_points(conn, cid, 10 * (n + 1), f"gift-{cid}", T0)
        conn.execute(
            loyalty_accounts.update()
            .where(loyalty_accounts.c.customer_id == ids[1])
            .values(tier="Gold")
        )
    tpl = _loyalty_template(engine)
    c = campaign(
        engine,
        channel="email",
        segment_id=audience(engine, ids),
        variants=[{"name": "A", "template_id": tpl}],
    )
    start(engine, c.id, clock.now())
    seen: list[str] = []
    stop = _statements(engine, seen)
    try:
        report = send(engine, c.id, clock)
    finally:
        stop()
    assert report.queued == 6
    with engine.connect() as conn:
        bodies = {
            r.customer_id: r.body_text
            for r in conn.execute(sa.select(outbox.c.customer_id, outbox.c.body_text))
        }
        names = {
            int(cid): name
            for cid, name in conn.execute(sa.select(customers.c.id, customers.c.first_name))
        }
    points = {cid: 10 * (n + 1) if n < 4 else 0 for n, cid in enumerate(ids)}
    assert bodies == {
        cid: f"{names[cid]}: {points[cid]} points, tier {'Gold' if cid == ids[1] else 'none'}"
        for cid in ids
    }
    # Read for the chunk at once: one query of the lots for six recipients, not six.
    assert sum("FROM loyalty_lots" in s for s in seen) == 1


def test_a_preview_for_a_customer_shows_their_points(
    engine: sa.Engine, clock: SimulatedClock
) -> None:
    [cid] = people(engine, 1, first_name="Ann")
    with writing(engine) as conn:
        add_points(conn, cid, 75, "gift", T0)
    tpl = _loyalty_template(engine)
    with engine.connect() as conn:
        shown = preview_template(conn, get_template(conn, tpl), cid, T0)
    assert shown.text == "Ann: 75 points, tier none"


def test_balance_in_telegram_is_the_programmes(
    bot: Bot,  # noqa: F811
    engine: sa.Engine,
    clock: SimulatedClock,
) -> None:
    set_programme(engine, T0)  # 5 %, 14 days pending, Silver from 500
    cid = bot.customer("u1")
    bot.start(cid)
    assert bot.say("/balance")["text"] == "Бонусный баланс: 0 баллов.\nЗаказов: 0."
    order(Pipeline(engine, clock), "u1", "o-1", 600)  # Silver; 30 points wait 14 days
    with writing(engine) as conn:
        add_points(conn, cid, 21, "gift", T0 - timedelta(days=350))  # expires in 15 days
    first = format_date(T0.date() + timedelta(days=15), "long", locale="ru")
    assert bot.say("/balance")["text"] == (
        "Бонусный баланс: 21 балл.\nУровень: Silver.\nОжидают начисления: 30 баллов.\n"
        f"Скоро сгорят: 21 балл, первые — {first}.\nЗаказов: 1."
    )
    clock.advance(timedelta(days=14, minutes=1))  # the return period ends: spendable now
    reply = bot.say("/balance", language="en")["text"]
    assert reply.startswith("Points balance: 51 points.\nTier: Silver.\nExpiring soon: 21")
