"""The Segments pages: the list with sizes and trends, the builder's live count (the API's
preview, the same figure), save/update/delete with the audit log, problems beside the bad
condition, the two views of a rule round-tripping, masking and refusals, the CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.clock import SimulatedClock
from rapport.segments.rules import parse_rule
from rapport.store.tables import audit_log, segment_members, segments
from rapport.web.segment_overview import day_ends, trends
from rapport.web.segment_tree import rule_of, tree_of
from tests.conftest import basic, bearer
from tests.test_web_support import (
    audit_rows,
    csrf_of,
    text_of,
    web_client,  # noqa: F401  (the `web` fixture)
)
from tests.test_web_support import signed_in as _signed_in

PEOPLE = [  # user id, city, orders of 100 each
    ("u1", "Kazan", 3),
    ("u2", "Kazan", 1),
    ("u3", "Kazan", 0),
    ("u4", "Moscow", 5),
    ("u5", "Moscow", 0),
]
KAZAN_BUYERS = {
    "all": [
        {"attribute": "city", "op": "eq", "value": "Kazan"},
        {"computed": "orders_count", "op": "ge", "value": 1},
    ]
}
# The same rule as the builder's form posts it.
KAZAN_FORM = {
    "mode": "visual",
    "r:type": "all",
    "r.0:field": "attribute:city",
    "r.0:op": "eq",
    "r.0:value": "Kazan",
    "r.1:field": "computed:orders_count",
    "r.1:op": "ge",
    "r.1:value": "1",
}


def signed_in(client: TestClient, engine: sa.Engine, role: str) -> dict[str, str]:
    """Log in as a new person of ``role`` (forgetting the last one); htmx headers."""
    client.cookies.clear()
    _signed_in(client, engine, role)
    return {"X-CSRF-Token": csrf_of(client, "/segments"), "HX-Request": "true"}


def _shop(web: TestClient, write_key: str) -> None:
    """Five people through the ingest API; orders go through the pipeline too."""
    for user, city, orders in PEOPLE:
        traits = {"city": city, "email": f"{user}@example.com", "phone": "+79161234567"}
        answer = web.post(
            "/v1/identify", json={"userId": user, "traits": traits}, headers=basic(write_key)
        )
        assert answer.status_code == 200, answer.text
        for n in range(orders):
            answer = web.post(
                "/v1/track",
                json={
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"order_id": f"{user}-{n}", "total": 100},
                },
                headers=basic(write_key),
            )
            assert answer.status_code == 200, answer.text


def _api_segment(web: TestClient, secret_key: str, name: str, rules: Any) -> int:
    answer = web.post(
        "/api/segments", json={"name": name, "rules": rules}, headers=bearer(secret_key)
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _count_segments(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(segments)).scalar_one())


def _live_count(html: str) -> str:
    found = re.search(r'id="live-count">([^<]*)<', html)
    assert found, html
    return found.group(1)


# ---------------------------------------------------------------- the list


def test_the_list_shows_sizes_trends_users_and_filters_by_name(
    web: TestClient, engine: sa.Engine, clock: SimulatedClock, write_key: str, secret_key: str
) -> None:
    _shop(web, write_key)
    kazan = _api_segment(web, secret_key, "Kazan buyers", KAZAN_BUYERS)
    _api_segment(web, secret_key, "Moscow", {"attribute": "city", "op": "eq", "value": "Moscow"})
    reader = _api_segment(web, secret_key, "Kazan VIP", {"all": [{"segment": kazan}]})
    # Three days later u3 buys and enters; a day after, u2 moves to Moscow and leaves.
    clock.advance(timedelta(days=3))
    _track = {"userId": "u3", "event": "Order Completed", "properties": {"order_id": "x"}}
    assert web.post("/v1/track", json=_track, headers=basic(write_key)).status_code == 200
    clock.advance(timedelta(days=1))
    moved = {"userId": "u2", "traits": {"city": "Moscow"}}
    assert web.post("/v1/identify", json=moved, headers=basic(write_key)).status_code == 200

    signed_in(web, engine, "viewer")
    page = web.get("/segments")
    assert page.status_code == 200
    text = text_of(page.text)
    row = re.search(r"Kazan buyers.*?</tr>", page.text, re.S)
    assert row is not None
    cells = text_of(row.group(0))
    # Now u1 and u3; it was 2 (u1, u2) on the day it was made, nothing before.
    assert " 2 " in cells and "From 0 to 2 over 30 days" in row.group(0)
    assert "Segment Kazan VIP" in cells and "its rule" in cells
    assert f'href="/segments/{reader}"' in page.text
    assert "Moscow" in text and "New segment" not in text  # a viewer makes none

    # The trend is the stored membership at each day's end: the same as counting stays.
    with engine.connect() as conn:
        ends = day_ends(clock.now())
        sm = segment_members.c
        naive = [
            conn.execute(
                sa.select(sa.func.count()).where(
                    sm.segment_id == kazan,
                    sm.since <= end,
                    sa.or_(sm.until.is_(None), sm.until > end),
                )
            ).scalar_one()
            for end in ends
        ]
        shown = trends(conn, {kazan: naive[-1]}, clock.now(), [kazan])[kazan]
    assert shown == naive
    # Made at noon on day 25 of 30 (2 by its end), u3 in on day 28, u2 out today.
    assert naive == [0] * 25 + [2, 2, 2, 3, 2]

    found = web.get("/segments", params={"q": "kazan"}, headers={"HX-Request": "true"})
    assert found.status_code == 200
    found_text = text_of(found.text)
    assert "Kazan buyers" in found_text and "Kazan VIP" in found_text
    assert "Moscow" not in found_text  # filtered out
    nothing = web.get(
        "/segments",
        params={"q": "nope"},
        headers={"HX-Request": "true", "HX-Target": "segment-rows"},
    )
    assert "No segment or list matches nope." in text_of(nothing.text)
    assert "<html" not in nothing.text  # only the rows were sent


# ---------------------------------------------------------------- the live count


def test_the_live_count_is_the_apis_preview(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    _shop(web, write_key)
    api = web.post(
        "/api/segments/preview", json={"rules": KAZAN_BUYERS}, headers=bearer(secret_key)
    )
    assert api.status_code == 200, api.text
    headers = signed_in(web, engine, "analyst")
    answer = web.post("/segments/preview", data=KAZAN_FORM, headers=headers)
    assert answer.status_code == 200, answer.text
    assert _live_count(answer.text) == str(api.json()["count"]) == "2"
    shown = [int(i) for i in re.findall(r'<td><a href="/customers/(\d+)">\d+</a>', answer.text)]
    assert shown == [c["id"] for c in api.json()["sample"]][:10]
    assert "u1@example.com" in answer.text  # an analyst sees addresses
    # Every condition's problem slot is cleared out of band.
    assert 'id="problems-r-0" class="node-problems" hx-swap-oob="true"></div>' in answer.text

    # The same rule typed as YAML counts the same.
    yaml_rule = "all:\n  - attribute: city\n    op: eq\n    value: Kazan\n  - computed: orders_count\n    op: ge\n    value: 1\n"
    typed = web.post(
        "/segments/preview", data={"mode": "text", "rules_text": yaml_rule}, headers=headers
    )
    assert _live_count(typed.text) == "2"
    # Editing: a wider rule, the count follows.
    wider = KAZAN_FORM | {"r.1:value": "0"}
    assert _live_count(web.post("/segments/preview", data=wider, headers=headers).text) == "3"


def test_a_bad_condition_is_named_beside_it_and_nothing_is_stored(
    web: TestClient, engine: sa.Engine, write_key: str
) -> None:
    _shop(web, write_key)
    headers = signed_in(web, engine, "marketer")
    bad = KAZAN_FORM | {"r.1:field": "computed:revenue", "r.1:op": "between"}
    bad |= {"r.1:value": "500", "r.1:value2": "100"}
    live = web.post("/segments/preview", data=bad, headers=headers)
    assert _live_count(live.text) == "—"
    slot = re.search(r'id="problems-r-1"[^>]*>(.*?)</div>', live.text, re.S)
    assert slot is not None and "rules.all[1].value" in slot.group(1)
    assert "between needs low &lt;= high" in slot.group(1)
    other = re.search(r'id="problems-r-0"[^>]*>(.*?)</div>', live.text, re.S)
    assert other is not None and other.group(1) == ""  # the good condition stays clean

    token = headers["X-CSRF-Token"]
    saved = web.post(
        "/segments", data=bad | {"name": "Broken", "csrf_token": token}, follow_redirects=False
    )
    assert saved.status_code == 422
    slot = re.search(r'id="problems-r-1"[^>]*>(.*?)</div>', saved.text, re.S)
    assert slot is not None and "rules.all[1].value" in slot.group(1)
    assert 'value="Broken"' in saved.text  # the form comes back filled
    # A value of the wrong type, and YAML that does not load, are refused the same way.
    wrong = KAZAN_FORM | {"r.1:value": "many", "name": "Wrong", "csrf_token": token}
    answer = web.post("/segments", data=wrong, follow_redirects=False)
    assert answer.status_code == 422 and "rules.all[1].value" in answer.text
    text = {"mode": "text", "rules_text": "all: [", "name": "Text", "csrf_token": token}
    answer = web.post("/segments", data=text, follow_redirects=False)
    assert answer.status_code == 422 and "neither JSON nor YAML" in answer.text
    # A name is needed.
    nameless = KAZAN_FORM | {"name": " ", "csrf_token": token}
    answer = web.post("/segments", data=nameless, follow_redirects=False)
    assert answer.status_code == 422 and "must be 1 to 200 characters" in answer.text
    assert _count_segments(engine) == 0
    assert audit_rows(engine, "segment.create", kind="user") == []


# ---------------------------------------------------------------- save, change, delete


def test_create_update_and_delete_are_audited(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    _shop(web, write_key)
    headers = signed_in(web, engine, "marketer")
    token = headers["X-CSRF-Token"]
    made = web.post(
        "/segments",
        data=KAZAN_FORM | {"name": "Kazan buyers", "description": "d", "csrf_token": token},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    sid = int(made.headers["location"].split("/")[2].split("?")[0])
    page = web.get(made.headers["location"])
    assert 'id="segment-size">2<' in page.text
    words = text_of(page.text)
    assert "All of these: City is Kazan Orders at least 1" in words
    assert "The segment was created" in words
    (entry,) = audit_rows(engine, "segment.create", kind="user")
    assert (entry.object_id, entry.actor_name) == (str(sid), "marketer@example.com")
    assert entry.details["rules"] == KAZAN_BUYERS

    # The same name again is refused beside the name.
    again = web.post(
        "/segments",
        data=KAZAN_FORM | {"name": "Kazan buyers", "csrf_token": token},
        follow_redirects=False,
    )
    assert again.status_code == 422 and "already has the name" in again.text
    assert _count_segments(engine) == 1

    wider = KAZAN_FORM | {"r.1:value": "0", "name": "Kazan", "csrf_token": token}
    changed = web.post(f"/segments/{sid}", data=wider, follow_redirects=False)
    assert changed.status_code == 303, changed.text
    api = web.get(f"/api/segments/{sid}", headers=bearer(secret_key)).json()
    assert (api["name"], api["version"], api["size"]) == ("Kazan", 2, 3)
    (entry,) = audit_rows(engine, "segment.update", kind="user")
    assert entry.details["version"] == 2

    # Another segment reads it: deleting is refused, and says so.
    reader = _api_segment(web, secret_key, "Reader", {"segment": sid})
    refused = web.post(f"/segments/{sid}/delete", data={"confirm": "yes", "csrf_token": token})
    assert refused.status_code == 409
    assert "still in use" in text_of(refused.text) and "Segment Reader" in text_of(refused.text)
    web.delete(f"/api/segments/{reader}", headers=bearer(secret_key))
    # Without the box ticked nothing happens.
    unticked = web.post(f"/segments/{sid}/delete", data={"csrf_token": token})
    assert unticked.status_code == 422 and "tick the box" in unticked.text
    assert _count_segments(engine) == 1
    gone = web.post(
        f"/segments/{sid}/delete",
        data={"confirm": "yes", "csrf_token": token},
        follow_redirects=False,
    )
    assert (gone.status_code, gone.headers["location"]) == (303, "/segments?done=deleted")
    assert _count_segments(engine) == 0
    (entry,) = audit_rows(engine, "segment.delete", kind="user")
    assert entry.details == {"name": "Kazan", "kind": "rules"}
    assert web.get(f"/segments/{sid}").status_code == 404


def test_a_segment_a_scenario_starts_from_cannot_be_deleted(
    web: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    sid = _api_segment(
        web, secret_key, "Newcomers", {"computed": "orders_count", "op": "eq", "value": 0}
    )
    scenario = {
        "name": "Greet newcomers",
        "trigger": {"segment": "Newcomers"},
        "steps": [{"id": "end", "exit": True}],
    }
    made = web.post("/api/scenarios", json={"definition": scenario}, headers=bearer(secret_key))
    assert made.status_code == 201, made.text
    headers = signed_in(web, engine, "admin")
    page = web.get(f"/segments/{sid}")
    assert "Scenario Greet newcomers (trigger)" in text_of(page.text)
    assert "cannot be deleted while it is used" in text_of(page.text)
    refused = web.post(
        f"/segments/{sid}/delete", data={"confirm": "yes", "csrf_token": headers["X-CSRF-Token"]}
    )
    assert refused.status_code == 409 and _count_segments(engine) == 1
    assert audit_rows(engine, "segment.delete", kind="user") == []


# ---------------------------------------------------------------- who may do what


def test_a_viewer_looks_masked_and_cannot_change_anything(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    _shop(web, write_key)
    sid = _api_segment(web, secret_key, "Kazan buyers", KAZAN_BUYERS)
    headers = signed_in(web, engine, "viewer")
    page = web.get(f"/segments/{sid}")
    assert page.status_code == 200
    assert "u1@example.com" not in page.text and "***@example.com" in page.text
    assert "+79161234567" not in page.text
    assert 'name="do" value="save"' not in page.text and "Delete segment" not in page.text
    assert "/export.csv" not in page.text
    # No form that saves: the only one posting is logging out.
    assert re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text) == ["/logout"]
    live = web.post("/segments/preview", data=KAZAN_FORM, headers=headers)
    assert _live_count(live.text) == "2"
    assert "u1@example.com" not in live.text and "***@example.com" in live.text
    token = headers["X-CSRF-Token"]
    for role in ("viewer", "analyst"):
        if role == "analyst":
            token = signed_in(web, engine, role)["X-CSRF-Token"]
        create = web.post("/segments", data=KAZAN_FORM | {"name": "X", "csrf_token": token})
        update = web.post(f"/segments/{sid}", data=KAZAN_FORM | {"name": "Y", "csrf_token": token})
        delete = web.post(f"/segments/{sid}/delete", data={"confirm": "yes", "csrf_token": token})
        assert (create.status_code, update.status_code, delete.status_code) == (403, 403, 403)
    assert _count_segments(engine) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(segments.c.name, segments.c.version)).one() == (
            "Kazan buyers",
            1,
        )
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(audit_log)
                .where(audit_log.c.action.like("segment.%"), audit_log.c.actor_kind == "user")
            ).scalar_one()
            == 0
        )


def test_export_is_for_the_export_permission(
    web: TestClient, engine: sa.Engine, write_key: str, secret_key: str
) -> None:
    _shop(web, write_key)
    sid = _api_segment(web, secret_key, "Kazan buyers", KAZAN_BUYERS)
    signed_in(web, engine, "viewer")
    assert web.get(f"/segments/{sid}/export.csv").status_code == 403
    signed_in(web, engine, "analyst")
    page = web.get(f"/segments/{sid}")
    assert f'href="/segments/{sid}/export.csv"' in page.text
    answer = web.get(f"/segments/{sid}/export.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    api = web.get(f"/api/segments/{sid}/export.csv", headers=bearer(secret_key))
    assert answer.text == api.text  # the same export
    assert sorted(r["email"] for r in rows) == ["u1@example.com", "u2@example.com"]
    (entry,) = audit_rows(engine, "segment.export", kind="user")
    assert entry.object_id == str(sid)
    # A static list is exported through its membership.
    made = web.post("/api/lists", json={"name": "Call back"}, headers=bearer(secret_key))
    lid = made.json()["id"]
    added = web.post(
        f"/api/lists/{lid}/members",
        json={"emails": ["u4@example.com"]},
        headers=bearer(secret_key),
    )
    assert added.status_code == 200, added.text
    listed = list(csv.DictReader(io.StringIO(web.get(f"/segments/{lid}/export.csv").text)))
    assert [r["email"] for r in listed] == ["u4@example.com"]
    page = web.get(f"/segments/{lid}")
    assert "A static list" in text_of(page.text) and 'id="segment-form"' not in page.text


# ---------------------------------------------------------------- the two views


class _Form(HTMLParser):
    """The fields a browser would post from the builder form, as (name, value) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._first: tuple[str, str] | None = None
        self._chosen = False
        self._textarea: str | None = None
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "segment-form":
            self._inside = True
        if not self._inside:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._first, self._chosen = a.get("name"), None, False
        elif tag == "option" and self._select:
            if self._first is None:
                self._first = (self._select, a.get("value", ""))
            if "selected" in a:
                self.fields.append((self._select, a.get("value", "")))
                self._chosen = True
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.fields.append((a["name"], ""))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, text = self.fields[-1]
            self.fields[-1] = (name, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select" and self._select:
            if not self._chosen and self._first:
                self.fields.append(self._first)
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _post(
    web: TestClient, path: str, fields: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> Any:
    """A form with repeated names (checkbox groups), posted as a browser does."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    return web.post(
        path, content=urlencode(fields), headers=form | (headers or {}), follow_redirects=False
    )


def _form_of(html: str) -> list[tuple[str, str]]:
    parser = _Form()
    parser.feed(html)
    return parser.fields


ROUND_TRIPS = [
    {
        "all": [
            {"attribute": "city", "op": "in", "value": ["Kazan", "Moscow"]},
            {
                "any": [
                    {"computed": "orders_count", "op": "ge", "value": 3},
                    {"event": "Product Viewed", "times": {"at_least": 5}, "within_last": 7},
                ]
            },
            {"not": {"consent": "email", "status": "unsubscribed"}},
            {"attribute": "traits.plan", "op": "eq", "value": "7"},
            {"attribute": "birthday", "op": "anniversary_within", "value": 7},
            {"computed": "average_check", "op": "between", "value": [1000, 5000.5]},
            {
                "event": "Product Viewed",
                "where": [{"property": "category", "op": "eq", "value": "shoes"}],
                "times": {"at_least": 2},
                "within_last": 7,
            },
            {"event": "Order Completed", "not_for_days": 30},
            {"event": "Signed In", "last": {"more_than_days_ago": 14}},
            {"message": "opened", "campaign_id": "spring-sale", "within_last": 7},
            {"rfm_cell": ["champions", "loyal"]},
            {"lifecycle_stage": ["at_risk"]},
            {"not": {"bucket": [0, 9], "salt": "campaign-2026-03"}},
            {"attribute": "traits.newsletter", "op": "is_true"},
        ]
    },
    {"computed": "revenue", "op": "ge", "value": 100000},
]


@pytest.mark.parametrize("rule", ROUND_TRIPS)
def test_the_visual_and_text_views_round_trip(rule: dict[str, Any]) -> None:
    tree = tree_of(rule)
    back, problems = rule_of(tree)
    assert problems == [] and back == rule
    assert [n.type for n in tree.walk()].count("json") == (1 if "all" in rule else 0)
    assert parse_rule(back).to_json() == parse_rule(rule).to_json()


def test_the_page_posts_back_the_rule_it_shows(
    web: TestClient, engine: sa.Engine, secret_key: str
) -> None:
    """What the browser would post from the drawn form is the saved rule again, whichever
    view it is switched to; and the text view switches back to the same drawing."""
    rule = ROUND_TRIPS[0]
    sid = _api_segment(web, secret_key, "Everything", rule)
    headers = signed_in(web, engine, "marketer")
    page = web.get(f"/segments/{sid}")
    fields = _form_of(page.text)
    assert ("r.1.1:field", "event") in fields and ("r.6:field", "event") in fields
    assert ("r.8:field", "json") in fields  # `last` is shown as JSON
    as_text = _post(web, "/segments/builder", [*fields, ("do", "mode:text")], headers)
    assert as_text.status_code == 200
    text_fields = dict(_form_of('<form id="segment-form">' + as_text.text + "</form>"))
    assert text_fields["mode"] == "text"
    assert orjson.loads(text_fields["rules_text"]) == rule
    back = _post(
        web, "/segments/builder", [*list(text_fields.items()), ("do", "mode:visual")], headers
    )
    redrawn = _form_of('<form id="segment-form">' + back.text + "</form>")
    assert sorted(redrawn) == sorted(f for f in fields if f[0] != "do")
    saved = _post(web, f"/segments/{sid}", [*fields, ("do", "save")])
    assert saved.status_code == 303, saved.text
    stored = web.get(f"/api/segments/{sid}", headers=bearer(secret_key)).json()
    assert stored["rules"] == parse_rule(rule).to_json()


def test_the_editor_buttons_add_group_and_remove(web: TestClient, engine: sa.Engine) -> None:
    headers = signed_in(web, engine, "marketer")
    new = web.get("/segments/new")
    fields = _form_of(new.text)
    assert ("r:type", "all") in fields and ("r.0:field", "attribute:city") in fields
    steps = [
        ("add:r:any", "r.1:type"),
        ("add:r.1:cond", "r.1.1:field"),
        ("wrap:r.0:not", "r.0.0:field"),
    ]
    for action, expect in steps:
        answer = _post(web, "/segments/builder", [*fields, ("do", action)], headers)
        assert answer.status_code == 200, answer.text
        fields = _form_of(
            '<form id="segment-form">' + answer.text.split('<div id="preview"')[0] + "</form>"
        )
        assert expect in dict(fields), (action, fields)
    answer = _post(web, "/segments/builder", [*fields, ("do", "remove:r.1")], headers)
    fields = _form_of(
        '<form id="segment-form">' + answer.text.split('<div id="preview"')[0] + "</form>"
    )
    assert "r.1:type" not in dict(fields) and ("r.0:type", "not") in fields
    assert 'hx-swap-oob="true"' in answer.text  # the preview came along
