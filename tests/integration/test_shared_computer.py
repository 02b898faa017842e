"""Erasing one member of a household who shares a computer (one cookie) with another: the
other's sessions stay theirs alone, in the run after the erasure, on a day grown into the
persons and after a full refresh; the erased member's logged-out visits on that computer
belong to no one; and erasing the other member too leaves nothing of the computer.

A landing zone written by hand (two accounts, one shared cookie), acquired and organized by
the real stages. Ann (A1) and Bo (A2) are two persons (their names differ) who both log in
on the cookie ``home``; Ann also browses there logged out. Without a record that Ann held
the cookie, her erasure would leave Bo its only holder, and the next rebuild would credit
him with her logged-out visits.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest
from pyspark.sql import functions as F

from crmlake.acquire import job as acquire
from crmlake.config import load_conf
from crmlake.lake import Lake
from crmlake.organize import job as organize
from crmlake.people import ACCOUNT, COOKIE, with_session_person_id
from crmlake.privacy import apply_erasures, request_erasure
from hand_landing import deliver

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("shared_computer")]
DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
HOME = "home"   # the household's computer


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def profile(account_id: str, name: str, email: str, birth_year: int) -> dict:
    when = _iso(at(DAY_1, 0))
    return {"account_id": account_id, "op": "upsert", "updated_time": when, "signup_time": when, "email": email, "name": name,
            "birth_year": birth_year, "marketing_consent": True, "account_type": "consumer"}


def click(event_id: str, moment: dt.datetime, account_id: str | None, event_type: str = "page_view") -> dict:
    return {"event_id": event_id, "event_time": _iso(moment), "received_time": _iso(moment), "event_type": event_type,
            "anonymous_id": HOME, "account_id": account_id, "tracking_consent": True, "page_url": "/", "device": "desktop"}


# Each visit's first event (a session starts there), to whom it is credited by hand: "ann", "bo" or no one.
ANN_LOGGED_IN, ANN_LOGGED_OUT, BO_LOGGED_IN = at(DAY_1, 1), at(DAY_1, 3), at(DAY_1, 5)
BO_NEXT_DAY, SOMEONE_NEXT_DAY = at(DAY_2, 2), at(DAY_2, 6)
DAY_1_CLICKS = [
    click("e1", ANN_LOGGED_IN, "A1", "login"), click("e2", at(DAY_1, 1, 5), "A1"),
    click("e3", ANN_LOGGED_OUT, None), click("e4", at(DAY_1, 3, 5), None, "product_view"),   # Ann, logged out
    click("e5", BO_LOGGED_IN, "A2", "login"), click("e6", at(DAY_1, 5, 10), "A2"),
]
DAY_2_CLICKS = [
    click("e7", BO_NEXT_DAY, "A2", "login"), click("e8", at(DAY_2, 2, 5), "A2"),            # a new link of the cookie: the day grows persons
    click("e9", SOMEONE_NEXT_DAY, None),
]


def visit(account_id: str | None, start: dt.datetime) -> tuple:
    """A session as :func:`credited` keys it: its account and its start in seconds since the epoch."""
    return account_id, int(start.timestamp())


def credited(lake: Lake) -> dict:
    """Return each session's :func:`visit` -> whose it is: "ann", "bo" (the person the map gives
    that account) or None (no person)."""
    identity_map = lake.read("silver.identity_map")
    persons = {r["identifier"]: r["person_id"] for r in identity_map.where(F.col("identifier_type") == ACCOUNT).collect()}
    names = {persons[a]: name for a, name in (("A1", "ann"), ("A2", "bo")) if a in persons}
    sessions = with_session_person_id(lake.read("silver.sessions"), identity_map).select("account_id", F.unix_seconds("session_start").alias("start"), "person_id")
    return {(r["account_id"], r["start"]): names.get(r["person_id"], r["person_id"]) for r in sessions.collect()}


def rows_holding(lake: Lake, value: str) -> dict:
    """Return, per table of the catalog that exists, its rows with ``value`` in a string column."""
    found = {}
    for name, spec in lake.catalog.tables.items():
        columns = [c for c, kind in spec.columns.items() if kind == "string"]
        if lake.exists(name) and columns:
            found[name] = lake.read(name).where(reduce(lambda a, b: a | b, [F.col(c) == value for c in columns])).count()
    return found


def observe(lake: Lake, facts: dict | None = None) -> dict:
    """What the test asserts after one step: whose each session is, whether the map attaches the
    shared cookie, the accounts in the map, the persons in customer 360, the rows left of the cookie."""
    identity_map = lake.read("silver.identity_map")
    return {
        "sessions": credited(lake),
        "cookie_in_map": identity_map.where((F.col("identifier_type") == COOKIE) & (F.col("identifier") == HOME)).count(),
        "accounts_in_map": sorted(r["identifier"] for r in identity_map.where(F.col("identifier_type") == ACCOUNT).collect()),
        "customer_360": sorted(a for r in lake.read("silver.customer_360").collect() for a in r["account_ids"]),
        "rows_of_cookie": rows_holding(lake, HOME),
        "facts": facts or {},
    }


@pytest.fixture(scope="module")
def household(spark, tmp_path_factory):
    """Day 1 organized; Ann erased (as ``crmlake erase`` does) and organized again; day 2 grown
    into the persons; a full refresh; then Bo erased too. What each step left, by step."""
    root = tmp_path_factory.mktemp("shared_computer")
    conf = load_conf("conf/local.yaml", overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                                   f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/mlartifacts"], environ={})
    lake, landing = Lake(spark, conf), conf.landing_root
    deliver(landing, "customers", DAY_1, [profile("A1", "Ann Lee", "ann@example.com", 1980), profile("A2", "Bo Lee", "bo@example.com", 1978)])
    deliver(landing, "clickstream", DAY_1, DAY_1_CLICKS)
    steps = {}
    acquire.run(spark, conf, DAY_1)
    steps["before"] = observe(lake, organize.run(spark, conf, DAY_1))
    request_erasure(lake, ["A1"], dt.datetime.now(dt.timezone.utc))
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    steps["ann_erased"] = observe(lake, organize.run(spark, conf, DAY_1))
    steps["ann_left"] = {t: n for value in ("A1", "ann@example.com") for t, n in rows_holding(lake, value).items() if n}
    deliver(landing, "clickstream", DAY_2, DAY_2_CLICKS)
    acquire.run(spark, conf, DAY_2)
    steps["day_grown"] = observe(lake, organize.run(spark, conf, DAY_2))
    steps["full_refresh"] = observe(lake, organize.run(spark, conf.with_overrides(["organize.full_refresh=true"]), DAY_2))
    request_erasure(lake, ["A2"], dt.datetime.now(dt.timezone.utc))
    assert apply_erasures(lake, conf)["erased_accounts"] == 1
    steps["both_erased"] = observe(lake, organize.run(spark, conf, DAY_2))
    return steps


def test_before_any_erasure_each_member_has_their_own_logged_in_visits_and_the_shared_computer_is_no_one_s(household):
    before = household["before"]
    assert before["sessions"] == {visit("A1", ANN_LOGGED_IN): "ann", visit(None, ANN_LOGGED_OUT): None, visit("A2", BO_LOGGED_IN): "bo"}
    assert before["cookie_in_map"] == 0 and before["customer_360"] == ["A1", "A2"]


def test_erasing_one_member_leaves_the_other_s_sessions_as_they_were_and_hers_logged_out_to_no_one(household):
    erased = household["ann_erased"]
    assert erased["facts"]["identity_rebuilt"] and not erased["facts"]["identity_grown"]
    assert erased["sessions"] == {visit(None, ANN_LOGGED_OUT): None, visit("A2", BO_LOGGED_IN): "bo"}
    assert erased["cookie_in_map"] == 0
    assert erased["accounts_in_map"] == ["A2"] and erased["customer_360"] == ["A2"]


def test_the_erased_member_is_nowhere_but_in_the_marks_of_her_erasure(household):
    # Her erase request in bronze, the blank row that marks her account erased, and its erase version.
    assert household["ann_left"] == {"bronze.customers": 1, "silver.customers": 1, "silver.customer_history": 1}


def test_a_day_grown_into_the_persons_after_the_erasure_keeps_the_shared_computer_no_one_s(household):
    grown = household["day_grown"]
    assert grown["facts"]["identity_grown"]   # the cookie's new link grew the map, no rebuild
    assert grown["sessions"] == {
        visit(None, ANN_LOGGED_OUT): None, visit("A2", BO_LOGGED_IN): "bo", visit("A2", BO_NEXT_DAY): "bo", visit(None, SOMEONE_NEXT_DAY): None,
    }
    assert grown["cookie_in_map"] == 0 and grown["accounts_in_map"] == ["A2"]


def test_a_full_refresh_after_the_erasure_keeps_the_shared_computer_no_one_s(household):
    refreshed = household["full_refresh"]
    assert refreshed["facts"]["mode"] == "full_refresh"
    assert refreshed["sessions"] == household["day_grown"]["sessions"]
    assert refreshed["cookie_in_map"] == 0 and refreshed["accounts_in_map"] == ["A2"] and refreshed["customer_360"] == ["A2"]


def test_erasing_the_other_member_too_leaves_nothing_of_the_shared_computer(household):
    both = household["both_erased"]
    assert set(both["rows_of_cookie"]) >= {"bronze.clickstream", "silver.sessions", "silver.identity_links"}
    assert set(both["rows_of_cookie"].values()) == {0}
    assert both["sessions"] == {} and both["accounts_in_map"] == [] and both["customer_360"] == []
