"""Compile a template version once, at save time, and refuse it there if anything is wrong.

Compilation checks the Jinja syntax (with the line, and the column where it can be
found), refuses file access and unknown filters, runs MJML → HTML and CSS inlining with
the Jinja tags protected (see ``protect`` for why in that order), derives the text part,
and makes sure the results still parse as Jinja. Whatever passes here renders at send
time with nothing left to discover but the recipient's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import css_inline
import mjml
from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from rapport.errors import InvalidInput, Problem
from rapport.messaging.templates.filters import FILTERS
from rapport.messaging.templates.plaintext import html_to_text
from rapport.messaging.templates.protect import Tag, check_survived, line_col, protect, restore
from rapport.messaging.templates.sandbox import Limits, RapportSandbox, refuse_file_access

Kind = Literal["mjml", "html", "text"]
KINDS: tuple[str, ...] = ("mjml", "html", "text")


def make_environment(*, html: bool, limits: Limits | None = None) -> RapportSandbox:
    """The sandbox with Rapport's filters; ``html`` turns autoescaping on."""
    env = RapportSandbox(limits, autoescape=html)
    env.filters.update({name: env._checked(f) for name, f in FILTERS.items()})
    return env


HTML_ENV = make_environment(html=True)
TEXT_ENV = make_environment(html=False)
_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
_MJML_POSITION = re.compile(r"position (\d+)(?::(\d+))?")


@dataclass(frozen=True)
class CompiledVariant:
    """One locale of one template version, ready to render: Jinja sources only."""

    subject: str
    html: str | None
    text: str


def _where(field: str, line: int, col: int) -> str:
    return f"{field}:{line}:{col}"


def _column(source: str, line: int, message: str) -> int:
    """Jinja reports lines only; point at the quoted token of the message when it is there."""
    lines = source.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    for token in re.findall(r"'([^']+)'", message):
        idx = text.find(token)
        if idx >= 0:
            return idx + 1
    first = text.find("{")
    return first + 1 if first >= 0 else 1


def check_jinja(env: SandboxedEnvironment, source: str, field: str) -> list[Problem]:
    """Syntax, file access and unknown filters/tests, each with its line and column."""
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        line = exc.lineno or 1
        reason = exc.message or str(exc)
        return [Problem(_where(field, line, _column(source, line, reason)), reason)]
    problems = [
        Problem(_where(field, line, _column(source, line, reason)), reason)
        for line, reason in refuse_file_access(ast)
    ]
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        registry = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in registry:
            label = "filter" if isinstance(node, nodes.Filter) else "test"
            reason = f"unknown {label} '{node.name}'"
            problems.append(
                Problem(_where(field, node.lineno, _column(source, node.lineno, reason)), reason)
            )
    if not problems:
        try:
            env.compile(source)
        except TemplateSyntaxError as exc:
            line = exc.lineno or 1
            problems.append(Problem(_where(field, line, 1), exc.message or str(exc)))
    return problems


def _mjml_problem(source: str, offset: int, message: str) -> Problem:
    return Problem(_where("body", *line_col(source, offset)), f"MJML: {message}")


_BEFORE_TBODY = re.compile(r"(<!--xrj(\d+)x-->)(\s*)(<tbody>)")


def _outside_implied_tbody(html: str, source: str, tags: list[Tag]) -> str:
    """Keep ``{% for %}<tr>`` loops inside the ``<tbody>`` the HTML parser adds.

    A table written without ``<tbody>`` gets one implied before its first row, i.e. after
    a loop tag that stands there; the loop would then repeat an unclosed ``<tbody>``.
    """

    def move(m: re.Match[str]) -> str:
        tag = tags[int(m.group(2))]
        after = source[tag.start + len(tag.source) :].lstrip()
        if after[:6].lower() == "<tbody":
            return m.group(0)
        return m.group(3) + m.group(4) + m.group(1)

    return _BEFORE_TBODY.sub(move, html)


def _compile_markup(source: str, kind: Kind) -> tuple[str, str]:
    """MJML/HTML with Jinja → (inlined HTML, text part), both still Jinja sources."""
    protected = protect(source)
    markup = protected.text
    if kind == "mjml":
        try:
            markup = mjml.mjml2html(markup)
        except ValueError as exc:
            message = str(exc)
            m = _MJML_POSITION.search(message)
            if m:
                # mrml counts bytes; the author counts characters.
                chars = len(protected.text.encode()[: int(m.group(1))].decode(errors="ignore"))
                offset = protected.original_offset(chars)
            else:
                offset = len(source) if "end of stream" in message else 0
            raise InvalidInput([_mjml_problem(source, offset, message)]) from None
    try:
        inlined = _INLINER.inline(markup)
    except ValueError as exc:
        raise InvalidInput([Problem("body:1:1", f"CSS: {exc}")]) from None
    inlined = _outside_implied_tbody(inlined, source, protected.tags)
    lost = check_survived(inlined, protected.tags)
    if lost is not None:
        line, col = line_col(source, lost.start)
        reason = (
            f"{lost.source!r} does not survive {'MJML' if kind == 'mjml' else 'HTML'} "
            "compilation here (dropped, repeated or moved); put it inside an element's "
            "content or wrap the block in mj-raw"
        )
        raise InvalidInput([Problem(_where("body", line, col), reason)])
    text = html_to_text(inlined, protected.tags)
    return restore(inlined, protected.tags), restore(text, protected.tags)


def compile_variant(kind: Kind, subject: str, body: str) -> CompiledVariant:
    """Check and compile one locale's subject and body; raise InvalidInput with positions."""
    if kind not in KINDS:
        raise InvalidInput([Problem("kind", f"must be one of {', '.join(KINDS)}")])
    body_env = TEXT_ENV if kind == "text" else HTML_ENV
    problems = check_jinja(TEXT_ENV, subject, "subject") + check_jinja(body_env, body, "body")
    if problems:
        raise InvalidInput(problems)
    if kind == "text":
        return CompiledVariant(subject, None, body)
    html, text = _compile_markup(body, kind)
    after = check_jinja(HTML_ENV, html, "body") + check_jinja(TEXT_ENV, text, "body")
    if after:  # pragma: no cover - protect() keeps tags in order; this is the safety net
        raise InvalidInput([Problem(after[0].where, f"after compilation: {after[0].reason}")])
    return CompiledVariant(subject, html, text)
