"""The strategy document's words: every text it shows is in the UI's catalog with a
Russian translation, and the rules in words are the segment pages' own sentences."""

from __future__ import annotations

import re

from babel.messages.pofile import read_po

from rapport.scenarios.diagram import WORDS as MAP_WORDS
from rapport.segments import describe
from rapport.strategy.words import WORDS
from rapport.web import segment_catalog, segment_words
from rapport.web.i18n import catalog_path
from rapport.web.routes.strategy import STRATEGY_WORDS
from tests.test_strategy import _document
from tests.test_strategy_support import (  # noqa: F401  (the `shop` fixture)
    Shop,
    shop_fixture,
)


def test_the_ui_marks_every_word_of_the_document() -> None:
    assert set(STRATEGY_WORDS) == set(WORDS)
    assert len(STRATEGY_WORDS) == len(set(STRATEGY_WORDS))


def test_every_word_has_a_russian_translation_with_its_placeholders() -> None:
    with catalog_path("ru").open("rb") as fp:
        catalog = read_po(fp, locale="ru")
    for text in (*WORDS, *describe.WORDS):
        entry = catalog.get(text)
        assert entry is not None and entry.string and not entry.fuzzy, text
        wanted = set(re.findall(r"%\(\w+\)s", text))
        assert set(re.findall(r"%\(\w+\)s", str(entry.string))) == wanted, text


def test_the_document_asks_only_for_listed_words(shop: Shop) -> None:
    """A text the document translates but no list names would never reach the catalog."""
    from rapport.strategy import export

    asked: set[str] = set()

    def record(text: str) -> str:
        asked.add(text)
        return text

    with shop.engine.connect() as conn:
        export(conn, "html", "last_90_days", shop.clock.now(), "en", record)
    assert asked, "nothing was translated"
    known = set(WORDS) | set(describe.WORDS) | set(MAP_WORDS)
    assert asked <= known, asked - known
    # The document's own headings were among them.
    assert {"CRM strategy", "Key figures", "Communication policy"} <= asked
    assert "CRM strategy" in _document(shop, "html").decode()


def test_the_rule_words_are_the_segment_pages() -> None:
    """segments.describe holds the labels the builder shows; the web keeps its marked
    copies for the catalog, and the two must not drift apart."""
    for name in (
        "FIELD_LABELS",
        "OPERATOR_LABELS",
        "EVENT_MODE_LABELS",
        "MESSAGE_LABELS",
        "STATUS_LABELS",
        "GROUP_LABELS",
    ):
        assert getattr(describe, name) == getattr(segment_catalog, name), name
    assert segment_words.SENTENCE_WORDS == describe.SENTENCES
    assert segment_words.describe is describe.describe


def test_a_rule_in_words_in_both_languages() -> None:
    from rapport.web.i18n import translations

    rule = {
        "all": [
            {"attribute": "city", "op": "eq", "value": "Kazan"},
            {"not": {"event": "Order Completed", "times": {"at_least": 2}, "within_last": 30}},
            {"segment": 7},
        ]
    }
    en = describe.describe(rule, lambda s: s, {7: "VIP"})
    assert en.lines() == [
        (0, "All of these:"),
        (1, "City is Kazan"),
        (1, "None of this (NOT):"),
        (2, "Performed Order Completed at least 2 times in the last 30 days"),
        (1, "Member of VIP (#7)"),
    ]
    ru = describe.describe(rule, translations("ru").gettext, {7: "VIP"})
    assert ru.lines()[1] == (1, "Город равно Kazan")
