"""Analyze's pure transforms: per-customer behaviour as of a date, RFM scores, labels.

Behaviour is what customers did, never what they declared: declared demographics go
stale, purchases and visits do not.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FEATURE_COLUMNS = (
    "recency_days", "frequency", "monetary", "tenure_days", "sessions_30d", "product_views_30d", "adds_to_cart_30d", "active_days_30d",
)


def _date_of(ts_col: str, timezone: str):
    return F.to_date(F.from_utc_timestamp(ts_col, timezone))


def customer_behaviour(people: DataFrame, order_lines: DataFrame, sessions: DataFrame, as_of: dt.date, timezone: str) -> DataFrame:
    """Return one row per person with behaviour up to and including ``as_of``.

    Takes silver.customer_360 (person_id, signup_time: only persons with a live account),
    and order lines and sessions carrying ``person_id``. Columns: person_id, the
    FEATURE_COLUMNS, last_purchase_date. Persons who signed up after ``as_of`` are left out.
    Only completed order lines count as purchases; recency for a customer who never
    bought is the tenure plus one day.
    """
    as_of_lit = F.lit(as_of)
    purchases = (
        order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & (F.col("order_date") <= as_of_lit))
        .groupBy("person_id")
        .agg(
            F.countDistinct("order_id").alias("frequency"),
            F.sum("line_amount").cast("double").alias("monetary"),
            F.max("order_date").alias("last_purchase_date"),
        )
    )
    window_start = F.date_sub(as_of_lit, 29)
    recent = (
        sessions.where(F.col("person_id").isNotNull() & F.col("session_date").between(window_start, as_of_lit))
        .groupBy("person_id")
        .agg(
            F.count(F.lit(1)).alias("sessions_30d"),
            F.sum("product_views").alias("product_views_30d"),
            F.sum("adds_to_cart").alias("adds_to_cart_30d"),
            F.countDistinct("session_date").alias("active_days_30d"),
        )
    )
    members = people.where(_date_of("signup_time", timezone) <= as_of_lit).select(
        "person_id", F.datediff(as_of_lit, _date_of("signup_time", timezone)).alias("tenure_days")
    )
    joined = members.join(purchases, "person_id", "left").join(recent, "person_id", "left")
    return joined.select(
        "person_id",
        F.coalesce(F.datediff(as_of_lit, "last_purchase_date"), F.col("tenure_days") + 1).alias("recency_days"),
        F.coalesce("frequency", F.lit(0)).cast("long").alias("frequency"),
        F.coalesce("monetary", F.lit(0.0)).alias("monetary"),
        "tenure_days",
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in ("sessions_30d", "product_views_30d", "adds_to_cart_30d", "active_days_30d")],
        "last_purchase_date",
    )


def with_rfm_scores(behaviour: DataFrame, quantiles: int = 5, key: str = "person_id") -> DataFrame:
    """Add r_score, f_score, m_score (1 = worst .. ``quantiles`` = best) and rfm_cell ("555").

    Takes one row per ``key`` (person_id, or company_id for companies) with recency_days,
    frequency and monetary. Scores rank buyers only (frequency > 0); one who never bought
    gets 0 for all three.
    """
    buyers = F.col("frequency") > 0
    scores = {
        "r_score": F.ntile(quantiles).over(Window.partitionBy(buyers).orderBy(F.col("recency_days").desc(), key)),
        "f_score": F.ntile(quantiles).over(Window.partitionBy(buyers).orderBy("frequency", key)),
        "m_score": F.ntile(quantiles).over(Window.partitionBy(buyers).orderBy("monetary", key)),
    }
    scored = behaviour
    for name, expr in scores.items():
        scored = scored.withColumn(name, F.when(buyers, expr).otherwise(F.lit(0)).cast("int"))
    return scored.withColumn("rfm_cell", F.concat_ws("", "r_score", "f_score", "m_score"))


def with_purchase_label(behaviour: DataFrame, order_lines: DataFrame, cutoff: dt.date, label_days: int) -> DataFrame:
    """Add ``label`` (1.0 when the account completed an order in the ``label_days`` after ``cutoff``)."""
    horizon = cutoff + dt.timedelta(days=label_days)
    buyers = (
        order_lines.where(
            (F.col("status") == "completed") & (F.col("order_date") > F.lit(cutoff)) & (F.col("order_date") <= F.lit(horizon))
        )
        .select("person_id")
        .distinct()
        .withColumn("label", F.lit(1.0))
    )
    return behaviour.join(buyers, "person_id", "left").withColumn("label", F.coalesce("label", F.lit(0.0)))


def with_deciles(scored: DataFrame, score_col: str, decile_col: str) -> DataFrame:
    """Add ``decile_col``: 10 for the highest tenth of ``score_col`` .. 1 for the lowest."""
    return scored.withColumn(decile_col, F.ntile(10).over(Window.orderBy(F.col(score_col).asc(), "person_id")))
