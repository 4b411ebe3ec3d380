"""The UI in a real browser: log in, find a customer, open the card, switch the language;
a viewer cannot change anything; a screenshot of every page at desktop and phone width
(under tests/browser/screenshots/, git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.store.tables import customers, identities
from rapport.web.nav import SECTIONS, SETTINGS_PAGES
from tests.browser.conftest import SCREENSHOTS
from tests.test_web_support import PASSWORD, make_user, quick_hashes

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def page(browser: Any, live_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    quick_hashes(monkeypatch)
    context = browser.new_context(viewport=DESKTOP, base_url=live_server)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.problems = problems  # console errors: a CSP violation would land here
    yield tab
    context.close()


def _log_in(page: Any, email: str) -> None:
    page.goto("/")
    assert page.url.endswith("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _a_customer(engine: sa.Engine) -> tuple[int, str, str]:
    """The id, first name and email of a named customer of the demo shop."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(customers.c.id, customers.c.first_name, identities.c.value)
            .join(identities, identities.c.customer_id == customers.c.id)
            .where(
                identities.c.kind == "email",
                customers.c.first_name.is_not(None),
                customers.c.merged_into.is_(None),
            )
            .order_by(customers.c.events_count.desc())
            .limit(1)
        ).one()
    return int(row.id), str(row.first_name), str(row.value)


def test_log_in_find_a_customer_and_read_the_card(page: Any, shop: sa.Engine) -> None:
    make_user(shop, "marketer", "mira@example.com", "Mira")
    cid, first_name, email = _a_customer(shop)
    _log_in(page, "mira@example.com")
    assert page.locator("h1").inner_text() == "Dashboard"
    # The chart was drawn from the page's JSON by the vendored Chart.js.
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart=trend]'))"
    )
    # The period switch reloads the panel in place and puts the period in the address.
    page.select_option("#period", "last_7_days")
    page.wait_for_url("**/?period=last_7_days")
    page.wait_for_function(
        "() => Chart.getChart(document.querySelector('canvas[data-chart=trend]'))"
    )

    page.click("nav >> text=Customers")
    page.fill("#q", email)  # results come as one types: htmx, no submit
    page.wait_for_selector(f"#results a[href='/customers/{cid}']")
    page.click(f"#results a[href='/customers/{cid}'] >> nth=0")
    page.wait_for_url(f"**/customers/{cid}")
    assert first_name in page.locator("h1").inner_text()
    assert page.locator("text=Identities").count() == 1
    rows = page.locator("#timeline-body tr:not(.more)").count()
    assert rows > 0
    if page.locator("text=Older events").count():
        page.click("text=Older events")
        page.wait_for_function(
            f"() => document.querySelectorAll('#timeline-body tr:not(.more)').length > {rows}"
        )
    page.select_option("select[name=name]", "Identify")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#timeline-body strong')]"
        ".every(e => e.textContent === 'Identify')"
    )
    _shot(page, "flow-card")
    assert page.problems == []


def test_switch_the_language(page: Any, shop: sa.Engine) -> None:
    make_user(shop, "analyst", "ana@example.com", "Ana")
    page.goto("/login")
    page.click("a[hreflang=ru]")
    assert page.locator("button[type=submit]").inner_text() == "Войти"
    page.fill("input[name=email]", "ana@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    assert page.locator("h1").inner_text() == "Сводка"
    assert page.locator("html").get_attribute("lang") == "ru"
    _shot(page, "dashboard-ru")
    page.click("nav a[hreflang=en]")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.problems == []


def test_a_viewer_cannot_change_anything(page: Any, shop: sa.Engine) -> None:
    make_user(shop, "viewer", "vic@example.com", "Vic")
    cid, _name, email = _a_customer(shop)
    _log_in(page, "vic@example.com")
    assert page.locator("nav a[href='/audit']").count() == 0
    for path in ("/", "/customers", f"/customers/{cid}", "/settings"):
        page.goto(path)
        # No form that changes anything: the only POST is logging out.
        actions = page.eval_on_selector_all(
            "form[method=post]", "forms => forms.map(f => f.getAttribute('action'))"
        )
        assert actions == ["/logout"], path
    page.goto(f"/customers/{cid}")
    assert email not in page.content()
    assert page.locator("text=***@").count() > 0
    for path in ("/settings/users", "/settings/keys", "/audit"):
        answer = page.goto(path)
        assert answer.status == 403, path
        assert page.locator("h1").inner_text() == "Not allowed"
    # Even a hand-made form is refused (the role check is on the server, not in the page).
    status = page.evaluate(
        """async () => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const body = new URLSearchParams({csrf_token: token, email: 'x@example.com',
                name: 'X', role: 'admin', password: 'long enough password'});
            return (await fetch('/settings/users', {method: 'POST', body})).status;
        }"""
    )
    assert status == 403
    _shot(page, "viewer-card-masked")


def test_every_page_at_desktop_and_phone_width(page: Any, shop: sa.Engine) -> None:
    make_user(shop, "admin", "ada@example.com", "Ada")
    cid, _name, _email = _a_customer(shop)
    _log_in(page, "ada@example.com")
    paths = {s.key: s.path for s in (*SECTIONS, *SETTINGS_PAGES)}
    paths |= {"customer-card": f"/customers/{cid}", "customer-search": "/customers?q=a"}
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for key, path in paths.items():
            answer = page.goto(path)
            assert answer.status == 200, path
            page.wait_for_load_state("networkidle")
            # Nothing wider than the screen but scrollable tables.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (width_name, path, overflow)
            _shot(page, f"{width_name}-{key}")
    page.set_viewport_size(PHONE)
    page.goto("/")
    assert not page.locator("nav#nav").is_visible()
    page.click("label.nav-button")
    assert page.locator("nav#nav").is_visible()
    page.goto("/login")
    assert page.problems == []
