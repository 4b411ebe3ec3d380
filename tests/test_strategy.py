"""The strategy document's content and files: the same figures as the API and the
dashboard, each segment and scenario, both languages, a valid PDF with Russian text."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from pypdf import PdfReader

from rapport.analytics.dashboard import dashboard
from rapport.analytics.periods import preset
from rapport.strategy import export
from rapport.strategy.collect import collect
from rapport.strategy.language import Language
from rapport.strategy.present import kpi_value, present
from rapport.web.i18n import translations
from tests.conftest import bearer
from tests.test_strategy_support import (  # noqa: F401  (the `shop` fixture)
    SEGMENTS,
    Shop,
    shop_fixture,
)


def _document(s: Shop, fmt: str, locale: str = "en", period: str = "last_90_days") -> bytes:
    with s.engine.connect() as conn:
        body, _ = export(conn, fmt, period, s.clock.now(), locale, translations(locale).gettext)
    return body


class _Text(HTMLParser):
    """The visible text of an HTML page, and its inline SVGs' outer tags."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip += tag in ("style", "svg")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "svg")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def _text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def test_the_html_has_each_segment_with_the_apis_size(shop: Shop) -> None:
    html = _document(shop, "html").decode()
    text = _text(html)
    listed = shop.client.get("/api/segments", headers=bearer(shop.key)).json()["segments"]
    assert {s["name"] for s in listed} == set(SEGMENTS)
    sizes = {s["name"]: s["size"] for s in listed}
    assert sizes == {"Казань": 2, "Buyers": 2}  # ann and bob live in Kazan and bought
    for name, size in sizes.items():
        assert f"{name} — {size}" in text
    # Each rule in words.
    assert "City is Kazan" in text
    assert "Performed Order Completed at least 1 times" in text


def test_the_html_has_each_scenarios_map(shop: Shop) -> None:
    html = _document(shop, "html").decode()
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    titles = [ET.fromstring(svg).findtext("{http://www.w3.org/2000/svg}title") for svg in svgs]
    # The active and the paused scenario, not the draft; each map well-formed SVG.
    assert titles == ["Journey map: Привет — welcome", "Journey map: Win-back"]
    text = _text(html)
    assert "A draft" not in text
    assert "Trigger: Event Signed Up" in text
    # The figures of the real run are on the active scenario's map.
    assert "Sent 3" in svgs[0] and "Opened 1 (33.3%)" in svgs[0]


def test_the_key_figures_are_the_dashboards(shop: Shop) -> None:
    now = shop.clock.now()
    period = preset("last_90_days", now.date())
    lang = Language("en")
    with shop.engine.connect() as conn:
        board = dashboard(conn, period, now)
        content = collect(conn, period, now, lang)
    business, crm, messages = board["business"], board["crm"], board["messages"]
    assert content.kpi("revenue").estimate.value == business["revenue"] == 1333.5
    assert content.kpi("orders").estimate.value == business["orders"] == 2
    assert content.kpi("average_check").estimate.value == business["average_check"]["value"]
    assert content.kpi("crm_share").estimate.value == crm["crm_share"]
    assert content.kpi("messages_sent").estimate.value == messages["sent"] == 3
    assert content.kpi("open_rate").estimate.value == messages["open_rate"]
    assert content.kpi("active_scenarios").estimate.value == board["active_scenarios"] == 1
    # Churn needs customers active before the period: said, not a made-up 0 %.
    churn = content.kpi("churn_rate")
    assert churn.estimate.status == "insufficient_data"
    assert kpi_value(churn, lang).startswith("Not enough data (")
    # The HTML prints the same values.
    text = _text(_document(shop, "html").decode())
    for key in ("revenue", "orders", "average_check", "open_rate", "churn_rate"):
        assert kpi_value(content.kpi(key), lang) in text, key
    assert "1,333.50" in text and "33.3%" in text


def test_the_policy_and_the_programme_are_in_it(shop: Shop) -> None:
    text = _text(_document(shop, "html").decode())
    assert "at most 3 per 7 days" in text  # email
    assert "at most 2 per 7 days, the last 1 kept for priority 80 and above" in text  # sms
    assert "Across all channels: at most 5 per 7 days." in text
    assert "Quiet hours: 21:00–09:00" in text
    assert "Europe/Moscow" in text
    assert "Global control group: 5.00% of customers" in text
    assert "Loyalty programme" in text and "Silver" in text and "Gold" in text
    assert "180 days" in text  # expiry


def test_the_russian_html_is_russian_throughout(shop: Shop) -> None:
    html = _document(shop, "html", "ru").decode()
    assert '<html lang="ru">' in html
    text = _text(html)
    for words in (
        "Стратегия CRM",
        "Содержание",
        "Главные цифры",
        "Сегменты",
        "Сценарии",
        "Политика коммуникаций",
        "Программа лояльности",
        "Город равно Kazan",
    ):
        assert words in text, words
    assert "1 333,50" in text.replace("\xa0", " ")
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    assert "Карта пути клиента" in svgs[0] or "Карта" in svgs[0]


def test_the_html_is_self_contained(shop: Shop) -> None:
    html = _document(shop, "html").decode()
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", html), "an outside reference"
    assert '<nav aria-labelledby="contents">' in html
    for anchor in ("key-figures", "segments", "scenarios", "policy", "loyalty"):
        assert f'href="#{anchor}"' in html and f'id="{anchor}"' in html
    assert "@media print" in html


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_the_pdf_is_a_document_with_its_text(shop: Shop, locale: str) -> None:
    body = _document(shop, "pdf", locale)
    assert body.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(body))
    assert len(reader.pages) >= 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    for name in SEGMENTS:
        assert name in text
    assert "Win-back" in text
    heading = "Стратегия CRM" if locale == "ru" else "CRM strategy"
    assert heading in text
    if locale == "ru":
        assert "Сегменты" in text and "Политика коммуникаций" in text
    # The outline lists the sections.
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert len(outline) == 5


def test_a_store_with_nothing_yet_still_makes_a_document(engine, clock) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        html, _ = export(conn, "html", "last_30_days", clock.now(), "en", lambda s: s)
        pdf, period = export(conn, "pdf", "last_30_days", clock.now(), "en", lambda s: s)
    text = _text(html.decode())
    assert "No segments yet." in text and "No active or paused scenarios." in text
    assert "Loyalty programme" not in text  # none was saved
    assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2
    assert period.days == 30


def test_every_bad_choice_is_named_at_once() -> None:
    from rapport.errors import InvalidInput
    from rapport.strategy.export import check

    with pytest.raises(InvalidInput) as caught:
        check("docx", "de", "last_week")
    problems = {p.where: p.reason for p in caught.value.problems}
    assert problems["format"] == "must be one of pdf, html, not 'docx'"
    assert problems["locale"] == "must be one of ru, en, not 'de'"
    assert "last_90_days" in problems["period"]


def test_present_keeps_the_document_in_order(shop: Shop) -> None:
    now = shop.clock.now()
    with shop.engine.connect() as conn:
        content = collect(conn, preset("last_90_days", now.date()), now, Language("en"))
    document = present(content)
    assert [s.anchor for s in document.sections] == [
        "key-figures",
        "segments",
        "scenarios",
        "policy",
        "loyalty",
    ]
