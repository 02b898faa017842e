"""Acquire section: a generated landing zone of about 1M and 10M clickstream events,
acquired into bronze, against plain copies measured in the same run (Spark reading the
same files as JSON with the contract's fields, and as text, writing Parquet with no checks).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from benchmarks.common import records_read, seconds
from crmlake.config import load_conf
from crmlake.lake import Lake


def bench_acquire(spark: SparkSession, conf_file: str | None, tmp: str, events: int) -> list[str]:
    """Generate about ``events`` clickstream events, then time acquire against two plain copies:
    the same files read as text, and read as JSON with the contract's fields, written as Parquet."""
    from crmlake.acquire import job as acquire
    from crmlake.acquire.contract import SOURCES
    from crmlake.generate.landing import write_landing

    landing = f"{tmp}/landing-{events}"
    end = dt.date(2026, 11, 21)
    # The simulation yields about 75 events per person over 60 days.
    write_landing(spark, landing, max(100, events // 75), 60, end, 11, "Asia/Taipei")
    conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-lake-{events}"])
    files = f"file://{landing}/clickstream/dt=*/*"
    fields = ", ".join(f"{f.name} string" for f in SOURCES["clickstream"].fields)
    # JIT warm-up, not timed: each side once over the first 5 days (at 1M events a cold JVM's
    # compiling would otherwise be a good part of what is timed; a daily job's volume amortizes it).
    warm_until = end - dt.timedelta(days=55)
    warm_files = [f.path for f in acquire.discover(landing, "clickstream", warm_until)]
    spark.read.schema(fields).json(warm_files).write.parquet(f"file://{tmp}/json-warm-{events}")
    warm_conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-warm-{events}"])
    acquire.acquire_source(spark, Lake(spark, warm_conf), warm_conf, SOURCES["clickstream"], warm_until, acquire.IngestLog(frozenset(), frozenset()))
    as_text = seconds(lambda: spark.read.text(files).write.parquet(f"file://{tmp}/text-copy-{events}"))
    as_json = seconds(lambda: spark.read.schema(fields).json(files).write.parquet(f"file://{tmp}/json-copy-{events}"))
    lake = Lake(spark, conf)
    facts: dict = {}
    took = seconds(lambda: facts.update(acquire.acquire_source(spark, lake, conf, SOURCES["clickstream"], end, acquire.IngestLog(frozenset(), frozenset()))))
    read = records_read(facts)
    written = lake.files("bronze.clickstream")
    partitions = {tuple(sorted(f["partition_values"].items())) for f in written}
    return [
        f"acquire clickstream         : {read:,} events in {took:.1f}s = {read / took:,.0f} events/s",
        f"plain copy, JSON -> parquet : {read:,} lines in {as_json:.1f}s = {read / as_json:,.0f} lines/s",
        f"plain copy, text -> parquet : {read:,} lines in {as_text:.1f}s = {read / as_text:,.0f} lines/s",
        f"ratio acquire / JSON copy   : {took / as_json:.2f} (aim <= 3); acquire / text copy {took / as_text:.2f}",
        f"bronze files per partition  : {len(written) / max(1, len(partitions)):.1f} ({len(written)} files, {len(partitions)} days)",
    ]
