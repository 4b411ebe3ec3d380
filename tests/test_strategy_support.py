"""A small shop for the strategy-document tests: two segments, an active scenario that
sent, a policy, a global control group, a loyalty programme, orders and messages — all
made through the real pipeline, worker loops and API, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.audit import Actor
from rapport.clock import SimulatedClock
from rapport.ingest.messages import parse_message
from rapport.loyalty import programme
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.engagement import message_event
from rapport.messaging.holdout import save_global_control
from rapport.messaging.outbox import OPENED
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.store import create_scenario, set_status
from rapport.store.engine import writing
from rapport.worker import ScenarioLoop, dispatcher_for
from tests.conftest import bearer
from tests.shop_helpers import identify

SCENARIO = """
name: Привет — welcome
trigger: {event: Signed Up}
goal: {event: Order Completed, within_days: 7}
priority: 70
steps:
  - {id: pause, wait: {days: 1}}
  - {id: hello, send: {template: hi}}
"""
PAUSED = """
name: Win-back
trigger: {event: Unsubscribed From Everything}
steps:
  - {id: bye, send: {template: hi}}
"""
SEGMENTS = {
    "Казань": {"attribute": "city", "op": "eq", "value": "Kazan"},
    "Buyers": {"event": "Order Completed", "times": {"at_least": 1}},
}


@dataclass
class Shop:
    client: TestClient
    engine: sa.Engine
    clock: SimulatedClock
    key: str
    segment_ids: dict[str, int]


def track(pipeline: Pipeline, user: str, event: str, **props: Any) -> None:
    now = pipeline.clock.now()
    message = parse_message(
        {
            "type": "track",
            "userId": user,
            "event": event,
            "properties": props,
            "timestamp": now.isoformat(),
        },
        where="message",
        received_at=now,
        phone_region="RU",
        max_bytes=32 * 1024,
    )
    pipeline.ingest([message])


@pytest.fixture(name="shop")
def shop_fixture(
    client: TestClient, engine: sa.Engine, clock: SimulatedClock, secret_key: str
) -> Shop:
    pipeline: Pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    now = clock.now()
    with writing(engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=now,
        )
        create_scenario(conn, SCENARIO, now, status="active")
        paused = create_scenario(conn, PAUSED, now, status="active")
        create_scenario(conn, PAUSED.replace("Win-back", "A draft"), now)
    with writing(engine) as conn:
        set_status(conn, paused.id, "paused", now)
    for user, city in (("ann", "Kazan"), ("bob", "Kazan"), ("cid", "Moscow")):
        identify(
            pipeline, user, email=f"{user}@example.com", city=city, consents={"email": "subscribed"}
        )
        track(pipeline, user, "Signed Up")
    clock.advance(timedelta(days=1, minutes=1))
    assert ScenarioLoop(pipeline).run_once() == 3
    dispatcher_for(pipeline, {"email": InMemoryBackend("email")}).run_once()
    with writing(engine) as conn:
        _, opened = message_event(conn, "run:1:step:hello", OPENED)
        pipeline.record_many(conn, opened)
    track(pipeline, "ann", "Order Completed", order_id="o1", total=1234.5)
    track(pipeline, "bob", "Order Completed", order_id="o2", total=99)
    later = clock.now()
    with writing(engine) as conn:
        save_policy(
            conn,
            {
                "channels": {
                    "email": {"cap": {"max_messages": 3, "days": 7}},
                    "sms": {
                        "cap": {
                            "max_messages": 2,
                            "days": 7,
                            "reserve": {"slots": 1, "min_priority": 80},
                        }
                    },
                },
                "global_cap": {"max_messages": 5, "days": 7},
                "quiet_hours": {"start": "21:00", "end": "09:00"},
                "default_timezone": "Europe/Moscow",
            },
            later,
        )
        save_global_control(conn, {"percent": 5, "salt": "s1"}, later)
        programme.save(
            conn,
            programme.parse(
                {
                    "enabled": True,
                    "accrual_percent": 5,
                    "expiry_days": 180,
                    "tiers": [
                        {"name": "Silver", "threshold": 10000, "accrual_percent": 7},
                        {"name": "Gold", "threshold": 50000, "discount_percent": 5},
                    ],
                    "bonuses": {"birthday": 500},
                }
            ),
            Actor("cli", None, "test"),
            later,
        )
    ids = {}
    for name, rules in SEGMENTS.items():
        answer = client.post(
            "/api/segments", json={"name": name, "rules": rules}, headers=bearer(secret_key)
        )
        assert answer.status_code == 201, answer.text
        ids[name] = answer.json()["id"]
    return Shop(client, engine, clock, secret_key, ids)
