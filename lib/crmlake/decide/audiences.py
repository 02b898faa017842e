"""Audiences and the contact policy: who may be contacted, in which audience, and who is held out.

An audience (conf ``campaigns.audiences``: :class:`~crmlake.config_schema.Audience`) is a
rule (Spark SQL) over the scored person table; an audience with ``target:
companies`` selects customer companies instead (B2B): its rule also sees the company's
scores as ``company_*`` columns, and each company is contacted once, through the person of
its most recent buyer (:func:`company_contacts`). The policy is applied in this order, and
every step is counted for the manifest:

1. ``matched``: persons the rule selects;
2. consent: marketing consent is required whatever the rule says (``no_consent``);
3. suppression, first reason wins: ``unsubscribed``, ``bounced``, ``complained``,
   ``erased`` (any of the person's accounts asked to be erased), ``service_complaint``
   (a complaint opened in the last ``complaint_quiet_days`` or still open);
4. one control group per person and date: a person held out as control today by an
   audience served before this one is left out of it, treatment and control alike
   (``held_out_elsewhere``);
5. frequency cap (conf ``decide.policy``): at most ``max_contacts`` per person in any ``window_days`` rolling days
   across all audiences; audiences are served by ``priority`` (1 first), so the
   higher-priority audience keeps the person (``capped``);
6. ``limit``: the best persons by ``order_by`` (which, like the rule, may use ``uplift``:
   the person's estimated uplift for this audience, :func:`with_audience_uplift`);
7. control group: ``control_share`` of them, chosen by a hash of person and audience (the
   same person stays in the control of an audience from run to run), are held out and
   recorded but not exported (``control``); the rest are ``exported``.

Why step 4, and why only in that direction. An audience's lift compares its contacted
persons with its control persons; a control person whom a later audience then contacts is
no longer "not contacted", and the lift shrinks toward zero. So a person held out by an
audience receives nothing more that day: they are in at most one control group per date,
and no later audience contacts them. The converse is allowed on purpose: a person a
higher-priority audience contacted today may still land in a lower-priority audience's
control group. The lower audience's split is a hash independent of the earlier choice, so
its treatment and control hold earlier contacts at the same rate and its lift stays
unbiased; excluding them from its control alone would bias it (and excluding them from it
altogether would turn the frequency cap into one contact a day). An audience's lift thus
measures its treatment against no further contact that day, given what the audiences
before it did.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from crmlake.config import ConfigError
from crmlake.config_schema import Audience, Policy
from crmlake.people import ACCOUNT, with_person_id

# gold.company_scores columns an audience targeting companies sees, as company_<column>.
COMPANY_COLUMNS = ("accounts", "buyers", "recency_days", "frequency", "monetary", "current_value", "predicted_value",
                   "r_score", "f_score", "m_score", "rfm_cell", "value_tier")
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "erased", "service_complaint")


def company_contacts(company_scores: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Return one row per contact person of a customer company: person_id, company_id and the
    :data:`COMPANY_COLUMNS` as ``company_<column>``.

    Takes one date of gold.company_scores and silver.identity_map. A company's contact is the
    person holding its most recent buyer account; a company without a buyer has no contact.
    A person who is the contact of several companies is kept once, for the company with the
    most revenue.
    """
    contacts = with_person_id(
        company_scores.where(F.col("last_buyer_account_id").isNotNull()), identity_map, (ACCOUNT, F.col("last_buyer_account_id"))
    ).where(F.col("person_id").isNotNull())
    best_company = Window.partitionBy("person_id").orderBy(F.col("monetary").desc(), "company_id")
    return contacts.withColumn("_rank", F.row_number().over(best_company)).where("_rank = 1").select(
        "person_id", "company_id", *[F.col(c).alias(f"company_{c}") for c in COMPANY_COLUMNS]
    )


def order_columns(order_by: str) -> list:
    """Turn ``"score DESC, person_id"`` into Spark sort columns; raises ConfigError on a bad term."""
    columns = []
    for term in (t.strip() for t in order_by.split(",") if t.strip()):
        parts = term.split()
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise ConfigError(f"campaigns.audiences order_by {order_by!r}: expected 'column [ASC|DESC], ...'")
        column = F.expr(parts[0])
        columns.append(column.desc_nulls_last() if direction == "DESC" else column.asc_nulls_last())
    return columns


def suppression_reasons(people: DataFrame, account_persons: DataFrame, erased_partners: DataFrame, campaign_events: DataFrame, run_date,
                        policy: Policy) -> DataFrame:
    """Return ``(person_id, suppression_reason)`` for every person who must not be contacted.

    Takes silver.customer_360 (person_id, declared_at, open_complaints, last_complaint_at),
    accounts with their person (account_id, person_id), silver.erased_partners with their
    person (account_id, person_id: the live accounts of a person one of whose accounts was
    erased) and bronze campaign events. Unsubscribes and complaints count when later than the
    person's last profile change (a later opt-in wins); a bounce counts whenever it happened.
    """
    events = campaign_events.join(account_persons.select("account_id", "person_id"), "account_id").join(
        people.select("person_id", "declared_at"), "person_id"
    )
    since_profile = F.col("event_time") > F.col("declared_at")
    by_event = events.groupBy("person_id").agg(
        F.max((F.col("event") == "unsubscribed") & since_profile).alias("unsubscribed"),
        F.max(F.col("event") == "bounced").alias("bounced"),
        F.max((F.col("event") == "complained") & since_profile).alias("complained"),
    )
    erased = erased_partners.where(F.col("person_id").isNotNull()).select("person_id").distinct().withColumn("erased", F.lit(True))
    quiet_since = F.date_sub(F.lit(run_date), policy.complaint_quiet_days - 1)
    complaints = people.select(
        "person_id",
        ((F.col("open_complaints") > 0) | (F.to_date("last_complaint_at") >= quiet_since)).alias("service_complaint"),
    )
    flags = complaints.join(by_event, "person_id", "left").join(erased, "person_id", "left")
    reason = F.coalesce(*[F.when(F.coalesce(F.col(r), F.lit(False)), F.lit(r)) for r in SUPPRESSION_REASONS])
    return flags.select("person_id", reason.alias("suppression_reason")).where(F.col("suppression_reason").isNotNull())


def with_audience_uplift(scored: DataFrame, uplift: DataFrame, audience: str) -> DataFrame:
    """Add ``uplift`` and ``uplift_model`` to persons: their estimated uplift for ``audience``
    (null when its model has not scored them: ``order_by: "uplift DESC, propensity_score DESC"``
    then falls back to propensity).

    Takes persons with person_id and one score date of gold.audience_uplift.
    """
    mine = uplift.where(F.col("audience") == audience).select("person_id", "uplift", "uplift_model")
    return scored.join(mine, "person_id", "left")


def in_control_group(person_id, audience: Audience):
    """Column: True when the person is in the audience's control group (stable hash of both)."""
    bucket = F.pmod(F.xxhash64(person_id, F.lit(audience.name)), F.lit(10_000)) / 10_000.0
    return bucket < audience.control_share


def apply_policy(scored: DataFrame, suppressed: DataFrame, prior_contacts: DataFrame, audience: Audience, policy: Policy,
                 held_out: DataFrame | None = None) -> tuple[DataFrame, dict]:
    """Apply the contact policy for one audience.

    Takes the scored person table (with ``marketing_consent``), the suppression list
    (person_id, suppression_reason), ``prior_contacts`` (person_id, contacts): exported
    contacts inside the cap's window, today's higher-priority audiences included, and
    ``held_out`` (person_id): persons held out as control today by the audiences served
    before this one (None: nobody). Returns ``(selected, counts)``: the persons kept after the limit with
    ``group`` = treatment or control, and the count at every policy step.
    """
    consenting = F.coalesce(F.col("marketing_consent"), F.lit(False))
    prior = F.coalesce(F.col("contacts"), F.lit(0))
    elsewhere = F.coalesce(F.col("_held_out_elsewhere"), F.lit(False))
    held = (held_out.select("person_id").distinct().withColumn("_held_out_elsewhere", F.lit(True)) if held_out is not None
            else scored.sparkSession.createDataFrame([], "person_id string, _held_out_elsewhere boolean"))
    # Each matched person with the steps that stop them: consent, a suppression reason, another
    # audience's control group, the cap.
    staged = (scored.where(F.expr(audience.rule)).join(suppressed, "person_id", "left").join(held, "person_id", "left")
              .join(prior_contacts, "person_id", "left"))
    available = consenting & ~elsewhere
    uncapped = staged.where(available & F.col("suppression_reason").isNull() & (prior < policy.max_contacts)).drop(
        "suppression_reason", "_held_out_elsewhere", "contacts")
    limited = uncapped.orderBy(*order_columns(audience.order_by), "person_id").limit(audience.limit)
    selected = limited.withColumn("group", F.when(in_control_group(F.col("person_id"), audience), "control").otherwise("treatment")).cache()
    # Safe to collect: one row per suppression reason (and one without), one per group.
    steps = staged.groupBy("suppression_reason").agg(
        F.count(F.lit(1)).alias("matched"), F.count_if(consenting).alias("consenting"), F.count_if(available).alias("available"),
        F.count_if(available & (prior < policy.max_contacts)).alias("uncapped"),
    ).collect()
    by_group = {r["group"]: r["count"] for r in selected.groupBy("group").count().collect()}
    matched, consenting_count = sum(r["matched"] for r in steps), sum(r["consenting"] for r in steps)
    suppressed_by = {r["suppression_reason"]: r["consenting"] for r in steps if r["suppression_reason"] is not None}
    unsuppressed = [r for r in steps if r["suppression_reason"] is None]
    held_out_count = sum(r["consenting"] - r["available"] for r in unsuppressed)
    uncapped_count = sum(r["uncapped"] for r in unsuppressed)
    counts = {
        "matched": matched,
        "no_consent": matched - consenting_count,
        "suppressed": {r: int(suppressed_by.get(r, 0)) for r in SUPPRESSION_REASONS},
        "held_out_elsewhere": held_out_count,
        "capped": consenting_count - sum(suppressed_by.values()) - held_out_count - uncapped_count,
        "over_limit": uncapped_count - sum(by_group.values()),
        "control": int(by_group.get("control", 0)),
        "exported": int(by_group.get("treatment", 0)),
    }
    return selected, counts
