"""Customer value: the Pareto curve, value tiers and the loyalty ladder.

Value tiers (thresholds in conf ``analyze.value``, :class:`~crmlake.config_schema.Value`), first match wins:

* ``most_valuable``: current value (revenue in the last ``horizon_days``) in the top
  ``most_valuable_top_share`` of buyers (percent rank among buyers below it, ties sharing
  a rank);
* ``most_growth_potential``: predicted value (expected value over the next
  ``horizon_days``, from the lifetime-value model) at least ``growth_ratio`` times the
  current value and at least ``growth_min_value``;
* ``not_worth_developing``: predicted value times ``margin`` below ``cost_to_serve`` (what
  keeping the person in programmes costs over the horizon);
* ``maintain``: everyone else.

The loyalty ladder (conf ``analyze.loyalty``, :class:`~crmlake.config_schema.Loyalty`), highest rung reached: ``prospect`` (no
completed order), ``unsatisfied`` (bought, and has an unresolved complaint or rated the
service below ``satisfied_min_rating`` last time in the ``satisfaction_recent_days``),
``satisfied`` (bought, no unresolved complaint, and a recent latest rating of
``satisfied_min_rating`` or more, or no recent rating), ``repeat_buyer`` (satisfied, at least
``repeat_min_orders`` orders), ``advocate`` (satisfied, referred at least
``advocate_min_referred_buyers`` members who bought).

A buyer with no recent rating is judged by complaints alone: most buyers never contact the
service desk, and silence is no evidence of discontent; counting them unsatisfied would empty
the rungs above (which all stand on ``satisfied``).
"""

from __future__ import annotations

import math
from fractions import Fraction

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.ranking import cut_points, with_running_totals
from crmlake.config_analyze import Loyalty, Value


def with_value_tier(persons: DataFrame, rules: Value, accuracy: int) -> DataFrame:
    """Add ``value_tier``. Takes one row per person (or company) with ``current_value`` and
    ``predicted_value`` (doubles, null = 0).

    Most valuable: a buyer (current value > 0) with fewer than ``most_valuable_top_share`` x
    (buyers - 1) buyers worth more: Spark's percent_rank below the share, with tied buyers
    sharing a rank (a tie block at the boundary is in or out together; a single buyer is
    in). Counts the buyers (one job), then takes the value threshold, the value of the
    buyer ranked just after the ones allowed ahead, from percentile_approx of ``accuracy``
    (:mod:`crmlake.analyze.ranking`): exact on a few buyers, its rank off by at most about
    buyers / ``accuracy`` on many.
    """
    current = F.coalesce(F.col("current_value"), F.lit(0.0))
    predicted = F.coalesce(F.col("predicted_value"), F.lit(0.0))
    buyers = persons.where(current > 0)
    count = buyers.count()
    top = F.lit(False)
    if count:
        # At most this many buyers may be worth more (exact fractions: 0.7 x 10 must not round up to 7.000000000000001).
        ahead = max(math.ceil(Fraction(repr(rules.most_valuable_top_share)) * (count - 1)) - 1, 0)
        # The (ahead + 1)-th highest value: the quantile of the negated values at that rank,
        # asked for half a rank below it so that rounding cannot move it. Safe to collect: one number.
        cut = cut_points(buyers, {"cut": -current}, [(ahead + 0.5) / count], accuracy).first()["cut"][0]
        top = (current > 0) & (current >= F.lit(-cut))
    tier = (
        F.when(top, "most_valuable")
        .when((predicted >= rules.growth_ratio * current) & (predicted >= rules.growth_min_value), "most_growth_potential")
        .when(predicted * rules.margin < rules.cost_to_serve, "not_worth_developing")
        .otherwise("maintain")
    )
    return persons.withColumn("value_tier", tier)


def with_loyalty_level(persons: DataFrame, rules: Loyalty) -> DataFrame:
    """Add ``loyalty_level`` (the rungs: the module's docstring). Takes orders, open_complaints,
    referred_buyers and recent_satisfaction (the latest rating of the recent days, null when
    none: :func:`crmlake.analyze.service.recent_satisfaction`) per person."""
    bought = F.col("orders") > 0
    rated_low = F.coalesce(F.col("recent_satisfaction") < rules.satisfied_min_rating, F.lit(False))
    content = bought & (F.coalesce(F.col("open_complaints"), F.lit(0)) == 0) & ~rated_low
    level = (
        F.when(content & (F.coalesce(F.col("referred_buyers"), F.lit(0)) >= rules.advocate_min_referred_buyers), "advocate")
        .when(content & (F.col("orders") >= rules.repeat_min_orders), "repeat_buyer")
        .when(content, "satisfied")
        .when(bought, "unsatisfied")
        .otherwise("prospect")
    )
    return persons.withColumn("loyalty_level", level)


def pareto_curve(persons: DataFrame, value_col: str, ranges: int, accuracy: int, points: int = 100) -> DataFrame:
    """Return the Pareto curve: ``top_share`` (of customers, best first) and ``value_share``
    (of all value they bring), at ``points`` evenly spaced shares. Customers are persons
    with a positive ``value_col``.

    Exact: the running sum is a distributed prefix sum over ``ranges`` value ranges
    (:func:`crmlake.analyze.ranking.with_running_totals`; ``accuracy`` only sets where the
    ranges are cut), so ``persons`` must give the same rows each time it is read. The share
    at a point is the value of the customers ranked up to it, ties taking consecutive ranks.
    """
    customers = persons.where(F.col(value_col) > 0).select(F.col(value_col).cast("double").alias("value"))
    ranked, customers_n, total = with_running_totals(customers, "value", ranges, accuracy)
    steps = ranked.withColumn("point", F.ceil(F.col("rank") * points / F.lit(customers_n)))
    return steps.groupBy("point").agg(
        (F.max("point") / points).alias("top_share"), (F.max("cumulative") / F.lit(total)).alias("value_share")
    ).select(F.round("top_share", 4).alias("top_share"), F.round("value_share", 6).alias("value_share")).orderBy("top_share")


def revenue_share_by(persons: DataFrame, group: str) -> DataFrame:
    """Return one row per value of ``group`` (segment, value_tier) of a scored person table.

    Takes persons with ``group``, frequency, monetary (revenue to date), current_value
    (revenue in the last horizon) and propensity_score. Columns: ``group``, persons, buyers,
    revenue, revenue_share (of all persons' revenue), current_value, mean_recency_days
    (buyers), mean_propensity; largest revenue first.
    """
    total = persons.agg(F.sum("monetary").alias("_total"))
    per_group = persons.groupBy(group).agg(
        F.count(F.lit(1)).alias("persons"),
        F.sum(F.when(F.col("frequency") > 0, 1).otherwise(0)).alias("buyers"),
        F.sum("monetary").alias("revenue"),
        F.sum(F.coalesce("current_value", F.lit(0.0))).alias("current_value"),
        F.avg(F.when(F.col("frequency") > 0, F.col("recency_days"))).alias("mean_recency_days"),
        F.avg("propensity_score").alias("mean_propensity"),
    )
    return per_group.crossJoin(total).select(
        group, "persons", "buyers", F.round("revenue", 2).alias("revenue"),
        F.round(F.when(F.col("_total") > 0, F.col("revenue") / F.col("_total")), 4).alias("revenue_share"),
        F.round("current_value", 2).alias("current_value"), F.round("mean_recency_days", 1).alias("mean_recency_days"),
        F.round("mean_propensity", 4).alias("mean_propensity"),
    ).orderBy(F.desc("revenue"), group)
