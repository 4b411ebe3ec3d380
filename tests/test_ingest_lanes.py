"""Ingest lanes: the server splits queued requests by customer, appliers side by side
each take their lanes, and the store ends as one applier would have left it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import typer
from bench.cpu import children as bench_children
from fastapi.testclient import TestClient

from rapport.api.app import create_app
from rapport.cli.appliers import parse_applier
from rapport.clock import SimulatedClock
from rapport.inbox_applier import Applied, apply_all, decoder
from rapport.ingest import inbox
from rapport.ingest.incoming import Incoming
from rapport.ingest.lanes import MAX_LANES, lane_of, share, split
from rapport.ingest.requests import messages_of
from rapport.pipeline import Pipeline
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import customers, events, identities, ingest_inbox, order_days
from tests.conftest import T0, _clean, basic


def _messages(*raw: dict[str, Any]) -> list[Incoming]:
    body = {"batch": [{"messageId": f"m{i}", **m} for i, m in enumerate(raw)]}
    return messages_of("batch", body, received_at=T0, phone_region="RU", max_message_bytes=32768)


def _ids(lane: list[Incoming]) -> list[str]:
    return [m.message_id for m in lane]


def test_a_customers_messages_share_a_lane_in_order() -> None:
    batch = _messages(
        *(
            {"type": "track", "userId": f"u{i % 5}", "anonymousId": f"a{i}", "event": "E"}
            for i in range(40)
        ),
        {"type": "page", "anonymousId": "visitor", "name": "Home"},
        {"type": "alias", "userId": "u1", "previousId": "visitor"},
    )
    lanes = split(batch, 4)
    assert sorted(m for _, part in lanes for m in _ids(part)) == sorted(_ids(batch))
    for number, part in lanes:
        assert 0 <= number < 4 and part
        assert _ids(part) == [m.message_id for m in batch if m in part]  # the batch's order
    lane_by_user: dict[str | None, set[int]] = {}
    for number, part in lanes:
        for m in part:
            lane_by_user.setdefault(m.user_id, set()).add(number)
    assert all(len(v) == 1 for v in lane_by_user.values())  # userId decides, not anonymousId
    assert lane_of(batch[-2], 4) == lane_of(
        _messages({"type": "track", "anonymousId": "visitor", "event": "E"})[0], 4
    )
    assert len({n for n, _ in lanes}) > 1  # five users do spread
    assert split(batch, 1) == [(0, batch)]
    assert split([], 3) == []


def test_appliers_shares_cover_every_lane_once() -> None:
    for appliers in (1, 2, 3, 16):
        taken = sorted(lane for k in range(appliers) for lane in share(k, appliers))
        assert taken == list(range(MAX_LANES))
    with pytest.raises(ValueError, match="applier 2 of 2"):
        share(2, 2)
    assert parse_applier("1/2") == (1, 2)
    for bad in ("2", "a/b", "2/2", "0/17", "-1/2"):
        with pytest.raises(typer.BadParameter, match="NUMBER"):
            parse_applier(bad)


def test_the_server_splits_queued_requests_by_lane(
    engine: sa.Engine, settings: Settings, clock: SimulatedClock, write_key: str
) -> None:
    lanes = settings.model_copy(
        update={"ingest_queue": True, "ingest_apply": False, "ingest_lanes": 3}
    )
    body = {
        "batch": [
            {"type": "track", "userId": f"u{i % 7}", "event": "E", "messageId": f"s{i}"}
            for i in range(30)
        ]
    }
    with TestClient(create_app(lanes, engine=engine, clock=clock)) as client:
        r = client.post("/v1/batch", json=body, headers=basic(write_key))
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(ingest_inbox.c.lane, ingest_inbox.c.messages, ingest_inbox.c.body)
        ).all()
    assert sum(r.messages for r in rows) == 30
    assert len({r.lane for r in rows}) == len(rows) > 1  # a row per lane used
    for row in rows:
        stored = inbox.decode(orjson.loads(row.body))
        assert {lane_of(m, 3) for m in stored} == {row.lane}
        assert len(stored) == row.messages


def _shop(people: int) -> list[dict[str, Any]]:
    """Requests of a small shop: visits, sign-ups, orders, and pairs of visitors that turn
    out to be one person (the same email), so merges happen inside a lane."""
    day = T0 - timedelta(days=3)
    requests = []
    for p in range(people):
        at = (day + timedelta(minutes=p)).isoformat()
        anon, user = f"anon-{p}", f"user-{p // 2}"  # two visitors per user id
        requests.append(
            {
                "batch": [
                    {"type": "page", "anonymousId": anon, "name": "Home", "timestamp": at},
                    {
                        "type": "track",
                        "anonymousId": anon,
                        "event": "Product Viewed",
                        "properties": {"product_id": f"sku-{p % 7}", "price": 10 + p % 7},
                        "timestamp": at,
                    },
                    {
                        "type": "identify",
                        "anonymousId": anon,
                        "userId": user,
                        "traits": {"email": f"person{p // 2}@example.com"},
                        "timestamp": at,
                    },
                    {
                        "type": "track",
                        "userId": user,
                        "event": "Order Completed",
                        "properties": {"order_id": f"o-{p}", "total": 20 + p % 5},
                        "timestamp": at,
                    },
                ]
            }
        )
    for r, request in enumerate(requests):
        for i, m in enumerate(request["batch"]):
            m["messageId"] = f"r{r}-{i}"
    return requests


def _fill(engine: sa.Engine, requests: list[dict[str, Any]]) -> None:
    with writing(engine) as conn:
        inbox.append(
            conn,
            [
                inbox.Entry(
                    "batch",
                    T0,
                    inbox.encode(
                        messages_of(
                            "batch",
                            body,
                            received_at=T0,
                            phone_region="RU",
                            max_message_bytes=32768,
                        )
                    ),
                    len(body["batch"]),
                )
                for body in requests
            ],
        )


def _fill(engine: sa.Engine, requests: list[dict[str, Any]], lanes: int) -> None:
    with writing(engine) as conn:
        inbox.append(
            conn,
            [
                entry
                for body in requests
                for entry in inbox.entries(
                    "batch",
                    T0,
                    messages_of(
                        "batch", body, received_at=T0, phone_region="RU", max_message_bytes=32768
                    ),
                    lanes,
                )
            ],
        )


def _figures(engine: sa.Engine) -> dict[str, Any]:
    """What the store says, keyed by what does not depend on the order rows were made
    (identities' customer ids, and which profile a merge kept, do)."""
    c, i = customers.c, identities.c
    with engine.connect() as conn:
        by_user = {
            user: (orders, float(revenue))
            for user, orders, revenue in conn.execute(
                sa.select(i.value, c.orders_count, c.revenue)
                .join(customers, c.id == i.customer_id)
                .where(i.kind == "user_id")
            )
        }
        d = order_days.c
        rollup = conn.execute(sa.select(sa.func.sum(d.orders), sa.func.sum(d.revenue_micros))).one()
        live = conn.execute(sa.select(sa.func.count()).where(c.merged_into.is_(None))).scalar_one()
        own = conn.execute(sa.select(sa.func.count()).where(events.c.type != "system")).scalar_one()
        linked = conn.execute(
            sa.select(sa.func.count())
            .select_from(identities)
            .join(customers, c.id == i.customer_id)
            .where(c.merged_into.is_(None))
        ).scalar_one()
    return {
        "by_user": by_user,
        "rollup": (int(rollup[0]), int(rollup[1])),
        "live": live,
        "events": own,
        "identities_on_live_cards": linked,
    }


def _stripes(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(order_days.c.stripe).distinct()).scalars())


def _decoder(engine: sa.Engine) -> Any:
    return decoder(Settings(database_url=engine.url.render_as_string(hide_password=False)))


def test_two_appliers_leave_the_store_one_leaves(engine: sa.Engine) -> None:
    """The shop's visitors browse anonymously (their lane), then sign in and order (their
    user's lane), so the two appliers meet on the same cards; the store ends the same."""
    requests = _shop(240)
    _fill(engine, requests, lanes=1)
    one = apply_all(Pipeline(engine), _decoder(engine), 5000)
    expected = _figures(engine)
    assert one.stored == 960 and _stripes(engine) == {0}
    assert expected["live"] == 120 and expected["rollup"][0] == 240

    _clean(engine)
    _fill(engine, requests, lanes=2)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(ingest_inbox.c.lane).distinct()).scalars()) == {0, 1}
    totals: list[Applied] = []
    errors: list[BaseException] = []

    def applier(k: int) -> None:
        pipeline = Pipeline(engine)
        pipeline.lane = k
        try:
            # Small groups, so the two take turns many times while the other is mid-way.
            totals.append(apply_all(pipeline, _decoder(engine), 40, lanes=share(k, 2)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=applier, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert sum(t.stored for t in totals) == 960 and sum(t.duplicates for t in totals) == 0
    assert all(t.stored for t in totals)  # both had work
    assert _figures(engine) == expected
    assert _stripes(engine) == {0, 1}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_inbox)).scalar_one() == 0


def test_a_worker_runs_its_applier_processes_and_stops_them(engine: sa.Engine) -> None:
    """`rapport worker --ingest-only --appliers 2`: applier 0 in the worker, applier 1 in
    a process it starts; both apply their lanes, and an interrupt stops both."""
    root = Path(__file__).resolve().parent.parent
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rapport.cli", "worker", "--ingest-only", "--appliers", "2",
         "--database-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root / "src"), "RAPPORT_INGEST_POLL_SECONDS": "0.05"},
    )  # fmt: skip
    try:
        _fill(engine, _shop(40), lanes=2)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if not conn.execute(
                    sa.select(sa.func.count()).select_from(ingest_inbox)
                ).scalar_one():
                    break
            time.sleep(0.1)
        assert _figures(engine)["events"] == 160
        assert _stripes(engine) == {0, 1}  # each applier bumped its own stripe
        children = bench_children(proc.pid)
        assert len(children) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    assert b"applier 0/2" in out and b"1 more applier process" in out, err.decode()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
