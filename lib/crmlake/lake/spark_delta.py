"""The ``spark`` engine: delta-spark, for clusters and Databricks where Delta's jars are present.

Idempotent writes use Delta's session-level transaction identifiers
(``spark.databricks.delta.write.txnAppId`` / ``txnVersion``), which every Delta DML honours.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from crmlake.lake.errors import EngineUnavailableError, TableNotFoundError
from crmlake.lake.frames import balanced_for_write, latest_per_key, with_delete_flag
from crmlake.lake.types import WriteId, WriteResult
from crmlake.lease import fence

TXN_APP = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"
OPTIMIZE_MIN_FILE_SIZE = "spark.databricks.delta.optimize.minFileSize"  # OPTIMIZE compacts files smaller than this
# MERGE: Delta's optimized write shuffles the rows into bins by partition before writing (a big
# partition over several tasks, small ones sharing one) instead of one task per partition value.
OPTIMIZE_WRITE = "spark.databricks.delta.optimizeWrite.enabled"


def delta_spark_available(spark: SparkSession) -> bool:
    """Return True when Delta's Spark classes are on the JVM classpath."""
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # noqa: SLF001 - the only way to ask the JVM
        return True
    except Exception:  # noqa: BLE001 - py4j raises its own error types
        return False


class SparkDeltaEngine:
    """Delta tables through delta-spark; the same contract as the rs engine."""

    name = "spark"
    concurrent_writes = False   # a write's result is read from the table's history; merges set session-wide settings

    def __init__(self, spark: SparkSession, target_file_rows: int, small_file_bytes: int):
        if not delta_spark_available(spark):
            raise EngineUnavailableError(
                "lake.engine=spark needs Delta's jars on the classpath "
                "(spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.1); use lake.engine=rs on local disk"
            )
        from delta.tables import DeltaTable

        self.spark = spark
        self.DeltaTable = DeltaTable
        self.target_file_rows = int(target_file_rows)
        self.small_file_bytes = int(small_file_bytes)

    @contextmanager
    def _session_conf(self, settings: Mapping[str, str]) -> Iterator[None]:
        """Set Delta's session ``settings`` for one operation, then put back what was there."""
        before = {key: self.spark.conf.get(key, None) for key in settings}
        for key, value in settings.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, value in before.items():
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)

    def _txn(self, txn: WriteId | None, settings: Mapping[str, str] | None = None):
        """Session settings of one idempotent write ``txn`` (none when None), plus ``settings``."""
        return self._session_conf({**({TXN_APP: txn.app_id, TXN_VERSION: str(txn.version)} if txn else {}), **(settings or {})})

    def _result(self, location: str, before: int | None) -> WriteResult:
        after = self.version(location)
        if before is not None and after == before:
            return WriteResult.skipped()
        metrics = self.history(location, 1)[0].get("operationMetrics") or {}
        return WriteResult(
            True,
            after,
            int(metrics.get("numOutputRows", 0) or 0),
            int(metrics.get("numFiles", metrics.get("numAddedFiles", 0)) or 0),
            int(metrics.get("numRemovedFiles", 0) or 0),
            # rows a DELETE, UPDATE or (an erase's) MERGE matched
            sum(int(metrics.get(k, 0) or 0) for k in ("numDeletedRows", "numUpdatedRows", "numTargetRowsDeleted", "numTargetRowsUpdated")),
        )

    def exists(self, location: str) -> bool:
        """Return True when ``location`` holds a Delta table."""
        return self.DeltaTable.isDeltaTable(self.spark, location)

    def _table(self, location: str):
        if not self.exists(location):
            raise TableNotFoundError(f"no Delta table at {location} (has the stage that writes it run?)")
        return self.DeltaTable.forPath(self.spark, location)

    def schema(self, location: str) -> StructType:
        """Return the table's schema."""
        return self._table(location).toDF().schema

    def add_columns(self, location: str, fields: Sequence[StructField]) -> None:
        """Add ``fields`` (nullable) to the table's schema (names and types from the catalog, never data)."""
        self._table(location)
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in fields)
        self.spark.sql(f"ALTER TABLE delta.`{location}` ADD COLUMNS ({columns})")

    def version(self, location: str) -> int:
        """Return the table's current version."""
        return int(self._table(location).history(1).select("version").first()[0])

    def read(self, location: str, version: int | None = None) -> DataFrame:
        """Read the table (current, or ``version``)."""
        self._table(location)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(location)

    def read_added(self, location: str, since: int | None, until: int) -> DataFrame:
        """Read the rows of the data files in version ``until`` that version ``since`` did not
        have (every row of ``until`` when ``since`` is None): what was committed in between."""
        snapshot = self.read(location, until)
        if since is None:
            return snapshot
        before = set(self.read(location, since).inputFiles())  # the snapshot's file list: metadata only
        added = [path for path in snapshot.inputFiles() if path not in before]
        return snapshot.where(F.col("_metadata.file_path").isin(*added)) if added else snapshot.limit(0)

    def history(self, location: str, limit: int | None = None) -> list[dict]:
        """Return the commit history, newest first."""
        frame = self._table(location).history(limit) if limit else self._table(location).history()
        return [row.asDict(recursive=True) for row in frame.collect()]  # small: one row per commit

    def transaction_version(self, location: str, app_id: str) -> int | None:
        """Return the latest committed version of transaction ``app_id`` (None if never)."""
        if not self.exists(location):
            return None
        jvm = self.spark._jvm  # noqa: SLF001
        none = getattr(getattr(jvm.scala, "None$"), "MODULE$")
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, location)  # noqa: SLF001
        snapshot = delta_log.update(False, none, none)
        found = snapshot.transactions().get(app_id)
        return int(found.get()) if found.isDefined() else None

    def files(self, location: str) -> list[dict]:
        """Return the current data files: path, size, rows (unknown here), partition values."""
        detail = self.spark.read.format("delta").load(location)
        return [{"path": p, "size_bytes": None, "num_records": None, "partition_values": {}} for p in detail.inputFiles()]

    def _write(self, df: DataFrame, location: str, mode: str, partition_by: Sequence[str], txn: WriteId | None, **options) -> WriteResult:
        before = self.version(location) if self.exists(location) else None
        writer = balanced_for_write(df, partition_by).write.format("delta").mode(mode).option("maxRecordsPerFile", self.target_file_rows)
        for key, value in options.items():
            writer = writer.option(key, value)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        fence(location)
        with self._txn(txn):
            writer.save(location)
        return self._result(location, before)

    def append(self, location: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Add ``df``'s rows to the table (``delta.*`` ``properties`` become table properties on creation)."""
        return self._write(df, location, "append", partition_by, txn, **dict(properties or {}))

    def overwrite(self, location: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Replace the whole table, schema and ``properties`` included."""
        return self._write(df, location, "overwrite", partition_by, txn, overwriteSchema="true", **dict(properties or {}))

    def overwrite_where(self, location: str, df: DataFrame, predicate: str, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Replace the rows matching ``predicate`` with ``df``."""
        if not self.exists(location):
            return self.append(location, df, partition_by, txn, properties)
        return self._write(df, location, "overwrite", partition_by, txn, replaceWhere=predicate)

    def erase_rows(self, location: str, subject: DataFrame, condition: Column, blank: Sequence[str] = ()) -> WriteResult:
        """Remove the rows for which ``condition`` holds against the one-row frame ``subject``
        (or, with ``blank``, set those columns to null on them); ``rows_matched`` counts them.

        A MERGE with ``subject`` as its source, not a DELETE or UPDATE: Delta writes a
        DELETE's or UPDATE's condition into ``_delta_log`` as text, values included, while a
        MERGE logs only its join condition, which names the subject's columns, not its values.
        """
        before = self.version(location)
        merge = self._table(location).alias("t").merge(F.broadcast(subject).alias("s"), condition)
        merge = merge.whenMatchedUpdate(set={f"`{c}`": F.lit(None) for c in blank}) if blank else merge.whenMatchedDelete()
        fence(location)
        merge.execute()
        return self._result(location, before)

    def merge(self, location: str, df: DataFrame, keys: Sequence[str], order_by: str, delete_when: str | None = None, partition_by: Sequence[str] = (), txn: WriteId | None = None, properties: Mapping[str, str] | None = None) -> WriteResult:
        """Upsert by ``keys``, latest ``order_by`` wins; source rows matching ``delete_when`` delete."""
        source = latest_per_key(with_delete_flag(df, delete_when), keys, order_by)
        if not self.exists(location):
            return self.append(location, source.where("NOT _delete").drop("_delete"), partition_by, txn, properties)
        columns = self.schema(location).fieldNames()
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        newer = f"s.`{order_by}` >= t.`{order_by}` OR t.`{order_by}` IS NULL"
        assignments = {f"`{c}`": f"s.`{c}`" for c in columns}
        before = self.version(location)
        fence(location)
        with self._txn(txn, {OPTIMIZE_WRITE: "true"}):
            (
                self._table(location).alias("t").merge(source.alias("s"), on)
                .whenMatchedDelete(condition=f"s._delete AND ({newer})")
                .whenMatchedUpdate(condition=f"NOT s._delete AND ({newer})", set=assignments)
                .whenNotMatchedInsert(condition="NOT s._delete", values=assignments)
                .execute()
            )
        return self._result(location, before)

    def optimize(self, location: str) -> WriteResult:
        """Compact small files (Delta's OPTIMIZE, bin-packing each partition's files under
        ``small_file_bytes``; larger files are left alone, as on the rs engine)."""
        before = self.version(location)
        fence(location)
        with self._session_conf({OPTIMIZE_MIN_FILE_SIZE: str(self.small_file_bytes)}):
            self._table(location).optimize().executeCompaction()
        return self._result(location, before)

    def expire_log(self, location: str) -> int:
        """Delta itself deletes log entries older than ``delta.logRetentionDuration`` when it
        writes a checkpoint: nothing to do here; returns 0."""
        return 0

    def remove_staging(self, location: str) -> int:
        """delta-spark stages nothing outside the table (its uncommitted files are vacuumed): returns 0."""
        return 0

    def vacuum(self, location: str, retention_hours: int) -> list[str]:
        """Delete files no longer in the table older than the retention (Delta's VACUUM is always full)."""
        hours = int(retention_hours)  # the table's layer's retention (Lake.vacuum), 0 for an erase
        fence(location)
        self._table(location).vacuum(float(hours))
        return []
