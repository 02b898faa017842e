"""Run records: every stage run appends one row to ``gold.job_runs``, success or failure.

Columns: job, run_date, conf_hash, started_at, ended_at, outcome (succeeded | partial |
failed), reason (the failure's first line; for a partial run, each piece that failed and why:
:mod:`crmlake.isolation`), counts (the stage's summary as JSON). Every summary
names the landing sources never delivered (``sources_not_seen``): the contract makes each
source optional, and a reader of a report should know which inputs it lacked.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import time

from pyspark.sql import SparkSession

from crmlake.acquire.job import sources_not_seen
from crmlake.config import Conf
from crmlake.isolation import reason_of
from crmlake.lake import Lake
from crmlake.log import get_logger
from crmlake.summaries import JOB_RUNS_JSON, read_summary, write_summary

log = get_logger("runs")
JOB_RUNS = "gold.job_runs"
JOB_RUNS_SCHEMA = "job string, run_date date, conf_hash string, started_at timestamp, ended_at timestamp, outcome string, reason string, counts string"


def record_run(spark: SparkSession, conf: Conf, job: str, run_date: dt.date, started_at: dt.datetime, outcome: str, reason: str | None, counts: dict) -> None:
    """Append one run record to gold.job_runs, and show it as the job's latest run on the page
    (the ``job_runs.json`` summary)."""
    ended_at = dt.datetime.now(dt.timezone.utc)
    row = (job, run_date, conf.fingerprint(), started_at, ended_at, outcome, reason, json.dumps(counts, default=str))
    Lake(spark, conf).append(JOB_RUNS, spark.createDataFrame([row], JOB_RUNS_SCHEMA))
    latest = (read_summary(conf.exports_root, JOB_RUNS_JSON) or {}).get("jobs", {})
    latest[job] = {"run_date": run_date, "outcome": outcome, "reason": reason, "ended_at": ended_at.isoformat(timespec="seconds")}
    write_summary(conf.exports_root, JOB_RUNS_JSON, {"jobs": latest})


def run_stage(spark: SparkSession, conf: Conf, stage: str, run_date: dt.date) -> dict:
    """Run one stage for ``run_date``, log it, record it in gold.job_runs; return its summary.

    A failure is recorded with its reason and raised again.
    """
    module = importlib.import_module(f"crmlake.{stage}.job")
    started_at, started = dt.datetime.now(dt.timezone.utc), time.monotonic()
    log.info("stage %s for %s: started (conf %s)", stage, run_date, conf.fingerprint())
    try:
        summary = module.run(spark, conf, run_date)
    except Exception as exc:
        record_run(spark, conf, stage, run_date, started_at, "failed", reason_of(exc), {})
        raise
    summary = {**summary, "sources_not_seen": sources_not_seen(Lake(spark, conf))}
    failed = summary.get("failed") or {}
    if failed:
        log.warning("stage %s for %s: done without %s (the next run tries again)", stage, run_date, "; ".join(f"{piece} ({why})" for piece, why in failed.items()))
    if summary["sources_not_seen"]:
        log.warning("stage %s for %s: sources never delivered (read as empty): %s", stage, run_date, ", ".join(summary["sources_not_seen"]))
    log.info("stage %s for %s: done in %.1fs", stage, run_date, time.monotonic() - started)
    record_run(spark, conf, stage, run_date, started_at, "partial" if failed else "succeeded",
               "; ".join(f"{piece}: {why}" for piece, why in failed.items()) or None, summary)
    return summary
