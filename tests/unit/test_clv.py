"""BG/NBD and Gamma-Gamma recover the parameters that simulated the data."""

import numpy as np
import pytest

from crmlake.analyze.clv import (
    PARAMETER_BOUNDS,
    LifetimeValueModel,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    grouped_bgnbd_inputs,
    p_alive,
    parameters_at_bounds,
    simulate_purchases,
    simulate_spend,
)

TRUE_BGNBD = {"r": 0.6, "alpha": 4.0, "a": 0.8, "b": 2.4}
TRUE_SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}


def test_bgnbd_recovers_known_parameters_from_grouped_spark_statistics(spark):
    rows = simulate_purchases(TRUE_BGNBD, np.full(6000, 40.0), np.random.default_rng(11))
    stats = spark.createDataFrame(rows.tolist(), "frequency double, recency double, T double")
    grouped = grouped_bgnbd_inputs(stats)
    assert len(grouped) < len(rows) / 2   # identical triples are fitted once
    fitted, _ = fit_bgnbd(grouped)
    for name, true in TRUE_BGNBD.items():
        assert fitted[name] == pytest.approx(true, rel=0.25), (name, fitted)


@pytest.mark.parametrize("currency_scale", [1.0, 100.0])   # mean spend 30 or 3,000: v scales with it
def test_gamma_gamma_recovers_known_parameters(currency_scale):
    rng = np.random.default_rng(5)
    true = {**TRUE_SPEND, "v": TRUE_SPEND["v"] * currency_scale}
    x = rng.integers(1, 8, 8000).astype(float)
    m = simulate_spend(true, x, rng)
    fitted, _ = fit_gamma_gamma(np.column_stack([x, m, np.ones_like(x)]))
    for name, value in true.items():
        assert fitted[name] == pytest.approx(value, rel=0.25), (name, fitted)


def test_simulated_spend_is_the_mean_of_per_purchase_draws():
    rng = np.random.default_rng(3)
    m = simulate_spend(TRUE_SPEND, np.full(200_000, 4.0), rng)
    # E[mean spend] = p v / (q - 1) over the population of nu.
    assert m.mean() == pytest.approx(TRUE_SPEND["p"] * TRUE_SPEND["v"] / (TRUE_SPEND["q"] - 1), rel=0.02)


def test_data_that_do_not_follow_the_model_stop_at_a_named_bound():
    # Repeat buyers whose last purchase falls on their first day (recency 0 with frequency 3):
    # impossible under BG/NBD, the likelihood climbs as alpha goes to 0.
    T = np.arange(1.0, 53.0)
    never = np.column_stack([np.zeros(len(T)), np.zeros(len(T)), T, np.full(len(T), 100.0)])
    impossible = np.column_stack([np.full(len(T), 3.0), np.zeros(len(T)), T, np.full(len(T), 50.0)])
    grouped = np.vstack([never, impossible])
    fitted, _ = fit_bgnbd(grouped)
    low, high = PARAMETER_BOUNDS
    assert all(low <= v <= high for v in fitted.values()), fitted
    assert parameters_at_bounds(fitted), fitted
    assert parameters_at_bounds(TRUE_BGNBD) == []


def test_a_buyer_long_silent_is_less_alive_and_expects_fewer_purchases():
    model = LifetimeValueModel(**TRUE_BGNBD, **TRUE_SPEND, unit_days=7, log_likelihood_bgnbd=0, log_likelihood_spend=0)
    recent, silent = p_alive(model, [5, 5], [39, 5], [40, 40])
    assert recent > 0.8 and silent < 0.1
    assert p_alive(model, [0], [0], [40])[0] == 1.0   # no repeat purchase: no evidence of dropping out
    soon, later = expected_purchases(model, 13, [5, 5], [39, 5], [40, 40])
    assert soon > later > 0


def test_per_person_value_joins_predictions_on_statistics_and_uses_the_spend_mean(spark):
    model = LifetimeValueModel(**TRUE_BGNBD, **TRUE_SPEND, unit_days=7, log_likelihood_bgnbd=0, log_likelihood_spend=0)
    from crmlake.analyze.clv import with_lifetime_value

    stats = spark.createDataFrame([("A", 2.0, 10.0, 20.0, 100.0), ("B", 2.0, 10.0, 20.0, 300.0), ("C", 0.0, 0.0, 5.0, None)],
                                  "person_id string, frequency double, recency double, T double, spend double")
    people = spark.createDataFrame([("A",), ("B",), ("C",), ("NEVER",)], "person_id string")
    rows = {r["person_id"]: r for r in with_lifetime_value(spark, people, stats, model, 91).collect()}
    # Gamma-Gamma conditional mean p (v + x m) / (p x + q - 1) = 6 (15 + 2 m) / 15.
    assert rows["A"]["expected_spend"] == pytest.approx(6 * (15 + 200) / 15, abs=0.01)
    assert rows["B"]["expected_spend"] == pytest.approx(6 * (15 + 600) / 15, abs=0.01)
    assert rows["C"]["expected_spend"] == pytest.approx(6 * 15 / 3, abs=0.01)   # population mean p v / (q - 1)
    assert rows["A"]["p_alive"] == rows["B"]["p_alive"] and rows["NEVER"]["p_alive"] is None
    expected = expected_purchases(model, 13, [2], [10], [20])[0]
    assert rows["A"]["expected_value_91d"] == pytest.approx(expected * 6 * 215 / 15, abs=0.02)
