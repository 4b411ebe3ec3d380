"""Lift by week since the start: does the effect last, or was it novelty?

Week ``k`` is the ``k``-th seven days after the experiment's start (a campaign's start,
a split's first assignment). For each week and group: the recipients assigned by the
week's end, the share of them who converted **during that week** (after their own
assignment), and their revenue that week per recipient. Each group is compared with the
reference as in the headline figures (z-test and intervals on the rate, Welch on revenue),
without a multiple-comparison correction: the weeks are a picture of the trend, not a
test to stop on. A message whose lift is large in week 0 and gone by week 3 had a novelty
effect; one whose lift holds keeps earning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rapport.analytics.experiments import stats
from rapport.analytics.experiments.stats import finite

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class WeekCell:
    """One group in one week."""

    recipients: int
    conversions: int
    revenue: float
    revenue_squares: float


def weekly_figures(
    cells: dict[int, dict[str, WeekCell]],
    names: list[str],
    reference: str,
    start: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """``cells[week][group]``; weeks without a cell for a group count it as empty."""
    out = []
    empty = WeekCell(0, 0, 0.0, 0.0)
    for week in sorted(cells):
        by_group = cells[week]
        begins = start + week * WEEK
        ends = begins + WEEK
        groups = {}
        for name in names:
            c = by_group.get(name, empty)
            mean, _ = stats.moments(c.recipients, c.revenue, c.revenue_squares)
            groups[name] = {
                "recipients": c.recipients,
                "conversions": c.conversions,
                "conversion_rate": c.conversions / c.recipients if c.recipients else None,
                "revenue": c.revenue,
                "revenue_per_recipient": finite(mean),
            }
        ref = by_group.get(reference, empty)
        others = [n for n in names if n != reference]
        comparisons = {}
        if others:
            cs = [by_group.get(n, empty) for n in others]
            rates = stats.compare_rates(
                [c.conversions for c in cs],
                [c.recipients for c in cs],
                ref.conversions,
                ref.recipients,
            )
            m = [stats.moments(c.recipients, c.revenue, c.revenue_squares) for c in cs]
            rm, rv = stats.moments(ref.recipients, ref.revenue, ref.revenue_squares)
            means = stats.welch(
                [c.recipients for c in cs],
                [a for a, _ in m],
                [b for _, b in m],
                ref.recipients,
                rm,
                rv,
            )
            for i, name in enumerate(others):
                comparisons[name] = {
                    "conversion": {
                        "difference": finite(rates.difference[i]),
                        "difference_ci": [
                            finite(rates.difference_low[i]),
                            finite(rates.difference_high[i]),
                        ],
                        "relative": finite(rates.relative[i]),
                        "relative_ci": [
                            finite(rates.relative_low[i]),
                            finite(rates.relative_high[i]),
                        ],
                        "p_value": finite(rates.p_value[i]),
                    },
                    "revenue_per_recipient": {
                        "difference": finite(means.difference[i]),
                        "difference_ci": [
                            finite(means.difference_low[i]),
                            finite(means.difference_high[i]),
                        ],
                        "relative": finite(means.relative[i]),
                        "relative_ci": [
                            finite(means.relative_low[i]),
                            finite(means.relative_high[i]),
                        ],
                        "p_value": finite(means.p_value[i]),
                    },
                }
        out.append(
            {
                "week": week,
                "from": begins,
                "to": ends,
                "complete": ends <= now,
                "groups": groups,
                "comparisons": comparisons,
            }
        )
    return out
