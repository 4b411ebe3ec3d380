"""Templates: compile once (MJML → HTML, inlined CSS, text part), render per recipient,
locale-aware filters, errors with line and column, and a sandbox that cannot be escaped
or stalled."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from rapport.errors import InvalidInput
from rapport.messaging.templates.compile import compile_variant, make_environment
from rapport.messaging.templates.render import RenderError, render
from rapport.messaging.templates.sandbox import (
    Limits,
    RenderLimitExceeded,
    end_budget,
    start_budget,
)

DIGEST = """<mjml>
<mj-head>
  <mj-title>{{ customer.first_name }}, для вас</mj-title>
  <mj-style>.price { color: #c00; font-weight: bold }</mj-style>
</mj-head>
<mj-body>
{% for p in products %}
  <mj-section><mj-column>
    <mj-image src="{{ p.image_url }}" alt="{{ p.name }}" href="{{ p.url }}" />
    <mj-text css-class="price">{{ p.name }}: {{ p.price|money(p.currency) }}{% if p.price < 100 %} (скидка){% endif %}</mj-text>
    <mj-button href="{{ p.url }}">Купить</mj-button>
  </mj-column></mj-section>
{% endfor %}
  <mj-section><mj-column>
    <mj-text>В корзине {{ n }} {{ n|plural("товар", "товара", "товаров") }}</mj-text>
  </mj-column></mj-section>
</mj-body>
</mjml>"""

PRODUCTS = [
    {"name": "Шапка <вязаная>", "price": 1234.5, "currency": "RUB", "url": "https://shop.example/p/1",
     "image_url": "https://cdn.example/1.png"},
    {"name": "Носки", "price": 99, "currency": "RUB", "url": "https://shop.example/p/2",
     "image_url": "https://cdn.example/2.png"},
]  # fmt: skip


def ctx(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "customer": {"first_name": "Анна"},
        "products": PRODUCTS,
        "n": 3,
        "locale": "ru",
        "timezone": "Asia/Vladivostok",
    }
    return base | extra


def test_mjml_compiles_once_and_jinja_survives_in_place() -> None:
    compiled = compile_variant("mjml", "Привет, {{ customer.first_name }}", DIGEST)
    # Compiled: no MJML left, CSS inlined, Jinja tags verbatim (loop around whole sections).
    assert "<mj-" not in compiled.html
    assert "{% for p in products %}" in compiled.html
    assert 'href="{{ p.url }}"' in compiled.html
    assert "color: #c00" in compiled.html
    out = render(compiled, ctx())
    assert out.subject == "Привет, Анна"
    assert out.html.count('href="https://shop.example/p/1"') == 2  # image link and button
    assert "Шапка &lt;вязаная&gt;: 1\xa0234,50\xa0₽" in out.html  # escaped, ru money
    assert "Носки: 99,00\xa0₽ (скидка)" in out.html
    assert "В корзине 3 товара" in out.html
    assert "<title>Анна, для вас</title>" in out.html


def test_text_part_is_derived_and_not_escaped() -> None:
    out = render(compile_variant("mjml", "s", DIGEST), ctx())
    assert "Шапка <вязаная>: 1\xa0234,50\xa0₽" in out.text
    assert "Купить (https://shop.example/p/1)" in out.text
    assert "<" not in out.text.replace("<вязаная>", "")
    assert "color" not in out.text  # no CSS from <head>
    assert "В корзине 3 товара" in out.text


def test_html_kind_keeps_loops_between_table_rows() -> None:
    body = (
        "<html><head><style>td { padding: 4px }</style></head><body><table>"
        "{% for p in products %}<tr><td>{{ p.name }}</td></tr>{% endfor %}</table></body></html>"
    )
    out = render(compile_variant("html", "s", body), ctx())
    assert out.html.count('<td style="padding: 4px;">') == 2
    assert out.html.count("<tbody>") == 1  # the loop stays inside the implied <tbody>
    assert out.text.split() == ["Шапка", "<вязаная>", "Носки"]


def test_filters_in_russian_and_english() -> None:
    body = (
        "{{ 1234.5|money('RUB') }}|{{ 1234.5|money('USD') }}|{{ 1234567.891|number }}|"
        "{{ 1999|money('RUB', digits=0) }}|{{ moment|date }}|{{ moment|datetime('short') }}|"
        "{% for n in [1, 2, 5, 21, 1.5] %}{{ n }} {{ n|plural('товар', 'товара', 'товаров') }};{% endfor %}"
    )
    compiled = compile_variant("text", "", body)
    # 23:30 UTC on 5 March is already 6 March in Vladivostok.
    moment = datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    ru = render(compiled, ctx(moment=moment)).text.split("|")
    assert ru[:5] == [
        "1\xa0234,50\xa0₽",
        "1\xa0234,50\xa0$",
        "1\xa0234\xa0567,891",
        "1\xa0999\xa0₽",
        "6 марта 2026\u202fг.",
    ]
    assert ru[5] == "06.03.2026, 09:30"
    assert ru[6] == "1 товар;2 товара;5 товаров;21 товар;1.5 товара;"
    en_body = "{{ 1234.5|money('USD') }}|{{ moment|date }}|{% for n in [1, 2] %}{{ n }} {{ n|plural('item', 'items') }};{% endfor %}"
    en = render(
        compile_variant("text", "", en_body), ctx(moment=moment, locale="en", timezone="UTC")
    ).text
    assert en == "$1,234.50|March 5, 2026|1 item;2 items;"


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        (
            "<mjml><mj-body>\n<mj-text>\n  {% if x %}open</mj-text>\n</mj-body></mjml>",
            "body:3:",
            "endif",
        ),
        (
            "<mjml><mj-body>\n  <mj-text>{{ x|nope }}</mj-text></mj-body></mjml>",
            "body:2:17",
            "unknown filter 'nope'",
        ),
        (
            "<mjml><mj-body>\n<mj-section>\n<mj-column><mj-text>a</mj-column></mj-section></mj-body></mjml>",
            "body:3:",
            "MJML",
        ),
        ('line one\n{% include "/etc/passwd" %}', "body:2:4", "include"),
        ('{% import "x.html" as x %}', "body:1:4", "import"),
        ('{% extends "base.html" %}', "body:1:4", "extends"),
    ],
)
def test_errors_at_save_time_with_line_and_column(body: str, where: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        compile_variant("mjml" if body.startswith("<mjml") else "text", "ok", body)
    problem = info.value.problems[0]
    assert problem.where.startswith(where), problem
    assert reason in problem.reason


def test_subject_errors_name_the_subject() -> None:
    with pytest.raises(InvalidInput) as info:
        compile_variant("text", "Hi {{ name", "body")
    assert info.value.problems[0].where.startswith("subject:1:")


def test_mjml_error_position_maps_back_to_the_author_line() -> None:
    # The attribute's Jinja tag becomes a shorter placeholder and the title is Cyrillic
    # (MJML counts bytes): the position still lands on the comment MJML refuses.
    body = (
        '<mjml><mj-head><mj-attributes><mj-all font-family="{{ font }}"/></mj-attributes>\n'
        "<mj-title>Тест <!-- c --></mj-title></mj-head><mj-body></mj-body></mjml>"
    )
    with pytest.raises(InvalidInput) as info:
        compile_variant("mjml", "s", body)
    assert info.value.problems[0].where == "body:2:16", info.value.problems


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "larger than"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "loop iterations",
        ),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "nested deeper"),
        ("{% macro f(n) %}{{ f(n - 1) }}{{ f(n - 1) }}{% endmacro %}{{ f(60) }}", "nested deeper"),
        ('{{ "x" * 10**9 }}', "longer than"),
        ('{{ "x"|center(10**9) }}', "larger than"),
        ('{{ "%099999999d"|format(1) }}', "format width"),
        ('{{ "{:>99999999}".format(1) }}', "format width"),
        ("{{ 10**10000 }}", "power"),
        ('{{ ("ab" * 500000) ~ ("ab" * 500000) }}', "longer than"),
    ],
)
def test_sandbox_refuses_runaway_templates(source: str, reason: str) -> None:
    compiled = compile_variant("text", "", source)
    started = time.monotonic()
    with pytest.raises(RenderError, match=reason):
        render(compiled, {})
    assert time.monotonic() - started < 1.0


def test_render_deadline_stops_a_slow_template() -> None:
    env = make_environment(html=False, limits=Limits(seconds=0.05, max_iterations=10**9))
    template = env.from_string(
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ j|string }}{% endfor %}{% endfor %}"
    )
    token = start_budget(env.limits)
    started = time.monotonic()
    try:
        with pytest.raises(RenderLimitExceeded, match=r"longer than 0\.05 s"):
            for _ in template.generate():
                pass
    finally:
        end_budget(token)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.__class__.__mro__ }}",
        "{{ customer.first_name.__class__.__subclasses__() }}",
        "{{ products.append(1) }}",
        "{{ customer.update({'a': 1}) }}",
        "{{ self.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_sandbox_refuses_private_attributes_and_mutation(source: str) -> None:
    compiled = compile_variant("text", "", source)
    try:
        out = render(compiled, ctx()).text
    except RenderError as exc:
        assert (
            "unsafe" in str(exc) or "not safely callable" in str(exc) or "Undefined" in str(exc)
        ), exc
    else:
        assert out == ""  # an unsafe attribute reads as undefined, never as the object
    assert PRODUCTS[-1]["name"] == "Носки" and len(PRODUCTS) == 2


def test_output_size_limit() -> None:
    compiled = compile_variant("text", "", '{% for i in range(2000) %}{{ "x" * 999 }}{% endfor %}')
    with pytest.raises(RenderError, match="output longer than"):
        render(compiled, {})


def test_a_render_is_not_charged_for_time_spent_waiting() -> None:
    """The deadline counts the rendering thread's CPU time: a render that waited (for the
    interpreter while other threads ran, for a core on a busy machine) is no runaway."""
    env = make_environment(html=False, limits=Limits(seconds=0.2))
    template = env.from_string("{% for i in range(1000) %}{{ i }}{% endfor %}")
    token = start_budget(env.limits)
    try:
        time.sleep(0.3)  # the wall clock passes the deadline; the thread spends nothing
        assert "".join(template.generate()).endswith("999")
    finally:
        end_budget(token)
