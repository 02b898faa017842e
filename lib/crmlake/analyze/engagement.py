"""How each campaign's recipients responded and what they cost: ``gold.campaign_engagement``,
one row per campaign and send date.

A recipient belongs to the send date of their first event of the campaign (normally its
``sent``): their opens, clicks and conversions of the next days count for that send, so every
rate is a share of the same recipients. Counts are distinct recipients (accounts) with the
event; conversions and revenue count every ``converted`` event. Events after the end of the
run date have not happened yet. Each column is defined once, in :data:`DEFINITIONS` (pages and
reports quote it from there).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crmlake.business_days import business_date, end_of_day
from crmlake.lake import Lake

CAMPAIGN_ENGAGEMENT = "gold.campaign_engagement"
RECIPIENT_EVENTS = ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")
DEFINITIONS = {
    "sent": "recipients (distinct accounts) of the send: the accounts whose first event of the campaign falls on the send date.",
    "delivered": "recipients whose email was delivered (likewise opened, clicked, unsubscribed, bounced, complained: recipients with that event).",
    "delivery_rate": "delivered / sent: the share of recipients whose email reached the inbox.",
    "bounce_rate": "bounced / sent: the share of recipients whose email bounced.",
    "open_rate": "opened / delivered: the share of delivered recipients who opened it at least once.",
    "click_rate": "clicked / delivered: the share of delivered recipients who clicked it at least once.",
    "unsubscribe_rate": "unsubscribed / delivered: the share of delivered recipients who unsubscribed.",
    "complaint_rate": "complained / delivered: the share of delivered recipients who marked it as spam.",
    "conversions": "converted events the email service attributed to the send (every one counts).",
    "revenue": "the revenue of those conversions, in business.currency.",
    "revenue_per_delivered": "revenue / delivered, in business.currency.",
    "cost": "sent × campaigns.cost_per_contact.email: what the send cost, in business.currency (campaign events are email).",
    "return_on_cost": "revenue / cost: attributed revenue per unit spent (gross, no control group; the incremental ROI is decide's).",
}
"""Each column of gold.campaign_engagement in one sentence; a rate or figure whose denominator is 0 is null."""
# rate -> (numerator, denominator)
RATES = {
    "delivery_rate": ("delivered", "sent"), "open_rate": ("opened", "delivered"), "click_rate": ("clicked", "delivered"),
    "unsubscribe_rate": ("unsubscribed", "delivered"), "bounce_rate": ("bounced", "sent"), "complaint_rate": ("complained", "delivered"),
}


def _share(numerator: Column, denominator: Column) -> Column:
    return F.round(F.when(denominator > 0, numerator / denominator), 4)


def campaign_engagement(events: DataFrame, run_date: dt.date, timezone: str, email_cost: float) -> DataFrame:
    """Return gold.campaign_engagement for every send date up to ``run_date`` (each column: :data:`DEFINITIONS`).

    Takes bronze.campaign_events (campaign_id, account_id, event, event_time, revenue) and
    ``email_cost``, the cost of one email sent (``campaigns.cost_per_contact.email``).
    """
    known = events.where(F.col("event_time") < F.lit(end_of_day(run_date, timezone)))
    recipient = Window.partitionBy("campaign_id", "account_id")
    sends = known.withColumn("send_date", business_date(F.min("event_time").over(recipient), timezone))
    counts = [F.countDistinct(F.when(F.col("event") == name, F.col("account_id"))).alias(name) for name in RECIPIENT_EVENTS]
    converted = F.col("event") == "converted"
    per_send = sends.groupBy("campaign_id", "send_date").agg(
        *counts, F.sum(converted.cast("int")).cast("bigint").alias("conversions"),
        F.coalesce(F.sum(F.when(converted, F.col("revenue"))), F.lit(0)).cast("decimal(18,2)").alias("revenue"),
    ).withColumn("cost", F.round(F.col("sent") * F.lit(email_cost), 2).cast("decimal(18,2)"))
    return per_send.select(
        "campaign_id", "send_date", *RECIPIENT_EVENTS,
        *[_share(F.col(numerator), F.col(denominator)).alias(rate) for rate, (numerator, denominator) in RATES.items()],
        "conversions", "revenue", F.round(F.when(F.col("delivered") > 0, F.col("revenue") / F.col("delivered")), 2).cast("double").alias("revenue_per_delivered"),
        "cost", F.round(F.when(F.col("cost") > 0, F.col("revenue") / F.col("cost")), 2).cast("double").alias("return_on_cost"),
    )


def write_campaign_engagement(lake: Lake, events: DataFrame, run_date: dt.date, timezone: str, email_cost: float) -> dict:
    """Write gold.campaign_engagement for every send date up to ``run_date`` (rebuilt: a
    recipient opens, clicks and converts in the days after a send; ``email_cost``: one email
    sent); return its row count."""
    table = campaign_engagement(events, run_date, timezone, email_cost)
    return {"campaign_engagement_rows": lake.overwrite_where(CAMPAIGN_ENGAGEMENT, table, f"send_date <= DATE'{run_date}'").rows_written}
