"""The scenario definition: a trigger, entry and exit rules, a goal, and a graph of steps.

A scenario is written in YAML or JSON (or built in Python and validated the same way)::

    name: abandoned-cart
    trigger: {event: Product Added}
    entity_key: cart_id              # one run per cart: the event property that names it
    entry: {mode: every_time}
    exit_on:
      - {event: Order Completed, same_entity: true}   # the order of *that* cart
    goal: {event: Order Completed, within_days: 7}
    steps:
      - {id: wait, wait: {hours: 2}}
      - {id: first, send: {template: cart-reminder}}
      - {id: later, wait: {hours: 24}}
      - {id: second, send: {template: cart-reminder-2}}

Steps run in list order unless one names where to go (``next``, a branch's ``then`` /
``else``, a wait's ``on_event`` / ``on_timeout``, a split's variants); ``exit`` ends the
run. Conditions in branches are segment rules (docs/segments.md) evaluated for the one
customer at that moment. Every problem is reported with its path (``steps[2].send.
template``), all at once, like segment rules.

The model only describes; ``scenarios/engine.py`` runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channels.base import CHANNELS
from rapport.segments.problems import pydantic_problems
from rapport.segments.rules import Rule, load_text, parse_rule

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENTITY_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Duration(_Model):
    """A span written as any of days, hours, minutes (added together)."""

    days: float = Field(0, ge=0, le=3660)
    hours: float = Field(0, ge=0, le=87840)
    minutes: float = Field(0, ge=0, le=5270400)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if self.days == self.hours == self.minutes == 0:
            raise ValueError("give days, hours or minutes")
        return self

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


class PropertyMatch(_Model):
    """An event property compared for equality (``{cart_id: "c1"}``-style filters)."""

    property: str = Field(pattern=ENTITY_KEY.pattern)
    op: Literal["eq", "ne", "in", "gt", "ge", "lt", "le", "exists"] = "eq"
    value: Any = None


# -- triggers --------------------------------------------------------------------------


class EventTrigger(_Model):
    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyMatch] = Field(default_factory=list)


class SegmentTrigger(_Model):
    """Entering (or leaving) a segment or list, named by id or name."""

    segment: int | str
    on: Literal["entered", "exited"] = "entered"


class DateTrigger(_Model):
    """A date on the card: ``birthday`` or a trait (``traits.contract_date``); every year
    on that day plus ``offset_days`` (−3: three days before), at ``at_hour`` local time."""

    date: str = Field(pattern=r"^(birthday|traits\.[A-Za-z_][A-Za-z0-9_]*)$")
    offset_days: int = Field(0, ge=-366, le=366)
    at_hour: int = Field(10, ge=0, le=23)
    yearly: bool = True


class InactivityTrigger(_Model):
    """No ``inactive`` event (e.g. ``Order Completed``) for ``days`` days."""

    inactive: str = Field(min_length=1, max_length=200)
    days: int = Field(ge=1, le=3650)


class ScheduleTrigger(_Model):
    """A cron schedule (in ``timezone``) over the members of a segment at that moment;
    seasonal occasions are dated schedules (``0 10 8 3 *`` for the 8th of March)."""

    schedule: str = Field(min_length=9, max_length=120)
    segment: int | str
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _cron(self) -> ScheduleTrigger:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from croniter import croniter

        if not croniter.is_valid(self.schedule):
            raise ValueError(f"{self.schedule!r} is not a cron expression")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self


class ApiTrigger(_Model):
    """Started by ``POST /api/scenarios/{id}/runs`` with a customer (and a payload)."""

    api: Literal[True] = True


Trigger = (
    EventTrigger | SegmentTrigger | DateTrigger | InactivityTrigger | ScheduleTrigger | ApiTrigger
)
TRIGGERS: dict[str, type[_Model]] = {
    "event": EventTrigger,
    "segment": SegmentTrigger,
    "date": DateTrigger,
    "inactive": InactivityTrigger,
    "schedule": ScheduleTrigger,
    "api": ApiTrigger,
}


# -- steps ------------------------------------------------------------------------------


class FallbackSend(_Model):
    channel: str
    template: int | str


class ProductBlock(_Model):
    """The ``products`` the template renders: the recommender's picks for each customer
    (docs/recommendations.md); product-based strategies use the trigger's product_id."""

    strategy: Literal[
        "bought_together", "compatible", "viewed_not_bought", "popular", "new_arrivals", "personal"
    ]
    limit: int = Field(4, ge=1, le=100)


class Send(_Model):
    template: int | str
    channel: str | None = None  # the template's own channel when left out
    products: ProductBlock | None = None
    fallback: list[FallbackSend] = Field(default_factory=list, max_length=4)
    # Transactional messages (an order confirmation) pass caps and quiet hours.
    transactional: bool = False


class Wait(_Model):
    """One of: a duration; until a local time window; until an event (with a timeout)."""

    duration: Duration | None = None
    # "HH:MM-HH:MM" in the customer's timezone: go on at once inside it, else at its start.
    until_window: str | None = Field(None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    event: str | None = Field(None, min_length=1, max_length=200)
    where: list[PropertyMatch] = Field(default_factory=list)
    same_entity: bool = False
    timeout: Duration | None = None
    on_event: str | None = None
    on_timeout: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``wait: {hours: 2}`` means ``wait: {duration: {hours: 2}}``."""
        if isinstance(data, dict) and data and set(data) <= {"days", "hours", "minutes"}:
            return {"duration": data}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Wait:
        kinds = [k for k in ("duration", "until_window", "event") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a wait is one of duration, until_window or event")
        if self.event is None and (self.timeout or self.on_event or self.on_timeout):
            raise ValueError("timeout, on_event and on_timeout belong to a wait for an event")
        if self.event is not None and self.timeout is None:
            raise ValueError("a wait for an event needs a timeout")
        return self


class Branch(_Model):
    """``if`` a segment rule holds for the customer now, or a message outcome of an earlier
    send step (``outcome: opened`` of ``step: first``), go to ``then``, else ``else``."""

    if_: dict[str, Any] | None = Field(None, alias="if")
    outcome: Literal["delivered", "opened", "clicked"] | None = None
    step: str | None = None
    then: str | None = None
    else_: str | None = Field(None, alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> Branch:
        if (self.if_ is None) == (self.outcome is None):
            raise ValueError("a branch tests either a rule (if) or a message outcome")
        if self.outcome is not None and self.step is None:
            raise ValueError("a message-outcome branch names the send step it looks at")
        return self


class SplitPath(_Model):
    name: str = Field(min_length=1, max_length=100)
    weight: float = Field(gt=0)
    next: str | None = None


class Split(_Model):
    """Random split by a stable hash of (scenario, customer); ``control`` percent go
    nowhere (the run ends, recorded as control) — the holdout that shows the effect."""

    paths: list[SplitPath] = Field(min_length=1, max_length=10)
    control: float = Field(0, ge=0, le=90)


class Action(_Model):
    """Exactly one of these does something outside the run."""

    set_attribute: dict[str, Any] | None = None
    add_points: int | None = Field(None, ge=-1_000_000, le=1_000_000)
    issue_coupon: str | None = None  # a coupon series name (the loyalty programme's)
    webhook: str | None = Field(None, pattern=r"^https?://")
    add_to_list: int | str | None = None
    remove_from_list: int | str | None = None
    task: str | None = Field(None, min_length=1, max_length=500)  # for an account manager

    @model_validator(mode="after")
    def _one(self) -> Action:
        chosen = [k for k, v in self.__dict__.items() if v is not None]
        if len(chosen) != 1:
            raise ValueError(f"an action does exactly one of {', '.join(ACTIONS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.__dict__.items() if v is not None)


ACTIONS = (
    "set_attribute",
    "add_points",
    "issue_coupon",
    "webhook",
    "add_to_list",
    "remove_from_list",
    "task",
)


class Step(_Model):
    id: str = Field(pattern=STEP_ID.pattern)
    send: Send | None = None
    wait: Wait | None = None
    branch: Branch | None = None
    split: Split | None = None
    action: Action | None = None
    exit: bool | None = None
    next: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) not in (None, False)]
        if len(kinds) != 1:
            raise ValueError(f"a step is exactly one of {', '.join(STEP_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) not in (None, False))


STEP_KINDS = ("send", "wait", "branch", "split", "action", "exit")


# -- the scenario -------------------------------------------------------------------------


class Entry(_Model):
    """Who may start a run: ``every_time``; ``once`` ever; ``once_per`` ``days``."""

    mode: Literal["every_time", "once", "once_per"] = "once"
    days: int | None = Field(None, ge=1, le=3650)

    @model_validator(mode="after")
    def _days(self) -> Entry:
        if (self.mode == "once_per") != (self.days is not None):
            raise ValueError("days goes with mode once_per, and only with it")
        return self


class ExitOn(_Model):
    """An event that ends the run at once (``same_entity``: only the run of that entity)."""

    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyMatch] = Field(default_factory=list)
    same_entity: bool = False


class Goal(_Model):
    """The conversion: ``event`` within ``within_days`` of entering; reaching it ends the
    run as converted unless ``continue_after`` is set."""

    event: str = Field(min_length=1, max_length=200)
    within_days: int = Field(7, ge=1, le=365)
    where: list[PropertyMatch] = Field(default_factory=list)
    same_entity: bool = False
    continue_after: bool = False


class ScenarioDefinition(_Model):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    trigger: dict[str, Any]
    entity_key: str | None = Field(None, pattern=ENTITY_KEY.pattern)
    entry: Entry = Entry(mode="once", days=None)
    exit_on: list[ExitOn] = Field(default_factory=list, max_length=20)
    goal: Goal | None = None
    # Higher wins when frequency caps collide (transactional sends ignore caps).
    priority: int = Field(50, ge=0, le=100)
    steps: list[Step] = Field(min_length=1, max_length=200)


class Scenario:
    """A checked definition with its trigger parsed and its step graph resolved."""

    def __init__(self, definition: ScenarioDefinition, trigger: Any, rules: dict[str, Rule]):
        self.definition = definition
        self.trigger = trigger
        self.rules = rules  # branch step id → the parsed rule
        self.steps = {s.id: s for s in definition.steps}
        self.order = [s.id for s in definition.steps]

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def first(self) -> str:
        return self.order[0]

    def following(self, step_id: str) -> str | None:
        """Where a step goes when it does not say: the next in the list, or the end."""
        step = self.steps[step_id]
        if step.next is not None:
            return step.next
        i = self.order.index(step_id)
        return self.order[i + 1] if i + 1 < len(self.order) else None

    def edges(self, step_id: str) -> list[tuple[str, str | None]]:
        """(label, target) of every way out of a step; None ends the run (the diagram)."""
        step = self.steps[step_id]
        after = self.following(step_id)
        if step.exit:
            return []
        if step.branch is not None:
            return [
                ("then", step.branch.then or after),
                ("else", step.branch.else_ or after),
            ]
        if step.split is not None:
            return [(p.name, p.next or after) for p in step.split.paths]
        if step.wait is not None and step.wait.event is not None:
            return [
                ("event", step.wait.on_event or after),
                ("timeout", step.wait.on_timeout or after),
            ]
        return [("next", after)]

    def to_json(self) -> dict[str, Any]:
        return self.definition.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_scenario(data: dict[str, Any] | str, where: str = "scenario") -> Scenario:
    """A checked scenario, or ``InvalidInput`` listing every problem by its path."""
    if isinstance(data, str):
        data = load_text(data, where)
    if not isinstance(data, dict):
        raise InvalidInput([Problem(where, "a scenario is an object")])
    try:
        definition = ScenarioDefinition.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(pydantic_problems(exc, where)) from None
    problems: list[Problem] = []
    trigger = _trigger(definition.trigger, f"{where}.trigger", problems)
    rules: dict[str, Rule] = {}
    ids: dict[str, int] = {}
    for i, step in enumerate(definition.steps):
        at = f"{where}.steps[{i}]"
        if step.id in ids:
            problems.append(Problem(f"{at}.id", f"step id {step.id!r} is used twice"))
        ids.setdefault(step.id, i)
        if step.send is not None:
            for channel in (step.send.channel, *(f.channel for f in step.send.fallback)):
                if channel is not None and channel not in CHANNELS:
                    problems.append(Problem(f"{at}.send", f"unknown channel {channel!r}"))
        if step.branch is not None and step.branch.if_ is not None:
            try:
                rules[step.id] = parse_rule(step.branch.if_, f"{at}.branch.if")
            except InvalidInput as exc:
                problems.extend(exc.problems)
        if step.wait is not None and step.wait.same_entity and definition.entity_key is None:
            problems.append(Problem(f"{at}.wait.same_entity", "the scenario has no entity_key"))
    for i, step in enumerate(definition.steps):
        for field, target in _targets(step):
            if target is not None and target not in ids:
                problems.append(
                    Problem(f"{where}.steps[{i}].{field}", f"no step with id {target!r}")
                )
        if step.branch is not None and step.branch.step is not None:
            looked = step.branch.step
            if looked not in ids or definition.steps[ids[looked]].send is None:
                problems.append(
                    Problem(f"{where}.steps[{i}].branch.step", f"{looked!r} is not a send step")
                )
    for j, rule in enumerate(definition.exit_on):
        if rule.same_entity and definition.entity_key is None:
            problems.append(Problem(f"{where}.exit_on[{j}].same_entity", "no entity_key"))
    if definition.goal is not None and definition.goal.same_entity and not definition.entity_key:
        problems.append(Problem(f"{where}.goal.same_entity", "the scenario has no entity_key"))
    if problems or trigger is None:
        raise InvalidInput(problems or [Problem(f"{where}.trigger", "not a trigger")])
    scenario = Scenario(definition, trigger, rules)
    loop = _loop_without_wait(scenario)
    if loop:
        raise InvalidInput(
            [Problem(f"{where}.steps", f"steps {' → '.join(loop)} loop without a wait")]
        )
    return scenario


def _trigger(data: dict[str, Any], where: str, problems: list[Problem]) -> Any:
    keys = [k for k in TRIGGERS if k in data]
    if "schedule" in keys and "segment" in keys:  # a schedule's segment is its audience
        keys.remove("segment")
    if len(keys) != 1:
        problems.append(Problem(where, f"a trigger has exactly one of {', '.join(TRIGGERS)}"))
        return None
    model = TRIGGERS[keys[0]]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, where))
        return None


def _targets(step: Step) -> Iterable[tuple[str, str | None]]:
    yield "next", step.next
    if step.branch is not None:
        yield "branch.then", step.branch.then
        yield "branch.else", step.branch.else_
    if step.wait is not None:
        yield "wait.on_event", step.wait.on_event
        yield "wait.on_timeout", step.wait.on_timeout
    if step.split is not None:
        for k, path in enumerate(step.split.paths):
            yield f"split.paths[{k}].next", path.next


def _loop_without_wait(scenario: Scenario) -> list[str]:
    """A cycle of steps none of which waits would spin forever within one tick."""
    instant = {sid for sid, s in scenario.steps.items() if s.wait is None}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(sid: str) -> list[str]:
        state[sid] = 1
        path.append(sid)
        for _, target in scenario.edges(sid):
            if target is None or target not in instant:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[sid] = 2
        return []

    for sid in scenario.order:
        if sid in instant and sid not in state:
            found = visit(sid)
            if found:
                return found
    return []
