"""Lifetime value: BG/NBD for repeat purchases and P(alive), Gamma-Gamma for spend.

The standard definitions of Fader, Hardie & Lee (2005), per person as of a cutoff, in a
configurable time unit (days per unit): ``frequency`` = number of repeat purchase days
(purchase days - 1), ``recency`` = time from the first to the last purchase day, ``T`` =
time from the first purchase day to the cutoff. Spend is the mean revenue of the repeat
purchase days.

The sufficient statistics are aggregated in Spark and grouped: the BG/NBD likelihood only
needs each distinct (frequency, recency, T) with its count, and Gamma-Gamma each distinct
(frequency, spend rounded to three significant digits), so the maximum-likelihood fit on
the driver costs the same for a thousand persons or ten million.

A forecast earns its place on a past date (:func:`judge_value_forecast`): fitted as of
cutoff = run date - ``horizon_days``, each buyer's expected value over the horizon is set
against the revenue they then brought, beside the naive baseline "the last horizon's revenue
repeats"; the smaller root mean squared error per buyer is served (expected purchases and
spend go with the expected value). P(alive) is judged as a churn ranking against recency
(:func:`crmlake.analyze.retention.judge_churn_ranking`). A column whose forecast lost, or
could not be judged, is served null (:func:`served_columns`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from crmlake import tracking
from crmlake.config import Conf

BGNBD_PARAMS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMS = ("p", "q", "v")
# Every parameter is searched within [1e-6, 1e6] (on its log). Data that do not follow the
# model push the likelihood's maximum to the edge of the space; the fit then stops at a bound
# (reported by name) instead of wandering towards 0 or infinity.
PARAMETER_BOUNDS = (1e-6, 1e6)
# The two value forecasts judged (gold.customer_scores' value_forecast names the one served),
# and the two churn rankings: 1 - p_alive, and the baseline (days since the last purchase).
MODEL_FORECAST, BASELINE_FORECAST = "bg_nbd_gamma_gamma", "last_horizon_repeats"
P_ALIVE, RECENCY = "p_alive", "recency"


def purchase_statistics(order_lines: DataFrame, cutoff: dt.date, unit_days: float) -> DataFrame:
    """Return per person: frequency, recency, T (in units of ``unit_days``) and spend.

    Takes order lines with person_id, status, order_date, line_amount; counts completed
    lines up to ``cutoff``. ``spend`` is the mean revenue of repeat purchase days (null for
    persons without a repeat purchase).
    """
    days = (
        order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & (F.col("order_date") <= F.lit(cutoff)))
        .groupBy("person_id", "order_date")
        .agg(F.sum("line_amount").alias("revenue"))  # decimal: sums are exact whatever the order
    )
    first = days.groupBy("person_id").agg(F.min("order_date").alias("first_day"))
    stats = days.join(first, "person_id").groupBy("person_id", "first_day").agg(
        (F.count(F.lit(1)) - 1).alias("frequency"),
        F.max("order_date").alias("last_day"),
        F.sum(F.when(F.col("order_date") > F.col("first_day"), F.col("revenue"))).alias("_repeat_revenue"),
    )
    return stats.select(
        "person_id",
        F.col("frequency").cast("double").alias("frequency"),
        (F.datediff("last_day", "first_day") / unit_days).alias("recency"),
        (F.datediff(F.lit(cutoff), "first_day") / unit_days).alias("T"),
        F.when(F.col("frequency") > 0, F.col("_repeat_revenue") / F.col("frequency")).cast("double").alias("spend"),
    )


def grouped_bgnbd_inputs(stats: DataFrame) -> np.ndarray:
    """Return an array of rows (frequency, recency, T, count): one per distinct triple."""
    # Safe to collect: the distinct triples are bounded by the history's length, not by persons.
    return stats.groupBy("frequency", "recency", "T").count().toPandas().to_numpy(dtype=float).reshape(-1, 4)


def grouped_spend_inputs(stats: DataFrame) -> np.ndarray:
    """Return an array of rows (frequency, spend, count) for repeat buyers, spend rounded to 3 significant digits."""
    magnitude = F.pow(F.lit(10.0), F.floor(F.log10("spend")) - 2)
    rounded = stats.where((F.col("frequency") > 0) & (F.col("spend") > 0)).select("frequency", (F.round(F.col("spend") / magnitude) * magnitude).alias("spend"))
    # Safe to collect: bounded by distinct frequencies x 900 spend levels per decade.
    return rounded.groupBy("frequency", "spend").count().toPandas().to_numpy(dtype=float).reshape(-1, 3)


def bgnbd_log_likelihood(params, x, t_x, T) -> np.ndarray:
    """Per-observation BG/NBD log-likelihood (Fader, Hardie & Lee 2005, equation 6)."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def gamma_gamma_log_likelihood(params, x, m) -> np.ndarray:
    """Per-observation Gamma-Gamma log-likelihood of mean spend ``m`` over ``x`` transactions."""
    p, q, v = params
    return (
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v)
    )


def _fit(log_likelihood, columns: tuple, weights: np.ndarray, start: list[float]) -> tuple[np.ndarray, float]:
    """Maximise the weighted log-likelihood from ``start`` over positive parameters within PARAMETER_BOUNDS (fitted on their logs)."""

    def negative(log_params):
        # A point where the likelihood is not finite is infeasible, not an error.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = -np.sum(weights * log_likelihood(np.exp(log_params), *columns)) / weights.sum()
        return value if np.isfinite(value) else np.inf

    bounds = [tuple(np.log(PARAMETER_BOUNDS))] * len(start)
    result = minimize(negative, np.log(start), method="L-BFGS-B", bounds=bounds)
    if not result.success:   # a rough surface: the simplex first, then the gradient polish
        result = minimize(negative, result.x, method="Nelder-Mead", bounds=bounds, options={"maxiter": 20_000, "xatol": 1e-7, "fatol": 1e-10})
        result = minimize(negative, result.x, method="L-BFGS-B", bounds=bounds)
    return np.exp(result.x), -result.fun * weights.sum()


def parameters_at_bounds(params: dict) -> list[str]:
    """Return the names of fitted parameters that stopped within 1% of PARAMETER_BOUNDS (the data do not fit the model)."""
    low, high = PARAMETER_BOUNDS
    return [name for name, value in params.items() if value <= low * 1.01 or value >= high / 1.01]


@dataclass(frozen=True)
class LifetimeValueModel:
    """Fitted BG/NBD and Gamma-Gamma parameters, in the time unit ``unit_days``."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    unit_days: float
    log_likelihood_bgnbd: float
    log_likelihood_spend: float

    def params(self) -> dict:
        """Return the parameters by their standard names, for MLflow."""
        return {k: getattr(self, k) for k in (*BGNBD_PARAMS, *GAMMA_GAMMA_PARAMS)}


def fit_bgnbd(grouped: np.ndarray) -> tuple[dict, float]:
    """Fit BG/NBD on (frequency, recency, T, count) rows; return ({r, alpha, a, b}, log-likelihood)."""
    params, ll = _fit(bgnbd_log_likelihood, (grouped[:, 0], grouped[:, 1], grouped[:, 2]), grouped[:, 3], [1.0, 1.0, 1.0, 1.0])
    return dict(zip(BGNBD_PARAMS, params)), ll


def fit_gamma_gamma(grouped: np.ndarray) -> tuple[dict, float]:
    """Fit Gamma-Gamma on (frequency, spend, count) rows; return ({p, q, v}, log-likelihood)."""
    # Started where the population mean spend p v / (q - 1) equals the observed mean: spend is in
    # currency units (tens to hundreds), and from v = 1 the search slides to the p -> infinity edge.
    mean_spend = np.average(grouped[:, 1], weights=grouped[:, 2])
    params, ll = _fit(gamma_gamma_log_likelihood, (grouped[:, 0], grouped[:, 1]), grouped[:, 2], [1.0, 2.0, mean_spend])
    return dict(zip(GAMMA_GAMMA_PARAMS, params)), ll


def fit_lifetime_value(stats: DataFrame, unit_days: float) -> LifetimeValueModel:
    """Fit both models on the sufficient statistics of :func:`purchase_statistics`."""
    bgnbd, ll_b = fit_bgnbd(grouped_bgnbd_inputs(stats))
    spend, ll_s = fit_gamma_gamma(grouped_spend_inputs(stats))
    return LifetimeValueModel(**bgnbd, **spend, unit_days=unit_days, log_likelihood_bgnbd=ll_b, log_likelihood_spend=ll_s)


class FitAsOf(NamedTuple):
    """Both models fitted as of a cutoff (:func:`fit_as_of`)."""

    stats: DataFrame                    # per person, of :func:`purchase_statistics`, cached: the caller unpersists them
    model: LifetimeValueModel | None    # None: too few repeat buyers to fit
    repeat_buyers: int                  # persons who bought on two days or more
    not_fitted: str | None              # why the model is None


def fit_as_of(order_lines: DataFrame, cutoff: dt.date, unit_days: float, min_repeat_buyers: int) -> FitAsOf:
    """Fit both models on the order lines up to ``cutoff`` unless fewer than ``min_repeat_buyers``
    persons bought on two days or more; return the statistics, the model and why it is missing."""
    stats = purchase_statistics(order_lines, cutoff, unit_days).cache()
    repeat_buyers = stats.where("frequency > 0").count()
    if repeat_buyers < min_repeat_buyers:
        return FitAsOf(stats, None, repeat_buyers,
                       f"{repeat_buyers} repeat buyers as of {cutoff}; BG/NBD needs {min_repeat_buyers} (analyze.lifetime_value.min_repeat_buyers)")
    return FitAsOf(stats, fit_lifetime_value(stats, unit_days), repeat_buyers, None)


def revenue_between(order_lines: DataFrame, after: dt.date, until: dt.date) -> DataFrame:
    """Return (person_id, revenue double) per person: their completed lines' revenue with an
    order date in (``after``, ``until``]. Takes order lines with person_id, status, order_date, line_amount."""
    lines = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull()
                              & (F.col("order_date") > F.lit(after)) & (F.col("order_date") <= F.lit(until)))
    return lines.groupBy("person_id").agg(F.sum("line_amount").cast("double").alias("revenue"))


def forecast_errors(forecast: DataFrame, lines_then: DataFrame, order_lines: DataFrame, cutoff: dt.date, horizon_days: int) -> DataFrame:
    """Return one row judging a value forecast made as of ``cutoff`` for the next ``horizon_days``:
    ``buyers``, ``unforecast`` (buyers whose forecast is null), the root mean squared error per
    buyer against the revenue each then brought (``rmse_forecast``, ``rmse_baseline``: what
    judges a forecast of the mean, as expected values are) and the mean absolute one
    (``mae_forecast``, ``mae_baseline``), and ``forecast``, ``baseline`` and ``actual`` (summed).

    Takes the forecast (person_id, forecast) of every buyer as of the cutoff; the order lines
    as they stood at the cutoff, for the baseline (each buyer's revenue in the ``horizon_days``
    up to it repeats); and as they stand now, for what was bought after it.
    """
    horizon = dt.timedelta(days=horizon_days)
    baseline = revenue_between(lines_then, cutoff - horizon, cutoff).withColumnRenamed("revenue", "baseline")
    actual = revenue_between(order_lines, cutoff, cutoff + horizon).withColumnRenamed("revenue", "actual")
    per_buyer = forecast.join(baseline, "person_id", "left").join(actual, "person_id", "left").select(
        F.col("forecast").cast("double").alias("forecast"),
        *[F.coalesce(F.col(c), F.lit(0.0)).alias(c) for c in ("baseline", "actual")])
    errors = {"forecast": F.col("forecast") - F.col("actual"), "baseline": F.col("baseline") - F.col("actual")}
    return per_buyer.agg(
        F.count(F.lit(1)).alias("buyers"),
        F.sum(F.col("forecast").isNull().cast("int")).alias("unforecast"),
        *[F.sqrt(F.avg(error * error)).alias(f"rmse_{name}") for name, error in errors.items()],
        *[F.avg(F.abs(error)).alias(f"mae_{name}") for name, error in errors.items()],
        *[F.sum(c).alias(c) for c in ("forecast", "baseline", "actual")],
    )


def judge_value_forecast(conf: Conf, spark: SparkSession, lines_as_of: Callable[[dt.date], DataFrame], order_lines: DataFrame,
                         run_date: dt.date) -> dict:
    """Judge BG/NBD + Gamma-Gamma's value forecast on the past date (the module's docstring),
    log it in an MLflow run; return cutoff, the figures of :func:`forecast_errors` (None where
    not a number) and ``served``: :data:`MODEL_FORECAST` when every buyer has a forecast and
    its root mean squared error is the smaller, else :data:`BASELINE_FORECAST` (a tie too).

    Takes a function giving the order lines (with person_id) as they stood at the end of a
    date, and today's. A lake too young to judge on (fewer than ``min_repeat_buyers`` repeat
    buyers at the cutoff) is no failure: the baseline, which needs no fit, is served, and
    the return says why nothing was judged (cutoff, ``not_judged``, ``served``).
    """
    import mlflow

    c = conf.analyze.lifetime_value
    cutoff = run_date - dt.timedelta(days=c.horizon_days)
    lines_then = lines_as_of(cutoff)
    stats, model, _, not_fitted = fit_as_of(lines_then, cutoff, c.time_unit_days, c.min_repeat_buyers)
    try:
        if model is None:
            return {"cutoff": str(cutoff), "served": BASELINE_FORECAST, "not_judged": not_fitted}
        value = value_columns(c.horizon_days)[3]
        forecast = with_lifetime_value(spark, stats.select("person_id"), stats, model, c.horizon_days).select("person_id", F.col(value).alias("forecast"))
        judged = forecast_errors(forecast, lines_then, order_lines, cutoff, c.horizon_days).first().asDict()
    finally:
        stats.unpersist()
    # A forecast missing or not a number for some buyer (a fit stopped at its bounds) loses.
    wins = judged["unforecast"] == 0 and math.isfinite(judged["rmse_forecast"]) and judged["rmse_forecast"] < judged["rmse_baseline"]
    served = MODEL_FORECAST if wins else BASELINE_FORECAST
    with tracking.tracked_run(conf, f"value-forecast-{run_date}", {"stage": "analyze", "run_date": str(run_date), "served": served}):
        mlflow.log_params({"cutoff": str(cutoff), "horizon_days": c.horizon_days, "forecast": f"{value} (BG/NBD + Gamma-Gamma as of the cutoff)",
                           "baseline": f"revenue of the {c.horizon_days} days up to the cutoff repeats", "judged_by": "rmse"})
        mlflow.log_metrics({name: figure for name, figure in judged.items() if figure is not None and math.isfinite(figure)})
    figures = {k: (round(v, 2) if math.isfinite(v) else None) if isinstance(v, float) else v for k, v in judged.items()}
    return {"cutoff": str(cutoff), **figures, "served": served}


def served_forecasts(fitted: bool, churn_ranking: dict, value_forecast: dict) -> dict:
    """Return what is served today: ``churn_ranking`` (:data:`P_ALIVE` or :data:`RECENCY`) and
    ``value_forecast`` (:data:`MODEL_FORECAST` or :data:`BASELINE_FORECAST`). Takes whether
    the models were fitted today and the two judgements' returns (empty when one raised): a
    model's forecast is served only when fitted today and its judgement served it."""
    return {"churn_ranking": P_ALIVE if fitted and churn_ranking.get("served") == P_ALIVE else RECENCY,
            "value_forecast": MODEL_FORECAST if fitted and value_forecast.get("served") == MODEL_FORECAST else BASELINE_FORECAST}


def served_columns(valued: DataFrame, horizon_days: int, served: dict) -> DataFrame:
    """Return ``valued`` (persons with the columns of :func:`value_columns`) with the columns
    of a forecast not served (``served``: :func:`served_forecasts`) set to null: ``p_alive``
    unless the churn ranking served is :data:`P_ALIVE`, the expected purchases, spend and value
    unless the value forecast served is the model's."""
    alive, *forecast = value_columns(horizon_days)
    kept = {alive: served["churn_ranking"] == P_ALIVE, **{column: served["value_forecast"] == MODEL_FORECAST for column in forecast}}
    return valued.select(*[c if kept.get(c, True) else F.lit(None).cast("double").alias(c) for c in valued.columns])


def simulate_purchases(params: dict, T, rng: np.random.Generator, recency_step: float = 0.1) -> np.ndarray:
    """Draw (frequency, recency, T) rows from BG/NBD with ``params`` {r, alpha, a, b}, one per entry of ``T``.

    Buy-till-you-die: each person buys at a Poisson rate lambda ~ Gamma(r, alpha) from the
    first purchase and, after each repeat purchase, drops out with probability p ~ Beta(a, b).
    Recency is rounded to a multiple of ``recency_step`` units, as whole purchase days make it
    discrete in practice (1/7 in weeks). For checking the fit and benchmarking it; vectorised
    over persons.
    """
    T = np.asarray(T, dtype=float)
    rate = rng.gamma(params["r"], 1 / params["alpha"], len(T))
    dropout = rng.beta(params["a"], params["b"], len(T))
    frequency, recency, clock = np.zeros(len(T)), np.zeros(len(T)), np.zeros(len(T))
    buying = np.arange(len(T))
    while len(buying):
        clock[buying] += rng.exponential(1 / rate[buying])
        buying = buying[clock[buying] <= T[buying]]
        frequency[buying] += 1
        recency[buying] = clock[buying]
        buying = buying[rng.random(len(buying)) >= dropout[buying]]
    return np.column_stack([frequency, np.round(recency / recency_step) * recency_step, T])


def simulate_spend(params: dict, frequency, rng: np.random.Generator) -> np.ndarray:
    """Draw each repeat buyer's mean spend over ``frequency`` purchases from Gamma-Gamma with ``params`` {p, q, v}."""
    frequency = np.asarray(frequency, dtype=float)
    scale = rng.gamma(params["q"], 1 / params["v"], len(frequency))   # per-person nu
    # The mean of x Gamma(p, nu) draws is Gamma(p x, x nu).
    return rng.gamma(params["p"] * frequency, 1 / (scale * frequency))


def p_alive(model: LifetimeValueModel, x, t_x, T) -> np.ndarray:
    """P(the person is still a customer | frequency, recency, T)."""
    x, t_x, T = map(np.asarray, (x, t_x, T))
    ratio = np.where(x > 0, model.a / (model.b + x - 1 + (x == 0)) * ((model.alpha + T) / (model.alpha + t_x)) ** (model.r + x), 0.0)
    return 1.0 / (1.0 + ratio)


def expected_purchases(model: LifetimeValueModel, t: float, x, t_x, T) -> np.ndarray:
    """Expected purchases in the next ``t`` units given (frequency, recency, T) (FHL 2005, eq. 10)."""
    x, t_x, T = map(np.asarray, (x, t_x, T))
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    return numerator * p_alive(model, x, t_x, T)


def value_columns(horizon_days: int) -> list[str]:
    """Return the names of the per-person lifetime-value columns for a horizon."""
    return ["p_alive", f"expected_purchases_{horizon_days}d", "expected_spend", f"expected_value_{horizon_days}d"]


def with_lifetime_value(spark: SparkSession, people: DataFrame, stats: DataFrame, model: LifetimeValueModel, horizon_days: int) -> DataFrame:
    """Add p_alive, expected_purchases_<h>d, expected_spend and expected_value_<h>d per person.

    Takes a frame with person_id and the statistics of :func:`purchase_statistics`. P(alive)
    and expected purchases are computed once per distinct (frequency, recency, T) on the
    driver and joined back, so their cost does not grow with persons; expected spend is the
    Gamma-Gamma conditional mean, a column expression in Spark. Persons who never bought get
    nulls (the models describe customers after their first purchase).
    """
    # Safe to collect: distinct statistics, bounded by the history's length, not by persons.
    rows = stats.select("frequency", "recency", "T").distinct().collect()
    x = np.array([r["frequency"] for r in rows], dtype=float)
    t_x = np.array([r["recency"] for r in rows], dtype=float)
    T = np.array([r["T"] for r in rows], dtype=float)
    horizon = horizon_days / model.unit_days
    alive, purchases = p_alive(model, x, t_x, T), expected_purchases(model, horizon, x, t_x, T)
    predictions = spark.createDataFrame(
        [(float(x[i]), float(t_x[i]), float(T[i]), float(alive[i]), float(purchases[i])) for i in range(len(rows))],
        "frequency double, recency double, T double, p_alive double, expected_purchases double",
    )
    population_spend = model.p * model.v / (model.q - 1) if model.q > 1 else None
    spend = F.when(
        F.col("frequency") > 0, model.p * (model.v + F.col("frequency") * F.col("spend")) / (model.p * F.col("frequency") + model.q - 1)
    ).otherwise(F.lit(population_spend).cast("double"))
    alive_col, purchases_col, spend_col, value_col = value_columns(horizon_days)
    per_person = stats.join(predictions, ["frequency", "recency", "T"]).select(
        "person_id",
        F.round("p_alive", 6).alias(alive_col),
        F.round("expected_purchases", 6).alias(purchases_col),
        F.round(spend, 2).alias(spend_col),
        F.round(F.col("expected_purchases") * spend, 2).alias(value_col),
    )
    return people.join(per_person, "person_id", "left")
