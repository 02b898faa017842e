"""organize killed (SIGKILL, a real process) after each of its steps, each rerun killed at a
later one, then run to its end: silver equals a run never killed, the identity map included.

A landing zone written by hand: Ann (A1) and Bo (A2), two persons (their names differ) who
share a family mailbox on day 1; on day 2 Bo takes a mailbox of his own, so the family's is
Ann's alone, and the day's map must attach it to her person. Day 1 is acquired and organized,
day 2 acquired; the lake is copied, and the copy organized for day 2 in-process is the clean
one. The other goes through the chain. The first kill falls after the day's profiles were
merged: were its rerun to grow the map from those merged profiles, taking them for the
profiles before, it would not see the mailbox Bo left, and the map would lose Ann's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import signal

import pytest
from pyspark.sql import functions as F

from crmlake.acquire import job as acquire
from crmlake.config import load_conf
from crmlake.lake import Lake
from crmlake.organize import job as organize
from crmlake.people import ACCOUNT, EMAIL
from hand_landing import deliver
from processes import run_armed

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("organize_faults")]   # one chain of runs, built once for both tests
DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
FAMILY = "family@example.com"
# Killed after the profiles merge, within the people step after the rebuilt pairs are written
# (the map not yet), after the people step (map and customer 360 written), and after the last
# step (before the state that ends a run is stored).
KILLS = ("organize.customers", "organize.identity_pairs", "organize.people", "organize.companies")
FAST_LEASE = ["--set", "lake.lease.expiry_seconds=3", "--set", "lake.lease.heartbeat_seconds=1", "--set", "lake.lease.wait_seconds=300"]


def _profile(account_id: str, name: str, email: str, birth_year: int, day: dt.date) -> dict:
    when = f"{day.isoformat()}T09:00:00+08:00"
    return {"account_id": account_id, "op": "upsert", "updated_time": when, "signup_time": f"{DAY_1.isoformat()}T09:00:00+08:00", "email": email,
            "name": name, "birth_year": birth_year, "marketing_consent": True, "account_type": "consumer"}


def _click(event_id: str, day: dt.date, account_id: str) -> dict:
    moment = f"{day.isoformat()}T10:00:00+08:00"
    return {"event_id": event_id, "event_time": moment, "received_time": moment, "event_type": "page_view", "anonymous_id": f"cookie-{account_id}",
            "account_id": account_id, "tracking_consent": True, "page_url": "/", "device": "desktop"}


def _rows(lake: Lake, table: str) -> list[str]:
    frame = lake.read(table)
    return sorted(str(r) for r in frame.select(*sorted(frame.columns)).collect())


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    """The killed chain's lake and the clean lake, both organized for day 2; the chain's runs."""
    root = tmp_path_factory.mktemp("organize_faults")
    conf = load_conf("conf/local.yaml", overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/killed", f"paths.exports={root}/exports"], environ={})
    landing = conf.landing_root
    deliver(landing, "customers", DAY_1, [_profile("A1", "Ann Lee", FAMILY, 1980, DAY_1), _profile("A2", "Bo Lee", FAMILY, 1978, DAY_1)])
    deliver(landing, "clickstream", DAY_1, [_click("e1", DAY_1, "A1"), _click("e2", DAY_1, "A2")])
    deliver(landing, "customers", DAY_2, [_profile("A2", "Bo Lee", "bo@example.com", 1978, DAY_2)])
    deliver(landing, "clickstream", DAY_2, [_click("e3", DAY_2, "A2")])
    acquire.run(spark, conf, DAY_1)
    organize.run(spark, conf, DAY_1)
    acquire.run(spark, conf, DAY_2)
    shutil.copytree(root / "killed", root / "clean", symlinks=True)
    clean = conf.with_overrides([f"paths.lake={root}/clean"])
    organize.run(spark, clean, DAY_2)
    args = ["-m", "crmlake.cli", "run", "--stage", "organize", "--date", DAY_2.isoformat(), "--conf", "conf/local.yaml",
            *[a for pair in (f"paths.landing={landing}", f"paths.lake={root}/killed", f"paths.exports={root}/exports") for a in ("--set", pair)], *FAST_LEASE]
    runs = [run_armed(args, point) for point in KILLS] + [run_armed(args)]
    return {"killed": Lake(spark, conf), "clean": Lake(spark, clean), "runs": runs}


def test_each_kill_leaves_the_next_run_to_finish_and_silver_equals_a_run_never_killed(lakes):
    *killed, last = lakes["runs"]
    assert [run.returncode for run in killed] == [-signal.SIGKILL] * len(KILLS), [run.stderr[-2000:] for run in killed]
    assert last.returncode == 0, last.stderr[-3000:]
    lake, clean = lakes["killed"], lakes["clean"]
    silver = [t for t in lake.catalog.tables if t.startswith("silver.") and t != organize.STATE]
    assert [t for t in silver if lake.exists(t)] == [t for t in silver if clean.exists(t)]
    for table in (t for t in silver if clean.exists(t)):
        assert _rows(lake, table) == _rows(clean, table), table
    state, clean_state = ({r["source"]: r["version_read"] for r in l.read(organize.STATE).collect()} for l in (lake, clean))
    assert {s: state[s] for s in organize.BRONZE_SOURCES} == {s: clean_state[s] for s in organize.BRONZE_SOURCES}


def test_the_rerun_after_the_profiles_merge_sees_the_mailbox_bo_left_and_gives_it_to_ann(lakes):
    identity_map = lakes["killed"].read("silver.identity_map")
    ann = identity_map.where((F.col("identifier_type") == ACCOUNT) & (F.col("identifier") == "A1")).select("person_id").first()["person_id"]
    family = hashlib.sha256(FAMILY.encode()).hexdigest()
    holders = [r["person_id"] for r in identity_map.where((F.col("identifier_type") == EMAIL) & (F.col("identifier") == family)).collect()]
    assert holders == [ann]
    # The run that found the profiles written since the last complete run rebuilt the map whole, and said why.
    rebuilt = [run for point, run in zip(KILLS, lakes["runs"]) if point in ("organize.identity_pairs", "organize.people")]
    assert len(rebuilt) == 2 and all("was written after the last complete run" in run.stderr for run in rebuilt)
