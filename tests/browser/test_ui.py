"""The UI in a real browser: log in, find a customer, open the card, switch the language;
build a segment, open a scenario's map, edit a template, compose and preview a campaign,
close a task, test a channel; a viewer cannot change anything anywhere; a screenshot of
every page at desktop and phone width (under tests/browser/screenshots/, git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from rapport.store.tables import customers, identities, tasks
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


def _htmx_idle(page: Any) -> None:
    """Wait until htmx has no request in flight and has settled its last swap: only then
    are the swapped-in fields listened to, and a form redrawn from an earlier request can
    no longer replace what is typed next."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


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


def _one_of_each(engine: sa.Engine) -> dict[str, str]:
    """A segment, an active playbook scenario, a campaign, a coupon series and an open
    task in the demo shop, so that their pages have something to show; their paths."""
    from rapport.clock import SimulatedClock
    from rapport.loyalty.coupons import parse_settings
    from rapport.loyalty.coupons.store import create_series
    from rapport.messaging.campaign_start import start_campaign
    from rapport.messaging.campaigns import create_campaign
    from rapport.pipeline import Pipeline
    from rapport.scenarios.library import install
    from rapport.scenarios.store import create_scenario, set_status
    from rapport.segments.definitions import create_segment
    from rapport.segments.membership import SegmentIndex
    from rapport.segments.sweep import sweep
    from rapport.store.engine import writing
    from rapport.store.tables import scenarios, templates
    from tests.conftest import T0
    from tests.test_loyalty_support import track

    with writing(engine) as conn:
        install(conn, T0, only=["abandoned-cart"], activate=True)
        cart = conn.execute(sa.select(sa.func.min(scenarios.c.id))).scalar_one()
        template = conn.execute(
            sa.select(templates.c.id).where(templates.c.channel == "email").limit(1)
        ).scalar_one()
        rule = {"computed": "orders_count", "op": "ge", "value": 1}
        segment = create_segment(conn, "Buyers", "one order or more", rule, T0)
        sweep(conn, SegmentIndex().current(conn), T0, [segment.id], backfill=True)
        variants = [{"name": "A", "template_id": template, "weight": 1}]
        spec = {"name": "Buyers news", "channel": "email", "segment_id": segment.id}
        campaign = create_campaign(conn, spec | {"variants": variants}, T0)
        # One started, so that its results (a wide table per variant) are on its page.
        two = [*variants, {"name": "B", "template_id": template, "weight": 1}]
        spec |= {"name": "Buyers sale", "variants": two, "control_percent": 10}
        started = create_campaign(conn, spec, T0)
        start_campaign(conn, started.id, T0)
        settings = {"name": "welcome-10", "title": "Welcome, 10% off", "kind": "percent"}
        create_series(conn, parse_settings(settings | {"value": 10}), T0)
        calls = create_scenario(
            conn,
            "name: calls\ntrigger: {event: Support Call}\nentry: {mode: every_time}\n"
            "steps:\n  - {id: call, action: {task: Call back about the order}}\n",
            T0,
        )
        set_status(conn, calls.id, "active", T0)
    track(Pipeline(engine, SimulatedClock(T0)), _a_user_id(engine), "Support Call")
    return {
        "segment": f"/segments/{segment.id}",
        "scenario": f"/scenarios/{cart}",
        "campaign": f"/campaigns/{campaign.id}",
        "started": f"/campaigns/{started.id}",
        "template": f"/templates/{template}",
        "series": "/loyalty/coupons/welcome-10",
    }


def _a_user_id(engine: sa.Engine) -> str:
    """The user id of the customer `_a_customer` picks."""
    cid, _name, _email = _a_customer(engine)
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(identities.c.value).where(
                identities.c.customer_id == cid, identities.c.kind == "user_id"
            )
        ).scalar_one()
    return str(value)


# What a viewer's page may post: the segment builder's scratch work (its live count and
# redrawing the draft), computed and shown, never stored.
COMPUTE_ONLY = {"/segments/preview", "/segments/builder"}

# Pages that change things: a viewer is refused each one (403), not only shown no link.
REFUSED_TO_VIEWERS = (
    "/settings/users",
    "/settings/keys",
    "/settings/channels",
    "/audit",
    "/campaigns/new",
    "/templates/new",
    "/loyalty/programme",
)


def test_a_viewer_cannot_change_anything(page: Any, shop: sa.Engine) -> None:
    """Every section, and a page of each kind of thing in it, has no form or htmx request
    that could change something; the pages that change things answer 403."""
    made = _one_of_each(shop)
    make_user(shop, "viewer", "vic@example.com", "Vic")
    cid, _name, email = _a_customer(shop)
    _log_in(page, "vic@example.com")
    assert page.locator("nav a[href='/audit']").count() == 0
    sections = [s.path for s in SECTIONS if s.key != "audit"]
    pages = [*sections, "/customers?q=a", f"/customers/{cid}", *made.values()]
    # The builder of a new segment is open to try a rule on (its count), not to save one.
    pages += ["/loyalty/coupons", "/segments/new", f"{made['campaign']}?customer_id={cid}"]
    for path in pages:
        answer = page.goto(path)
        assert answer.status == 200, path
        page.wait_for_load_state("networkidle")
        # No form that changes anything: the only POST is logging out (the language is
        # a link). Nor any element that would send a change with htmx.
        actions = page.eval_on_selector_all(
            "form[method=post i]", "forms => forms.map(f => f.getAttribute('action'))"
        )
        assert actions == ["/logout"], path
        sends = page.eval_on_selector_all(
            "[hx-post], [hx-put], [hx-patch], [hx-delete], [formmethod=post i]",
            """found => found.map(e => ['hx-post', 'hx-put', 'hx-patch', 'hx-delete',
                'formaction'].map(a => e.getAttribute(a)).find(Boolean))""",
        )
        assert set(sends) <= COMPUTE_ONLY, (path, sends)
        _shot(page, "viewer" + path.replace("/", "-").split("?")[0].rstrip("-"))
    assert page.problems == []
    page.goto(f"/customers/{cid}")
    assert email not in page.content()
    assert page.locator("text=***@").count() > 0
    for path in (*REFUSED_TO_VIEWERS, f"{made['campaign']}/edit"):
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
    with shop.connect() as conn:
        task = conn.execute(sa.select(sa.func.min(tasks.c.id))).scalar_one()
    changes = [
        made["segment"],
        made["segment"] + "/delete",
        made["scenario"] + "/pause",
        made["campaign"] + "/start",
        made["campaign"] + "/cancel",
        made["template"],
        made["series"] + "/pause",
        made["series"] + "/codes",
        f"/tasks/{task}/done",
        "/scenarios/library",
    ]
    statuses = page.evaluate(
        """async paths => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const answers = [];
            for (const path of paths) {
                const body = new URLSearchParams({csrf_token: token, confirm: 'yes', count: '5'});
                answers.push((await fetch(path, {method: 'POST', body})).status);
            }
            return answers;
        }""",
        changes,
    )
    assert dict(zip(changes, statuses, strict=True)) == dict.fromkeys(changes, 403)
    _shot(page, "viewer-card-masked")


def test_every_page_at_desktop_and_phone_width(page: Any, shop: sa.Engine) -> None:
    make_user(shop, "admin", "ada@example.com", "Ada")
    cid, _name, _email = _a_customer(shop)
    _log_in(page, "ada@example.com")
    paths = {s.key: s.path for s in (*SECTIONS, *SETTINGS_PAGES)}
    paths |= {"customer-card": f"/customers/{cid}", "customer-search": "/customers?q=a"}
    paths |= {"campaign-new": "/campaigns/new", "template-new": "/templates/new"}
    paths |= {"loyalty-coupons": "/loyalty/coupons", "loyalty-programme": "/loyalty/programme"}
    made = _one_of_each(shop)
    paths |= {"segment-new": "/segments/new", "segment-page": made["segment"]}
    paths |= {"scenario-page": made["scenario"], "campaign-page": made["campaign"]}
    paths |= {"campaign-edit": made["campaign"] + "/edit", "template-page": made["template"]}
    paths |= {"loyalty-series": made["series"], "campaign-results": made["started"]}
    paths |= {"channel-edit": "/settings/channels/email?backend=smtp"}
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


def test_segments_build_two_conditions_by_clicking_and_watch_the_count(
    page: Any, shop: sa.Engine
) -> None:
    """A marketer builds "orders ≥ 1 AND orders ≥ 3" with the mouse; the live count
    follows each edit, and the saved segment has that size."""
    make_user(shop, "marketer", "sam@example.com", "Sam")
    with shop.connect() as conn:
        live = sa.and_(customers.c.merged_into.is_(None), customers.c.erased_at.is_(None))

        def buyers(n: int) -> int:
            query = sa.select(sa.func.count()).where(live, customers.c.orders_count >= n)
            return int(conn.execute(query).scalar_one())

        one, three = buyers(1), buyers(3)
    assert one > three > 0
    _log_in(page, "sam@example.com")
    page.goto("/segments")
    page.click("text=New segment")
    page.wait_for_url("**/segments/new")

    def count_is(n: int) -> None:
        page.wait_for_function(
            "n => (document.getElementById('live-count') || {}).textContent === String(n)",
            arg=f"{n:,}",
        )

    def condition(key: str, field: str, op: str, value: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        _htmx_idle(page)  # a change made before the last swap settles is lost
        page.select_option(f"select[name='{key}:field']", field)
        page.wait_for_selector(f"input[name='{key}:value'][type=number]")  # redrawn for a number
        # The operator is chosen again if a redraw that was already on its way (the field's,
        # or the live count's debounced one) came back with the old choice.
        chosen = f"select[name='{key}:op'] option[value='{op}'][selected]"
        for _ in range(6):
            _htmx_idle(page)
            page.select_option(f"select[name='{key}:op']", op)
            try:
                page.wait_for_selector(chosen, state="attached", timeout=5000)
                break
            except PlaywrightTimeout:
                continue
        page.wait_for_selector(chosen, state="attached")
        _htmx_idle(page)
        page.fill(f"input[name='{key}:value']", value)

    condition("r.0", "computed:orders_count", "ge", "1")
    count_is(one)
    page.click("button[value='add:r:cond']")
    page.wait_for_selector("select[name='r.1:field']")
    condition("r.1", "computed:orders_count", "ge", "3")
    count_is(three)
    _shot(page, "segment-builder")
    page.fill("input[name=name]", "Frequent buyers")
    page.click("button[value=save]")
    page.wait_for_url("**/segments/*?done=created")
    assert page.locator("#segment-size").inner_text() == f"{three:,}"
    _shot(page, "segment-detail")
    page.set_viewport_size(PHONE)  # the builder fits a phone too
    page.reload()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow
    _shot(page, "phone-segment-detail")
    page.goto("/segments")
    assert page.locator("td a", has_text="Frequent buyers").count() == 1
    assert page.problems == []


def test_open_a_scenario_see_its_map_dry_run_and_pause_it(page: Any, shop: sa.Engine) -> None:
    from rapport.scenarios.library import install
    from rapport.store.engine import writing
    from tests.conftest import T0

    with writing(shop) as conn:
        (cart,) = install(conn, T0, only=["abandoned-cart"], activate=True)
    make_user(shop, "marketer", "mia@example.com", "Mia")
    _log_in(page, "mia@example.com")
    page.click("nav >> text=Scenarios")
    page.wait_for_url("**/scenarios")
    page.click(f"text={cart.name}")
    page.wait_for_url("**/scenarios/*")
    # The journey map is drawn on the server and inlined: one box per step.
    page.wait_for_selector(".journey-map svg")
    assert page.locator(".journey-map svg g.jm-node[data-step=first]").is_visible()
    assert page.locator(".journey-map svg g.jm-node").count() >= cart.steps + 1
    # The period switch redraws the map in place.
    page.select_option("select[name=period]", "last_7_days")
    page.wait_for_url("**/scenarios/*?period=last_7_days")
    page.wait_for_selector(".journey-map svg g.jm-node[data-step=first]")
    # A dry run from the page: the report comes in place, nothing is sent.
    page.select_option(".dry-run-form select[name=period]", "last_30_days")
    page.click("text=Run a dry run")
    page.wait_for_selector(".dry-report [data-figure=runs]")
    _shot(page, "scenario-detail")
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow  # the map scrolls inside its panel
    _shot(page, "phone-scenario-detail")
    page.set_viewport_size(DESKTOP)
    page.click("button:has-text('Pause')")
    page.wait_for_url("**/scenarios/*?done=paused")
    assert page.locator("#scenario-status").inner_text() == "paused"
    assert page.locator("button:has-text('Activate')").count() == 1
    assert page.problems == []


def test_edit_a_template_and_see_the_preview_update(page: Any, shop: sa.Engine) -> None:
    """Typing in the template editor re-renders the preview (htmx, debounced) with the
    real renderer, in Russian and English, the HTML in its sandboxed frame."""
    make_user(shop, "marketer", "tess@example.com", "Tess")
    _log_in(page, "tess@example.com")
    page.click("nav >> text=Templates")
    page.click("text=New template")
    page.wait_for_url("**/templates/new")
    page.select_option("select[name=kind]", "html")
    page.fill("input[name=name]", "browser news")
    page.fill("input[name=ru-subject]", "{{ customer.first_name }}, привет")
    page.fill("textarea[name=ru-body]", "<p>Здравствуйте, {{ customer.first_name }}!</p>")
    ru_subject = "#template-preview [data-locale=ru] .preview-subject"
    page.wait_for_function(
        f"() => document.querySelector('{ru_subject}')?.textContent === 'Анна, привет'"
    )
    # The English reader gets the default (Russian) version, with the English sample.
    en_subject = page.locator("#template-preview [data-locale=en] .preview-subject")
    assert en_subject.inner_text() == "Anna, привет"
    frame = page.frame_locator("iframe[name=template-frame-ru]")
    frame.locator("text=Здравствуйте, Анна!").wait_for()
    page.click("button:has-text('Save')")
    page.wait_for_url("**/templates/*?done=saved")

    page.fill("input[name=ru-subject]", "Скидка для {{ customer.first_name }}")
    page.wait_for_function(
        f"() => document.querySelector('{ru_subject}')?.textContent === 'Скидка для Анна'"
    )
    page.fill("textarea[name=ru-body]", "<p>{% if customer.first_name %}Hi{% endfro %}</p>")
    page.wait_for_selector("#template-preview .compile-problems")
    assert "variants.ru.body:1:" in page.locator("#template-preview").inner_text()
    page.fill("textarea[name=ru-body]", "<p>Пока, {{ customer.first_name }}!</p>")
    frame.locator("text=Пока, Анна!").wait_for()
    _shot(page, "template-editor")
    assert page.problems == []


def test_mark_a_task_done_from_the_tasks_page(page: Any, shop: sa.Engine) -> None:
    """A scenario's task action leaves a task; the manager takes it and marks it done."""
    from rapport.clock import SimulatedClock
    from rapport.pipeline import Pipeline
    from rapport.scenarios.store import create_scenario, set_status
    from rapport.store.engine import writing
    from tests.conftest import T0
    from tests.test_loyalty_support import track

    with writing(shop) as conn:
        calls = create_scenario(
            conn,
            "name: calls\ntrigger: {event: Support Call}\nentry: {mode: every_time}\n"
            "steps:\n  - {id: call, action: {task: Call back about the order}}\n",
            T0,
        )
        set_status(conn, calls.id, "active", T0)
    cid, name, _email = _a_customer(shop)
    with shop.connect() as conn:
        user_id = conn.execute(
            sa.select(identities.c.value).where(
                identities.c.customer_id == cid, identities.c.kind == "user_id"
            )
        ).scalar_one()
    track(Pipeline(shop, SimulatedClock(T0)), user_id, "Support Call")
    make_user(shop, "marketer", "max@example.com", "Max")
    _log_in(page, "max@example.com")
    page.click("nav >> text=Tasks")
    page.wait_for_url("**/tasks")
    row = page.locator("tr[data-task]", has_text="Call back about the order")
    assert row.locator(f"a[href='/customers/{cid}']").inner_text().startswith(name)
    row.locator("button:has-text('Assign to me')").click()
    page.wait_for_url("**/tasks?*done=assigned")
    row = page.locator("tr[data-task]", has_text="Call back about the order")
    assert "Max" in row.locator("[data-figure=assignee]").inner_text()
    row.locator("button:has-text('Done')").click()
    page.wait_for_url("**/tasks?*done=done")
    assert page.locator("text=The task is done.").is_visible()
    assert page.locator("tr[data-task]", has_text="Call back about the order").count() == 0
    page.select_option("select[name=status]", "done")
    page.click("button:has-text('Show')")
    page.wait_for_url("**/tasks?status=done*")
    done_row = page.locator("tr[data-task]", has_text="Call back about the order")
    assert done_row.locator("[data-figure=status]").inner_text().startswith("done")
    assert done_row.locator("button:has-text('Reopen')").count() == 1
    _shot(page, "tasks")
    assert page.problems == []


def test_set_up_email_on_the_channels_page_and_press_test(page: Any, shop: sa.Engine) -> None:
    """An admin picks SMTP (the form changes at once), points it at a real SMTP server on
    loopback, saves, and presses Test: the mail arrives and the page says it was sent."""
    from tests import smtp_server

    store = smtp_server.MailStore()
    server, port = smtp_server.start(store)
    try:
        make_user(shop, "admin", "ada@example.com", "Ada")
        _log_in(page, "ada@example.com")
        page.goto("/settings/channels")
        page.click("#channel-email a[href='/settings/channels/email']")
        page.wait_for_url("**/settings/channels/email")
        page.select_option("select[name=backend]", "smtp")
        page.wait_for_selector("input[name=f-port]")
        page.fill("input[name=f-host]", "127.0.0.1")
        page.fill("input[name=f-port]", str(port))
        page.select_option("select[name=f-security]", "plain")
        page.fill("input[name=f-sender]", "Shop <news@shop.example>")
        page.click("button:has-text('Save')")
        page.wait_for_url("**/settings/channels?done=saved*")
        panel = page.locator("#channel-email")
        assert "SMTP server" in panel.locator("[data-figure=backend]").inner_text()
        panel.locator("input[name=to]").fill("ops@shop.example")
        panel.locator("button:has-text('Test')").click()
        page.wait_for_url("**/settings/channels?tested=email*")
        status = page.locator("#channel-email [data-figure=test-status]").inner_text()
        assert status == "Sent: the provider accepted it."
        assert [m.rcpt_tos for m in store.messages] == [["ops@shop.example"]]
        _shot(page, "channels-tested")
        assert page.problems == []
    finally:
        server.stop()


def _size(engine: sa.Engine, segment_id: int) -> int:
    """A segment's size as the composer's list shows it."""
    from rapport.segments.definitions import sizes

    with engine.connect() as conn:
        return int(sizes(conn).get(segment_id, 0))


def test_compose_a_campaign_and_preview_it_for_a_customer(page: Any, shop: sa.Engine) -> None:
    """A marketer composes a draft (segment, channel, two variants with their templates, a
    control group), saves it, finds a customer as they type and sees each variant's message
    for them, rendered in its sandboxed frame with their name."""
    from rapport.messaging.templates.store import create_template
    from rapport.segments.definitions import create_segment
    from rapport.segments.membership import SegmentIndex
    from rapport.segments.sweep import sweep
    from rapport.store.engine import writing
    from tests.conftest import T0

    cid, first_name, email = _a_customer(shop)
    with writing(shop) as conn:
        for name, greeting in (("spring-a", "Hello"), ("spring-b", "Good news")):
            create_template(
                conn,
                name=name,
                channel="email",
                kind="html",
                variants={
                    "en": {
                        "subject": f"{greeting}, {{{{ customer.first_name }}}}",
                        "body": f"<p>{greeting}, {{{{ customer.first_name }}}}!</p>",
                    }
                },
                now=T0,
            )
        rule = {"attribute": "email", "op": "contains", "value": "@"}
        segment = create_segment(conn, "With an email", "", rule, T0)
        sweep(conn, SegmentIndex().current(conn), T0, [segment.id], backfill=True)
    make_user(shop, "marketer", "cora@example.com", "Cora")
    _log_in(page, "cora@example.com")
    page.click("nav >> text=Campaigns")
    page.wait_for_url("**/campaigns")
    page.goto("/campaigns/new")
    page.fill("input[name=name]", "Spring news")
    page.select_option("#campaign-channel", "email")  # redraws the form (htmx) for email
    page.wait_for_selector(
        "select[name='variants-0-template_id'] option:has-text('spring-a')", state="attached"
    )
    _htmx_idle(page)
    page.select_option("#campaign-segment", label=f"With an email ({_size(shop, segment.id):,})")
    page.fill("input[name='variants-0-name']", "A")
    page.select_option("select[name='variants-0-template_id']", label="spring-a")
    page.fill("input[name='variants-0-weight']", "1")
    page.click("button[value=add_variant]")  # redraws the form with a second row, unsaved
    page.wait_for_selector("select[name='variants-1-template_id']")
    page.fill("input[name='variants-1-name']", "B")
    page.select_option("select[name='variants-1-template_id']", label="spring-b")
    page.fill("input[name='variants-1-weight']", "1")
    page.fill("input[name=control_percent]", "10")
    _shot(page, "campaign-composer")
    page.click("button[value=save]")
    page.wait_for_url("**/campaigns/*?done=saved")
    definition = page.locator("#definition-title + dl").inner_text()
    assert "A: spring-a" in definition and "B: spring-b" in definition
    assert "With an email" in definition and "10" in definition

    page.fill("#preview-q", email)  # results come as one types
    link = page.locator(f"#preview-customers a[href*='customer_id={cid}']")
    link.wait_for()
    link.click()
    page.wait_for_url(f"**/campaigns/*?customer_id={cid}")
    assert page.locator("#campaign-preview .message-preview").count() == 2
    said = page.locator("#campaign-preview > p").first.inner_text()  # the draw, the policy
    assert ". The policy" in said, said
    for n, greeting in enumerate(("Hello", "Good news")):
        frame = page.frame_locator("#campaign-preview iframe.message-frame").nth(n)
        frame.locator(f"text={greeting}, {first_name}!").wait_for()
    sandbox = page.locator("#campaign-preview iframe.message-frame").first.get_attribute("sandbox")
    assert sandbox == ""  # sandboxed with nothing allowed: no scripts, no same origin
    _shot(page, "campaign-preview")
    assert page.problems == []
