"""The messages trend as a chart: messages sent per day (bars) with the open rate and CTR
(lines, right axis) — what a marketer looks at first to see whether mail still lands."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.analytics.charts import PALETTE, Format, figure, to_bytes
from rapport.analytics.message_metrics import MessageMetrics

TITLES = {
    "en": ("Messages", "sent", "open rate", "CTR"),
    "ru": ("Сообщения", "отправлено", "открываемость", "CTR"),
}


def trend_chart(rows: Sequence[MessageMetrics], fmt: Format = "svg", locale: str = "en") -> bytes:
    """``rows`` grouped by day, week or month (message_metrics with a time grouping)."""
    title, sent_label, open_label, ctr_label = TITLES.get(locale, TITLES["en"])
    labels = [str(next(iter(r.key.values()), "")) for r in rows]
    fig, ax = figure()
    ax.bar(labels, [r.sent for r in rows], color=PALETTE[6], alpha=0.45, label=sent_label)
    ax.set_ylabel(sent_label)
    ax.set_title(title)
    rates = ax.twinx()
    docs = [r.as_json() for r in rows]
    for key, label, colour in (
        ("open_rate", open_label, PALETTE[0]),
        ("ctr", ctr_label, PALETTE[1]),
    ):
        values = [d[key] * 100 if d[key] is not None else float("nan") for d in docs]
        rates.plot(labels, values, marker="o", color=colour, label=label)
    rates.set_ylabel("%")
    rates.set_ylim(bottom=0)
    rates.grid(False)
    step = max(1, len(labels) // 12)  # at most a dozen date labels stay readable
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")
    handles, names = ax.get_legend_handles_labels()
    more, more_names = rates.get_legend_handles_labels()
    ax.legend(handles + more, names + more_names, loc="upper left", fontsize=8)
    return to_bytes(fig, fmt)
