"""The sample-data generator: deterministic by seed, contract-shaped, with the planted shape."""

import collections
import csv
import datetime as dt
import glob
import gzip
import json
import os

import pytest

from crmlake.generate.landing import write_landing

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)


def contents(landing):
    """Every source's lines by dt folder, sorted (file names carry a random write id)."""
    found = collections.defaultdict(list)
    for path in glob.glob(os.path.join(landing, "*", "dt=*", "*")):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            found[os.path.relpath(os.path.dirname(path), landing)].extend(fh.read().splitlines())
    return {k: sorted(v) for k, v in found.items()}


@pytest.fixture(scope="module")
def landings(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    made = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        made[name] = str(root / name)
        write_landing(spark, made[name], customers=150, days=14, end=END, seed=seed, timezone="Asia/Taipei")
    return made


def test_same_seed_same_records_other_seed_other_records(landings):
    first = contents(landings["a"])
    assert first == contents(landings["b"])
    assert first != contents(landings["c"])
    truth = [open(os.path.join(landings[name], "_truth", "identity.csv"), encoding="utf-8").read() for name in ("a", "b")]
    assert truth[0] == truth[1]


def test_layout_and_timestamps_follow_the_contract(landings):
    sources = sorted(d for d in os.listdir(landings["a"]) if not d.startswith("_"))
    assert sources == ["campaign_events", "clickstream", "customers", "interactions", "orders"]
    for folder in glob.glob(os.path.join(landings["a"], "[!_]*", "*")):
        day = os.path.basename(folder)
        assert day.startswith("dt=") and dt.date.fromisoformat(day[3:]) <= END
    with gzip.open(sorted(glob.glob(os.path.join(landings["a"], "clickstream", "dt=*", "*.gz")))[-1], "rt") as fh:
        event = json.loads(fh.readline())
    assert event["event_time"].endswith("+08:00") and event["event_type"] in ("page_view", "search", "product_view")


def test_a_few_members_do_most_of_the_buying(landings):
    orders_by_account = collections.Counter()
    for path in glob.glob(os.path.join(landings["a"], "orders", "dt=*", "*.csv")):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["account_id"] and row["line_no"] == "1" and row["status"] == "completed":
                    orders_by_account[row["account_id"]] += 1
    counts = sorted(orders_by_account.values(), reverse=True)
    top_fifth = counts[: max(1, len(counts) // 5)]
    assert sum(top_fifth) / sum(counts) > 0.4
