"""Per-person views: profile history (SCD type 2), the funnel, and the customer 360.

Self-declared fields are kept with their age and flagged when stale or implausible;
behaviour (what people bought, when and on which device they visit) is inferred beside
them, because declared demographics go stale and lie. Counts are of persons, not
accounts, and activity (30 and 90 days) is what makes a member count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crmlake.config import settings_from
from crmlake.lake import latest_per_key
from crmlake.organize.transforms import PROFILE_FIELDS



@dataclass(frozen=True)
class StaleRules:
    """When a declared attribute stops being believable (conf ``organize.customer_360``)."""

    student_max_age: int = 30
    min_plausible_age: int = 13
    max_plausible_age: int = 100
    stale_profile_days: int = 730
    price_band_low_below: float = 500.0
    price_band_high_from: float = 2000.0

    @classmethod
    def from_conf(cls, section: dict) -> "StaleRules":
        """Build the rules from ``organize.customer_360`` (missing keys keep their defaults)."""
        return settings_from(cls, section)


def customer_history(profile_changes: DataFrame) -> DataFrame:
    """Return every account's profile versions as SCD type 2 rows.

    Takes bronze customers (one row per change). Columns: account_id, op, valid_from,
    valid_to (null while current), is_current and the profile fields. Two deliveries of one
    change (same account and ``updated_time``) are one version.
    """
    versions = latest_per_key(profile_changes, ["account_id", "updated_time"], "ingested_at")
    by_account = Window.partitionBy("account_id").orderBy("updated_time")
    return versions.select(
        "account_id",
        "op",
        F.col("updated_time").alias("valid_from"),
        F.lead("updated_time").over(by_account).alias("valid_to"),
        F.lead("updated_time").over(by_account).isNull().alias("is_current"),
        *PROFILE_FIELDS,
    )


def funnel_by_day(sessions: DataFrame) -> DataFrame:
    """Return the session funnel per session_date, device and utm_campaign.

    Takes silver sessions. Columns: the three keys, then the sessions reaching each step
    (sessions, viewed_product, added_to_cart, started_checkout, purchased) and
    ``conversion_rate`` (purchased / sessions).
    """
    reached = lambda column: F.sum(F.when(F.col(column) > 0, 1).otherwise(0))  # noqa: E731
    return (
        sessions.groupBy("session_date", "device", F.coalesce("utm_campaign", F.lit("(none)")).alias("utm_campaign"))
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            reached("product_views").alias("viewed_product"),
            reached("adds_to_cart").alias("added_to_cart"),
            reached("checkouts").alias("started_checkout"),
            F.sum(F.col("converted").cast("int")).alias("purchased"),
        )
        .withColumn("conversion_rate", F.round(F.col("purchased") / F.col("sessions"), 4))
    )


def _favourite(df: DataFrame, value: str, weight) -> DataFrame:
    """Per person, the ``value`` with the greatest total ``weight`` (ties: the smaller value)."""
    totals = df.where(F.col(value).isNotNull()).groupBy("person_id", value).agg(F.sum(weight).alias("_weight"))
    best = Window.partitionBy("person_id").orderBy(F.col("_weight").desc(), value)
    return totals.withColumn("_rank", F.row_number().over(best)).where("_rank = 1").select("person_id", value)


def _declared(accounts: DataFrame, run_date: dt.date, rules: StaleRules) -> DataFrame:
    """Per person: the primary account (latest profile change among live accounts), its declared
    attributes with their age and stale flags, and person-level consent."""
    live = accounts.where(~F.col("erased"))
    primary = Window.partitionBy("person_id").orderBy(F.col("profile_updated_at").desc(), "account_id")
    age = F.lit(run_date.year) - F.col("birth_year")
    declared = live.withColumn("_rank", F.row_number().over(primary)).where("_rank = 1").select(
        "person_id",
        F.col("account_id").alias("primary_account_id"),
        "email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band",
        F.col("profile_updated_at").alias("declared_at"),
        F.datediff(F.lit(run_date), F.to_date("profile_updated_at")).alias("declared_age_days"),
        ((F.col("occupation") == "student") & (age > rules.student_max_age)).alias("stale_occupation"),
        ((age < rules.min_plausible_age) | (age > rules.max_plausible_age)).alias("implausible_birth_year"),
        (F.datediff(F.lit(run_date), F.to_date("profile_updated_at")) > rules.stale_profile_days).alias("stale_profile"),
    )
    # Everyone must agree: one account of a person saying no (or withdrawing) is a no.
    consent = live.groupBy("person_id").agg(
        F.sort_array(F.collect_list("account_id")).alias("account_ids"),
        F.min("signup_time").alias("signup_time"),
        F.bool_and(F.coalesce("marketing_consent", F.lit(False))).alias("marketing_consent"),
        F.max("consent_withdrawn_at").alias("consent_withdrawn_at"),
    )
    flags = ("stale_occupation", "implausible_birth_year", "stale_profile")
    return declared.join(consent, "person_id").withColumn(
        "declared_stale", F.greatest(*[F.coalesce(F.col(f), F.lit(False)) for f in flags])
    )


def customer_360(
    accounts: DataFrame,
    order_lines: DataFrame,
    sessions: DataFrame,
    interactions: DataFrame,
    run_date: dt.date,
    timezone: str,
    rules: StaleRules,
) -> DataFrame:
    """Return one row per person holding at least one live (not erased) account.

    Takes silver customers, order lines and sessions already carrying ``person_id``, and
    bronze interactions with ``person_id``. Columns: identity (person_id, primary account,
    account_ids, accounts), declared attributes with ``declared_age_days`` and the stale
    flags, inferred attributes (preferred_category, preferred_device, active_hour,
    price_band), activity (last purchase and visit, active_30d, active_90d), consent,
    orders, revenue, returns, service contacts and referrals.
    """
    declared = _declared(accounts, run_date, rules)
    completed = order_lines.where((F.col("status") == "completed") & F.col("person_id").isNotNull())
    orders = order_lines.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.countDistinct(F.when(F.col("status") == "completed", F.col("order_id"))).alias("orders"),
        F.sum(F.when(F.col("status") == "completed", F.col("line_amount")).otherwise(0)).cast("decimal(18,2)").alias("revenue"),
        F.sum(F.when(F.col("status") == "returned", 1).otherwise(0)).alias("returned_lines"),
        F.sum(F.when(F.col("status") == "returned", F.col("line_amount")).otherwise(0)).cast("decimal(18,2)").alias("returned_amount"),
        F.min(F.when(F.col("status") == "completed", F.col("order_time"))).alias("first_purchase_at"),
        F.max(F.when(F.col("status") == "completed", F.col("order_time"))).alias("last_purchase_at"),
        F.percentile_approx(F.when(F.col("status") == "completed", F.col("unit_price").cast("double")), 0.5).alias("_median_price"),
    )
    visits = sessions.where(F.col("person_id").isNotNull())
    visit_stats = visits.groupBy("person_id").agg(F.max("session_end").alias("last_visit_at"), F.count(F.lit(1)).alias("sessions"))
    hours = visits.withColumn("active_hour", F.hour(F.from_utc_timestamp("session_start", timezone)))
    service = interactions.where(F.col("person_id").isNotNull()).groupBy("person_id").agg(
        F.count(F.lit(1)).alias("service_contacts"),
        F.sum(F.when((F.col("type") == "complaint") & F.col("closed_time").isNull(), 1).otherwise(0)).alias("open_complaints"),
        F.max(F.when(F.col("type") == "complaint", F.col("opened_time"))).alias("last_complaint_at"),
        F.round(F.avg("satisfaction"), 2).alias("mean_satisfaction"),
    )
    buyers = orders.where("orders > 0").select("person_id", F.lit(1).alias("_bought"))
    referrer_person = accounts.select(F.col("account_id").alias("referred_by"), F.col("person_id").alias("referrer_person_id"))
    referred = (
        accounts.where(F.col("referred_by").isNotNull())
        .join(referrer_person, "referred_by")
        .where(F.col("referrer_person_id") != F.col("person_id"))
        .select("referrer_person_id", "person_id")
        .distinct()
        .join(buyers, "person_id", "left")
        .groupBy(F.col("referrer_person_id").alias("person_id"))
        .agg(F.count(F.lit(1)).alias("members_referred"), F.count("_bought").alias("referred_buyers"))
    )
    last_active = F.to_date(F.from_utc_timestamp(F.greatest("last_purchase_at", "last_visit_at"), timezone))
    price = F.col("_median_price")
    joined = (
        declared.join(orders, "person_id", "left")
        .join(visit_stats, "person_id", "left")
        .join(_favourite(completed, "category", F.col("line_amount")), "person_id", "left")
        .join(_favourite(visits, "device", F.lit(1)).withColumnRenamed("device", "preferred_device"), "person_id", "left")
        .join(_favourite(hours, "active_hour", F.lit(1)), "person_id", "left")
        .join(service, "person_id", "left")
        .join(referred, "person_id", "left")
    )
    zero = lambda c: F.coalesce(F.col(c), F.lit(0)).alias(c)  # noqa: E731
    return joined.select(
        "person_id", "primary_account_id", "account_ids", F.size("account_ids").alias("accounts"), "signup_time",
        "email", "phone", "name", "gender", "birth_year", "occupation", "city", "income_band",
        "declared_at", "declared_age_days", "stale_occupation", "implausible_birth_year", "stale_profile", "declared_stale",
        F.col("category").alias("preferred_category"), "preferred_device", "active_hour",
        F.when(price < rules.price_band_low_below, "low").when(price >= rules.price_band_high_from, "high")
        .when(price.isNotNull(), "mid").alias("price_band"),
        "first_purchase_at", "last_purchase_at", "last_visit_at",
        F.coalesce(F.datediff(F.lit(run_date), last_active) < 30, F.lit(False)).alias("active_30d"),
        F.coalesce(F.datediff(F.lit(run_date), last_active) < 90, F.lit(False)).alias("active_90d"),
        "marketing_consent", "consent_withdrawn_at",
        zero("orders"), F.coalesce("revenue", F.lit(0).cast("decimal(18,2)")).alias("revenue"), zero("returned_lines"),
        F.coalesce("returned_amount", F.lit(0).cast("decimal(18,2)")).alias("returned_amount"), zero("sessions"),
        zero("service_contacts"), zero("open_complaints"), "last_complaint_at", "mean_satisfaction",
        zero("members_referred"), zero("referred_buyers"),
    )
