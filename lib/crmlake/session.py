"""SparkSession at the edge: built from conf, UTC inside, Parquet timestamps Delta can read."""

from __future__ import annotations

import glob
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from pyspark.sql import SparkSession

from crmlake.config import Conf

# Settings every crmlake session needs, whatever the environment: timestamps are stored
# in UTC as INT64 micros (what Delta readers expect, not Spark's legacy INT96).
REQUIRED_SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.ansi.enabled": "false",
    # Checkpointed rounds (identity resolution) are removed once no longer referenced.
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}
DELTA_SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
}


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port; its --master wins.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _delta_jars_expected(conf: Conf) -> bool:
    """Return True when this session will have Delta's jars: asked for, or already on the classpath."""
    if conf.lake.engine == "spark" or conf.lake.resolve_delta_jars:
        return True
    if any("delta" in str(conf.spark.conf.get(k, "")) for k in ("spark.jars.packages", "spark.jars")):
        return True
    import pyspark

    return bool(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "delta-spark*.jar")))


def build_session(conf: Conf, app: str) -> SparkSession:
    """Return a SparkSession configured from ``spark.*`` in conf (master unless spark-submit set it)."""
    if not _launched_by_spark_submit():
        # Python workers must run the interpreter (and virtualenv) that holds crmlake.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"{conf.spark.app_name}-{app}")
    if not _launched_by_spark_submit():
        builder = builder.master(conf.spark.master)
    for key, value in conf.spark.conf.items():
        builder = builder.config(key, str(value))
    if _delta_jars_expected(conf):
        for key, value in DELTA_SPARK_CONF.items():
            builder = builder.config(key, value)
    if conf.lake.resolve_delta_jars:
        from delta import configure_spark_with_delta_pip  # resolves io.delta jars from Maven

        builder = configure_spark_with_delta_pip(builder)
    for key, value in REQUIRED_SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(conf.spark.log_level)
    if spark.sparkContext._jsc.sc().getCheckpointDir().isEmpty():
        # Reliable checkpoints (unlike localCheckpoint) survive a lost executor; Spark adds a
        # directory of its own per application under the root.
        spark.sparkContext.setCheckpointDir(conf.checkpoint_root)
    return spark


def remove_checkpoints(spark: SparkSession) -> None:
    """Delete this application's checkpoint directory (on any Hadoop file system), if it has one."""
    directory = spark.sparkContext._jsc.sc().getCheckpointDir()
    if directory.isDefined():
        path = spark._jvm.org.apache.hadoop.fs.Path(directory.get())
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def remove_stale_checkpoints(spark: SparkSession, root: str) -> int:
    """Delete every folder under the checkpoint ``root`` but this application's (left by killed
    runs: checkpointed rounds hold identifiers); return how many. On any Hadoop file system."""
    jvm, hadoop_conf = spark._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    root_path = jvm.org.apache.hadoop.fs.Path(root)
    fs = root_path.getFileSystem(hadoop_conf)
    if not fs.exists(root_path):
        return 0
    current = spark.sparkContext._jsc.sc().getCheckpointDir()
    mine = fs.makeQualified(jvm.org.apache.hadoop.fs.Path(current.get())).toString() if current.isDefined() else None
    stale = [status.getPath() for status in fs.listStatus(root_path) if fs.makeQualified(status.getPath()).toString() != mine]
    for path in stale:
        fs.delete(path, True)
    return len(stale)


@contextmanager
def spark_session(conf: Conf, app: str, stop: bool = True) -> Iterator[SparkSession]:
    """Yield a session for one job; afterwards stop it, unless ``stop`` is False or it was
    already running when the job began (a notebook's, a test run's: not ours to stop)."""
    already_running = SparkSession.getActiveSession() is not None
    spark = build_session(conf, app)
    try:
        yield spark
    finally:
        if stop and not already_running:
            remove_checkpoints(spark)
            spark.stop()
