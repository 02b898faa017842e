"""The analyze stage: value, loyalty, lifetime value, segments, propensity, next best
category and uplift per person, and the reports, for one run date.

* The models are declared in :mod:`crmlake.analyze.specs` and trained, judged against their
  naive baselines, registered and promoted by one recipe (:mod:`crmlake.analyze.recipe`).
  Persons are scored by each model's ``champion``, not by today's challenger; the versions
  used are columns of the scores.
* Propensity and next best category learn point in time: features as of ``cutoff = date -
  label_days``, labels from the ``label_days`` after it (the most recent complete window;
  orders that follow our contacts included: campaign outcomes are labels).
* A model version carries a fingerprint of its inputs (run date, input tables' Delta
  versions) and conf section: a rerun of a date with unchanged data and conf fits,
  registers and moves nothing, except judging a version whose run was killed between
  registering and judging it (:func:`crmlake.tracking.resume`).
* Uplift per audience of ``campaigns.audiences``: :mod:`crmlake.analyze.uplift_scores`.
* Cohort retention, each person's churn risk and its main reason, value-tier transitions since
  the previous score date, and the churn ranking's judgement on a past date: :mod:`crmlake.analyze.retention`.
* The service desk's daily figures, the high-value repeat complainers and each person's latest
  rating (the loyalty ladder's satisfied rung): :mod:`crmlake.analyze.service`; each campaign's
  engagement per send date: :mod:`crmlake.analyze.engagement`; each person's preferred channel
  (a column of the scores): :mod:`crmlake.analyze.channels`; new customers by first-touch source
  and month, with their early value, and referrals: :mod:`crmlake.analyze.acquisition`.
* Lifetime value: BG/NBD + Gamma-Gamma (:mod:`crmlake.analyze.clv`), each of its forecasts
  served only when, judged on a past date before the scores, it beat its naive baseline:
  ``p_alive`` as a churn ranking against recency, the expected value against "the last
  horizon's revenue repeats" (otherwise ``predicted_value`` is that baseline, the current
  value, and ``value_forecast`` says so); value tiers and the
  loyalty ladder (:mod:`crmlake.analyze.value`); each person's profit, and the Pareto curve and
  value tiers on profit (:mod:`crmlake.analyze.profit`); the Pareto curve, the next best categories,
  company scores and reports: :mod:`crmlake.analyze.writers`; the monthly management report,
  a section per question, last: :mod:`crmlake.analyze.management`.

Every person scored lands in ``gold.customer_scores`` (partition ``score_date``: a rerun of
a date replaces that date only). Reports are written every run, models permitting or not.

What a backfill of an old date sees: order lines rebuilt from bronze's status history as they
stood at the end of that date, member profiles valid then (``silver.customer_history``) and
that month of visits (``silver.sessions`` by date), a cookie's anonymous visits a person's only
once they had logged in on it by then. Everything else is read as it is today: the identity
map, ``silver.customer_360`` (only persons still live are scored or learnt from; the member
report counts today's profiles), ``silver.customers``, and the model registry: a
backfill trains against today's champions, registers its versions beside theirs, and scores
with whichever is champion when it runs.

Each model is an isolated piece (:func:`~crmlake.analyze.recipe.isolated_model`): one that
cannot train (too little history, one class, no pairs, an error in its fit) is logged and
listed with its reason in the summary's ``failed``, and the stage goes on. RFM, value tiers
and the loyalty ladder are written for every person whatever the models did; a failed
model's columns come from its existing champion, or are null. The next run tries the failed
model again. The reports and the four models run side by side, and so do the tables written
from the scores (``analyze.steps_at_once``, :func:`crmlake.isolation.side_by_side`).
"""

from __future__ import annotations

import collections
import datetime as dt
import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import categories, clv, management, models, retention, service, specs
from crmlake.analyze.acquisition import write_acquisition
from crmlake.analyze.channels import preferred_channels
from crmlake.analyze.engagement import write_campaign_engagement
from crmlake.analyze.features import (
    cookie_first_logins, customer_behaviour, in_session_window, members_as_of, order_lines_as_of, sessions_known_as_of, with_deciles,
    with_email_engagement, with_purchase_label, with_rfm_scores,
)
from crmlake.analyze.profit import write_customer_profitability
from crmlake.analyze.recipe import NotTrainable, isolated_model
from crmlake.analyze.uplift_scores import audience_uplift
from crmlake.analyze.value import with_loyalty_level, with_value_tier
from crmlake.analyze.writers import COMPANIES, model_column, next_best_categories, pareto, score_companies, write_profiles, write_reports
from crmlake.config import Conf
from crmlake.isolation import side_by_side
from crmlake.lake import Lake
from crmlake.log import get_logger, timed
from crmlake.people import ACCOUNT, with_order_person_id, with_person_id, with_session_person_id
from crmlake.summaries import REPORTS_DIR

log = get_logger("analyze")
SCORES = "gold.customer_scores"
INPUT_TABLES = ("bronze.orders", "silver.customer_history", "silver.identity_map", "silver.sessions", "silver.customer_360", "bronze.campaign_events")


def inputs_of(lake: Lake, run_date: dt.date) -> dict:
    """Return what today's models are trained from: the run date and each input table's Delta version."""
    return {"run_date": str(run_date), **{table: lake.version(table) for table in INPUT_TABLES}}


def without_lifetime_value(people: DataFrame, horizon_days: int) -> DataFrame:
    """Return ``people`` with the lifetime-value columns null: their value when the model is not fitted."""
    return people.select("*", *[F.lit(None).cast("double").alias(c) for c in clv.value_columns(horizon_days)])


def lifetime_value(conf: Conf, spark: SparkSession, people: DataFrame, order_lines: DataFrame, run_date: dt.date) -> tuple[DataFrame, dict]:
    """Fit BG/NBD and Gamma-Gamma as of ``run_date``, log them; return (people with value columns, facts).

    Raises NotTrainable when fewer than ``min_repeat_buyers`` persons bought twice.
    """
    import mlflow

    c = conf.analyze.lifetime_value
    unit_days, horizon = c.time_unit_days, c.horizon_days
    stats, model, repeat_buyers, not_fitted = clv.fit_as_of(order_lines, run_date, unit_days, c.min_repeat_buyers)
    if model is None:
        stats.unpersist()
        raise NotTrainable(f"lifetime value for {run_date}: {not_fitted}")
    at_bounds = clv.parameters_at_bounds(model.params())
    if at_bounds:
        log.warning("lifetime value for %s: %s stopped at the search bounds %s; the purchase history does not follow BG/NBD + Gamma-Gamma well",
                    run_date, ", ".join(at_bounds), clv.PARAMETER_BOUNDS)
    with tracking.tracked_run(conf, f"lifetime-value-{run_date}", {"stage": "analyze", "run_date": str(run_date), "parameters_at_bounds": ",".join(at_bounds) or "none"}):
        mlflow.log_params({"time_unit_days": unit_days, "horizon_days": horizon, "model": "BG/NBD + Gamma-Gamma (Fader, Hardie & Lee 2005)"})
        mlflow.log_metrics({**model.params(), "log_likelihood_bgnbd": model.log_likelihood_bgnbd, "log_likelihood_spend": model.log_likelihood_spend, "repeat_buyers": repeat_buyers})
    # Materialised while the statistics the predictions were keyed on are still cached.
    valued = clv.with_lifetime_value(spark, people, stats, model, horizon).localCheckpoint()
    stats.unpersist()
    return valued, {**{k: round(v, 4) for k, v in model.params().items()}, "time_unit_days": unit_days, "parameters_at_bounds": at_bounds}


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Train (or, on a rerun with the same inputs and conf, reuse) the models, score every person
    for ``run_date`` with each model's champion, and write the reports; return the stage's
    summary: each model's versions and metrics, the scores' counts, and ``failed``
    (model -> why it did not train today; empty on a good day).

    A model that fails does not fail the stage: when the scores are written, the run succeeded
    (``gold.job_runs`` records it so, its counts listing ``failed``), and decide
    publishes from them. The stage fails only when what every score needs fails: reading the
    lake, the reports, or writing the scores.
    """
    lake = Lake(spark, conf)
    tz = conf.business.timezone
    report_dir = os.path.join(conf.exports_root, REPORTS_DIR)
    p, s = conf.analyze.propensity, conf.analyze.segmentation
    accuracy, horizon = conf.analyze.ranking.quantile_accuracy, conf.analyze.lifetime_value.horizon_days
    # What every model's fingerprint holds besides its own section (the inputs' versions, in ``inputs``).
    shared = {"timezone": tz, "training_max_persons": conf.analyze.training_max_persons}
    people = lake.read("silver.customer_360").cache()
    identity_map = lake.read("silver.identity_map")
    history, bronze_orders = lake.read("silver.customer_history"), lake.read("bronze.orders")
    inputs = inputs_of(lake, run_date)
    # Service contacts as they stood at the end of run_date, with their person: the ladder's ratings, the desk's figures.
    contacts = with_person_id(service.contacts_as_of(lake.read("bronze.interactions"), run_date, tz), identity_map, (ACCOUNT, F.col("account_id"))).cache()

    def members(as_of: dt.date) -> DataFrame:
        # Profiles valid then, of persons still live now (an erased person is never scored nor learnt from).
        return members_as_of(history, identity_map, as_of, tz).join(people.select("person_id"), "person_id", "left_semi")

    def lines_as_of(as_of: dt.date) -> DataFrame:
        return with_order_person_id(order_lines_as_of(bronze_orders, as_of, conf.business), identity_map)

    # Each cookie's first login up to run_date (a narrow scan of the sessions' history, one row
    # per logged-in cookie): features as of a date count a cookie's anonymous visits only from
    # then on, the identity map being today's (a past cutoff's, a backfill's).
    sessions_until = lake.read("silver.sessions").where(F.col("session_date") <= F.lit(run_date))
    first_logins = cookie_first_logins(sessions_until.select("anonymous_id", "account_id", "session_date")).cache()

    def sessions_as_of(as_of: dt.date) -> DataFrame:
        # Only the days the visit features count, filtered at the read: silver.sessions is
        # partitioned by session_date, so the rest of the clickstream's history is never opened.
        visits = lake.read("silver.sessions").where(in_session_window(F.col("session_date"), as_of))
        return with_session_person_id(sessions_known_as_of(visits, first_logins, as_of), identity_map)

    campaign_events = with_person_id(lake.read("bronze.campaign_events"), identity_map, (ACCOUNT, F.col("account_id")))

    def behaviour_as_of(as_of: dt.date, lines: DataFrame | None = None) -> DataFrame:
        # Point in time: the members, their order lines and campaign emails as they stood at the end of as_of.
        behaviour = customer_behaviour(members(as_of), lines if lines is not None else lines_as_of(as_of), sessions_as_of(as_of), as_of, tz)
        return with_email_engagement(behaviour, campaign_events, as_of, tz)

    # Order lines as they stood at the end of run_date (what else a backfill sees: the module's docstring).
    order_lines = lines_as_of(run_date).cache()

    facts: dict = {}
    failures: dict = {}   # model -> why it did not train today (isolated_model)
    if lake.read("silver.sessions").isEmpty():  # every source is optional: say what the features lack
        facts["missing_inputs"] = ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]
        log.warning("analyze for %s: %s", run_date, facts["missing_inputs"][0])
    # Propensity's and next best category's point in time: features as of the cutoff, labels after it.
    cutoff = run_date - dt.timedelta(days=p.label_days)
    lines_then = lines_as_of(cutoff)
    behaviour_then = behaviour_as_of(cutoff, lines_then).cache()
    behaviour = behaviour_as_of(run_date, order_lines).cache()
    at_once = lake.writers_at_once(conf.analyze.steps_at_once)
    tracking.configure(conf)   # the experiment made once, before the steps side by side log their runs in it

    def reports() -> list:
        with timed(log, f"reports for {run_date}") as f:
            f["reports"] = write_reports(lake, conf, order_lines, people, run_date, report_dir)
        return f["reports"]

    def fit_propensity() -> dict:
        with isolated_model("propensity", run_date, failures) as f:
            labelled = with_purchase_label(behaviour_then, order_lines, cutoff, p.label_days)
            f.update(specs.propensity(conf, labelled, run_date, tracking.fingerprint(inputs, {"propensity": p.model_dump(mode="json"), **shared})))
        return dict(f)

    def fit_next_best_category() -> dict:
        with isolated_model("next_best_category", run_date, failures) as f:
            c = conf.analyze.next_best_category
            bought = categories.categories_bought(order_lines, cutoff, p.label_days)
            pairs = categories.with_category_label(categories.person_categories(behaviour_then, lines_then, cutoff), bought)
            settings = {"next_best_category": c.model_dump(mode="json"), "label_days": p.label_days, "holdout_share": p.holdout_share, **shared}
            f.update(specs.next_best_category(conf, pairs, bought, run_date, tracking.fingerprint(inputs, settings)))
        return dict(f)

    def fit_segmentation() -> dict:
        with isolated_model("segmentation", run_date, failures) as f:
            f.update(specs.segmentation(conf, behaviour, run_date, report_dir, tracking.fingerprint(inputs, {"segmentation": s.model_dump(mode="json"), **shared})))
        return dict(f)

    def fit_lifetime_value() -> tuple[DataFrame, dict]:
        valued = without_lifetime_value(people.select("person_id"), horizon)
        with isolated_model("lifetime_value", run_date, failures) as f:
            valued, f_clv = lifetime_value(conf, spark, people.select("person_id"), order_lines, run_date)
            f.update(f_clv)
        # Each forecast is served only when fitted today and, judged on a past date, it beat its
        # naive baseline; not fitted today, neither is judged (nothing of the model is served).
        fitted, churn, forecast = "lifetime_value" not in failures, {}, {}
        if fitted:
            with isolated_model("churn_ranking", run_date, failures) as churn:
                churn.update(retention.judge_churn_ranking(conf, spark, lines_as_of, order_lines, run_date))
            with isolated_model("value_forecast", run_date, failures) as forecast:
                forecast.update(clv.judge_value_forecast(conf, spark, lines_as_of, order_lines, run_date))
        served = clv.served_forecasts(fitted, churn, forecast)
        return clv.served_columns(valued, horizon, served), {**f, "churn_ranking": dict(churn), "value_forecast": dict(forecast), "served": served}

    # The reports and the models need nothing of each other: side by side.
    before_scores = side_by_side(spark, {"reports": reports, "propensity": fit_propensity, "next_best_category": fit_next_best_category,
                                         "segmentation": fit_segmentation, "lifetime_value": fit_lifetime_value}, at_once)
    valued, lifetime_facts = before_scores.pop("lifetime_value")
    facts.update(before_scores, lifetime_value=lifetime_facts)
    with timed(log, f"score persons for {run_date}") as f:
        # Each model's champion, whatever today's challenger did; a model without one yet leaves its columns null.
        propensity_model, propensity_version = tracking.champion(p.model_name)
        segment_model, segment_version = tracking.champion(s.model_name)
        f.update(propensity_champion=propensity_version, segmentation_champion=segment_version)
        if segment_model is not None:
            segmented = models.named_segments(segment_model, behaviour, behaviour.columns)[0]
        else:
            segmented = behaviour.select("*", F.lit(None).cast("int").alias("segment_id"), F.lit(None).cast("string").alias("segment"))
        if propensity_model is not None:
            propensity = models.with_propensity_score(propensity_model, segmented)
        else:
            propensity = segmented.withColumn("propensity_score", F.lit(None).cast("double"))
        # Cached: the deciles and the RFM scores each aggregate it before its rows are written.
        propensity = propensity.cache()
        top_categories, f["next_best_category"] = next_best_categories(lake, conf, behaviour, order_lines, run_date)
        recent = clv.revenue_between(order_lines, run_date - dt.timedelta(days=horizon), run_date).withColumnRenamed("revenue", "current_value")
        value_forecast = lifetime_facts["served"]["value_forecast"]
        scored = with_rfm_scores(
            with_deciles(propensity, "propensity_score", "propensity_decile", accuracy), conf.analyze.rfm_quantiles, accuracy
        )
        table = (
            scored.join(valued, "person_id", "left")
            .join(top_categories, "person_id", "left")
            .join(recent, "person_id", "left")
            .join(preferred_channels(behaviour, order_lines, sessions_as_of(run_date), run_date), "person_id", "left")
            .withColumn("predicted_value", F.col(f"expected_value_{horizon}d") if value_forecast == clv.MODEL_FORECAST else F.col("current_value"))
            .withColumn("value_forecast", F.lit(value_forecast))
            .join(people.select("person_id", "marketing_consent", "orders", "open_complaints", "referred_buyers"), "person_id", "left")
            .join(service.recent_satisfaction(contacts, run_date, conf.analyze.loyalty.satisfaction_recent_days), "person_id", "left")
            .transform(lambda df: with_value_tier(df, conf.analyze.value, accuracy))
            .transform(lambda df: with_loyalty_level(df, conf.analyze.loyalty))
            .drop("recent_satisfaction")
            .withColumn("propensity_model", model_column(p.model_name, propensity_version))
            .withColumn("segment_model", model_column(s.model_name, segment_version))
            .withColumn("score_date", F.lit(run_date))
        )
        f["persons_scored"] = lake.overwrite_where(SCORES, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
        scores = lake.read(SCORES).where(f"score_date = DATE'{run_date}'")
        # Safe to collect: a handful of tiers times rungs, counted in one pass.
        tiers, rungs = collections.Counter(), collections.Counter()
        for r in scores.groupBy("value_tier", "loyalty_level").count().collect():
            tiers[r["value_tier"]] += r["count"]
            rungs[r["loyalty_level"]] += r["count"]
        f["value_tiers"], f["loyalty_ladder"] = dict(tiers), dict(rungs)
        f.update(pareto(lake, conf, report_dir, scores, run_date))
        write_profiles(conf.exports_root, scores, run_date)
    facts["scores"] = dict(f)
    scored_today = lake.read(SCORES).where(f"score_date = DATE'{run_date}'")

    def uplift() -> dict:
        with isolated_model("uplift", run_date, failures) as f:
            f.update(audience_uplift(lake, conf, behaviour_as_of, order_lines, behaviour, run_date, inputs, report_dir, failures))
        return dict(f)

    def service_and_engagement() -> dict:
        with timed(log, f"service and campaign engagement for {run_date}") as f:
            f.update(service.write_service(lake, conf.analyze.service, contacts, scored_today, run_date))
            f.update(write_campaign_engagement(lake, lake.read("bronze.campaign_events"), run_date, tz, conf.campaigns.cost_per_contact.email))
        return dict(f)

    def retention_and_churn() -> dict:
        with timed(log, f"retention and churn for {run_date}") as f:
            sessions = with_session_person_id(lake.read("silver.sessions"), identity_map)
            f.update(retention.write_retention(lake, conf, order_lines, contacts, sessions, run_date, lifetime_facts["served"]["churn_ranking"]))
        return dict(f)

    def profitability() -> dict:
        with timed(log, f"customer profitability for {run_date}") as f:
            f.update(write_customer_profitability(lake, conf, scored_today, order_lines, contacts, identity_map, run_date, report_dir))
        return dict(f)

    def acquisition() -> dict:
        with timed(log, f"acquisition sources and referrals for {run_date}") as f:
            f.update(write_acquisition(lake, conf.analyze.acquisition, members(run_date), order_lines, identity_map, run_date, tz))
        return dict(f)

    def companies() -> dict:
        with timed(log, f"company scores for {run_date}") as f:
            f["companies_scored"] = score_companies(lake, conf, order_lines, identity_map, scored_today, run_date,
                                                    lifetime_facts["served"]["value_forecast"] == clv.MODEL_FORECAST)
        return dict(f)

    # Each step from the scores writes tables of its own: side by side.
    from_scores = {"uplift": uplift, "service_and_engagement": service_and_engagement, "retention": retention_and_churn,
                   "profitability": profitability, "acquisition": acquisition, **({"companies": companies} if lake.exists(COMPANIES) else {})}
    facts.update(side_by_side(spark, from_scores, at_once))
    # Last: its sections read the gold tables written above; a section that fails is listed in failures.
    facts["monthly_report"] = management.write_monthly_report(lake, conf, run_date, report_dir, failures)
    for cached in (people, contacts, first_logins, order_lines, behaviour_then, behaviour, propensity):
        cached.unpersist()
    if failures:
        log.warning("analyze for %s: scores written without %s", run_date, "; ".join(f"{name} ({reason})" for name, reason in failures.items()))
    return {**facts, "failed": dict(sorted(failures.items()))}   # in one order, whichever step failed first
