"""Carry Jinja tags unharmed through MJML compilation and CSS inlining.

The order is: **MJML → HTML → inline CSS once, at save time, with the Jinja tags
protected; Jinja at send time, on the compiled result.** Running Jinja first would mean
compiling MJML once per recipient (the slow part, and the product digest would change
the layout engine's input every time). But the MJML compiler and the HTML parser behind
the inliner do not know Jinja: text between ``<mj-section>`` elements is dropped, a
``{% for %}`` between table rows is moved out of the table, ``<`` in ``{% if a < b %}`` is
read as markup. So each tag is swapped for a placeholder the compilers keep verbatim:

* inside a start tag (an attribute value such as ``href="{{ url }}"``): a bare token
  ``xrj12x``, which no compiler rewrites;
* inside text-only elements (``mj-title``, ``mj-preview``, ``title``, ``style``): the same
  bare token (comments are not allowed there);
* anywhere else: an HTML comment ``<!--xrj12x-->``, which MJML and the HTML parser keep in
  place, even between sections and table rows.

After compilation every statement placeholder (``{% … %}``) must appear exactly once and in
its original order, and every expression at least once (``mj-title`` is copied into the
body, for instance); otherwise the template is refused with the tag's line and column.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_TEXT_ONLY = {"mj-title", "mj-preview", "title", "style", "mj-style", "textarea", "script"}
_VOID = {
    "br", "hr", "img", "meta", "link", "input", "col", "area", "base", "source", "wbr",
    "mj-image", "mj-divider", "mj-spacer", "mj-breakpoint", "mj-font", "mj-all", "mj-class",
}  # fmt: skip
PLACEHOLDER = re.compile(r"<!--xrj(\d+)x-->|xrj(\d+)x")


@dataclass(frozen=True)
class Tag:
    index: int
    source: str  # the Jinja text, verbatim
    start: int  # offset in the original source
    statement: bool  # {% … %}: moving or duplicating it would change the template's logic


@dataclass
class Protected:
    text: str  # the source with placeholders
    tags: list[Tag]
    # (offset in ``text``, offset in the original) at the start of each placeholder and
    # just after it, so a compiler's error position maps back to the author's line.
    _marks: list[tuple[int, int]]

    def original_offset(self, offset: int) -> int:
        keys = [m[0] for m in self._marks]
        i = bisect_right(keys, offset) - 1
        if i < 0:
            return offset
        prot, orig = self._marks[i]
        return orig + (offset - prot)


def line_col(source: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    col = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _contexts(source: str, tag_spans: list[tuple[int, int]]) -> list[str]:
    """For each tag span: 'attr' (inside a start tag), 'text' (text-only element), 'node'."""
    out: list[str] = []
    stack: list[str] = []
    in_tag = False
    quote = ""
    pos = 0
    spans = iter(tag_spans)
    nxt = next(spans, None)
    name_re = re.compile(r"</?([A-Za-z][\w:-]*)")
    while nxt is not None:
        if pos >= nxt[0]:
            top = stack[-1].lower() if stack else ""
            out.append("attr" if in_tag else "text" if top in _TEXT_ONLY else "node")
            pos = nxt[1]
            nxt = next(spans, None)
            continue
        ch = source[pos]
        if in_tag:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == ">":
                in_tag = False
                if source[pos - 1] == "/" and stack:
                    stack.pop()
        elif ch == "<":
            if source.startswith("<!--", pos):
                end = source.find("-->", pos)
                pos = len(source) if end < 0 else end + 3
                continue
            m = name_re.match(source, pos)
            if m:
                name = m.group(1).lower()
                if source[pos + 1] == "/":
                    while stack and stack.pop() != name:
                        pass
                elif name not in _VOID:
                    stack.append(name)
                in_tag = True
        pos += 1
    return out


def protect(source: str) -> Protected:
    found = [m for m in _TAG.finditer(source) if not m.group().startswith("{#")]
    comments = [m for m in _TAG.finditer(source) if m.group().startswith("{#")]
    spans = sorted([(m.start(), m.end(), m.group()) for m in found + comments])
    kinds = _contexts(source, [(s, e) for s, e, _ in spans])
    parts: list[str] = []
    tags: list[Tag] = []
    marks: list[tuple[int, int]] = []
    last = 0
    length = 0
    for (start, end, text), kind in zip(spans, kinds, strict=True):
        parts.append(source[last:start])
        length += start - last
        marks.append((length, start))
        if text.startswith("{#"):
            holder = ""  # Jinja comments go now: they render to nothing anyway
        else:
            i = len(tags)
            tags.append(Tag(i, text, start, text.startswith("{%")))
            holder = f"<!--xrj{i}x-->" if kind == "node" else f"xrj{i}x"
        parts.append(holder)
        length += len(holder)
        marks.append((length, end))
        last = end
    parts.append(source[last:])
    return Protected("".join(parts), tags, marks)


def check_survived(compiled: str, tags: list[Tag]) -> Tag | None:
    """The first tag the compilers dropped, duplicated (statements) or reordered, if any."""
    seen: dict[int, int] = {}
    order: list[int] = []
    for m in PLACEHOLDER.finditer(compiled):
        i = int(m.group(1) or m.group(2))
        seen[i] = seen.get(i, 0) + 1
        if i < len(tags) and tags[i].statement:
            order.append(i)
    for tag in tags:
        if not seen.get(tag.index) or (tag.statement and seen[tag.index] > 1):
            return tag
    for a, b in pairwise(order):
        if b < a:
            return tags[a]
    return None


def restore(compiled: str, tags: list[Tag]) -> str:
    return PLACEHOLDER.sub(lambda m: tags[int(m.group(1) or m.group(2))].source, compiled)
