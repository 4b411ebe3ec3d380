"""Experiment reports as CSV: one tidy table per report, a row per group (and, for splits,
a row per group and week), so a spreadsheet or a notebook can take it as it is.

Empty cells are figures that do not exist (a lift of the reference against itself, a
relative lift with no conversions in the reference). Numbers are written in full
precision with a dot, whatever the locale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rapport.analytics.experiments.sample_size import SampleSize
from rapport.analytics.export import to_csv

SPLIT_COLUMNS = [
    "week",
    "group",
    "reference",
    "recipients",
    "conversions",
    "conversion_rate",
    "conversion_ci_low",
    "conversion_ci_high",
    "revenue",
    "revenue_per_recipient",
    "revenue_per_recipient_ci_low",
    "revenue_per_recipient_ci_high",
    "conversion_difference",
    "conversion_difference_ci_low",
    "conversion_difference_ci_high",
    "conversion_lift",
    "conversion_lift_ci_low",
    "conversion_lift_ci_high",
    "conversion_p_value",
    "conversion_p_adjusted",
    "revenue_difference",
    "revenue_difference_ci_low",
    "revenue_difference_ci_high",
    "revenue_lift",
    "revenue_lift_ci_low",
    "revenue_lift_ci_high",
    "revenue_p_value",
    "revenue_p_adjusted",
    "revenue_bootstrap_ci_low",
    "revenue_bootstrap_ci_high",
]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return value


def _write(columns: list[str], rows: Iterable[dict[str, Any]]) -> str:
    return to_csv(({k: _cell(row.get(k)) for k in columns} for row in rows), columns, bom=False)


def _comparison(c: dict[str, Any] | None) -> dict[str, Any]:
    if c is None:
        return {}
    conv, rev = c["conversion"], c["revenue_per_recipient"]
    row = {
        "conversion_difference": conv["difference"],
        "conversion_difference_ci_low": conv["difference_ci"][0],
        "conversion_difference_ci_high": conv["difference_ci"][1],
        "conversion_lift": conv.get("relative"),
        "conversion_lift_ci_low": (conv.get("relative_ci") or [None, None])[0],
        "conversion_lift_ci_high": (conv.get("relative_ci") or [None, None])[1],
        "conversion_p_value": conv["p_value"],
        "conversion_p_adjusted": conv.get("p_adjusted"),
        "revenue_difference": rev["difference"],
        "revenue_difference_ci_low": rev["difference_ci"][0],
        "revenue_difference_ci_high": rev["difference_ci"][1],
        "revenue_lift": rev.get("relative"),
        "revenue_lift_ci_low": (rev.get("relative_ci") or [None, None])[0],
        "revenue_lift_ci_high": (rev.get("relative_ci") or [None, None])[1],
        "revenue_p_value": rev["p_value"],
        "revenue_p_adjusted": rev.get("p_adjusted"),
    }
    if "bootstrap" in rev:
        row["revenue_bootstrap_ci_low"] = rev["bootstrap"]["difference_ci"][0]
        row["revenue_bootstrap_ci_high"] = rev["bootstrap"]["difference_ci"][1]
    return row


def _overall_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    by_group = {c["group"]: c for c in report["comparisons"]}
    rows = []
    for g in report["groups"]:
        rows.append(
            {
                "group": g["name"],
                "reference": report["reference"],
                "recipients": g["recipients"],
                "conversions": g["conversions"],
                "conversion_rate": g["conversion_rate"],
                "conversion_ci_low": g["conversion_ci"][0],
                "conversion_ci_high": g["conversion_ci"][1],
                "revenue": g["revenue"],
                "revenue_per_recipient": g["revenue_per_recipient"],
                "revenue_per_recipient_ci_low": g["revenue_per_recipient_ci"][0],
                "revenue_per_recipient_ci_high": g["revenue_per_recipient_ci"][1],
                **_comparison(by_group.get(g["name"])),
            }
        )
    return rows


def split_csv(report: dict[str, Any]) -> str:
    """A campaign's or a split's report: the overall rows (``week`` empty), then each
    week's rows."""
    rows = _overall_rows(report)
    for w in report.get("weeks", []):
        for name, g in w["groups"].items():
            rows.append(
                {
                    "week": w["week"],
                    "group": name,
                    "reference": report["reference"],
                    "recipients": g["recipients"],
                    "conversions": g["conversions"],
                    "conversion_rate": g["conversion_rate"],
                    "revenue": g["revenue"],
                    "revenue_per_recipient": g["revenue_per_recipient"],
                    **_comparison(w["comparisons"].get(name)),
                }
            )
    return _write(SPLIT_COLUMNS, rows)


GLOBAL_COLUMNS = [
    "period_from",
    "period_to",
    *[c for c in SPLIT_COLUMNS if c != "week"],
    "incremental_revenue",
    "incremental_revenue_ci_low",
    "incremental_revenue_ci_high",
]


def global_control_csv(report: dict[str, Any]) -> str:
    """The global control and the CRM group; the CRM row carries the comparison and the
    incremental revenue."""
    rows = _overall_rows(report)
    inc = report["incremental"]
    for row in rows:
        row["period_from"] = report["period"]["from"]
        row["period_to"] = report["period"]["to"]
        if row["group"] != report["reference"]:
            row["incremental_revenue"] = inc["value"]
            row["incremental_revenue_ci_low"] = inc["ci"][0]
            row["incremental_revenue_ci_high"] = inc["ci"][1]
    return _write(GLOBAL_COLUMNS, rows)


def sample_size_csv(size: SampleSize) -> str:
    doc = size.as_dict()
    return _write(list(doc), [doc])
