"""Organize's transforms on a few hand-built rows with answers worked out by hand."""

import datetime as dt
import hashlib
import random
import re
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from crmlake.config import load_conf
from crmlake.orders import latest_order_lines, lines_without_rate
from crmlake.organize.transforms import consent_choices, latest_profiles, session_spans, sessionize, with_consent_state, within_spans

T0 = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.timezone.utc)
CLICK_SCHEMA = "event_id string, event_time timestamp, event_type string, anonymous_id string, account_id string, tracking_consent boolean, page_url string, device string, utm_campaign string, utm_source string, referrer_url string"


def click(spark_rows, event_id, minutes, anonymous_id="ck1", account_id=None, consent=True, event_type="page_view"):
    spark_rows.append((event_id, T0 + dt.timedelta(minutes=minutes), event_type, anonymous_id, account_id, consent, f"/{event_id}", "app", None, None, None))


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


def test_a_cookie_s_refused_and_consented_events_never_share_a_session(spark):
    rows = []
    click(rows, "a", 0, consent=False)
    click(rows, "b", 1, account_id="A1", consent=True, event_type="login")
    click(rows, "c", 2, consent=False, event_type="purchase")
    sessions = {s["tracking_consent"]: s for s in sessionize(spark.createDataFrame(rows, CLICK_SCHEMA)).collect()}
    assert {k: (s["events"], s["account_id"], s["converted"]) for k, s in sessions.items()} == {
        False: (2, None, True),
        True: (1, "A1", False),
    }


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# Clicks that make sessionization's ties and nulls matter (columns as CLICK_SCHEMA). Cookie v1,
# consented: m5 and m7 at the same instant (m5 first: its null page and device are the session's),
# b2 exactly 30 minutes later (same session; the session's smallest event_id although not its
# first), x1 30 minutes and half a second after b2 (a gap of 1800 whole seconds: same session; a
# null page and event type), c3 30 minutes and 0.6 s after x1 (1801 whole seconds: a new session
# of one event, its source blank), then a day later d4 and d5 at one instant (two campaigns). The
# same cookie's refused events (one of unknown consent, counted as refused) make a session of their
# own, without an account; v2 has a one-event session.
HOSTILE_CLICKS = [
    ("m5", at(0), "page_view", "v1", None, True, None, None, None, "  Google ", "https://WWW.Example.com/a"),
    ("m7", at(0), "product_view", "v1", "A2", True, "/p", "mobile", None, "bing", None),
    ("b2", at(1800), "purchase", "v1", "A1", True, "/checkout", "mobile", "spring", None, None),
    ("x1", at(3600.5), None, "v1", None, True, None, "desktop", None, None, None),
    ("c3", at(5401.1), "add_to_cart", "v1", None, True, "/cart", "desktop", None, "", None),
    ("d4", at(90000), "checkout_start", "v1", "A1", True, "/pay", "app", "x", "Mail", "http://news.example.org:8080/p?q=1"),
    ("d5", at(90000), "page_view", "v1", None, True, "/home", None, "y", None, None),
    ("r1", at(0), "purchase", "v1", "A1", False, "/r", "app", "refused", None, None),
    ("r2", at(60), "page_view", "v1", "A3", None, "/s", "app", None, None, None),
    ("q0", at(0), "login", "v2", "B1", True, "/login", "tablet", None, None, "android-app://com.example.app"),
]


def test_sessions_are_those_duckdb_computes_from_the_bench_sql_on_hostile_clicks(spark, tmp_path):
    """Every column of every session equals DuckDB's (the bench's SESSION_SQL) on the same
    Parquet, ties and nulls included; and a few answers worked out by hand."""
    import duckdb

    from benchmarks.organize import SESSION_SQL

    spark.createDataFrame(HOSTILE_CLICKS, CLICK_SCHEMA).write.parquet(f"file://{tmp_path}/clicks")
    sessionize(spark.read.parquet(f"file://{tmp_path}/clicks"), 30).write.parquet(f"file://{tmp_path}/spark")
    with duckdb.connect() as db:
        db.execute(SESSION_SQL.format(gap=30 * 60, source=f"{tmp_path}/clicks", target=f"{tmp_path}/duckdb.parquet"))
        theirs, ours = [db.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY session_id") for path in (f"{tmp_path}/duckdb.parquet", f"{tmp_path}/spark/*.parquet")]
        theirs, ours = (theirs.columns, theirs.fetchall()), (ours.columns, ours.fetchall())
    assert ours == theirs
    sessions = {row[0]: dict(zip(ours[0], row)) for row in ours[1]}
    assert len(sessions) == 5
    first = sessions[hashlib.sha256(b"v1:b2").hexdigest()[:32]]
    assert (first["entry_page"], first["exit_page"], first["device"], first["events"], first["pages"], first["account_id"], first["converted"]) == (None, None, None, 4, 1, "A2", True)
    assert (first["utm_source"], first["referrer_host"], first["utm_campaign"]) == ("google", "example.com", "spring")


def test_sessionize_sorts_the_clicks_once(spark):
    """One shuffle by visitor and one sort by visitor and time: no second sort for a grouping."""
    sessions = sessionize(spark.createDataFrame(HOSTILE_CLICKS, CLICK_SCHEMA))
    # Before it runs, the plan (under AQE's root node, if any) is the physical plan as planned.
    operators = re.findall(r"^[\s:+|-]*(\w+)", sessions._jdf.queryExecution().executedPlan().toString(), re.M)
    assert "Window" in operators
    assert (operators.count("Exchange"), operators.count("Sort")) == (1, 1)

def test_new_clicks_rebuild_only_the_sessions_within_a_gap_and_give_the_full_sessionization(spark):
    """Old clicks sessionized; then new ones arrive, late ones among them: a click that joins
    two old sessions, one that extends a session past midnight, one a gap and a fraction of a
    second after a session (the gap is counted in whole seconds: same session), and clicks on
    a new day of visitors with older sessions. Rebuilding the sessions inside the spans and
    keeping the others gives the sessionization of every click."""
    rng = random.Random(11)
    old, new = [], []
    for n in range(40):  # bursts of clicks 0-40 minutes apart, with microseconds, over four days
        cookie, consent = f"ck{n}", n % 5 != 0
        for day in range(4):
            t = day * 1440 + rng.randrange(0, 1200)
            for k in range(rng.randrange(1, 6)):
                t += rng.choice((0.5, 5, 29, 30, 40)) + rng.random() / 1000
                click(new if day == 3 and k % 2 else old, f"{cookie}-{day}-{k}", t, anonymous_id=cookie, consent=consent and k != 3)
    for event_id, minutes in (("a1", 100), ("a2", 160), ("b1", 1430), ("c1", 2000)):
        click(old, event_id, minutes, anonymous_id="planted")
    for event_id, minutes in (("a-bridge", 130), ("b-midnight", 1455), ("c-fraction", 2030.0099), ("d-later", 5000)):
        click(new, event_id, minutes, anonymous_id="planted")
    before = sessionize(spark.createDataFrame(old, CLICK_SCHEMA)).cache()
    clicks, new_clicks = spark.createDataFrame(old + new, CLICK_SCHEMA), spark.createDataFrame(new, CLICK_SCHEMA)

    spans = session_spans(new_clicks, before).cache()
    rebuilt = sessionize(within_spans(clicks, spans, "event_time", "event_time")).cache()
    gone = within_spans(before, spans, "session_start", "session_end").select("session_id")
    kept = before.join(gone.unionByName(rebuilt.select("session_id")), "session_id", "left_anti")
    assert sorted(map(tuple, kept.unionByName(rebuilt).collect())) == sorted(map(tuple, sessionize(clicks).collect()))
    planted = sorted((s["entry_page"], s["exit_page"], s["events"]) for s in rebuilt.where("anonymous_id = 'planted'").collect())
    # a1 and a2 are joined by the bridge; b1 runs past midnight; c1 takes the click 30 minutes and 0.6 s later; d stands alone.
    assert planted == [("/a1", "/a2", 3), ("/b1", "/b-midnight", 2), ("/c1", "/c-fraction", 2), ("/d-later", "/d-later", 1)]
    assert rebuilt.count() < before.count() / 2   # the other sessions were not rebuilt


def test_a_session_without_tracking_consent_is_never_joined_to_a_person(spark):
    from crmlake.people import with_session_person_id

    identity_map = spark.createDataFrame(
        [("account_id", "A1", "P1"), ("anonymous_id", "ck1", "P1"), ("anonymous_id", "ck2", "P2")], "identifier_type string, identifier string, person_id string"
    )
    sessions = spark.createDataFrame(
        [("s1", "ck1", True, None), ("s2", "ck1", False, None), ("s3", "ck2", False, "A1"), ("s4", "ck9", True, "A1")],
        "session_id string, anonymous_id string, tracking_consent boolean, account_id string",
    )
    people = {r["session_id"]: r["person_id"] for r in with_session_person_id(sessions, identity_map).collect()}
    # s2: the cookie is a known person's, but this session refused tracking; s3: a refused
    # session never carries an account (sessionize), and one that did is still no evidence.
    assert people == {"s1": "P1", "s2": None, "s3": None, "s4": "P1"}


def test_latest_order_line_status_wins_whichever_file(spark):
    schema = "order_id string, line_no int, order_time timestamp, order_date date, account_id string, guest_email string, channel string, store_id string, product_id string, category string, quantity int, unit_price decimal(18,2), discount decimal(18,2), currency string, status string, updated_time timestamp, ingested_at timestamp"
    base = ("O1", 1, T0, T0.date(), "A1", None, "web", None, "p", "books", 2, Decimal("100.00"), Decimal("5.00"), "TWD")
    rows = [base + ("returned", T0 + dt.timedelta(days=2), T0), base + ("completed", T0, T0 + dt.timedelta(days=3))]
    (line,) = latest_order_lines(spark.createDataFrame(rows, schema), load_conf(environ={}).business).collect()
    assert (line["status"], line["line_amount"]) == ("returned", Decimal("195.00"))


def test_order_lines_money_is_in_the_business_currency_and_a_currency_without_a_rate_reads_null(spark):
    schema = "order_id string, line_no int, order_time timestamp, order_date date, account_id string, guest_email string, channel string, store_id string, product_id string, category string, quantity int, unit_price decimal(18,2), discount decimal(18,2), currency string, status string, updated_time timestamp, ingested_at timestamp"
    line = lambda order, currency, price, discount: (order, 1, T0, T0.date(), "A1", None, "web", None, "p", "books", 3, Decimal(price),   # noqa: E731
                                                     None if discount is None else Decimal(discount), currency, "completed", T0, T0)
    rows = [line("TW", "TWD", "100.00", "5.00"), line("NONE", None, "100.00", None), line("US", " usd", "10.00", "1.50"), line("JP", "JPY", "1000.00", "0.00")]
    business = load_conf(environ={}).business.model_copy(update={"exchange_rates": {"USD": 31.5}})
    versions = spark.createDataFrame(rows, schema)
    lines = latest_order_lines(versions, business)
    money = {r["order_id"]: (r["currency"], r["unit_price"], r["discount"], r["line_amount"]) for r in lines.collect()}
    assert money == {
        "TW": ("TWD", Decimal("100.00"), Decimal("5.00"), Decimal("295.00")),
        "NONE": ("TWD", Decimal("100.00"), Decimal("0.00"), Decimal("300.00")),          # the contract's currency of a line naming none
        "US": ("USD", Decimal("315.00"), Decimal("47.25"), Decimal("897.75")),          # (3 x 10.00 - 1.50) x 31.5, its code trimmed and capitalised
        "JP": ("JPY", None, None, None),                                                # no rate: no money, never summed as TWD
    }
    assert lines_without_rate(versions, business) == {"JPY": 1}
    for rates, error in (({"usd": 31.5}, "'usd' is not an ISO-4217 currency code"), ({"USD": 0.0}, "USD: 0.0 is no exchange rate"),
                         ({"USD": float("inf")}, "USD: inf is no exchange rate"), ({"TWD": 1.0}, "TWD is business.currency itself")):
        with pytest.raises(ValueError, match=error):
            business.model_validate({**business.model_dump(), "exchange_rates": rates})


PROFILE_SCHEMA = "account_id string, op string, updated_time timestamp, signup_time timestamp, email string, phone string, name string, gender string, birth_year int, occupation string, city string, income_band string, marketing_consent boolean, marketing_consent_time timestamp, referred_by string, account_type string, company_id string, ingested_at timestamp"


def profile(account, op, day, email="a@x", consent=True, consent_day=0, city="Taipei"):
    ts = T0 + dt.timedelta(days=day)
    consent_time = None if consent_day is None else T0 + dt.timedelta(days=consent_day)
    return (account, op, ts, T0, email, "0912", "Ann", "f", 1990, "nurse", city, "mid", consent, consent_time, None, "consumer", None, ts)


def test_erase_as_latest_change_blanks_personal_fields(spark):
    rows = [profile("A1", "upsert", 0), profile("A1", "erase", 1, email=None, consent=None), profile("A2", "upsert", 0)]
    by_account = {r["account_id"]: r for r in latest_profiles(spark.createDataFrame(rows, PROFILE_SCHEMA)).collect()}
    assert by_account["A1"]["erased"] and by_account["A1"]["email"] is None and by_account["A1"]["name"] is None
    assert by_account["A1"]["profile_marketing_consent"] is False
    assert by_account["A2"]["email"] == "a@x" and not by_account["A2"]["erased"]


def naive_day(day):
    """T0 + ``day`` days as Spark collects a timestamp here (naive, in the session's UTC)."""
    return (T0 + dt.timedelta(days=day)).replace(tzinfo=None)


def consent_of(spark, profile_rows, withdrawals):
    """Return {account: (marketing_consent, consent_withdrawn_at)} for the profile changes and
    campaign events (account, event, day) given."""
    changes = spark.createDataFrame(profile_rows, PROFILE_SCHEMA)
    events = spark.createDataFrame(
        [("c1", account, event, T0 + dt.timedelta(days=day)) for account, event, day in withdrawals],
        "campaign_id string, account_id string, event string, event_time timestamp",
    )
    state = with_consent_state(latest_profiles(changes), consent_choices(changes, events))
    return {r["account_id"]: (r["marketing_consent"], r["consent_withdrawn_at"]) for r in state.collect()}


def test_unsubscribe_after_the_profile_withdraws_consent(spark):
    consent = consent_of(spark, [profile("A1", "upsert", 0), profile("A2", "upsert", 0)], [("A1", "unsubscribed", 1), ("A2", "opened", 1)])
    assert consent == {"A1": (False, naive_day(1)), "A2": (True, None)}


def test_a_profile_update_with_the_old_consent_time_does_not_undo_a_complaint(spark):
    # A2 complained on day 1 and moved on day 5: the update repeats consent set on day 0.
    consent = consent_of(spark, [profile("A2", "upsert", 0), profile("A2", "upsert", 5, city="Tainan")], [("A2", "complained", 1)])
    assert consent == {"A2": (False, naive_day(1))}


def test_a_newer_consent_time_opts_in_again_after_an_unsubscribe(spark):
    rows = [profile("A3", "upsert", 0), profile("A3", "upsert", 5, consent_day=5), profile("A4", "upsert", 5, consent_day=None)]
    consent = consent_of(spark, rows, [("A3", "unsubscribed", 1), ("A4", "unsubscribed", 1)])
    # A3 set consent again on day 5, after the unsubscribe; A4's update carries no consent time.
    assert consent == {"A3": (True, None), "A4": (False, naive_day(1))}


def test_an_opt_out_in_the_profile_after_an_unsubscribe_is_the_standing_withdrawal(spark):
    consent = consent_of(spark, [profile("A5", "upsert", 5, consent=False, consent_day=5)], [("A5", "unsubscribed", 1)])
    assert consent == {"A5": (False, naive_day(5))}


def test_a_stale_resend_with_an_older_consent_time_does_not_undo_an_opt_out_in_the_profile(spark):
    # Opted in at signup (T3), out in the profile at T5; on day 9 a stale system re-sends the
    # T3 profile (consent true) with a newer updated_time: it is the latest profile, not the latest choice.
    rows = [profile("A1", "upsert", 3, consent_day=3), profile("A1", "upsert", 5, consent=False, consent_day=5), profile("A1", "upsert", 9, consent_day=3)]
    consent = consent_of(spark, rows, [])
    assert consent == {"A1": (False, naive_day(5))}


def test_opting_in_again_after_an_opt_out_in_the_profile_gives_consent(spark):
    rows = [profile("A1", "upsert", 5, consent=False, consent_day=5), profile("A1", "upsert", 9, consent_day=3), profile("A1", "upsert", 10, consent_day=7)]
    assert consent_of(spark, rows, []) == {"A1": (True, None)}


def test_an_unsubscribe_after_an_opt_in_in_the_profile_withdraws_consent(spark):
    consent = consent_of(spark, [profile("A1", "upsert", 5, consent_day=5)], [("A1", "unsubscribed", 6)])
    assert consent == {"A1": (False, naive_day(6))}


def test_an_opt_in_in_the_profile_after_an_unsubscribe_gives_consent(spark):
    rows = [profile("A1", "upsert", 5, consent_day=5), profile("A1", "upsert", 8, consent_day=8)]
    assert consent_of(spark, rows, [("A1", "unsubscribed", 6)]) == {"A1": (True, None)}


def test_a_changed_address_repeating_the_consent_time_changes_no_consent(spark):
    # A1 opted out at T5 and moved on day 9; A2 opted in at T5 and moved on day 9: both updates repeat T5.
    rows = [
        profile("A1", "upsert", 5, consent=False, consent_day=5), profile("A1", "upsert", 9, consent=False, consent_day=5, city="Tainan"),
        profile("A2", "upsert", 5, consent_day=5), profile("A2", "upsert", 9, consent_day=5, city="Tainan"),
    ]
    assert consent_of(spark, rows, []) == {"A1": (False, naive_day(5)), "A2": (True, None)}


def test_a_withdrawal_wins_a_tie_with_an_opt_in(spark):
    # A1: an opt-in and an unsubscribe at the same instant; A2: two upserts disagreeing on one consent time.
    rows = [profile("A1", "upsert", 5, consent_day=5), profile("A2", "upsert", 5, consent_day=5), profile("A2", "upsert", 6, consent=False, consent_day=5)]
    consent = consent_of(spark, rows, [("A1", "complained", 5)])
    assert consent == {"A1": (False, naive_day(5)), "A2": (False, naive_day(5))}


def test_without_any_consent_time_a_profile_s_yes_is_the_starting_state_and_its_no_a_withdrawal(spark):
    # A1 said no (no time), then yes (no time): a yes without a time undoes no "no".
    # A2 said yes, then no; A3 only ever said yes.
    rows = [
        profile("A1", "upsert", 0, consent=False, consent_day=None), profile("A1", "upsert", 2, consent_day=None),
        profile("A2", "upsert", 0, consent_day=None), profile("A2", "upsert", 2, consent=False, consent_day=None),
        profile("A3", "upsert", 0, consent_day=None), profile("A3", "upsert", 2, consent_day=None),
    ]
    assert consent_of(spark, rows, []) == {"A1": (False, naive_day(0)), "A2": (False, naive_day(2)), "A3": (True, None)}


def test_a_latest_profile_saying_no_without_a_time_wins_over_an_older_timed_yes(spark):
    rows = [profile("A1", "upsert", 3, consent_day=3), profile("A1", "upsert", 6, consent=False, consent_day=None)]
    assert consent_of(spark, rows, []) == {"A1": (False, naive_day(6))}


def test_an_upsert_without_a_consent_time_carries_no_choice_once_one_has_a_time(spark):
    # A1 opted out at T5; the later upsert says true but tells no time: the opt-out stands.
    rows = [profile("A1", "upsert", 5, consent=False, consent_day=5), profile("A1", "upsert", 9, consent_day=None)]
    assert consent_of(spark, rows, []) == {"A1": (False, naive_day(5))}


def test_an_erased_account_never_consents(spark):
    rows = [profile("A1", "upsert", 0, consent_day=4), profile("A1", "erase", 5, email=None, consent=None, consent_day=None)]
    assert consent_of(spark, rows, []) == {"A1": (False, None)}


ACCOUNT_360_SCHEMA = (
    "account_id string, person_id string, erased boolean, profile_updated_at timestamp, signup_time timestamp, email string, phone string, "
    "name string, gender string, birth_year int, occupation string, city string, income_band string, marketing_consent boolean, "
    "consent_withdrawn_at timestamp, referred_by string"
)
RUN_DATE = dt.date(2026, 11, 21)
STALE_RULES = load_conf(environ={}).organize.customer_360   # base.yaml's: a student over 30, ages 13-100, 730 days, price bands 500 / 2000


def people_360(spark, accounts, lines=(), sessions=()):
    from crmlake.organize.customer360 import customer_360, person_behaviour

    line_schema = "order_id string, person_id string, order_time timestamp, status string, category string, unit_price decimal(18,2), line_amount decimal(18,2)"
    session_schema = "person_id string, session_start timestamp, session_end timestamp, device string"
    interaction_schema = "person_id string, type string, opened_time timestamp, closed_time timestamp, satisfaction int"
    behaviour = person_behaviour(
        spark.createDataFrame(list(lines), line_schema), spark.createDataFrame(list(sessions), session_schema),
        spark.createDataFrame([], interaction_schema), "UTC",
    )
    return {r["person_id"]: r for r in customer_360(spark.createDataFrame(accounts, ACCOUNT_360_SCHEMA), behaviour, RUN_DATE, "UTC", STALE_RULES).collect()}


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


def test_refreshing_only_the_persons_a_day_reached_gives_the_full_customer_360(spark):
    import hashlib

    from crmlake.organize.customer360 import Refresh, behaviour_from_history, customer_360, identifiers_touched, persons_to_refresh
    from crmlake.people import with_person_id

    email_hash = lambda email: hashlib.sha256(email.encode()).hexdigest()  # noqa: E731
    day = dt.timedelta(days=1)
    now = dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone.utc)
    recent = T0 - 10 * day
    members = [account(f"A{n}", None, recent, referred_by="A12" if n == 10 else None) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)]
    accounts_before = spark.createDataFrame([m for m in members if m[0] != "A10"], ACCOUNT_360_SCHEMA).drop("person_id")
    accounts_after = spark.createDataFrame(members, ACCOUNT_360_SCHEMA).drop("person_id")
    held = {
        "P1": ["account_id:A1", "anonymous_id:ck1"], "P2": ["account_id:A2", "anonymous_id:ck2", f"email_sha256:{email_hash('e2@x.com')}"],
        "P3": ["account_id:A3", "anonymous_id:ck3"], "P4": ["account_id:A4"], "P5": ["account_id:A5", "anonymous_id:ck5"],
        "P6": ["account_id:A6", "anonymous_id:ck6"], "P7": ["account_id:A7", "anonymous_id:ck7"],
        "P8": ["account_id:A8", "account_id:A9", f"email_sha256:{email_hash('e8@x.com')}"], "P11": ["account_id:A11"],
        "P12": ["account_id:A12", "anonymous_id:ck12"], "P13": ["account_id:A13"],
    }
    map_schema = "identifier_type string, identifier string, person_id string"
    map_before = [(*node.split(":", 1), person) for person, nodes in held.items() for node in nodes]
    # The day: a new link merges P7 into P6, an email change splits A9 from P8, A10 joins.
    moved = {"account_id:A7": "P6", "anonymous_id:ck7": "P6", "account_id:A9": "P9"}
    map_after = [(kind, value, moved.get(f"{kind}:{value}", person)) for kind, value, person in map_before] + [("account_id", "A10", "P10")]

    line_schema = "order_id string, line_no int, account_id string, guest_email string, order_time timestamp, status string, category string, unit_price decimal(18,2), line_amount decimal(18,2)"

    def line(order_id, account_id, days_ago, amount, category="books", status="completed", guest=None):
        return (order_id, 1, account_id, guest, now - days_ago * day, status, category, Decimal(amount), Decimal(amount))

    old_lines = [line("O1", "A1", 40, "100.00"), line("O2", "A2", 20, "50.00", "toys"), line("O3", "A7", 10, "900.00", "garden"),
                 line("O4", "A6", 60, "20.00"), line("O5", "A9", 5, "3000.00", "music"), line("O6", "A8", 7, "10.00", "music"),
                 line("O7", "A12", 3, "40.00"), line("O8", "A11", 2, "5.00", "toys"), line("O9", "A5", 100, "30.00"), line("O13", "A13", 9, "60.00")]
    new_lines = [line("O10", "A1", 0.1, "700.00", "toys"), line("O11", None, 0.2, "80.00", "garden", guest=" E2@x.com"),
                 line("O12", "A10", 0.3, "15.00"), line("O13", "A13", 9, "60.00", status="returned")]
    lines_after = [row for row in old_lines if row[0] != "O13"] + new_lines
    session_schema = "anonymous_id string, account_id string, tracking_consent boolean, session_start timestamp, session_end timestamp, device string"
    old_sessions = [("ck1", "A1", True, now - 3 * day, now - 3 * day, "app"), ("ck3", None, True, now - 10 * day, now - 10 * day, "web"),
                    # P5's last visit: 29 days before the day before (active), 30 before the day (not any more).
                    ("ck5", None, True, dt.datetime(2026, 10, 22, 12, tzinfo=dt.timezone.utc), dt.datetime(2026, 10, 22, 12, 5, tzinfo=dt.timezone.utc), "web"),
                    ("ck7", "A7", True, now - 10 * day, now - 10 * day, "app"), ("ck12", None, True, now - 4 * day, now - 4 * day, "web"),
                    ("ck5", None, False, now - 2 * day, now - 2 * day, "web")]
    new_session = ("ck3", None, True, now - 0.1 * day, now - 0.1 * day, "app")
    interaction_schema = "account_id string, type string, opened_time timestamp, closed_time timestamp, satisfaction int"
    old_interactions = [("A4", "complaint", now - 5 * day, None, None), ("A12", "question", now - 6 * day, now - 5 * day, 4)]
    new_interaction = ("A4", "question", now - 0.1 * day, now - 0.05 * day, 5)

    frame = spark.createDataFrame
    identities_before, identities_after = frame(map_before, map_schema), frame(map_after, map_schema)
    people_before, people_after = (with_person_id(a, m, ("account_id", F.col("account_id"))) for a, m in ((accounts_before, identities_before), (accounts_after, identities_after)))
    history_before = (frame(old_lines, line_schema), frame(old_sessions, session_schema), frame(old_interactions, interaction_schema))
    history_after = (frame(lines_after, line_schema), frame([*old_sessions, new_session], session_schema), frame([*old_interactions, new_interaction], interaction_schema))
    rules = STALE_RULES
    before = customer_360(people_before, behaviour_from_history(*history_before, identities_before, "UTC"), RUN_DATE - day, "UTC", rules)
    before = before.where("person_id != 'P11'").cache()  # an erasure deleted P11's row; A11 stays a member
    touched = identifiers_touched(
        frame([(r[2], r[3]) for r in new_lines], "account_id string, guest_email string"),
        frame([("ck3", None, True), ("ck5", None, False)], "anonymous_id string, account_id string, tracking_consent boolean"),
        frame([("A4",)], "account_id string"),
    )
    live = people_after.where(~F.col("erased"))
    persons = persons_to_refresh(identities_after, touched, live, before, identities_before).cache()
    refresh = Refresh(before, persons, identities_after.join(persons, "person_id", "left_semi"), broadcast=True)

    incremental = customer_360(people_after, behaviour_from_history(*history_after, identities_after, "UTC", refresh), RUN_DATE, "UTC", rules).collect()
    full = customer_360(people_after, behaviour_from_history(*history_after, identities_after, "UTC"), RUN_DATE, "UTC", rules).collect()

    assert sorted(map(repr, incremental)) == sorted(map(repr, full))
    # Each refreshed for one reason: P1 an order, P2 a guest order with its email, P3 a consented
    # click, P4 a service contact, P6 and P7 merged, P8 and P9 split, P10 new, P11 no row, P13 a return.
    assert sorted(r["person_id"] for r in persons.collect()) == ["P1", "P10", "P11", "P13", "P2", "P3", "P4", "P6", "P7", "P8", "P9"]
    after = {r["person_id"]: r for r in incremental}
    was = {r["person_id"]: r for r in before.collect()}
    # Kept persons: P5's behaviour is as it was, but it is no longer active; P12 referred A10, who bought.
    assert (was["P5"]["active_30d"], after["P5"]["active_30d"], after["P5"]["last_visit_at"]) == (True, False, was["P5"]["last_visit_at"])
    assert (was["P12"]["referred_buyers"], after["P12"]["referred_buyers"], after["P12"]["service_contacts"]) == (0, 1, 1)
    assert (after["P6"]["orders"], after["P6"]["preferred_category"], after["P2"]["orders"], after["P13"]["returned_lines"]) == (2, "garden", 2, 1)
    assert (after["P3"]["sessions"], after["P4"]["service_contacts"], after["P11"]["orders"]) == (2, 2, 1)
