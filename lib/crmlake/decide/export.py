"""Audience files marketers download, published atomically with a manifest.

``<exports>/<audience>/<date>/`` holds ``audience.csv`` and ``manifest.json``. Both are
written into a hidden sibling folder first and renamed into place, so a reader never sees
half an export; a rerun replaces the previous export of that date whole.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import shutil
import uuid

from pyspark.sql import DataFrame

from crmlake.files import file_sha256


def publish_audience(members: DataFrame, exports_root: str, audience: str, run_date: dt.date, manifest: dict) -> str:
    """Write ``members`` as audience.csv plus manifest.json; return the published folder.

    The manifest gets audience, date, row_count, sha256 of the data file and created_at
    on top of ``manifest``.
    """
    final = os.path.join(exports_root, audience, run_date.isoformat())
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{run_date.isoformat()}.{uuid.uuid4().hex}")
    spark_out = os.path.join(staging, "_spark")
    # One file for people to download: the audience is bounded by its conf limit.
    members.coalesce(1).write.option("header", True).csv("file://" + spark_out)
    part = glob.glob(os.path.join(spark_out, "part-*.csv"))[0]
    data_path = os.path.join(staging, "audience.csv")
    os.replace(part, data_path)
    shutil.rmtree(spark_out)
    with open(data_path, "rb") as fh:
        rows = max(0, sum(1 for _ in fh) - 1)
    document = {
        "audience": audience,
        "date": run_date.isoformat(),
        "row_count": rows,
        "file": "audience.csv",
        "sha256": file_sha256(data_path),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **manifest,
    }
    with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, default=str)
    if os.path.isdir(final):
        retired = os.path.join(parent, f".retired.{uuid.uuid4().hex}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final
