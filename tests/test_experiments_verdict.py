"""The verdict's rules on groups built to land in each case — too small, not significant,
a winner, worse than control, the first variant winning, the Holm correction turning a
nominal winner down, a sample-ratio mismatch — in English and Russian."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from rapport.analytics.experiments.analysis import Group, analyse
from rapport.analytics.experiments.options import Options, parse_options
from rapport.analytics.experiments.sample_size import rate_sample_size
from rapport.analytics.experiments.verdict import split_verdict
from rapport.errors import InvalidInput


def _verdict(groups: list[Group], reference: str, **options: object) -> tuple[dict, dict]:
    opts = Options(**options)  # type: ignore[arg-type]
    report = analyse(groups, reference, opts)
    return report, split_verdict(report, opts)


def _even(*groups: tuple[str, int, int]) -> list[Group]:
    share = 1 / len(groups)
    return [Group(name, n, x, expected_share=share) for name, n, x in groups]


def test_too_small_names_the_planned_size() -> None:
    report, verdict = _verdict(_even(("control", 800, 40), ("A", 800, 46)), "control")
    needed = rate_sample_size(40 / 800, 0.1, relative=True, ratio=1.0).reference
    assert verdict["status"] == "too_small" and verdict["winner"] is None
    assert report["plan"]["needed"] == {"control": needed, "A": needed}
    assert f"{needed:,}" in verdict["text"]
    assert "No winner yet" in verdict["text"] and "may be chance" not in verdict["text"]
    _, ru = _verdict(_even(("control", 800, 40), ("A", 800, 46)), "control", locale="ru")
    assert "Победителя пока нет" in ru["text"]
    assert f"{needed:,}".replace(",", "\xa0") in ru["text"]


def test_too_small_even_when_it_looks_significant() -> None:
    """Stopping at the first significant look is what the plan guards against."""
    groups = _even(("control", 900, 45), ("A", 900, 80))
    report, verdict = _verdict(groups, "control")
    assert report["comparisons"][0]["conversion"]["significant"] is True
    assert verdict["status"] == "too_small"
    assert "may be chance" in verdict["text"]
    _, ru = _verdict(groups, "control", locale="ru")
    assert "может быть случайной" in ru["text"]


def test_no_baseline_cannot_plan() -> None:
    _, verdict = _verdict(_even(("control", 500, 0), ("A", 500, 3)), "control")
    assert verdict["status"] == "too_small"
    assert "cannot be estimated" in verdict["text"]


def test_not_significant_says_so_with_the_intervals() -> None:
    groups = _even(("control", 40_000, 2000), ("A", 40_000, 2030))
    report, verdict = _verdict(groups, "control")
    assert report["plan"]["enough"] is True
    p = proportions_ztest([2030, 2000], [40_000, 40_000])[1]
    assert report["comparisons"][0]["conversion"]["p_value"] == pytest.approx(p)
    assert verdict["status"] == "not_significant" and verdict["winner"] is None
    low, high = report["comparisons"][0]["conversion"]["relative_ci"]
    assert "No significant difference in conversion" in verdict["text"]
    assert f"{low * 100:+.1f}%".replace("-", "−") in verdict["text"]
    assert f"{high * 100:+.1f}%" in verdict["text"]
    _, ru = _verdict(groups, "control", locale="ru")
    assert "Значимой разницы" in ru["text"] and "ДИ" in ru["text"]


def test_winner_is_named_with_its_lift() -> None:
    groups = _even(("control", 40_000, 2000), ("A", 40_000, 2050), ("B", 40_000, 2300))
    report, verdict = _verdict(groups, "control")
    assert verdict["status"] == "winner" and verdict["winner"] == "B"
    lift = report["comparisons"][1]["conversion"]["relative"]
    assert lift == pytest.approx(2300 / 2000 - 1)
    assert "B wins on conversion" in verdict["text"] and "+15.0%" in verdict["text"]
    assert "Holm" in verdict["text"]
    _, ru = _verdict(groups, "control", locale="ru")
    assert "Победил вариант «B»" in ru["text"] and "+15,0%" in ru["text"]


def test_worse_than_control() -> None:
    groups = _even(("control", 40_000, 2000), ("A", 40_000, 1700))
    _, verdict = _verdict(groups, "control")
    assert verdict["status"] == "worse"
    assert "did worse than the control group" in verdict["text"]
    _, ru = _verdict(groups, "control", locale="ru")
    assert "хуже контрольной группы" in ru["text"]


def test_without_control_the_first_variant_can_win() -> None:
    groups = _even(("A", 40_000, 2400), ("B", 40_000, 2000), ("C", 40_000, 1980))
    report, verdict = _verdict(groups, "A")
    assert [c["group"] for c in report["comparisons"]] == ["B", "C"]
    assert verdict["status"] == "winner" and verdict["winner"] == "A"
    _, ru = _verdict(groups, "A", locale="ru")
    assert "Победил вариант «A»" in ru["text"]


def test_holm_keeps_a_nominal_winner_from_winning() -> None:
    """One of three variants at p ≈ 0.03 alone: significant alone, not after Holm."""
    n = 60_000
    groups = _even(("control", n, 3000), ("A", n, 3165), ("B", n, 3010), ("C", n, 2990))
    report, verdict = _verdict(groups, "control", mde=0.2)
    raw = [proportions_ztest([x, 3000], [n, n])[1] for x in (3165, 3010, 2990)]
    assert raw[0] < 0.05
    adjusted = multipletests(raw, method="holm")[1]
    assert [c["conversion"]["p_adjusted"] for c in report["comparisons"]] == pytest.approx(
        list(adjusted)
    )
    assert adjusted[0] > 0.05
    assert verdict["status"] == "not_significant"


def test_sample_ratio_mismatch_is_a_warning() -> None:
    groups = _even(("control", 40_000, 2000), ("A", 37_500, 2300))
    report, verdict = _verdict(groups, "control")
    assert report["sample_ratio"]["mismatch"] is True
    assert any("Sample-ratio mismatch" in w for w in verdict["warnings"])
    balanced, fine = _verdict(_even(("control", 40_000, 2000), ("A", 40_100, 2300)), "control")
    assert balanced["sample_ratio"]["mismatch"] is False and fine["warnings"] == []
    _, ru = _verdict(groups, "control", locale="ru")
    assert any("SRM" in w for w in ru["warnings"])


def test_revenue_verdict_uses_welch() -> None:
    rng = np.random.default_rng(1)

    def spend(n: int, buyers: int, scale: float) -> np.ndarray:
        return rng.lognormal(np.log(scale), 0.6, size=buyers)

    groups = [
        Group("control", 30_000, 3000, spend(30_000, 3000, 100), 0.5),
        Group("A", 30_000, 3000, spend(30_000, 3000, 130), 0.5),
    ]
    report, verdict = _verdict(groups, "control", metric="revenue", mde=0.2)
    assert report["plan"]["metric"] == "revenue" and report["plan"]["enough"] is True
    assert verdict["status"] == "winner" and verdict["winner"] == "A"
    assert "revenue per recipient" in verdict["text"]


def test_options_name_each_bad_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(
            {
                "window_days": "0",
                "mde": "-1",
                "power": "0.3",
                "alpha": "2",
                "metric": "clicks",
                "locale": "de",
                "weeks": "x",
                "colour": "red",
            }
        )
    where = {p.where for p in caught.value.problems}
    assert where == {"window_days", "mde", "power", "alpha", "metric", "locale", "weeks", "colour"}
    assert parse_options({"window_days": "7", "locale": "ru"}) == Options(
        window_days=7, locale="ru"
    )
