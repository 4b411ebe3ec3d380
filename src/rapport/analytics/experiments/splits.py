"""Split reports from the store: a campaign's variants and control group, or the paths and
control group of a scenario's random-split step.

Who is in which group:

* **campaign** — ``campaign_audience``, frozen when the campaign started: each customer's
  variant, ``control`` for the holdout; everyone was assigned at the start.
* **scenario split** — ``scenario_step_log``: the split step logs the path each run took,
  or ``control``. The hash behind it is per customer, so the unit is the customer, taken
  at their first pass through the step (a customer with several runs counts once).

Customers in the global control group (``messaging.holdout``) are left out of every group:
they get no marketing at all, so in a variant they would dilute it, and the campaign or
split control already stands for "no message".

The configured split (the variant weights and control share; for a scenario, its current
version's) is what the sample-ratio check compares the counts with.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.analytics.experiments import outcomes
from rapport.analytics.experiments.analysis import Group, analyse
from rapport.analytics.experiments.options import WINDOW_DAYS, Options
from rapport.analytics.experiments.outcomes import Span
from rapport.analytics.experiments.verdict import split_verdict
from rapport.analytics.experiments.weekly import weekly_figures
from rapport.messaging import holdout
from rapport.messaging.campaigns import CONTROL, Campaign, get_campaign
from rapport.scenarios.model import Scenario
from rapport.scenarios.store import get_scenario
from rapport.store.tables import campaign_audience, customers, scenario_step_log, scenario_versions


class StepNotFound(LookupError):
    """The scenario has no such step (in any version)."""


class NotASplit(LookupError):
    """The step exists but is not a random split."""


def _person(customer_id: Any) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(customers.c.merged_into, customer_id)


def campaign_experiment(
    conn: sa.Connection, campaign_id: int, options: Options, now: datetime
) -> dict[str, Any]:
    """The experiment report of a campaign (``CampaignNotFound`` when there is none)."""
    campaign = get_campaign(conn, campaign_id)
    shares = _campaign_shares(campaign)
    window = timedelta(days=options.window_days or WINDOW_DAYS)
    head = {
        "kind": "campaign",
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "started_at": campaign.started_at,
        "conversion": "completed order",
    }
    assigned = None
    if campaign.started_at is not None:
        a = campaign_audience.c
        excluded = holdout.in_global_control_sql(a.customer_id, holdout.global_control(conn))
        assigned = (
            sa.select(
                a.customer_id.label("key"),
                _person(a.customer_id).label("person"),
                a.variant.label("grp"),
                outcomes.timestamp(conn, campaign.started_at).label("at"),
            )
            .select_from(
                campaign_audience.join(customers, customers.c.id == a.customer_id, isouter=True)
            )
            .where(
                a.campaign_id == campaign.id,
                a.status != holdout.REASON,
                sa.not_(excluded),
            )
            .subquery("assigned")
        )
    reference = CONTROL if CONTROL in shares else str(campaign.variants[0]["name"])
    return _report(
        conn,
        head,
        assigned,
        shares,
        reference,
        window,
        options,
        now,
        same_time=True,
        scenario=None,
        started=campaign.started_at is not None,
    )


def _campaign_shares(campaign: Campaign) -> dict[str, float]:
    """The configured share of each group: variant weights of what the control leaves."""
    control = campaign.control_percent / 100
    total = sum(float(v.get("weight", 1)) for v in campaign.variants)
    shares = {
        str(v["name"]): (1 - control) * float(v.get("weight", 1)) / total for v in campaign.variants
    }
    if control > 0:
        shares[CONTROL] = control
    return shares


def scenario_experiment(
    conn: sa.Connection, scenario_id: int, step: str, options: Options, now: datetime
) -> dict[str, Any]:
    """The experiment report of a scenario's split step (``ScenarioNotFound``,
    :class:`StepNotFound`, :class:`NotASplit`)."""
    stored = get_scenario(conn, scenario_id)
    scenario = stored.parsed()
    names = _path_names(conn, scenario_id, step)
    current = scenario.steps.get(step)
    if current is None and not names:
        raise StepNotFound(f"scenario {scenario_id} has no step {step!r}")
    if current is not None and current.split is None:
        raise NotASplit(f"step {step!r} of scenario {scenario_id} is not a split")
    shares: dict[str, float] = {}
    if current is not None and current.split is not None:
        split = current.split
        total = sum(p.weight for p in split.paths)
        shares = {p.name: (1 - split.control / 100) * p.weight / total for p in split.paths}
        if split.control > 0:
            shares[CONTROL] = split.control / 100
    groups = [*shares, *(n for n in names if n not in shares)]
    goal = scenario.definition.goal
    days = options.window_days or (goal.within_days if goal is not None else WINDOW_DAYS)
    head = {
        "kind": "scenario",
        "scenario_id": scenario_id,
        "name": stored.name,
        "step": step,
        "conversion": f"goal: {goal.event}" if goal is not None else "completed order",
    }
    log = scenario_step_log.c
    ranked = (
        sa.select(
            log.customer_id,
            log.outcome,
            log.at,
            log.run_id,
            sa.func.row_number()
            .over(partition_by=log.customer_id, order_by=(log.at, log.id))
            .label("rn"),
        )
        .where(log.scenario_id == scenario_id, log.step == step, log.outcome.in_(groups))
        .subquery("passes")
    )
    r = ranked.c
    excluded = holdout.in_global_control_sql(r.customer_id, holdout.global_control(conn))
    assigned = (
        sa.select(
            r.customer_id.label("key"),
            _person(r.customer_id).label("person"),
            r.outcome.label("grp"),
            r.at.label("at"),
            r.run_id.label("run_id"),
        )
        .select_from(ranked.join(customers, customers.c.id == r.customer_id, isouter=True))
        .where(r.rn == 1, sa.not_(excluded))
        .subquery("assigned")
    )
    reference = CONTROL if CONTROL in groups else (groups[0] if groups else CONTROL)
    return _report(
        conn,
        head,
        assigned,
        shares or dict.fromkeys(groups, 0.0),
        reference,
        timedelta(days=days),
        options,
        now,
        same_time=False,
        scenario=scenario,
        started=True,
        known=bool(shares),
    )


def _path_names(conn: sa.Connection, scenario_id: int, step: str) -> list[str]:
    """Every path (and ``control``) the step had in any saved version, in order."""
    names: list[str] = []
    v = scenario_versions.c
    for (definition,) in conn.execute(
        sa.select(v.definition).where(v.scenario_id == scenario_id).order_by(v.version)
    ):
        for s in (definition or {}).get("steps", []):
            if not isinstance(s, dict) or s.get("id") != step or not s.get("split"):
                continue
            for p in s["split"].get("paths", []):
                if isinstance(p, dict) and str(p.get("name")) not in names:
                    names.append(str(p.get("name")))
            if s["split"].get("control") and CONTROL not in names:
                names.append(CONTROL)
    return names


def _report(
    conn: sa.Connection,
    head: dict[str, Any],
    assigned: sa.Subquery | None,
    shares: dict[str, float],
    reference: str,
    window: timedelta,
    options: Options,
    now: datetime,
    *,
    same_time: bool,
    scenario: Scenario | None,
    started: bool,
    known: bool = True,
) -> dict[str, Any]:
    counts = outcomes.group_counts(conn, assigned) if assigned is not None else {}
    names = [*shares, *(n for n in counts if n not in shares)]
    bounds = outcomes.span_of(conn, assigned) if assigned is not None and counts else None
    span = Span(*(bounds or (now, now)), now=now, window=window, weeks=options.weeks)
    goal = scenario.definition.goal if scenario is not None else None
    bought: dict[str, tuple[int, list[float]]] = {}
    weeks: list[dict[str, Any]] = []
    if assigned is not None and bounds is not None:
        bought = outcomes.order_outcomes(conn, assigned, span, same_time=same_time)
        goal_weekly = None
        if goal is not None and scenario is not None:
            hits = outcomes.goal_hits(conn, assigned, goal, scenario, span)
            converted, goal_weekly = outcomes.goal_outcomes(hits, span)
            bought = {
                g: (converted.get(g, 0), bought.get(g, (0, []))[1]) for g in {*bought, *converted}
            }
        cells = outcomes.week_cells(
            names,
            outcomes.assigned_by_week(conn, assigned, span),
            outcomes.weekly_orders(conn, assigned, span),
            goal_weekly,
            span,
        )
        weeks = weekly_figures(cells, names, reference, span.first, now)
    groups = [
        Group(
            name=name,
            recipients=counts.get(name, 0),
            conversions=bought.get(name, (0, []))[0],
            spenders=np.asarray(bought.get(name, (0, []))[1], dtype=np.float64),
            expected_share=shares.get(name) if known and name in shares else None,
        )
        for name in names
    ]
    if reference not in names:
        groups.insert(0, Group(reference, 0, 0))
    report = analyse(groups, reference, options)
    window_open = bounds is not None and span.window_end > now
    report = {
        **head,
        "window_days": window.days,
        "first_assigned_at": span.first if bounds else None,
        "last_assigned_at": span.last if bounds else None,
        "window_ends_at": span.window_end if bounds else None,
        "window_open": window_open,
        "metric": options.metric,
        **report,
        "weeks": weeks,
    }
    report["verdict"] = split_verdict(
        report,
        options,
        window_end=span.window_end if bounds else None,
        window_open=window_open,
        started=started,
    )
    return report
