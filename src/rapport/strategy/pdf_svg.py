"""A journey map made ready for the PDF writer, which draws SVG itself.

fpdf2 draws paths, boxes and text but not ``<marker>`` (the arrowheads) and looks fonts
up by the first name of ``font-family``. So the map's arrowheads are drawn as small
triangles at the end of each edge, in the edge's own direction, and its text is set in
the font the document embeds (the same DejaVu that carries the Cyrillic). The map itself
is not changed: this is a copy for the PDF.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
ARROW = 7.0  # the arrowhead's length, as the map's marker draws it
_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?")

ET.register_namespace("", SVG_NS)


def _tail(d: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The last point of a path and a point before it that gives the end direction."""
    values = [float(v) for v in _NUMBERS.findall(d)]
    points = list(zip(values[0::2], values[1::2], strict=False))
    end = points[-1] if points else None
    if end is None:
        return None
    for before in reversed(points[:-1]):
        if math.dist(before, end) > 0.01:
            return before, end
    return None


def _arrowhead(before: tuple[float, float], end: tuple[float, float], colour: str) -> ET.Element:
    angle = math.atan2(end[1] - before[1], end[0] - before[0])
    back = (end[0] - ARROW * math.cos(angle), end[1] - ARROW * math.sin(angle))
    side = ARROW / 2.2
    left = (back[0] + side * math.sin(angle), back[1] - side * math.cos(angle))
    right = (back[0] - side * math.sin(angle), back[1] + side * math.cos(angle))
    d = "M{:.1f},{:.1f} L{:.1f},{:.1f} L{:.1f},{:.1f} Z".format(*end, *left, *right)
    return ET.Element(f"{{{SVG_NS}}}path", {"d": d, "fill": colour, "stroke": "none"})


def for_pdf(svg: str, font_family: str) -> bytes:
    root = ET.fromstring(svg)
    for element in root.iter():
        if "font-family" in element.attrib:
            element.set("font-family", font_family)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}title", f"{{{SVG_NS}}}defs"):
                parent.remove(child)  # tooltips and the marker: nothing to draw on paper
                continue
            if child.get("marker-end") is None:
                continue
            del child.attrib["marker-end"]
            tail = _tail(child.get("d", ""))
            if tail is not None:
                index = list(parent).index(child)
                parent.insert(index + 1, _arrowhead(*tail, child.get("stroke", "#6b7280")))
    if root.get("font-family") is None:
        root.set("font-family", font_family)
    return ET.tostring(root, encoding="utf-8")
