"""Recommendation blocks in messages: a scenario's send step with ``products: {strategy,
limit}`` renders the recommender's picks through the template's ``products``."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.errors import InvalidInput
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.recommend.build import build
from rapport.recommend.strategies import STRATEGIES, BuildOptions
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.model import ProductBlock
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.store.tables import customers, outbox
from tests.conftest import T0
from tests.test_recommend_strategies import make_shop

BROWSE = """
name: browse
trigger: {event: Product Viewed}
entry: {mode: every_time}
steps:
  - {id: pause, wait: {hours: 1}}
  - {id: mail, send: {template: picks, products: {strategy: %s, limit: %d}}}
"""


def _ready(engine: sa.Engine, strategy: str, limit: int) -> tuple[dict[str, int], Engine]:
    _, who = make_shop(engine)
    build(engine, T0, BuildOptions(personal_model="knn"))
    with writing(engine) as conn:
        conn.execute(
            customers.update()
            .where(customers.c.id.in_(list(who.values())))
            .values(email=customers.c.id.cast(sa.String) + "@example.com")
        )
        set_consents(
            conn, [ConsentChange(c, "email", "subscribed", "test", T0) for c in who.values()]
        )
        create_template(
            conn,
            name="picks",
            channel="email",
            kind="text",
            variants={
                "en": {
                    "subject": "Picked for you",
                    "body": "{% for p in products %}{{ p.id }}:{{ p.strategy }} {% endfor %}",
                }
            },
            now=T0,
        )
        stored = create_scenario(conn, BROWSE % (strategy, limit), T0)
        set_status(conn, stored.id, "active", T0)
    pipeline = Pipeline(engine, SimulatedClock(T0))
    return who, Engine(ScenarioIndex(ttl=0), StepContext(recorder=pipeline))


def _mail(engine: sa.Engine, eng: Engine, cid: int, product: str) -> str:
    with writing(engine) as conn:
        eng.react(conn, [Observed(cid, "Product Viewed", {"product_id": product})], T0)
    with writing(engine) as conn:
        eng.run_due(conn, T0 + timedelta(hours=2))
    with engine.connect() as conn:
        return str(conn.execute(sa.select(outbox.c.body_text)).scalar_one()).strip()


def test_abandoned_browse_shows_viewed_products(engine):
    who, eng = _ready(engine, "viewed_not_bought", 3)
    # u4 viewed ph2 and ph3 (and ph1, which they bought); the third slot is a fallback.
    body = _mail(engine, eng, who["u4"], "ph2")
    assert body.startswith("ph2:viewed_not_bought ph3:viewed_not_bought ")
    assert body.endswith(":popular")


def test_cross_sell_uses_the_trigger_product(engine):
    who, eng = _ready(engine, "bought_together", 1)
    assert _mail(engine, eng, who["new"], "ph1") == "c1:bought_together"


def test_a_bad_block_names_the_place(engine):
    with writing(engine) as conn, pytest.raises(InvalidInput) as caught:
        create_scenario(conn, BROWSE % ("trending", 3), T0)
    assert any("products.strategy" in p.where for p in caught.value.problems)
    with writing(engine) as conn, pytest.raises(InvalidInput) as caught:
        create_scenario(conn, BROWSE % ("popular", 0), T0)
    assert any("products.limit" in p.where for p in caught.value.problems)


def test_the_step_model_knows_every_strategy():
    assert set(get_args(ProductBlock.model_fields["strategy"].annotation)) == set(STRATEGIES)
