"""Scenarios: the list with its figures, each scenario's journey map, status changes, dry
runs from the page, and installing a playbook from the library.

Thin routes over the same domain functions as ``/api/scenarios`` (``scenarios.store``,
``scenarios.stats``, ``scenarios.dry_run``, ``scenarios.library``); what the pages show is
gathered in ``scenario_views.py``. Who may do what:

- everyone signed in reads the list, the map and the figures (``view``);
- a dry run changes nothing, but it replays a period of history and names the customers
  it would have reached with their addresses, so it needs ``view_personal``: analysts,
  marketers and admins, not viewers;
- activating, pausing, archiving and installing need ``edit_marketing``; each change and
  its audit entry are one transaction, and this process's index of active scenarios is
  reloaded at once, as after the API's calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.roles import Permission
from rapport.analytics.charts import MEDIA_TYPES
from rapport.errors import InvalidInput, Problem
from rapport.messaging.templates.store import TemplateConflict
from rapport.scenarios import library, store
from rapport.scenarios.diagram import journey_map
from rapport.segments.definitions import SegmentConflict
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.routes import scenario_views as views
from rapport.web.routes.dashboard import DEFAULT_PERIOD, PERIODS
from rapport.web.security import safe_next

router = APIRouter(include_in_schema=False)

VERBS = {"activate": "active", "pause": "paused", "archive": "archived"}
DONE = {"active", "paused", "archived", "installed"}


def _id(text: str) -> int:
    """A scenario id from the path; anything else is a page that does not exist."""
    if not text.isdigit() or len(text) > 12:
        raise NotFound(f"scenario {text}")
    return int(text)


def _stored(page: Page, scenario_id: int) -> store.StoredScenario:
    with page.engine.connect() as conn:
        try:
            return store.get_scenario(conn, scenario_id)
        except store.ScenarioNotFound:
            raise NotFound(f"scenario {scenario_id}") from None


def _reload_index(request: Request) -> None:
    request.app.state.pipeline.scenarios.index.invalidate()


# -- the list --------------------------------------------------------------------------------


def _list(
    page: Page, *, done: str | None = None, problems: Any = None, status: int = 200
) -> Response:
    with page.engine.connect() as conn:
        rows = views.list_rows(conn, page.clock.now(), page.language)
    return render(
        page,
        "scenarios.html",
        {
            "rows": rows,
            "status_labels": views.STATUS_LABELS,
            "playbooks": views.playbooks({r["name"] for r in rows}, page.language),
            "done": done if done in DONE else None,
            "problems": problems or [],
        },
        status=status,
    )


@router.get("/scenarios")
def scenarios_page(
    done: str | None = None, page: Page = Depends(require(Permission.VIEW))
) -> Response:
    return _list(page, done=done)


@router.post("/scenarios/library")
def install_playbook(
    request: Request,
    key: Annotated[str, Form(max_length=200)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """Install one playbook as a draft (``scenarios.library.install``, as the CLI does)."""
    now = page.clock.now()
    try:
        with writing(page.engine) as conn:
            (item,) = library.install(conn, now, only=[key])
            found = store.find_scenario(conn, item.name)
            audit.record(
                conn,
                page.actor,
                "scenario.install",
                "scenario",
                found.id,
                now,
                {
                    "playbook": item.key,
                    "result": item.result,
                    "templates": dict(item.templates),
                    "segments": item.segments,
                },
            )
    except (InvalidInput, TemplateConflict, store.ScenarioConflict, SegmentConflict) as exc:
        problems = getattr(exc, "problems", None) or [Problem("key", str(exc))]
        return _list(page, problems=problems, status=422)
    _reload_index(request)
    return RedirectResponse(f"/scenarios/{found.id}?done=installed", status_code=303)


@router.get("/scenarios/library/{key}.svg")
def playbook_map(key: str, page: Page = Depends(require(Permission.VIEW))) -> Response:
    """A playbook's journey map before it is installed (no figures yet)."""
    found = next((p for p in views.library_playbooks() if p.key == key), None)
    if found is None:
        raise NotFound(f"playbook {key}")
    t, formats = views.diagram_language(page.language)
    svg = journey_map(found.scenario, translate=t, formats=formats)
    return Response(svg, media_type=MEDIA_TYPES["svg"], headers={"Cache-Control": "no-store"})


# -- one scenario ----------------------------------------------------------------------------


def _detail(
    page: Page,
    scenario_id: int,
    *,
    period: str = DEFAULT_PERIOD,
    version: str = "",
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    found = _stored(page, scenario_id)
    context = views.detail_context(
        page.engine, page.clock.now(), page.language, found, period, version
    )
    context |= extra or {}
    return render(page, "scenario_detail.html", context, status=status)


@router.get("/scenarios/{scenario_id}.svg")
def scenario_map(
    scenario_id: str,
    period: str = DEFAULT_PERIOD,
    version: str = "",
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """The journey map alone, to embed elsewhere (the figures of the chosen period)."""
    found = _stored(page, _id(scenario_id))
    if period not in dict(PERIODS):
        return Response(
            f"Unknown period {period!r}; one of {', '.join(dict(PERIODS))}.",
            status_code=422,
            media_type="text/plain; charset=utf-8",
        )
    context = views.detail_context(
        page.engine, page.clock.now(), page.language, found, period, version
    )
    if context["svg"] is None:
        return Response(
            "The stored definition no longer checks out.", status_code=409, media_type="text/plain"
        )
    return Response(
        context["svg"], media_type=MEDIA_TYPES["svg"], headers={"Cache-Control": "no-store"}
    )


@router.get("/scenarios/{scenario_id}")
def scenario_page(
    scenario_id: str,
    period: str = DEFAULT_PERIOD,
    version: str = "",
    done: str | None = None,
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    return _detail(
        page,
        _id(scenario_id),
        period=period,
        version=version,
        extra={"done": done if done in DONE else None},
    )


@router.get("/scenarios/{scenario_id}/panel")
def scenario_panel(
    scenario_id: str,
    period: str = DEFAULT_PERIOD,
    version: str = "",
    page: Page = Depends(require(Permission.VIEW)),
) -> Response:
    """The map and the figures alone, for the period and version switch (htmx)."""
    sid = _id(scenario_id)
    context = views.detail_context(
        page.engine, page.clock.now(), page.language, _stored(page, sid), period, version
    )
    url = f"/scenarios/{sid}{context['query']}"
    return render(page, "_scenario_panel.html", context, headers={"HX-Push-Url": url})


def _change_status(
    request: Request, page: Page, scenario_id: int, verb: str, back: str
) -> Response:
    wanted = VERBS[verb]
    now = page.clock.now()
    _stored(page, scenario_id)
    try:
        with writing(page.engine) as conn:
            before = store.get_scenario(conn, scenario_id)
            after = store.set_status(conn, scenario_id, wanted, now)
            if after.status != before.status:
                audit.record(
                    conn,
                    page.actor,
                    f"scenario.{verb}",
                    "scenario",
                    scenario_id,
                    now,
                    {
                        "name": after.name,
                        "from": before.status,
                        "to": after.status,
                        "version": after.version,
                    },
                )
    except (InvalidInput, store.ScenarioConflict) as exc:
        problems = getattr(exc, "problems", None) or [Problem("status", str(exc))]
        return _detail(page, scenario_id, extra={"problems": problems}, status=422)
    _reload_index(request)
    target = safe_next(back, f"/scenarios/{scenario_id}")
    if not target.startswith("/scenarios"):
        target = f"/scenarios/{scenario_id}"
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}done={wanted}", status_code=303)


@router.post("/scenarios/{scenario_id}/dry-run")
def dry_run_from_page(
    scenario_id: str,
    period: Annotated[str, Form(max_length=40)] = "",
    limit: Annotated[str, Form(max_length=20)] = "",
    page: Page = Depends(require(Permission.VIEW_PERSONAL)),
) -> Response:
    """Replay a period through the scenario (nothing is sent or kept) and show the report:
    the panel alone for htmx, else the whole page with it."""
    sid = _id(scenario_id)
    _stored(page, sid)
    form = views.run_dry(
        page.engine,
        sid,
        views.DryRunForm(period=period, limit=limit),
        page.clock.now(),
        dict(PERIODS),
    )
    status = 422 if form.problems else 200
    context = {
        "dry": form,
        "sample": views.sample(form.report) if form.report else [],
        "what_words": views.what_words,
        "scenario_id": sid,
        "periods": PERIODS,
        "done": None,
    }
    if page.htmx:
        return render(page, "_scenario_dry_run.html", context, status=status)
    return _detail(page, sid, extra=context, status=status)


@router.post("/scenarios/{scenario_id}/{verb}")
def change_status(
    request: Request,
    scenario_id: str,
    verb: str,
    back: Annotated[str, Form(alias="next", max_length=500)] = "",
    page: Page = Depends(require(Permission.EDIT_MARKETING)),
) -> Response:
    """Activate, pause or archive (``scenarios.store.set_status``, as the API does)."""
    if verb not in VERBS:
        raise NotFound(f"action {verb}")
    return _change_status(request, page, _id(scenario_id), verb, back)
