"""First touch, early value and referrals on a few hand-made rows, answers worked out by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.analyze.acquisition import acquisition_sources, acquisitions, new_customers, referral_months, with_early_value, with_first_touch
from crmlake.organize.transforms import sessionize
from crmlake.people import referrals

MEMBERS = "person_id string, signup_time timestamp"
LINES = "person_id string, order_time timestamp, order_date date, status string, line_amount decimal(18,2)"
SESSIONS = "session_id string, person_id string, session_start timestamp, utm_source string, referrer_host string"
RUN_DATE = dt.date(2026, 11, 30)


def at(day: int, hour: float = 0, month: int = 11) -> dt.datetime:
    """An instant of 2026 (the tests' session clock and business time zone are both UTC)."""
    return dt.datetime(2026, month, day) + dt.timedelta(hours=hour)


def line(person_id, when, amount, status="completed"):
    return (person_id, when, when.date(), status, Decimal(amount))


def first_touches(spark, members, lines, sessions) -> dict:
    acquired = acquisitions(spark.createDataFrame(members, MEMBERS), spark.createDataFrame(lines, LINES), "UTC")
    touched = with_first_touch(new_customers(acquired, dt.date(2026, 11, 1), RUN_DATE), spark.createDataFrame(sessions, SESSIONS))
    return {r["person_id"]: (r["acquired_at"], r["source"]) for r in touched.collect()}


def test_the_first_visit_before_signup_gives_the_source_whatever_comes_later(spark):
    sessions = [
        ("s2", "P1", at(3, 11), None, "google.com"),   # before signup too, but later than s1
        ("s1", "P1", at(3, 10), "facebook", None),     # the first visit
        ("s3", "P1", at(3, 13), "newsletter", None),   # after signup
        ("s0", None, at(3, 9), "instagram", None),     # nobody's (no tracking consent, or no link)
    ]
    assert first_touches(spark, [("P1", at(3, 12))], [], sessions) == {"P1": (at(3, 12), "facebook")}


def test_an_order_before_signup_is_the_acquisition_and_a_tagged_visit_after_it_does_not_count(spark):
    lines = [line("P1", at(2, 10), "50.00"), line("P1", at(1, 8), "80.00", status="cancelled")]   # a cancelled order acquires no one
    sessions = [("s1", "P1", at(2, 9), None, None), ("s2", "P1", at(3, 9), "facebook", None)]      # s2: after the order, before signup
    assert first_touches(spark, [("P1", at(5, 12))], lines, sessions) == {"P1": (at(2, 10), "direct")}


def test_a_visit_without_utm_takes_its_referrer_host_and_no_visit_before_acquisition_is_no_visit(spark):
    members = [("P1", at(3, 12)), ("P2", at(3, 12)), ("P3", at(3, 12)), ("P4", at(10, 9, month=10))]   # P4: before the lake's first day
    sessions = [("s1", "P1", at(3, 11), None, "google.com"), ("s2", "P2", at(3, 11), None, None), ("s3", "P3", at(4), "facebook", None)]
    assert first_touches(spark, members, [], sessions) == {"P1": (at(3, 12), "google.com"), "P2": (at(3, 12), "direct"), "P3": (at(3, 12), "(no visit)")}


def test_a_session_comes_from_its_entry_events_utm_source_else_its_referrers_host(spark):
    schema = ("event_id string, event_time timestamp, event_type string, anonymous_id string, account_id string, tracking_consent boolean, "
              "page_url string, device string, utm_campaign string, utm_source string, referrer_url string")
    clicks = [
        ("e1", at(3, 10), "page_view", "ck1", None, True, "/", "app", None, " FaceBook ", "https://WWW.Google.com/search?q=x"),
        ("e2", at(3, 10.1), "page_view", "ck1", None, True, "/p", "app", None, "newsletter", "https://other.example/"),
        ("e3", at(4, 10), "page_view", "ck1", None, True, "/", "app", None, "", "https://www.reviews.example.org/best"),
        ("e4", at(5, 10), "page_view", "ck1", None, True, "/", "app", None, None, "not a url"),
    ]
    found = {r["entry_page"] + str(r["session_start"].day): (r["utm_source"], r["referrer_host"]) for r in sessionize(spark.createDataFrame(clicks, schema)).collect()}
    assert found == {"/3": ("facebook", "google.com"), "/4": (None, "reviews.example.org"), "/5": (None, None)}


def test_early_value_counts_completed_revenue_in_the_window_and_shows_an_unfinished_one_to_date(spark):
    customers = spark.createDataFrame([("P1", dt.date(2026, 8, 1), "google.com"), ("P2", dt.date(2026, 8, 20), "google.com")],
                                      "person_id string, acquisition_date date, source string")
    lines = spark.createDataFrame([
        line("P1", at(1, 9, month=8), "100.00"),
        line("P1", at(29, 20, month=10), "50.00"),                     # day 90 of P1's window (Aug 1 + 89 days)
        line("P1", at(30, 1, month=10), "70.00"),                      # day 91: out
        line("P1", at(2, month=8), "30.00", status="returned"),
        line("P2", at(30, month=11), "40.00"),                         # P2's window goes on to Nov 17: out
    ], LINES)
    run_date = dt.date(2026, 11, 15)   # P1's window is over; P2 has had Aug 20 to Nov 15: 88 days
    (row,) = acquisition_sources(with_early_value(customers, lines, run_date, 90), 90).collect()
    assert row.asDict() == {"acquisition_month": dt.date(2026, 8, 1), "source": "google.com", "new_customers": 2, "buyers_in_window": 1,
                            "value": Decimal("150.00"), "value_per_customer": 75.0, "value_days": 90, "window_complete": False, "min_days_observed": 88}


def test_referrals_count_each_referred_member_once_and_their_referrers(spark):
    accounts = spark.createDataFrame([
        ("A1", "P1", None), ("A2", "P2", "A1"), ("A3", "P3", "A1"), ("A4", "P3", "A5"), ("A5", "P5", None),   # P3: two accounts, two referrers
        ("A6", "P6", "A7"), ("A7", "P6", None),   # referred by their own other account: no referral
        ("A8", "P8", "A99"),                      # by an account no one holds
    ], "account_id string, person_id string, referred_by string")
    pairs = referrals(accounts, spark.createDataFrame([("P3",)], "person_id string"))
    assert sorted(map(tuple, pairs.collect())) == [("P1", "P2", False), ("P1", "P3", True), ("P5", "P3", True)]
    customers = spark.createDataFrame([("P2", dt.date(2026, 10, 3)), ("P3", dt.date(2026, 10, 9)), ("P6", dt.date(2026, 11, 1))], "person_id string, acquisition_date date")
    assert [r.asDict() for r in referral_months(customers, pairs).collect()] == [
        {"acquisition_month": dt.date(2026, 10, 1), "referrers": 2, "members_referred": 2, "referred_buyers": 1}
    ]
