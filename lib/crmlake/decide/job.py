"""The decide stage: audiences under the contact policy, recorded, exported, and measured.

For the run date's scores: every audience of ``campaigns.audiences``, by priority, goes
through the contact policy (:mod:`crmlake.decide.audiences`; an audience whose rule or
``order_by`` reads ``uplift`` sees its own estimated uplift, from analyze's
``gold.audience_uplift``). Then, in this order:

1. every audience's treatment and control land in ``gold.contact_history``, in one commit
   that replaces the run date's rows (partition ``contact_date``) of the audiences this run
   selected (:func:`date_history`): an audience that fails (or is skipped) keeps the rows an
   earlier run of the date recorded when that run published its file (rows a killed run
   recorded and never sent are no contacts), and they count toward the cap and the held-out
   persons of the audiences served after it; an audience whose file then fails to publish
   goes back to those rows too (none if it had no file), though the audiences after it were
   selected against its new selection;
2. each audience's treatment group is published (:mod:`crmlake.exports`) from exactly
   the rows recorded;
3. every past contact date is measured against its control group into
   ``gold.campaign_results`` and MLflow (:mod:`crmlake.decide.results`).

Why history before files: a contact that is published but not recorded counts toward no
frequency cap and no campaign result, while a contact recorded but not yet published is
completed by the next run. A rerun of a date selects the same persons (the pinned history
it reads for the frequency cap stops before the run date, so the date's own rows never cap
it; the control group is a stable hash; ties in ``order_by`` are broken by person), so
killed anywhere between step 1 and step 3 (crash points ``decide.history_written`` and
``decide.published``, :mod:`crmlake.faults`), the rerun rewrites the same history and
republishes the same files.

The input tables are pinned when the run starts (their versions are in the run summary):
one consistent state, whatever another job commits meanwhile.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import tracking
from crmlake.config import Conf
from crmlake.contacts import CAMPAIGN_RESULTS
from crmlake.decide.audiences import Audience, apply_policy, company_contacts, suppression_reasons, with_audience_uplift
from crmlake.exports import export_rows, is_published, platform_rows, publish_audience
from crmlake.decide.results import campaign_results, lift_chart
from crmlake.faults import crash_point
from crmlake.lake import Lake, Snapshot
from crmlake.isolation import isolated
from crmlake.log import get_logger, timed
from crmlake.people import ACCOUNT, with_order_person_id, with_person_id
from crmlake.privacy import ERASED_PARTNERS
from crmlake.summaries import CAMPAIGN_RESULTS_JSON, CAMPAIGN_RESULTS_PNG, publish_summary, staging_path, write_summary

log = get_logger("decide")
CONTACT_HISTORY = "gold.contact_history"
COMPANY_SCORES = "gold.company_scores"
AUDIENCE_UPLIFT = "gold.audience_uplift"
CONTACT_SCHEMA = "contact_date date, audience string, channel string, priority int, person_id string, account_id string, group string, score double"


def audiences_of(conf: Conf) -> list[Audience]:
    """Return conf's audiences in the order they are served: priority, then name."""
    return sorted(conf.campaigns.audiences, key=lambda a: (a.priority, a.name))


INPUTS = ("gold.customer_scores", "silver.identity_map", "silver.customer_360", "silver.customers", "silver.order_lines",
          "bronze.campaign_events", ERASED_PARTNERS, CONTACT_HISTORY, COMPANY_SCORES, AUDIENCE_UPLIFT)


def prior_contacts(inputs: Snapshot, identity_map: DataFrame, run_date: dt.date, window_days: int) -> DataFrame:
    """Return (person_id, contacts): exported contacts within ``window_days`` of ``run_date``,
    before or after it, from the contact history as pinned.

    Contacts are re-keyed through their account, so a person's contacts follow them when
    two persons merge. The run date's own rows are left out: a rerun of the date (after a
    kill, say) must not count the contacts it is about to rewrite against itself. Later dates'
    contacts count too: a past date run again (a date cleared and rerun, a backfill) must not
    add a contact to a window that the days after it have already filled. (Counting both sides
    is cautious: it may hold back a contact that no single window would have exceeded.)
    """
    if CONTACT_HISTORY not in inputs.versions:
        return inputs.lake.spark.createDataFrame([], "person_id string, contacts long")
    reach = dt.timedelta(days=window_days - 1)
    history = inputs.read(CONTACT_HISTORY).where(
        (F.col("group") == "treatment") & F.col("contact_date").between(F.lit(run_date - reach), F.lit(run_date + reach))
        & (F.col("contact_date") != F.lit(run_date))
    )
    return current_persons(history, identity_map).groupBy("person_id").agg(F.count(F.lit(1)).alias("contacts"))


def current_persons(history: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Return contact history rows (:data:`CONTACT_SCHEMA`) with ``person_id`` re-keyed through
    their account to the person that holds it now (the recorded one when the map has no such
    account), so that contacts follow a person across merges and splits."""
    current = with_person_id(history.withColumnRenamed("person_id", "_then"), identity_map, (ACCOUNT, F.col("account_id")))
    return current.withColumn("person_id", F.coalesce("person_id", "_then")).drop("_then")


def with_uplift_of(audience: Audience, candidates: DataFrame, uplift: DataFrame | None, model_manifest: dict) -> tuple[DataFrame, dict]:
    """Return what ``audience`` selects from, and the models behind it for its manifest.

    An audience whose rule or ``order_by`` reads ``uplift`` gets its own estimated uplift
    (:func:`with_audience_uplift`, from the run date's gold.audience_uplift) and the uplift
    model that made it in the manifest; when no model has scored it yet the column is null,
    a warning says so, and the rest of ``order_by`` decides. Other audiences: unchanged.
    """
    if not audience.uses_uplift:
        return candidates, model_manifest
    # One row: the uplift model that scored this audience, if any.
    ref = uplift.where(F.col("audience") == audience.name).select("uplift_model").limit(1).collect()
    if not ref:
        log.warning("audience %s reads uplift but no uplift model has scored it (analyze.uplift): ordered by the rest of %r", audience.name, audience.order_by)
        return with_audience_uplift(candidates, uplift, audience.name), model_manifest
    name, version = ref[0]["uplift_model"].rsplit("/", 1)
    return with_audience_uplift(candidates, uplift, audience.name), {**model_manifest, "uplift": {"name": name, "version": version}}


def measure(lake: Lake, conf: Conf, identity_map: DataFrame, order_lines: DataFrame, run_date: dt.date) -> int:
    """Rebuild gold.campaign_results from contact history (as this run left it) and ``order_lines``;
    log them to MLflow and leave them (JSON and a lift chart) under the exports' summaries for
    the page; return rows."""
    import mlflow

    days = conf.campaigns.attribution_days
    orders = with_order_person_id(order_lines.where("status = 'completed'"), identity_map)
    results = campaign_results(lake.read(CONTACT_HISTORY), orders, run_date, days, conf.campaigns.cost_per_contact.model_dump()).cache()
    written = lake.overwrite(CAMPAIGN_RESULTS, results).rows_written
    # Safe to collect: one row per audience and contact date.
    rows = [r.asDict() for r in results.orderBy("audience", "contact_date").collect()]
    results.unpersist()
    write_summary(conf.exports_root, CAMPAIGN_RESULTS_JSON, {"run_date": run_date.isoformat(), "attribution_days": days, "rows": rows})
    staged = staging_path(conf.exports_root, CAMPAIGN_RESULTS_PNG)
    lift_chart(rows, staged, days)
    publish_summary(staged, conf.exports_root, CAMPAIGN_RESULTS_PNG)
    with tracking.tracked_run(conf, f"campaign-results-{run_date}", {"stage": "decide", "run_date": str(run_date)}):
        mlflow.log_param("attribution_days", days)
        mlflow.log_dict({"results": rows}, "campaign_results.json")
        for row in rows:
            for figure in ("lift", "roi"):
                if row["window_complete"] and row[figure] is not None:
                    mlflow.log_metric(f"{figure}.{row['audience']}", row[figure], step=int(row["contact_date"].strftime("%Y%m%d")))
    return written


POLICY_ORDER = ["consent", "suppression", "held_out_elsewhere", "frequency_cap", "limit", "control"]
DEFINITION_KEYS = ("description", "rule", "order_by", "limit", "channel", "priority", "control_share", "platform_format", "target")


def contact_rows(selected: DataFrame, audience: Audience, run_date: dt.date) -> DataFrame:
    """Return the gold.contact_history rows (:data:`CONTACT_SCHEMA`) of one audience's
    policy output (person_id, primary_account_id, propensity_score, group) on ``run_date``."""
    return selected.select(
        F.lit(run_date).alias("contact_date"), F.lit(audience.name).alias("audience"), F.lit(audience.channel).alias("channel"),
        F.lit(audience.priority).alias("priority"), "person_id", F.col("primary_account_id").alias("account_id"), "group",
        F.col("propensity_score").cast("double").alias("score"),
    )


def date_history(recorded: DataFrame, earlier: DataFrame, replaced: list[str]) -> DataFrame:
    """Return the run date's gold.contact_history rows once a run has recorded ``replaced``.

    Takes this run's rows (``recorded``, :data:`CONTACT_SCHEMA`), the date's rows as they were
    before the run (``earlier``, same columns) and the names of the audiences the run
    re-records. Returns ``recorded``'s rows of those audiences and ``earlier``'s rows of every
    other one: an audience that failed this time keeps the history its published export was
    made from (none on a first run), so its contacts still count toward the cap and the
    results.
    """
    ours = F.col("audience").isin(*replaced)
    return recorded.where(ours).unionByName(earlier.where(~ours))


def counted_today(prior: DataFrame, held_out: DataFrame, recorded: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Return ``(prior, held_out)`` with one audience's rows of the run date (``recorded``,
    :data:`CONTACT_SCHEMA`) added: its treatment persons count one contact more toward the cap
    (prior: person_id, contacts), its control persons are held out (held_out: person_id)."""
    today = recorded.where("group = 'treatment'").groupBy("person_id").agg(F.count(F.lit(1)).alias("contacts"))
    return (prior.unionByName(today).groupBy("person_id").agg(F.sum("contacts").alias("contacts")).localCheckpoint(),
            held_out.unionByName(recorded.where("group = 'control'").select("person_id")).localCheckpoint())


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Select every audience for ``run_date``, record them in gold.contact_history, publish
    them, then measure past contacts; return the run summary (exports, counts per audience,
    campaign result rows, input versions)."""
    lake = Lake(spark, conf)
    inputs = lake.pin(INPUTS)
    scores = inputs.read("gold.customer_scores").where(F.col("score_date") == F.lit(run_date)).cache() if "gold.customer_scores" in inputs.versions else None
    # One row: the models that scored this date.
    models = scores.select("propensity_model", "segment_model", "category_model").limit(1).collect() if scores is not None else []
    if not models:
        log.warning("decide skipped: no scores for %s (analyze skipped or has not run)", run_date)
        return {"exports": [], "skipped": f"no scores for {run_date}"}
    policy = conf.decide.policy
    region = conf.business.default_phone_region
    identity_map = inputs.read("silver.identity_map")
    people = inputs.read("silver.customer_360")
    accounts = with_person_id(inputs.read("silver.customers"), identity_map, (ACCOUNT, F.col("account_id")))
    # Written by the first erasure: a lake that never had one has no such table.
    partners = inputs.read(ERASED_PARTNERS) if ERASED_PARTNERS in inputs.versions else lake.read_or_empty(ERASED_PARTNERS)
    erased = with_person_id(partners, identity_map, (ACCOUNT, F.col("account_id")))
    suppressed = suppression_reasons(people, accounts, erased, inputs.read("bronze.campaign_events"), run_date, policy).cache()
    scored = scores.drop("marketing_consent").join(
        people.select("person_id", "primary_account_id", "email", "phone", "marketing_consent"), "person_id"
    ).cache()
    # The window's contacts, before today's audiences add theirs (each addition is checkpointed).
    window_contacts = prior = prior_contacts(inputs, identity_map, run_date, policy.window_days).cache()
    # The date's rows as an earlier run left them, of the audiences whose file it published: an
    # audience not selected this time keeps its own (rows a killed run recorded and never sent go).
    earlier = (inputs.read(CONTACT_HISTORY) if CONTACT_HISTORY in inputs.versions else spark.createDataFrame([], CONTACT_SCHEMA)
               ).where(F.col("contact_date") == F.lit(run_date))
    # Safe to collect: the audiences of one date.
    sent = [r["audience"] for r in earlier.select("audience").distinct().collect() if is_published(conf.exports_root, r["audience"], run_date)]
    earlier = earlier.where(F.col("audience").isin(*sent)).localCheckpoint()
    earlier_now = current_persons(earlier, identity_map)
    model_refs = models[0].asDict()
    model_manifest = {
        kind: {"name": ref.split("/")[0], "version": ref.split("/")[1]}
        for kind, ref in (("propensity", model_refs.get("propensity_model")), ("segmentation", model_refs.get("segment_model")),
                          ("next_best_category", model_refs.get("category_model")))
        if ref
    }
    companies = None
    if any(a.target == "companies" for a in audiences_of(conf)) and COMPANY_SCORES in inputs.versions:
        company_scores = inputs.read(COMPANY_SCORES).where(F.col("score_date") == F.lit(run_date))
        companies = scored.join(company_contacts(company_scores, identity_map), "person_id").cache()
    uplift = None
    if any(a.uses_uplift for a in audiences_of(conf)):
        uplift = inputs.read(AUDIENCE_UPLIFT) if AUDIENCE_UPLIFT in inputs.versions else spark.createDataFrame([], lake.catalog.spec(AUDIENCE_UPLIFT).ddl)
        uplift = uplift.where(F.col("score_date") == F.lit(run_date)).cache()

    # Select every audience first: (audience, its policy output frozen, counts, models).
    selections, contacts, failed = [], spark.createDataFrame([], CONTACT_SCHEMA), {}
    held_out = spark.createDataFrame([], "person_id string")
    for audience in audiences_of(conf):
        served = len(selections)
        if audience.target == "companies" and companies is None:
            log.warning("audience %s skipped: no company scores for %s", audience.name, run_date)
        else:
            with isolated(f"audience {audience.name}", failed, log, f"audience {audience.name} for {run_date}: selected") as facts:
                candidates, models_used = with_uplift_of(audience, companies if audience.target == "companies" else scored, uplift, model_manifest)
                cached, counts = apply_policy(candidates, suppressed, prior, audience, policy, held_out)
                # Frozen, so that the rows recorded and the rows published are the same rows.
                selected = cached.localCheckpoint()
                cached.unpersist()
                facts.update(counts)
                recorded = contact_rows(selected, audience, run_date)
                # Today's exported contacts count against the cap of every lower-priority audience,
                # and today's control persons are contacted by none of them.
                prior, held_out = counted_today(prior, held_out, recorded)
                selections.append((audience, selected, counts, models_used))
                contacts = contacts.unionByName(recorded)
        if len(selections) == served and audience.name in sent:
            # Not selected this time: its earlier rows of the date stay (date_history), and so
            # do the contacts and the control group of the file published from them.
            prior, held_out = counted_today(prior, held_out, earlier_now.where(F.col("audience") == F.lit(audience.name)))

    # The history first, in one commit replacing the date: published files never lack their
    # contacts, and a run killed before its files are out is completed by the rerun.
    on_date = f"contact_date = DATE'{run_date.isoformat()}'"
    with timed(log, f"contact history for {run_date}") as facts:
        history = date_history(contacts, earlier, [a.name for a, *_ in selections])
        facts["rows"] = lake.overwrite_where(CONTACT_HISTORY, history, on_date, partition_by=["contact_date"]).rows_written
    crash_point("decide.history_written")

    exports, counts_by_audience = [], {}
    for audience, selected, counts, models_used in selections:
        with isolated(f"audience {audience.name}", failed, log, f"audience {audience.name} for {run_date}: published") as facts:
            treatment = selected.where("group = 'treatment'")
            platform = (audience.platform_format, platform_rows(treatment, region, audience.platform_format)) if audience.platform_format else None
            folder = publish_audience(
                export_rows(treatment, region, audience.raw_contact),
                conf.exports_root, audience.name, run_date,
                {
                    "definition": {k: getattr(audience, k) for k in DEFINITION_KEYS},
                    "policy": {**policy.model_dump(), "order": POLICY_ORDER},
                    "counts": counts,
                    "models": models_used,
                },
                platform,
            )
            facts.update(folder=folder, exported=counts["exported"])
        if "failed" in facts:
            continue
        crash_point("decide.published")
        exports.append(folder)
        counts_by_audience[audience.name] = counts
    unpublished = [a.name for a, *_ in selections if f"audience {a.name}" in failed]
    if unpublished:   # not sent: back to their earlier rows, those of the file still published (none if none is)
        with timed(log, f"contact history for {run_date} without {', '.join(unpublished)}") as facts:
            history = date_history(contacts, earlier, [a.name for a, *_ in selections if a.name not in unpublished])
            facts["rows"] = lake.overwrite_where(CONTACT_HISTORY, history, on_date, partition_by=["contact_date"]).rows_written
    with timed(log, f"campaign results up to {run_date}") as facts:
        facts["campaign_results"] = measure(lake, conf, identity_map, inputs.read("silver.order_lines"), run_date)
    for cached in (scores, suppressed, scored, window_contacts, companies, uplift):
        if cached is not None:
            cached.unpersist()
    return {"exports": exports, "audiences": counts_by_audience, "campaign_results": facts["campaign_results"], "inputs_read": inputs.versions,
            "failed": failed}
