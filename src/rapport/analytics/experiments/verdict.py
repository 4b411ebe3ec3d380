"""The conclusion of an experiment in plain words, in English and Russian.

The rules, in order (docs/experiments.md):

1. **Too small.** While any group is below the planned size — what the sample-size
   calculator asks for to detect the configured relative MDE (10 % by default) from the
   reference's observed level with the configured power (0.8) — there is no winner,
   whatever the p-values say: stopping a test the first time it looks significant
   overstates effects. If the difference looks significant already, the text says so and
   says why it is not a result yet.
2. **Not significant.** No comparison's Holm-adjusted p-value is below alpha: the text
   says so plainly and gives each lift's interval, which is what the data can and cannot
   rule out.
3. **Winner.** Of the groups significantly better than the reference, the one with the
   best estimate wins; its lift, interval and adjusted p-value are named. With no control,
   the first variant wins when every other is significantly worse.
4. **Worse.** Against a control group, variants that are significantly worse and none
   better: the message costs what it was meant to earn.

Warnings go beside the verdict: a sample-ratio mismatch (the split is not the configured
one, so nothing here is to be trusted until it is explained), and a conversion window that
is still open (the figures will still move).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel.numbers import format_decimal, format_percent

from rapport.analytics.experiments.options import Options

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "conversion": "conversion",
        "revenue": "revenue per recipient",
        "no_data": "No data yet: nobody has been assigned to a group.",
        "not_started": "No data yet: the campaign has not started.",
        "no_baseline": (
            "No winner yet: the {ref} group has no {metric} yet, so the sample the test "
            "needs cannot be estimated. Keep the test running."
        ),
        "mde_too_large": (
            "No plan: a {mde} change from {baseline} is beyond what {metric} can reach; "
            "plan for a smaller minimum detectable effect."
        ),
        "too_small": (
            "No winner yet: {group} has {n} recipients of the {needed} planned — enough to "
            "detect a {mde} change in {metric} from {baseline} with {power} power. Keep the "
            "test running."
        ),
        "early": (
            "The difference seen so far ({group} {lift}, {p}) may be chance: stopping "
            "now would overstate it."
        ),
        "not_significant": "No significant difference in {metric}.",
        "pair": "{group} vs {ref}: {lift} (95% CI {low} to {high}), {p}.",
        "consistent": "The data are consistent with anything in those intervals.",
        "winner": (
            "{group} wins on {metric}: {value} vs {ref_value} for {ref}, {lift} "
            "(95% CI {low} to {high}), {p} after the Holm correction."
        ),
        "ref_wins": ("{ref} wins on {metric}: every other variant did significantly worse."),
        "worse": (
            "{group} did worse than the control group on {metric}: {lift} (95% CI {low} "
            "to {high}), {p}. Sending it costs more than it earns."
        ),
        "also_worse": "{group} is significantly worse than {ref}: {lift}, {p}.",
        "srm": (
            "Sample-ratio mismatch: the groups are {observed} but the configured split is "
            "{expected} (chi-squared {p}). The assignment or the data are broken; do "
            "not trust this comparison until that is explained."
        ),
        "window": "The conversion window is still open until {date}: the figures will change.",
        "na": "n/a",
        "points": "pp",
    },
    "ru": {
        "conversion": "конверсия",
        "revenue": "выручка на получателя",
        "no_data": "Данных пока нет: никто не попал ни в одну группу.",
        "not_started": "Данных пока нет: рассылка ещё не началась.",
        "no_baseline": (
            "Победителя пока нет: в группе «{ref}» ещё нет данных по метрике «{metric}», "
            "поэтому нужный размер выборки не оценить. Продолжайте тест."
        ),
        "mde_too_large": (
            "Плана нет: изменение на {mde} от уровня {baseline} невозможно для метрики "
            "«{metric}»; задайте меньший минимальный обнаружимый эффект."
        ),
        "too_small": (
            "Победителя пока нет: в группе «{group}» получателей {n} из {needed} "
            "запланированных — столько нужно, чтобы заметить изменение метрики «{metric}» "
            "на {mde} от уровня {baseline} с мощностью {power}. Продолжайте тест."
        ),
        "early": (
            "Разница, которая видна сейчас («{group}» {lift}, {p}), может быть "
            "случайной: остановив тест сейчас, вы её переоцените."
        ),
        "not_significant": "Значимой разницы по метрике «{metric}» нет.",
        "pair": "«{group}» против «{ref}»: {lift} (95% ДИ от {low} до {high}), {p}.",
        "consistent": "Данные совместимы с любым эффектом в этих интервалах.",
        "winner": (
            "Победил вариант «{group}» по метрике «{metric}»: {value} против {ref_value} "
            "в группе «{ref}», {lift} (95% ДИ от {low} до {high}), {p} с поправкой Холма."
        ),
        "ref_wins": ("Победил вариант «{ref}» по метрике «{metric}»: все остальные значимо хуже."),
        "worse": (
            "Вариант «{group}» хуже контрольной группы по метрике «{metric}»: {lift} "
            "(95% ДИ от {low} до {high}), {p}. Рассылка отнимает больше, чем приносит."
        ),
        "also_worse": "Вариант «{group}» значимо хуже «{ref}»: {lift}, {p}.",
        "srm": (
            "Несоответствие долей выборки (SRM): группы составляют {observed}, а настроено "
            "{expected} (хи-квадрат, {p}). Распределение или данные сломаны; не "
            "доверяйте сравнению, пока причина не найдена."
        ),
        "window": "Окно конверсии открыто до {date}: цифры ещё изменятся.",
        "na": "н/д",
        "points": "п. п.",
    },
}


class Words:
    """Numbers and phrases in one locale."""

    def __init__(self, locale: str, texts: dict[str, dict[str, str]] | None = None) -> None:
        self.locale = locale if locale in _TEXTS else "en"
        self.texts = {**_TEXTS[self.locale], **(texts or {}).get(self.locale, {})}

    def __call__(self, key: str, **values: Any) -> str:
        return self.texts[key].format(**values)

    def percent(self, x: float | None, *, signed: bool = False) -> str:
        if x is None:
            return self.texts["na"]
        text = format_percent(abs(x) if signed else x, format="#,##0.0%", locale=self.locale)
        if signed:
            return ("+" if x > 0 else "−" if x < 0 else "") + text
        return text

    def number(self, x: float | None, *, signed: bool = False, digits: int = 2) -> str:
        if x is None:
            return self.texts["na"]
        pattern = "#,##0." + "0" * digits if digits else "#,##0"
        text = format_decimal(abs(x) if signed else x, format=pattern, locale=self.locale)
        if signed:
            return ("+" if x > 0 else "−" if x < 0 else "") + text
        return text

    def count(self, n: int) -> str:
        return format_decimal(n, locale=self.locale)

    def p(self, p: float | None) -> str:
        """``p = 0.004``, or ``p < 0.001`` rather than a row of zeros."""
        if p is None:
            return "p: " + self.texts["na"]
        if p < 0.001:
            return "p < " + format_decimal(0.001, format="0.###", locale=self.locale)
        return "p = " + format_decimal(p, format="0.###", locale=self.locale)

    def date(self, moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC")


def _metric_key(metric: str) -> str:
    return "conversion" if metric == "conversion" else "revenue_per_recipient"


def _level(words: Words, metric: str, value: float | None) -> str:
    return words.percent(value) if metric == "conversion" else words.number(value)


def _difference(words: Words, metric: str, x: float | None) -> str:
    """An absolute difference: percentage points for a rate, money for revenue."""
    if metric == "conversion":
        if x is None:
            return words.texts["na"]
        return words.number(x * 100, signed=True, digits=1) + " " + words("points")
    return words.number(x, signed=True)


def lift_text(words: Words, c: dict[str, Any], metric: str) -> str:
    """A relative lift, or the absolute difference when the ratio is undefined (the
    reference has no conversions or no revenue)."""
    if c["relative"] is not None:
        return words.percent(c["relative"], signed=True)
    return _difference(words, metric, c["difference"])


def interval_text(words: Words, c: dict[str, Any], metric: str) -> tuple[str, str]:
    if c["relative"] is not None and None not in c["relative_ci"]:
        low, high = c["relative_ci"]
        return words.percent(low, signed=True), words.percent(high, signed=True)
    low, high = c["difference_ci"]
    return _difference(words, metric, low), _difference(words, metric, high)


def warnings_for(
    words: Words, report: dict[str, Any], window_end: datetime | None, window_open: bool
) -> list[str]:
    out = []
    srm = report.get("sample_ratio")
    if srm and srm["mismatch"]:

        def shares(d: dict[str, float]) -> str:
            return ", ".join(f"{k} {words.percent(v)}" for k, v in d.items())

        out.append(
            words(
                "srm",
                observed=shares(srm["observed"]),
                expected=shares(srm["expected"]),
                p=words.p(srm["p_value"]),
            )
        )
    if window_open and window_end is not None:
        out.append(words("window", date=words.date(window_end)))
    return out


def split_verdict(
    report: dict[str, Any],
    options: Options,
    *,
    window_end: datetime | None = None,
    window_open: bool = False,
    started: bool = True,
) -> dict[str, Any]:
    """The verdict on a campaign's variants or a scenario split (rules in the docstring)."""
    words = Words(options.locale)
    metric = options.metric
    key = _metric_key(metric)
    metric_name = words(metric)
    ref = report["reference"]
    values = {
        g["name"]: g[key if metric != "conversion" else "conversion_rate"] for g in report["groups"]
    }
    comps = report["comparisons"]
    result: dict[str, Any] = {
        "status": "too_small",
        "winner": None,
        "metric": metric,
        "locale": words.locale,
        "warnings": warnings_for(words, report, window_end, window_open),
    }

    def pair(c: dict[str, Any]) -> dict[str, Any]:
        m = c[key]
        low, high = interval_text(words, m, metric)
        return {
            "group": c["group"],
            "ref": ref,
            "lift": lift_text(words, m, metric),
            "low": low,
            "high": high,
            "p": words.p(m["p_adjusted"]),
        }

    if not started or report["recipients"] == 0:
        result["text"] = words("not_started" if not started else "no_data")
        return result
    plan = report["plan"]
    if not plan["enough"]:
        if plan["reason"] == "no_baseline":
            result["text"] = words("no_baseline", ref=ref, metric=metric_name)
            return result
        if plan["reason"] == "mde_too_large":
            result["text"] = words(
                "mde_too_large",
                mde=words.percent(options.mde),
                baseline=_level(words, metric, plan["baseline"]),
                metric=metric_name,
            )
            return result
        counts = {g["name"]: g["recipients"] for g in report["groups"]}
        short = min(plan["needed"], key=lambda n: counts[n] / plan["needed"][n])
        text = words(
            "too_small",
            group=short,
            n=words.count(counts[short]),
            needed=words.count(plan["needed"][short]),
            mde=words.percent(options.mde),
            metric=metric_name,
            baseline=_level(words, metric, plan["baseline"]),
            power=words.percent(options.power, signed=False),
        )
        early = [c for c in comps if c[key]["significant"]]
        if early:
            best = max(early, key=lambda c: abs(c[key]["difference"] or 0))
            p = pair(best)
            text += " " + words("early", group=p["group"], lift=p["lift"], p=p["p"])
        result["text"] = text
        return result

    better = [c for c in comps if c[key]["significant"] and (c[key]["difference"] or 0) > 0]
    worse = [c for c in comps if c[key]["significant"] and (c[key]["difference"] or 0) < 0]
    if better:
        best = max(better, key=lambda c: values[c["group"]] or 0)
        p = pair(best)
        text = words(
            "winner",
            group=p["group"],
            metric=metric_name,
            value=_level(words, metric, values[p["group"]]),
            ref_value=_level(words, metric, values[ref]),
            ref=ref,
            lift=p["lift"],
            low=p["low"],
            high=p["high"],
            p=p["p"],
        )
        result.update(status="winner", winner=best["group"], text=text)
        return result
    if worse and ref == "control":
        sentences = [words("worse", metric=metric_name, **pair(c)) for c in worse]
        result.update(status="worse", text=" ".join(sentences))
        return result
    if worse and len(worse) == len(comps):
        result.update(
            status="winner", winner=ref, text=words("ref_wins", ref=ref, metric=metric_name)
        )
        return result
    sentences = [words("not_significant", metric=metric_name)]
    sentences += [words("pair", **pair(c)) for c in comps if c not in worse]
    sentences += [words("also_worse", **pair(c)) for c in worse]
    sentences.append(words("consistent"))
    result.update(status="not_significant", text=" ".join(sentences))
    return result
