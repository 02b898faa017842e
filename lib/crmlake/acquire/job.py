"""The acquire stage: landing files with ``dt`` <= the run date, not yet ingested, into bronze.

Discovery lists the landing zone (names, sizes, modification times): a file already in
``bronze.ingest_log`` with the same path, size and modification time is not read again.
Only new files are read, on the executors, once to checksum them and count their data
lines. Exactly once, by content: a file whose SHA-256 is already in the ingest log is
never ingested again, under any name; a record whose key is already in its bronze table
(a clickstream ``event_id`` delivered twice, an identical row) counts as a duplicate.
Bad records go to ``bronze.quarantine`` with file, line, raw text and reason.

The balance, per file: the data lines counted in that first pass must equal the lines the
accepted, quarantined and duplicate records span. A file that does not balance (it changed
while being read, or records were lost) is not ingested: its ingest-log row says
``balance_failed``, the other files are committed, and the run is partial, naming it
(:mod:`crmlake.isolation`); the next run tries it again. The ingest log is written last: a
run killed before it reads the batch's files again, finds the rows it had committed by file
and line, and writes only what is missing, so every record lands once and the ingest log
holds what a run never killed would.

Every source is optional (the contract): a source that has never delivered gets an empty
bronze table of its schema, so later stages read an empty source, not a missing table. The
sources are acquired side by side (``acquire.sources_at_once``,
:func:`crmlake.isolation.side_by_side`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from functools import partial

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake import files
from crmlake.acquire.contract import SOURCES, Source
from crmlake.acquire.facts import FACTS_SCHEMA, file_facts
from crmlake.acquire.reader import FileToRead, read_records
from crmlake.acquire.validate import with_validation
from crmlake.business_days import business_date
from crmlake.config import Conf, ConfigError
from crmlake.faults import crash_point
from crmlake.isolation import side_by_side
from crmlake.lake import Lake
from crmlake.lake.frames import counted, maybe_broadcast
from crmlake.log import get_logger, timed

log = get_logger("acquire")
DT_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
INGEST_LOG = "bronze.ingest_log"
QUARANTINE = "bronze.quarantine"
INGEST_LOG_SCHEMA = (
    "source string, path string, dt date, size_bytes long, modified_at timestamp, sha256 string, status string, "
    "data_lines long, records_read long, accepted long, quarantined long, duplicates long, run_date date, ingested_at timestamp"
)
# Ingest-log statuses of a file that is done with: never read again (by path) nor ingested again (by checksum).
DONE_STATUSES = ("ingested", "unreadable", "duplicate_file")
EPOCH = dt.datetime(1970, 1, 1)  # modification times are kept as naive UTC, as Spark reads them back


class BalanceError(RuntimeError):
    """A file's data lines do not equal the lines its accepted, quarantined and duplicate records span."""


@dataclass(frozen=True)
class LandingFile:
    """A file found in the landing zone; ``sha256``, ``data_lines`` (or why it is ``unreadable``) once it has been read."""

    source: str
    path: str
    dt: dt.date
    size_bytes: int
    modified_at: dt.datetime
    sha256: str | None = None
    data_lines: int | None = None
    unreadable: str | None = None

    @property
    def listing_key(self) -> tuple:
        """What recognises a file already read, without reading it: path, size, modification time."""
        return (self.path, self.size_bytes, self.modified_at)


def landing_root(landing: str) -> str:
    """Return the landing zone ``landing`` (a path or URI, :mod:`crmlake.files`) as a location.

    Raises ConfigError naming it when it is no folder: a mistyped or unmounted landing zone
    would otherwise read as every source never delivered.
    """
    root = files.location(landing)
    if not files.is_dir(root):
        raise ConfigError(f"paths.landing={landing}: the landing zone is not there (no such folder); "
                          "create it, or mount the file system that holds it")
    return root


def discover(landing: str, source: str, run_date: dt.date) -> list[LandingFile]:
    """List ``<landing>/<source>/dt=YYYY-MM-DD/*`` with dt <= ``run_date``: path, size, modification time (UTC).

    ``landing`` is a local path or a URI of any file system :mod:`crmlake.files` reaches; a
    local file's path is its absolute path however the landing zone was named (relative, or a
    ``file:`` URI). Reads no file: a listing is all discovery costs, however long the history.
    Raises ConfigError when the landing zone itself is not there (:func:`landing_root`); a
    source's folder missing is a source never delivered.
    """
    root = files.join(landing_root(landing), source)
    found: list[LandingFile] = []
    if not files.is_dir(root):
        return found
    for entry in files.list_folder(root):
        match = DT_DIR.match(entry.name)
        if not match or not entry.is_dir:
            continue
        day = dt.date.fromisoformat(match.group(1))
        if day > run_date:
            continue
        for item in files.list_folder(entry.location):
            if not item.is_dir and not item.name.startswith((".", "_")):
                # Whole microseconds, exactly (no float): what a Delta timestamp keeps, so the key compares equal after a round trip.
                modified = EPOCH + dt.timedelta(microseconds=(item.modified_ns or 0) // 1000)
                found.append(LandingFile(source, item.location, day, item.size, modified))
    return found


def read_file_facts(spark: SparkSession, files: list[LandingFile], fmt: str) -> list[LandingFile]:
    """Checksum ``files`` and count their data lines on the executors, one task per file.

    Returns the files with ``sha256`` and ``data_lines`` set (or ``unreadable``, the reason
    the content cannot be read). The executors open the files by location through
    :mod:`crmlake.files`: a local landing zone must be one the driver and the executors all
    see (one machine, NFS, a mount); a remote one is opened with the executors' credentials.
    """
    if not files:
        return []

    def facts(batches):
        import pyarrow as pa

        for batch in batches:
            rows = [file_facts(path, fmt) for path in batch.column("path").to_pylist()]
            yield pa.RecordBatch.from_pylist([dict(zip(("path", "sha256", "data_lines", "unreadable"), r)) for r in rows],
                                             schema=pa.schema([("path", pa.string()), ("sha256", pa.string()), ("data_lines", pa.int64()), ("unreadable", pa.string())]))

    listing = spark.createDataFrame([(f.path,) for f in files], "path string")
    listing = listing.repartition(min(len(files), spark.sparkContext.defaultParallelism * 4))
    # Safe to collect: one row per new file.
    found = {r["path"]: r for r in listing.mapInArrow(facts, FACTS_SCHEMA).collect()}
    return [replace(f, sha256=found[f.path]["sha256"], data_lines=found[f.path]["data_lines"], unreadable=found[f.path]["unreadable"]) for f in files]


def partition_column(source: Source) -> str | None:
    """Return the bronze partition column of a source (``event_time`` -> ``event_date``)."""
    return source.partition_time.replace("_time", "_date") if source.partition_time else None


def partition_date(source: Source, timezone: str) -> Column:
    """The business date (in ``timezone``) of a record's partition time: its bronze partition."""
    return business_date(source.partition_time, timezone)


def bronze_of_batch_dates(lake: Lake, source: Source, validated: DataFrame) -> DataFrame | None:
    """Return the rows already in ``source``'s bronze table that ``validated`` could repeat:
    record_key, source_file, source_line (None before the table exists).

    A repeated record is the same record, so it has the same partition date: only the
    bronze partitions of the batch's dates are read, however long the history.
    """
    if not lake.exists(source.bronze_table):
        return None
    existing = lake.read(source.bronze_table).select("record_key", "source_file", "source_line", *filter(None, [partition_column(source)]))
    part = partition_column(source)
    if part is None:
        return existing
    # One row per business date in the batch: small.
    dates = [r[0] for r in validated.where("reason IS NULL").select(partition_date(source, lake.conf.business.timezone)).distinct().collect()]
    return existing.where(F.col(part).isin(*dates)).drop(part)


def classify(validated: DataFrame, existing_keys: DataFrame | None, broadcast_max_rows: int, committed: DataFrame | None = None) -> DataFrame:
    """Add ``ingest_outcome``: quarantined (bad), duplicate (key seen before, or held by an
    earlier good record of this batch: by file, then line) or accepted.

    ``committed`` (record_key, source_file, source_line): the batch's records a run killed
    before it logged them already wrote to bronze. A key one of them holds is accepted there,
    whatever else holds it (a late file delivering the same event again): every other record
    of the key is a duplicate, so the key stays in bronze once.

    Only the keys, files and lines move: the keys held twice in the batch or already seen are
    found by an aggregation and a join of those narrow columns, and joined back to the records,
    sent to every task when there are at most ``broadcast_max_rows`` of them (usually a few),
    so that the wide records are neither shuffled nor sorted.
    """
    good = validated.where("reason IS NULL").select("record_key", F.struct("source_file", "source_line").alias("_at"))
    keys = good.groupBy("record_key").agg(F.min("_at").alias("_first"), F.count(F.lit(1)).alias("_held"))
    if committed is not None:
        written = committed.groupBy("record_key").agg(F.min(F.struct("source_file", "source_line")).alias("_written"))
        keys = keys.join(written, "record_key", "left").select("record_key", F.coalesce("_written", "_first").alias("_first"), "_held")
    if existing_keys is not None:
        seen = existing_keys.select("record_key").distinct().withColumn("_seen", F.lit(True))
        keys = keys.join(seen, "record_key", "left")
    else:
        keys = keys.withColumn("_seen", F.lit(None).cast("boolean"))
    repeated, count = counted(keys.where(F.col("_seen").isNotNull() | (F.col("_held") > 1)).select("record_key", "_first", "_seen"))
    marked = validated.join(maybe_broadcast(repeated, count <= broadcast_max_rows), "record_key", "left")
    first_unseen = F.col("_seen").isNull() & (F.col("_first").isNull() | (F.struct("source_file", "source_line") == F.col("_first")))
    outcome = F.when(F.col("reason").isNotNull(), "quarantined").when(first_unseen, "accepted").otherwise("duplicate")
    return marked.withColumn("ingest_outcome", outcome).drop("_first", "_seen")


def bronze_rows(classified: DataFrame, source: Source, timezone: str, ingested_at: dt.datetime) -> DataFrame:
    """Return the accepted records as bronze rows (typed fields, drift, lineage, partition date)."""
    columns = [F.col(f.name) for f in source.fields] + ["extra_fields", "record_key", "source_file", "source_line"]
    rows = classified.where("ingest_outcome = 'accepted'").select(*columns, F.lit(ingested_at).alias("ingested_at"))
    part = partition_column(source)
    if part:
        rows = rows.withColumn(part, partition_date(source, timezone))
    return rows


def quarantine_rows(classified: DataFrame, source: Source, ingested_at: dt.datetime, raw_max_chars: int) -> DataFrame:
    """Return the bad records as quarantine rows (source, file, line, reason and the raw text,
    as valid UTF-8 (bad bytes replaced) of at most ``raw_max_chars`` characters)."""
    return classified.where("ingest_outcome = 'quarantined'").select(
        F.lit(source.name).alias("source"),
        "source_file",
        "file_sha256",
        "source_line",
        F.left(F.make_valid_utf8("raw_text"), F.lit(raw_max_chars)).alias("raw_text"),
        "reason",
        F.sha2(F.concat_ws(":", "file_sha256", F.col("source_line").cast("string")), 256).alias("quarantine_key"),
        F.lit(ingested_at).alias("ingested_at"),
    )


def file_balance(data_lines: int | None, counts) -> str | None:
    """Return why one file does not balance, or None when it does.

    ``data_lines`` was counted from the file before parsing; ``counts`` is the file's row of
    per-file outcome counts (None when it produced no record). An unreadable file has no
    lines to balance.
    """
    if counts is not None and counts["unreadable"]:
        return None
    spanned = int(counts["lines"]) if counts is not None else 0
    if data_lines is None or data_lines != spanned:
        outcomes = "no record" if counts is None else f"{counts['accepted']} accepted + {counts['quarantined']} quarantined + {counts['duplicates']} duplicate records"
        return f"{data_lines} data lines seen, but {outcomes} span {spanned}"
    return None


def per_file_outcomes(classified: DataFrame) -> dict:
    """Return, per source file, records read, accepted, quarantined, duplicates, lines spanned and unreadable."""
    # One row per file: small enough to collect.
    return {
        r["source_file"]: r
        for r in classified.groupBy("source_file").agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.when(F.col("ingest_outcome") == "accepted", 1).otherwise(0)).alias("accepted"),
            F.sum(F.when(F.col("ingest_outcome") == "quarantined", 1).otherwise(0)).alias("quarantined"),
            F.sum(F.when(F.col("ingest_outcome") == "duplicate", 1).otherwise(0)).alias("duplicates"),
            F.sum("line_count").alias("lines"),
            F.max(F.when(F.col("reason").startswith("unreadable_file"), 1).otherwise(0)).alias("unreadable"),
        ).collect()
    }


def ingest_files(spark: SparkSession, lake: Lake, conf: Conf, source: Source, files: list[LandingFile]) -> tuple[dict, list]:
    """Read, validate and commit ``files`` (checksummed, not yet ingested) of one source.

    Returns the totals (accepted, quarantined, duplicates, balance_failed: the files left
    out because they did not balance) and one ``(file, status, counts)`` per file for the
    ingest log. With no files it still creates the source's empty bronze table.
    """
    ingested_at = dt.datetime.now(dt.timezone.utc)
    records = read_records(spark, [FileToRead(f.path, f.sha256, f.unreadable) for f in files], source.format, conf.acquire.max_line_bytes)
    # Cached: the validated records give the batch's dates and repeated keys, then, classified
    # (a join with the few repeated keys: not worth a second cache), the per-file counts and
    # two writes (the files are read and parsed once).
    validated = with_validation(records, source).cache()
    # A run killed after committing some of this batch's rows left them in bronze: they are
    # this batch's own records (by file and line), not repeats of earlier ones. Each stays
    # accepted where it was written, even when a file delivered since holds its key too (that
    # one is the duplicate), and is not written again.
    earlier = bronze_of_batch_dates(lake, source, validated)
    batch_files = [f.path for f in files]
    committed = earlier.where(F.col("source_file").isin(*batch_files)) if earlier is not None else None
    if committed is not None and committed.isEmpty():   # the usual case: no killed run before this one
        committed = None
    seen = earlier.where(~F.col("source_file").isin(*batch_files)).select("record_key") if earlier is not None else None
    classified = classify(validated, seen, conf.acquire.repeats_broadcast_max_rows, committed)
    try:
        per_file = per_file_outcomes(classified)
        unbalanced = {f.path: problem for f in files if (problem := file_balance(f.data_lines, per_file.get(f.path)))}
        for path, problem in unbalanced.items():
            log.error("%s: does not balance, not ingested (the next run tries it again): %s", path, problem)
        kept = classified.where(~F.col("source_file").isin(*unbalanced)) if unbalanced else classified
        counted = [r for path, r in per_file.items() if path not in unbalanced]
        totals = {k: sum(int(r[k]) for r in counted) for k in ("accepted", "quarantined", "duplicates")}
        part = partition_column(source)
        accepted = bronze_rows(kept, source, conf.business.timezone, ingested_at)
        line = ["record_key", "source_file", "source_line"]
        already = committed.join(kept.where(F.col("ingest_outcome") == "accepted").select(*line), line, "left_semi").count() if committed is not None else 0
        if already:
            log.warning("%s: %d rows of this batch were committed by a run killed before it logged them; not written again", source.bronze_table, already)
            accepted = accepted.join(committed.select(*line), line, "left_anti")
        written = lake.append(source.bronze_table, accepted, partition_by=[part] if part else [])
        crash_point("acquire.bronze_committed")
        quarantined = quarantine_rows(kept, source, ingested_at, conf.acquire.raw_text_max_chars)
        if lake.exists(QUARANTINE):  # a rerun after a crash between the two writes: this batch's files only
            held_before = lake.read(QUARANTINE).where((F.col("source") == source.name) & F.col("file_sha256").isin(*{f.sha256 for f in files}))
            quarantined = quarantined.join(held_before.select("quarantine_key"), "quarantine_key", "left_anti")
        held = lake.append(QUARANTINE, quarantined, partition_by=["source"])
        crash_point("acquire.quarantine_committed")
    finally:
        validated.unpersist()
    if written.rows_written + already != totals["accepted"]:
        raise BalanceError(f"{source.bronze_table}: committed {written.rows_written} rows (and {already} before) but {totals['accepted']} were accepted")
    if held.rows_written > totals["quarantined"]:
        raise BalanceError(f"{QUARANTINE}: committed {held.rows_written} rows but only {totals['quarantined']} were quarantined")
    outcomes = []
    for f in files:
        counts = per_file.get(f.path)
        status = "balance_failed" if f.path in unbalanced else "unreadable" if counts is not None and counts["unreadable"] else "ingested"
        outcomes.append((f, status, counts))
    return {**totals, "balance_failed": sorted(unbalanced)}, outcomes


def acquire_source(spark: SparkSession, lake: Lake, conf: Conf, source: Source, run_date: dt.date, ingested: "IngestLog") -> dict:
    """Ingest one source's new files and log every file seen for the first time; return counts.

    ``ingested`` says which files were read before (by listing key) and which contents
    were ingested (by checksum).
    """
    found = discover(conf.landing_root, source.name, run_date)
    fresh = read_file_facts(spark, [f for f in found if f.listing_key not in ingested.listed], source.format)
    new, repeats, seen = [], [], set(ingested.checksums)
    for f in fresh:
        (repeats if f.sha256 in seen else new).append(f)
        seen.add(f.sha256)
    for f in new:
        if f.unreadable:
            log.warning("%s: not read, quarantined whole as one record (never tried again): %s", f.path, f.unreadable)
    facts = {"files_found": len(found), "files_new": len(new), "files_skipped": len(found) - len(new),
             "accepted": 0, "quarantined": 0, "duplicates": 0, "balance_failed": []}
    log_rows = [(f, "duplicate_file", None) for f in repeats]  # a re-delivery: logged, so never read again
    # A source never delivered still gets its (empty) bronze table: later stages read an empty source.
    if new or not lake.exists(source.bronze_table):
        totals, outcomes = ingest_files(spark, lake, conf, source, new)
        facts.update(totals)
        log_rows += outcomes
    if log_rows:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [
            (source.name, f.path, f.dt, f.size_bytes, f.modified_at, f.sha256, status, f.data_lines,
             *((int(c["read"]), int(c["accepted"]), int(c["quarantined"]), int(c["duplicates"])) if c is not None else (0, 0, 0, 0)),
             run_date, now)
            for f, status, c in log_rows
        ]
        lake.append(INGEST_LOG, spark.createDataFrame(rows, INGEST_LOG_SCHEMA), partition_by=["source"])
    return facts


@dataclass(frozen=True)
class IngestLog:
    """What the ingest log says of one source: files read (listing keys) and contents ingested (checksums)."""

    listed: frozenset
    checksums: frozenset

    @classmethod
    def of_sources(cls, lake: Lake) -> dict[str, "IngestLog"]:
        """Read bronze.ingest_log into one IngestLog per source (empty ones for sources never seen)."""
        listed: dict[str, set] = {name: set() for name in SOURCES}
        checksums: dict[str, set] = {name: set() for name in SOURCES}
        if lake.exists(INGEST_LOG):
            done = lake.read(INGEST_LOG).where(F.col("status").isin(*DONE_STATUSES))
            # One row per file ever delivered (not per record): small enough for the driver.
            for row in done.select("source", "path", "size_bytes", "modified_at", "sha256", "status").collect():
                listed.setdefault(row["source"], set()).add((row["path"], row["size_bytes"], row["modified_at"]))
                if row["status"] != "duplicate_file":
                    checksums.setdefault(row["source"], set()).add(row["sha256"])
        return {name: cls(frozenset(listed[name]), frozenset(checksums[name])) for name in listed}


def sources_not_seen(lake: Lake) -> list[str]:
    """Return the sources that have never delivered a file (the contract allows any to be absent)."""
    if not lake.exists(INGEST_LOG):
        return sorted(SOURCES)
    # One row per source: small.
    seen = {r["source"] for r in lake.read(INGEST_LOG).select("source").distinct().collect()}
    return sorted(set(SOURCES) - seen)


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Acquire every source for ``run_date``; return per-source counts.

    A file that does not balance is left out, logged in bronze.ingest_log as
    ``balance_failed`` and listed in the summary's ``failed`` (``file <path>`` -> why): every
    other file is committed and the later stages run, and the next run reads it again.
    """
    landing_root(conf.landing_root)   # a landing zone that is not there fails the run before anything is read
    lake = Lake(spark, conf)
    ingested = IngestLog.of_sources(lake)

    def acquired(source: Source) -> dict:
        with timed(log, f"acquire {source.name} up to {run_date}") as facts:
            facts.update(acquire_source(spark, lake, conf, source, run_date, ingested[source.name]))
        return dict(facts)

    # The sources share nothing but the tables every one appends to (the quarantine, the ingest
    # log), whose commits are retried against each other: they are acquired side by side, those
    # two tables created or brought up to the catalog's schema first, so that no source creates
    # or changes them under the others' commits.
    for shared in (QUARANTINE, INGEST_LOG):
        lake.ready_for_writers(shared)
    pieces = {name: partial(acquired, source) for name, source in SOURCES.items()}
    results = side_by_side(spark, pieces, lake.writers_at_once(conf.acquire.sources_at_once))
    failed = {f"file {path}": "does not balance (see bronze.ingest_log); read again by the next run" for name in SOURCES for path in results[name]["balance_failed"]}
    return {**results, "failed": failed}
