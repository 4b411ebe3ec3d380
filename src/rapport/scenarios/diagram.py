"""The journey map: a scenario drawn as standalone SVG, with each step's figures on it.

Marketers read a scenario as a picture (the trigger at the top, a box per step, the
paths of a branch or a split side by side, "after 3 d" on a timeout), so the UI shows it
that way, and the CRM-strategy document embeds the same drawing. It is drawn here, on
the server, from the definition and the figures ``stats.scenario_stats`` counted, so
every place shows the same picture and nothing is computed in a browser.

The SVG uses presentation attributes only, so it can be inlined in a page under a strict
Content-Security-Policy (``diagram_svg`` draws; ``diagram_layout`` places the boxes).

Words come from ``translate`` (the UI passes its gettext): every English source text is
in ``WORDS``, so the UI's catalog can hold them all; numbers and percentages from
``number`` and ``percent`` (the UI passes its language's formats).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rapport.scenarios.diagram_layout import Box, layout
from rapport.scenarios.diagram_svg import (
    TITLE_CHARS,
    Edge,
    Node,
    clean,
    draw,
    text_width,
    wrap,
)
from rapport.scenarios.diagram_words import (
    WORDS,
    Formats,
    describe_step,
    duration_words,
    trigger_words,
)
from rapport.scenarios.model import Scenario
from rapport.scenarios.stats import graph

__all__ = ["WORDS", "Formats", "journey_map", "trigger_words"]

SHORT_LABEL = 16  # an edge's label longer than this puts its figures on a second line
TRIGGER = "@trigger"  # never a step id (those start with a letter or digit)
END = "@end"
KIND_WORDS = {
    "trigger": "Trigger",
    "send": "Send",
    "wait": "Wait",
    "branch": "Condition",
    "split": "Split",
    "action": "Action",
    "exit": "Exit",
}


def journey_map(
    scenario: Scenario,
    figures: Mapping[str, Any] | None = None,
    *,
    translate: Callable[[str], str] | None = None,
    formats: Formats | None = None,
    id_prefix: str = "jm",
    conversions: Mapping[str, int] | None = None,
) -> str:
    """The scenario as an SVG document (a string that starts with ``<svg``).

    ``figures`` is what :func:`rapport.scenarios.stats.scenario_stats` returns (None: the
    definition alone, as in the playbook library); ``conversions`` optionally gives the
    orders attributed to each send step (analytics), shown on its box. ``id_prefix``
    keeps the ids of several maps on one page apart.
    """
    t = translate or (lambda text: text)
    fmt = formats or Formats()
    nodes, edges = _content(scenario, figures, t, fmt, conversions or {})
    boxes = [
        Box(n.key, n.width, n.height, extra_right=_loop_room(n.key, edges)) for n in nodes.values()
    ]
    placed = layout(boxes, [(e.source, e.target) for e in edges], TRIGGER)
    title = t("Journey map: %(name)s") % {"name": scenario.name}
    return draw(placed, nodes, edges, title, clean(id_prefix) or "jm")


# -- what the boxes say -------------------------------------------------------------------


def _content(
    scenario: Scenario,
    figures: Mapping[str, Any] | None,
    t: Callable[[str], str],
    fmt: Formats,
    conversions: Mapping[str, int],
) -> tuple[dict[str, Node], list[Edge]]:
    empty: dict[str, Any] = {"scenario_id": None, "runs": {}, "conversion": None, "steps": []}
    mapped = graph(dict(figures) if figures is not None else empty, scenario)
    groups = (figures or {}).get("groups") or {}
    nodes: dict[str, Node] = {}
    words = trigger_words(scenario, t)
    runs = mapped["runs"]
    trigger_figures = []
    if figures is not None:
        trigger_figures.append(t("Entered %(n)s") % {"n": fmt.number(runs.get("entered", 0))})
        trigger_figures.append(t("In flight %(n)s") % {"n": fmt.number(runs.get("live", 0))})
        if scenario.definition.goal is not None:
            trigger_figures.append(
                t("Converted %(n)s (%(rate)s)")
                % {
                    "n": fmt.number(runs.get("converted", 0)),
                    "rate": fmt.rate(mapped["conversion"]),
                }
            )
    goal = scenario.definition.goal
    aim = ""
    if goal is not None:
        aim = t("Goal: %(event)s within %(days)s d") % {
            "event": goal.event,
            "days": fmt.number(goal.within_days),
        }
    nodes[TRIGGER] = Node(
        TRIGGER,
        "trigger",
        t(KIND_WORDS["trigger"]),
        wrap(words, 2, TITLE_CHARS),
        wrap(aim, 2) if aim else [],
        trigger_figures,
        f"{words}\n{aim}".strip(),
    )
    edges = [Edge(TRIGGER, scenario.first, "")]
    ends = 0
    for node in mapped["nodes"]:
        sid, kind = node["id"], node["kind"]
        step = scenario.steps[sid]
        about = describe_step(step, t)
        shown = _step_figures(
            kind, node["stats"], figures is not None, t, fmt, conversions.get(sid)
        )
        nodes[sid] = Node(
            sid,
            kind,
            t(KIND_WORDS[kind]),
            wrap(sid, 1, TITLE_CHARS),
            wrap(about, 2),
            shown,
            f"{t(KIND_WORDS[kind])}: {sid}\n{about}\n"
            + json.dumps(node["definition"], ensure_ascii=False),
        )
    for edge in mapped["edges"]:
        target = edge["to"]
        if target is None:
            ends += 1
            target = f"{END}{ends}"
            nodes[target] = Node(target, "end", "", [t("End")], [], [], t("The run ends"))
        label = _edge_label(scenario, edge, groups, figures is not None, t, fmt)
        edges.append(Edge(edge["from"], target, label))
    return nodes, edges


def _step_figures(
    kind: str,
    stats: Mapping[str, Any],
    counted: bool,
    t: Callable[[str], str],
    fmt: Formats,
    converted: int | None,
) -> list[str]:
    if not counted:
        return []
    n = fmt.number
    entered, now = stats.get("entered", 0), stats.get("waiting_now", 0)
    lines = [
        t("Entered %(n)s") % {"n": n(entered)} + (t(" · now %(n)s") % {"n": n(now)} if now else "")
    ]
    exited, failed = stats.get("exited", 0), stats.get("failed", 0)
    if kind != "exit":
        done = max(entered - now - exited - failed, 0)
        lines.append(t("Completed %(n)s") % {"n": n(done)})
    if kind == "send":
        skipped = stats.get("skipped", 0)
        lines.append(
            t("Sent %(n)s") % {"n": n(stats.get("sent", 0))}
            + (t(" · skipped %(n)s") % {"n": n(skipped)} if skipped else "")
        )
        lines.append(
            t("Opened %(n)s (%(rate)s)")
            % {"n": n(stats.get("opened", 0)), "rate": fmt.rate(stats.get("open_rate"))}
        )
        lines.append(
            t("Clicked %(n)s (%(rate)s)")
            % {"n": n(stats.get("clicked", 0)), "rate": fmt.rate(stats.get("click_rate"))}
        )
        if converted is not None:
            lines.append(t("Orders attributed %(n)s") % {"n": n(converted)})
    if exited or failed:
        lines.append(
            t("Exited %(exited)s · failed %(failed)s") % {"exited": n(exited), "failed": n(failed)}
        )
    return lines


def _edge_label(
    scenario: Scenario,
    edge: Mapping[str, Any],
    groups: Mapping[str, Any],
    counted: bool,
    t: Callable[[str], str],
    fmt: Formats,
) -> str:
    step = scenario.steps[edge["from"]]
    label = edge["label"]
    extra: list[str] = []
    if label == "next":
        return ""
    if step.branch is not None:
        text = t("yes") if label == "then" else t("no")
    elif step.wait is not None and step.wait.event is not None:
        if label == "event":
            text = step.wait.event
        else:
            timeout = step.wait.timeout
            text = t("after %(time)s") % {"time": duration_words(timeout, t) if timeout else "?"}
    elif step.split is not None:
        split = step.split
        total = sum(p.weight for p in split.paths)
        share = (100 - split.control) / 100
        if label == "control":
            text, part = t("control"), split.control / 100
        else:
            weight = next(p.weight for p in split.paths if p.name == label)
            text, part = label, share * weight / total
        text += f" {fmt.percent(part)}"
        group = (groups.get(edge["from"]) or {}).get(label) or {}
        if counted and group.get("conversion") is not None:
            extra.append(t("conv. %(rate)s") % {"rate": fmt.percent(group["conversion"])})
    else:
        text = label
    if counted and edge.get("count") is not None:
        extra.append(fmt.number(edge["count"]))
    one_line = " · ".join([text, *extra])
    # Figures go on a second line when the whole would not fit beside its neighbours.
    return one_line if len(one_line) <= SHORT_LABEL else text + "\n" + " · ".join(extra)


def _loop_room(key: str, edges: list[Edge]) -> float:
    loops = [e for e in edges if e.source == key and e.target == key]
    if not loops:
        return 0.0
    return 30.0 + max(text_width(e.label, 11) for e in loops)
