"""The lake: every stage reads and writes Delta tables through :class:`Lake`, nowhere else.

Tables are named ``layer.table`` (``bronze.orders``) and located by conf. Two engines honour
one contract: ``rs`` (Spark writes Parquet, delta-rs commits; the default on local disk)
and ``spark`` (delta-spark; clusters with Delta's jars). ``lake.engine: auto`` picks
``spark`` when Delta's classes are on the JVM classpath, ``rs`` otherwise.
"""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame, SparkSession

from crmlake.config import Conf
from crmlake.lake.errors import (
    EngineUnavailableError,
    LakeError,
    PredicateError,
    SchemaMismatchError,
    TableNotFoundError,
)
from crmlake.lake.frames import latest_per_key
from crmlake.lake.rs import RsEngine
from crmlake.lake.spark_delta import SparkDeltaEngine, delta_spark_available
from crmlake.lake.types import WriteId, WriteResult
from crmlake.log import get_logger

__all__ = [
    "Lake",
    "Snapshot",
    "WriteId",
    "WriteResult",
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


def make_engine(spark: SparkSession, engine: str = "auto", target_file_rows: int = 1_000_000, retention_hours: int = 168):
    """Return the Delta engine named ``engine`` (auto, rs or spark) bound to ``spark``."""
    if engine not in ENGINES:
        raise EngineUnavailableError(f"lake.engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = "spark" if delta_spark_available(spark) else "rs"
    cls = SparkDeltaEngine if engine == "spark" else RsEngine
    return cls(spark, target_file_rows=target_file_rows, retention_hours=retention_hours)


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
    """The tables of one lake root: read, write modes, history and maintenance by table name."""

    def __init__(self, spark: SparkSession, conf: Conf):
        self.spark = spark
        self.conf = conf
        self.engine = make_engine(
            spark,
            str(conf.get("lake.engine", "auto")),
            int(conf.get("lake.target_file_rows", 1_000_000)),
            int(conf.get("lake.retention_hours", 168)),
        )

    def path(self, table: str) -> str:
        """Return the location of ``layer.table``."""
        return self.conf.table(table)

    def exists(self, table: str) -> bool:
        """Return True when the table has been written."""
        return self.engine.exists(self.path(table))

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """Read the table's snapshot (current, or ``version``)."""
        return self.engine.read(self.path(table), version)

    def read_or_empty(self, table: str, schema) -> DataFrame:
        """Read the table, or an empty frame of ``schema`` when it has never been written."""
        if self.exists(table):
            return self.read(table)
        return self.spark.createDataFrame([], schema)

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

    def _logged(self, op: str, table: str, result: WriteResult) -> WriteResult:
        if result.committed:
            log.info("%s %s: v%s rows=%d files+%d files-%d", op, table, result.version, result.rows_written, result.files_added, result.files_removed)
        return result

    def append(self, table: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Add rows; a replayed ``txn`` commits nothing."""
        return self._logged("append", table, self.engine.append(self.path(table), df, partition_by, txn))

    def overwrite(self, table: str, df: DataFrame, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Replace the whole table (schema and partitioning included)."""
        return self._logged("overwrite", table, self.engine.overwrite(self.path(table), df, partition_by, txn))

    def overwrite_where(self, table: str, df: DataFrame, predicate: str, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Replace only the rows matching ``predicate`` (a rerun of one date, say) with ``df``."""
        return self._logged("overwrite_where", table, self.engine.overwrite_where(self.path(table), df, predicate, partition_by, txn))

    def merge(self, table: str, df: DataFrame, keys: Sequence[str], order_by: str, delete_when: str | None = None, partition_by: Sequence[str] = (), txn: WriteId | None = None) -> WriteResult:
        """Upsert by ``keys`` (latest ``order_by`` wins, ``df`` on a tie); rows matching ``delete_when``
        delete their key. Columns of ``df`` named ``_*`` serve ``delete_when`` and are not written."""
        return self._logged("merge", table, self.engine.merge(self.path(table), df, keys, order_by, delete_when, partition_by, txn))

    def delete(self, table: str, predicate: str, txn: WriteId | None = None) -> WriteResult:
        """Remove the rows matching ``predicate`` (old files stay until vacuum)."""
        return self._logged("delete", table, self.engine.delete(self.path(table), predicate, txn))

    def erase(self, table: str, predicate: str) -> WriteResult:
        """Remove the rows matching ``predicate`` and at once every old file that held them.

        Time travel to versions before the erase is lost for this table: that is the point.
        """
        if not self.exists(table):
            return WriteResult(False, None, 0, 0, 0)
        result = self.engine.delete(self.path(table), predicate)
        self.engine.vacuum(self.path(table), 0, full=False)
        return self._logged("erase", table, result)

    def optimize(self, table: str) -> WriteResult:
        """Compact small files, partition by partition."""
        return self._logged("optimize", table, self.engine.optimize(self.path(table)))

    def vacuum(self, table: str, retention_hours: int | None = None) -> list[str]:
        """Delete unreferenced files older than the retention (conf ``lake.retention_hours``)."""
        return self.engine.vacuum(self.path(table), retention_hours)
