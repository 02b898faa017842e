"""How each campaign's recipients responded: ``gold.campaign_engagement``, one row per campaign
and send date.

A recipient belongs to the send date of their first event of the campaign (normally its
``sent``): their opens, clicks and conversions of the next days count for that send, so every
rate is a share of the same recipients. Counts are distinct recipients (accounts) with the
event; conversions and revenue count every ``converted`` event. Events after the end of the
run date have not happened yet.

* ``delivery_rate`` = delivered / sent, ``bounce_rate`` = bounced / sent;
* ``open_rate``, ``click_rate``, ``unsubscribe_rate``, ``complaint_rate`` = opened, clicked,
  unsubscribed, complained / delivered;
* ``conversions``, ``revenue`` (``business.currency``), ``revenue_per_delivered``.

A rate whose denominator is 0 is null.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crmlake.business_days import business_date, end_of_day
from crmlake.lake import Lake

CAMPAIGN_ENGAGEMENT = "gold.campaign_engagement"
RECIPIENT_EVENTS = ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")
# rate -> (numerator, denominator)
RATES = {
    "delivery_rate": ("delivered", "sent"), "open_rate": ("opened", "delivered"), "click_rate": ("clicked", "delivered"),
    "unsubscribe_rate": ("unsubscribed", "delivered"), "bounce_rate": ("bounced", "sent"), "complaint_rate": ("complained", "delivered"),
}


def _share(numerator: Column, denominator: Column) -> Column:
    return F.round(F.when(denominator > 0, numerator / denominator), 4)


def campaign_engagement(events: DataFrame, run_date: dt.date, timezone: str) -> DataFrame:
    """Return gold.campaign_engagement for every send date up to ``run_date`` (definitions: the module's docstring).

    Takes bronze.campaign_events (campaign_id, account_id, event, event_time, revenue).
    """
    known = events.where(F.col("event_time") < F.lit(end_of_day(run_date, timezone)))
    recipient = Window.partitionBy("campaign_id", "account_id")
    sends = known.withColumn("send_date", business_date(F.min("event_time").over(recipient), timezone))
    counts = [F.countDistinct(F.when(F.col("event") == name, F.col("account_id"))).alias(name) for name in RECIPIENT_EVENTS]
    converted = F.col("event") == "converted"
    per_send = sends.groupBy("campaign_id", "send_date").agg(
        *counts, F.sum(converted.cast("int")).cast("bigint").alias("conversions"),
        F.coalesce(F.sum(F.when(converted, F.col("revenue"))), F.lit(0)).cast("decimal(18,2)").alias("revenue"),
    )
    return per_send.select(
        "campaign_id", "send_date", *RECIPIENT_EVENTS,
        *[_share(F.col(numerator), F.col(denominator)).alias(rate) for rate, (numerator, denominator) in RATES.items()],
        "conversions", "revenue", F.round(F.when(F.col("delivered") > 0, F.col("revenue") / F.col("delivered")), 2).cast("double").alias("revenue_per_delivered"),
    )


def write_campaign_engagement(lake: Lake, events: DataFrame, run_date: dt.date, timezone: str) -> dict:
    """Write gold.campaign_engagement for every send date up to ``run_date`` (rebuilt: a
    recipient opens, clicks and converts in the days after a send); return its row count."""
    table = campaign_engagement(events, run_date, timezone)
    return {"campaign_engagement_rows": lake.overwrite_where(CAMPAIGN_ENGAGEMENT, table, f"send_date <= DATE'{run_date}'").rows_written}
