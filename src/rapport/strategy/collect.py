"""Everything the strategy document says, gathered as plain data for one period.

Each figure comes from the function the rest of Rapport shows it with, so the document
never disagrees with the product: segment sizes from ``segments.definitions.sizes`` (the
API's ``size``), the key figures from ``analytics.dashboard`` and
``analytics.business.business_report``, each scenario's figures from
``scenarios.stats.scenario_stats`` and its map from ``scenarios.diagram.journey_map``, the
policy and the global control group as stored, the loyalty programme when one was saved.

Texts built from data (rules in words, a scenario's trigger, the maps) are made here in the
document's language; headings and labels are the renderers' (``present``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from rapport.analytics.business import business_report
from rapport.analytics.dashboard import dashboard
from rapport.analytics.estimates import Estimate, insufficient, known
from rapport.analytics.message_metrics import MessageFilter, MessageMetrics, message_metrics
from rapport.analytics.periods import Period
from rapport.analytics.scope import scope_for
from rapport.errors import InvalidInput
from rapport.loyalty import programme as loyalty_programme
from rapport.messaging.holdout import GlobalControl, global_control
from rapport.messaging.policy import Policy, load_policy
from rapport.scenarios import stats
from rapport.scenarios.diagram import journey_map, trigger_words
from rapport.scenarios.library import SETTING as LIBRARY_SETTING
from rapport.scenarios.store import all_scenarios
from rapport.segments.config import read_setting
from rapport.segments.definitions import all_segments, sizes
from rapport.segments.describe import Sentence, describe
from rapport.strategy.language import Language

# The document covers the scenarios that act or may act again; drafts and archived ones
# are not part of the strategy yet (or any more).
SCENARIO_STATUSES = ("active", "paused")
Kind = Literal["money", "count", "percent", "days"]


@dataclass(frozen=True)
class SegmentEntry:
    id: int
    name: str
    description: str
    kind: str  # "rules" or "list"
    size: int
    rule: Sentence | None  # None for a static list, or a stored rule that no longer parses


@dataclass(frozen=True)
class ScenarioEntry:
    id: int
    name: str
    status: str
    version: int
    priority: int
    trigger: str | None  # in words; None when the stored definition no longer parses
    svg: str | None
    figures: dict[str, Any]  # entered, live, converted, conversion, sent, opened, clicked
    orders: int  # attributed to its messages in the period
    revenue: float


@dataclass(frozen=True)
class Kpi:
    key: str
    kind: Kind
    estimate: Estimate


@dataclass(frozen=True)
class LoyaltyContent:
    programme: loyalty_programme.Programme
    version: int
    updated_at: datetime | None


@dataclass(frozen=True)
class StrategyContent:
    shop: str | None
    period: Period
    period_name: str | None
    generated_at: datetime
    language: Language
    kpis: list[Kpi]
    trend: list[MessageMetrics]
    segments: list[SegmentEntry]
    scenarios: list[ScenarioEntry]
    policy: Policy
    control: GlobalControl
    loyalty: LoyaltyContent | None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def kpi(self, key: str) -> Kpi:
        return next(k for k in self.kpis if k.key == key)


def collect(
    conn: sa.Connection,
    period: Period,
    now: datetime,
    language: Language,
    *,
    shop: str | None = None,
    period_name: str | None = None,
) -> StrategyContent:
    """The document's content; ``shop`` defaults to the brand the playbooks were installed
    with (``rapport scenarios library install --brand``), else none is named."""
    board = dashboard(conn, period, now)
    return StrategyContent(
        shop=shop or _brand(conn),
        period=period,
        period_name=period_name,
        generated_at=now,
        language=language,
        kpis=_kpis(conn, period, board),
        trend=_trend(conn, period),
        segments=_segments(conn, language),
        scenarios=_scenarios(conn, period, language),
        policy=load_policy(conn),
        control=global_control(conn),
        loyalty=_loyalty(conn),
        alerts=board["alerts"],
    )


def _trend(conn: sa.Connection, period: Period) -> list[MessageMetrics]:
    """Messages by day for a quarter or less, by week up to two years, else by month; from
    the first day anything was sent, so "all" does not draw decades of empty bars."""
    grouping = "day" if period.days <= 92 else "week" if period.days <= 731 else "month"
    rows = message_metrics(conn, period, MessageFilter(), grouping)
    first = next((i for i, row in enumerate(rows) if row.sent), len(rows))
    return rows[first:]


def _brand(conn: sa.Connection) -> str | None:
    stored = read_setting(conn, LIBRARY_SETTING) or {}
    brand = stored.get("brand") if isinstance(stored, dict) else None
    name = brand.get("name") if isinstance(brand, dict) else None
    return str(name) if name else None


# -- key figures -----------------------------------------------------------------------------


def _estimate(doc: dict[str, Any]) -> Estimate:
    """An ``Estimate.as_json()`` back as an Estimate."""
    return Estimate(doc["status"], doc.get("value"), doc.get("reason"), doc.get("numbers") or {})


def _rate(value: float | None, reason: str) -> Estimate:
    return known(value) if value is not None else insufficient(reason)


def _kpis(conn: sa.Connection, period: Period, board: dict[str, Any]) -> list[Kpi]:
    """The dashboard's figures, then what only the business report knows (churn, time to
    repeat purchase, LTV and the CAC ceiling it allows), each with its status."""
    business, crm, messages = board["business"], board["crm"], board["messages"]
    report = business_report(conn, scope_for(conn, period, None))
    delivered = "needs delivered messages; there were 0"
    return [
        Kpi("revenue", "money", known(business["revenue"])),
        Kpi("orders", "count", known(business["orders"])),
        Kpi("buyers", "count", known(business["buyers"])),
        Kpi("active_customers", "count", known(business["active_customers"])),
        Kpi("average_check", "money", _estimate(business["average_check"])),
        Kpi("arpu", "money", _estimate(business["arpu"])),
        Kpi("repeat_order_share", "percent", _estimate(business["repeat_order_share"])),
        Kpi("time_to_repeat", "days", report.repeat.median),
        Kpi("churn_rate", "percent", report.churn),
        Kpi("ltv", "money", report.ltv.ltv),
        Kpi("cac_ceiling", "money", report.ltv.cac_ceiling),
        Kpi("crm_revenue", "money", known(crm["crm_revenue"])),
        Kpi("crm_share", "percent", _rate(crm["crm_share"], "needs revenue; there was none")),
        Kpi("messages_sent", "count", known(messages["sent"])),
        Kpi("open_rate", "percent", _rate(messages["open_rate"], delivered)),
        Kpi("ctr", "percent", _rate(messages["ctr"], delivered)),
        Kpi("unsubscribe_rate", "percent", _rate(messages["unsubscribe_rate"], delivered)),
        Kpi("active_scenarios", "count", known(board["active_scenarios"])),
    ]


# -- segments ------------------------------------------------------------------------------


def _segments(conn: sa.Connection, language: Language) -> list[SegmentEntry]:
    found = all_segments(conn)
    names = {s.id: s.name for s in found}
    counts = sizes(conn)
    entries = []
    for segment in found:
        rule = None
        if segment.kind == "rules":
            try:
                rule = describe(segment.rule().to_json(), language.translate, names)
            except (InvalidInput, ValueError):
                rule = None  # shown as "the rule no longer checks out"
        entries.append(
            SegmentEntry(
                segment.id,
                segment.name,
                segment.description,
                segment.kind,
                counts.get(segment.id, 0),
                rule,
            )
        )
    return entries


# -- scenarios -----------------------------------------------------------------------------


def _scenarios(conn: sa.Connection, period: Period, language: Language) -> list[ScenarioEntry]:
    """Active then paused, each with its map drawn with the runs started in the period and
    the orders attributed to each send step (as the scenario's page draws it)."""
    earned: dict[str, dict[str, tuple[int, float]]] = {}
    for m in message_metrics(conn, period, MessageFilter(), "scenario_step"):
        sid, step = m.key.get("scenario_id"), m.key.get("step")
        if sid is None:
            continue
        steps = earned.setdefault(str(sid), {})
        orders, revenue = steps.get(str(step), (0, 0.0))
        steps[str(step)] = (orders + m.conversions, revenue + m.revenue)
    found = sorted(
        all_scenarios(conn, SCENARIO_STATUSES),
        key=lambda s: (SCENARIO_STATUSES.index(s.status), s.name.lower()),
    )
    entries = []
    for stored in found:
        steps = earned.get(str(stored.id), {})
        orders = sum(o for o, _ in steps.values())
        revenue = sum(r for _, r in steps.values())
        try:
            scenario = stored.parsed()
        except InvalidInput:
            scenario = None
        trigger = svg = None
        figures: dict[str, Any] = {}
        if scenario is not None:
            counted = stats.scenario_stats(conn, stored.id, scenario, period.start, period.end)
            runs = counted["runs"]
            figures = {
                "entered": runs["entered"],
                "live": runs["live"],
                "converted": runs["converted"] if scenario.definition.goal else None,
                "conversion": counted["conversion"] if scenario.definition.goal else None,
                "sent": sum(s["sent"] for s in counted["steps"]),
                "opened": sum(s.get("opened", 0) for s in counted["steps"]),
                "clicked": sum(s.get("clicked", 0) for s in counted["steps"]),
            }
            trigger = trigger_words(scenario, language.translate)
            sends = {sid for sid, s in scenario.steps.items() if s.send is not None}
            svg = journey_map(
                scenario,
                counted,
                translate=language.translate,
                formats=language.formats(),
                id_prefix=f"jm{stored.id}",
                conversions={sid: steps.get(sid, (0, 0.0))[0] for sid in sends},
            )
        entries.append(
            ScenarioEntry(
                stored.id,
                stored.name,
                stored.status,
                stored.version,
                int(stored.definition.get("priority", 50)),
                trigger,
                svg,
                figures,
                orders,
                round(revenue, 2),
            )
        )
    return entries


def _loyalty(conn: sa.Connection) -> LoyaltyContent | None:
    """The stored programme; None when none was ever saved (the defaults are switched off
    and say nothing about a strategy)."""
    stored = loyalty_programme.load_stored(conn)
    if stored.version == 0:
        return None
    return LoyaltyContent(stored.programme, stored.version, stored.updated_at)
