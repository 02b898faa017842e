"""A stale system re-sends old profiles through the real acquire and organize, day by day:
the member's latest own consent choice (by ``marketing_consent_time``, from a profile, an
unsubscribe or a complaint) stands in silver.customers and silver.customer_360, and the
incremental runs agree with a full refresh."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from pyspark.sql import functions as F

from crmlake.acquire import job as acquire
from crmlake.lake import Lake
from crmlake.organize import job as organize

pytestmark = pytest.mark.integration
DAY1, DAY2, DAY3 = dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)
SIGNUP, T3, T5, T6, T7 = ("2026-11-20T09:00:00+08:00", "2026-11-20T10:00:00+08:00", "2026-11-21T10:00:00+08:00",
                          "2026-11-21T11:00:00+08:00", "2026-11-22T10:00:00+08:00")
OWN_OPT_OUT = ["A1", "A2", "A3", "A4", "A5"]


def upsert(account: str, updated: str, consent: bool, consent_time: str, city: str = "Taipei") -> dict:
    return {"account_id": account, "op": "upsert", "updated_time": updated, "signup_time": SIGNUP, "email": f"{account.lower()}@example.com",
            "city": city, "marketing_consent": consent, "marketing_consent_time": consent_time, "account_type": "consumer"}


def put(landing: str, source: str, day: dt.date, name: str, text: str) -> None:
    folder = os.path.join(landing, source, f"dt={day}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
        fh.write(text)


def profiles(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def consent(lake: Lake) -> dict:
    return {r["account_id"]: r["marketing_consent"] for r in lake.read("silver.customers").collect()}


@pytest.fixture(scope="module")
def days(spark, tmp_path_factory):
    """Three days acquired and organized incrementally; yields the lake and silver.customers' consent after each day."""
    from crmlake.config import load_conf

    root = tmp_path_factory.mktemp("stale-resend")
    conf = load_conf("conf/local.yaml", overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports"], environ={})
    landing = conf.landing_root
    # Day 1: everyone signs up consenting (at T3); A6 and A7 too.
    put(landing, "customers", DAY1, "signup.jsonl", profiles(*[upsert(a, T3, True, T3) for a in [*OWN_OPT_OUT, "A6", "A7"]]))
    # Day 2: A1..A5 opt out in their profile (T5); A6 unsubscribes (T6); A7 complains (T6).
    put(landing, "customers", DAY2, "opt-out.jsonl", profiles(*[upsert(a, T5, False, T5) for a in OWN_OPT_OUT]))
    put(landing, "campaign_events", DAY2, "events.csv", f"campaign_id,account_id,event,event_time,revenue\r\nc1,A6,unsubscribed,{T6},\r\nc1,A7,complained,{T6},\r\n")
    # Day 3: a stale system re-sends every day-1 profile (consent true at T3) with a newer
    # updated_time; A6 moves (its upsert repeats T3); A5 alone opts in again, at T7.
    stale = [upsert(a, T7.replace("10:00", "12:00"), True, T3, city="Tainan") for a in [*OWN_OPT_OUT, "A6", "A7"]]
    put(landing, "customers", DAY3, "resend.jsonl", profiles(*stale))
    put(landing, "customers", DAY3, "opt-in.jsonl", profiles(upsert("A5", T7, True, T7)))
    lake = Lake(spark, conf)
    after = {}
    for day in (DAY1, DAY2, DAY3):
        acquire.run(spark, conf, day)
        organize.run(spark, conf, day)
        after[day] = consent(lake)
    return {"lake": lake, "conf": conf, "after": after}


def test_every_member_consents_after_signing_up(days):
    assert days["after"][DAY1] == {a: True for a in [*OWN_OPT_OUT, "A6", "A7"]}


def test_an_own_opt_out_an_unsubscribe_and_a_complaint_each_withdraw(days):
    assert days["after"][DAY2] == {**{a: False for a in OWN_OPT_OUT}, "A6": False, "A7": False}


def test_a_stale_resend_undoes_no_withdrawal_and_a_newer_opt_in_does(days):
    assert days["after"][DAY3] == {"A1": False, "A2": False, "A3": False, "A4": False, "A5": True, "A6": False, "A7": False}
    # The re-sent profile is the latest one (its address is kept), its old consent not.
    (a1,) = days["lake"].read("silver.customers").where(F.col("account_id") == "A1").collect()
    assert (a1["city"], a1["profile_marketing_consent"], a1["consent_withdrawn_at"]) == ("Tainan", True, dt.datetime(2026, 11, 21, 2, 0))


def test_the_customer_360_consents_as_the_accounts_do(days):
    persons = {tuple(r["account_ids"]): r["marketing_consent"] for r in days["lake"].read("silver.customer_360").collect()}
    assert persons == {(a,): a == "A5" for a in [*OWN_OPT_OUT, "A6", "A7"]}


def test_a_full_refresh_gives_the_consent_the_incremental_runs_gave(spark, days):
    lake = days["lake"]
    organize.organize(lake, days["conf"], DAY3, organize.Changes(lake, full_refresh=True))
    assert consent(lake) == days["after"][DAY3]
