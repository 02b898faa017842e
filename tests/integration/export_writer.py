"""Publish or amend the audience ``big`` of 2026-11-21 in a process of its own, for tests that kill it.

Usage:
  export_writer.py publish EXPORTS_ROOT ROWS [FIRST]
      publish persons FIRST .. FIRST+ROWS-1 (default 0) with a Meta upload file; FIRST also
      seeds their scores, so two FIRSTs give two different versions of the export
  export_writer.py amend EXPORTS_ROOT PERSON_NUMBER
      amend every export without that person, as an erasure of them does

Person n is ``P`` and n in 9 digits, with the email ``p<n>@example.com`` and no phone
(:func:`person_id`, :func:`email_sha256`). Set ``CRMLAKE_CRASH_AT`` to kill the process at
one of crmlake's crash points.
"""

import datetime as dt
import hashlib
import sys

AUDIENCE, DAY = "big", dt.date(2026, 11, 21)


def person_id(number: int) -> str:
    """Person ``number``'s person_id."""
    return f"P{number:09d}"


def email_sha256(number: int) -> str:
    """The neutral hash of person ``number``'s email, which is also Meta's (already lower case, no blanks)."""
    return hashlib.sha256(f"p{number}@example.com".encode()).hexdigest()


def publish(exports_root: str, rows: int, first: int) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from crmlake.exports import export_rows, platform_rows, publish_audience

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    persons = spark.range(first, first + rows, numPartitions=1).select(
        F.format_string("P%09d", "id").alias("person_id"),
        F.format_string("p%d@example.com", "id").alias("email"),
        F.lit(None).cast("string").alias("phone"),
        F.rand(first).alias("propensity_score"), F.lit(5).alias("propensity_decile"), F.lit("new").alias("segment"),
        F.lit("455").alias("rfm_cell"), F.lit("books").alias("top_category"),
    )
    publish_audience(export_rows(persons, "TW", False), exports_root, AUDIENCE, DAY, {},
                     ("meta_custom_audience", platform_rows(persons, "TW", "meta_custom_audience")))
    spark.stop()


def amend(exports_root: str, number: int) -> None:
    from crmlake.exports import amend_exports

    amend_exports(exports_root, [person_id(number)], [email_sha256(number)], [], [email_sha256(number)], f"erase-{number}")


if __name__ == "__main__":
    mode, root = sys.argv[1], sys.argv[2]
    if mode == "publish":
        publish(root, int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif mode == "amend":
        amend(root, int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode!r}: publish or amend")
