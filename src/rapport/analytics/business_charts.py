"""Charts of the business reports: funnel bars, cohort heatmap, LTV by cohort, RFM grid.

Each takes a report and returns the figure's bytes in the asked format, drawn with the
shared style (analytics/charts.py). A figure that cannot be estimated is drawn as "n/a"
in place of a bar, so a chart never shows a figure the report itself refuses to give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rapport.analytics.charts import PALETTE, Format, figure, to_bytes
from rapport.analytics.cohorts import CohortReport
from rapport.analytics.funnel import FunnelReport
from rapport.analytics.ltv import LtvReport
from rapport.analytics.rfm_grid import SCORES, RfmGridReport

# Beyond this many columns or rows, cell labels would overlap: colour alone says it.
_LABEL_LIMIT = 16
# The LTV chart shows the most recent cohorts; older ones stay in the report's table.
_LTV_COHORTS = 24


def _title(ax: Any, text: str, report: Any) -> None:
    p = report.scope.period
    where = f" · {report.scope.segment_name}" if report.scope.segment_name else ""
    ax.set_title(f"{text}, {p.first} – {p.last}{where}", loc="left")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#868e96")
    ax.set_xticks([])
    ax.set_yticks([])


def funnel_chart(report: FunnelReport, fmt: Format = "svg") -> bytes:
    fig, ax = figure(8.0, 4.5)
    names = [s.name for s in report.stages]
    counts = [s.customers for s in report.stages]
    bars = ax.bar(names, counts, color=PALETTE[0])
    bars[-1].set_color(PALETTE[1])  # reactivation is the loop back, not the next step
    top = max(counts) if counts else 0
    for bar, stage in zip(bars, report.stages, strict=True):
        lines = [f"{stage.customers:,}"]
        if stage.conversion is not None:
            lines.append(
                f"{stage.conversion.value * 100:.1f}% of eligible"
                if stage.conversion.ok and stage.conversion.value is not None
                else "n/a of eligible"
            )
        ax.annotate(
            "\n".join(lines),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylim(0, top * 1.3 if top else 1)
    ax.set_ylabel("customers")
    _title(ax, "Funnel", report)
    return to_bytes(fig, fmt)


def cohort_chart(report: CohortReport, fmt: Format = "svg") -> bytes:
    rows = report.cohorts
    width = max((c.observed for c in rows), default=0) + 1
    fig, ax = figure(max(6.0, min(14.0, 1.2 + 0.5 * width)), max(3.0, 1.0 + 0.35 * len(rows)))
    if not rows:
        _empty(ax, "no cohort in this period")
        _title(ax, "Retention by month of first order", report)
        return to_bytes(fig, fmt)
    # Month +0 is the acquisition month itself (everyone bought): the map starts at +1.
    months = max(width - 1, 1)
    shares = np.full((len(rows), months), np.nan)
    for i, c in enumerate(rows):
        for k in range(1, c.observed + 1):
            share = c.share(k)
            if share is not None:
                shares[i, k - 1] = share * 100
    image = ax.imshow(
        np.ma.masked_invalid(shares), aspect="auto", cmap="Blues", vmin=0, interpolation="none"
    )
    ax.grid(False)
    ax.set_xticks(range(months))
    ax.set_xticklabels([f"+{k}" for k in range(1, months + 1)], fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c.month} ({c.customers:,})" for c in rows], fontsize=8)
    ax.set_xlabel("months since the first order")
    if months <= _LABEL_LIMIT * 2 and len(rows) <= _LABEL_LIMIT * 2:
        peak = np.nanmax(shares) if np.isfinite(shares).any() else 0
        for i in range(len(rows)):
            for j in range(months):
                if np.isfinite(shares[i, j]):
                    dark = peak and shares[i, j] > peak * 0.6
                    ax.text(
                        j,
                        i,
                        f"{shares[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "#212529",
                    )
    fig.colorbar(image, ax=ax, label="% of the cohort who bought that month")
    _title(ax, "Retention by month of first order", report)
    return to_bytes(fig, fmt)


def ltv_chart(report: LtvReport, fmt: Format = "svg") -> bytes:
    rows = report.cohorts[-_LTV_COHORTS:]
    fig, ax = figure(max(6.0, min(14.0, 1.5 + 0.45 * len(rows))), 4.5)
    if not rows:
        _empty(ax, "no active cohort in this period")
        _title(ax, "LTV by month of first order", report)
        return to_bytes(fig, fmt)
    x = np.arange(len(rows))
    values = [c.ltv.ltv.value or 0.0 for c in rows]
    bars = ax.bar(x, values, color=PALETTE[0], label="LTV (frequency × check × lifetime)")
    to_date = [c.revenue_per_customer or 0.0 for c in rows]
    ax.plot(x, to_date, "o", color=PALETTE[1], label="revenue per customer so far")
    top = max([*values, *to_date, 0.0])
    for bar, c in zip(bars, rows, strict=True):
        if not c.ltv.ltv.ok:
            ax.text(bar.get_x() + bar.get_width() / 2, top * 0.02, "n/a", ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([c.month for c in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, top * 1.15 if top else 1)
    ax.set_ylabel("revenue per customer")
    ax.legend(loc="upper left", fontsize=8)
    _title(ax, "LTV by month of first order", report)
    return to_bytes(fig, fmt)


def rfm_chart(report: RfmGridReport, fmt: Format = "svg") -> bytes:
    fig, ax = figure(7.0, 5.5)
    recency = list(reversed(SCORES))  # R 5 (recent) on top
    counts = np.array([[report.grid[(r, f)].customers for f in SCORES] for r in recency])
    image = ax.imshow(counts, cmap="Blues", vmin=0, aspect="auto", interpolation="none")
    ax.grid(False)
    ax.set_xticks(range(len(SCORES)))
    ax.set_xticklabels([str(f) for f in SCORES])
    ax.set_yticks(range(len(recency)))
    ax.set_yticklabels([str(r) for r in recency])
    ax.set_xlabel("frequency score (F)")
    ax.set_ylabel("recency score (R)")
    peak = counts.max() if counts.size else 0
    for i, r in enumerate(recency):
        for j, f in enumerate(SCORES):
            cell = report.grid[(r, f)]
            ax.text(
                j,
                i,
                f"{cell.customers:,}\n{cell.revenue:,.0f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if peak and cell.customers > peak * 0.6 else "#212529",
            )
    fig.colorbar(image, ax=ax, label="customers (label: customers, revenue in the period)")
    _title(ax, "RFM grid", report)
    return to_bytes(fig, fmt)


CHARTS: dict[str, Callable[[Any, Format], bytes]] = {
    "funnel": funnel_chart,
    "cohorts": cohort_chart,
    "ltv": ltv_chart,
    "rfm": rfm_chart,
}
