"""Analyze section: the lifetime-value fit (grouping in Spark + maximum likelihood) on
purchase histories of 10k, 100k and 1M persons simulated from known BG/NBD and Gamma-Gamma
parameters: its time should stay nearly flat, and the fitted parameters approach the
simulated ones as persons grow. Then
the whole analyze stage at 100k and 1M distinct persons, every model and score running: a
generated sample is acquired, organized, analyzed and decided on a contact date, the
responses its contacts cause are planted and acquired, and it is analyzed at the run date, so
that every model has a champion; every table analyze reads is then replicated to each size,
each replica's persons with their own share of orders and sessions and their own spend, and
analyze runs again (challengers against the sample's champions). The peer is a plain Spark
copy of the same tables.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.common import FIRST_DAY, listed_steps, seconds
from crmlake.config import load_conf
from crmlake.lake import Lake
from crmlake.log import step_times


def bench_lifetime_value(spark: SparkSession, person_counts: list[int]) -> list[str]:
    """Time the BG/NBD + Gamma-Gamma fit against the number of persons; return report lines.

    Persons are simulated from known parameters, their first purchases spread over the days
    of a year and the time unit a week, so each line also shows how close the fit comes to
    them. The fit's cost follows the distinct (frequency, recency, T), not the persons.
    """
    from crmlake.analyze.clv import fit_lifetime_value, grouped_bgnbd_inputs, simulate_purchases, simulate_spend

    truth = {"r": 0.6, "alpha": 4.0, "a": 0.8, "b": 2.4, "p": 6.0, "q": 4.0, "v": 150.0}
    lines = []
    for persons in person_counts:
        rng = np.random.default_rng(persons)
        rows = simulate_purchases(truth, rng.integers(1, 366, persons) / 7.0, rng, recency_step=1 / 7.0)
        spend = np.where(rows[:, 0] > 0, simulate_spend(truth, np.maximum(rows[:, 0], 1), rng), np.nan)
        frame = pd.DataFrame({"person_id": np.arange(persons).astype(str), "frequency": rows[:, 0], "recency": rows[:, 1], "T": rows[:, 2], "spend": spend})
        stats = spark.createDataFrame(frame).cache()
        stats.count()
        groups = len(grouped_bgnbd_inputs(stats))
        fitted = []
        took = seconds(lambda: fitted.append(fit_lifetime_value(stats, 7.0)))
        model = fitted[0]
        worst = max(abs(value / truth[name] - 1) for name, value in model.params().items())
        lines.append(f"lifetime-value fit          : {persons:>9,} persons, {groups:,} distinct (frequency, recency, T) in {took:.1f}s;"
                     f" parameters within {worst:.0%} of the simulated ones")
        stats.unpersist()
    return lines


# How bench_analyze scales its sample: every table analyze reads (its copy peer reads the same),
# with the columns that name a person, an account, a company, a cookie, an order, a session or a
# service contact (made unique per replica). gold.customer_scores is the previous score date's
# (tier transitions); gold.campaign_results holds no person and is copied once.
SCALED_TABLES = {
    "silver.customer_360": ("person_id", "primary_account_id"),
    "silver.customers": ("account_id", "referred_by", "company_id"),
    "silver.customer_history": ("account_id", "referred_by", "company_id"),
    "silver.identity_map": ("person_id",),
    "silver.companies": ("company_id", "last_buyer_account_id"),
    "silver.sessions": ("session_id", "anonymous_id", "account_id"),
    "bronze.orders": ("order_id", "account_id"),
    "bronze.interactions": ("interaction_id", "account_id"),
    "bronze.campaign_events": ("account_id",),
    "gold.contact_history": ("person_id", "account_id"),
    "gold.customer_scores": ("person_id",),
}
COPIED_ONCE = ("gold.campaign_results",)
KEPT_SHARE = 0.75          # of an account's orders and of the sessions, per replica (hash-chosen)
SPEND_FACTORS = (0.7, 1.3)  # an account's amounts are scaled by a factor in this range, per replica
SEED = 7


def replicated(df: DataFrame, replicas: int, id_columns: tuple[str, ...]) -> DataFrame:
    """Return ``replicas`` copies of a lake frame, ids suffixed ``~<replica>`` so copies are distinct people.

    ``identity_map.identifier`` keeps matching: plain identifiers are suffixed, hashed ones
    become sha256(hash~replica); an order line's ``guest_email`` becomes
    ``sha256(normalised email)~replica``, whose own hash is that same hashed identifier.
    """
    from crmlake.people import ACCOUNT, COOKIE, normalised_email, sha256_hex

    copies = df.crossJoin(df.sparkSession.range(replicas).select(F.concat(F.lit("~"), F.col("id").cast("string")).alias("_suffix")))
    for name in id_columns:
        copies = copies.withColumn(name, F.concat(name, "_suffix"))
    if "account_ids" in df.columns:
        copies = copies.withColumn("account_ids", F.transform("account_ids", lambda account: F.concat(account, F.col("_suffix"))))
    if "identifier" in df.columns:
        plain = F.col("identifier_type").isin(ACCOUNT, COOKIE)
        copies = copies.withColumn("identifier", F.when(plain, F.concat("identifier", "_suffix")).otherwise(F.sha2(F.concat("identifier", "_suffix"), 256)))
    if "guest_email" in df.columns:
        copies = copies.withColumn("guest_email", F.concat(sha256_hex(normalised_email(F.col("guest_email"))), "_suffix"))
    return copies.drop("_suffix")


def with_replica_behaviour(copies: DataFrame) -> DataFrame:
    """Return replicated rows (:func:`replicated`) with each replica's persons behaving apart.

    Sessions (a frame with ``session_id``): a hash-chosen KEPT_SHARE of them. Order lines
    (``order_id``): a hash-chosen KEPT_SHARE of the orders, every version and line of an order
    kept or dropped together, prices and discounts scaled by a factor in SPEND_FACTORS drawn
    per buyer (account, else guest email) and replica. The hashes take the replicated ids, so
    each replica draws its own. Other frames are returned as they are.
    """
    from crmlake.generate.draws import uniform

    if "session_id" in copies.columns:
        return copies.where(uniform(SEED, "kept session", "session_id") < KEPT_SHARE)
    if "order_id" not in copies.columns:
        return copies
    low, high = SPEND_FACTORS
    factor = F.lit(low) + F.lit(high - low) * uniform(SEED, "spend", F.coalesce("account_id", "guest_email"))
    kept = copies.where(uniform(SEED, "kept order", "order_id") < KEPT_SHARE)
    return kept.withColumns({money: (F.col(money) * factor).cast("decimal(18,2)") for money in ("unit_price", "discount")})


def analyzed_sample(spark: SparkSession, conf, customers: int, days: int, end: dt.date) -> tuple[dict, dict]:
    """Build the sample lake of ``conf``, on which every model trains; return (its facts, analyze's summary at ``end``).

    ``customers`` are generated over ``days`` to ``end``; acquire, organize, analyze and decide
    run for the contact date (``campaigns.attribution_days`` before ``end``, so its contacts'
    attribution windows are complete at ``end``); the orders those contacts cause are planted
    (:func:`crmlake.generate.landing.write_campaign_responses`), acquired and organized with the
    rest up to ``end``, and analyze runs for ``end``. Facts: contact_date, contacts, responses.
    """
    from crmlake.acquire import job as acquire
    from crmlake.analyze import job as analyze
    from crmlake.decide import job as decide
    from crmlake.generate.landing import write_campaign_responses, write_landing
    from crmlake.organize import job as organize

    tz = conf.business.timezone
    contact_date = end - dt.timedelta(days=conf.campaigns.attribution_days)
    write_landing(spark, conf.landing_root, customers=customers, days=days, end=end, seed=SEED, timezone=tz)
    for stage in (acquire, organize, analyze, decide):
        stage.run(spark, conf, contact_date)
    contacts = Lake(spark, conf).read("gold.contact_history")
    planted = write_campaign_responses(spark, conf.landing_root, contacts, tz)
    acquire.run(spark, conf, end)
    organize.run(spark, conf, end)
    summary = analyze.run(spark, conf, end)
    return {"contact_date": contact_date, "contacts": contacts.count(), "responses": planted["responses"]}, summary


def models_line(summary: dict) -> str:
    """Return what an analyze summary says its models did: each registered model with its version
    (``reused`` when a rerun found it), lifetime value, company scores, then what failed and why."""
    facts = {name: summary.get(name, {}) for name in ("propensity", "next_best_category", "segmentation")}
    facts |= {f"uplift.{audience}": f for audience, f in summary.get("uplift", {}).items() if isinstance(f, dict)}
    trained = [f"{name} v{f['version']}{' reused' if f.get('reused') else ''}" for name, f in facts.items() if "version" in f]
    if "lifetime_value" not in summary["failed"]:
        trained.append("lifetime value")
    trained.append(f"{summary.get('companies', {}).get('companies_scored', 0):,} companies scored")
    skipped = [f"{name} ({f['skipped']})" for name, f in facts.items() if "skipped" in f]
    failed = [f"{name} ({reason})" for name, reason in summary["failed"].items()]
    return f"{', '.join(trained)}; skipped: {'; '.join(skipped) or 'none'}; failed: {'; '.join(failed) or 'none'}"


def distinct_behaviours(lake: Lake, run_date: dt.date) -> tuple[int, int]:
    """Return (distinct behaviours, persons) among ``run_date``'s scores: a behaviour is a person's
    (frequency, monetary, recency_days, sessions_30d, product_views_30d). Copies of a sample
    could hold no more distinct behaviours than the sample's persons."""
    from crmlake.analyze.job import SCORES

    scores = lake.read(SCORES).where(F.col("score_date") == F.lit(run_date))
    # Safe to collect: one row.
    row = scores.agg(F.count_distinct("frequency", "monetary", "recency_days", "sessions_30d", "product_views_30d").alias("behaviours"),
                     F.count(F.lit(1)).alias("persons")).first()
    return row["behaviours"], row["persons"]


def scaled_lake(base: Lake, lake: Lake, replicas: int, run_date: dt.date) -> dict:
    """Write every table analyze reads from the sample ``base`` to ``lake``, ``replicas`` times
    (:func:`replicated`, :func:`with_replica_behaviour`; the scores of score dates before
    ``run_date`` only, campaign results once); return the rows of persons, sessions, orders
    (each version of a line), contacts and companies written."""
    from crmlake.analyze.job import SCORES

    written = {}
    for table, id_columns in SCALED_TABLES.items():
        rows = base.read(table)
        if table == SCORES:
            rows = rows.where(F.col("score_date") < F.lit(run_date))
        written[table] = lake.overwrite(table, with_replica_behaviour(replicated(rows, replicas, id_columns))).rows_written
    for table in COPIED_ONCE:
        lake.overwrite(table, base.read(table))
    # The rows each write reports: no table read back to count it.
    return {"persons": written["silver.customer_360"], "sessions": written["silver.sessions"], "order_rows": written["bronze.orders"],
            "contacts": written["gold.contact_history"], "companies": written["silver.companies"]}


def bench_analyze(spark: SparkSession, conf_file: str | None, tmp: str, person_counts: list[int], base_customers: int, days: int) -> Iterator[list[str]]:
    """Time the analyze stage at several numbers of distinct persons; yield the printable lines
    of the sample, then of each size as soon as it is measured (a size takes minutes).

    The sample (:func:`analyzed_sample`, ``base_customers`` over ``days``) registers every
    model; each size gets its own lake of the sample's tables replicated to it
    (:func:`scaled_lake`) and a copy of the sample's MLflow store, so analyze trains its
    challengers against the sample's champions. The peer is a plain Spark copy of the same
    tables (read each, write Parquet).
    """
    from crmlake.analyze import job as analyze

    end = FIRST_DAY + dt.timedelta(days=days - 1)

    def conf_at(root: str):
        # Every lake's runs are logged beside the sample's artifacts: the champions they load are there.
        return load_conf(conf_file, [f"paths.landing={tmp}/base/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                     f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={tmp}/base/artifacts"])

    base = conf_at(f"{tmp}/base")
    sample, summary = analyzed_sample(spark, base, base_customers, days, end)
    base_lake = Lake(spark, base)
    behaviours, base_persons = distinct_behaviours(base_lake, end)
    yield [
        f"sample                      : {base_customers:,} customers x {days} days; decided on {sample['contact_date']}: {sample['contacts']:,} contacts,"
        f" {sample['responses']:,} planted responses; analyzed on {end}: {base_persons:,} persons, {behaviours:,} distinct behaviours",
        f"  its models (champions)    : {models_line(summary)}",
    ]
    tables = [*SCALED_TABLES, *COPIED_ONCE]
    for persons in person_counts:
        replicas = max(1, round(persons / base_persons))
        root = f"{tmp}/persons-{persons}"
        scaled = conf_at(root)
        os.makedirs(root, exist_ok=True)
        shutil.copyfile(f"{tmp}/base/mlflow.db", f"{root}/mlflow.db")
        lake = Lake(spark, scaled)
        rows = scaled_lake(base_lake, lake, replicas, end)
        copy = seconds(lambda: [lake.read(t).write.mode("overwrite").parquet(f"file://{root}/copy/{t}") for t in tables])
        with step_times() as steps:
            summaries = []
            took = seconds(lambda: summaries.append(analyze.run(spark, scaled, end)))
        behaviours, scored = distinct_behaviours(lake, end)
        yield [
            f"analyze                     : {rows['persons']:,} persons ({replicas} replicas), {rows['sessions']:,} sessions, {rows['order_rows']:,} order rows (line versions),"
            f" {rows['contacts']:,} contacts, {rows['companies']:,} companies in {took:.1f}s = {rows['persons'] / took:,.0f} persons/s",
            f"  distinct persons          : {behaviours:,} distinct behaviours among {scored:,} persons scored"
            f" (copies of the sample: at most {base_persons:,}; behaviour = frequency, monetary, recency, sessions and product views in 30 days)",
            f"  its models                : {models_line(summaries[0])}",
            f"  its steps                 : {listed_steps(steps)}",
            f"copy limit (same inputs)    : {copy:.1f}s, {len(tables)} tables; ratio analyze / copy {took / copy:.1f}",
        ]
