"""Publish a large audience export in its own process (the test kills it midway).

Usage: export_writer.py EXPORTS_ROOT ROWS
"""

import datetime as dt
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from crmlake.decide.export import publish_audience

exports_root, rows = sys.argv[1], int(sys.argv[2])
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
members = spark.range(rows).select(
    F.format_string("P%09d", "id").alias("person_id"),
    F.sha2(F.col("id").cast("string"), 256).alias("email_sha256"),
    F.sha2(F.concat(F.lit("t"), F.col("id").cast("string")), 256).alias("phone_sha256"),
    F.rand(1).alias("score"), F.lit(5).alias("decile"), F.lit("new").alias("segment"), F.lit("x").alias("reason_codes"),
)
publish_audience(members, exports_root, "big", dt.date(2026, 11, 21), {})
spark.stop()
