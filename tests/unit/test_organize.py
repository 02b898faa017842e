"""Organize's transforms on a few hand-built rows with answers worked out by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.organize.transforms import latest_order_lines, latest_profiles, sessionize, with_consent_state

T0 = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.timezone.utc)
CLICK_SCHEMA = "event_id string, event_time timestamp, event_type string, anonymous_id string, account_id string, tracking_consent boolean, page_url string, device string, utm_campaign string"


def click(spark_rows, event_id, minutes, anonymous_id="ck1", account_id=None, consent=True, event_type="page_view"):
    spark_rows.append((event_id, T0 + dt.timedelta(minutes=minutes), event_type, anonymous_id, account_id, consent, f"/{event_id}", "app", None))


def test_session_splits_only_after_more_than_30_minutes(spark):
    rows = []
    click(rows, "a", 0)
    click(rows, "b", 30)            # exactly 30 minutes later: same session
    click(rows, "c", 60.5)          # 30.5 minutes after b: new session (and across midnight UTC+0)
    click(rows, "d", 61, event_type="purchase")
    sessions = sessionize(spark.createDataFrame(rows, CLICK_SCHEMA), 30).orderBy("session_start").collect()
    assert [(s["entry_page"], s["exit_page"], s["events"], s["converted"]) for s in sessions] == [
        ("/a", "/b", 2, False),
        ("/c", "/d", 2, True),
    ]


def test_out_of_order_events_are_sessionized_by_event_time(spark):
    rows = []
    click(rows, "late", 10)
    click(rows, "early", 0)
    (only,) = sessionize(spark.createDataFrame(rows, CLICK_SCHEMA), 30).collect()
    assert (only["entry_page"], only["exit_page"]) == ("/early", "/late")


def test_events_without_tracking_consent_never_link_an_account(spark):
    rows = []
    click(rows, "a", 0, account_id="A1", consent=False)
    click(rows, "b", 1, anonymous_id="ck2", account_id="A2", consent=True)
    by_cookie = {s["anonymous_id"]: s["account_id"] for s in sessionize(spark.createDataFrame(rows, CLICK_SCHEMA)).collect()}
    assert by_cookie == {"ck1": None, "ck2": "A2"}


def test_latest_order_line_status_wins_whichever_file(spark):
    schema = "order_id string, line_no int, order_time timestamp, order_date date, account_id string, guest_email string, channel string, store_id string, product_id string, category string, quantity int, unit_price decimal(18,2), discount decimal(18,2), currency string, status string, updated_time timestamp, ingested_at timestamp"
    base = ("O1", 1, T0, T0.date(), "A1", None, "web", None, "p", "books", 2, Decimal("100.00"), Decimal("5.00"), "TWD")
    rows = [base + ("returned", T0 + dt.timedelta(days=2), T0), base + ("completed", T0, T0 + dt.timedelta(days=3))]
    (line,) = latest_order_lines(spark.createDataFrame(rows, schema)).collect()
    assert (line["status"], line["line_amount"]) == ("returned", Decimal("195.00"))


PROFILE_SCHEMA = "account_id string, op string, updated_time timestamp, signup_time timestamp, email string, phone string, name string, gender string, birth_year int, occupation string, city string, income_band string, marketing_consent boolean, referred_by string, account_type string, company_id string, ingested_at timestamp"


def profile(account, op, day, email="a@x", consent=True):
    ts = T0 + dt.timedelta(days=day)
    return (account, op, ts, T0, email, "0912", "Ann", "f", 1990, "nurse", "Taipei", "mid", consent, None, "consumer", None, ts)


def test_erase_as_latest_change_blanks_personal_fields(spark):
    rows = [profile("A1", "upsert", 0), profile("A1", "erase", 1, email=None, consent=None), profile("A2", "upsert", 0)]
    by_account = {r["account_id"]: r for r in latest_profiles(spark.createDataFrame(rows, PROFILE_SCHEMA)).collect()}
    assert by_account["A1"]["erased"] and by_account["A1"]["email"] is None and by_account["A1"]["name"] is None
    assert by_account["A1"]["profile_marketing_consent"] is False
    assert by_account["A2"]["email"] == "a@x" and not by_account["A2"]["erased"]


def test_unsubscribe_after_the_profile_withdraws_consent(spark):
    profiles = latest_profiles(spark.createDataFrame([profile("A1", "upsert", 0), profile("A2", "upsert", 5)], PROFILE_SCHEMA))
    events = spark.createDataFrame(
        [("c1", "A1", "unsubscribed", T0 + dt.timedelta(days=1)), ("c1", "A2", "complained", T0 + dt.timedelta(days=1))],
        "campaign_id string, account_id string, event string, event_time timestamp",
    )
    consent = {r["account_id"]: r["marketing_consent"] for r in with_consent_state(profiles, events).collect()}
    # A2 opted in again (profile updated on day 5) after complaining on day 1.
    assert consent == {"A1": False, "A2": True}
