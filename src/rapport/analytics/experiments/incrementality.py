"""The incremental revenue of CRM as a whole: the global control group against everyone else.

A campaign's control group says what one campaign added; it cannot say what CRM adds,
because those customers still get every other message. The global control group
(``messaging.holdout``) gets no marketing at all, so over a period:

* **customers** — live profiles (not merged away, not erased) created before the period
  ended, split by the current global-control setting into ``global_control`` and ``crm``;
* **conversion** — the share who completed an order in the period (not cancelled, not
  wholly refunded);
* **revenue per customer** — their orders' totals less refunds, cancelled orders left
  out, zeros included;
* **difference** — crm − global control, with Welch's interval and a seeded bootstrap;
* **incremental revenue** — the difference × the customers who got CRM: what the period
  would have lost without it, with the interval scaled the same way.

The verdict follows the split rules (docs/experiments.md): no conclusion below the planned
sample — by default what detects a 10 % change in revenue per customer with power 0.8 —
then significant or not, said plainly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.analytics.experiments.analysis import Group, analyse
from rapport.analytics.experiments.options import Options
from rapport.analytics.experiments.outcomes import timestamp
from rapport.analytics.experiments.verdict import (
    Words,
    interval_text,
    lift_text,
    warnings_for,
)
from rapport.analytics.periods import Period
from rapport.messaging.holdout import global_control, in_global_control_sql
from rapport.store.tables import customers, orders

CONTROL, CRM = "global_control", "crm"

_TEXTS = {
    "en": {
        "off": (
            "The global control group is off: nobody is held out of all marketing, so what "
            "CRM adds cannot be measured. Set a share (5% is usual) to start measuring."
        ),
        "no_customers": "No customers in the period.",
        "small": (
            "Not enough data yet: the global control has {n} customers of the {needed} "
            "needed to detect a {mde} change in {metric} with {power} power."
        ),
        "small_baseline": (
            "Not enough data yet: the global control has no {metric} in the period, so the "
            "sample needed cannot be estimated."
        ),
        "positive": (
            "CRM earns more: {crm} per customer against {control} in the global control, "
            "{lift} (95% CI {low} to {high}), {p}. Incremental revenue over the period: "
            "{inc} (95% CI {inc_low} to {inc_high})."
        ),
        "negative": (
            "Customers who get CRM spent less than the global control: {crm} per customer "
            "against {control}, {lift} (95% CI {low} to {high}), {p}. Check what is "
            "being sent."
        ),
        "flat": (
            "No significant difference in {metric} between customers who get CRM and the "
            "global control: {lift} (95% CI {low} to {high}), {p}. The incremental "
            "revenue estimate, {inc} (95% CI {inc_low} to {inc_high}), cannot be told from "
            "zero."
        ),
    },
    "ru": {
        "off": (
            "Глобальная контрольная группа выключена: никто не исключён из всех рассылок, "
            "поэтому вклад CRM не измерить. Задайте долю (обычно 5%), чтобы начать измерение."
        ),
        "no_customers": "За период нет клиентов.",
        "small": (
            "Данных пока мало: в глобальной контрольной группе клиентов {n} из {needed} "
            "нужных, чтобы заметить изменение метрики «{metric}» на {mde} с мощностью {power}."
        ),
        "small_baseline": (
            "Данных пока мало: у глобальной контрольной группы за период нет данных по "
            "метрике «{metric}», поэтому нужный размер выборки не оценить."
        ),
        "positive": (
            "CRM приносит больше: {crm} на клиента против {control} в глобальной контрольной "
            "группе, {lift} (95% ДИ от {low} до {high}), {p}. Дополнительная выручка за "
            "период: {inc} (95% ДИ от {inc_low} до {inc_high})."
        ),
        "negative": (
            "Клиенты, получающие рассылки CRM, потратили меньше глобальной контрольной "
            "группы: {crm} на клиента против {control}, {lift} (95% ДИ от {low} до {high}), "
            "{p}. Проверьте, что отправляется."
        ),
        "flat": (
            "Значимой разницы по метрике «{metric}» между клиентами с рассылками CRM и "
            "глобальной контрольной группой нет: {lift} (95% ДИ от {low} до {high}), {p}. "
            "Оценку дополнительной выручки, {inc} (95% ДИ от {inc_low} до {inc_high}), нельзя "
            "отличить от нуля."
        ),
    },
}


def _live(period: Period) -> sa.ColumnElement[bool]:
    c = customers.c
    return sa.and_(c.merged_into.is_(None), c.erased_at.is_(None), c.created_at < period.end)


def global_control_report(
    conn: sa.Connection, period: Period, options: Options, now: datetime
) -> dict[str, Any]:
    """CRM against the global control over ``period`` (up to ``now``)."""
    control = global_control(conn)
    head: dict[str, Any] = {
        "kind": "global_control",
        "period": period.as_json(),
        "global_control": control.as_dict() | {"enabled": control.enabled},
        "metric": options.metric,
    }
    c, o = customers.c, orders.c
    grp = sa.case((in_global_control_sql(c.id, control), CONTROL), else_=CRM).label("grp")
    counts = (
        {
            str(g): int(n)
            for g, n in conn.execute(
                sa.select(grp, sa.func.count()).where(_live(period)).group_by(grp)
            )
        }
        if control.enabled
        else {}
    )
    bought: dict[str, tuple[int, list[float]]] = {CONTROL: (0, []), CRM: (0, [])}
    if counts:
        until = min(period.end, now)
        per = (
            sa.select(
                grp,
                sa.func.max(sa.case((o.status == "completed", 1), else_=0)).label("conv"),
                sa.func.sum(o.total - o.refunded).label("rev"),
            )
            .select_from(customers.join(orders, o.customer_id == c.id))
            .where(
                _live(period),
                o.status != "cancelled",
                o.occurred_at >= timestamp(conn, period.start),
                o.occurred_at < timestamp(conn, until),
            )
            .group_by(c.id, grp)
            .subquery()
        )
        for g, conv, rev in conn.execute(sa.select(per.c.grp, per.c.conv, per.c.rev)):
            x, spenders = bought[str(g)]
            if rev is not None and float(rev) > 0:
                spenders.append(float(rev))
            bought[str(g)] = (x + int(conv or 0), spenders)
    groups = [
        Group(name, counts.get(name, 0), bought[name][0], np.asarray(bought[name][1]))
        for name in (CONTROL, CRM)
    ]
    report = {**head, **analyse(groups, CONTROL, options)}
    report["incremental"] = _incremental(report)
    report["verdict"] = _verdict(report, options, control.enabled)
    return report


def _incremental(report: dict[str, Any]) -> dict[str, Any]:
    """The revenue difference per customer, scaled to every customer who got CRM."""
    crm = next(g for g in report["groups"] if g["name"] == CRM)
    n = crm["recipients"]
    out: dict[str, Any] = {
        "customers": n,
        "revenue": crm["revenue"],
        "value": None,
        "ci": [None, None],
        "bootstrap_ci": [None, None],
        "share": None,
    }
    if not report["comparisons"]:
        return out
    rev = report["comparisons"][0]["revenue_per_recipient"]

    def scaled(x: float | None) -> float | None:
        return None if x is None else x * n

    out["value"] = scaled(rev["difference"])
    out["ci"] = [scaled(x) for x in rev["difference_ci"]]
    out["bootstrap_ci"] = [scaled(x) for x in rev["bootstrap"]["difference_ci"]]
    if out["value"] is not None and crm["revenue"]:
        out["share"] = out["value"] / crm["revenue"]
    return out


def _verdict(report: dict[str, Any], options: Options, enabled: bool) -> dict[str, Any]:
    words = Words(options.locale, _TEXTS)
    metric = options.metric
    key = "conversion" if metric == "conversion" else "revenue_per_recipient"
    result: dict[str, Any] = {
        "status": "too_small",
        "metric": metric,
        "locale": words.locale,
        "warnings": warnings_for(words, report, None, False),
    }
    if not enabled:
        result.update(status="off", text=words("off"))
        return result
    if report["recipients"] == 0:
        result["text"] = words("no_customers")
        return result
    plan = report["plan"]
    control = next(g for g in report["groups"] if g["name"] == CONTROL)
    crm = next(g for g in report["groups"] if g["name"] == CRM)
    if not plan["enough"]:
        if plan["reason"] is not None:
            result["text"] = words("small_baseline", metric=words(metric))
        else:
            result["text"] = words(
                "small",
                n=words.count(control["recipients"]),
                needed=words.count(plan["needed"][CONTROL]),
                mde=words.percent(options.mde),
                metric=words(metric),
                power=words.percent(options.power),
            )
        return result
    comp = report["comparisons"][0][key]
    inc = report["incremental"]
    low, high = interval_text(words, comp, metric)
    level = "conversion_rate" if metric == "conversion" else "revenue_per_recipient"
    show = words.percent if metric == "conversion" else words.number
    values = {
        "metric": words(metric),
        "crm": show(crm[level]),
        "control": show(control[level]),
        "lift": lift_text(words, comp, metric),
        "low": low,
        "high": high,
        "p": words.p(comp["p_value"]),
        "inc": words.number(inc["value"], signed=True),
        "inc_low": words.number(inc["ci"][0], signed=True),
        "inc_high": words.number(inc["ci"][1], signed=True),
    }
    if not comp["significant"]:
        result.update(status="not_significant", text=words("flat", **values))
    elif (comp["difference"] or 0) > 0:
        result.update(status="positive", text=words("positive", **values))
    else:
        result.update(status="negative", text=words("negative", **values))
    return result
