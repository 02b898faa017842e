"""B2B value: recency, frequency and monetary value, and the value tier, of each customer company.

A company (``silver.companies``) is valued as one customer: its orders are the completed
orders of all its accounts; its predicted value is the sum of the predicted values of the
persons holding its accounts (each person once). RFM scores and value tiers use the same
rules as persons (:func:`~crmlake.analyze.features.with_rfm_scores`,
:func:`~crmlake.analyze.value.with_value_tier`), ranked among companies.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.features import with_rfm_scores
from crmlake.analyze.value import with_value_tier
from crmlake.config_analyze import Value


def company_members(companies: DataFrame) -> DataFrame:
    """Return (company_id, account_id): one row per account of each company."""
    return companies.select("company_id", F.explode("account_ids").alias("account_id"))


def company_scores(companies: DataFrame, order_lines: DataFrame, members: DataFrame, person_values: DataFrame | None,
                   run_date: dt.date, horizon_days: int, quantiles: int, rules: Value, accuracy: int) -> DataFrame:
    """Return one row per company as of ``run_date`` (gold.company_scores without score_date).

    Takes silver.companies, order lines (account_id, order_id, order_date, status,
    line_amount), members (company_id, account_id, person_id) and person_values (person_id,
    predicted_value: the lifetime-value model's forecast, summed over the company's persons;
    None where the model's forecast is not served: the company's current value repeats). Columns: company_id, accounts, buyers, first_order_at, last_order_at,
    last_buyer_account_id, recency_days (null before a first order), frequency (orders),
    monetary (revenue to date), current_value (revenue in the last ``horizon_days``),
    predicted_value, r_score, f_score, m_score, rfm_cell, value_tier (RFM ``quantiles`` and
    the most valuable share from percentile_approx cut points of ``accuracy``).
    """
    since = run_date - dt.timedelta(days=horizon_days)
    lines = order_lines.where((F.col("status") == "completed") & (F.col("order_date") <= F.lit(run_date))).join(
        members.select("company_id", "account_id"), "account_id"
    )
    bought = lines.groupBy("company_id").agg(
        F.countDistinct("order_id").alias("frequency"),
        F.sum("line_amount").cast("double").alias("monetary"),
        F.sum(F.when(F.col("order_date") > F.lit(since), F.col("line_amount")).otherwise(0)).cast("double").alias("current_value"),
        F.max("order_date").alias("last_order_date"),
    )
    per_company = companies.select("company_id", "accounts", "buyers", "first_order_at", "last_order_at", "last_buyer_account_id").join(
        bought, "company_id", "left")
    if person_values is None:
        per_company = per_company.withColumn("predicted_value", F.col("current_value"))
    else:
        predicted = (
            members.where(F.col("person_id").isNotNull()).select("company_id", "person_id").distinct()
            .join(person_values, "person_id").groupBy("company_id").agg(F.sum("predicted_value").alias("predicted_value"))
        )
        per_company = per_company.join(predicted, "company_id", "left")
    return (
        per_company.select(
            "company_id", "accounts", "buyers", "first_order_at", "last_order_at", "last_buyer_account_id",
            F.datediff(F.lit(run_date), "last_order_date").alias("recency_days"),
            F.coalesce("frequency", F.lit(0)).cast("long").alias("frequency"),
            F.coalesce("monetary", F.lit(0.0)).alias("monetary"),
            F.coalesce("current_value", F.lit(0.0)).alias("current_value"),
            F.coalesce("predicted_value", F.lit(0.0)).alias("predicted_value"),
        )
        .transform(lambda df: with_rfm_scores(df, quantiles, accuracy))
        .transform(lambda df: with_value_tier(df, rules, accuracy))
    )
