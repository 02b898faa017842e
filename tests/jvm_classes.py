"""A class-data archive for the suite's Spark drivers, and the driver options every JVM the tests
start through PySpark takes (this session's, each ``crmlake`` command's, each fault victim's).

The suite starts some forty Spark drivers: every fault victim and command-line run is a process
of its own. Each spends its first seconds loading and verifying the same classes. An AppCDS
archive (JDK 17's ``-XX:ArchiveClassesAtExit``) of the classes a short Spark workload loads
lets each later driver map them instead: one ``crmlake run --stage acquire`` of a small zone
took 34 s instead of 41 s here. The archive is made once per test run, by a driver of its own
before the workers start; a JVM that cannot use it (another Java, another classpath) warns and
loads its classes as usual, so no result depends on it.

Those drivers also run without generated code and without recording each PySpark call site:
on the suite's few hundred rows, compiling each query's Java costs more than it saves (see
the ``spark`` fixture in conftest.py). Only drivers PySpark launches take these options
(``PYSPARK_SUBMIT_ARGS``): the cluster test's driver is started by ``spark-submit`` and keeps
Spark's generated code, so every stage still runs on it in the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

# Spark settings, as spark-submit options: no generated code, no recorded call sites.
INTERPRETED = ["--conf", "spark.sql.codegen.wholeStage=false", "--conf", "spark.sql.codegen.factoryMode=NO_CODEGEN",
               "--conf", "spark.python.sql.dataFrameDebugging.enabled=false"]

# A workload touching what the stages touch: the JSON and CSV readers with a corrupt-record
# column, Parquet writes by partition, a shuffle, a window, a join and a broadcast.
_WORKLOAD = """
import sys
from pyspark.sql import SparkSession, Window, functions as F
folder = sys.argv[1]
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
with open(folder + "/lines.jsonl", "w") as fh:
    fh.write('{"a": 1, "b": "x"}\\nnot json\\n')
with open(folder + "/lines.csv", "w") as fh:
    fh.write("a,b\\n1,x\\n2,y\\n")
schema = "a INT, b STRING, _corrupt_record STRING"
js = spark.read.schema(schema).option("columnNameOfCorruptRecord", "_corrupt_record").json(folder + "/lines.jsonl")
cs = spark.read.schema("a INT, b STRING").option("header", True).csv(folder + "/lines.csv")
both = js.select("a", "b").unionByName(cs).withColumn("d", F.to_date(F.lit("2026-11-21")))
both.write.partitionBy("d").mode("overwrite").parquet(folder + "/out")
back = spark.read.parquet(folder + "/out")
ranked = back.withColumn("r", F.row_number().over(Window.partitionBy("b").orderBy("a")))
ranked.join(F.broadcast(cs.withColumnRenamed("b", "c")), "a", "left").groupBy("b").agg(F.sum("a"), F.max("r")).collect()
spark.stop()
"""


def driver_options(folder: str) -> str:
    """Make the class archive under ``folder`` (once) and return the ``PYSPARK_SUBMIT_ARGS``
    every PySpark-launched driver of the run takes: the interpreted settings, and the archive
    when it was made."""
    archive = os.path.join(folder, "spark-driver.jsa")
    make = {**os.environ, "PYSPARK_SUBMIT_ARGS": " ".join([*INTERPRETED, "--driver-java-options", f"-XX:ArchiveClassesAtExit={archive}", "pyspark-shell"])}
    subprocess.run([sys.executable, "-c", _WORKLOAD, folder], env=make, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    share = ["--driver-java-options", f"-XX:SharedArchiveFile={archive}"] if os.path.exists(archive) else []
    return " ".join([*INTERPRETED, *share, "pyspark-shell"])
