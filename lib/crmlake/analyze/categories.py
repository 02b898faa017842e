"""Next best category: which product category each person is likeliest to buy next.

One row per person and category (every category anyone had bought by the date) carries
the person's behaviour and their history in that category; one classifier over all pairs
scores P(buys this category in the label window), and each person's categories are
ranked by it. The baseline every model must beat is the same ranking for everyone: the
categories by how many buyers bought them.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

CATEGORY_FEATURES = ("category_popularity", "category_orders", "category_share", "category_recency_days", "frequency", "recency_days")


def _completed(order_lines: DataFrame) -> DataFrame:
    return order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & F.col("category").isNotNull())


def category_popularity(order_lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Return (category, category_popularity): the share of buyers up to ``as_of`` who bought the category."""
    bought = _completed(order_lines).where(F.col("order_date") <= F.lit(as_of))
    buyers = bought.agg(F.countDistinct("person_id").alias("_buyers"))
    per_category = bought.groupBy("category").agg(F.countDistinct("person_id").alias("_category_buyers"))
    return per_category.crossJoin(buyers).select("category", (F.col("_category_buyers") / F.col("_buyers")).alias("category_popularity"))


def person_categories(behaviour: DataFrame, order_lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Return one row per person of ``behaviour`` and category bought by anyone up to ``as_of``.

    Takes per-person behaviour (person_id, frequency, recency_days) and order lines with
    person_id. Columns: person_id, category and CATEGORY_FEATURES: the category's
    popularity, the person's orders in it, its share of their orders, and the days since
    they last bought it (their recency plus one when never).
    """
    mine = (
        _completed(order_lines).where(F.col("order_date") <= F.lit(as_of))
        .groupBy("person_id", "category")
        .agg(F.countDistinct("order_id").alias("category_orders"), F.max("order_date").alias("_last"))
    )
    # Few categories: every person is paired with each of them.
    pairs = behaviour.select("person_id", "frequency", "recency_days").crossJoin(F.broadcast(category_popularity(order_lines, as_of)))
    joined = pairs.join(mine, ["person_id", "category"], "left")
    orders = F.coalesce("category_orders", F.lit(0))
    return joined.select(
        "person_id", "category", "category_popularity",
        orders.cast("double").alias("category_orders"),
        F.when(F.col("frequency") > 0, orders / F.col("frequency")).otherwise(F.lit(0.0)).alias("category_share"),
        F.coalesce(F.datediff(F.lit(as_of), "_last"), F.col("recency_days") + 1).cast("double").alias("category_recency_days"),
        F.col("frequency").cast("double").alias("frequency"),
        F.col("recency_days").cast("double").alias("recency_days"),
    )


def categories_bought(order_lines: DataFrame, cutoff: dt.date, label_days: int) -> DataFrame:
    """Return the distinct (person_id, category) completed in the ``label_days`` after ``cutoff``."""
    horizon = cutoff + dt.timedelta(days=label_days)
    window = (F.col("order_date") > F.lit(cutoff)) & (F.col("order_date") <= F.lit(horizon))
    return _completed(order_lines).where(window).select("person_id", "category").distinct()


def with_category_label(pairs: DataFrame, bought: DataFrame) -> DataFrame:
    """Add ``label`` to person × category pairs: 1.0 when the pair is in ``bought``."""
    return pairs.join(bought.withColumn("label", F.lit(1.0)), ["person_id", "category"], "left").withColumn("label", F.coalesce("label", F.lit(0.0)))


def with_category_rank(scored: DataFrame, score_col: str) -> DataFrame:
    """Add ``rank`` (1 = the person's likeliest category) by ``score_col``; ties by category name."""
    return scored.withColumn("rank", F.row_number().over(Window.partitionBy("person_id").orderBy(F.col(score_col).desc(), "category")))


def hit_rates(ranked: DataFrame, bought: DataFrame, ks: tuple[int, ...] = (1, 3)) -> dict[str, float]:
    """Return ``top_<k>`` for each k: the share of persons who bought in the label window
    for whom one of their k best-ranked categories is a category they bought.

    Takes (person_id, category, rank) and (person_id, category) bought; persons who bought
    nothing are left out (there is nothing to hit).
    """
    hits = ranked.join(bought.withColumn("_bought", F.lit(1)), ["person_id", "category"], "left")
    per_person = hits.groupBy("person_id").agg(
        *[F.max(F.when((F.col("rank") <= k) & F.col("_bought").isNotNull(), 1).otherwise(0)).alias(f"top_{k}") for k in ks],
        F.max(F.col("_bought").isNotNull().cast("int")).alias("_buyer"),
    )
    totals = per_person.where("_buyer = 1").agg(F.count(F.lit(1)).alias("buyers"), *[F.sum(f"top_{k}").alias(f"top_{k}") for k in ks]).first()
    buyers = int(totals["buyers"] or 0)
    return {f"top_{k}": (float(totals[f"top_{k}"]) / buyers if buyers else 0.0) for k in ks}
