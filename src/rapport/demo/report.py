"""``demo-report.html``: what the simulated days earned, in one self-contained file.

Every figure is the answer of the analytics function an API route calls, with the same
parameters, so the report and the API cannot disagree: each section keeps the route and
the query it stands for next to its answer, and the file carries those answers as JSON
(``<script id="report-data">``) beside the tables and charts drawn from them. Charts are
inline SVG from the analytics chart functions; the file loads nothing from anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rapport.analytics import charts
from rapport.analytics.business_charts import CHARTS
from rapport.analytics.business_reports import run_report
from rapport.analytics.experiments.chart import experiment_chart
from rapport.analytics.experiments.incrementality import global_control_report
from rapport.analytics.experiments.options import parse_options
from rapport.analytics.experiments.splits import campaign_experiment, scenario_experiment
from rapport.analytics.message_metrics import MessageFilter, crm_revenue_share, message_metrics
from rapport.analytics.periods import Period
from rapport.demo.verticals import SHOP_WORDS, Words
from rapport.scenarios.store import all_scenarios
from rapport.store.tables import campaigns

_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _plain(value: Any) -> Any:
    """As the API sends it: through orjson and back."""
    return orjson.loads(orjson.dumps(value, option=_JSON))


@dataclass
class Section:
    """One answer, with the API request that gives the same answer, and its chart."""

    path: str
    params: dict[str, str]
    answer: Any
    chart: Markup | None = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "params": self.params, "answer": self.answer}


def _span(period: Period) -> dict[str, str]:
    return {"from": period.first.isoformat(), "to": period.last.isoformat()}


def _attribution(conn: sa.Connection, period: Period) -> dict[str, Any]:
    """What ``GET /api/reports/attribution`` answers."""
    flt = MessageFilter()
    share = crm_revenue_share(conn, period, None)
    rows = [m.as_json() for m in message_metrics(conn, period, flt, "campaign")]
    steps = [m.as_json() for m in message_metrics(conn, period, flt, "scenario_step")]
    share["campaigns"] = [r for r in rows if r["campaign_id"] is not None]
    share["scenario_steps"] = [r for r in steps if r["scenario_id"] is not None]
    return share


def collect(
    conn: sa.Connection, period: Period, history: Period, now: datetime
) -> dict[str, Section]:
    """Every section's answer; ``period`` is the simulation, ``history`` the whole store."""
    span = _span(period)
    out: dict[str, Section] = {}
    whole = _span(history)
    for name, query in (("business", span), ("funnel", span), ("ltv", span), ("cohorts", whole)):
        report = run_report(conn, name, now, start=query["from"], end=query["to"])
        chart = _svg(CHARTS[name](report, "svg")) if name in CHARTS else None
        out[name] = Section(f"/api/reports/{name}", query, _plain(report.as_json()), chart)
    out["attribution"] = Section(
        "/api/reports/attribution", span, _plain(_attribution(conn, period))
    )
    weekly = [m.as_json() for m in message_metrics(conn, period, MessageFilter(), "week")]
    out["messages"] = Section(
        "/api/reports/messages",
        {**span, "group_by": "week"},
        _plain({"period": period.as_json(), "filter": {}, "group_by": "week", "rows": weekly}),
    )
    options = parse_options({})
    for stored in all_scenarios(conn, ["active"]):
        scenario = stored.parsed()
        for step_id in scenario.order:
            if scenario.steps[step_id].split is None:
                continue
            split = scenario_experiment(conn, stored.id, step_id, options, now)
            out[f"scenario:{stored.name}:{step_id}"] = Section(
                f"/api/reports/experiments/scenarios/{stored.id}/steps/{step_id}",
                {},
                _plain(split),
                _svg(experiment_chart(split, "svg")),
            )
    for campaign_id, name in conn.execute(sa.select(campaigns.c.id, campaigns.c.name)):
        variants = campaign_experiment(conn, int(campaign_id), options, now)
        out[f"campaign:{name}"] = Section(
            f"/api/reports/experiments/campaigns/{campaign_id}",
            {},
            _plain(variants),
            _svg(experiment_chart(variants, "svg")),
        )
    control = global_control_report(conn, period, parse_options({"metric": "revenue"}), now)
    out["global_control"] = Section(
        "/api/reports/experiments/global-control", span, _plain(control)
    )
    return out


# -- charts ---------------------------------------------------------------------------


def _svg(data: bytes) -> Markup:
    """Inline SVG: the XML declaration and doctype are for files, not for HTML."""
    text = data.decode("utf-8")
    return Markup(text[text.index("<svg") :])


def _by_scenario(conn: sa.Connection, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {str(s.id): s.name for s in all_scenarios(conn)}
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "sent": 0,
            "opened": 0,
            "clicked": 0,
            "unsubscribed": 0,
            "conversions": 0,
            "revenue": 0.0,
        }
    )
    for step in steps:
        row = rows[names.get(str(step["scenario_id"]), str(step["scenario_id"]))]
        for key in ("sent", "opened", "clicked", "unsubscribed", "conversions", "revenue"):
            row[key] += step[key] or 0
    out = [{"scenario": name, **figures} for name, figures in rows.items()]
    return sorted(out, key=lambda r: -r["revenue"])


def _revenue_chart(rows: list[dict[str, Any]], words: Words) -> bytes:
    fig, ax = charts.figure(8.0, 0.5 + 0.45 * max(len(rows), 1))
    names = [r["scenario"].removeprefix("playbook-") for r in rows][::-1]
    ax.barh(names, [r["revenue"] for r in rows][::-1])
    ax.set_xlabel(f"attributed {words.revenue}")
    ax.set_title(f"{words.revenue.capitalize()} from CRM by scenario (simulated)")
    return charts.to_bytes(fig, "svg")


def _weekly_chart(rows: list[dict[str, Any]]) -> bytes:
    fig, ax = charts.figure(8.0, 3.5)
    weeks = [r["week"] for r in rows]
    ax.bar(weeks, [r["sent"] for r in rows], label="sent")
    ax.set_ylabel("messages sent")
    other = ax.twinx()
    other.plot(weeks, [r["unsubscribed"] for r in rows], color=charts.PALETTE[3], marker="o")
    other.set_ylabel("unsubscribes", color=charts.PALETTE[3])
    ax.set_title("Messages and unsubscribes per week (simulated)")
    ax.tick_params(axis="x", labelrotation=45)
    return charts.to_bytes(fig, "svg")


# -- the file -------------------------------------------------------------------------


@dataclass
class Facts:
    """What the simulation itself knows, shown beside the analytics' figures."""

    customers: int
    days: int
    seed: int
    strategy: str
    planted_revenue: float
    caused_orders: int
    emails_caught: int
    # The business's words for what analytics calls revenue and orders (``verticals``).
    words: Words = SHOP_WORDS


def render(conn: sa.Connection, sections: dict[str, Section], facts: Facts) -> str:
    env = Environment(
        loader=PackageLoader("rapport.demo", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    scenarios = _by_scenario(conn, sections["attribution"].answer["scenario_steps"])
    weekly = sections["messages"].answer["rows"]
    data = orjson.dumps({k: s.as_json() for k, s in sections.items()}, option=_JSON).decode()
    return env.get_template("demo-report.html").render(
        facts=facts,
        s=sections,
        scenarios=scenarios,
        words=facts.words,
        revenue_chart=_svg(_revenue_chart(scenarios, facts.words)) if scenarios else None,
        weekly_chart=_svg(_weekly_chart(weekly)) if weekly else None,
        experiments=[
            (k, v) for k, v in sections.items() if k.startswith(("scenario:", "campaign:"))
        ],
        # JSON inside <script>: only "</" could end the element early.
        data=Markup(data.replace("</", "<\\/")),
    )
