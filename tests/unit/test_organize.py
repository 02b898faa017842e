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


ACCOUNT_360_SCHEMA = (
    "account_id string, person_id string, erased boolean, profile_updated_at timestamp, signup_time timestamp, email string, phone string, "
    "name string, gender string, birth_year int, occupation string, city string, income_band string, marketing_consent boolean, "
    "consent_withdrawn_at timestamp, referred_by string"
)
RUN_DATE = dt.date(2026, 11, 21)


def people_360(spark, accounts, lines=(), sessions=()):
    from crmlake.organize.customer360 import StaleRules, customer_360

    line_schema = "order_id string, person_id string, order_time timestamp, status string, category string, unit_price decimal(18,2), line_amount decimal(18,2)"
    session_schema = "person_id string, session_start timestamp, session_end timestamp, device string"
    interaction_schema = "person_id string, type string, opened_time timestamp, closed_time timestamp, satisfaction int"
    return {
        r["person_id"]: r
        for r in customer_360(
            spark.createDataFrame(accounts, ACCOUNT_360_SCHEMA), spark.createDataFrame(list(lines), line_schema),
            spark.createDataFrame(list(sessions), session_schema), spark.createDataFrame([], interaction_schema),
            RUN_DATE, "UTC", StaleRules(),
        ).collect()
    }


def account(account_id, person_id, updated, birth_year=1990, occupation="nurse", consent=True, referred_by=None, erased=False):
    return (account_id, person_id, erased, updated, T0 - dt.timedelta(days=900), None, None, None, "f", birth_year, occupation, "Taipei", "mid", consent, None, referred_by)


def test_declared_student_too_old_and_untouched_profile_are_flagged_stale(spark):
    recent = T0 - dt.timedelta(days=10)
    people = people_360(spark, [
        account("A1", "P1", recent, birth_year=1985, occupation="student"),   # 41 in 2026: not a student any more
        account("A2", "P2", recent, birth_year=2003, occupation="student"),   # 23: believable
        account("A3", "P3", T0 - dt.timedelta(days=800)),                     # untouched for over two years
        account("A4", "P4", recent, birth_year=1890),                          # 136 years old
    ])
    flags = {p: (r["stale_occupation"], r["stale_profile"], r["implausible_birth_year"], r["declared_stale"]) for p, r in people.items()}
    assert flags == {
        "P1": (True, False, False, True),
        "P2": (False, False, False, False),
        "P3": (False, True, False, True),
        "P4": (False, False, True, True),
    }


def test_a_person_counts_once_with_every_account_consenting_and_referrals_that_bought(spark):
    recent = T0 - dt.timedelta(days=10)
    people = people_360(
        spark,
        [account("A1", "P1", recent), account("A2", "P1", recent - dt.timedelta(days=1), consent=False),
         account("A3", "P2", recent, referred_by="A2"), account("A4", "P3", recent, referred_by="A1")],
        lines=[("O1", "P2", T0 - dt.timedelta(days=5), "completed", "books", Decimal("100.00"), Decimal("100.00"))],
        sessions=[("P1", T0 - dt.timedelta(days=40), T0 - dt.timedelta(days=40), "app")],
    )
    one = people["P1"]
    assert (one["accounts"], one["primary_account_id"], one["marketing_consent"]) == (2, "A1", False)
    assert (one["members_referred"], one["referred_buyers"]) == (2, 1)
    assert (one["active_30d"], one["active_90d"], one["preferred_device"]) == (False, True, "app")
    assert (people["P2"]["orders"], people["P2"]["preferred_category"], people["P2"]["active_30d"]) == (1, "books", True)
