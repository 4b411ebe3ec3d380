"""``/mail``: the demo's caught e-mail, as a list and one message at a time.

Served only when ``RAPPORT_MAIL_CATCHER_DIR`` names the Maildir the catcher writes
(``rapport demo mailcatcher``), so a production server never exposes it. The pages are
rendered on the server with autoescaping: every subject, address and header comes from
whoever sent the mail and is treated as hostile. A message's HTML is shown in an iframe
from ``srcdoc`` with ``sandbox=""`` (no scripts, no forms, no same-origin access, no
top-level navigation), under a CSP that allows nothing but inline styles and images.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import DictLoader, Environment

from rapport.api.public_pages import choose_lang
from rapport.demo.mailcatcher import list_mail, read_mail

router = APIRouter(tags=["demo"], include_in_schema=False)

PAGE_SIZE = 50

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    # The iframe's srcdoc document inherits this policy: its images load (a demo shows
    # the open pixel firing), nothing else does.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}

TEXTS = {
    "ru": {
        "title": "Пойманные письма",
        "empty": "Писем пока нет.",
        "date": "Дата",
        "from": "От",
        "to": "Кому",
        "subject": "Тема",
        "no_subject": "(без темы)",
        "total": "Всего: {n}",
        "newer": "← Новее",
        "older": "Старее →",
        "back": "← Все письма",
        "headers": "Заголовки",
        "html": "HTML",
        "text": "Текст",
        "raw": "Исходный текст",
        "raw_link": "Скачать исходник",
        "none": "Нет такой части.",
    },
    "en": {
        "title": "Caught mail",
        "empty": "No mail yet.",
        "date": "Date",
        "from": "From",
        "to": "To",
        "subject": "Subject",
        "no_subject": "(no subject)",
        "total": "Total: {n}",
        "newer": "← Newer",
        "older": "Older →",
        "back": "← All mail",
        "headers": "Headers",
        "html": "HTML",
        "text": "Text",
        "raw": "Raw source",
        "raw_link": "Download the source",
        "none": "No such part.",
    },
}

_BASE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %}</title>
<style>
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: #1d1d1f; background: #f5f5f7; margin: 0; padding: 1.5rem 1rem; }
  main { max-width: 64rem; margin: 0 auto; background: #fff; border-radius: 12px;
         padding: 1.25rem 1.5rem; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .45rem .5rem; border-bottom: 1px solid #eee;
           vertical-align: top; overflow-wrap: anywhere; }
  th { font-weight: 600; color: #6e6e73; }
  td.date { white-space: nowrap; color: #6e6e73; }
  nav { display: flex; gap: 1rem; margin-top: 1rem; }
  .muted { color: #6e6e73; }
  iframe { width: 100%; height: 36rem; border: 1px solid #ddd; border-radius: 8px; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #fafafa;
        border: 1px solid #eee; border-radius: 8px; padding: .75rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
</style></head>
<body><main>{% block content %}{% endblock %}</main></body></html>"""

_LIST = """{% extends "base" %}
{% block title %}{{ t.title }}{% endblock %}
{% block content %}
<h1>{{ t.title }}</h1>
{% if not items %}<p class="muted">{{ t.empty }}</p>{% else %}
<p class="muted">{{ total_text }}</p>
<table>
<thead><tr><th>{{ t.date }}</th><th>{{ t.to }}</th><th>{{ t.subject }}</th></tr></thead>
<tbody>
{% for m in items %}
<tr><td class="date">{{ m.received_at.strftime("%Y-%m-%d %H:%M:%S") }} UTC</td>
<td>{{ m.to }}</td>
<td><a href="{{ links[loop.index0] }}">{{ m.subject or t.no_subject }}</a></td></tr>
{% endfor %}
</tbody></table>
<nav>
{% if newer %}<a href="{{ newer }}">{{ t.newer }}</a>{% endif %}
{% if older %}<a href="{{ older }}">{{ t.older }}</a>{% endif %}
</nav>
{% endif %}
{% endblock %}"""

_MESSAGE = """{% extends "base" %}
{% block title %}{{ m.summary.subject or t.no_subject }}{% endblock %}
{% block content %}
<p><a href="{{ back }}">{{ t.back }}</a></p>
<h1>{{ m.summary.subject or t.no_subject }}</h1>
<h2>{{ t.headers }}</h2>
<table>
{% for name, value in headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
<h2>{{ t.html }}</h2>
{% if m.html is not none %}
<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{{ m.html }}"></iframe>
{% else %}<p class="muted">{{ t.none }}</p>{% endif %}
<h2>{{ t.text }}</h2>
{% if m.text is not none %}<pre>{{ m.text }}</pre>{% else %}<p class="muted">{{ t.none }}</p>{% endif %}
<details><summary>{{ t.raw }}</summary>
<p><a href="{{ raw_link }}">{{ t.raw_link }}</a></p>
<pre>{{ raw }}</pre>
</details>
{% endblock %}"""

_ENV = Environment(
    loader=DictLoader({"base": _BASE, "list": _LIST, "message": _MESSAGE}),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _directory(request: Request) -> str:
    directory: str | None = request.app.state.settings.mail_catcher_dir
    if not directory:  # the router is only mounted with a directory; defensive
        raise HTTPException(404)
    return directory


def _page(name: str, lang: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(lang=lang, t=TEXTS[lang], **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _message_url(key: str) -> str:
    return f"/mail/{quote(key, safe='')}"


@router.get("/mail", response_class=HTMLResponse)
def mail_list(request: Request, page: int = Query(1, ge=1, le=1_000_000)) -> HTMLResponse:
    lang = choose_lang(request)
    items, total = list_mail(_directory(request), offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return _page(
        "list",
        lang,
        items=items,
        links=[_message_url(m.key) for m in items],
        total_text=TEXTS[lang]["total"].format(n=total),
        newer=f"/mail?page={page - 1}" if page > 1 else None,
        older=f"/mail?page={page + 1}" if page * PAGE_SIZE < total else None,
    )


@router.get("/mail/{key}", response_class=HTMLResponse)
def mail_message(request: Request, key: str) -> HTMLResponse:
    lang = choose_lang(request)
    found = read_mail(_directory(request), key)
    if found is None:
        raise HTTPException(404, "no such message")
    headers = []
    for name, value in found.message.items():
        try:
            headers.append((name, str(value)))
        except Exception:  # a header the parser cannot decode is shown as it came
            headers.append((name, repr(value)))
    return _page(
        "message",
        lang,
        m=found,
        headers=headers,
        back="/mail",
        raw=found.raw.decode("utf-8", "replace"),
        raw_link=_message_url(key) + "/raw",
    )


@router.get("/mail/{key}/raw")
def mail_raw(request: Request, key: str) -> Response:
    """The message exactly as received (with the catcher's envelope lines on top)."""
    found = read_mail(_directory(request), key)
    if found is None:
        raise HTTPException(404, "no such message")
    return Response(
        found.raw,
        media_type="message/rfc822",
        headers={**HEADERS, "Content-Disposition": "attachment; filename=message.eml"},
    )
