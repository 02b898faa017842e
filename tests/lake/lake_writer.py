"""A separate writer process for the lake's crash and concurrency tests.

usage: python lake_writer.py LAKE_ROOT TABLE FIRST_ID ROWS [--wait-for FILE] [--pause-before-commit MARKER]

Appends rows with ids FIRST_ID .. FIRST_ID+ROWS-1 to TABLE through the real rs engine.
--wait-for holds the write until FILE exists (so two writers start together);
--pause-before-commit writes MARKER once the data files sit in the table, then sleeps
before the commit, so the test can SIGKILL the process at the most dangerous moment.
"""

import argparse
import os
import time

from pyspark.sql import functions as F

from crmlake.config import load_conf
from crmlake.lake import Lake
from crmlake.lake.rs import RsEngine
from crmlake.session import build_session
from tables import catalog_with_test_tables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lake_root")
    parser.add_argument("table")
    parser.add_argument("first_id", type=int)
    parser.add_argument("rows", type=int)
    parser.add_argument("--wait-for")
    parser.add_argument("--pause-before-commit")
    args = parser.parse_args()
    conf = load_conf(overrides=[f"paths.lake={args.lake_root}", "lake.engine=rs", "spark.master=local[1]", "spark.conf.spark.sql.shuffle.partitions=2"], environ={})
    spark = build_session(conf, "lake-writer")
    lake = Lake(spark, conf, catalog_with_test_tables())
    frame = spark.range(args.first_id, args.first_id + args.rows).select(
        F.col("id").alias("event_id"), (F.col("id") % 3).cast("string").alias("day")
    )
    if args.pause_before_commit:
        stage = RsEngine._stage

        def stage_then_pause(self, *a, **kw):
            staged = stage(self, *a, **kw)
            open(args.pause_before_commit, "w").close()
            time.sleep(600)
            return staged

        RsEngine._stage = stage_then_pause
    if args.wait_for:
        while not os.path.exists(args.wait_for):
            time.sleep(0.05)
    lake.append(args.table, frame, partition_by=["day"])
    spark.stop()


if __name__ == "__main__":
    main()
