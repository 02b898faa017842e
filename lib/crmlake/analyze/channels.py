"""Each person's preferred channel: ``preferred_channel`` of ``gold.customer_scores``.

The rule, as of the score date, the first that tells:

1. ``email`` when they clicked a campaign email sent to them in the SESSION_DAYS up to it
   (``email_click_rate_30d`` > 0): they answer the channel we market on;
2. else the sales channel of most of their completed orders up to it (``web``, ``app``,
   ``store``: the orders' own channel);
3. else the channel of most of their visits in the SESSION_DAYS up to it (``app`` for a visit
   in the app, ``web`` for any other device);
4. else null: nothing tells.

On a tie in 2 or 3 the channel used most recently wins (then the first by name).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def _most_used(uses: DataFrame, channel: Column, at: Column, name: str) -> DataFrame:
    """Return (person_id, ``name``): each person's channel of most ``uses`` (rows with person_id),
    the most recent ``at`` (then the first by name) on a tie."""
    per_channel = uses.groupBy("person_id", channel.alias(name)).agg(F.count(F.lit(1)).alias("_uses"), F.max(at).alias("_latest"))
    rank = F.row_number().over(Window.partitionBy("person_id").orderBy(F.desc("_uses"), F.desc("_latest"), F.asc(name)))
    return per_channel.where(F.col(name).isNotNull()).withColumn("_rank", rank).where(F.col("_rank") == 1).select("person_id", name)


def preferred_channels(behaviour: DataFrame, order_lines: DataFrame, sessions: DataFrame, as_of: dt.date) -> DataFrame:
    """Return (person_id, preferred_channel) for each person of ``behaviour`` (the module's rule).

    Takes one row per person with ``email_click_rate_30d``
    (:func:`crmlake.analyze.features.with_email_engagement`), order lines with person_id,
    order_id, order_date, status and channel, and the sessions of the SESSION_DAYS up to
    ``as_of`` with person_id, device and session_start.
    """
    orders = (
        order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull() & (F.col("order_date") <= F.lit(as_of)))
        .select("person_id", "order_id", "channel", "order_date").distinct()
    )
    ordering = _most_used(orders, F.col("channel"), F.col("order_date"), "_order_channel")
    visiting = _most_used(sessions.where(F.col("person_id").isNotNull()), F.when(F.col("device") == "app", "app").otherwise("web"),
                          F.col("session_start"), "_visit_channel")
    return behaviour.select("person_id", "email_click_rate_30d").join(ordering, "person_id", "left").join(visiting, "person_id", "left").select(
        "person_id",
        F.coalesce(F.when(F.col("email_click_rate_30d") > 0, F.lit("email")), "_order_channel", "_visit_channel").alias("preferred_channel"),
    )
