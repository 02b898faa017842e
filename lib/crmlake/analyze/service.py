"""How the service desk treats customers: daily figures per channel and type, the valuable
customers who keep complaining, and each person's latest rating for the loyalty ladder.

Every figure reads the service contacts as they stood at the end of the run date
(:func:`contacts_as_of`): a contact opened later is not there yet, one closed later is still
open. Dates are business dates (``business.timezone``).

``gold.service_kpis`` has one row per date, channel and type with any contact opened, closed
or still open at the end of that date; ``gold.repeat_complainers`` lists, per run date, the
valuable persons who keep complaining. Each figure is defined once, in :data:`DEFINITIONS`
(reports and the page quote it from there).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.config_analyze import Service
from crmlake.lake import Lake
from crmlake.business_days import business_date, end_of_day
from crmlake.interactions import latest_contacts

SERVICE_KPIS = "gold.service_kpis"
REPEAT_COMPLAINERS = "gold.repeat_complainers"
DEFINITIONS = {
    "opened": "contacts opened that date.",
    "closed": "contacts closed that date.",
    "backlog": "contacts open at the end of that date (opened by then, not closed by then).",
    "median_hours_to_close": "of the contacts closed that date, the median of the hours from opening to closing "
                             "(exact, interpolated between the two nearest contacts).",
    "p95_hours_to_close": "of the contacts closed that date, the 95th percentile of the hours from opening to closing "
                          "(exact, interpolated between the two nearest contacts).",
    "past_target_share": "of the contacts closed that date, the share that took longer than the service-level target "
                         "of their channel (analyze.service.target_hours, or the channel's own).",
    "mean_satisfaction": "the mean of the ratings given to the contacts closed that date (a rating is given at closing).",
    "repeat_complainers": "the persons of a high-value tier (analyze.service.high_value_tiers) who opened at least "
                          "analyze.service.repeat_complaints complaints in the analyze.service.complaint_window_days up to the list date.",
}
"""Each figure of gold.service_kpis (per date, channel and type) and who gold.repeat_complainers lists, in one sentence."""
SECONDS_PER_HOUR = 3600.0


def contacts_as_of(interactions: DataFrame, run_date: dt.date, timezone: str) -> DataFrame:
    """Return the service contacts as they stood at the end of ``run_date``, one row each.

    Takes bronze.interactions (a contact may arrive again, closed or rated later): each
    ``interaction_id`` keeps its latest version (by closing, else opening time; then the latest
    ingested), as organize's customer 360 does. Contacts opened after ``run_date`` are left out;
    a closing (and its rating) after it has not happened yet. Adds ``opened_date`` and
    ``closed_date`` (business dates, null while open) and ``hours_to_close``.
    """
    end = F.lit(end_of_day(run_date, timezone))
    latest = latest_contacts(interactions).where(F.col("opened_time") < end)
    closed_by_then = F.col("closed_time").isNotNull() & (F.col("closed_time") < end)
    return latest.select(
        "interaction_id", "account_id", "channel", "type", "opened_time",
        F.when(closed_by_then, F.col("closed_time")).alias("closed_time"),
        F.when(closed_by_then, F.col("satisfaction")).alias("satisfaction"),
        business_date(F.col("opened_time"), timezone).alias("opened_date"),
        F.when(closed_by_then, business_date(F.col("closed_time"), timezone)).alias("closed_date"),
        F.when(closed_by_then, (F.unix_timestamp("closed_time") - F.unix_timestamp("opened_time")) / SECONDS_PER_HOUR).alias("hours_to_close"),
    )


def target_hours(channel: Column, rules: Service) -> Column:
    """Column: the service-level target, in hours, of a contact on ``channel``."""
    target = F.lit(rules.target_hours)
    for name, hours in sorted(rules.target_hours_by_channel.items()):
        target = F.when(channel == F.lit(name), F.lit(hours)).otherwise(target)
    return target


def service_kpis(contacts: DataFrame, run_date: dt.date, rules: Service) -> DataFrame:
    """Return gold.service_kpis for every date up to ``run_date`` (each figure: :data:`DEFINITIONS`).

    Takes :func:`contacts_as_of` of ``run_date``. A contact is in the backlog of each date from
    its opening date to the day before its closing date (to ``run_date`` while open).
    """
    keys = ["service_date", "channel", "type"]
    opened = contacts.groupBy(F.col("opened_date").alias("service_date"), "channel", "type").agg(F.count(F.lit(1)).alias("opened"))
    closed = contacts.where(F.col("closed_date").isNotNull()).groupBy(F.col("closed_date").alias("service_date"), "channel", "type").agg(
        F.count(F.lit(1)).alias("closed"),
        F.percentile("hours_to_close", 0.5).alias("median_hours_to_close"),
        F.percentile("hours_to_close", 0.95).alias("p95_hours_to_close"),
        F.avg((F.col("hours_to_close") > target_hours(F.col("channel"), rules)).cast("int")).alias("past_target_share"),
        F.avg("satisfaction").alias("mean_satisfaction"),
    )
    last_open_day = F.coalesce(F.date_sub("closed_date", 1), F.lit(run_date))
    open_days = F.when(last_open_day >= F.col("opened_date"), F.sequence("opened_date", last_open_day)).otherwise(F.array().cast("array<date>"))
    backlog = contacts.select(F.explode(open_days).alias("service_date"), "channel", "type").groupBy(*keys).agg(F.count(F.lit(1)).alias("backlog"))
    counts = [F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) for c in ("opened", "closed", "backlog")]
    return opened.join(closed, keys, "full").join(backlog, keys, "full").select(
        *keys, *counts,
        F.round("median_hours_to_close", 2).alias("median_hours_to_close"), F.round("p95_hours_to_close", 2).alias("p95_hours_to_close"),
        F.round("past_target_share", 4).alias("past_target_share"), F.round("mean_satisfaction", 2).alias("mean_satisfaction"),
    )


def recent_satisfaction(person_contacts: DataFrame, run_date: dt.date, recent_days: int) -> DataFrame:
    """Return (person_id, recent_satisfaction): each person's latest rating of a contact closed
    in the ``recent_days`` up to ``run_date`` (two ratings closed at the same instant: the
    higher). Persons with no rating then are not in it.

    Takes :func:`contacts_as_of` with ``person_id``.
    """
    since = F.lit(run_date - dt.timedelta(days=recent_days - 1))
    rated = person_contacts.where(F.col("person_id").isNotNull() & F.col("satisfaction").isNotNull() & (F.col("closed_date") >= since))
    return rated.groupBy("person_id").agg(F.max(F.struct("closed_time", "satisfaction"))["satisfaction"].alias("recent_satisfaction"))


def repeat_complainers(person_contacts: DataFrame, scores: DataFrame, run_date: dt.date, rules: Service) -> DataFrame:
    """Return gold.repeat_complainers for ``run_date``: the persons :data:`DEFINITIONS` says.

    Takes :func:`contacts_as_of` with ``person_id``, and the run date's scores (person_id,
    value_tier). Columns: person_id, value_tier, complaints (in the window), open_complaints
    (of those, still open), last_complaint_at, complaint_channels (sorted), mean_satisfaction
    (of those rated), list_date.
    """
    since = F.lit(run_date - dt.timedelta(days=rules.complaint_window_days - 1))
    complaints = person_contacts.where(F.col("person_id").isNotNull() & (F.col("type") == "complaint") & (F.col("opened_date") >= since))
    per_person = complaints.groupBy("person_id").agg(
        F.count(F.lit(1)).alias("complaints"),
        F.sum(F.col("closed_time").isNull().cast("int")).cast("bigint").alias("open_complaints"),
        F.max("opened_time").alias("last_complaint_at"),
        F.sort_array(F.collect_set("channel")).alias("complaint_channels"),
        F.round(F.avg("satisfaction"), 2).alias("mean_satisfaction"),
    ).where(F.col("complaints") >= rules.repeat_complaints)
    valuable = scores.where(F.col("value_tier").isin(*rules.high_value_tiers)).select("person_id", "value_tier")
    return per_person.join(valuable, "person_id").select(
        "person_id", "value_tier", "complaints", "open_complaints", "last_complaint_at", "complaint_channels", "mean_satisfaction",
        F.lit(run_date).alias("list_date"),
    )


def write_service(lake: Lake, rules: Service, person_contacts: DataFrame, scores: DataFrame, run_date: dt.date) -> dict:
    """Write gold.service_kpis (every date up to ``run_date``, rebuilt: a contact closed today
    changes the backlog of each day it was open) and gold.repeat_complainers for ``run_date``;
    return their row counts.

    Takes :func:`contacts_as_of` with ``person_id`` and the run date's scores (person_id, value_tier).
    """
    kpis = lake.overwrite_where(SERVICE_KPIS, service_kpis(person_contacts, run_date, rules), f"service_date <= DATE'{run_date}'").rows_written
    listed = lake.overwrite_where(
        REPEAT_COMPLAINERS, repeat_complainers(person_contacts, scores, run_date, rules), f"list_date = DATE'{run_date}'", partition_by=["list_date"]
    ).rows_written
    return {"service_kpi_rows": kpis, "repeat_complainers": listed}
