"""The Campaigns pages on SQLite and PostgreSQL: the composer stores a campaign exactly as
the API would and refuses a bad form beside its fields with nothing stored; the preview
renders a customer's message (in a sandboxed frame, with tracking off); start and cancel
are audited; the results show the API's campaign report, the experiment figures and the
verdict; viewers and analysts change nothing."""

from __future__ import annotations

import html
import re
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.splits import campaign_experiment
from rapport.clock import SimulatedClock
from rapport.messaging.campaign_report import campaign_report
from rapport.messaging.campaigns import get_campaign
from rapport.messaging.channels.base import InMemoryBackend
from rapport.messaging.outbox import CLICKED, OPENED, event_for
from rapport.messaging.policy import save_policy
from rapport.store.engine import writing
from rapport.store.tables import campaigns, outbox
from rapport.worker import dispatcher_for
from tests.conftest import T0, bearer
from tests.helpers import table_counts
from tests.test_campaigns import audience, people, rows, subscribe, template
from tests.test_experiments_api import shop  # noqa: F401  (the `shop` fixture)
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> str:
    """Log in as a new person of ``role`` (forgetting the last one); their CSRF token."""
    client.cookies.clear()
    _signed_in(client, engine, role)
    return csrf_of(client, "/campaigns")


def _form(token: str, segment_id: int, templates: list[int], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "csrf_token": token,
        "name": "Spring sale",
        "channel": "email",
        "segment_id": str(segment_id),
        "control_percent": "10",
        "when": "now",
        "local_hour": "",
        "throttle_per_minute": "",
        "priority": "marketing",
        "cap_priority": "50",
        "action": "save",
    }
    for i, tid in enumerate(templates):
        data |= {
            f"variants-{i}-name": "AB"[i],
            f"variants-{i}-template_id": str(tid),
            f"variants-{i}-weight": "70" if i == 0 else "30",
        }
    return data | fields


def _beside(page: str, field: str) -> str:
    """The problem text shown right after the named field."""
    found = re.search(
        rf'name="{re.escape(field)}"[^>]*>(?:\s*</select>)?\s*<span class="field-problem">([^<]*)',
        page,
        re.S,
    )
    if found is None:
        found = re.search(
            rf'name="{re.escape(field)}".*?<span class="field-problem">([^<]*)', page, re.S
        )
    assert found, f"no problem beside {field}"
    return html.unescape(found.group(1))


def _spec_of(engine: sa.Engine, campaign_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        spec = get_campaign(conn, campaign_id).spec()
    spec.pop("name")
    return spec


def test_compose_a_draft_with_two_variants_and_a_control_group(
    web: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    ids = people(engine, 6)
    segment_id = audience(engine, ids, "spring list")
    ta = template(engine, "spring A", "A {{ customer.first_name }}")
    tb = template(engine, "spring B", "B {{ customer.first_name }}")
    template(engine, "an sms", "code", channel="sms")
    with writing(engine) as conn:
        save_policy(conn, {"default_timezone": "Europe/Moscow"}, T0)
    token = signed_in(web, engine, "marketer")

    page = web.get("/campaigns/new")
    assert page.status_code == 200
    assert "spring list (6)" in page.text and "spring A" in page.text
    assert "an sms" not in page.text  # the template select offers the channel's own
    assert "Europe/Moscow" in page.text

    # "Add a variant" redraws the form with a row more and stores nothing.
    before = table_counts(engine)
    redrawn = web.post("/campaigns", data=_form(token, segment_id, [ta], action="add_variant"))
    assert redrawn.status_code == 200 and 'name="variants-1-name" value="B"' in redrawn.text
    removed = web.post(
        "/campaigns", data=_form(token, segment_id, [ta, tb], action="remove_variant:0")
    )
    assert 'name="variants-1-name"' not in removed.text
    assert 'name="variants-0-template_id"' in removed.text
    other_channel = web.post("/campaigns/form", data=_form(token, segment_id, [ta], channel="sms"))
    assert other_channel.status_code == 200 and "an sms" in other_channel.text
    assert "spring A" not in other_channel.text and "<html" not in other_channel.text
    assert table_counts(engine) == before

    answer = web.post(
        "/campaigns",
        data=_form(
            token,
            segment_id,
            [ta, tb],
            when="at",
            send_at="2026-03-10T10:00",
            local_hour="11",
            throttle_per_minute="500",
            cap_priority="70",
        ),
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    campaign_id = int(answer.headers["location"].split("/")[2].split("?")[0])

    # The same definition through the API stores the same campaign.
    doc = {
        "name": "through the API",
        "channel": "email",
        "segment_id": segment_id,
        "variants": [
            {"name": "A", "template_id": ta, "weight": 70},
            {"name": "B", "template_id": tb, "weight": 30},
        ],
        "control_percent": 10,
        "send_at": "2026-03-10T07:00:00Z",  # 10:00 in Moscow
        "local_hour": 11,
        "throttle_per_minute": 500,
        "cap_priority": 70,
    }
    api = web.post("/api/campaigns", json=doc, headers=bearer(secret_key))
    assert api.status_code == 201, api.text
    assert _spec_of(engine, campaign_id) == _spec_of(engine, api.json()["id"])
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(sa.select(campaigns))}
    mine, theirs = stored[campaign_id], stored[api.json()["id"]]
    for column in ("status", "variants", "control_percent", "send_at", "options", "fallback"):
        assert getattr(mine, column) == getattr(theirs, column), column
    [entry] = audit_rows(engine, "campaign.create", kind="user")
    assert entry.object_id == str(campaign_id) and entry.details["name"] == "Spring sale"

    detail = web.get(answer.headers["location"])
    assert detail.status_code == 200
    text = text_of(detail.text)
    assert "The campaign was saved." in text and "spring list" in text
    assert "A: spring A" in text and "B: spring B" in text

    # Editing: the form comes back filled (the time in the account's zone), and a change
    # is stored through the same validation.
    edit = web.get(f"/campaigns/{campaign_id}/edit")
    assert 'value="2026-03-10T10:00"' in edit.text and 'value="70"' in edit.text
    redrawn = web.post(
        f"/campaigns/form?campaign_id={campaign_id}", data=_form(token, segment_id, [ta])
    )
    assert f'action="/campaigns/{campaign_id}/edit"' in redrawn.text
    changed = web.post(
        f"/campaigns/{campaign_id}/edit",
        data=_form(token, segment_id, [ta, tb], control_percent="20", when="now"),
        follow_redirects=False,
    )
    assert changed.status_code == 303
    spec = _spec_of(engine, campaign_id)
    assert spec["control_percent"] == 20 and spec["send_at"] is None
    assert spec["throttle_per_minute"] is None  # emptied in the form: no throttle
    assert len(audit_rows(engine, "campaign.update", kind="user")) == 1


def test_a_bad_form_is_refused_beside_its_fields_and_nothing_is_stored(
    web: TestClient, engine: sa.Engine
) -> None:
    ids = people(engine, 3)
    segment_id = audience(engine, ids)
    ta = template(engine, "ta", "A")
    sms = template(engine, "ts", "S", channel="sms")
    token = signed_in(web, engine, "marketer")
    before = table_counts(engine)

    no_segment = web.post("/campaigns", data=_form(token, segment_id, [ta]) | {"segment_id": ""})
    assert no_segment.status_code == 422
    assert _beside(no_segment.text, "segment_id") == "Field required"
    assert "Nothing was saved" in no_segment.text
    assert 'name="name" value="Spring sale"' in no_segment.text  # the form as typed

    bad = _form(token, segment_id, [ta, 999])
    bad |= {"variants-0-weight": "0", "variants-1-weight": "abc", "control_percent": "80"}
    answer = web.post("/campaigns", data=bad)
    assert answer.status_code == 422
    assert "greater than 0" in _beside(answer.text, "variants-0-weight")
    assert "valid number" in _beside(answer.text, "variants-1-weight")
    assert "less than or equal to 50" in _beside(answer.text, "control_percent")

    unknown = web.post("/campaigns", data=_form(token, segment_id, [ta, 999]))
    assert unknown.status_code == 422
    assert _beside(unknown.text, "variants-1-template_id") == "template 999 does not exist"
    wrong_channel = web.post("/campaigns", data=_form(token, segment_id, [ta, sms]))
    assert "is for sms, not email" in _beside(wrong_channel.text, "variants-1-template_id")
    twice = web.post(
        "/campaigns", data=_form(token, segment_id, [ta, ta]) | {"variants-1-name": "A"}
    )
    assert "used twice" in _beside(twice.text, "variants-1-name")
    no_time = web.post("/campaigns", data=_form(token, segment_id, [ta], when="at"))
    assert _beside(no_time.text, "send_at") == "give the date and time to start"
    bad_time = web.post(
        "/campaigns", data=_form(token, segment_id, [ta], when="at", send_at="tomorrow")
    )
    assert "YYYY-MM-DD" in _beside(bad_time.text, "send_at")
    assert table_counts(engine) == before

    first = web.post("/campaigns", data=_form(token, segment_id, [ta]), follow_redirects=False)
    assert first.status_code == 303
    taken = web.post("/campaigns", data=_form(token, segment_id, [ta]))
    assert taken.status_code == 422 and "already has the name" in _beside(taken.text, "name")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(campaigns)).scalar() == 1
    assert len(audit_rows(engine, "campaign.create", kind="user")) == 1


def _draft(web: TestClient, engine: sa.Engine, token: str, ids: list[int]) -> int:
    ta = template(engine, "ta", "A for {{ customer.first_name }}")
    tb = template(engine, "tb", "B for {{ customer.first_name }}")
    answer = web.post(
        "/campaigns",
        data=_form(token, audience(engine, ids), [ta, tb], control_percent="0"),
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].split("/")[2].split("?")[0])


def test_preview_renders_the_customers_message_in_a_sandboxed_frame(
    web: TestClient, engine: sa.Engine
) -> None:
    ids = people(engine, 3)
    subscribe(engine, "email", ids)
    token = signed_in(web, engine, "marketer")
    campaign_id = _draft(web, engine, token, ids)
    with engine.connect() as conn:
        first_name = conn.execute(
            sa.text("select first_name from customers where id = :i"), {"i": ids[0]}
        ).scalar_one()

    found = web.get(f"/campaigns/{campaign_id}/customers", params={"q": first_name})
    assert f"customer_id={ids[0]}" in found.text

    part = web.get(f"/campaigns/{campaign_id}/preview", params={"customer_id": ids[0]})
    assert part.status_code == 200
    text = text_of(part.text)
    assert f"A for {first_name}" in text and f"B for {first_name}" in text
    assert "The policy allows it now." in text
    assert part.headers["hx-replace-url"] == f"/campaigns/{campaign_id}?customer_id={ids[0]}"
    frame_url = f"/campaigns/{campaign_id}/preview/{ids[0]}/0.html"
    assert f'src="{frame_url}"' in part.text and "sandbox" in part.text

    frame = web.get(frame_url)
    assert frame.status_code == 200 and f"Hi {first_name}" in frame.text
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert "script-src" not in frame.headers["content-security-policy"]
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    # Looking is never counted: no open pixel, links as written.
    assert "/t/o/" not in frame.text and "/t/c/" not in frame.text
    assert 'href="https://shop.example/sale"' in frame.text
    assert web.get(f"/campaigns/{campaign_id}/preview/{ids[0]}/5.html").status_code == 404

    # Without JavaScript the page itself shows the preview.
    full = web.get(f"/campaigns/{campaign_id}", params={"customer_id": ids[0]})
    assert f"A for {first_name}" in text_of(full.text)
    assert rows(engine, outbox) == []  # a preview stores nothing
    missing = web.get(f"/campaigns/{campaign_id}/preview", params={"customer_id": 10**9})
    assert missing.status_code == 404

    # A viewer sees no real customer's message (it holds their address).
    signed_in(web, engine, "viewer")
    page = web.get(f"/campaigns/{campaign_id}", params={"customer_id": ids[0]})
    assert page.status_code == 200 and f"A for {first_name}" not in page.text
    assert "your role does not show personal data" in page.text
    assert web.get(f"/campaigns/{campaign_id}/preview?customer_id={ids[0]}").status_code == 403
    assert web.get(frame_url).status_code == 403


def test_start_send_and_cancel_are_audited_and_figures_match_the_api(
    web: TestClient, app: Any, engine: sa.Engine, clock: SimulatedClock, secret_key: str
) -> None:
    ids = people(engine, 30)
    subscribe(engine, "email", ids)
    token = signed_in(web, engine, "marketer")
    campaign_id = _draft(web, engine, token, ids)
    assert "Start…" in web.get(f"/campaigns/{campaign_id}").text

    started = web.post(
        f"/campaigns/{campaign_id}/start", data={"csrf_token": token}, follow_redirects=False
    )
    assert started.status_code == 303
    assert started.headers["location"] == f"/campaigns/{campaign_id}?done=sending"
    [entry] = audit_rows(engine, "campaign.start", kind="user")
    assert entry.details["status"] == "sending"
    # The send ran after the answer (the test client waits for it), as the API's does.
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).status == "sent"
    again = web.post(f"/campaigns/{campaign_id}/start", data={"csrf_token": token})
    assert again.status_code == 409 and "already" in again.text
    assert web.get(f"/campaigns/{campaign_id}/edit").status_code == 409

    backend = InMemoryBackend("email")
    dispatcher = dispatcher_for(app.state.pipeline, {"email": backend})
    while dispatcher.run_once().claimed:
        pass
    dispatcher.close()
    sent = [r for r in rows(engine, outbox) if r.status == "sent"]
    assert len(sent) == 30
    with writing(engine) as conn:
        happened = [*event_for(sent[0], OPENED), *event_for(sent[0], CLICKED)]
        happened += event_for(sent[1], OPENED)
        app.state.pipeline.record_many(conn, happened)

    auth = bearer(secret_key)
    report = web.get(f"/api/campaigns/{campaign_id}/report", headers=auth).json()
    page = web.get(f"/campaigns/{campaign_id}")
    text = text_of(page.text)
    assert "Results" in text and "A/B test" in text
    for name, part in report["variants"].items():
        found = re.search(
            rf"<th scope=\"row\">{name}</th>\s*<td class=\"num\">(\d+)</td>\s*"
            r"<td class=\"num\">(\d+)</td>\s*<td class=\"num\">(\d+)</td>\s*"
            r"<td class=\"num\">(\d+)</td>\s*<td class=\"num\">(\d+)</td>",
            page.text,
        )
        assert found, name
        shown = tuple(int(x) for x in found.groups())
        assert shown == (
            part["audience"],
            part["messages"]["sent"],
            part["delivered"],
            part["opened"],
            part["clicked"],
        )
    assert report["total"]["opened"] == 2 and report["total"]["clicked"] == 1

    listing = web.get("/campaigns")
    messages = web.get(
        "/api/reports/messages", params={"period": "all", "group_by": "campaign"}, headers=auth
    ).json()["rows"]
    [mine] = [r for r in messages if r["campaign_id"] == str(campaign_id)]
    row = re.search(
        rf"<tr>\s*<td><a href=\"/campaigns/{campaign_id}\">.*?</tr>", listing.text, re.S
    )
    assert row, listing.text
    cells = text_of(row.group(0))
    assert "sent" in cells and " 30 " in cells  # audience and sent
    assert f"{mine['open_rate'] * 100:.1f}%" in cells and f"{mine['ctr'] * 100:.1f}%" in cells

    # Nothing was delivered for real yet... it was: cancel now finds nothing waiting.
    refused = web.post(f"/campaigns/{campaign_id}/cancel", data={"csrf_token": token})
    assert refused.status_code == 409 and "no message of it waits" in refused.text
    assert audit_rows(engine, "campaign.cancel", kind="user") == []


def test_cancel_a_scheduled_campaign(web: TestClient, engine: sa.Engine) -> None:
    ids = people(engine, 2)
    token = signed_in(web, engine, "admin")
    campaign_id = _draft(web, engine, token, ids)
    web.post(
        f"/campaigns/{campaign_id}/edit",
        data=_form(
            token,
            audience(engine, ids, "later"),
            [template(engine, "tl", "L")],
            name="later",
            when="at",
            send_at="2026-04-01T09:00",
        ),
    )
    started = web.post(
        f"/campaigns/{campaign_id}/start", data={"csrf_token": token}, follow_redirects=False
    )
    assert started.headers["location"].endswith("done=scheduled")
    cancelled = web.post(
        f"/campaigns/{campaign_id}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert cancelled.status_code == 303
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).status == "cancelled"
    [entry] = audit_rows(engine, "campaign.cancel", kind="user")
    assert entry.details == {"messages_cancelled": 0}


def test_results_show_the_report_the_experiment_and_the_verdict(
    web: TestClient,
    engine: sa.Engine,
    clock: SimulatedClock,
    shop: dict[str, Any],  # noqa: F811
) -> None:
    campaign_id = shop["campaign"]
    signed_in(web, engine, "analyst")
    page = web.get(f"/campaigns/{campaign_id}")
    assert page.status_code == 200
    with engine.connect() as conn:
        campaign = get_campaign(conn, campaign_id)
        report = campaign_report(conn, campaign)
        experiment = campaign_experiment(conn, campaign_id, Options(locale="en"), clock.now())
    text = html.unescape(text_of(page.text))
    assert " ".join(experiment["verdict"]["text"].split()) in text
    assert f"{report['audience']:,}" in text
    for group in experiment["groups"]:
        label = "control" if group["name"] == "control" else group["name"]
        found = re.search(rf'<th scope="row">{label}</th>(.*?)</tr>', page.text, re.S)
        assert found, label
        cells = re.findall(r'<td class="num">([^<]*)</td>', found.group(1))
        assert cells[5] == f"{group['recipients']:,}" and cells[6] == f"{group['conversions']:,}"
        assert cells[8] == f"{group['revenue']:,.2f}"
    for comparison in experiment["comparisons"]:
        assert f"{comparison['group']} / control" in text
    assert f'src="/campaigns/{campaign_id}/experiment.svg"' in page.text
    chart = web.get(f"/campaigns/{campaign_id}/experiment.svg")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert b"Revenue per recipient" in chart.content
    # No form that changes anything for an analyst.
    assert "/start" not in page.text and "/edit" not in page.text

    # In Russian, the verdict is the domain's Russian text.
    web.cookies.set("rapport_lang", "ru")
    russian = html.unescape(text_of(web.get(f"/campaigns/{campaign_id}").text))
    with engine.connect() as conn:
        ru = campaign_experiment(conn, campaign_id, Options(locale="ru"), clock.now())
    assert " ".join(ru["verdict"]["text"].split()) in russian and "Результаты" in russian


def test_viewers_and_analysts_change_nothing(web: TestClient, engine: sa.Engine) -> None:
    ids = people(engine, 2)
    token = signed_in(web, engine, "marketer")
    campaign_id = _draft(web, engine, token, ids)
    segment_id = audience(engine, ids, "other")
    tid = template(engine, "t-other", "O")
    for role in ("viewer", "analyst"):
        token = signed_in(web, engine, role)
        before = table_counts(engine)
        listing = web.get("/campaigns")
        assert listing.status_code == 200 and "New campaign" not in listing.text
        assert 'method="post" action="/campaigns' not in web.get(f"/campaigns/{campaign_id}").text
        assert web.get("/campaigns/new").status_code == 403
        assert web.get(f"/campaigns/{campaign_id}/edit").status_code == 403
        form = _form(token, segment_id, [tid])
        assert web.post("/campaigns", data=form).status_code == 403
        assert web.post(f"/campaigns/{campaign_id}/edit", data=form).status_code == 403
        for verb in ("start", "cancel"):
            answer = web.post(f"/campaigns/{campaign_id}/{verb}", data={"csrf_token": token})
            assert answer.status_code == 403, (role, verb)
        assert table_counts(engine) == before
    with engine.connect() as conn:
        assert get_campaign(conn, campaign_id).status == "draft"
