"""Where the boxes of a journey map go: a layered layout computed in Python.

A journey reads top to bottom, so boxes sit in rows (layers) by the longest path from
the trigger: a step comes below everything that can lead to it, and the paths of a
branch, a split or a wait with a timeout sit side by side. It is the classic layered
("Sugiyama") method, cut down to what scenarios need:

1. edges that go back up (a wait that loops on itself, a journey that returns to an
   earlier step) are set aside, so the rest has no cycle and longest paths exist;
2. layers by longest path; an edge spanning several layers gets an invisible waypoint
   in each layer between, so it is routed through a gap instead of across a box;
3. the order within each layer is improved by barycentre sweeps, keeping the order with
   the fewest crossings found;
4. x positions put each box under the mean of its neighbours as closely as boxes that
   must not overlap allow (an exact least-squares fit, the pool-adjacent-violators
   algorithm), swept down, up and down again.

Pure geometry: no SVG here, no scenario either (``diagram.py`` draws), so it is easy to
test on its own and to reuse for any small directed graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

H_GAP = 32.0  # between neighbouring boxes of a layer
V_GAP = 60.0  # between layers: room for the edges' labels
WAYPOINT_WIDTH = 18.0  # what a long edge reserves in each layer it passes
MARGIN = 20.0
LANE_GAP = 14.0  # between the lanes of edges that go back up
_SWEEPS = 6


@dataclass(frozen=True)
class Box:
    key: str
    width: float
    height: float
    extra_right: float = 0.0  # room kept on the right (a loop drawn beside the box)


@dataclass
class Placed:
    key: str
    layer: int
    x: float  # left
    y: float  # top
    width: float
    height: float

    @property
    def centre(self) -> float:
        return self.x + self.width / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass
class Route:
    """An edge's way: ``points`` from the source's bottom to the target's top (forward),
    or around the right of the drawing (``back``), or ``loop`` to the box itself."""

    source: str
    target: str
    index: int  # the edge's position in the input
    points: list[tuple[float, float]] = field(default_factory=list)
    back: bool = False
    loop: bool = False


@dataclass
class Layout:
    boxes: dict[str, Placed]
    routes: list[Route]
    width: float
    height: float
    rows: list[tuple[float, float]]  # each layer's top and bottom


def layout(boxes: Sequence[Box], edges: Sequence[tuple[str, str]], root: str) -> Layout:
    """Place ``boxes`` (in their given order as the tie-break) joined by ``edges``."""
    keys = [b.key for b in boxes]
    size = {b.key: b for b in boxes}
    succ: dict[str, list[str]] = {k: [] for k in keys}
    for s, t in edges:
        succ[s].append(t)
    back = _back_edges(keys, edges, root)
    forward = [(s, t) for i, (s, t) in enumerate(edges) if i not in back]
    layer = _layers(keys, forward, root)
    depth = max(layer.values(), default=0) + 1
    # Rows of keys, with waypoints ("~i~n") for forward edges that skip layers.
    rows: list[list[str]] = [[] for _ in range(depth)]
    order = _discovery(keys, succ, root)
    for k in sorted(keys, key=order.__getitem__):
        rows[layer[k]].append(k)
    chains: dict[int, list[str]] = {}
    widths = {k: size[k].width + size[k].extra_right for k in keys}
    links: list[tuple[str, str]] = []  # adjacent-layer links, waypoints included
    for i, (s, t) in enumerate(edges):
        if i in back:
            continue
        chain = [s]
        for n in range(layer[s] + 1, layer[t]):
            w = f"~{i}~{n}"
            rows[n].append(w)
            widths[w] = WAYPOINT_WIDTH
            layer[w] = n
            chain.append(w)
        chain.append(t)
        chains[i] = chain
        links.extend(itertools.pairwise(chain))
    preds: dict[str, list[str]] = {k: [] for row in rows for k in row}
    nexts: dict[str, list[str]] = {k: [] for row in rows for k in row}
    for a, b in links:
        nexts[a].append(b)
        preds[b].append(a)
    rows = _order(rows, preds, nexts)
    centre = _x_positions(rows, widths, preds, nexts)
    # y: each layer as tall as its tallest box.
    tops: list[float] = []
    y = MARGIN
    row_spans: list[tuple[float, float]] = []
    for row in rows:
        tallest = max((size[k].height for k in row if k in size), default=0.0)
        tops.append(y)
        row_spans.append((y, y + tallest))
        y += tallest + V_GAP
    height = y - V_GAP + MARGIN
    left = min((centre[k] - widths[k] / 2 for row in rows for k in row), default=0.0)
    shift = MARGIN - left
    placed = {
        k: Placed(
            k,
            layer[k],
            centre[k] + shift - widths[k] / 2,
            tops[layer[k]],
            size[k].width,
            size[k].height,
        )
        for k in keys
    }
    right = max((p.x + widths[p.key] for p in placed.values()), default=0.0)
    routes: list[Route] = []
    lane = right + LANE_GAP
    for i, (s, t) in enumerate(edges):
        if s == t:
            routes.append(Route(s, t, i, loop=True))
        elif i in back:
            routes.append(_back_route(i, placed[s], placed[t], lane, row_spans))
            lane += LANE_GAP
        else:
            points = []
            for k in chains[i][1:-1]:
                x = centre[k] + shift
                top, bottom = row_spans[layer[k]]
                points += [(x, top), (x, bottom)]
            routes.append(Route(s, t, i, points=points))
    width = max(right, lane - LANE_GAP) + MARGIN
    return Layout(placed, routes, width, height, row_spans)


def _back_route(
    i: int, source: Placed, target: Placed, lane: float, rows: list[tuple[float, float]]
) -> Route:
    """Down out of the source into the gap below its row, right to a lane, up to the gap
    above the target's row, and down into the target: never across a box."""
    below = rows[source.layer][1] + V_GAP * 0.3
    above = rows[target.layer][0] - V_GAP * 0.3
    return Route(
        source.key,
        target.key,
        i,
        points=[(source.centre, below), (lane, below), (lane, above), (target.centre, above)],
        back=True,
    )


def _back_edges(keys: list[str], edges: Sequence[tuple[str, str]], root: str) -> set[int]:
    """Indices of the edges that close a cycle, found by a depth-first walk from the root
    (then from any box it does not reach), so a journey's natural direction is kept."""
    succ: dict[str, list[str]] = {k: [] for k in keys}
    for s, t in edges:
        succ[s].append(t)
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    closing: set[tuple[str, str]] = set()
    for start in [root, *keys]:
        if start in state:
            continue
        state[start] = 1
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(succ[node]):
                stack[-1] = (node, i + 1)
                nxt = succ[node][i]
                if state.get(nxt) == 1:
                    closing.add((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()
    return {i for i, pair in enumerate(edges) if pair in closing}


def _discovery(keys: list[str], succ: dict[str, list[str]], root: str) -> dict[str, int]:
    """Depth-first preorder from the root: a branch's first path before its second."""
    seen: dict[str, int] = {}
    for start in [root, *keys]:
        stack = [start]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen[node] = len(seen)
            stack.extend(reversed(succ[node]))
    return seen


def _layers(keys: list[str], forward: list[tuple[str, str]], root: str) -> dict[str, int]:
    """Longest path from the root over the edges that go forward (Kahn's order)."""
    preds: dict[str, list[str]] = {k: [] for k in keys}
    indegree = dict.fromkeys(keys, 0)
    succ: dict[str, list[str]] = {k: [] for k in keys}
    for s, t in forward:
        if s == t:
            continue
        succ[s].append(t)
        preds[t].append(s)
        indegree[t] += 1
    ready = [k for k in keys if indegree[k] == 0]
    layer: dict[str, int] = {}
    while ready:
        k = ready.pop(0)
        before = [layer[p] + 1 for p in preds[k]]
        layer[k] = max(before) if before else (0 if k == root else 1)
        for t in succ[k]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    return layer


def _crossings(upper: list[str], lower: list[str], nexts: dict[str, list[str]]) -> int:
    at = {k: i for i, k in enumerate(lower)}
    ends = [(i, at[t]) for i, k in enumerate(upper) for t in nexts[k] if t in at]
    return sum(
        1
        for a, (i1, j1) in enumerate(ends)
        for i2, j2 in ends[a + 1 :]
        if (i1 - i2) * (j1 - j2) < 0
    )


def _order(
    rows: list[list[str]], preds: dict[str, list[str]], nexts: dict[str, list[str]]
) -> list[list[str]]:
    """Barycentre sweeps down and up; the order with the fewest crossings wins."""

    def total(candidate: list[list[str]]) -> int:
        return sum(_crossings(a, b, nexts) for a, b in itertools.pairwise(candidate))

    best = [list(r) for r in rows]
    best_count = total(best)
    current = [list(r) for r in rows]
    for sweep in range(_SWEEPS):
        down = sweep % 2 == 0
        span = range(1, len(current)) if down else range(len(current) - 2, -1, -1)
        for n in span:
            ref = current[n - 1] if down else current[n + 1]
            pos = {k: i for i, k in enumerate(ref)}
            links = preds if down else nexts
            row = current[n]

            def weight(
                k: str,
                row: list[str] = row,
                pos: dict[str, int] = pos,
                links: dict[str, list[str]] = links,
            ) -> float:
                near = [pos[o] for o in links[k] if o in pos]
                return sum(near) / len(near) if near else float(row.index(k))

            current[n] = sorted(row, key=weight)
        count = total(current)
        if count < best_count:
            best, best_count = [list(r) for r in current], count
    return best


def _x_positions(
    rows: list[list[str]],
    widths: dict[str, float],
    preds: dict[str, list[str]],
    nexts: dict[str, list[str]],
) -> dict[str, float]:
    """Centres: each box under the mean of its neighbours, as near as no overlap allows."""
    centre: dict[str, float] = {}
    for row in rows:
        x = 0.0
        for k in row:
            centre[k] = x + widths[k] / 2
            x += widths[k] + H_GAP
    for sweep in range(3):
        down = sweep % 2 == 0
        span = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        links = preds if down else nexts
        for n in span:
            row = rows[n]
            wanted = []
            for k in row:
                near = [centre[o] for o in links[k]]
                wanted.append(sum(near) / len(near) if near else centre[k])
            gaps = [(widths[a] + widths[b]) / 2 + H_GAP for a, b in itertools.pairwise(row)]
            for k, x in zip(row, fit_apart(wanted, gaps), strict=True):
                centre[k] = x
    return centre


def fit_apart(wanted: list[float], gaps: list[float]) -> list[float]:
    """The positions nearest to ``wanted`` (least squares) with ``x[i+1] - x[i] >=
    gaps[i]``: shifted by the running gap sum it is an isotonic regression (PAVA)."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    targets = [w - o for w, o in zip(wanted, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, count]
    for t in targets:
        blocks.append([t, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, n2 = blocks.pop()
            mean1, n1 = blocks[-1]
            blocks[-1] = [(mean1 * n1 + mean2 * n2) / (n1 + n2), n1 + n2]
    fitted: list[float] = []
    for mean, count in blocks:
        fitted.extend([mean] * int(count))
    return [f + o for f, o in zip(fitted, offsets, strict=True)]
