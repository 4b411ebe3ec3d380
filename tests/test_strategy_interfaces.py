"""The strategy document through its three doors: `rapport strategy export`, the API's
``GET /api/strategy`` and the UI's ``/strategy.pdf``/``.html``: who may, what is refused
with which error, and that each writes the document (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pypdf import PdfReader
from typer.testing import CliRunner

from rapport.access.keys import create_key
from rapport.cli import app as cli
from tests.conftest import T0, bearer
from tests.test_strategy_support import (  # noqa: F401  (the `shop` fixture)
    SEGMENTS,
    Shop,
    shop_fixture,
)
from tests.test_web_support import (
    signed_in,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)

runner = CliRunner(env={"COLUMNS": "250"})  # the path printed must stay on one line


def _cli(engine: sa.Engine, *args: str):  # type: ignore[no-untyped-def]
    url = engine.url.render_as_string(hide_password=False)
    return runner.invoke(cli, ["strategy", "export", *args, "--database-url", url])


# -- the command line ------------------------------------------------------------------------


def test_the_cli_writes_the_document(shop: Shop, tmp_path: Path) -> None:
    # The shop lives at the simulated clock's time; the command reads the real clock, so
    # the whole history ("all") is what holds it.
    html = tmp_path / "strategy.html"
    result = _cli(shop.engine, "--format", "html", "--out", str(html), "--period", "all")
    assert result.exit_code == 0, result.output
    assert f"wrote {html}" in " ".join(result.output.split())
    text = html.read_text(encoding="utf-8")
    for name in SEGMENTS:
        assert name in text
    assert "Journey map: Привет — welcome" in text
    pdf = tmp_path / "strategy.pdf"
    result = _cli(shop.engine, "--out", str(pdf), "--period", "all", "--locale", "ru")
    assert result.exit_code == 0, result.output
    reader = PdfReader(io.BytesIO(pdf.read_bytes()))
    assert len(reader.pages) >= 2
    assert "Стратегия CRM" in reader.pages[0].extract_text()


def test_the_cli_names_each_bad_option_and_writes_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    out = tmp_path / "x.pdf"
    result = _cli(
        engine, "--out", str(out), "--format", "docx", "--locale", "de", "--period", "soon"
    )
    assert result.exit_code == 1
    assert "--format: must be one of pdf, html, not 'docx'" in result.output
    assert "--locale: must be one of ru, en, not 'de'" in result.output
    assert "--period: must be one of last_7_days" in result.output
    assert not out.exists()
    missing = tmp_path / "no" / "such" / "x.pdf"
    result = _cli(engine, "--out", str(missing))
    assert result.exit_code == 1 and "--out: the folder" in result.output
    assert not missing.parent.exists()


# -- the API ---------------------------------------------------------------------------------


def test_the_api_answers_the_file(shop: Shop) -> None:
    key = bearer(shop.key)
    answer = shop.client.get("/api/strategy", params={"format": "html"}, headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "attachment;" in answer.headers["content-disposition"]
    assert "script-src" not in answer.headers["content-security-policy"]
    sizes = {
        s["name"]: s["size"]
        for s in shop.client.get("/api/segments", headers=key).json()["segments"]
    }
    for name, size in sizes.items():
        assert f"{name} — {size}" in text_of(answer.text)
    answer = shop.client.get("/api/strategy", params={"locale": "ru"}, headers=key)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-language"] == "ru"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(answer.content)).pages)
    assert "Стратегия CRM" in text and "Казань" in text


def test_the_api_refuses_a_viewer_and_bad_queries(client: TestClient, engine: sa.Engine) -> None:
    assert client.get("/api/strategy").status_code == 401
    viewer = create_key(engine, "secret", "viewer", T0, role="viewer").key
    answer = client.get("/api/strategy", headers=bearer(viewer))
    assert answer.status_code == 403
    assert "export permission" in answer.json()["message"]
    analyst = create_key(engine, "secret", "analyst", T0, role="analyst").key
    answer = client.get(
        "/api/strategy",
        params={"format": "docx", "locale": "de", "period": "last_week"},
        headers=bearer(analyst),
    )
    assert answer.status_code == 422
    errors = {e["where"]: e["reason"] for e in answer.json()["errors"]}
    assert errors["query.format"] == "must be one of pdf, html, not 'docx'"
    assert errors["query.locale"] == "must be one of ru, en, not 'de'"
    assert "last_90_days" in errors["query.period"]
    ok = client.get("/api/strategy", params={"format": "html"}, headers=bearer(analyst))
    assert ok.status_code == 200


# -- the web UI --------------------------------------------------------------------------------


def test_the_ui_downloads_it_in_the_pages_language(web: TestClient, engine: sa.Engine) -> None:
    signed_in(web, engine, "analyst")
    web.get("/lang/ru", params={"next": "/reports"})
    page = web.get("/reports")
    assert 'href="/strategy.pdf?period=last_30_days"' in page.text
    pdf = web.get("/strategy.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-language"] == "ru"
    assert "Стратегия CRM" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    html = web.get("/strategy.html", params={"locale": "en", "period": "last_30_days"})
    assert html.status_code == 200
    assert "CRM strategy" in html.text and '<html lang="en">' in html.text
    assert html.headers["content-security-policy"].startswith("default-src 'none'")
    assert 'filename="crm-strategy-' in html.headers["content-disposition"]


def test_the_ui_refuses_a_viewer_and_bad_choices(web: TestClient, engine: sa.Engine) -> None:
    assert web.get("/strategy.pdf", follow_redirects=False).status_code in (302, 303)
    signed_in(web, engine, "viewer")
    assert web.get("/strategy.pdf").status_code == 403
    assert "/strategy.pdf" not in web.get("/reports").text  # no button for a viewer
    web.post("/logout", data={})
    web.cookies.clear()
    signed_in(web, engine, "marketer")
    answer = web.get("/strategy.docx", params={"period": "soon", "locale": "de"})
    assert answer.status_code == 422
    for said in ("format: must be one of pdf, html", "locale: must be one of ru, en", "period:"):
        assert said in answer.text
