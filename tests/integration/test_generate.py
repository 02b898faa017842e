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
from crmlake.generate.members import FADE_DAYS
from landing_frames import landing_json

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
    """Zones "a" and "b" of one seed and "c" of another (150 members, 14 days), and "long": days
    enough to hold lapsing members' whole fade windows (FADE_DAYS), members enough that dozens
    fade in it (about 20 s more)."""
    root = tmp_path_factory.mktemp("gen")
    made = {}
    for name, seed, customers, days in (("a", 5, 150, 14), ("b", 5, 150, 14), ("c", 6, 150, 14), ("long", 7, 1000, 2 * FADE_DAYS)):
        made[name] = str(root / name)
        write_landing(spark, made[name], customers=customers, days=days, end=END, seed=seed, timezone="Asia/Taipei")
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


def members_and_visits(landing) -> tuple[list, dict, collections.Counter]:
    """The planted truth's persons, each person's first signup date (customers source), and their
    logged-in visits per date (clickstream: a visit's first click, the page view, carries the
    account when the visitor logged in; a duplicated event counts once)."""
    (truth_file,) = glob.glob(os.path.join(landing, "_truth", "persons", "part-*.csv"))
    with open(truth_file, newline="") as fh:
        persons = list(csv.DictReader(fh))
    person_of = {account: p["person"] for p in persons for account in p["account_ids"].split(";") if account}
    joined: dict = {}
    for record in landing_json(landing, "customers"):
        if record.get("op") == "upsert" and record.get("account_id") in person_of:
            person, day = person_of[record["account_id"]], dt.date.fromisoformat(record["signup_time"][:10])
            joined[person] = min(joined.get(person, day), day)
    page_views = {e["event_id"]: e for e in landing_json(landing, "clickstream") if e.get("event_type") == "page_view" and e.get("account_id") in person_of}
    visits = collections.Counter((person_of[e["account_id"]], dt.date.fromisoformat(e["event_time"][:10])) for e in page_views.values())
    return persons, joined, visits


def test_the_truth_dates_the_last_day_of_each_member_whose_activity_has_begun_to_fade(landings):
    persons, _, visits = members_and_visits(landings["long"])
    lapse = {p["person"]: dt.date.fromisoformat(p["lapse_date"]) for p in persons if p["lapse_date"]}
    # Lapsed by the end: dated up to it; alive: undated, or dated within the fade's days after it (about to churn).
    assert all(p["person"] in lapse and lapse[p["person"]] <= END for p in persons if p["alive_at_end"] == "false")
    about_to_churn = [p["person"] for p in persons if p["alive_at_end"] == "true" and p["person"] in lapse]
    assert about_to_churn and all(END < lapse[p] < END + dt.timedelta(days=FADE_DAYS) for p in about_to_churn)
    # Nothing after the last day (a visit begun just before its midnight may log its first click after it).
    assert not [(person, day) for person, day in visits if person in lapse and day > lapse[person] + dt.timedelta(days=1)]


def test_lapsing_members_visit_less_over_the_days_before_their_last_while_the_others_keep_their_pace(landings):
    """Each member's logged-in visits per day in the last half of a fade window (the FADE_DAYS
    days up to a last day, within the zone and their membership) against the half before it: a
    rate ratio within each member, pooled over members as Mantel and Haenszel do (each weighs by
    their days in both halves), so that a few heavy visitors do not decide it. Lapsing members'
    windows end on their truth lapse_date; the members who do not lapse are measured over every
    one of those windows (the same days)."""
    persons, joined, visits = members_and_visits(landings["long"])
    with open(os.path.join(landings["long"], "_truth", "summary.json"), encoding="utf-8") as fh:
        start = dt.date.fromisoformat(json.load(fh)["start"])

    def halves(person: str, last_day: dt.date) -> tuple:
        """(visits, days) in the window's earlier half, then in its last half."""
        counts = [0, 0, 0, 0]
        day = max(start, joined[person], last_day - dt.timedelta(days=FADE_DAYS - 1))
        while day <= min(END, last_day):
            late = (last_day - day).days < FADE_DAYS // 2
            counts[2 * late] += visits[(person, day)]
            counts[2 * late + 1] += 1
            day += dt.timedelta(days=1)
        return tuple(counts)

    def last_half_against_earlier(windows: list) -> float:
        both = [(v0, d0, v1, d1) for v0, d0, v1, d1 in windows if d0 and d1]
        return sum(v1 * d0 / (d0 + d1) for v0, d0, v1, d1 in both) / sum(v0 * d1 / (d0 + d1) for v0, d0, v1, d1 in both)

    members = [p for p in persons if p["person"] in joined]
    last_days = {p["person"]: dt.date.fromisoformat(p["lapse_date"]) for p in members if p["lapse_date"]}
    lapsing = last_half_against_earlier([halves(person, last_day) for person, last_day in last_days.items()])
    staying = last_half_against_earlier([halves(p["person"], last_day) for p in members if not p["lapse_date"] for last_day in set(last_days.values())])
    # The planted fade: visit rates at 39% of themselves on average over the last half, 79% over the one before.
    assert 0.85 < staying < 1.15, staying
    assert lapsing < 0.7 * staying, (lapsing, staying)
