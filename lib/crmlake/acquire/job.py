"""The acquire stage: landing files with ``dt`` <= the run date, not yet ingested, into bronze.

Exactly once, by content: a file whose SHA-256 is already in ``bronze.ingest_log`` is never
read again, under any name; a record whose key is already in its bronze table (a
clickstream ``event_id`` delivered twice, an identical row) counts as a duplicate. Bad
records go to ``bronze.quarantine`` with file, line, raw text and reason. Per file,
records read = accepted + quarantined + duplicates, and the job checks it against what
was committed. The ingest log is written last: a run killed before it is simply redone.
"""

from __future__ import annotations

import datetime as dt
import os
import itertools
import re
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from crmlake.acquire.contract import SOURCES, Source
from crmlake.acquire.records import RECORD_SCHEMA, file_records
from crmlake.acquire.validate import with_validation
from crmlake.config import Conf
from crmlake.files import file_sha256
from crmlake.lake import Lake
from crmlake.log import get_logger, timed

log = get_logger("acquire")
DT_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
INGEST_LOG = "bronze.ingest_log"
QUARANTINE = "bronze.quarantine"
INGEST_LOG_SCHEMA = (
    "source string, path string, dt date, size_bytes long, sha256 string, status string, "
    "records_read long, accepted long, quarantined long, duplicates long, run_date date, ingested_at timestamp"
)


class BalanceError(RuntimeError):
    """Records read do not equal accepted + quarantined + duplicates for a file."""


@dataclass(frozen=True)
class LandingFile:
    """A file found in the landing zone."""

    source: str
    path: str
    dt: dt.date
    size_bytes: int
    sha256: str


def discover(landing: str, source: str, run_date: dt.date) -> list[LandingFile]:
    """List ``<landing>/<source>/dt=YYYY-MM-DD/*`` with dt <= ``run_date``, with size and checksum."""
    root = os.path.join(landing, source)
    found: list[LandingFile] = []
    if not os.path.isdir(root):
        return found
    for entry in sorted(os.listdir(root)):
        match = DT_DIR.match(entry)
        if not match:
            continue
        day = dt.date.fromisoformat(match.group(1))
        if day > run_date:
            continue
        folder = os.path.join(root, entry)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not name.startswith((".", "_")):
                found.append(LandingFile(source, path, day, os.path.getsize(path), file_sha256(path)))
    return found


def partition_column(source: Source) -> str | None:
    """Return the bronze partition column of a source (``event_time`` -> ``event_date``)."""
    return source.partition_time.replace("_time", "_date") if source.partition_time else None


def read_records(spark: SparkSession, files: list[LandingFile], source: Source, conf: Conf) -> DataFrame:
    """Read ``files`` into one record per row: source_file, file_sha256, source_line, raw_text, record_json, error.

    Each executor opens its files by path, so the landing zone must be a file system the
    driver and the executors all see (local disk, NFS, a mounted bucket). Records travel
    to the JVM as Arrow batches.
    """
    fmt = source.format
    max_line = int(conf.get("acquire.max_line_bytes", 1 << 20))
    raw_max = int(conf.get("acquire.raw_text_max_chars", 65536))
    batch_rows = 50_000

    def split(batches):
        import pyarrow as pa

        for batch in batches:
            for path, sha in zip(batch.column("path").to_pylist(), batch.column("sha256").to_pylist()):
                with open(path, "rb") as fh:
                    content = fh.read()
                records = file_records(path, content, fmt, max_line, raw_max)
                while True:
                    chunk = list(itertools.islice(records, batch_rows))
                    if not chunk:
                        break
                    lines, raws, jsons, errors = zip(*chunk)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array([path] * len(chunk)), pa.array([sha] * len(chunk)), pa.array(lines, pa.int64()),
                         pa.array(raws, pa.string()), pa.array(jsons, pa.string()), pa.array(errors, pa.string())],
                        names=["source_file", "file_sha256", "source_line", "raw_text", "record_json", "error"],
                    )

    listing = spark.createDataFrame([(os.path.abspath(f.path), f.sha256) for f in files], "path string, sha256 string")
    listing = listing.repartition(max(1, min(len(files), spark.sparkContext.defaultParallelism * 2)))
    return listing.mapInArrow(split, "source_file string, file_sha256 string, " + RECORD_SCHEMA)


def classify(validated: DataFrame, existing_keys: DataFrame | None) -> DataFrame:
    """Add ``ingest_outcome``: quarantined (bad), duplicate (key seen before or earlier in this batch) or accepted."""
    first = Window.partitionBy("record_key").orderBy("source_file", "source_line")
    ranked = validated.withColumn(
        "_first_in_batch", F.when(F.col("reason").isNull(), F.row_number().over(first) == 1).otherwise(False)
    )
    if existing_keys is not None:
        ranked = ranked.join(existing_keys.select("record_key").distinct().withColumn("_seen", F.lit(True)), "record_key", "left")
    else:
        ranked = ranked.withColumn("_seen", F.lit(None).cast("boolean"))
    outcome = (
        F.when(F.col("reason").isNotNull(), "quarantined")
        .when(F.col("_first_in_batch") & F.col("_seen").isNull(), "accepted")
        .otherwise("duplicate")
    )
    return ranked.withColumn("ingest_outcome", outcome).drop("_first_in_batch", "_seen")


def bronze_rows(classified: DataFrame, source: Source, timezone: str, ingested_at: dt.datetime) -> DataFrame:
    """Return the accepted records as bronze rows (typed fields, drift, lineage, partition date)."""
    columns = [F.col(f.name) for f in source.fields] + ["extra_fields", "record_key", "source_file", "source_line"]
    rows = classified.where("ingest_outcome = 'accepted'").select(*columns, F.lit(ingested_at).alias("ingested_at"))
    part = partition_column(source)
    if part:
        rows = rows.withColumn(part, F.to_date(F.from_utc_timestamp(source.partition_time, timezone)))
    return rows


def quarantine_rows(classified: DataFrame, source: Source, ingested_at: dt.datetime) -> DataFrame:
    """Return the bad records as quarantine rows (source, file, line, raw text, reason)."""
    return classified.where("ingest_outcome = 'quarantined'").select(
        F.lit(source.name).alias("source"),
        "source_file",
        "file_sha256",
        "source_line",
        "raw_text",
        "reason",
        F.sha2(F.concat_ws(":", "file_sha256", F.col("source_line").cast("string")), 256).alias("quarantine_key"),
        F.lit(ingested_at).alias("ingested_at"),
    )


def acquire_source(spark: SparkSession, lake: Lake, conf: Conf, source: Source, run_date: dt.date, already: set) -> dict:
    """Ingest one source's new files; return counts. ``already`` holds checksums ingested before."""
    found = discover(conf.landing_root, source.name, run_date)
    new, repeats, seen = [], [], set(already)
    for f in found:
        (repeats if f.sha256 in seen else new).append(f)
        seen.add(f.sha256)
    facts = {"files_found": len(found), "files_new": len(new), "files_skipped": len(repeats), "accepted": 0, "quarantined": 0, "duplicates": 0}
    log_rows = [
        (source.name, f.path, f.dt, f.size_bytes, f.sha256, "duplicate_file", 0, 0, 0, 0, run_date)
        for f in repeats if f.sha256 not in already  # a re-delivery seen first in this run
    ]
    if new:
        ingested_at = dt.datetime.now(dt.timezone.utc)
        records = read_records(spark, new, source, conf)
        existing = lake.read(source.bronze_table).select("record_key") if lake.exists(source.bronze_table) else None
        # Cached: the classified records feed the per-file counts and two writes.
        classified = classify(with_validation(records, source), existing).cache()
        try:
            per_file = {
                r["source_file"]: r
                for r in classified.groupBy("source_file").agg(  # one row per file: small
                    F.count(F.lit(1)).alias("read"),
                    F.sum(F.when(F.col("ingest_outcome") == "accepted", 1).otherwise(0)).alias("accepted"),
                    F.sum(F.when(F.col("ingest_outcome") == "quarantined", 1).otherwise(0)).alias("quarantined"),
                    F.sum(F.when(F.col("ingest_outcome") == "duplicate", 1).otherwise(0)).alias("duplicates"),
                    F.max(F.when(F.col("reason").startswith("unreadable_file"), 1).otherwise(0)).alias("unreadable"),
                ).collect()
            }
            totals = {k: sum(int(r[k]) for r in per_file.values()) for k in ("read", "accepted", "quarantined", "duplicates")}
            part = partition_column(source)
            written = lake.append(source.bronze_table, bronze_rows(classified, source, conf.get("business.timezone"), ingested_at), partition_by=[part] if part else [])
            quarantined = quarantine_rows(classified, source, ingested_at)
            if lake.exists(QUARANTINE):
                quarantined = quarantined.join(lake.read(QUARANTINE).select("quarantine_key"), "quarantine_key", "left_anti")
            held = lake.append(QUARANTINE, quarantined, partition_by=["source"])
        finally:
            classified.unpersist()
        if written.rows_written != totals["accepted"]:
            raise BalanceError(f"{source.bronze_table}: committed {written.rows_written} rows but {totals['accepted']} were accepted")
        if held.rows_written > totals["quarantined"]:
            raise BalanceError(f"{QUARANTINE}: committed {held.rows_written} rows but only {totals['quarantined']} were quarantined")
        for f in new:
            counts = per_file.get(os.path.abspath(f.path))
            if counts is None:  # an empty file: nothing read, nothing lost
                log_rows.append((source.name, f.path, f.dt, f.size_bytes, f.sha256, "ingested", 0, 0, 0, 0, run_date))
                continue
            read, acc, quar, dup = (int(counts[k]) for k in ("read", "accepted", "quarantined", "duplicates"))
            if read != acc + quar + dup:
                raise BalanceError(f"{f.path}: read {read} != accepted {acc} + quarantined {quar} + duplicates {dup}")
            status = "unreadable" if counts["unreadable"] else "ingested"
            log_rows.append((source.name, f.path, f.dt, f.size_bytes, f.sha256, status, read, acc, quar, dup, run_date))
        facts.update(accepted=totals["accepted"], quarantined=totals["quarantined"], duplicates=totals["duplicates"])
    if log_rows:
        now = dt.datetime.now(dt.timezone.utc)
        lake.append(INGEST_LOG, spark.createDataFrame([(*r, now) for r in log_rows], INGEST_LOG_SCHEMA), partition_by=["source"])
    return facts


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Acquire every source for ``run_date``; return per-source counts."""
    lake = Lake(spark, conf)
    already: dict[str, set] = {name: set() for name in SOURCES}
    if lake.exists(INGEST_LOG):
        # One row per file ever ingested: small enough to hold on the driver.
        for row in lake.read(INGEST_LOG).where("status != 'duplicate_file'").select("source", "sha256").collect():
            already.setdefault(row["source"], set()).add(row["sha256"])
    results = {}
    for name, source in SOURCES.items():
        with timed(log, f"acquire {name} up to {run_date}") as facts:
            facts.update(acquire_source(spark, lake, conf, source, run_date, already[name]))
            results[name] = dict(facts)
    return results
