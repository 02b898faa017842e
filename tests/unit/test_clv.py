"""BG/NBD and Gamma-Gamma recover the parameters that simulated the data; their value
forecast is served only where, on a past date, it beat the last horizon's revenue repeating."""

import datetime as dt
import math
import random
from decimal import Decimal

import mlflow
import numpy as np
import pytest
from pyspark.sql import functions as F

from crmlake.analyze.clv import (
    BASELINE_FORECAST,
    MODEL_FORECAST,
    PARAMETER_BOUNDS,
    LifetimeValueModel,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    forecast_errors,
    grouped_bgnbd_inputs,
    judge_value_forecast,
    p_alive,
    parameters_at_bounds,
    served_columns,
    served_forecasts,
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


LINES = "person_id string, status string, order_date date, line_amount decimal(18,2)"


def test_a_value_forecast_is_judged_by_each_buyers_distance_from_what_they_then_bought(spark):
    day = dt.date(2026, 6, 1)
    on = lambda days: day + dt.timedelta(days=days)   # noqa: E731 - a date relative to the cutoff
    before = [("A", "completed", on(-200), Decimal("999.00")),   # before the horizon: no baseline
              ("B", "completed", on(-100), Decimal("40.00")),
              ("C", "completed", on(-5), Decimal("30.00")), ("C", "returned", on(-4), Decimal("20.00")), ("C", "completed", on(0), Decimal("10.00"))]
    # A's line of the horizon before the cutoff was returned after it: the baseline reads it as it stood then.
    then = spark.createDataFrame([*before, ("A", "completed", on(-90), Decimal("1.00")), ("A", "completed", on(-89), Decimal("80.00"))], LINES)
    now = spark.createDataFrame([*before, ("A", "completed", on(-90), Decimal("1.00")), ("A", "returned", on(-89), Decimal("80.00")),
                                 ("A", "completed", on(3), Decimal("120.00")), ("A", "returned", on(4), Decimal("70.00")), ("A", "completed", on(91), Decimal("5.00")),
                                 ("B", "completed", on(90), Decimal("10.00")),
                                 ("D", "completed", on(1), Decimal("500.00"))], LINES)   # D: a new buyer after the cutoff, never forecast
    forecast = spark.createDataFrame([("A", 100.0), ("B", 50.0), ("C", 0.0)], "person_id string, forecast double")
    judged = forecast_errors(forecast, then, now, day, 90).first().asDict()
    # Errors 100 - 120, 50 - 10 and 0 - 0 against the baseline's 80 - 120, 0 - 10 and 40 - 0.
    assert judged == {"buyers": 3, "unforecast": 0, "rmse_forecast": pytest.approx(math.sqrt((20**2 + 40**2) / 3)),
                      "rmse_baseline": pytest.approx(math.sqrt((40**2 + 10**2 + 40**2) / 3)), "mae_forecast": pytest.approx(60 / 3),
                      "mae_baseline": pytest.approx(90 / 3), "forecast": 150.0, "baseline": 120.0, "actual": 130.0}
    # A buyer without a forecast is counted, never taken for a forecast of 0.
    missing = forecast_errors(forecast.union(spark.createDataFrame([("E", None)], "person_id string, forecast double")), then, now, day, 90).first()
    assert (missing["buyers"], missing["unforecast"], missing["mae_forecast"]) == (4, 1, pytest.approx(60 / 3))


def _buying_till_dying(persons: int, first_days: tuple[dt.date, int], last: dt.date, seed: int) -> list[tuple]:
    """Order lines of persons who buy as BG/NBD says (TRUE_BGNBD, in weeks) with Gamma-Gamma spend (TRUE_SPEND)."""
    rng = random.Random(seed)
    lines = []
    for p in range(persons):
        day = first_days[0] + dt.timedelta(days=rng.randrange(first_days[1]))
        rate = rng.gammavariate(TRUE_BGNBD["r"], 1 / TRUE_BGNBD["alpha"]) / 7
        dropout = rng.betavariate(TRUE_BGNBD["a"], TRUE_BGNBD["b"])
        scale = rng.gammavariate(TRUE_SPEND["q"], 1 / TRUE_SPEND["v"])
        while day <= last:
            lines.append((f"P{p}", "completed", day, Decimal(f"{rng.gammavariate(TRUE_SPEND['p'], 1 / scale):.2f}")))
            if rng.random() < dropout:
                break
            day += dt.timedelta(days=min(1000, max(1, round(rng.expovariate(rate)))))
    return lines


def test_the_value_forecast_is_served_only_where_it_beat_the_last_horizon_repeating_and_logged_in_mlflow(spark, conf):
    from crmlake import tracking

    tracking.configure(conf)
    run_date = dt.date(2026, 10, 31)
    cutoff = run_date - dt.timedelta(days=conf.analyze.lifetime_value.horizon_days)

    def judge(rows: list[tuple]) -> dict:
        lines = spark.createDataFrame(rows, LINES)
        return judge_value_forecast(conf, spark, lambda as_of: lines.where(F.col("order_date") <= as_of), lines, run_date)

    # Persons who buy as the model says: its forecast beats the last 90 days repeating.
    bought = _buying_till_dying(300, (dt.date(2026, 1, 1), 200), run_date, seed=5)
    judged = judge(bought)
    assert judged["buyers"] > 200 and judged["unforecast"] == 0 and judged["rmse_forecast"] < judged["rmse_baseline"] and judged["served"] == MODEL_FORECAST
    # The same persons up to the cutoff (the same fit), each then repeating their last 90 days
    # exactly: the baseline makes no error, the model some, and loses.
    before = [line for line in bought if line[2] <= cutoff]
    repeated = before + [(p, status, day + dt.timedelta(days=90), amount) for p, status, day, amount in before if day > cutoff - dt.timedelta(days=90)]
    lost = judge(repeated)
    assert (lost["buyers"], lost["rmse_baseline"]) == (judged["buyers"], 0) and lost["rmse_forecast"] > 0 and lost["served"] == BASELINE_FORECAST
    assert lost["forecast"] == pytest.approx(judged["forecast"], rel=1e-3)   # the fit saw nothing after the cutoff (the optimiser's rounding aside)
    runs = mlflow.search_runs(experiment_names=[conf.mlflow.experiment], filter_string=f"tags.mlflow.runName = 'value-forecast-{run_date}'")
    assert sorted(runs["tags.served"]) == sorted([MODEL_FORECAST, BASELINE_FORECAST])
    assert sorted(runs["metrics.rmse_baseline"].round(2)) == sorted(round(j["rmse_baseline"], 2) for j in (judged, lost))
    # A lake too young to judge on: the baseline is served, and the summary says why.
    young = judge([line for line in bought if line[2] > cutoff])
    assert young["served"] == BASELINE_FORECAST and "0 repeat buyers as of" in young["not_judged"]


def test_a_forecast_is_served_only_when_fitted_today_and_its_judgement_served_it_and_the_others_columns_are_null(spark):
    judged = ({"served": "p_alive"}, {"served": MODEL_FORECAST})
    assert served_forecasts(True, *judged) == {"churn_ranking": "p_alive", "value_forecast": MODEL_FORECAST}
    assert served_forecasts(False, *judged) == {"churn_ranking": "recency", "value_forecast": BASELINE_FORECAST}   # not fitted today
    assert served_forecasts(True, {}, {}) == {"churn_ranking": "recency", "value_forecast": BASELINE_FORECAST}       # both judgements raised
    assert served_forecasts(True, {"served": "recency", "not_judged": "young"}, {"served": MODEL_FORECAST}) == {
        "churn_ranking": "recency", "value_forecast": MODEL_FORECAST}
    valued = spark.createDataFrame([("A", 0.4, 1.5, 20.0, 30.0)], "person_id string, p_alive double, expected_purchases_90d double, "
                                   "expected_spend double, expected_value_90d double")
    assert served_columns(valued, 90, {"churn_ranking": "p_alive", "value_forecast": BASELINE_FORECAST}).first().asDict() == {
        "person_id": "A", "p_alive": 0.4, "expected_purchases_90d": None, "expected_spend": None, "expected_value_90d": None}
    assert served_columns(valued, 90, {"churn_ranking": "recency", "value_forecast": MODEL_FORECAST}).first().asDict() == {
        "person_id": "A", "p_alive": None, "expected_purchases_90d": 1.5, "expected_spend": 20.0, "expected_value_90d": 30.0}
