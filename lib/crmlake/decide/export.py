"""Audience files marketers download, published atomically with a manifest.

``<exports>/<audience>/<date>/`` holds ``audience.csv.gz``, ``audience.parquet``, a score
histogram (``score_histogram.png``) and ``manifest.json`` (definition, counts at every
policy step, models, checksums). Everything is written into a hidden sibling folder first
and renamed into place, so a reader never sees half an export; a rerun replaces the
previous export of that date whole, and the leftovers of a killed export are removed.

Contact keys are the upload format of the big ad platforms: the SHA-256 of the trimmed,
lower-cased email and of the E.164 phone. Raw email and phone are written only for an
audience whose conf allows it on an internal channel.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import shutil
import uuid

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.files import file_sha256
from crmlake.people import e164_phone, normalised_email, sha256_hex

DATA_FILES = ("audience.csv.gz", "audience.parquet")
CHART = "score_histogram.png"
MANIFEST = "manifest.json"


def export_rows(selected: DataFrame, default_phone_region: str, raw_contact: bool) -> DataFrame:
    """Return the rows of an audience file from the policy's treatment group.

    Takes persons with email, phone, propensity_score, propensity_decile, segment, rfm_cell,
    top_category. Columns: person_id, email_sha256, phone_sha256, score, decile, segment,
    top_category (the person's next best category: one file drives personalised messages),
    reason_codes (why this person is here), and email and phone only when ``raw_contact``.
    """
    reasons = F.concat_ws(
        "|",
        F.concat(F.lit("propensity_decile_"), F.col("propensity_decile").cast("string")),
        F.concat(F.lit("segment_"), F.col("segment")),
        F.concat(F.lit("rfm_"), F.col("rfm_cell")),
    )
    columns = [
        "person_id",
        sha256_hex(normalised_email(F.col("email"))).alias("email_sha256"),
        sha256_hex(e164_phone(F.col("phone"), default_phone_region)).alias("phone_sha256"),
        F.round("propensity_score", 6).alias("score"),
        F.col("propensity_decile").alias("decile"),
        "segment",
        "top_category",
        reasons.alias("reason_codes"),
    ]
    if raw_contact:
        columns += ["email", "phone"]
    return selected.select(*columns)


def _single_file(df: DataFrame, folder: str, name: str, fmt: str) -> str:
    """Write ``df`` as one file ``name`` in ``folder`` with Spark; return its path."""
    spark_out = os.path.join(folder, f"_spark_{fmt}")
    writer = df.coalesce(1).write
    if fmt == "csv":
        writer.option("header", True).option("compression", "gzip").csv("file://" + spark_out)
    else:
        writer.parquet("file://" + spark_out)
    (part,) = [p for p in glob.glob(os.path.join(spark_out, "part-*")) if not p.endswith(".crc")]
    target = os.path.join(folder, name)
    os.replace(part, target)
    shutil.rmtree(spark_out)
    return target


def _score_histogram(scores: list[float], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(scores, bins=20, range=(0, 1), color="#3b6ea5")
    ax.set_xlabel("propensity score")
    ax.set_ylabel("persons")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def publish_audience(rows: DataFrame, exports_root: str, audience: str, run_date: dt.date, manifest: dict) -> str:
    """Publish an audience's files and manifest for ``run_date``; return the published folder.

    Takes the export rows (see :func:`export_rows`). The manifest gets audience, date,
    row_count, files with their sha256, created_at on top of ``manifest``.
    """
    final = os.path.join(exports_root, audience, run_date.isoformat())
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    for leftover in glob.glob(os.path.join(parent, f".{run_date.isoformat()}.*")):
        shutil.rmtree(leftover, ignore_errors=True)  # a killed export of this date
    staging = os.path.join(parent, f".{run_date.isoformat()}.{uuid.uuid4().hex}")
    os.makedirs(staging)
    rows = rows.cache()
    paths = [_single_file(rows, staging, DATA_FILES[0], "csv"), _single_file(rows, staging, DATA_FILES[1], "parquet")]
    # Safe to collect: one score per exported person, bounded by the audience's limit.
    scores = [r["score"] for r in rows.select("score").collect()]
    rows.unpersist()
    _score_histogram(scores, os.path.join(staging, CHART), f"{audience} {run_date}: {len(scores):,} persons")
    document = {
        "audience": audience,
        "date": run_date.isoformat(),
        "row_count": len(scores),
        "files": {os.path.basename(p): {"sha256": file_sha256(p), "bytes": os.path.getsize(p)} for p in paths},
        "chart": CHART,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **manifest,
    }
    with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, default=str)
    if os.path.isdir(final):
        retired = os.path.join(parent, f".retired.{uuid.uuid4().hex}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final
