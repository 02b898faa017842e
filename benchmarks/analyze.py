"""Analyze section: the lifetime-value fit (grouping in Spark + maximum likelihood) on
purchase histories of 10k, 100k and 1M persons simulated from known BG/NBD and Gamma-Gamma
parameters: its time should stay nearly flat, and the fitted parameters approach the
simulated ones as persons grow. Then
the whole analyze stage (reports, propensity, segments, lifetime value, scores) at 100k
and 1M persons: a generated sample is organized and its silver tables replicated with
distinct ids to each size; the peer is a plain Spark copy of the same inputs.
"""

from __future__ import annotations

import datetime as dt

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


# How bench_analyze scales a generated sample: per table analyze reads, the partition columns and
# the columns that name a person, an account, a cookie, an order or a session (made unique
# per replica); hashed identifiers and guest emails are rewritten so that the joins of
# crmlake.people still match inside each replica.
SCALED_TABLES = {
    "silver.customer_360": ((), ("person_id", "primary_account_id")),
    "silver.customers": ((), ("account_id", "referred_by")),
    "silver.customer_history": ((), ("account_id", "referred_by")),
    "bronze.orders": (("order_date",), ("order_id", "account_id")),
    "silver.order_lines": (("order_date",), ("order_id", "account_id")),
    "silver.sessions": (("session_date",), ("session_id", "anonymous_id", "account_id")),
    "silver.identity_map": (("identifier_type",), ("person_id",)),
}


def replicated(df: DataFrame, replicas: int, id_columns: tuple[str, ...]) -> DataFrame:
    """Return ``replicas`` copies of a silver frame, ids suffixed ``~<replica>`` so copies are distinct people.

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


def bench_analyze(spark: SparkSession, conf_file: str | None, tmp: str, person_counts: list[int], base_customers: int, days: int) -> list[str]:
    """Time the analyze stage at several numbers of persons; return printable lines.

    A landing zone of ``base_customers`` is generated, acquired and organized once; its
    silver tables are then replicated (distinct ids per copy) to each size, and the analyze
    stage runs on them with the configured models. The peer is a plain Spark copy of the
    same inputs (read every silver table analyze reads, write Parquet).
    """
    from crmlake.acquire import job as acquire
    from crmlake.analyze import job as analyze
    from crmlake.generate.landing import write_landing
    from crmlake.organize import job as organize

    end = FIRST_DAY + dt.timedelta(days=days - 1)

    def conf_at(root: str):
        return load_conf(conf_file, [f"paths.landing={tmp}/base/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                     f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts"])

    base = conf_at(f"{tmp}/base")
    write_landing(spark, base.landing_root, customers=base_customers, days=days, end=end, seed=7, timezone=base.business.timezone)
    acquire.run(spark, base, end)
    organize.run(spark, base, end)
    base_lake = Lake(spark, base)
    base_persons = base_lake.read("silver.customer_360").count()
    lines = [f"sample                      : {base_customers:,} customers x {days} days generated and organized -> {base_persons:,} persons"]
    for persons in person_counts:
        replicas = max(1, round(persons / base_persons))
        scaled = conf_at(f"{tmp}/persons-{persons}")
        lake = Lake(spark, scaled)
        for table, (partition_by, id_columns) in SCALED_TABLES.items():
            lake.overwrite(table, replicated(base_lake.read(table), replicas, id_columns), partition_by=partition_by)
        rows = {table: lake.read(table).count() for table in SCALED_TABLES}
        copy = seconds(lambda: [lake.read(t).write.mode("overwrite").parquet(f"file://{tmp}/copy-{persons}/{t}") for t in SCALED_TABLES])
        with step_times() as steps:
            took = seconds(lambda: analyze.run(spark, scaled, end))
        lines += [
            f"analyze                     : {rows['silver.customer_360']:,} persons, {rows['silver.sessions']:,} sessions, "
            f"{rows['silver.order_lines']:,} order lines in {took:.1f}s = {rows['silver.customer_360'] / took:,.0f} persons/s",
            f"  its steps                 : {listed_steps(steps)}",
            f"copy limit (same inputs)    : {copy:.1f}s; ratio analyze / copy {took / copy:.1f}",
        ]
    return lines
