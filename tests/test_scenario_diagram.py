"""The journey map as SVG: every playbook of the library draws as valid SVG with each step
once, edges between boxes that exist, no two boxes overlapping; escaping; the words in
another language; the figures of a real run on the boxes (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.clock import SimulatedClock
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.engagement import message_event
from rapport.messaging.outbox import OPENED
from rapport.messaging.templates.store import create_template
from rapport.pipeline import Pipeline
from rapport.scenarios.diagram import END, TRIGGER, WORDS, Formats, journey_map, trigger_words
from rapport.scenarios.diagram_layout import Box, layout
from rapport.scenarios.library_files import load_library
from rapport.scenarios.model import parse_scenario
from rapport.scenarios.stats import scenario_stats
from rapport.scenarios.store import create_scenario
from rapport.store.engine import writing
from rapport.worker import ScenarioLoop, dispatcher_for
from tests.conftest import T0
from tests.shop_helpers import identify

SVG = "{http://www.w3.org/2000/svg}"
PLAYBOOKS = load_library()


def _parts(svg: str) -> tuple[dict[str, tuple[float, ...]], list[dict[str, str]], ET.Element]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    boxes: dict[str, tuple[float, ...]] = {}
    for g in root.iter(f"{SVG}g"):
        if "jm-node" in g.get("class", "").split():
            key = g.get("data-step")
            assert key is not None and key not in boxes, f"box {key} drawn twice"
            rect = next(r for r in g.iter(f"{SVG}rect") if r.get("class") == "jm-box")
            boxes[key] = tuple(float(rect.get(a, "0")) for a in ("x", "y", "width", "height"))
    edges = [
        {k: g.get(k, "") for k in ("data-from", "data-to", "data-label")}
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "jm-edge"
    ]
    return boxes, edges, root


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.key for p in PLAYBOOKS])
def test_every_playbook_draws_readably(playbook: Any) -> None:
    scenario = playbook.scenario
    svg = journey_map(scenario)
    boxes, edges, root = _parts(svg)
    steps = {k for k in boxes if not k.startswith("@")}
    assert steps == set(scenario.order)  # every step once (duplicates fail in _parts)
    assert TRIGGER in boxes
    for edge in edges:
        assert edge["data-from"] in boxes and edge["data-to"] in boxes, edge
    # One drawn edge per way out of each step, plus the trigger's.
    ways = sum(len(scenario.edges(s)) for s in scenario.order)
    ways += sum(1 for s in scenario.steps.values() if s.split is not None and s.split.control)
    assert len(edges) == ways + 1
    for (ka, a), (kb, b) in itertools.combinations(boxes.items(), 2):
        assert not _overlap(a, b), (ka, kb)
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    for key, (x, y, w, h) in boxes.items():
        assert x >= 0 and x + w <= width and y >= 0 and y + h <= height, key
    # Steps come below everything that leads to them (except edges that loop back).
    first = boxes[scenario.first]
    assert boxes[TRIGGER][1] + boxes[TRIGGER][3] < first[1]
    assert "<style" not in svg and "<script" not in svg and "style=" not in svg


def test_branches_sit_side_by_side_and_edges_say_which_way() -> None:
    scenario = parse_scenario(
        """
name: side by side
trigger: {event: Signed Up}
steps:
  - {id: check, branch: {if: {attribute: city, op: eq, value: Kazan}, then: near, else: far}}
  - {id: near, wait: {event: Order Completed, timeout: {days: 3}, on_event: thanks, on_timeout: nudge}}
  - {id: far, split: {control: 20, paths: [{name: A, weight: 1, next: nudge}, {name: B, weight: 3, next: bye}]}}
  - {id: nudge, send: {template: nudge}}
  - {id: thanks, send: {template: thanks}, next: bye}
  - {id: bye, exit: true}
"""
    )
    boxes, edges, _ = _parts(journey_map(scenario))
    assert boxes["near"][1] == boxes["far"][1]  # one layer, side by side
    assert boxes["bye"][1] > boxes["thanks"][1] > boxes["near"][1]  # longest path
    labels = {(e["data-from"], e["data-label"]) for e in edges}
    assert {("check", "yes"), ("check", "no")} <= labels
    assert {("near", "Order Completed"), ("near", "after 3 d")} <= labels
    assert {("far", "A 20.0%"), ("far", "B 60.0%"), ("far", "control 20.0%")} <= labels
    ends = [e for e in edges if e["data-to"].startswith(END)]
    assert [e["data-from"] for e in ends] == ["far"]  # the control group's
    # A step without "next" goes on to the one below it in the list.
    assert {"data-from": "nudge", "data-to": "thanks", "data-label": ""} in edges


def test_loops_and_unreachable_steps_are_drawn_too() -> None:
    scenario = parse_scenario(
        """
name: loops
trigger: {event: Viewed}
steps:
  - {id: browsing, wait: {event: Viewed, timeout: {hours: 4}, on_event: browsing, on_timeout: again}}
  - {id: again, wait: {days: 1}}
  - {id: back, branch: {if: {attribute: city, op: eq, value: X}, then: browsing, else: out}}
  - {id: out, exit: true}
  - {id: orphan, send: {template: t}}
"""
    )
    boxes, edges, _ = _parts(journey_map(scenario))
    assert set(scenario.order) <= set(boxes)
    assert {"data-from": "browsing", "data-to": "browsing", "data-label": "Viewed"} in edges
    assert any(e["data-from"] == "back" and e["data-to"] == "browsing" for e in edges)
    for (ka, a), (kb, b) in itertools.combinations(boxes.items(), 2):
        assert not _overlap(a, b), (ka, kb)


def test_text_is_escaped_and_control_characters_dropped() -> None:
    scenario = parse_scenario(
        {
            "name": "<script>alert(1)</script> & \x01co",
            "trigger": {"event": 'Cart "<b>" & co'},
            "steps": [{"id": "a", "send": {"template": "</text><script>x</script>"}}],
        }
    )
    svg = journey_map(scenario, id_prefix='x"><script>')
    ET.fromstring(svg)  # still well-formed XML
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in svg
    assert "\x01" not in svg


RU = {
    "Condition": "Условие",
    "yes": "да",
    "after %(time)s": "через %(time)s",
    "%(n)s h": "%(n)s ч",
    "Event %(event)s": "Событие %(event)s",
    "Entered %(n)s": "Вошли %(n)s",
}


def test_words_come_from_the_translation_and_numbers_from_the_formats() -> None:
    asked: set[str] = set()

    def russian(text: str) -> str:
        asked.add(text)
        return RU.get(text, text)

    playbook = next(p for p in PLAYBOOKS if p.key == "abandoned-browse")
    figures = {"scenario_id": 1, "runs": {"entered": 12345}, "conversion": None, "steps": []}
    spaced = Formats(number=lambda n: f"{n:,}".replace(",", "\u00a0"))
    svg = journey_map(playbook.scenario, figures, translate=russian, formats=spaced)
    for word in ("Условие", "через 4 ч", ">да · 0<", "Событие Product Viewed", "Вошли 12\u00a0345"):
        assert word in svg, word
    assert trigger_words(playbook.scenario, russian) == "Событие Product Viewed"
    for p in PLAYBOOKS:  # every text any playbook asks for is on the catalog's list
        journey_map(p.scenario, figures, translate=russian)
        trigger_words(p.scenario, russian)
    assert asked <= set(WORDS), asked - set(WORDS)


def test_the_layout_keeps_boxes_apart() -> None:
    boxes = [Box(k, 100, 40) for k in "rabcdef"]
    edges = [("r", k) for k in "abcdef"] + [("a", "f"), ("f", "a")]
    placed = layout(boxes, edges, "r")
    rects = [(p.x, p.y, p.width, p.height) for p in placed.boxes.values()]
    for a, b in itertools.combinations(rects, 2):
        assert not _overlap(a, b)
    assert placed.boxes["f"].layer == placed.boxes["a"].layer + 1
    assert [r.back for r in placed.routes][-1] is True


def test_the_figures_of_real_runs_are_on_the_boxes(engine: sa.Engine) -> None:
    clock = SimulatedClock(T0)
    pipeline = Pipeline(engine, clock)
    with writing(engine) as conn:
        create_template(
            conn,
            name="hi",
            channel="email",
            kind="text",
            variants={"en": {"subject": "Hi", "body": "Hello"}},
            now=T0,
        )
        create_scenario(
            conn,
            """
name: hello
trigger: {event: Signed Up}
goal: {event: Order Completed, within_days: 7}
steps:
  - {id: pause, wait: {days: 1}}
  - {id: hello, send: {template: hi}}
""",
            T0,
            status="active",
        )
    for user in ("ann", "bob", "cid"):
        identify(pipeline, user, email=f"{user}@example.com", consents={"email": "subscribed"})
        _track(pipeline, user, "Signed Up")
    clock.advance(timedelta(days=1, minutes=1))
    assert ScenarioLoop(pipeline).run_once() == 3
    dispatcher_for(pipeline, {"email": InMemoryBackend("email")}).run_once()
    with writing(engine) as conn:
        _, opened = message_event(conn, "run:1:step:hello", OPENED)
        pipeline.record_many(conn, opened)
    _track(pipeline, "ann", "Order Completed", order_id="o1", total=10)
    with engine.connect() as conn:
        from rapport.scenarios.store import get_scenario

        found = get_scenario(conn, 1)
        figures = scenario_stats(conn, 1, found.parsed())
    ru_number = Formats(number=lambda n: f"{n:,}".replace(",", " "), percent=lambda x: f"{x:.0%}")
    svg = journey_map(found.parsed(), figures, formats=ru_number, conversions={"hello": 1})
    texts = {
        g.get("data-step"): [t.text for t in g.iter(f"{SVG}text") if t.get("class") == "jm-figure"]
        for g in ET.fromstring(svg).iter(f"{SVG}g")
        if g.get("data-step")
    }
    assert texts[TRIGGER] == ["Entered 3", "In flight 0", "Converted 1 (33%)"]
    assert texts["pause"] == ["Entered 3", "Completed 3"]
    assert texts["hello"] == [
        "Entered 3",
        "Completed 3",
        "Sent 3",
        "Opened 1 (33%)",
        "Clicked 0 (0%)",
        "Orders attributed 1",
    ]


def _track(pipeline: Pipeline, user: str, event: str, **props: Any) -> None:
    from rapport.ingest.messages import parse_message

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
