"""A CRM strategy for the demo to run: which playbooks are on, the policy, campaigns.

A strategy is a small YAML file (examples/strategies/ has some), so two of them can be run
on the same simulated shop and compared (``rapport demo compare A.yaml B.yaml``):

.. code-block:: yaml

    name: no win-back
    scenarios: [welcome, abandoned-cart, cross-sell, reactivation]   # library playbooks
    policy:                       # the communication policy, as PUT /api/settings/policy
      channels: {email: {cap: {max_messages: 3, days: 7}}}
    global_control: 10            # percent of customers held out of all marketing
    campaigns:
      - name: Spring collection
        day: 20                   # day of the simulation it goes out, at local_hour
        control_percent: 10
        variants:
          - {name: A, subject: "Spring is here"}
          - {name: B, subject: "Spring is here: 10% off", discount: 0.10}

A bad file is refused before anything runs, every problem named by file and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rapport.errors import InvalidInput, Problem
from rapport.messaging.holdout import MAX_PERCENT
from rapport.messaging.policy import Policy, field_path, parse_policy
from rapport.scenarios.library_files import load_library
from rapport.segments.rules import parse_rule

RETAIL_PLAYBOOKS = (
    "welcome",
    "abandoned-cart",
    "abandoned-browse",
    "cross-sell",
    "reactivation",
    "win-back",
    "birthday",
    "opened-not-clicked",
    "early-access",
)


class StrategyError(ValueError):
    """A strategy file that cannot be run: which file, and each bad field in it."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variant(_Strict):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9 _-]+$")
    weight: float = Field(1.0, gt=0)
    subject: str = Field("New this season at the shop", min_length=1, max_length=200)
    # The share off the price the message offers (0.1 = 10 %): the response model reads it.
    discount: float = Field(0.0, ge=0, le=0.9)


class Campaign(_Strict):
    name: str = Field(min_length=1, max_length=100)
    day: int = Field(ge=0, le=3650)
    local_hour: int = Field(11, ge=0, le=23)
    # Who gets it: a segment rule tree (docs/segments.md); everyone with an e-mail consent.
    segment: dict[str, Any] = Field(default_factory=lambda: {"consent": "email"})
    control_percent: float = Field(10.0, ge=0, le=50)
    # How well the audience suits the message (the response model's segment fit).
    fit: float = Field(0.4, ge=0, le=1)
    variants: list[Variant] = Field(min_length=1, max_length=10)

    @field_validator("variants")
    @classmethod
    def _unique(cls, value: list[Variant]) -> list[Variant]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("variant names must differ")
        return value


class Strategy(_Strict):
    name: str = Field("strategy", min_length=1, max_length=100)
    scenarios: list[str] = Field(default_factory=lambda: list(RETAIL_PLAYBOOKS))
    policy: dict[str, Any] = Field(default_factory=dict)
    global_control: float = Field(10.0, ge=0, le=MAX_PERCENT)
    campaigns: list[Campaign] = Field(default_factory=list)

    @field_validator("scenarios")
    @classmethod
    def _playbooks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a playbook is named twice")
        return value

    @field_validator("campaigns")
    @classmethod
    def _campaign_names(cls, value: list[Campaign]) -> list[Campaign]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("campaign names must differ")
        return value

    def parsed_policy(self) -> Policy:
        return parse_policy(self.policy)


# What `rapport demo run` uses without --strategy: the retail playbooks, at most four
# e-mails a week, a 10 % global control group, one A/B-tested campaign on day 21.
DEFAULT = Strategy.model_validate(
    {
        "name": "playbook library",
        "policy": {"channels": {"email": {"cap": {"max_messages": 4, "days": 7}}}},
        "campaigns": [
            {
                "name": "New season",
                "day": 21,
                "variants": [
                    {"name": "A", "subject": "The new season is in"},
                    {
                        "name": "B",
                        "subject": "The new season is in: 10% off for you",
                        "discount": 0.1,
                    },
                ],
            }
        ],
    }
)


def parse_strategy(doc: Any, source: str, pack: str = "retail") -> Strategy:
    """Validate a strategy document; StrategyError names ``source`` and every bad field.

    ``scenarios`` name playbooks of ``pack``: the shop's are ``retail``, the bank's
    ``bank``; without ``scenarios`` a bank strategy runs every bank playbook.
    """
    if not isinstance(doc, dict):
        raise StrategyError(source, [Problem("", "a strategy is a mapping (name, scenarios, …)")])
    if pack != "retail" and "scenarios" not in doc:
        doc = {**doc, "scenarios": sorted(p.key for p in load_library() if p.pack == pack)}
    try:
        strategy = Strategy.model_validate(doc)
    except ValidationError as exc:
        problems = [
            Problem(field_path(e["loc"]), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise StrategyError(source, problems) from None
    problems = []
    known = {p.key for p in load_library() if p.pack == pack}
    for i, name in enumerate(strategy.scenarios):
        if name not in known:
            choices = ", ".join(sorted(known))
            problems.append(Problem(f"scenarios[{i}]", f"no {pack} playbook {name!r} ({choices})"))
    try:
        strategy.parsed_policy()
    except InvalidInput as exc:
        problems += [Problem(f"policy.{p.where}", p.reason) for p in exc.problems]
    for i, campaign in enumerate(strategy.campaigns):
        try:
            parse_rule(campaign.segment, f"campaigns[{i}].segment")
        except InvalidInput as exc:
            problems += exc.problems
    if problems:
        raise StrategyError(source, problems)
    return strategy


def load_strategy(path: Path, pack: str = "retail") -> Strategy:
    """The strategy in a YAML file; StrategyError when it is missing, not YAML, or bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StrategyError(str(path), [Problem("", f"cannot be read: {exc.strerror}")]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise StrategyError(str(path), [Problem(where, f"not valid YAML: {exc}")]) from None
    return parse_strategy(doc, str(path), pack)
