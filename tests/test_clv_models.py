"""The models on their own: they recover the parameters they simulate, their gradients
are right, and they refuse to fit (or to predict) when the answer would be garbage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from rapport.analytics.clv import bgnbd, gammagamma, paretonbd
from rapport.analytics.clv.bgnbd import BetaGeoModel
from rapport.analytics.clv.errors import DidNotConverge, NotEnoughData, UnusableModel
from rapport.analytics.clv.fitting import MIN_REPEAT_CUSTOMERS, Patterns
from rapport.analytics.clv.gammagamma import GammaGammaModel
from rapport.analytics.clv.paretonbd import ParetoNBDModel
from rapport.analytics.clv.simulate import bgnbd_histories, mean_spend, paretonbd_histories
from rapport.analytics.clv.value import customer_lifetime_value, discounted_purchases
from rapport.errors import InvalidInput

BG = {"r": 0.3, "alpha": 6.0, "a": 0.7, "b": 2.5}
PN = {"r": 0.6, "alpha": 10.0, "s": 0.8, "beta": 12.0}
GG = {"p": 6.0, "q": 4.0, "gamma": 15.0}


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(20.0, 80.0, n)


def _within(fitted: dict[str, float], true: dict[str, float], errors: dict[str, float]) -> None:
    """Each estimate within four of its own standard errors of the truth."""
    for name, value in true.items():
        assert abs(fitted[name] - value) < 4 * errors[name], (name, fitted[name], value)


def test_bgnbd_recovers_what_it_simulates() -> None:
    rng = np.random.default_rng(1)
    T = _ages(rng, 40_000)
    x, t_x = bgnbd_histories(rng, T, **BG)
    model = BetaGeoModel.fit(x, t_x, T)
    _within(model.params, BG, model.standard_errors)
    assert all(0 < e < 0.2 * BG[k] for k, e in model.standard_errors.items())


def test_paretonbd_recovers_what_it_simulates() -> None:
    rng = np.random.default_rng(2)
    T = np.round(_ages(rng, 8_000))
    x, t_x = paretonbd_histories(rng, T, **PN)
    model = ParetoNBDModel.fit(x, t_x, T)
    _within(model.params, PN, model.standard_errors)


def test_gammagamma_recovers_what_it_simulates() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 8, 20_000)
    m = mean_spend(rng, x, **GG)
    model = GammaGammaModel.fit(x, m)
    _within(model.params, GG, model.standard_errors)
    assert model.customers == int((x > 0).sum())
    assert model.population_mean_spend == pytest.approx(
        GG["p"] * GG["gamma"] / (GG["q"] - 1), rel=0.05
    )


def test_analytic_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(4)
    T = _ages(rng, 3_000)
    x, t_x = bgnbd_histories(rng, T, **BG)
    d = bgnbd._Data(Patterns.of(x, t_x, T), 1 / T.max())
    for point in (np.log([0.3, 0.1, 0.7, 2.5]), np.log([1.7, 0.02, 3.0, 0.4])):
        _, grad = bgnbd._mean_ll_and_gradient(point, d)
        numeric = approx_fprime(point, lambda p: bgnbd._mean_ll_and_gradient(p, d)[0], 1e-7)
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-6), (grad, numeric)
    spend = mean_spend(rng, x, **GG)
    keep = x > 0
    g = gammagamma._Data(x[keep].astype(float), spend[keep], 1 / spend[keep].mean())
    for point in (np.zeros(3), np.log([6.0, 4.0, 2.0])):
        _, grad = gammagamma._mean_ll_and_gradient(point, g)
        numeric = approx_fprime(point, lambda p: gammagamma._mean_ll_and_gradient(p, g)[0], 1e-7)
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-6), (grad, numeric)


def test_grouping_customers_into_patterns_is_exact() -> None:
    rng = np.random.default_rng(5)
    T = np.round(_ages(rng, 2_000))  # whole days: many customers share a history
    x, t_x = bgnbd_histories(rng, T, **BG)
    t_x = np.round(t_x)
    patterns = Patterns.of(x, t_x, T)
    assert len(patterns.weights) < len(x) / 2
    assert patterns.customers == len(x)
    back = patterns.frequency[patterns.inverse], patterns.recency[patterns.inverse]
    assert np.array_equal(back[0], x) and np.array_equal(back[1], t_x)
    params = tuple(BG.values())
    one_by_one = sum(
        bgnbd.log_likelihood(params, [xi], [ti], [Ti])
        for xi, ti, Ti in zip(x[:200], t_x[:200], T[:200], strict=True)
    )
    assert bgnbd.log_likelihood(params, x[:200], t_x[:200], T[:200]) == pytest.approx(
        one_by_one, rel=1e-12
    )


def test_no_customers_or_nobody_coming_back_is_not_enough() -> None:
    for model in (BetaGeoModel, ParetoNBDModel):
        with pytest.raises(NotEnoughData, match="no customers"):
            model.fit([], [], [])
        with pytest.raises(NotEnoughData, match="0 of 50 customers made a repeat purchase"):
            model.fit([0] * 50, [0.0] * 50, [30.0] * 50)
    with pytest.raises(NotEnoughData, match="no customers"):
        GammaGammaModel.fit([], [])
    with pytest.raises(NotEnoughData, match="0 of 3"):
        GammaGammaModel.fit([0, 0, 0], [0.0, 0.0, 0.0])


def test_fewer_than_the_minimum_repeat_customers_is_refused() -> None:
    rng = np.random.default_rng(6)
    T = _ages(rng, 400)
    x, t_x = bgnbd_histories(rng, T, **BG)
    keep = (x == 0) | (np.cumsum(x > 0) < MIN_REPEAT_CUSTOMERS)  # one repeater short
    assert int((x[keep] > 0).sum()) == MIN_REPEAT_CUSTOMERS - 1
    with pytest.raises(NotEnoughData, match=f"at least {MIN_REPEAT_CUSTOMERS}"):
        BetaGeoModel.fit(x[keep], t_x[keep], T[keep])
    spend = mean_spend(rng, x, **GG)
    with pytest.raises(NotEnoughData, match=f"at least {MIN_REPEAT_CUSTOMERS}"):
        GammaGammaModel.fit(x[keep], spend[keep])


@pytest.mark.parametrize(
    "frequency, recency, T, where",
    [
        ([1, 2], [1.0], [2.0, 3.0], "frequency"),
        ([1, 1.5], [1.0, 1.0], [2.0, 3.0], "frequency[1]"),
        ([1, -1], [1.0, 0.0], [2.0, 3.0], "frequency[1]"),
        ([1, 2], [1.0, 4.0], [2.0, 3.0], "T[1]"),
        ([1, 2], [-1.0, 1.0], [2.0, 3.0], "recency[0]"),
        ([0, 2], [1.0, 1.0], [2.0, 3.0], "recency[0]"),
        ([1, 2], [1.0, float("nan")], [2.0, 3.0], "recency[1]"),
    ],
)
def test_bad_histories_are_named(frequency, recency, T, where) -> None:  # type: ignore[no-untyped-def]
    for model in (BetaGeoModel, ParetoNBDModel):
        with pytest.raises(InvalidInput) as exc:
            model.fit(frequency, recency, T)
        assert exc.value.problems[0].where == where


def test_a_likelihood_without_a_maximum_is_reported() -> None:
    # Everyone buys like clockwork until today: no heterogeneity, nobody stops. The
    # likelihood grows without end as the parameters run off to a limit.
    rng = np.random.default_rng(7)
    T = rng.uniform(50, 100, 200)
    x = np.floor(T / 10).astype(int)
    for model, names in ((BetaGeoModel, bgnbd.PARAMS), (ParetoNBDModel, paretonbd.PARAMS)):
        with pytest.raises(
            DidNotConverge, match=r"keeps growing|do not identify|stopped short"
        ) as exc:
            model.fit(x, x * 10.0, T)
        assert exc.value.model == model.name
        assert tuple(exc.value.params) == names  # the last point, for diagnosis
    # Every customer spends exactly the same: spend has no spread to estimate.
    with pytest.raises(DidNotConverge, match="spends hardly differ"):
        GammaGammaModel.fit(x[:40], np.full(40, 25.0))


def test_spend_without_a_finite_mean_is_unusable() -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(1, 6, 5_000)
    m = mean_spend(rng, x, p=3.0, q=0.7, gamma=10.0)  # q < 1: heavy-tailed average spend
    model = GammaGammaModel.fit(x, m)
    assert model.q < 1
    with pytest.raises(UnusableModel, match=r"q = 0\.7"):
        model.conditional_expected_average_profit(x, m)


def test_forecasts_hang_together() -> None:
    model = BetaGeoModel(**BG)
    pareto = ParetoNBDModel(**PN)
    spend = GammaGammaModel(**GG)
    x = np.array([0, 1, 4, 4, 10])
    t_x = np.array([0.0, 5.0, 20.0, 59.0, 59.0])
    T = np.full(5, 60.0)
    for m in (model, pareto):
        alive = m.conditional_probability_alive(x, t_x, T)
        assert np.all((alive > 0) & (alive <= 1))
        # A recent last purchase means more likely alive and more purchases to come.
        assert alive[3] > alive[2]
        e = m.conditional_expected_number_of_purchases_up_to_time(np.array([30.0, 60.0]), x, t_x, T)
        assert e.shape == (2, 5) and np.all(e[1] > e[0]) and e[1, 3] > e[1, 2]
        single = m.conditional_expected_number_of_purchases_up_to_time(30.0, x, t_x, T)
        assert np.allclose(single, e[0])
        # One month, no discount: the CLV is the expected spend times E[Y(30 days)].
        clv = customer_lifetime_value(
            m, spend, x, t_x, T, np.full(5, 40.0), months=1, monthly_discount=0.0
        )
        expected = spend.conditional_expected_average_profit(x, np.full(5, 40.0)) * single
        assert np.allclose(clv, expected)
        discounted = discounted_purchases(m, x, t_x, T, months=12, monthly_discount=0.01)
        plain = discounted_purchases(m, x, t_x, T, months=12, monthly_discount=0.0)
        year = m.conditional_expected_number_of_purchases_up_to_time(360.0, x, t_x, T)
        assert np.allclose(plain, year) and np.all(discounted < plain)
    # BG/NBD customers can only stop right after a purchase; Pareto/NBD ones at any time.
    assert model.conditional_probability_alive([0, 0], [0.0, 0.0], [10.0, 300.0]).tolist() == [
        1.0,
        1.0,
    ]
    older = pareto.conditional_probability_alive([0, 0], [0.0, 0.0], [10.0, 300.0])
    assert older[1] < older[0] < 1


def test_bad_horizons_are_named() -> None:
    model, spend = BetaGeoModel(**BG), GammaGammaModel(**GG)
    for kwargs, where in (
        ({"months": 0}, "horizon_months"),
        ({"monthly_discount": 1.0}, "monthly_discount"),
        ({"time_unit": "month"}, "time_unit"),
    ):
        with pytest.raises(InvalidInput) as exc:
            customer_lifetime_value(model, spend, [1], [1.0], [2.0], [10.0], **kwargs)  # type: ignore[arg-type]
        assert exc.value.problems[0].where == where
