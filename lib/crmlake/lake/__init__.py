"""The lake: every stage reads and writes Delta tables through :class:`Lake`, nowhere else.

Tables are named ``layer.table`` (``bronze.orders``), declared in the table catalog
(``lib/crmlake/catalog.yaml``, see :mod:`crmlake.lake.catalog`) and located by conf. Every
write is checked against its declaration: an undeclared table or a column the catalog does
not list fails, columns are cast to the declared types, a declared column an older table
lacks is added to it (nullable: its earlier rows read null), and Delta keeps file statistics
only for the columns that hold no personal data. Two engines honour
one contract: ``rs`` (Spark writes Parquet, delta-rs commits; the default on local disk)
and ``spark`` (delta-spark; clusters with Delta's jars). ``lake.engine: auto`` picks
``spark`` when Delta's classes are on the JVM classpath, ``rs`` otherwise.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession

from crmlake.config import Conf
from crmlake.faults import crash_point
from crmlake.lake.catalog import Catalog, TableSpec, UndeclaredTableError, load_catalog
from crmlake.lake.errors import (
    EngineUnavailableError,
    LakeError,
    PredicateError,
    SchemaMismatchError,
    TableNotFoundError,
)
from crmlake.lake.frames import latest_per_key
from crmlake.lake.rs import RsEngine
from crmlake.lake.stats import STATS_COLUMNS
from crmlake.lake.spark_delta import SparkDeltaEngine, delta_spark_available
from crmlake.lake.types import ErasureResult, WriteId, WriteResult
from crmlake.log import get_logger
from crmlake.session import remove_stale_checkpoints

__all__ = [
    "Lake",
    "Snapshot",
    "Catalog",
    "TableSpec",
    "UndeclaredTableError",
    "load_catalog",
    "WriteId",
    "WriteResult",
    "ErasureResult",
    "LakeError",
    "TableNotFoundError",
    "SchemaMismatchError",
    "EngineUnavailableError",
    "PredicateError",
    "latest_per_key",
    "make_engine",
]

log = get_logger("lake")
ENGINES = ("auto", "rs", "spark")


def make_engine(spark: SparkSession, conf: Conf, engine: str | None = None):
    """Return the Delta engine named ``engine`` (auto, rs or spark; default: conf's
    ``lake.engine``) bound to ``spark``, sized by conf's ``lake.target_file_rows`` and
    ``lake.small_file_bytes``."""
    engine = conf.lake.engine if engine is None else engine
    if engine not in ENGINES:
        raise EngineUnavailableError(f"lake.engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = "spark" if delta_spark_available(spark) else "rs"
    cls = SparkDeltaEngine if engine == "spark" else RsEngine
    return cls(spark, target_file_rows=conf.lake.target_file_rows, small_file_bytes=conf.lake.small_file_bytes)


class Snapshot:
    """Versions of some tables pinned when a run starts, so the run reads one consistent state
    and knows exactly what it read (to resume from it next time)."""

    def __init__(self, lake: "Lake", versions: dict[str, int]):
        self.lake = lake
        self.versions = versions

    def read(self, table: str) -> DataFrame:
        """Read ``table`` as it was pinned; raise TableNotFoundError for a table that was not there."""
        if table not in self.versions:
            raise TableNotFoundError(f"{table}: no Delta table when the run started (has the stage that writes it run?)")
        return self.lake.read(table, self.versions[table])

    def read_added(self, table: str, since: int | None) -> DataFrame:
        """Read the rows committed to ``table`` after version ``since`` up to the pinned version."""
        return self.lake.read_added(table, since, self.versions[table])


class Lake:
    """The tables of one lake root: read, write modes, history and maintenance by table name.

    ``catalog`` declares the tables it may write (default: the library's catalog).
    """

    def __init__(self, spark: SparkSession, conf: Conf, catalog: Catalog | None = None):
        self.spark = spark
        self.conf = conf
        self.catalog = catalog or load_catalog()
        self.engine = make_engine(spark, conf)

    def path(self, table: str) -> str:
        """Return the location of ``layer.table``."""
        return self.conf.table(table)

    def exists(self, table: str) -> bool:
        """Return True when the table has been written."""
        return self.engine.exists(self.path(table))

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """Read the table's snapshot (current, or ``version``)."""
        return self.engine.read(self.path(table), version)

    def read_or_empty(self, table: str, schema=None) -> DataFrame:
        """Read the table, or an empty frame of ``schema`` (default: the declared columns)
        when it has never been written."""
        if self.exists(table):
            return self.read(table)
        return self.spark.createDataFrame([], schema or self.catalog.spec(table).ddl)

    def version(self, table: str) -> int:
        """Return the table's current version."""
        return self.engine.version(self.path(table))

    def read_added(self, table: str, since: int | None, until: int) -> DataFrame:
        """Read the rows committed after version ``since`` up to version ``until`` (all rows of
        ``until`` when ``since`` is None). Meant for append-only tables: a file rewritten in
        between (an erase, a compaction) comes back whole, so consumers must be idempotent."""
        return self.engine.read_added(self.path(table), since, until)

    def pin(self, tables: Sequence[str]) -> "Snapshot":
        """Pin the current versions of ``tables`` (those that exist): every read through the
        returned snapshot sees them, whatever is committed meanwhile."""
        return Snapshot(self, {t: self.version(t) for t in tables if self.exists(t)})

    def history(self, table: str, limit: int | None = None) -> list[dict]:
        """Return the table's commits, newest first."""
        return self.engine.history(self.path(table), limit)

    def files(self, table: str) -> list[dict]:
        """Return the table's current data files with size, rows and partition values."""
        return self.engine.files(self.path(table))

    def logged_rows(self, table: str) -> int | None:
        """Return the table's current rows as its Delta log's file statistics count them (no
        scan of the data): 0 when it has never been written, None when a file's count is not in
        the log."""
        if not self.exists(table):
            return 0
        counts = [f["num_records"] for f in self.files(table)]
        return None if None in counts else sum(counts)

    def _declared(self, table: str, df: DataFrame, partition_by: Sequence[str]) -> tuple[DataFrame, list[str], dict]:
        """Check a write against the catalog; return (df conformed, partitioning, table properties)."""
        spec = self.catalog.spec(table)
        if partition_by and tuple(partition_by) != spec.partition_by:
            raise SchemaMismatchError(f"table {table}: written partitioned by {list(partition_by)}, declared {list(spec.partition_by)} in lib/crmlake/catalog.yaml")
        history = f"interval {self.retention_hours(table) // 24} days"
        properties = {STATS_COLUMNS: ",".join(spec.stats_columns), "delta.logRetentionDuration": history, "delta.deletedFileRetentionDuration": history}
        return spec.conform(df), list(spec.partition_by), properties

    def _with_declared_columns(self, table: str, df: DataFrame) -> None:
        """Add to ``table``, when it exists, the declared columns ``df`` carries and the table
        lacks (a release that declares a new column): nullable, so its rows written before read
        them as null, and the write goes on, no rebuild needed. Columns named ``_*`` (a merge's
        helpers) are never written."""
        location = self.path(table)
        if not self.engine.exists(location):
            return
        present = set(self.engine.schema(location).fieldNames())
        missing = [f for f in df.schema.fields if f.name not in present and not f.name.startswith("_")]
        if missing:
            self.engine.add_columns(location, missing)
            log.info("%s: added the declared columns %s (earlier rows read them as null)", table, ", ".join(f.name for f in missing))

    def ready_for_writers(self, table: str) -> None:
        """Make ``table`` as its writers' commits expect it: created when absent (no rows, its
        declared schema and partitioning), else given the declared columns it lacks, as its next
        write would. Called before writers side by side append to one table, so that none of them
        creates it or changes its schema under the others' commits (a commit that changes a
        table's metadata fails the others' in flight: "Metadata changed since last commit")."""
        empty = self.spark.createDataFrame([], self.catalog.spec(table).ddl)
        if self.exists(table):
            self._with_declared_columns(table, empty)
        else:
            self.append(table, empty)

    def writers_at_once(self, wanted: int) -> int:
        """Return how many pieces of a stage may write this lake at once: ``wanted`` on an engine
        whose concurrent commits are safe (rs: each commit retried against the others, each write's
        result its own), else 1 (delta-spark: a write's result is read back from the table's
        history, and its merges set session-wide settings)."""
        return wanted if self.engine.concurrent_writes else 1

    def _logged(self, op: str, table: str, result: WriteResult) -> WriteResult:
        if result.committed:
            log.info("%s %s: v%s rows=%d files+%d files-%d", op, table, result.version, result.rows_written, result.files_added, result.files_removed)
        return result

    def append(self, table: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Add rows; a replayed ``txn`` commits nothing."""
        df, partition_by, properties = self._declared(table, df, partition_by)
        self._with_declared_columns(table, df)
        return self._logged("append", table, self.engine.append(self.path(table), df, partition_by, txn, properties))

    def overwrite(self, table: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Replace the whole table (schema and partitioning included)."""
        df, partition_by, properties = self._declared(table, df, partition_by)
        return self._logged("overwrite", table, self.engine.overwrite(self.path(table), df, partition_by, txn, properties))

    def overwrite_where(self, table: str, df: DataFrame, predicate: str, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Replace only the rows matching ``predicate`` (a rerun of one date, say) with ``df``."""
        df, partition_by, properties = self._declared(table, df, partition_by)
        self._with_declared_columns(table, df)
        return self._logged("overwrite_where", table, self.engine.overwrite_where(self.path(table), df, predicate, partition_by, txn, properties))

    def merge(self, table: str, df: DataFrame, keys: Sequence[str], order_by: str, delete_when: str | None = None, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Upsert by ``keys`` (latest ``order_by`` wins, ``df`` on a tie); rows matching ``delete_when``
        delete their key. Columns of ``df`` named ``_*`` serve ``delete_when`` and are not written."""
        df, partition_by, properties = self._declared(table, df, partition_by)
        declared_keys = self.catalog.spec(table).keys
        if declared_keys and tuple(keys) != declared_keys:
            raise SchemaMismatchError(f"table {table}: merged on {list(keys)}, declared keys {list(declared_keys)} in lib/crmlake/catalog.yaml")
        self._with_declared_columns(table, df)
        return self._logged("merge", table, self.engine.merge(self.path(table), df, keys, order_by, delete_when, partition_by, txn, properties))

    def erase(self, table: str, subject: DataFrame, condition: Column, blank: Sequence[str] = (), committed: Callable[[int], None] | None = None) -> ErasureResult:
        """Remove the rows for which ``condition`` holds against the one-row frame ``subject``
        (or, with ``blank``, set those columns to null on them), then delete every file of the
        table its log does not list, whatever this call matched: the files the rewrite removed,
        those of an erase killed between its rewrite and this vacuum (its rerun matches
        nothing), and those a killed writer moved into the table but never committed.

        ``subject`` carries the values looked for as data (arrays of identifiers, say) and
        ``condition`` compares the table's columns with its columns: no value is ever written
        into predicate text, so none needs quoting and none reaches the Delta log.
        ``committed`` (rows erased -> None) is called once the rewrite is committed, before
        the vacuum: where a caller records its progress (an erasure's plan), so that a run
        killed in between still knows what the rewrite removed. Returns the rows erased and
        the data files deleted from disk. Time travel to versions before the erase is lost
        for this table: that is the point. The caller holds the lake's lease
        (:mod:`crmlake.lease`), so no other writer's files are in flight.
        """
        if not self.exists(table):
            return ErasureResult(table, 0)
        location = self.path(table)
        # One scan of the table finds the rows, and the files holding them, which are rewritten.
        result = self.engine.erase_rows(location, subject, condition, blank)
        matched = result.rows_matched if result.committed else 0
        if result.committed:
            self._logged("erase", table, result)
            if committed is not None:
                committed(matched)
            crash_point("erase.table_committed")
        removed = self.engine.vacuum(location, 0)
        return ErasureResult(table, matched, tuple(sorted(os.path.relpath(p, location) if os.path.isabs(p) else p for p in removed)))

    def remove_leftovers(self) -> dict:
        """Delete what killed runs left behind: every table's staged files never committed and
        every checkpoint folder but this application's (both may hold identifiers); return how
        many folders of each went. Only the holder of the lake's lease calls it (at the start
        of a run, and in an erasure), so no live writer's files are among them."""
        staging = sum(self.engine.remove_staging(self.path(t)) for t in self.catalog.tables if self.exists(t))
        return {"staging_folders": staging, "checkpoint_folders": remove_stale_checkpoints(self.spark, self.conf.checkpoint_root)}

    def optimize(self, table: str) -> WriteResult:
        """Compact small files, partition by partition: a partition's files under
        ``lake.small_file_bytes``, when it has two or more, are rewritten together into files
        a write would make; larger files are left alone."""
        return self._logged("optimize", table, self.engine.optimize(self.path(table)))

    def retention_hours(self, table: str) -> int:
        """Return how long ``table`` keeps history: its layer's ``lake.retention_days``, in hours."""
        layer = self.catalog.spec(table).layer
        return getattr(self.conf.lake.retention_days, layer) * 24

    def vacuum(self, table: str, retention_hours: int | None = None) -> list[str]:
        """Delete unreferenced files older than the retention (default: the table's layer's
        ``lake.retention_days``); return their paths."""
        return self.engine.vacuum(self.path(table), self.retention_hours(table) if retention_hours is None else retention_hours)

    def maintain(self, table: str) -> dict:
        """Compact ``table``, then delete the files and log entries older than its retention;
        return what was done (files compacted, files deleted)."""
        compacted = self.optimize(table)
        deleted = self.vacuum(table)
        expired = self.engine.expire_log(self.path(table))
        return {"files_compacted": compacted.files_removed, "files_deleted": len(deleted), "log_entries_deleted": expired}
