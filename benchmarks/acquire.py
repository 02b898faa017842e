"""Acquire section: a generated landing zone of about 1M and 10M clickstream events, acquired
into bronze, against plain copies measured in the same run. In one session: the clickstream
acquired against Spark reading the same files typed as the contract says (timestamps, money,
booleans) with a corrupt-record column, written as Parquet partitioned by business date as
bronze is, and against a text copy written as it is. Then as whole processes, JVM start and
file facts included: ``crmlake run --stage acquire`` of every source against
``python -m benchmarks.acquire`` copying every source the typed way, each started the same way.
Neither copy checks, deduplicates, quarantines or commits anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys

from pyspark.sql import SparkSession

from benchmarks.common import records_read, seconds
from crmlake.acquire.contract import SOURCES, Source
from crmlake.business_days import business_date
from crmlake.config import load_conf
from crmlake.lake import Lake

SPARK_TYPES = {"timestamp": "timestamp", "money": "decimal(18,2)", "bool": "boolean", "int": "int", "string": "string"}
END = dt.date(2026, 11, 21)


def typed_copy(spark: SparkSession, source: Source, paths, target: str, timezone: str) -> None:
    """Copy a landing source's files (``paths``: a glob or a list) to Parquet under ``target`` as a
    plain Spark job would: read typed as the contract says with a corrupt-record column (CSV with
    its header), partitioned by the business date of its ``partition_time`` when bronze is."""
    schema = ", ".join([*(f"{f.name} {SPARK_TYPES[f.kind]}" for f in source.fields), "_corrupt_record string"])
    reader = spark.read.schema(schema).option("columnNameOfCorruptRecord", "_corrupt_record")
    records = reader.json(paths) if source.format == "json" else reader.option("header", True).csv(paths)
    if source.partition_time:
        records.withColumn("business_date", business_date(source.partition_time, timezone)).write.partitionBy("business_date").parquet(f"file://{target}")
    else:
        records.write.parquet(f"file://{target}")


def bench_acquire(spark: SparkSession, conf_file: str | None, tmp: str, events: int) -> list[str]:
    """Generate about ``events`` clickstream events, then time acquire against the plain copies
    of the module's docstring, in this session and as whole processes."""
    from crmlake.acquire import job as acquire
    from crmlake.generate.landing import write_landing

    landing = f"{tmp}/landing-{events}"
    # The simulation yields about 75 events per person over 60 days.
    write_landing(spark, landing, max(100, events // 75), 60, END, 11, "Asia/Taipei")
    conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-lake-{events}"])
    timezone, clickstream = conf.business.timezone, SOURCES["clickstream"]
    files = f"file://{landing}/clickstream/dt=*/*"
    # JIT warm-up, not timed: each side once over the first 5 days (at 1M events a cold JVM's
    # compiling would otherwise be a good part of what is timed; a daily job's volume amortizes it).
    warm_until = END - dt.timedelta(days=55)
    warm_files = [f.path for f in acquire.discover(landing, "clickstream", warm_until)]
    typed_copy(spark, clickstream, warm_files, f"{tmp}/json-warm-{events}", timezone)
    warm_conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-warm-{events}"])
    acquire.acquire_source(spark, Lake(spark, warm_conf), warm_conf, clickstream, warm_until, acquire.IngestLog(frozenset(), frozenset()))
    as_text = seconds(lambda: spark.read.text(files).write.parquet(f"file://{tmp}/text-copy-{events}"))
    as_json = seconds(lambda: typed_copy(spark, clickstream, files, f"{tmp}/json-copy-{events}", timezone))
    lake = Lake(spark, conf)
    facts: dict = {}
    took = seconds(lambda: facts.update(acquire.acquire_source(spark, lake, conf, clickstream, END, acquire.IngestLog(frozenset(), frozenset()))))
    read = records_read(facts)
    written = lake.files("bronze.clickstream")
    partitions = {tuple(sorted(f["partition_values"].items())) for f in written}
    stage, copy = whole_processes(conf_file, tmp, landing, events)
    return [
        f"acquire clickstream         : {read:,} events in {took:.1f}s = {read / took:,.0f} events/s",
        f"plain copy, typed JSON      : {read:,} lines in {as_json:.1f}s = {read / as_json:,.0f} lines/s (corrupt-record column, by business date)",
        f"plain copy, text -> parquet : {read:,} lines in {as_text:.1f}s = {read / as_text:,.0f} lines/s",
        f"ratio acquire / JSON copy   : {took / as_json:.2f} (aim <= 3); acquire / text copy {took / as_text:.2f}",
        f"bronze files per partition  : {len(written) / max(1, len(partitions)):.1f} ({len(written)} files, {len(partitions)} days)",
        f"whole process, acquire      : crmlake run --stage acquire, every source, {stage:.1f}s",
        f"whole process, typed copy   : python -m benchmarks.acquire, every source, {copy:.1f}s",
        f"ratio, whole processes      : {stage / copy:.2f} (aim <= 3; each a fresh JVM)",
    ]


def whole_processes(conf_file: str | None, tmp: str, landing: str, events: int) -> tuple[float, float]:
    """Return the seconds of ``crmlake run --stage acquire`` of ``landing`` into a fresh lake and of
    the typed copy of every source (:func:`main`) into a fresh folder, each a process of its own
    started from this Python, one after the other."""
    conf = ["--conf", conf_file] if conf_file else []
    settings = [f"paths.landing={landing}", f"paths.lake={tmp}/process-lake-{events}", f"paths.exports={tmp}/process-exports-{events}"]
    stage = [os.path.join(os.path.dirname(sys.executable), "crmlake"), "run", *conf, *(a for s in settings for a in ("--set", s)),
             "--stage", "acquire", "--date", END.isoformat()]
    copy = [sys.executable, "-m", "benchmarks.acquire", landing, f"{tmp}/process-copy-{events}", *conf]
    return (seconds(lambda: subprocess.run(stage, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)),
            seconds(lambda: subprocess.run(copy, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))


def main(argv: list[str] | None = None) -> int:
    """The whole-process peer of ``crmlake run --stage acquire``: copy every source of a landing
    zone with :func:`typed_copy`, in a session built as the stage builds its own."""
    from crmlake.session import spark_session

    parser = argparse.ArgumentParser(prog="python -m benchmarks.acquire", description=main.__doc__)
    parser.add_argument("landing", help="landing zone (one folder per source, dt=YYYY-MM-DD below)")
    parser.add_argument("target", help="folder the Parquet copies are written under, one per source")
    parser.add_argument("--conf", default=None, help="environment file (e.g. conf/local.yaml)")
    args = parser.parse_args(argv)
    conf = load_conf(args.conf)
    with spark_session(conf, "bench-copy") as spark:
        for name, source in SOURCES.items():
            if os.path.isdir(os.path.join(args.landing, name)):
                typed_copy(spark, source, f"file://{args.landing}/{name}/dt=*/*", f"{args.target}/{name}", conf.business.timezone)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
