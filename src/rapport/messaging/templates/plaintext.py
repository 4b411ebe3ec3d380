"""The plain-text part, derived from the compiled HTML at save time.

Mail clients and spam filters expect ``multipart/alternative`` with a text part that says
the same thing as the HTML. Writing it by hand doubles the work and drifts, so it is
derived: block elements become line breaks, links become ``label (url)``, images their alt
text, and ``<head>``/``<style>`` vanish. It runs on the HTML while the Jinja tags are still
placeholders (see ``protect``), so the text part is itself a template, compiled once and
rendered per recipient without HTML escaping.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from rapport.messaging.templates.protect import PLACEHOLDER, Tag

_BLOCK = {
    "p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
    "section", "article", "header", "footer", "blockquote", "hr", "center",
}  # fmt: skip
_SKIP = {"head", "style", "script", "title"}
_JINJA_OPEN = re.compile(r"\{(?=[{%#])")


class _TextParser(HTMLParser):
    def __init__(self, tags: list[Tag]) -> None:
        super().__init__(convert_charrefs=True)
        self.tags = tags
        self.out: list[str] = []
        self.skip = 0
        self.links: list[str | None] = []

    def _emit_statements_only(self, data: str) -> None:
        """Inside skipped elements, keep ``{% … %}`` so the block structure stays whole."""
        for m in PLACEHOLDER.finditer(data):
            i = int(m.group(1) or m.group(2))
            if i < len(self.tags) and self.tags[i].statement:
                self.out.append(m.group(0).removeprefix("<!--").removesuffix("-->"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        attr = dict(attrs)
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "td":
            self.out.append(" ")
        if tag == "a":
            self.links.append(attr.get("href"))
            self.out.append("\x00")  # where the label starts
        if tag == "img" and attr.get("alt") and not self.skip:
            self.out.append(f" {attr['alt']} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.links:
            href = self.links.pop()
            start = max(i for i, part in enumerate(self.out) if part == "\x00")
            label = "".join(self.out[start + 1 :]).strip()
            del self.out[start:]
            if href and not href.startswith(("#", "mailto:")) and href != label:
                self.out.append(f"{label} ({href})" if label else href)
            else:
                self.out.append(label)
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            self._emit_statements_only(data)
            return
        self.out.append(_JINJA_OPEN.sub('{{ "{" }}', data))

    def handle_comment(self, data: str) -> None:
        m = PLACEHOLDER.fullmatch(f"<!--{data}-->")
        if m is None:
            return
        if self.skip:
            self._emit_statements_only(m.group(0))
        else:
            self.out.append(f"xrj{m.group(1)}x")


def html_to_text(html: str, tags: list[Tag]) -> str:
    """Readable text from e-mail HTML whose Jinja tags are still placeholders."""
    parser = _TextParser(tags)
    parser.feed(html)
    parser.close()
    text = "".join(p for p in parser.out if p != "\x00")
    lines = [re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in text.split("\n")]
    collapsed: list[str] = []
    for line in lines:
        if line or (collapsed and collapsed[-1]):
            collapsed.append(line)
    return "\n".join(collapsed).strip() + "\n"
