"""The ``rs`` engine: Spark writes Parquet, the driver commits with delta-rs (``deltalake``).

How a write works, and why it is safe to kill at any point:

1. Spark writes the data files in parallel into ``<table>/_staging/<write id>/``
   (Hive-style partition directories, a few files per partition).
2. The driver moves them into the table's partition directories. Until the commit they
   are stray files: readers go through the table's snapshot, never a directory listing,
   so they are invisible, and ``vacuum`` removes them later.
3. The driver reads each file's Parquet footer for Delta statistics and commits all
   add (and, for rewrites, remove) actions in one Delta transaction. A write that carries
   a transaction id (app id, version) that the table has already seen commits nothing.

A process killed before step 3 leaves the table at its previous version.
Rewrites (merge, overwrite-where, erase, optimize) replace whole files: the files holding
affected rows are removed and their surviving rows written again, in the same commit.

This module holds the engine's operations (reading, the write modes, rewrites,
maintenance); the steps every write is made of (staging, add and remove actions, the
commit) are in :mod:`crmlake.lake.rs_commit`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.parse
from dataclasses import replace
from typing import Mapping, Sequence

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.transaction import create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from crmlake.lake.errors import PredicateError, TableNotFoundError
from crmlake.lake.frames import conform_to_schema, latest_per_key, nullable_schema, with_delete_flag
from crmlake.lake.rs_commit import (
    STAGING, StagedFile, add_actions, commit, commit_properties, file_uri, local_table_path, partition_text, remove_actions, stage_files,
)
from crmlake.lake.stats import STATS_COLUMNS
from crmlake.lake.types import WriteId, WriteResult
from crmlake.lease import fence
from crmlake.log import get_logger

log = get_logger("lake.rs")


def _names_only(predicate: str, allowed: Sequence[str], columns: Sequence[str]) -> bool:
    """Return True when the SQL ``predicate`` names no column of ``columns`` outside ``allowed``."""
    without_literals = re.sub(r"'(?:[^'\\]|\\.)*'", " ", predicate)
    named = {token.strip("`").lower() for token in re.findall(r"`[^`]+`|[A-Za-z_][A-Za-z0-9_]*", without_literals)}
    return not (named & {c.lower() for c in columns if c not in allowed})


class RsEngine:
    """Delta tables on local disk: Spark for data files, delta-rs for the transaction log."""

    name = "rs"
    concurrent_writes = True   # each commit is retried against the others, and a write's result is its own

    def __init__(self, spark: SparkSession, target_file_rows: int, small_file_bytes: int):
        self.spark = spark
        self.target_file_rows = int(target_file_rows)
        self.small_file_bytes = int(small_file_bytes)

    # ----------------------------------------------------------------- reading
    def exists(self, location: str) -> bool:
        """Return True when ``location`` holds a Delta table."""
        return DeltaTable.is_deltatable(local_table_path(location))

    def _table(self, location: str, version: int | None = None) -> DeltaTable:
        path = local_table_path(location)
        if not DeltaTable.is_deltatable(path):
            raise TableNotFoundError(f"no Delta table at {location} (has the stage that writes it run?)")
        return DeltaTable(path, version=version)

    def schema(self, location: str) -> StructType:
        """Return the table's schema as a Spark StructType (Delta's schema JSON is Spark's)."""
        return StructType.fromJson(self._table(location).schema().json())

    def version(self, location: str) -> int:
        """Return the table's current version."""
        return self._table(location).version()

    def add_columns(self, location: str, fields: Sequence[StructField]) -> None:
        """Add ``fields`` (nullable) to the table's schema in one commit that adds no file."""
        table = self._table(location)
        schema = StructType(self.schema(location).fields + [StructField(f.name, f.dataType, True) for f in fields])
        empty = pa.schema(DeltaSchema.from_json(schema.json()).to_arrow()).empty_table()
        write_deltalake(local_table_path(location), empty, mode="append", schema_mode="merge",
                        partition_by=list(table.metadata().partition_columns) or None)

    def read(self, location: str, version: int | None = None) -> DataFrame:
        """Read the table's snapshot (current, or ``version``) as a DataFrame."""
        table = self._table(location, version)
        return self._read_files(location, table, table.file_uris())

    def read_added(self, location: str, since: int | None, until: int) -> DataFrame:
        """Read the rows of the data files in version ``until`` that version ``since`` did not
        have (every row of ``until`` when ``since`` is None): what was committed in between."""
        table = self._table(location, until)
        before = set(self._table(location, since).file_uris()) if since is not None else set()
        added = [uri for uri in table.file_uris() if uri not in before]
        return self._read_files(location, table, added)

    def _read_files(self, location: str, table: DeltaTable, files: list[str]) -> DataFrame:
        schema = StructType.fromJson(table.schema().json())
        if not files:
            return self.spark.createDataFrame([], schema)
        return (
            self.spark.read.schema(schema)
            .option("basePath", file_uri(local_table_path(location)))
            .parquet(*files)
            .select(*schema.fieldNames())
        )

    def history(self, location: str, limit: int | None = None) -> list[dict]:
        """Return the commit history, newest first (version, timestamp, operation, metadata)."""
        return self._table(location).history(limit)

    def transaction_version(self, location: str, app_id: str) -> int | None:
        """Return the latest committed version of transaction ``app_id`` (None if never)."""
        if not self.exists(location):
            return None
        return self._table(location).transaction_version(app_id)

    def files(self, location: str) -> list[dict]:
        """Return the current data files: path (relative), size, rows, partition values."""
        actions = pa.table(self._table(location).get_add_actions(flatten=True)).to_pylist()
        return [
            {
                "path": a["path"],
                "size_bytes": a["size_bytes"],
                "num_records": a.get("num_records"),
                "partition_values": {
                    k[len("partition."):]: partition_text(v) for k, v in a.items() if k.startswith("partition.")
                },
            }
            for a in actions
        ]

    # ----------------------------------------------------------------- writing
    def _already_done(self, location: str, txn: WriteId | None) -> bool:
        if txn is None:
            return False
        seen = self.transaction_version(location, txn.app_id)
        if seen is not None and seen >= txn.version:
            log.info("%s: write %s v%d already committed; nothing to do", location, txn.app_id, txn.version)
            return True
        return False

    def _stage(self, df: DataFrame, location: str, partition_by: Sequence[str]) -> list[StagedFile]:
        """Stage ``df``'s files in the table (:func:`crmlake.lake.rs_commit.stage_files`)."""
        return stage_files(df, location, partition_by, self.target_file_rows)

    def _stats_columns(self, location: str, properties: Mapping[str, str] | None) -> set | None:
        """Return the columns to keep statistics for: ``delta.dataSkippingStatsColumns`` of the
        write's ``properties``, else of the table; None (all columns) when neither says."""
        configuration = dict(properties or {})
        if STATS_COLUMNS not in configuration and self.exists(location):
            configuration = self._table(location).metadata().configuration
        listed = configuration.get(STATS_COLUMNS)
        return None if listed is None else {c.strip() for c in listed.split(",") if c.strip()}

    def _table_layout(self, location: str, df: DataFrame, partition_by: Sequence[str]) -> tuple[StructType, list[str], DataFrame]:
        """Return (schema, partition columns, df conformed) for a write to a new or existing table."""
        if self.exists(location):
            table = self._table(location)
            schema = StructType.fromJson(table.schema().json())
            return schema, list(table.metadata().partition_columns), conform_to_schema(df, schema, location)
        return nullable_schema(df.schema), list(partition_by), df

    def append(self, location: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Add ``df``'s rows to the table (created on first write, partitioned by ``partition_by``,
        with table ``properties``)."""
        if self._already_done(location, txn):
            return WriteResult.skipped()
        schema, partitions, df = self._table_layout(location, df, partition_by)
        adds, rows = add_actions(self._stage(df, location, partitions), self._stats_columns(location, properties))
        version = commit(location, schema, adds, "append", partitions, txn, "append", properties)
        return WriteResult(True, version, rows, len(adds), 0)

    def overwrite(self, location: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Replace the whole table with ``df``, schema, partitioning and ``properties`` included (one commit)."""
        if self._already_done(location, txn):
            return WriteResult.skipped()
        existed = self.exists(location)
        removed = len(self.files(location)) if existed else 0
        adds, rows = add_actions(self._stage(df, location, list(partition_by)), self._stats_columns(location, properties))
        fence(location)
        create_table_with_add_actions(
            local_table_path(location),
            DeltaSchema.from_json(nullable_schema(df.schema).json()),
            adds,
            mode="overwrite" if existed else "error",
            partition_by=list(partition_by) or None,
            configuration=properties,
            commit_properties=commit_properties("overwrite", txn),
        )
        return WriteResult(True, self.version(location), rows, len(adds), removed)

    # --------------------------------------------------------------- rewriting
    def _read_with_file(self, location: str) -> DataFrame:
        """Read the table with each row's data file URI in ``_file`` (set before any join)."""
        return self.read(location).withColumn("_file", F.input_file_name())

    def _file_entries(self, location: str, hits: DataFrame) -> list[dict]:
        """Map the ``_file`` URIs of ``hits`` back to the table's file entries, each with the
        number of rows of ``hits`` it holds in ``rows_hit``."""
        root = local_table_path(location)
        by_abs = {os.path.realpath(os.path.join(root, urllib.parse.unquote(f["path"]))): f for f in self.files(location)}
        # Safe to collect: one row per data file hit, never per record.
        hit_counts = {os.path.realpath(urllib.parse.unquote(urllib.parse.urlparse(r["_file"]).path)): r["count"] for r in hits.groupBy("_file").count().collect()}
        return [{**by_abs[p], "rows_hit": hit_counts[p]} for p in sorted(hit_counts) if p in by_abs]

    def _files_matching(self, location: str, predicate: str) -> list[dict]:
        """Return the current files holding at least one row that matches ``predicate``, each
        with the number of those rows in ``rows_hit``.

        A predicate over partition columns only is answered from the log alone (every row of
        a matching file matches: its ``num_records``); any other by one scan of the table.
        """
        files = self.files(location)
        partition_cols = sorted({k for f in files for k in f["partition_values"]})
        if files and partition_cols and _names_only(predicate, partition_cols, self.schema(location).fieldNames()):
            schema = self.schema(location)
            rows = [tuple(f["partition_values"].get(c) for c in partition_cols) + (f["path"],) for f in files]
            by_partition = self.spark.createDataFrame(rows, [*partition_cols, "_path"]).select(
                *[F.col(c).cast(schema[c].dataType).alias(c) for c in partition_cols], "_path"
            )
            # Safe to collect: one row per file of the table's log.
            matched = {r["_path"] for r in by_partition.where(predicate).select("_path").collect()}
            return [{**f, "rows_hit": f["num_records"]} for f in files if f["path"] in matched]
        if not files:
            return []
        return self._file_entries(location, self._read_with_file(location).where(predicate))

    def read_files(self, location: str, files: list[dict]) -> DataFrame:
        """Read only the given data files of the table (as listed by :meth:`files`)."""
        schema = self.schema(location)
        root = local_table_path(location)
        if not files:
            return self.spark.createDataFrame([], schema)
        uris = [file_uri(os.path.join(root, urllib.parse.unquote(f["path"]))) for f in files]
        return self.spark.read.schema(schema).option("basePath", file_uri(root)).parquet(*uris).select(*schema.fieldNames())

    def _rewrite(self, location: str, remove_files: list[dict], new_rows: DataFrame, txn: WriteId | None, operation: str) -> WriteResult:
        """Commit ``new_rows`` as new files and remove ``remove_files``, in one transaction."""
        schema = self.schema(location)
        partitions = list(self._table(location).metadata().partition_columns)
        # Files are staged before the commit, so new_rows may read the very files it removes.
        staged = self._stage(conform_to_schema(new_rows, schema, location), location, partitions)
        adds, rows = add_actions(staged, self._stats_columns(location, None))
        removes = remove_actions(remove_files)
        if not adds and not removes:
            return WriteResult(False, self.version(location), 0, 0, 0)
        version = commit(location, schema, adds + removes, "append", partitions, txn, operation)
        return WriteResult(True, version, rows, len(adds), len(removes))

    def overwrite_where(self, location: str, df: DataFrame, predicate: str, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Replace the rows matching ``predicate`` with ``df`` (whose rows must all match it)."""
        if not self.exists(location):
            return self.append(location, df, partition_by, txn, properties)
        if self._already_done(location, txn):
            return WriteResult.skipped()
        if df.where(f"NOT coalesce(({predicate}), false)").limit(1).count():
            raise PredicateError(f"table {location}: rows to write do not all match the replace predicate {predicate!r}")
        affected = self._files_matching(location, predicate)
        kept = self.read_files(location, affected).where(f"NOT coalesce(({predicate}), false)")
        new_rows = kept.unionByName(conform_to_schema(df, self.schema(location), location))
        return self._rewrite(location, affected, new_rows, txn, "overwrite_where")

    def erase_rows(self, location: str, subject: DataFrame, condition: Column, blank: Sequence[str] = ()) -> WriteResult:
        """Remove the rows for which ``condition`` holds against the one-row frame ``subject``
        (or, with ``blank``, set those columns to null on them), rewriting the files that hold
        them; ``rows_matched`` counts those rows.

        The subject's values travel as data in ``subject`` (broadcast beside each row), never
        as text in a predicate, so no value needs quoting and none reaches the Delta log.
        """
        matches = F.coalesce(condition, F.lit(False))
        affected = self._file_entries(location, self._read_with_file(location).crossJoin(F.broadcast(subject)).where(matches))
        if not affected:
            return WriteResult(False, self.version(location), 0, 0, 0)
        rows = self.read_files(location, affected)
        hit = rows.crossJoin(F.broadcast(subject)).withColumn("_erase_hit", matches)
        if blank:
            kept = hit.select(*[F.when(F.col("_erase_hit"), F.lit(None)).otherwise(F.col(c)).alias(c) if c in blank else F.col(c) for c in rows.columns])
        else:
            kept = hit.where(~F.col("_erase_hit")).select(*rows.columns)
        return replace(self._rewrite(location, affected, kept, None, "erase"), rows_matched=sum(f["rows_hit"] for f in affected))

    def merge(
        self,
        location: str,
        df: DataFrame,
        keys: Sequence[str],
        order_by: str,
        delete_when: str | None = None,
        partition_by: Sequence[str] = (),
        txn: WriteId | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Upsert ``df`` by ``keys``: per key the row with the latest ``order_by`` wins.

        Rows of ``df`` matching ``delete_when`` (a SQL predicate over ``df``) delete their key
        when they are the latest. Only the files holding affected keys are rewritten.
        """
        if self._already_done(location, txn):
            return WriteResult.skipped()
        source = latest_per_key(with_delete_flag(df, delete_when), keys, order_by)
        if not self.exists(location):
            inserts = source.where("NOT _delete").drop("_delete")
            return self.append(location, inserts, partition_by, txn, properties)
        schema = self.schema(location)
        source = conform_to_schema(source, schema, location, keep=["_delete"])
        source = source.withColumn("_from_source", F.lit(1)).cache()
        try:
            candidates = self._files_for_keys(location, source, keys)
            touched = self.read_files(location, candidates).withColumn("_file", F.input_file_name())
            touched = touched.join(source.select(*keys).distinct(), list(keys), "left_semi")
            affected = self._file_entries(location, touched)
            existing = self.read_files(location, affected).withColumn("_delete", F.lit(False)).withColumn("_from_source", F.lit(0))
            winners = latest_per_key(existing.unionByName(source), keys, order_by, tie_breaker="_from_source")
            new_rows = winners.where("NOT _delete").drop("_delete", "_from_source")
            return self._rewrite(location, affected, new_rows, txn, "merge")
        finally:
            source.unpersist()

    def _files_for_keys(self, location: str, source: DataFrame, keys: Sequence[str]) -> list[dict]:
        """Return the files that may hold ``source``'s keys.

        When every partition column is part of the key, a key cannot live outside its own
        partition, so only the partitions present in ``source`` are scanned.
        """
        files = self.files(location)
        partitions = list(self._table(location).metadata().partition_columns)
        if not partitions or not set(partitions) <= set(keys):
            return files
        # Safe to collect: one row per partition value the change touches.
        wanted = {tuple(partition_text(r[c]) for c in partitions) for r in source.select(*partitions).distinct().collect()}
        return [f for f in files if tuple(f["partition_values"].get(c) for c in partitions) in wanted]

    def optimize(self, location: str) -> WriteResult:
        """Compact small files: in each partition holding two or more files under
        ``small_file_bytes``, those files are rewritten together, as a write lays them out (one
        file for a small day); larger files are left alone. Commits nothing when no partition
        has two small files."""
        small_by_partition: dict = {}
        for f in self.files(location):
            if f["size_bytes"] < self.small_file_bytes:
                small_by_partition.setdefault(tuple(sorted(f["partition_values"].items())), []).append(f)
        small = [f for group in small_by_partition.values() if len(group) >= 2 for f in group]
        if not small:
            return WriteResult(False, self.version(location), 0, 0, 0)
        return self._rewrite(location, small, self.read_files(location, small), None, "optimize")

    # ------------------------------------------------------------- maintenance
    def expire_log(self, location: str) -> int:
        """Checkpoint the log and delete the log entries older than the table's
        ``delta.logRetentionDuration``; return how many were deleted."""
        table = self._table(location)
        table.create_checkpoint()
        return table.cleanup_metadata() or 0

    def remove_staging(self, location: str) -> int:
        """Delete every folder of the table's staging area (writes never committed); return how many."""
        fence(location)
        staging = os.path.join(local_table_path(location), STAGING)
        entries = list(os.scandir(staging)) if os.path.isdir(staging) else []
        for entry in entries:
            shutil.rmtree(entry.path, ignore_errors=True)
        return len(entries)

    def vacuum(self, location: str, retention_hours: int) -> list[str]:
        """Delete files no longer in the table older than the retention; return their paths.

        Files never committed (left by killed writers: moved into the table, not yet in its
        log) go too. Only the lease's holder vacuums, so no live writer's files are among them.
        """
        hours = int(retention_hours)  # the table's layer's retention (Lake.vacuum), 0 for an erase
        fence(location)
        table = self._table(location)
        deleted = table.vacuum(retention_hours=hours, enforce_retention_duration=False, dry_run=False, full=True)
        staging = os.path.join(local_table_path(location), STAGING)
        cutoff = time.time() - hours * 3600
        if os.path.isdir(staging):
            for entry in os.scandir(staging):
                if entry.stat().st_mtime <= cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    deleted.append(entry.path)
        return list(deleted)
