"""acquire killed (SIGKILL, a real process) between its commits, then run twice at once: every
record lands exactly once, and bronze, the quarantine and the ingest log equal a run never
killed.

One small generated landing zone is acquired in-process for the clean lake; the other lake
goes through the chain: killed after a second source's bronze commit, killed after the first
quarantine commit (each run resumes what the one before left), then two `crmlake run --stage
acquire` beside each other.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import signal
import time

import pytest
from pyspark.sql import functions as F

from crmlake.acquire import job as acquire
from crmlake.acquire.contract import SOURCES
from crmlake.generate.landing import write_landing
from crmlake.lake import Lake
from crmlake.lease import LEASE_FILE
from hand_landing import deliver
from processes import finish, start_armed

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 21)
KILLS = [("acquire.bronze_committed", 2), ("acquire.quarantine_committed", 1)]
# When each run wrote a row: not part of what was acquired.
RUN_COLUMNS = ("ingested_at", "run_date")


def _acquire(args, crash_at=None, hit=1):
    return start_armed(["-m", "crmlake.cli", "run", "--stage", "acquire", "--date", DAY.isoformat(), *args], crash_at, hit)


def _rows(lake, table):
    frame = lake.read(table)
    return sorted(str(r) for r in frame.select(*[c for c in frame.columns if c not in RUN_COLUMNS]).collect())


def test_acquire_killed_between_its_commits_lands_every_record_once(spark, conf, tmp_path):
    write_landing(spark, conf.landing_root, customers=150, days=7, end=DAY, seed=11, timezone="Asia/Taipei")
    clean = Lake(spark, conf.with_overrides([f"paths.lake={tmp_path}/clean"]))
    acquire.run(spark, clean.conf, DAY)

    lake = Lake(spark, conf)
    args = ["--conf", "conf/local.yaml", "--set", f"paths.landing={conf.landing_root}", "--set", f"paths.lake={conf.lake_root}",
            "--set", f"paths.exports={conf.exports_root}", "--set", "lake.lease.expiry_seconds=3", "--set", "lake.lease.heartbeat_seconds=1"]
    for point, hit in KILLS:
        done = finish(_acquire(args, point, hit))
        assert done.returncode == -signal.SIGKILL, (point, done.stderr[-3000:])
    # The chain did commit something before it was killed (the sources run side by side: which ones varies).
    assert any(lake.exists(f"bronze.{source}") for source in SOURCES)

    # The next run takes the dead holder's lease over; a second writer started while it holds it waits.
    first = _acquire(args)
    lease = pathlib.Path(conf.lake_root) / LEASE_FILE
    deadline = time.monotonic() + 300
    while not (lease.exists() and json.loads(lease.read_text() or "{}").get("pid") == first.pid):
        assert first.poll() is None and time.monotonic() < deadline, finish(first).stderr[-3000:]
        time.sleep(0.2)
    second = _acquire(args)
    outputs = [finish(first), finish(second)]
    assert [done.returncode for done in outputs] == [0, 0], "".join(done.stderr[-3000:] for done in outputs)
    assert f"lake lease held by run acquire (pid {first.pid}" in outputs[1].stderr
    for table in ("bronze.clickstream", "bronze.orders", "bronze.customers", "bronze.interactions", "bronze.campaign_events", "bronze.quarantine"):
        assert _rows(lake, table) == _rows(clean, table), table
    # Each file logged once, with the counts of a run never killed.
    log_rows = lake.read("bronze.ingest_log")
    assert log_rows.groupBy("path").count().where(F.col("count") > 1).count() == 0
    assert _rows(lake, "bronze.ingest_log") == _rows(clean, "bronze.ingest_log")


def _click(event_id: str) -> dict:
    moment = f"{DAY.isoformat()}T10:00:00+08:00"
    return {"event_id": event_id, "event_time": moment, "received_time": moment, "event_type": "page_view", "anonymous_id": "cookie-1",
            "tracking_consent": True, "page_url": "/", "device": "desktop"}


def test_a_late_file_repeating_a_record_a_killed_run_wrote_leaves_it_once_and_the_rerun_balances(spark, conf, tmp_path):
    """A run killed after its bronze commit, before its ingest log; before the rerun, a late file
    (of an earlier day: read first) delivers one of its events again. The rerun keeps the event
    where the killed run wrote it and counts the late one a duplicate: were the late one
    accepted beside it, the event would be in bronze twice and every rerun would fail its balance."""
    deliver(conf.landing_root, "clickstream", DAY, [_click("e1"), _click("e2")])
    # The killed run's commit: the same files acquired into another lake, their bronze rows appended here, nothing logged.
    killed = Lake(spark, conf.with_overrides([f"paths.lake={tmp_path}/killed"]))
    acquire.run(spark, killed.conf, DAY)
    lake = Lake(spark, conf)
    lake.append("bronze.clickstream", killed.read("bronze.clickstream"), partition_by=["event_date"])
    deliver(conf.landing_root, "clickstream", DAY - dt.timedelta(days=1), [_click("e1")])

    summary = acquire.run(spark, conf, DAY)
    assert (summary["clickstream"]["accepted"], summary["clickstream"]["duplicates"], summary["failed"]) == (2, 1, {})
    rows = sorted((r["event_id"], r["source_file"].split("/")[-2]) for r in lake.read("bronze.clickstream").collect())
    assert rows == [("e1", f"dt={DAY}"), ("e2", f"dt={DAY}")]
    logged = {r["path"].split("/")[-2]: (r["accepted"], r["duplicates"]) for r in lake.read("bronze.ingest_log").where(F.col("source") == "clickstream").collect()}
    assert logged == {f"dt={DAY}": (2, 0), f"dt={DAY - dt.timedelta(days=1)}": (0, 1)}
    assert acquire.run(spark, conf, DAY)["clickstream"]["files_new"] == 0
