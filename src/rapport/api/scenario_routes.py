"""Scenarios (management API, Bearer secret key): define, version, run, measure.

Thin routes over ``scenarios.store`` (definitions and versions), ``scenarios.stats``
(figures and the journey map) and the pipeline's engine (the API trigger). A definition
arrives as JSON (``{"definition": {...}}``) or as the YAML a marketer wrote
(``Content-Type: application/yaml``); either way every problem is answered 422 with its
path and nothing is stored. After any change the engine's index of active scenarios is
reloaded, so this process acts on it at once (other processes within seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rapport.api.audit_key import record_key_change
from rapport.api.auth import require_secret_key
from rapport.api.errors import ApiError
from rapport.customers.profile import live_id
from rapport.errors import InvalidInput, Problem
from rapport.scenarios import stats, store
from rapport.scenarios.model import ApiTrigger, Scenario, parse_scenario
from rapport.segments.problems import pydantic_problems
from rapport.store.engine import writing


def _errors(request: Request) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise ApiError(422, str(exc), exc.problems) from None
    except store.ScenarioConflict as exc:
        raise ApiError(409, str(exc)) from None
    except store.ScenarioNotFound as exc:
        raise ApiError(404, str(exc)) from None


router = APIRouter(tags=["scenarios"], dependencies=[Depends(require_secret_key), Depends(_errors)])

MAX_BODY = 1_000_000
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json", "")
Status = Literal["draft", "active", "paused", "archived"]  # store.STATUSES
M = TypeVar("M", bound=BaseModel)


class ScenarioChange(BaseModel):
    """A new version of the definition (the status is changed by its own calls);
    ``definition`` is the scenario as an object, or the YAML or JSON text of one."""

    model_config = ConfigDict(extra="forbid")

    definition: Any

    @field_validator("definition")
    @classmethod
    def _object_or_text(cls, value: Any) -> dict[str, Any] | str:
        # One clear reason instead of one per member of a union.
        if not isinstance(value, dict | str):
            raise ValueError("the scenario as an object, or its YAML or JSON text")
        return value


class NewScenario(ScenarioChange):
    """A scenario to create, a draft unless ``status`` says otherwise."""

    status: Literal["draft", "active", "paused"] = "draft"


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int = Field(ge=1)
    # What the run's messages may read as ``event.properties`` (and the entity key).
    properties: dict[str, Any] = Field(default_factory=dict)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["definition"],
                    "properties": {
                        "definition": {"type": "object"},
                        "status": {"type": "string", "enum": ["draft", "active", "paused"]},
                    },
                }
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _raw_body(request: Request) -> bytes:
    """The body, read before the (synchronous) route runs, within the size limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"body is larger than the limit of {MAX_BODY} bytes")
    return raw


def _parse_body(request: Request, raw: bytes, model: type[M]) -> M:
    """JSON into ``model``, or YAML text as the definition itself."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in YAML_TYPES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput([Problem("body", "the YAML is not UTF-8")]) from None
        return model.model_validate({"definition": text})
    if ctype not in JSON_TYPES:
        raise ApiError(415, f"content-type {ctype!r}: send application/json or application/yaml")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput([Problem("body", f"not JSON: {exc}")]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(pydantic_problems(exc, "body")) from None


def _detail(conn: sa.Connection, found: store.StoredScenario) -> dict[str, Any]:
    saved = stats.versions(conn, found.id)
    return found.as_dict() | {
        "live_runs": sum(v["live_runs"] for v in saved),
        "runs": sum(v["runs"] for v in saved),
        "versions": saved,
    }


def _changed(request: Request) -> None:
    """This process's engine sees the change at once (others within their index ttl)."""
    request.app.state.pipeline.scenarios.index.invalidate()


# -- definitions and versions -----------------------------------------------------------


@router.post("/api/scenarios", status_code=201, openapi_extra=_BODY_DOC)
def create(
    request: Request,
    raw: bytes = Depends(_raw_body),
    status: Literal["draft", "active", "paused"] | None = Query(
        None, description="with a YAML body (a JSON body says it in `status`)"
    ),
) -> Response:
    """A new scenario (version 1), a draft unless ``status`` says otherwise."""
    body = _parse_body(request, raw, NewScenario)
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        found = store.create_scenario(conn, body.definition, now, status or body.status)
        details = {"name": found.name, "version": found.version, "status": found.status}
        record_key_change(conn, request, "scenario.create", "scenario", found.id, details, now=now)
        answer = _detail(conn, found)
    _changed(request)
    return _json(answer, 201)


@router.get("/api/scenarios")
def list_scenarios(request: Request, status: Status | None = Query(None)) -> Response:
    """Every scenario with its status, latest version, trigger and live runs."""
    with request.app.state.engine.connect() as conn:
        found = store.all_scenarios(conn, [status] if status else None)
        live = stats.live_runs(conn)
    return _json(
        {
            "scenarios": [
                {
                    "id": s.id,
                    "name": s.name,
                    "description": s.definition.get("description", ""),
                    "status": s.status,
                    "version": s.version,
                    "trigger": s.definition.get("trigger"),
                    "steps": len(s.definition.get("steps", [])),
                    "live_runs": live.get(s.id, 0),
                    "created_at": s.created_at,
                    "updated_at": s.updated_at,
                }
                for s in found
            ]
        }
    )


@router.get("/api/scenarios/{scenario_id}")
def get(request: Request, scenario_id: int) -> Response:
    """The current definition, every version (with its runs), and the run counts."""
    with request.app.state.engine.connect() as conn:
        return _json(_detail(conn, store.get_scenario(conn, scenario_id)))


@router.put("/api/scenarios/{scenario_id}", openapi_extra=_BODY_DOC)
def update(request: Request, scenario_id: int, raw: bytes = Depends(_raw_body)) -> Response:
    """Save a new version; runs in flight keep the version they started on."""
    body = _parse_body(request, raw, ScenarioChange)
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        found = store.update_scenario(conn, scenario_id, body.definition, now)
        details = {"name": found.name, "version": found.version}
        record_key_change(conn, request, "scenario.update", "scenario", found.id, details, now=now)
        answer = _detail(conn, found)
    _changed(request)
    return _json(answer)


@router.get("/api/scenarios/{scenario_id}/versions/{version}")
def get_version(request: Request, scenario_id: int, version: int) -> Response:
    with request.app.state.engine.connect() as conn:
        store.get_scenario(conn, scenario_id)
        definition = store.version_definition(conn, scenario_id, version)
        about = next(v for v in stats.versions(conn, scenario_id) if v["version"] == version)
    return _json({"scenario_id": scenario_id, **about, "definition": definition})


# -- status ------------------------------------------------------------------------------


def _set_status(request: Request, scenario_id: int, status: str, verb: str) -> Response:
    """Audited as the scenarios page does (``scenario.<verb>``), only when it changed."""
    now = request.app.state.clock.now()
    with writing(request.app.state.engine) as conn:
        before = store.get_scenario(conn, scenario_id)
        found = store.set_status(conn, scenario_id, status, now)
        if found.status != before.status:
            details = {
                "name": found.name,
                "from": before.status,
                "to": found.status,
                "version": found.version,
            }
            action = f"scenario.{verb}"
            record_key_change(conn, request, action, "scenario", scenario_id, details, now=now)
        answer = _detail(conn, found)
    _changed(request)
    return _json(answer)


@router.post("/api/scenarios/{scenario_id}/activate")
def activate(request: Request, scenario_id: int) -> Response:
    """Start reacting to the trigger; runs a pause or an archive stopped resume."""
    return _set_status(request, scenario_id, "active", "activate")


@router.post("/api/scenarios/{scenario_id}/pause")
def pause(request: Request, scenario_id: int) -> Response:
    """No new runs, and runs stay where they are until it is activated again."""
    return _set_status(request, scenario_id, "paused", "pause")


@router.post("/api/scenarios/{scenario_id}/archive")
def archive(request: Request, scenario_id: int) -> Response:
    """Put away: like a pause (runs stay frozen), and out of the way of active work."""
    return _set_status(request, scenario_id, "archived", "archive")


# -- figures -----------------------------------------------------------------------------


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _window(
    since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput([Problem("query.until", "must be after since")])
    return since, until


_SINCE = Query(None, description="runs started at or after (ISO 8601; UTC if no offset)")
_UNTIL = Query(None, description="runs started before")


@router.get("/api/scenarios/{scenario_id}/stats")
def scenario_stats(
    request: Request,
    scenario_id: int,
    since: datetime | None = _SINCE,
    until: datetime | None = _UNTIL,
) -> Response:
    """Runs and conversion; per step entered, at it now, sent, skipped by reason, deferred,
    paths taken, failed; per send step its messages, delivered, opened, clicked; per
    split path and control group their conversion (docs/scenarios.md, Statistics)."""
    since, until = _window(since, until)
    with request.app.state.engine.connect() as conn:
        found = store.get_scenario(conn, scenario_id)
        figures = stats.scenario_stats(conn, found.id, found.parsed(), since, until)
    return _json(figures | {"status": found.status, "version": found.version})


@router.get("/api/scenarios/{scenario_id}/graph")
def graph(
    request: Request,
    scenario_id: int,
    version: int | None = Query(None, ge=1, description="a saved version; the current one"),
    since: datetime | None = _SINCE,
    until: datetime | None = _UNTIL,
) -> Response:
    """The journey map: steps as nodes with their figures, ways out as edges (``to``
    null ends the run), counts on the edges that name a choice."""
    since, until = _window(since, until)
    with request.app.state.engine.connect() as conn:
        found = store.get_scenario(conn, scenario_id)
        scenario: Scenario = found.parsed()
        if version is not None and version != found.version:
            scenario = parse_scenario(store.version_definition(conn, scenario_id, version))
        figures = stats.scenario_stats(conn, found.id, scenario, since, until)
    return _json(
        stats.graph(figures, scenario)
        | {"status": found.status, "version": version or found.version}
    )


@router.get("/api/customers/{customer_id}/runs", tags=["customers"])
def customer_runs(
    request: Request, customer_id: int, limit: int = Query(100, ge=1, le=1000)
) -> Response:
    """A customer's scenario runs, newest first, each with its step log."""
    with request.app.state.engine.connect() as conn:
        cid = live_id(conn, customer_id)
        if cid is None:
            raise ApiError(404, f"customer {customer_id} does not exist")
        runs = stats.customer_runs(conn, cid, limit)
    return _json({"customer_id": cid, "runs": runs})


# -- the API trigger ---------------------------------------------------------------------


def _start(state: Any, scenario_id: int, body: RunRequest) -> tuple[int, list[Any]]:
    pipeline = state.pipeline
    with writing(state.engine) as conn:
        found = store.get_scenario(conn, scenario_id)
        if not isinstance(found.parsed().trigger, ApiTrigger):
            raise store.ScenarioConflict(
                f"trigger: scenario {scenario_id} is not started through the API "
                "(its trigger is not {api: true})"
            )
        if found.status != "active":
            raise store.ScenarioConflict(
                f"status: scenario {scenario_id} is {found.status}; activate it first"
            )
        cid = live_id(conn, body.customer_id)
        if cid is None:
            raise ApiError(404, f"customer {body.customer_id} does not exist")
        now = state.clock.now()
        runs, events = pipeline.scenarios.start(conn, scenario_id, [cid], body.properties, now)
        if events:
            pipeline.record_many(conn, events, react=False)
    return cid, runs


@router.post("/api/scenarios/{scenario_id}/runs")
def start_run(request: Request, scenario_id: int, body: RunRequest) -> Response:
    """Start a run of an active scenario whose trigger is ``{api: true}`` for a customer.

    The entry rules apply (``once``, one live run per entity), so the answer says whether
    a run started; if it did, its first steps have run, and a message that follows at once
    is in the outbox before the answer.
    """
    state = request.app.state
    for attempt in (1, 2):
        try:
            cid, runs = _start(state, scenario_id, body)
            break
        except sa.exc.IntegrityError:
            # A concurrent call started the same customer's run (one live run per entity):
            # the second attempt sees it, and the entry rules answer.
            if attempt == 2:
                raise
    run = runs[0] if runs else None
    return _json(
        {
            "started": run is not None,
            "run_id": run.id if run else None,
            "customer_id": cid,
            "status": run.status if run else None,
            "step": run.step if run else None,
            "reason": None if run else "the entry rules allow no new run for this customer",
        },
        201 if run else 200,
    )
