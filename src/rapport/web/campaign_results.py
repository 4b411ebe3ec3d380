"""The figures of the campaign pages, gathered from the functions the API answers with.

Nothing is computed here: each number comes from one of

- ``messaging.campaign_report.campaign_report`` (``/api/campaigns/{id}/report``): the
  audience, the control group, what the policy skipped, messages sent, delivered,
  opened, clicked, per variant;
- ``analytics.experiments.splits.campaign_experiment``
  (``/api/reports/experiments/campaigns/{id}``): recipients, conversions and revenue of
  every group, the control included, the lifts with their 95 % intervals and p-values,
  and the verdict in plain words, in the page's language;
- ``analytics.message_metrics.message_metrics`` (``/api/reports/messages``): the revenue
  credited to the campaign's messages by attribution, over all time, per campaign and
  per variant.

The lifts are worded by the verdict's own formatter (``verdict.Words``), so the table and
the sentence under it say the same thing the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.splits import campaign_experiment
from rapport.analytics.experiments.verdict import Words, interval_text, lift_text
from rapport.analytics.message_metrics import MessageFilter, message_metrics
from rapport.analytics.periods import preset
from rapport.messaging.campaign_report import campaign_report
from rapport.messaging.campaigns import CONTROL, Campaign
from rapport.store.tables import campaign_audience


def attributed_by_campaign(conn: sa.Connection, now: datetime) -> dict[str, dict[str, Any]]:
    """Every campaign's message metrics over all time, keyed by the campaign id (a string,
    as the messages carry it)."""
    rows = message_metrics(conn, preset("all", now.date()), group_by="campaign")
    return {str(m.key["campaign_id"]): m.as_json() for m in rows if m.key.get("campaign_id")}


def audience_sizes(conn: sa.Connection) -> dict[int, int]:
    """Everyone frozen into each started campaign's audience, control groups included —
    the report's ``audience`` — for the whole list in one query."""
    a = campaign_audience.c
    rows = conn.execute(sa.select(a.campaign_id, sa.func.count()).group_by(a.campaign_id))
    return {int(cid): int(n) for cid, n in rows}


def _comparison(words: Words, c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"group": c["group"], "reference": c["reference"]}
    for metric, key in (("conversion", "conversion"), ("revenue", "revenue_per_recipient")):
        figures = c[key]
        low, high = interval_text(words, figures, metric)
        out[metric] = {
            "lift": lift_text(words, figures, metric),
            "low": low,
            "high": high,
            "p": words.p(figures["p_adjusted"]),
            "significant": figures["significant"],
        }
    return out


def campaign_results(
    conn: sa.Connection, campaign: Campaign, now: datetime, language: str
) -> dict[str, Any]:
    """The results section: one row per variant and the control, the comparisons and the
    verdict (in ``language``), and the report and experiment they come from."""
    report = campaign_report(conn, campaign)
    experiment = campaign_experiment(conn, campaign.id, Options(locale=language), now)
    attributed = {
        str(m.key.get("variant")): m.as_json()
        for m in message_metrics(
            conn,
            preset("all", now.date()),
            MessageFilter(campaign_id=str(campaign.id)),
            group_by="variant",
        )
    }
    groups = {g["name"]: g for g in experiment["groups"]}
    names = [*report["variants"], *(n for n in groups if n not in report["variants"])]
    rows = []
    for name in names:
        part = report["variants"].get(name)
        rows.append(
            {
                "name": name,
                "control": name == CONTROL,
                "audience": report[CONTROL] if name == CONTROL else (part or {}).get("audience"),
                "report": part,
                "experiment": groups.get(name),
                "attributed": attributed.get(name),
            }
        )
    words = Words(language)
    return {
        "report": report,
        "experiment": experiment,
        "rows": rows,
        "comparisons": [_comparison(words, c) for c in experiment["comparisons"]],
        "verdict": experiment["verdict"],
        "charted": campaign.started_at is not None and experiment["recipients"] > 0,
    }
