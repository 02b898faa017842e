"""Where new customers come from: each new customer's first-touch source, the new customers and
their early value per source and month (``gold.acquisition_sources``), and the members referred
per month (``gold.referrals``).

Each definition is stated once, here; :data:`DEFINITIONS` holds them, a sentence each, for reports.

* A member's *acquisition* is their first signup or their first completed order (a guest
  checkout counts when its email leads to the member), whichever came first; the *acquisition
  date* is its business date (``business.timezone``), the *acquisition month* that date's month.
* A *new customer* is a member acquired on or after the lake's first day (the first business
  date of any visit or order it holds: before it, neither a first visit nor the first orders
  can be seen) and by the run date.
* The *first-touch source* of a new customer is that of their first visit that started at or
  before their acquisition (visits reach a person through the account or cookie of
  ``silver.identity_map``): its ``utm_source``, else its referrer's host, else "direct"; "(no
  visit)" when no visit with tracking consent came before the acquisition.
* The *value* of a new customer is the completed revenue of their orders in the ``value_days``
  days from their acquisition date (``analyze.acquisition``), the order lines as they stood at
  the end of the run date. A window not over by the run date holds the value to date:
  ``window_complete`` is false and ``min_days_observed`` is how many days of their window the
  row's least observed customer has had. A *buyer in the window* ordered in it.
* A *referred member* is a new customer another person referred (an account's
  ``referred_by``), a *referred buyer* one of them with a completed order by the run date:
  :func:`crmlake.people.referrals`, as silver.customer_360 counts them per referrer.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.business_days import business_date
from crmlake.config_analyze import Acquisition
from crmlake.lake import Lake
from crmlake.people import ACCOUNT, referrals, with_person_id, with_session_person_id

ACQUISITION_SOURCES = "gold.acquisition_sources"
REFERRALS = "gold.referrals"
DIRECT = "direct"
NO_VISIT = "(no visit)"
DEFINITIONS = {
    "acquisition": "A member's first signup or first completed order (guest checkouts included), whichever came first; its business date is the acquisition date.",
    "new_customer": "A member acquired on or after the lake's first day of visits or orders and by the run date, counted in their acquisition month.",
    "first_touch_source": "The utm_source of the customer's first visit at or before their acquisition, else its referrer's host, else 'direct'; '(no visit)' when no consented visit came before.",
    "value": "Completed revenue of the new customers' orders in the value_days days from their acquisition date; value to date while a window is not over.",
    "window_complete": "Every customer of the row has had all value_days days of their window by the run date (else min_days_observed says how many).",
    "members_referred": "New customers whose account names another person's account as referred_by.",
    "referred_buyers": "Referred members with a completed order by the run date.",
}


def acquisitions(members: DataFrame, order_lines: DataFrame, timezone: str) -> DataFrame:
    """Return (person_id, acquired_at, acquisition_date): each member's acquisition (definitions:
    the module's docstring).

    Takes the members (person_id, signup_time: their earliest account's) and order lines
    carrying ``person_id`` and ``status``.
    """
    first_orders = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.min("order_time").alias("first_order_at")
    )
    acquired_at = F.least("signup_time", "first_order_at")   # least skips a null: a member who never bought
    return members.join(first_orders, "person_id", "left").select(
        "person_id", acquired_at.alias("acquired_at"), business_date(acquired_at, timezone).alias("acquisition_date")
    )


def new_customers(acquired: DataFrame, since: dt.date | None, run_date: dt.date) -> DataFrame:
    """Return the rows of :func:`acquisitions` acquired from ``since`` (the lake's first day; None:
    the lake holds no visit or order, so no one) to ``run_date``."""
    return acquired.where(F.col("acquisition_date").between(F.lit(since).cast("date"), F.lit(run_date)))


def visit_source() -> Column:
    """Column: where a visit (silver.sessions) came from: its utm_source, else its referrer's host, else "direct"."""
    return F.coalesce("utm_source", "referrer_host", F.lit(DIRECT))


def with_first_touch(customers: DataFrame, sessions: DataFrame) -> DataFrame:
    """Add ``source``, the first-touch source, to ``customers`` (person_id, acquired_at).

    Takes silver.sessions carrying ``person_id`` (:func:`crmlake.people.with_session_person_id`).
    Of two visits starting at the same instant, the smaller session_id is the first.
    """
    visits = sessions.where(F.col("person_id").isNotNull()).select("person_id", "session_start", "session_id", visit_source().alias("_source"))
    before = customers.select("person_id", "acquired_at").join(visits, "person_id").where(F.col("session_start") <= F.col("acquired_at"))
    first = before.groupBy("person_id").agg(F.min_by("_source", F.struct("session_start", "session_id")).alias("source"))
    return customers.join(first, "person_id", "left").withColumn("source", F.coalesce("source", F.lit(NO_VISIT)))


def with_early_value(customers: DataFrame, order_lines: DataFrame, run_date: dt.date, value_days: int) -> DataFrame:
    """Add ``value`` (decimal), ``bought_in_window`` and ``days_observed`` to ``customers``
    (person_id, acquisition_date, ...): each new customer's value to the run date.

    Takes order lines carrying ``person_id``, ``status``, ``order_date`` and ``line_amount``.
    """
    completed = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull()).select("person_id", "order_date", "line_amount")
    window_end = F.least(F.date_add("acquisition_date", value_days - 1), F.lit(run_date))
    in_window = F.col("order_date").between(F.col("acquisition_date"), window_end)
    return customers.join(completed, "person_id", "left").groupBy(*customers.columns).agg(
        F.coalesce(F.sum(F.when(in_window, F.col("line_amount"))), F.lit(0)).cast("decimal(18,2)").alias("value"),
        (F.count(F.when(in_window, 1)) > 0).alias("bought_in_window"),
    ).withColumn("days_observed", F.least(F.lit(value_days), F.datediff(F.lit(run_date), "acquisition_date") + 1))


def acquisition_sources(valued: DataFrame, value_days: int) -> DataFrame:
    """Return gold.acquisition_sources: one row per acquisition month and first-touch source with
    new customers (definitions: the module's docstring).

    Takes :func:`with_early_value` of :func:`with_first_touch`. Columns: acquisition_month (its
    first day), source, new_customers, buyers_in_window, value, value_per_customer, value_days,
    window_complete, min_days_observed.
    """
    per_source = valued.groupBy(F.trunc("acquisition_date", "month").alias("acquisition_month"), "source").agg(
        F.count(F.lit(1)).alias("new_customers"),
        F.count(F.when(F.col("bought_in_window"), 1)).alias("buyers_in_window"),
        F.sum("value").cast("decimal(18,2)").alias("value"),
        F.min("days_observed").alias("min_days_observed"),
    )
    return per_source.select(
        "acquisition_month", "source", "new_customers", "buyers_in_window", "value",
        F.round(F.col("value") / F.col("new_customers"), 2).cast("double").alias("value_per_customer"),
        F.lit(value_days).alias("value_days"), (F.col("min_days_observed") == value_days).alias("window_complete"), "min_days_observed",
    )


def referral_months(customers: DataFrame, referred: DataFrame) -> DataFrame:
    """Return gold.referrals: per acquisition month with referred members, the referrers, the
    members referred and the referred buyers (definitions: the module's docstring).

    Takes the new customers (person_id, acquisition_date) and :func:`crmlake.people.referrals`
    (a member referred by two persons counts once, each referrer once).
    """
    pairs = customers.select("person_id", "acquisition_date").join(referred, "person_id")
    return pairs.groupBy(F.trunc("acquisition_date", "month").alias("acquisition_month")).agg(
        F.countDistinct("referrer_person_id").alias("referrers"),
        F.countDistinct("person_id").alias("members_referred"),
        F.countDistinct(F.when(F.col("bought"), F.col("person_id"))).alias("referred_buyers"),
    )


def write_acquisition(lake: Lake, rules: Acquisition, members: DataFrame, order_lines: DataFrame, identity_map: DataFrame, run_date: dt.date, timezone: str) -> dict:
    """Write gold.acquisition_sources and gold.referrals for every acquisition month up to
    ``run_date``'s (rebuilt: a window fills and a referred member buys after their month);
    return their row counts and the new customers.

    Takes the members as of ``run_date`` (person_id, signup_time), the order lines as they stood
    at its end carrying ``person_id``, and silver.identity_map; reads silver.sessions and
    silver.customers (each account's ``referred_by``).
    """
    sessions = lake.read("silver.sessions")
    days = sessions.select(F.col("session_date").alias("day")).unionByName(order_lines.select(F.col("order_date").alias("day")))
    since = days.agg(F.min("day")).first()[0]   # safe to collect: one value
    customers = new_customers(acquisitions(members, order_lines, timezone), since, run_date)
    valued = with_early_value(with_first_touch(customers, with_session_person_id(sessions, identity_map)), order_lines, run_date, rules.value_days).cache()
    accounts = with_person_id(lake.read("silver.customers"), identity_map, (ACCOUNT, F.col("account_id")))
    buyers = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull()).select("person_id").distinct()
    months = f"acquisition_month <= DATE'{run_date.replace(day=1)}'"
    figures = {
        "new_customers": valued.count(),
        "acquisition_source_rows": lake.overwrite_where(ACQUISITION_SOURCES, acquisition_sources(valued, rules.value_days), months).rows_written,
        "referral_rows": lake.overwrite_where(REFERRALS, referral_months(valued, referrals(accounts, buyers)), months).rows_written,
    }
    valued.unpersist()
    return figures
