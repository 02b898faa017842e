"""Retention and churn: who stays, who is leaving and why, who moved between value tiers, and
how well the churn ranking did on a past date.

Purchases are completed order lines with a person, as they stood at the end of the run date;
dates are business dates (``business.timezone``). The conf is ``analyze.retention``. One
sentence per table, for reports: :data:`DEFINITIONS`.

``gold.cohort_retention`` (rebuilt each run, as of its run date): a person's cohort is the
month of their first purchase; for each cohort and each month since (0 = the cohort's month,
up to the run date's month, which counts up to the run date): ``cohort_persons``,
``retained_persons`` (those with a purchase in that month), ``retained_share`` (retained /
cohort persons) and ``revenue`` (of their purchases in that month).

``gold.churn_risk`` (partition ``score_date``): one row per person scored that date.
``p_alive`` is BG/NBD's (``gold.customer_scores``: null unless ``1 - p_alive`` is the ranking served); ``p_alive_change`` is it minus the person's
``p_alive`` on the previous score date (the latest earlier ``score_date`` of
``gold.customer_scores``; null when there is none or the person was not scored then).
``days_since_last_purchase``; ``usual_interval_days`` = days from the first to the last purchase
day / repeat purchase days (null below two purchase days). ``churn_risk_decile`` (10 = most at
risk, buyers only) ranks by the ranking served (``churn_ranking``): ``1 - p_alive`` when, judged
on the past date today, it beat the recency baseline; else days since the last purchase.
``main_reason``, the first that holds of (null: none):

* ``withdrew_consent``: agreed to marketing at the previous scoring, no longer does;
* ``recent_complaint``: a complaint opened in the ``complaint_days`` up to the run date, or still open;
* ``overdue``: no purchase for longer than ``overdue_factor`` times their usual interval;
* ``fewer_visits``: at least ``min_earlier_visits`` sessions in the ``visit_window_days`` before
  the last ``visit_window_days``, and fewer than ``visit_drop_share`` of that many in the last ones.

``gold.tier_transitions`` (partition ``score_date``): the persons scored on both the previous
score date and this one, per (from, to) value tier and segment: ``persons`` and ``revenue``
(their ``current_value`` on this date: revenue of the last ``lifetime_value.horizon_days``).
Empty when there is no earlier score date.

The churn ranking's judgement (:func:`judge_churn_ranking`): cutoff = run date - ``churn_days``;
a buyer as of the cutoff (order lines as they stood then) churned when they made no purchase
in the ``churn_days`` after it. AUC of ``1 - p_alive`` (BG/NBD fitted as of the cutoff) and of the
plain recency baseline (days since the last purchase at the cutoff), logged in MLflow.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.analyze import clv
from crmlake.analyze.clv import P_ALIVE, RECENCY
from crmlake.analyze.features import with_deciles, with_purchase_label
from crmlake.config import Conf
from crmlake.config_analyze import Retention
from crmlake.lake import Lake

COHORT_RETENTION = "gold.cohort_retention"
CHURN_RISK = "gold.churn_risk"
TIER_TRANSITIONS = "gold.tier_transitions"
DEFINITIONS = {
    "cohort_retention": "Of the persons whose first purchase fell in a month, the share who bought again in each later month, and their revenue then.",
    "churn_risk": "Each scored person's BG/NBD probability of still being a customer (blank unless it beat recency as the churn ranking), "
                  "its change since the previous scoring, their churn-risk decile and the first sign of leaving they show.",
    "tier_transitions": "Persons, and their recent revenue (the value tiers' current value), moving from one value tier and segment to another between two score dates.",
    "churn_ranking": "How well a churn ranking, made on a past date, picked the buyers who then bought nothing for the next days (AUC: 0.5 is chance, 1 perfect).",
}


def purchases(order_lines: DataFrame, run_date: dt.date) -> DataFrame:
    """Return the completed order lines with a person up to ``run_date`` (person_id, order_date, line_amount)."""
    return order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & (F.col("order_date") <= F.lit(run_date))).select(
        "person_id", "order_date", "line_amount")


def cohort_retention(order_lines: DataFrame, run_date: dt.date) -> DataFrame:
    """Return gold.cohort_retention as of ``run_date`` (the module's docstring): every cohort x
    month since, up to the run date's month, months without a buyer included (0 retained).

    Takes order lines with person_id, status, order_date, line_amount.
    """
    bought = purchases(order_lines, run_date).withColumn("month", F.trunc("order_date", "month"))
    cohorts = bought.groupBy("person_id").agg(F.min("month").alias("cohort_month"))
    months_since = F.months_between("month", "cohort_month").cast("int")
    active = bought.join(cohorts, "person_id").groupBy("cohort_month", months_since.alias("months_since")).agg(
        F.countDistinct("person_id").alias("retained_persons"), F.sum("line_amount").alias("revenue"))
    last = F.months_between(F.trunc(F.lit(run_date), "month"), "cohort_month").cast("int")
    grid = cohorts.groupBy("cohort_month").agg(F.count(F.lit(1)).alias("cohort_persons")).select(
        "cohort_month", "cohort_persons", F.explode(F.sequence(F.lit(0), last)).alias("months_since"))
    return grid.join(active, ["cohort_month", "months_since"], "left").select(
        "cohort_month", "months_since", "cohort_persons",
        F.coalesce("retained_persons", F.lit(0)).cast("bigint").alias("retained_persons"),
        F.round(F.coalesce("retained_persons", F.lit(0)) / F.col("cohort_persons"), 4).alias("retained_share"),
        F.coalesce("revenue", F.lit(0)).cast("decimal(18,2)").alias("revenue"),
    )


def purchase_rhythm(order_lines: DataFrame, run_date: dt.date) -> DataFrame:
    """Return (person_id, days_since_last_purchase, usual_interval_days) of every buyer up to
    ``run_date`` (BG/NBD's statistics in days: :func:`crmlake.analyze.clv.purchase_statistics`)."""
    stats = clv.purchase_statistics(order_lines, run_date, 1.0)
    return stats.select(
        "person_id", (F.col("T") - F.col("recency")).cast("int").alias("days_since_last_purchase"),
        F.round(F.when(F.col("frequency") > 0, F.col("recency") / F.col("frequency")), 1).alias("usual_interval_days"),
    )


def visit_trend(sessions: DataFrame, run_date: dt.date, window_days: int) -> DataFrame:
    """Return (person_id, recent_visits, earlier_visits): sessions in the ``window_days`` up to
    ``run_date`` and in the ``window_days`` before those. Takes sessions with person_id, session_date."""
    since = run_date - dt.timedelta(days=window_days)
    visits = sessions.where(F.col("person_id").isNotNull() & F.col("session_date").between(F.lit(since - dt.timedelta(days=window_days - 1)), F.lit(run_date)))
    recent = F.col("session_date") > F.lit(since)
    return visits.groupBy("person_id").agg(F.sum(recent.cast("int")).alias("recent_visits"), F.sum((~recent).cast("int")).alias("earlier_visits"))


def complainers(person_contacts: DataFrame, run_date: dt.date, days: int) -> DataFrame:
    """Return (person_id, recent_complaint = true) of the persons with a complaint opened in the
    ``days`` up to ``run_date`` or still open. Takes :func:`crmlake.analyze.service.contacts_as_of` with person_id."""
    since = F.lit(run_date - dt.timedelta(days=days - 1))
    complaints = person_contacts.where(F.col("person_id").isNotNull() & (F.col("type") == "complaint"))
    return complaints.where((F.col("opened_date") >= since) | F.col("closed_time").isNull()).select("person_id").distinct().withColumn(
        "recent_complaint", F.lit(True))


def with_main_reason(persons: DataFrame, rules: Retention) -> DataFrame:
    """Add ``main_reason`` (the module's docstring; null when none holds). Takes per person:
    marketing_consent, previous_consent, recent_complaint, days_since_last_purchase,
    usual_interval_days, recent_visits, earlier_visits (nulls: the sign is absent)."""
    earlier = F.coalesce(F.col("earlier_visits"), F.lit(0))
    reason = (
        F.when(F.col("previous_consent") & ~F.coalesce(F.col("marketing_consent"), F.lit(False)), "withdrew_consent")
        .when(F.coalesce(F.col("recent_complaint"), F.lit(False)), "recent_complaint")
        .when(F.col("days_since_last_purchase") > rules.overdue_factor * F.col("usual_interval_days"), "overdue")
        .when((earlier >= rules.min_earlier_visits) & (F.coalesce(F.col("recent_visits"), F.lit(0)) < rules.visit_drop_share * earlier), "fewer_visits")
    )
    return persons.withColumn("main_reason", reason)


def churn_risk(today: DataFrame, previous: DataFrame, rhythm: DataFrame, visits: DataFrame, complaining: DataFrame,
               rules: Retention, ranking: str, accuracy: int) -> DataFrame:
    """Return gold.churn_risk rows of today's scored persons (the module's docstring).

    Takes today's and the previous score date's scores (person_id, p_alive, value_tier, segment,
    marketing_consent, score_date; ``previous`` empty when there is none), :func:`purchase_rhythm`,
    :func:`visit_trend`, :func:`complainers`, and the ranking served (P_ALIVE or RECENCY).
    """
    before = previous.select("person_id", F.col("p_alive").alias("previous_p_alive"), F.col("marketing_consent").alias("previous_consent"),
                             F.col("score_date").alias("previous_score_date"))
    risk = (1 - F.col("p_alive")) if ranking == P_ALIVE else F.col("days_since_last_purchase").cast("double")
    joined = (today.select("person_id", "value_tier", "segment", "p_alive", "marketing_consent", "score_date")
              .join(before, "person_id", "left").join(rhythm, "person_id", "left").join(visits, "person_id", "left")
              .join(complaining, "person_id", "left")
              .withColumn("_risk", F.when(F.col("days_since_last_purchase").isNotNull(), risk)))
    ranked = with_deciles(with_main_reason(joined, rules), "_risk", "churn_risk_decile", accuracy)
    return ranked.select(
        "person_id", "value_tier", "segment", "p_alive", F.round(F.col("p_alive") - F.col("previous_p_alive"), 6).alias("p_alive_change"),
        "previous_score_date", "days_since_last_purchase", "usual_interval_days", "churn_risk_decile", F.lit(ranking).alias("churn_ranking"),
        "main_reason", "score_date",
    )


def tier_transitions(today: DataFrame, previous: DataFrame) -> DataFrame:
    """Return gold.tier_transitions: today's and the previous score date's scores (person_id,
    value_tier, segment, score_date; today's with current_value) joined on the person, counted
    per from -> to tier and segment. Empty when ``previous`` is."""
    before = previous.select("person_id", F.col("value_tier").alias("from_value_tier"), F.col("segment").alias("from_segment"),
                             F.col("score_date").alias("from_score_date"))
    moved = today.join(before, "person_id").groupBy(
        "from_score_date", "from_value_tier", F.col("value_tier").alias("to_value_tier"), "from_segment", F.col("segment").alias("to_segment"), "score_date")
    return moved.agg(F.count(F.lit(1)).alias("persons"), F.round(F.sum(F.coalesce("current_value", F.lit(0.0))), 2).alias("revenue")).select(
        "from_score_date", "from_value_tier", "to_value_tier", "from_segment", "to_segment", "persons", "revenue", "score_date")


def previous_score_date(scores: DataFrame, run_date: dt.date) -> dt.date | None:
    """Return the latest ``score_date`` of gold.customer_scores before ``run_date`` (None: none)."""
    # Safe to collect: one value.
    return scores.where(F.col("score_date") < F.lit(run_date)).agg(F.max("score_date")).first()[0]


def judge_churn_ranking(conf: Conf, spark: SparkSession, lines_as_of: Callable[[dt.date], DataFrame], order_lines: DataFrame,
                        run_date: dt.date) -> dict:
    """Judge the churn rankings on the past date (the module's docstring), log them in an MLflow
    run; return cutoff, buyers, churned, auc_p_alive, auc_recency and ``served`` (the better).

    Takes a function giving the order lines (with person_id) as they stood at the end of a date,
    and today's. A lake too young to judge on (fewer than ``lifetime_value.min_repeat_buyers``
    repeat buyers as of the cutoff, or buyers who all churned or all stayed) is no failure: the
    plain recency baseline, which needs no fit, is served, and the return says why nothing was
    judged (cutoff, ``not_judged``, ``served``).
    """
    import mlflow

    days, unit_days, min_repeat = conf.analyze.retention.churn_days, conf.analyze.lifetime_value.time_unit_days, conf.analyze.lifetime_value.min_repeat_buyers
    cutoff = run_date - dt.timedelta(days=days)
    stats, model, _, not_fitted = clv.fit_as_of(lines_as_of(cutoff), cutoff, unit_days, min_repeat)
    if model is None:
        stats.unpersist()
        return {"cutoff": str(cutoff), "served": RECENCY, "not_judged": not_fitted}
    alive = clv.with_lifetime_value(spark, stats.select("person_id", F.round((F.col("T") - F.col("recency")) * unit_days).alias("days_since")),
                                    stats, model, conf.analyze.lifetime_value.horizon_days)
    labelled = with_purchase_label(alive, order_lines, cutoff, days).select(
        (1 - F.col("label")).alias("churned"), (1 - F.col("p_alive")).alias(P_ALIVE), F.col("days_since").alias(RECENCY)).cache()
    stats.unpersist()
    counts = labelled.agg(F.count(F.lit(1)).alias("buyers"), F.sum("churned").alias("churned")).first()
    buyers, churned = counts["buyers"], int(counts["churned"])
    if churned in (0, buyers):
        labelled.unpersist()
        return {"cutoff": str(cutoff), "served": RECENCY, "not_judged": f"of {buyers} buyers as of {cutoff}, {churned} churned; an AUC needs both"}
    auc = {name: float(BinaryClassificationEvaluator(labelCol="churned", rawPredictionCol=name).evaluate(labelled)) for name in (P_ALIVE, RECENCY)}
    labelled.unpersist()
    served = P_ALIVE if auc[P_ALIVE] > auc[RECENCY] else RECENCY
    with tracking.tracked_run(conf, f"churn-ranking-{run_date}", {"stage": "analyze", "run_date": str(run_date), "served": served}):
        mlflow.log_params({"churn_days": days, "cutoff": str(cutoff), "ranking": "1 - p_alive (BG/NBD as of the cutoff)",
                           "baseline": "days since the last purchase"})
        mlflow.log_metrics({"auc_p_alive": auc[P_ALIVE], "auc_recency": auc[RECENCY], "buyers": buyers, "churned": churned})
    return {"cutoff": str(cutoff), "buyers": buyers, "churned": churned, "auc_p_alive": round(auc[P_ALIVE], 4),
            "auc_recency": round(auc[RECENCY], 4), "served": served}


def write_retention(lake: Lake, conf: Conf, order_lines: DataFrame, person_contacts: DataFrame, sessions: DataFrame, run_date: dt.date,
                    ranking: str) -> dict:
    """Write gold.cohort_retention (rebuilt), and gold.churn_risk and gold.tier_transitions for
    ``run_date`` (from its scores, already written); return their row counts and the previous score date.

    Takes order lines, service contacts (:func:`crmlake.analyze.service.contacts_as_of`) and
    sessions with person_id as they stood at the end of ``run_date``, and the churn ranking
    served (:data:`P_ALIVE` or :data:`RECENCY`).
    """
    rules = conf.analyze.retention
    scores = lake.read("gold.customer_scores")
    previous_date = previous_score_date(scores, run_date)
    today = scores.where(F.col("score_date") == F.lit(run_date))
    previous = scores.where(F.col("score_date") == F.lit(previous_date)) if previous_date else scores.where(F.lit(False))
    risk = churn_risk(today, previous, purchase_rhythm(order_lines, run_date), visit_trend(sessions, run_date, rules.visit_window_days),
                      complainers(person_contacts, run_date, rules.complaint_days), rules, ranking, conf.analyze.ranking.quantile_accuracy)
    where = f"score_date = DATE'{run_date}'"
    return {
        "cohort_retention_rows": lake.overwrite(COHORT_RETENTION, cohort_retention(order_lines, run_date)).rows_written,
        "churn_risk_rows": lake.overwrite_where(CHURN_RISK, risk, where, partition_by=["score_date"]).rows_written,
        "tier_transition_rows": lake.overwrite_where(TIER_TRANSITIONS, tier_transitions(today, previous), where, partition_by=["score_date"]).rows_written,
        "previous_score_date": str(previous_date) if previous_date else None,
    }
