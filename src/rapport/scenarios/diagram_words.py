"""The journey map's words: a step, a trigger, a duration said briefly, in any language.

The texts are English source strings passed through the caller's ``translate`` (the UI
gives its gettext, and its catalog translates every string of ``WORDS``); data such as
event names, template names and step ids is never translated. The same sentences serve
the list of scenarios ("trigger in words") and the boxes of the map.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapport.scenarios.model import (
    ApiTrigger,
    DateTrigger,
    Duration,
    EventTrigger,
    InactivityTrigger,
    PropertyMatch,
    Scenario,
    ScheduleTrigger,
    SegmentTrigger,
    Step,
)

Translate = Callable[[str], str]

# Every English text the map and the trigger sentence may show (the catalog's checklist).
WORDS: tuple[str, ...] = (
    # kinds of box
    "Trigger",
    "Send",
    "Wait",
    "Condition",
    "Split",
    "Action",
    "Exit",
    "End",
    "The run ends",
    "Journey map: %(name)s",
    # figures
    "Entered %(n)s",
    " · now %(n)s",
    "In flight %(n)s",
    "Converted %(n)s (%(rate)s)",
    "Completed %(n)s",
    "Sent %(n)s",
    " · skipped %(n)s",
    "Opened %(n)s (%(rate)s)",
    "Clicked %(n)s (%(rate)s)",
    "Orders attributed %(n)s",
    "Exited %(exited)s · failed %(failed)s",
    "Goal: %(event)s within %(days)s d",
    # edges
    "yes",
    "no",
    "control",
    "after %(time)s",
    "conv. %(rate)s",
    # durations
    "%(n)s d",
    "%(n)s h",
    "%(n)s min",
    # steps
    "transactional",
    "until %(window)s, local time",
    "until %(event)s, at most %(time)s",
    "opened %(step)s?",
    "clicked %(step)s?",
    "delivered %(step)s?",
    "if %(rule)s",
    "%(paths)s · control %(share)s",
    "set %(attribute)s",
    "add %(n)s points",
    "issue a coupon %(series)s",
    "call a webhook",
    "add to list %(list)s",
    "remove from list %(list)s",
    "task: %(text)s",
    "the run ends here",
    # triggers
    "Event %(event)s",
    "Event %(event)s where %(conditions)s",
    "Enters segment %(segment)s",
    "Leaves segment %(segment)s",
    "Date %(date)s, %(shift)s, at %(hour)s local time",
    "Date %(date)s at %(hour)s local time",
    "%(n)s d before",
    "%(n)s d after",
    "No %(event)s for %(days)s d",
    "Schedule %(cron)s (%(timezone)s), segment %(segment)s",
    "Started through the API",
    "birthday",
)

_OPS = {"eq": "=", "ne": "≠", "in": "∈", "gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


def _plain_number(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,}"


@dataclass(frozen=True)
class Formats:
    """How numbers and shares are written (the UI passes its language's Babel formats)."""

    number: Callable[[Any], str] = field(default=_plain_number)
    percent: Callable[[float], str] = field(default=lambda x: f"{x:.1%}")
    missing: str = "–"

    def rate(self, value: float | None) -> str:
        return self.missing if value is None else self.percent(value)


def _short(value: float) -> str:
    return f"{value:g}"


def duration_words(duration: Duration, t: Translate) -> str:
    """``{days: 3}`` → "3 d"; ``{hours: 1, minutes: 30}`` → "1 h 30 min"."""
    parts = []
    for amount, text in (
        (duration.days, "%(n)s d"),
        (duration.hours, "%(n)s h"),
        (duration.minutes, "%(n)s min"),
    ):
        if amount:
            parts.append(t(text) % {"n": _short(amount)})
    return " ".join(parts)


def _matches(where: list[PropertyMatch]) -> str:
    out = []
    for m in where:
        if m.op == "exists":
            out.append(f"{m.property} ∃")
            continue
        value = ", ".join(map(str, m.value)) if isinstance(m.value, list) else m.value
        out.append(f"{m.property} {_OPS.get(m.op, m.op)} {value}")
    return "; ".join(out)


def trigger_words(scenario: Scenario, t: Translate) -> str:
    """What starts a run, as a marketer says it ("No Order Completed for 30 d")."""
    tr = scenario.trigger
    if isinstance(tr, EventTrigger):
        if tr.where:
            return t("Event %(event)s where %(conditions)s") % {
                "event": tr.event,
                "conditions": _matches(tr.where),
            }
        return t("Event %(event)s") % {"event": tr.event}
    if isinstance(tr, SegmentTrigger):
        text = "Enters segment %(segment)s" if tr.on == "entered" else "Leaves segment %(segment)s"
        return t(text) % {"segment": tr.segment}
    if isinstance(tr, DateTrigger):
        date = t("birthday") if tr.date == "birthday" else tr.date
        hour = f"{tr.at_hour:02d}:00"
        if tr.offset_days:
            shift = "%(n)s d before" if tr.offset_days < 0 else "%(n)s d after"
            return t("Date %(date)s, %(shift)s, at %(hour)s local time") % {
                "date": date,
                "shift": t(shift) % {"n": abs(tr.offset_days)},
                "hour": hour,
            }
        return t("Date %(date)s at %(hour)s local time") % {"date": date, "hour": hour}
    if isinstance(tr, InactivityTrigger):
        return t("No %(event)s for %(days)s d") % {"event": tr.inactive, "days": tr.days}
    if isinstance(tr, ScheduleTrigger):
        return t("Schedule %(cron)s (%(timezone)s), segment %(segment)s") % {
            "cron": tr.schedule,
            "timezone": tr.timezone,
            "segment": tr.segment,
        }
    if isinstance(tr, ApiTrigger):
        return t("Started through the API")
    return "?"


def rule_words(rule: Mapping[str, Any]) -> str:
    """A segment rule in a few symbols, for a box (the whole rule is in its tooltip)."""
    for join, sign in (("all", " & "), ("any", " | ")):
        if join in rule and isinstance(rule[join], list):
            return "(" + sign.join(rule_words(r) for r in rule[join] if isinstance(r, dict)) + ")"
    if "not" in rule and isinstance(rule["not"], dict):
        return "¬" + rule_words(rule["not"])
    for key in ("attribute", "computed", "trait"):
        if key in rule:
            op = _OPS.get(str(rule.get("op", "eq")), str(rule.get("op", "")))
            return f"{rule[key]} {op} {rule.get('value', '')}".strip()
    if "event" in rule:
        text = str(rule["event"])
        times = rule.get("times")
        if isinstance(times, dict) and "at_least" in times:
            text += f" ≥{times['at_least']}×"
        if "within_last" in rule:
            text += f" ≤{rule['within_last']} d"
        if "not_for_days" in rule:
            text = f"¬{text} {rule['not_for_days']} d"
        return text
    if "message" in rule:
        return f"{rule['message']} ≤{rule.get('within_last', '?')} d"
    if "segment" in rule:
        return f"∈ {rule['segment']}"
    return json.dumps(rule, ensure_ascii=False, separators=(",", ":"))


def describe_step(step: Step, t: Translate) -> str:
    """What a step does, in one short line under its name."""
    if step.send is not None:
        s = step.send
        chain = " → ".join([s.channel or "", *(f.channel for f in s.fallback)]).strip(" →")
        text = f"{chain} · {s.template}" if chain else str(s.template)
        return text + (f" · {t('transactional')}" if s.transactional else "")
    if step.wait is not None:
        w = step.wait
        if w.duration is not None:
            return duration_words(w.duration, t)
        if w.until_window is not None:
            return t("until %(window)s, local time") % {"window": w.until_window}
        timeout = duration_words(w.timeout, t) if w.timeout else "?"
        return t("until %(event)s, at most %(time)s") % {"event": w.event, "time": timeout}
    if step.branch is not None:
        b = step.branch
        if b.outcome is not None:
            return t(f"{b.outcome} %(step)s?") % {"step": b.step}
        return t("if %(rule)s") % {"rule": rule_words(b.if_ or {})}
    if step.split is not None:
        sp = step.split
        paths = " / ".join(p.name for p in sp.paths)
        if sp.control:
            return t("%(paths)s · control %(share)s") % {
                "paths": paths,
                "share": f"{sp.control:g}%",
            }
        return paths
    if step.action is not None:
        return _action_words(step, t)
    return t("the run ends here")


def _action_words(step: Step, t: Translate) -> str:
    a = step.action
    assert a is not None
    kind = a.kind
    if kind == "set_attribute":
        return t("set %(attribute)s") % {"attribute": ", ".join(a.set_attribute or {})}
    if kind == "add_points":
        return t("add %(n)s points") % {"n": a.add_points}
    if kind == "issue_coupon":
        return t("issue a coupon %(series)s") % {"series": a.issue_coupon}
    if kind == "webhook":
        return t("call a webhook")
    if kind == "add_to_list":
        return t("add to list %(list)s") % {"list": a.add_to_list}
    if kind == "remove_from_list":
        return t("remove from list %(list)s") % {"list": a.remove_from_list}
    return t("task: %(text)s") % {"text": a.task}
