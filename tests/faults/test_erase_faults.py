"""An erasure killed (SIGKILL, a real process) at each step of its workflow, in ``crmlake
erase`` and in organize's erase step, then ``crmlake erase`` run twice at once: the erasure is
finished from its plan, receipted once, and leaves the same tables and exports as an erasure
never killed, with no value of the subject anywhere.

The generated pipeline's lake and exports are copied twice: one copy is erased cleanly, the
other through the chain of kills (each run resumes what the one before left), with a stale
checkpoint folder and a staged file of a killed writer planted in it, both holding the
subject's email hash.
"""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import hashlib
import json
import os
import shutil
import signal
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from crmlake.cli import main
from crmlake.lake import Lake
from crmlake.lease import LEASE_FILE
from crmlake.people import ACCOUNT
from crmlake.privacy import ERASURE_LOG, PLANS_FOLDER
from crmlake.subjects import subject_of
from processes import finish, start_armed

pytestmark = pytest.mark.integration
# Each step of an erasure, in order, the command killed there and which time it reaches the
# point (the third table): organize's erase step resumes what ``crmlake erase`` planned.
DAY = dt.date(2026, 11, 21)   # the generated pipeline's last date
KILLS = [
    (["erase"], "erase.planned", 1),
    (["erase"], "erase.table_committed", 2),   # between a table's rewrite and its vacuum: the rerun matches nothing there
    (["run", "--stage", "organize", "--date", DAY.isoformat()], "erase.table_erased", 3),
    (["erase"], "erase.exports_amended", 1),
    (["erase"], "erase.receipted", 1),
]
# A killed holder's lease expires in seconds here (120 s by default).
FAST_LEASE = ["--set", "lake.lease.expiry_seconds=3", "--set", "lake.lease.heartbeat_seconds=1", "--set", "lake.lease.wait_seconds=300"]


def _copy(pipeline, target):
    for part in ("lake", "exports"):
        shutil.copytree(pipeline["root"] / part, target / part, symlinks=True)
    return ["--conf", "conf/local.yaml", "--set", f"paths.lake={target}/lake", "--set", f"paths.exports={target}/exports"]


def _exported_member(lake, exports_root):
    """Return (account_id, email) of an exported person holding one account with an email."""
    exported = {p for path in glob.glob(os.path.join(exports_root, "*", "*", "audience.parquet")) for p in pq.read_table(path).column("person_id").to_pylist()}
    accounts = lake.read("silver.identity_map").where(F.col("identifier_type") == ACCOUNT).groupBy("person_id").agg(F.collect_list("identifier").alias("accounts"))
    live = lake.read("silver.customers").where(~F.col("erased") & F.col("email").isNotNull()).select("account_id", "email")
    candidates = accounts.where(F.size("accounts") == 1).select("person_id", F.col("accounts")[0].alias("account_id")).join(live, "account_id")
    row = sorted((r for r in candidates.collect() if r["person_id"] in exported), key=lambda r: r["account_id"])[0]
    return row["account_id"], row["email"].strip().lower()


def _crmlake(command, args, crash_at=None, hit=1):
    return start_armed(["-m", "crmlake.cli", *command, *args], crash_at, hit)


def _wait_for(condition, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, finish(process).stderr[-3000:]
        time.sleep(0.2)


def _contents(path) -> bytes:
    """A file's bytes as a reader would see them: Parquet decoded, gzip inflated."""
    if path.endswith(".parquet"):
        return str(pq.read_table(path).to_pylist()).encode()
    with open(path, "rb") as fh:
        data = fh.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def _table_rows(lake, table):
    frame = lake.read(table)
    if table == "bronze.customers":   # each run records the request again (same request id)
        frame = frame.where(F.col("op") == "upsert")
    if table == ERASURE_LOG:   # the request id digests the request's time, the files removed are named by the writes that made them
        # (the killed writer's file planted in the killed lake is one more: the test finds it there)
        return sorted((r["reason"], tuple(r["tables"]), sorted(r["rows_removed"].items()), len([f for f in r["files_removed"] if "dead-writer" not in f]),
                       tuple(r["exports_amended"]))
                      for r in frame.collect())
    columns = [c for c in frame.columns if c not in ("ingested_at", "erased_at")]
    return sorted(str(r) for r in frame.select(*columns).collect())


def _exports(root):
    return {os.path.relpath(os.path.dirname(path), root): sorted(pq.read_table(path).column("person_id").to_pylist())
            for path in glob.glob(os.path.join(root, "*", "*", "audience.parquet"))}


def test_erase_killed_at_each_step_is_finished_by_the_next_run_and_a_second_writer_waits(spark, pipeline, tmp_path):
    killed, clean = _copy(pipeline, tmp_path / "killed"), _copy(pipeline, tmp_path / "clean")
    conf = pipeline["conf"].with_overrides([f"paths.lake={tmp_path}/killed/lake", f"paths.exports={tmp_path}/killed/exports"])
    lake = Lake(spark, conf)
    account, email = _exported_member(lake, conf.exports_root)
    email_hash = hashlib.sha256(email.encode()).hexdigest()
    # Every value an erasure must leave nowhere: the email and its hash (computed here), the
    # phones' hashes and each ad platform's hashes (as the lake held them before).
    held = subject_of(lake, account, "TW")
    secrets = {email, email_hash, *held.phone_hashes, *held.platform_hashes}
    assert held.phone_hashes and len(held.platform_hashes) >= 2
    # What killed writers left: a checkpoint folder, a staged file and a data file moved into a
    # table but never committed (read by no one, in no log), each holding the subject's hash.
    leftovers = [tmp_path / "killed/lake/_checkpoints/dead-app/rdd-1/part-0", tmp_path / "killed/lake/silver/identity_map/_staging/dead/part-0.txt"]
    for path in leftovers:
        path.parent.mkdir(parents=True)
        path.write_text(email_hash)
    never_committed = tmp_path / "killed/lake/silver/customer_360/part-00000-dead-writer.c000.snappy.parquet"
    pq.write_table(pa.table({"email_sha256": [email_hash]}), never_committed)
    leftovers.append(never_committed)

    args = ["--account", account, *killed, *FAST_LEASE]
    lease, plans_folder = tmp_path / "killed/lake" / LEASE_FILE, tmp_path / "killed/lake" / PLANS_FOLDER
    for command, point, hit in KILLS:
        run = _crmlake(command, args if command == ["erase"] else [*killed, *FAST_LEASE], point, hit)
        done = finish(run)
        assert done.returncode == -signal.SIGKILL, (point, done.stderr[-3000:])
        assert json.loads(lease.read_text())["pid"] == run.pid   # the dead holder's lease stays
        (plan,) = os.listdir(plans_folder)
        request_id = plan[: -len(".json")]
        receipts = lake.read(ERASURE_LOG).where(F.col("request_id") == request_id).count()
        assert receipts == (1 if point == "erase.receipted" else 0), point   # never receipted early

    # The next run takes the dead holder's lease over once it expires; a second writer started
    # while it holds the lease waits for it, then finds nothing left to do.
    first = _crmlake(["erase"], args)
    _wait_for(lambda: lease.exists() and json.loads(lease.read_text())["pid"] == first.pid, first)
    second = _crmlake(["erase"], args)
    outputs = [finish(run) for run in (first, second)]
    assert [done.returncode for done in outputs] == [0, 0], outputs[0].stderr[-3000:] + outputs[1].stderr[-3000:]
    assert f"lake lease held by erase (pid {first.pid}" in outputs[1].stderr
    assert main(["erase", "--account", account, *clean]) == 0

    clean_lake = Lake(spark, pipeline["conf"].with_overrides([f"paths.lake={tmp_path}/clean/lake", f"paths.exports={tmp_path}/clean/exports"]))
    (receipt,) = lake.read(ERASURE_LOG).where(F.col("request_id") == request_id).collect()   # exactly one
    assert receipt["exports_amended"] and "silver.customer_360" in receipt["tables"]
    assert [f for f in receipt["files_removed"] if "dead-writer" in f] == [f"silver/customer_360/{never_committed.name}"]
    for table in lake.catalog.tables:
        if clean_lake.exists(table):
            assert _table_rows(lake, table) == _table_rows(clean_lake, table), table
    assert _exports(str(tmp_path / "killed/exports")) == _exports(str(tmp_path / "clean/exports"))
    assert not glob.glob(str(tmp_path / "killed/lake" / PLANS_FOLDER / "*")) and not os.path.exists(tmp_path / "killed/lake" / LEASE_FILE)
    assert not [p for p in leftovers if p.exists()]
    held = [path for base in ("lake", "exports") for path in glob.glob(str(tmp_path / "killed" / base / "**" / "*"), recursive=True)
            if os.path.isfile(path) and any(secret.encode() in _contents(path) for secret in secrets)]
    assert held == []
