"""The document as one self-contained HTML file: inline CSS, inline SVG, no script.

It opens from a disk, a mail attachment or a file share with nothing else beside it, and
prints as the document a team files (``@page`` rules, each section on a new page, the maps
never cut in two). The journey maps are inlined as SVG (drawn with presentation attributes
only); the chart is an ``<img>`` with a ``data:`` URL, so its ids cannot clash with the
maps'. Every value is escaped by the template's autoescape.
"""

from __future__ import annotations

import base64
from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rapport.analytics.message_charts import trend_chart
from rapport.strategy.present import Chart, Document, Heading, Map, Paragraph, RuleWords, Table

# The header a server sends with the file: the document needs its inline styles and data:
# images, and nothing may run in it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("rapport.strategy", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests.update(
        {
            "paragraph": lambda b: isinstance(b, Paragraph),
            "table": lambda b: isinstance(b, Table),
            "rule": lambda b: isinstance(b, RuleWords),
            "map": lambda b: isinstance(b, Map),
            "chart": lambda b: isinstance(b, Chart),
            "heading": lambda b: isinstance(b, Heading),
        }
    )
    return env


def _chart(block: Chart, language: str) -> str:
    image = trend_chart(block.rows, "svg", language)
    return "data:image/svg+xml;base64," + base64.b64encode(image).decode()


def render_html(document: Document) -> str:
    return (
        _environment()
        .get_template("strategy.html")
        .render(
            doc=document,
            # journey_map escapes every text it draws; the SVG is markup of our own.
            svg=lambda block: Markup(block.svg),
            chart=lambda block: _chart(block, document.language),
        )
    )
