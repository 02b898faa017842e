"""Lake section: the configured engine's append against a plain partitioned
``df.write.parquet`` of the same cached DataFrame, without a shuffle of its own (the copy
limit), each timed several times alternately and compared by median; a merge that changes 1%
of the keys against a full rewrite of the table; files per partition after the append, beside
the plain write's. Then all the rows in one day: the append against a plain
``df.write.partitionBy(...).parquet`` of the same frame, with the tasks and files that wrote it.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import statistics

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.common import FIRST_DAY, seconds
from crmlake.config import load_conf
from crmlake.lake import Lake, load_catalog


def events(spark: SparkSession, rows: int, days: int, first_id: int = 0) -> DataFrame:
    """Return ``rows`` synthetic click events over ``days`` date partitions."""
    return spark.range(first_id, first_id + rows).select(
        F.col("id").alias("event_id"),
        (F.col("id") % 100_000).cast("string").alias("account_id"),
        F.date_add(F.lit(FIRST_DAY), (F.col("id") % days).cast("int")).alias("event_date"),
        (F.col("id") * 7 % 10_000).cast("decimal(18,2)").alias("price"),
        F.sha2(F.col("id").cast("string"), 256).alias("page_url"),
    )


# The bench's own table, declared beside the library's catalog.
BENCH_TABLES = {
    "bronze.bench": {
        "description": "Synthetic events the lake bench writes.",
        "partition_by": ["event_date"],
        "subject": {"none": "synthetic events: their account ids are nobody's"},
        "columns": {"event_id": "bigint", "account_id": "string", "event_date": "date", "price": "decimal(18,2)", "page_url": "string"},
    }
}


def bench_lake(spark: SparkSession, conf_file: str | None, tmp: str, rows: int, days: int, repeats: int) -> list[str]:
    """Measure the lake's append, merge and layout; return printable lines."""
    frame = events(spark, rows, days).cache()
    frame.count()
    frame.write.parquet(f"file://{tmp}/warm-up")  # JIT and file-system warm-up, not timed
    plain_times, lake_times = [], []
    for attempt in range(repeats):
        conf = load_conf(conf_file, [f"paths.lake={tmp}/lake{attempt}"])
        lake = Lake(spark, conf, load_catalog().with_tables(BENCH_TABLES))
        # The peer writes as the frame stands, without a shuffle of its own: each task writes a file
        # into every date it holds (the files per partition printed below say what that costs readers).
        plain_times.append(seconds(lambda: frame.write.partitionBy("event_date").parquet(f"file://{tmp}/plain{attempt}")))
        lake_times.append(seconds(lambda: lake.append("bronze.bench", frame, partition_by=["event_date"])))
    plain, appended = statistics.median(plain_times), statistics.median(lake_times)
    files = lake.files("bronze.bench")
    partitions = {tuple(sorted(f["partition_values"].items())) for f in files}
    plain_files = glob.glob(f"{tmp}/plain0/event_date=*/*.parquet")

    keys = ["event_id", "event_date"]
    # 1% of the keys, spread over every partition (worst case: every file is rewritten) ...
    spread = frame.where(F.col("event_id") % 100 == 0).withColumn("price", F.col("price") + 1).cache()
    # ... and 1% of the keys within a few days (late corrections: only those partitions).
    last_days = FIRST_DAY + dt.timedelta(days=max(0, days - 3))
    clustered = frame.where(F.col("event_date") >= F.lit(last_days)).limit(rows // 100).withColumn("price", F.col("price") + 1).cache()
    spread_rows, clustered_rows = spread.count(), clustered.count()
    merged_spread = seconds(lambda: lake.merge("bronze.bench", spread, keys=keys, order_by="price"))
    merged_clustered = seconds(lambda: lake.merge("bronze.bench", clustered, keys=keys, order_by="price"))
    rewrite = seconds(lambda: lake.overwrite("bronze.bench", frame, partition_by=["event_date"]))
    for cached in (frame, spread, clustered):
        cached.unpersist()
    return [
        f"lake append ({lake.engine.name} engine)  : {rows:,} rows, median {appended:.2f}s = {rows / appended:,.0f} rows/s",
        f"plain df.write.parquet      : {rows:,} rows, median {plain:.2f}s = {rows / plain:,.0f} rows/s",
        f"ratio append / plain        : {appended / plain:.2f} (aim <= 1.2; {repeats} runs each, alternating)",
        f"files per partition         : {len(files) / max(1, len(partitions)):.1f} ({len(files)} files, {len(partitions)} partitions; "
        f"the plain write {len(plain_files) / max(1, len(partitions)):.1f})",
        f"full rewrite of the table   : {rows:,} rows in {rewrite:.2f}s",
        f"merge, 1% keys in all days  : {spread_rows:,} rows in {merged_spread:.2f}s (merge / rewrite = {merged_spread / rewrite:.2f})",
        f"merge, 1% keys in few days  : {clustered_rows:,} rows in {merged_clustered:.2f}s (merge / rewrite = {merged_clustered / rewrite:.2f})",
    ]


def writer_tasks(paths: list[str]) -> int:
    """Return how many Spark tasks wrote the data files ``paths``: each task names its files
    ``part-<task's partition>-...`` (``.c000``, ``.c001`` past ``maxRecordsPerFile``)."""
    return len({re.match(r"part-(\d+)", os.path.basename(p)).group(1) for p in paths})


def bench_one_day(spark: SparkSession, conf_file: str | None, tmp: str, rows: int, repeats: int) -> list[str]:
    """Time an append of ``rows`` events all in one date partition against a plain partitioned
    ``df.write.parquet`` of the same cached frame; return printable lines with the tasks and files
    that wrote the day."""
    frame = events(spark, rows, 1, first_id=rows).cache()
    frame.count()
    plain_times, lake_times = [], []
    for attempt in range(repeats):
        lake = Lake(spark, load_conf(conf_file, [f"paths.lake={tmp}/one-day{attempt}"]), load_catalog().with_tables(BENCH_TABLES))
        plain_path = f"{tmp}/one-day-plain{attempt}"
        plain_times.append(seconds(lambda: frame.write.partitionBy("event_date").parquet(f"file://{plain_path}")))
        lake_times.append(seconds(lambda: lake.append("bronze.bench", frame, partition_by=["event_date"])))
    frame.unpersist()
    plain, appended = statistics.median(plain_times), statistics.median(lake_times)
    lake_files = [f["path"] for f in lake.files("bronze.bench")]
    plain_files = glob.glob(f"{plain_path}/event_date=*/*.parquet")
    return [
        f"one day, lake append        : {rows:,} rows, median {appended:.2f}s, {writer_tasks(lake_files)} tasks wrote {len(lake_files)} files",
        f"one day, plain partitioned  : {rows:,} rows, median {plain:.2f}s, {writer_tasks(plain_files)} tasks wrote {len(plain_files)} files",
        f"ratio append / plain        : {appended / plain:.2f} for one day ({spark.sparkContext.defaultParallelism} cores)",
    ]
