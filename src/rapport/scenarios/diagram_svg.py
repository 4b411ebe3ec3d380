"""Drawing a laid-out journey map as SVG: boxes, edges with their labels, arrowheads.

Presentation attributes only (no ``<style>``, no script), so the drawing can be inlined
in a page under a strict Content-Security-Policy, opened as a file, or put in a
document. Texts go through the XML writer (escaped) after control characters, which XML
cannot hold, are dropped. ``diagram.py`` decides what the boxes say; this module only
draws them where ``diagram_layout`` put them.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from rapport.scenarios.diagram_layout import Layout, Placed, Route, fit_apart

WIDTH = 212.0
END_WIDTH = 64.0
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
COLOURS = {
    "trigger": "#0f766e",
    "send": "#2563eb",
    "wait": "#b45309",
    "branch": "#7c3aed",
    "split": "#be185d",
    "action": "#047857",
    "exit": "#4b5563",
}
_HEADER, _LINE, _PAD = 22.0, 16.0, 8.0
TITLE_CHARS, DETAIL_CHARS = 24, 29  # what fits a box in 13 px bold and 11 px
LABEL_CHARS = 30  # a line of an edge's label
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass
class Node:
    """A box: its kind (a step kind, ``trigger`` or ``end``) and its lines of text."""

    key: str
    kind: str
    heading: str  # the kind, in words
    title: list[str]  # bold lines
    detail: list[str]  # muted lines
    figures: list[str]
    tooltip: str

    @property
    def height(self) -> float:
        if self.kind == "end":
            return 28.0
        lines = len(self.title) + len(self.detail) + len(self.figures)
        return _HEADER + _PAD + lines * _LINE + (4.0 if self.figures else 0.0)

    @property
    def width(self) -> float:
        return END_WIDTH if self.kind == "end" else WIDTH


@dataclass
class Edge:
    """An arrow and its label ("" for none)."""

    source: str
    target: str
    label: str


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def text_width(text: str, size: float) -> float:
    """A generous estimate (no font metrics on the server): wide enough for Cyrillic."""
    return len(text) * size * 0.6


def wrap(text: str, max_lines: int, chars: int = DETAIL_CHARS) -> list[str]:
    """Up to ``max_lines`` lines of about ``chars`` characters; the last ends in … when cut."""
    text = clean(" ".join(text.split()))
    lines: list[str] = []
    rest = text
    while rest and len(lines) < max_lines:
        if len(rest) <= chars:
            lines.append(rest)
            rest = ""
            break
        cut = rest.rfind(" ", 0, chars + 1)
        if cut <= chars // 2:
            cut = chars
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest and lines:
        last = lines[-1]
        lines[-1] = (last[: chars - 1].rstrip() if len(last) >= chars else last) + "…"
    return lines


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    node = ET.SubElement(
        parent, tag, {k.rstrip("_").replace("_", "-"): clean(str(v)) for k, v in attrs.items()}
    )
    if text is not None:
        node.text = clean(text)
    return node


def draw(placed: Layout, nodes: dict[str, Node], edges: list[Edge], title: str, prefix: str) -> str:
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": f"{placed.width:.0f}",
            "height": f"{placed.height:.0f}",
            "viewBox": f"0 0 {placed.width:.0f} {placed.height:.0f}",
            "role": "img",
            "aria-labelledby": f"{prefix}-title",
            "class": "jm-map",
            "font-family": FONT,
        },
    )
    _el(svg, "title", title, id=f"{prefix}-title")
    defs = _el(svg, "defs")
    marker = _el(
        defs,
        "marker",
        id=f"{prefix}-arrow",
        viewBox="0 0 10 10",
        refX="9",
        refY="5",
        markerWidth="7",
        markerHeight="7",
        orient="auto-start-reverse",
    )
    _el(marker, "path", d="M0,0 L10,5 L0,10 z", fill="#6b7280")
    _el(
        svg,
        "rect",
        x=0,
        y=0,
        width=f"{placed.width:.0f}",
        height=f"{placed.height:.0f}",
        fill="#ffffff",
    )
    edge_layer = _el(svg, "g", class_="jm-edges")
    label_layer = _el(svg, "g", class_="jm-labels")
    outgoing: dict[str, list[Route]] = {}
    for route in placed.routes:
        outgoing.setdefault(route.source, []).append(route)
    for source, routes in outgoing.items():
        box = placed.boxes[source]
        ports = _ports(box, [r for r in routes if not r.loop], placed)
        spots: list[tuple[str, float, float]] = []
        for route in routes:
            edge = edges[route.index]
            group = _el(
                edge_layer,
                "g",
                class_="jm-edge",
                data_from=edge.source,
                data_to=edge.target,
                data_label=edge.label.replace("\n", " · "),
            )
            spot = _edge(
                group, label_layer, route, box, placed.boxes[route.target], ports, edge, prefix
            )
            if spot is not None:
                spots.append(spot)
        for text, x, y in _apart(spots, placed.width):
            _label(label_layer, text, x, y)
    node_layer = _el(svg, "g", class_="jm-nodes")
    for key, node in nodes.items():
        _node(node_layer, node, placed.boxes[key])
    return ET.tostring(svg, encoding="unicode")


def _ports(box: Placed, routes: list[Route], placed: Layout) -> dict[int, float]:
    """Where each edge leaves the bottom of its box: spread, in the order of where they go."""

    def heading(r: Route) -> float:
        return r.points[0][0] if r.points else placed.boxes[r.target].centre

    ordered = sorted(routes, key=heading)
    n = len(ordered)
    return {r.index: box.x + box.width * (i + 1) / (n + 1) for i, r in enumerate(ordered)}


def _edge(
    group: ET.Element,
    labels: ET.Element,
    route: Route,
    source: Placed,
    target: Placed,
    ports: dict[int, float],
    edge: Edge,
    prefix: str,
) -> tuple[str, float, float] | None:
    """Draw the edge; where its label goes (drawn later, once the sibling labels of the
    same box are spread apart), or None (no label, or a loop's, drawn here)."""
    arrow = f"url(#{prefix}-arrow)"
    common = {"fill": "none", "stroke": "#9ca3af", "stroke_width": "1.5", "marker_end": arrow}
    if route.loop:
        x, y = source.x + source.width, source.y + source.height * 0.35
        y2 = source.y + source.height * 0.7
        d = f"M{x:.1f},{y2:.1f} C{x + 28:.1f},{y2:.1f} {x + 28:.1f},{y:.1f} {x + 2:.1f},{y:.1f}"
        _el(group, "path", d=d, **common)
        if edge.label:
            _label(labels, edge.label, x + 32, (y + y2) / 2, anchor="start")
        return None
    start = (ports[route.index], source.bottom)
    points = [start, *route.points, (target.centre, target.y - 1)]
    if route.back:
        d = f"M{start[0]:.1f},{start[1]:.1f} " + " ".join(
            f"L{x:.1f},{y:.1f}" for x, y in points[1:]
        )
        _el(group, "path", d=d, stroke_dasharray="5 4", **common)
    else:
        d = f"M{start[0]:.1f},{start[1]:.1f}"
        for (x1, y1), (x2, y2) in itertools.pairwise(points):
            mid = (y1 + y2) / 2
            d += f" C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
        _el(group, "path", d=d, **common)
    if not edge.label:
        return None
    (x1, y1), (x2, y2) = points[0], points[1]
    return edge.label, (x1 + x2) / 2, y1 + min(24.0, (y2 - y1) / 2)


def _label_lines(text: str) -> list[str]:
    """A label's lines (figures may be on a second), each cut to fit."""
    return [wrap(line, 1, LABEL_CHARS)[0] for line in text.split("\n") if line.strip()]


def _label_width(text: str) -> float:
    return max(text_width(line, 11) for line in _label_lines(text)) + 8


def _apart(spots: list[tuple[str, float, float]], width: float) -> list[tuple[str, float, float]]:
    """The labels of one box's edges, moved sideways as little as keeps them apart, and
    inside the drawing."""
    if not spots:
        return []
    spots = sorted(spots, key=lambda s: s[1])
    widths = [_label_width(t) for t, _, _ in spots]
    gaps = [(a + b) / 2 + 6 for a, b in itertools.pairwise(widths)]
    xs = fit_apart([x for _, x, _ in spots], gaps)
    shift = max(0.0, 2 + widths[0] / 2 - xs[0]) or min(0.0, width - 2 - widths[-1] / 2 - xs[-1])
    return [(t, x + shift, y) for (t, _, y), x in zip(spots, xs, strict=True)]


def _label(parent: ET.Element, text: str, x: float, y: float, anchor: str = "middle") -> None:
    lines = _label_lines(text)
    if not lines:
        return
    width = _label_width(text)
    left = x - width / 2 if anchor == "middle" else x - 4
    top = y - 9 - (len(lines) - 1) * 7
    group = _el(parent, "g", class_="jm-edge-label")
    _el(
        group,
        "rect",
        x=f"{left:.1f}",
        y=f"{top:.1f}",
        width=f"{width:.1f}",
        height=2 + 14 * len(lines),
        rx=3,
        fill="#ffffff",
        stroke="#e5e7eb",
    )
    for i, line in enumerate(lines):
        _el(
            group,
            "text",
            line,
            x=f"{x:.1f}",
            y=f"{top + 12 + 14 * i:.1f}",
            font_size=11,
            fill="#374151",
            text_anchor=anchor,
        )


def _node(parent: ET.Element, node: Node, box: Placed) -> None:
    group = _el(
        parent, "g", class_=f"jm-node jm-{node.kind}", data_step=node.key, data_kind=node.kind
    )
    _el(group, "title", node.tooltip)
    x, y, w, h = box.x, box.y, box.width, box.height
    if node.kind == "end":
        _el(
            group,
            "rect",
            class_="jm-box",
            x=f"{x:.1f}",
            y=f"{y:.1f}",
            width=f"{w:.1f}",
            height=f"{h:.1f}",
            rx=14,
            fill="#f3f4f6",
            stroke="#9ca3af",
        )
        _el(
            group,
            "text",
            node.title[0],
            x=f"{x + w / 2:.1f}",
            y=f"{y + 18:.1f}",
            font_size=12,
            fill="#374151",
            text_anchor="middle",
        )
        return
    colour = COLOURS[node.kind]
    _el(
        group,
        "rect",
        class_="jm-box",
        x=f"{x:.1f}",
        y=f"{y:.1f}",
        width=f"{w:.1f}",
        height=f"{h:.1f}",
        rx=8,
        fill="#ffffff",
        stroke=colour,
        stroke_width="1.5",
    )
    _el(
        group,
        "path",
        d=f"M{x:.1f},{y + _HEADER:.1f} V{y + 8:.1f} Q{x:.1f},{y:.1f} {x + 8:.1f},{y:.1f} H{x + w - 8:.1f} Q{x + w:.1f},{y:.1f} {x + w:.1f},{y + 8:.1f} V{y + _HEADER:.1f} Z",
        fill=colour,
    )
    _el(
        group,
        "text",
        node.heading,
        x=f"{x + 10:.1f}",
        y=f"{y + 15:.1f}",
        font_size=11,
        font_weight="bold",
        fill="#ffffff",
        letter_spacing="0.4",
    )
    line = y + _HEADER + 16
    for text in node.title:
        _el(
            group,
            "text",
            text,
            x=f"{x + 10:.1f}",
            y=f"{line:.1f}",
            font_size=13,
            font_weight="bold",
            fill="#111827",
        )
        line += _LINE
    for text in node.detail:
        _el(group, "text", text, x=f"{x + 10:.1f}", y=f"{line:.1f}", font_size=11, fill="#4b5563")
        line += _LINE
    if node.figures:
        _el(
            group,
            "line",
            x1=f"{x + 8:.1f}",
            x2=f"{x + w - 8:.1f}",
            y1=f"{line - 10:.1f}",
            y2=f"{line - 10:.1f}",
            stroke="#e5e7eb",
        )
        line += 4
    for text in node.figures:
        _el(
            group,
            "text",
            text,
            class_="jm-figure",
            x=f"{x + 10:.1f}",
            y=f"{line:.1f}",
            font_size=11,
            fill="#111827",
        )
        line += _LINE
