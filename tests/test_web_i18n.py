"""Russian and English: every string of the UI translated, the switch, the formats."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

import rapport
from rapport.web.i18n import CATALOGS, catalog_path, choose_language, environment, translations
from tests.test_web_support import (
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)

SRC = Path(rapport.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def _strings() -> set[str | tuple[str, str]]:
    """Every marked string of the UI, extracted from the code as `pybabel extract` does."""
    found: set[str | tuple[str, str]] = set()
    for folder in (SRC / "web", SRC / "access"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            folder, METHODS, keywords=KEYWORDS
        ):
            if message:
                found.add(message if isinstance(message, str) else tuple(message))  # type: ignore[arg-type]
    return found


def test_every_string_has_a_russian_translation() -> None:
    with catalog_path("ru").open("rb") as fp:
        catalog = read_po(fp, locale="ru")
    strings = _strings()
    assert len(strings) > 150
    missing, fuzzy, placeholders = [], [], []
    for text in sorted(strings, key=str):
        key = text[0] if isinstance(text, tuple) else text
        entry = catalog.get(key)
        if (
            entry is None
            or not entry.string
            or (isinstance(entry.string, tuple) and not all(entry.string))
        ):
            missing.append(text)
            continue
        if entry.fuzzy:
            fuzzy.append(text)
        wanted = set(re.findall(r"%\(\w+\)[sd]", key))
        for translated in entry.string if isinstance(entry.string, tuple) else (entry.string,):
            if set(re.findall(r"%\(\w+\)[sd]", translated)) != wanted:
                placeholders.append(text)
    assert not missing, (
        f"no Russian for {missing} in {catalog_path('ru')} (docs/web.md, Translating)"
    )
    assert not fuzzy, f"fuzzy (unchecked) translations: {fuzzy}"
    assert not placeholders, f"placeholders differ: {placeholders}"
    # The template catalog matches the code (regenerate it as docs/web.md says).
    with (CATALOGS / "messages.pot").open("rb") as fp:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fp) if m.id}
    assert template == {s if isinstance(s, str) else s[0] for s in strings}


def test_russian_plurals_and_formats() -> None:
    ru = translations("ru")
    forms = [ru.ngettext("%(num)d order", "%(num)d orders", n) % {"num": n} for n in (1, 3, 5, 21)]
    assert forms == ["1 заказ", "3 заказа", "5 заказов", "21 заказ"]
    assert environment("ru").filters["number"](1234567.891, 2) == "1\xa0234\xa0567,89"
    assert environment("en").filters["number"](1234567.891, 2) == "1,234,567.89"
    assert environment("ru").filters["percent"](0.125) == "12,5%"


def test_the_language_comes_from_the_switch_then_the_browser() -> None:
    assert choose_language("ru", "en-US,en;q=0.9") == "ru"
    assert choose_language(None, "ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert choose_language(None, "de-DE,de;q=0.9,ru;q=0.5,en;q=0.8") == "en"
    assert choose_language("xx", "fr, nonsense;;q=x") == "en"
    assert choose_language(None, None) == "en"


def test_the_switch_changes_every_page(web: TestClient, engine: sa.Engine) -> None:
    login_page = web.get("/login")
    assert "Log in" in login_page.text
    answer = web.get("/lang/ru", params={"next": "/login"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert "rapport_lang=ru" in answer.headers["set-cookie"]
    assert "Войти" in web.get("/login").text
    signed_in(web, engine, "admin")
    for path, words in (
        ("/", ["Сводка", "Выручка", "Воронка"]),
        ("/customers", ["Клиенты", "Поиск по id, email, телефону или имени"]),
        ("/settings/users", ["Пользователи", "Новый пользователь"]),
        ("/segments", ["Сегменты", "Найти сегмент или список по имени"]),
    ):
        page = web.get(path)
        assert page.headers["Content-Language"] == "ru"
        for word in words:
            assert word in text_of(page.text), (path, word)
        assert '<html lang="ru">' in page.text
    web.get("/lang/en", params={"next": "/"})
    assert "Dashboard" in web.get("/").text
    # Only local pages to go back to, and only known languages.
    assert (
        web.get(
            "/lang/ru", params={"next": "https://evil.example.com"}, follow_redirects=False
        ).headers["location"]
        == "/"
    )
    assert web.get("/lang/de", follow_redirects=False).status_code == 404


def test_the_browser_language_is_used_before_any_switch(web: TestClient) -> None:
    page = web.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert '<html lang="ru">' in page.text and "Пароль" in page.text
