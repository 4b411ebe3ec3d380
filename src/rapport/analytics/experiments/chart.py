"""An experiment as a chart: conversion and revenue per recipient for each group, side by
side, each bar with its 95 % interval (Wilson's for a rate, the t interval for a mean), so
overlapping error bars show at a glance how far the groups are from being told apart.
The reference group is grey, as it is the yardstick and not a contender."""

from __future__ import annotations

from typing import Any

from rapport.analytics import charts


def _bars(
    ax: Any, groups: list[dict[str, Any]], key: str, ci: str, reference: str, percent: bool
) -> None:
    names = [g["name"] for g in groups]
    scale = 100.0 if percent else 1.0
    values = [(g[key] or 0.0) * scale for g in groups]
    lows = [
        max(0.0, v - (g[ci][0] if g[ci][0] is not None else g[key] or 0.0) * scale)
        for v, g in zip(values, groups, strict=True)
    ]
    highs = [
        max(0.0, (g[ci][1] if g[ci][1] is not None else g[key] or 0.0) * scale - v)
        for v, g in zip(values, groups, strict=True)
    ]
    colours = [
        charts.PALETTE[-1] if n == reference else charts.PALETTE[i % (len(charts.PALETTE) - 1)]
        for i, n in enumerate(names)
    ]
    ax.bar(names, values, color=colours, yerr=[lows, highs], capsize=6, ecolor="#343a40")
    for i, v in enumerate(values):
        label = f"{v:.1f}%" if percent else f"{v:,.2f}"
        ax.annotate(label, (i, v), textcoords="offset points", xytext=(8, 3), fontsize=8)
    ax.set_ylim(bottom=0)


def experiment_chart(report: dict[str, Any], fmt: charts.Format = "svg") -> bytes:
    """Two panels from an experiment report (campaign, scenario split or global control)."""
    fig, left = charts.figure(10.0, 4.5)
    grid = fig.add_gridspec(1, 2)
    left.set_subplotspec(grid[0])
    right = fig.add_subplot(grid[1])
    right.spines[["top", "right"]].set_visible(False)
    right.grid(True, alpha=0.3)
    right.set_axisbelow(True)
    left.set_axisbelow(True)
    groups = report["groups"]
    reference = report["reference"]
    _bars(left, groups, "conversion_rate", "conversion_ci", reference, percent=True)
    left.set_title("Conversion, % (95% CI)")
    _bars(
        right, groups, "revenue_per_recipient", "revenue_per_recipient_ci", reference, percent=False
    )
    right.set_title("Revenue per recipient (95% CI)")
    title = report.get("name") or report.get("kind", "")
    if report.get("step"):
        title = f"{title} · {report['step']}"
    fig.suptitle(str(title))
    return charts.to_bytes(fig, fmt)
