"""Every page escapes what people type, on SQLite and PostgreSQL.

A customer whose name, email and traits are HTML, and a segment, a scenario, a template, a
campaign, a coupon series and a task named with HTML — each made the ordinary way (the
ingest and management APIs, a scenario's task action) — are shown as text on every page
that shows them: the only ``<script`` in a page is the vendored ``<script src=…>`` tags,
no ``<img`` or ``<b>`` tag of theirs gets through, and the escaped text is there, so the
check cannot pass by leaving the thing out. The scenario's SVG (inlined in its page and
served alone) and the message preview frames escape them too.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.store.tables import identities
from tests.conftest import basic, bearer
from tests.test_web_support import (
    signed_in,
    web_client,  # noqa: F401  (the `web` fixture)
)

XSS = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
BOLD = "<b>bold</b>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
# A tag that may be in a page: the vendored scripts, loaded from /static.
ALLOWED_SCRIPT = re.compile(r'<script src="/static/[^"]+" defer></script>')


def _ok(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json()) if answer.content else {}


def _raw_tags(html: str) -> list[str]:
    """The tags of ours that should never be in a page: scripts other than the vendored
    ones, and the image and bold tags hidden in the names."""
    rest = ALLOWED_SCRIPT.sub("", html)
    return re.findall(r"<script|<img src=x|<b>bold", rest, re.I)


def _shop(web: TestClient, engine: sa.Engine, write_key: str, secret_key: str) -> dict[str, Any]:
    """The customer and the things named with HTML; their ids."""
    key = bearer(secret_key)
    traits = {
        "firstName": XSS,
        "lastName": IMG,
        "email": "x<b>@example.com",
        "phone": "+79161234567",
        "city": XSS,
        "note": XSS,
    }
    for kind, body in (
        ("identify", {"userId": "u-x", "traits": traits}),
        ("track", {"userId": "u-x", "event": XSS, "properties": {"note": XSS}}),
    ):
        _ok(web.post(f"/v1/{kind}", json=body, headers=basic(write_key)), 200)
    with engine.connect() as conn:
        cid = conn.execute(
            sa.select(identities.c.customer_id).where(
                identities.c.kind == "user_id", identities.c.value == "u-x"
            )
        ).scalar_one()
    rule = {"attribute": "first_name", "op": "eq", "value": XSS}
    segment = _ok(
        web.post(
            "/api/segments",
            json={"name": f"Seg {XSS}", "description": f"about {BOLD}", "rules": rule},
            headers=key,
        )
    )
    assert segment["size"] == 1
    html = f"<p>Hello, {{{{ customer.first_name }}}} {{{{ customer.last_name }}}}! {BOLD}</p>"
    template = _ok(
        web.post(
            "/api/templates",
            json={
                "name": f"Tpl {XSS}",
                "channel": "email",
                "kind": "html",
                "default_locale": "en",
                "variants": {"en": {"subject": "Hi {{ customer.first_name }}", "body": html}},
            },
            headers=key,
        )
    )
    campaign = _ok(
        web.post(
            "/api/campaigns",
            json={
                "name": f"Camp {XSS}",
                "channel": "email",
                "segment_id": segment["id"],
                "variants": [{"name": "A", "template_id": template["id"], "weight": 1}],
            },
            headers=key,
        )
    )
    scenario_yaml = (
        f"name: 'Scen {XSS}'\n"
        f"description: 'about {BOLD}'\n"
        f"trigger: {{event: '{XSS}'}}\n"
        "entry: {mode: every_time}\n"
        "steps:\n"
        f"  - {{id: mail, send: {{template: '{template['name']}'}}}}\n"
        f"  - {{id: call, action: {{task: 'Call {XSS}'}}}}\n"
    )
    scenario = _ok(
        web.post(
            "/api/scenarios?status=active",
            content=scenario_yaml,
            headers=key | {"content-type": "application/yaml"},
        )
    )
    series = _ok(
        web.post(
            "/api/coupons/series",
            json={"name": "html-10", "title": f"Ten {XSS}", "kind": "percent", "value": 10},
            headers=key,
        )
    )
    # The scenario's trigger again, now it is active: a run, its task, its message.
    _ok(
        web.post(
            "/v1/track",
            json={"userId": "u-x", "event": XSS, "properties": {"note": XSS}},
            headers=basic(write_key),
        ),
        200,
    )
    return {
        "customer": cid,
        "segment": segment["id"],
        "template": template["id"],
        "campaign": campaign["id"],
        "scenario": scenario["id"],
        "series": series["name"],
    }


def test_every_page_shows_html_in_names_as_text(
    web: TestClient,
    engine: sa.Engine,
    write_key: str,
    secret_key: str,
    clock: SimulatedClock,
) -> None:
    ids = _shop(web, engine, write_key, secret_key)
    cid = ids["customer"]
    signed_in(web, engine, "admin")
    pages = {
        "/": None,
        f"/customers?q={cid}": XSS,
        "/customers?q=" + XSS: XSS,
        f"/customers/{cid}": XSS,
        f"/customers/{cid}/timeline": XSS,
        "/segments": XSS,
        f"/segments/{ids['segment']}": XSS,
        "/scenarios": XSS,
        f"/scenarios/{ids['scenario']}": XSS,
        "/campaigns": XSS,
        f"/campaigns/{ids['campaign']}": XSS,
        f"/campaigns/{ids['campaign']}/edit": XSS,
        f"/campaigns/{ids['campaign']}?customer_id={cid}": XSS,
        f"/campaigns/{ids['campaign']}/customers?q={cid}": XSS,
        f"/campaigns/{ids['campaign']}/preview?customer_id={cid}": XSS,
        "/templates": XSS,
        f"/templates/{ids['template']}": XSS,
        f"/templates/{ids['template']}?customer_id={cid}": XSS,
        f"/templates/customers?q={cid}": XSS,
        "/loyalty/coupons": XSS,
        f"/loyalty/coupons/{ids['series']}": XSS,
        "/tasks": XSS,
        "/reports": None,
        "/audit": XSS,
    }
    leaks, absent = {}, []
    for path, expected in pages.items():
        answer = web.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        if tags := _raw_tags(answer.text):
            leaks[path] = tags
        if expected is not None and ESCAPED_XSS not in answer.text:
            absent.append(path)
    assert leaks == {}
    assert absent == []
    # The things named with HTML are on the pages above, escaped: a check that the list
    # really reaches each of them.
    assert "Seg &lt;script&gt;" in web.get("/segments").text
    assert "Scen &lt;script&gt;" in web.get("/scenarios").text
    assert "Camp &lt;script&gt;" in web.get("/campaigns").text
    assert "Tpl &lt;script&gt;" in web.get("/templates").text
    assert "Ten &lt;script&gt;" in web.get("/loyalty/coupons").text
    assert "Call &lt;script&gt;" in web.get("/tasks").text


def test_the_scenario_map_escapes_names(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    ids = _shop(web, engine, write_key, secret_key)
    signed_in(web, engine, "viewer")
    svg = web.get(f"/scenarios/{ids['scenario']}.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert _raw_tags(svg.text) == []
    assert ESCAPED_XSS in svg.text  # the trigger's event and the task's title, as text
    inline = web.get(f"/scenarios/{ids['scenario']}").text
    start = inline.index("<svg")
    assert ESCAPED_XSS in inline[start : inline.index("</svg>", start)]


def test_message_previews_escape_the_customer(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    """The HTML template escapes the customer's name in the rendered message (its own
    document, in a sandboxed frame) and keeps its own markup."""
    ids = _shop(web, engine, write_key, secret_key)
    cid = ids["customer"]
    signed_in(web, engine, "marketer")
    for path in (
        f"/campaigns/{ids['campaign']}/preview/{cid}/0.html",
        f"/templates/{ids['template']}/frame/en.html?customer_id={cid}",
    ):
        frame = web.get(path)
        assert frame.status_code == 200, (path, frame.text)
        assert XSS not in frame.text and "<img src=x" not in frame.text, path
        assert "Hello, " + ESCAPED_XSS in frame.text, path
        assert BOLD in frame.text, path  # the template's own markup stays markup


def test_the_strategy_document_escapes_names(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    _shop(web, engine, write_key, secret_key)
    signed_in(web, engine, "analyst")
    document = web.get("/strategy.html")
    assert document.status_code == 200, document.text
    assert _raw_tags(document.text) == []
    assert "Seg &lt;script&gt;" in document.text
    assert "Scen &lt;script&gt;" in document.text
