"""The contact policy and the loop back on hand-built persons, answers worked out by hand."""

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from crmlake.config import ConfigError, load_conf
from crmlake.config_schema import Policy
from crmlake.decide.audiences import Audience, apply_policy, suppression_reasons
from crmlake.decide.job import CONTACT_HISTORY, CONTACT_SCHEMA, date_history, prior_contacts
from crmlake.decide.results import campaign_results
from crmlake.lake import Snapshot
from crmlake.people import ACCOUNT

RUN = dt.date(2026, 11, 21)
T = lambda days: dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone.utc) + dt.timedelta(days=days)  # noqa: E731
SCORED = "person_id string, propensity_score double, propensity_decile int, segment string, rfm_cell string, marketing_consent boolean"
POLICY = Policy(max_contacts=2, window_days=30, complaint_quiet_days=30)


def audience(name="a", priority=1, control_share=0.0, limit=1000, rule="propensity_decile >= 5", channel="email"):
    return Audience(name=name, rule=rule, channel=channel, priority=priority, control_share=control_share, limit=limit)


def no_prior(spark):
    return spark.createDataFrame([], "person_id string, contacts long")


def test_each_suppression_reason_is_found_and_a_later_opt_in_wins(spark):
    people = spark.createDataFrame(
        [(p, T(-100), 0, None) for p in ("P_UNSUB", "P_BOUNCE", "P_COMPLAIN", "P_ERASED", "P_OK", "P_OPTIN")]
        + [("P_SERVICE", T(-100), 0, T(-3)), ("P_OPEN", T(-100), 1, T(-200))],
        "person_id string, declared_at timestamp, open_complaints int, last_complaint_at timestamp",
    ).union(spark.createDataFrame([("P_OPTIN2", T(-1), 0, None)], "person_id string, declared_at timestamp, open_complaints int, last_complaint_at timestamp"))
    accounts = spark.createDataFrame(
        [("A_UNSUB", "P_UNSUB"), ("A_BOUNCE", "P_BOUNCE"), ("A_COMPLAIN", "P_COMPLAIN"), ("A_ERASED2", "P_ERASED"), ("A_OK", "P_OK"), ("A_OPTIN2", "P_OPTIN2")],
        "account_id string, person_id string",
    )
    # P_ERASED's other account was erased (its row is gone from the map, its person with it):
    # the erasure recorded the live one. A partner whose account is in no map any more has no person.
    erased = spark.createDataFrame([("A_ERASED2", "P_ERASED"), ("A_GONE", None)], "account_id string, person_id string")
    events = spark.createDataFrame(
        [("c", "A_UNSUB", "unsubscribed", T(-10)), ("c", "A_BOUNCE", "bounced", T(-300)), ("c", "A_COMPLAIN", "complained", T(-5)),
         ("c", "A_OK", "opened", T(-2)), ("c", "A_OPTIN2", "unsubscribed", T(-20))],   # P_OPTIN2 opted in again after unsubscribing
        "campaign_id string, account_id string, event string, event_time timestamp",
    )
    reasons = {r["person_id"]: r["suppression_reason"] for r in suppression_reasons(people, accounts, erased, events, RUN, POLICY).collect()}
    assert reasons == {
        "P_UNSUB": "unsubscribed", "P_BOUNCE": "bounced", "P_COMPLAIN": "complained", "P_ERASED": "erased",
        "P_SERVICE": "service_complaint", "P_OPEN": "service_complaint",
    }


def test_policy_counts_every_step_and_never_lets_a_non_consenting_person_through(spark):
    scored = spark.createDataFrame(
        [("P1", 0.9, 9, "s", "555", True), ("P2", 0.8, 8, "s", "555", False), ("P3", 0.7, 7, "s", "555", True),
         ("P4", 0.6, 6, "s", "555", True), ("P5", 0.1, 1, "s", "111", True)],
        SCORED,
    )
    suppressed = spark.createDataFrame([("P3", "bounced")], "person_id string, suppression_reason string")
    prior = spark.createDataFrame([("P4", 2)], "person_id string, contacts long")
    selected, counts = apply_policy(scored, suppressed, prior, audience(), POLICY)
    assert [r["person_id"] for r in selected.collect()] == ["P1"]
    assert counts == {
        "matched": 4, "no_consent": 1,
        "suppressed": {"unsubscribed": 0, "bounced": 1, "complained": 0, "erased": 0, "service_complaint": 0},
        "held_out_elsewhere": 0, "capped": 1, "over_limit": 0, "control": 0, "exported": 1,
    }


def test_each_person_is_counted_at_the_first_step_that_stops_them(spark):
    # P2 has no consent and a bounce: counted as no consent only. P3 is suppressed and over the
    # cap: counted as suppressed only. P4 is over the cap alone.
    scored = spark.createDataFrame(
        [("P1", 0.9, 9, "s", "555", True), ("P2", 0.8, 8, "s", "555", False), ("P3", 0.7, 7, "s", "555", True), ("P4", 0.6, 6, "s", "555", True)],
        SCORED,
    )
    suppressed = spark.createDataFrame([("P2", "bounced"), ("P3", "unsubscribed")], "person_id string, suppression_reason string")
    prior = spark.createDataFrame([("P3", 5), ("P4", 2)], "person_id string, contacts long")
    selected, counts = apply_policy(scored, suppressed, prior, audience(), POLICY)
    assert [r["person_id"] for r in selected.collect()] == ["P1"]
    assert (counts["matched"], counts["no_consent"], counts["capped"], counts["exported"]) == (4, 1, 1, 1)
    assert counts["suppressed"] == {"unsubscribed": 1, "bounced": 0, "complained": 0, "erased": 0, "service_complaint": 0}


def test_the_cap_spans_audiences_and_the_higher_priority_keeps_the_person(spark):
    scored = spark.createDataFrame([("P1", 0.9, 9, "s", "555", True)], SCORED)
    suppressed = spark.createDataFrame([], "person_id string, suppression_reason string")
    already_once = spark.createDataFrame([("P1", 1)], "person_id string, contacts long")
    first, counts_first = apply_policy(scored, suppressed, already_once, audience("first", priority=1), POLICY)
    # What decide does between audiences: today's exported contact joins the prior contacts.
    after_first = spark.createDataFrame([("P1", 2)], "person_id string, contacts long")
    second, counts_second = apply_policy(scored, suppressed, after_first, audience("second", priority=2), POLICY)
    assert (counts_first["exported"], counts_second["capped"], counts_second["exported"]) == (1, 1, 0)


def test_control_group_is_stable_across_runs_and_near_its_share(spark):
    scored = spark.createDataFrame([(f"P{i}", 0.9, 9, "s", "555", True) for i in range(2000)], SCORED)
    suppressed = spark.createDataFrame([], "person_id string, suppression_reason string")
    groups = []
    for _ in range(2):
        selected, counts = apply_policy(scored, suppressed, no_prior(spark), audience(control_share=0.2, limit=5000), POLICY)
        groups.append({r["person_id"]: r["group"] for r in selected.collect()})
    assert groups[0] == groups[1]
    assert 300 < counts["control"] < 500   # 20% of 2000 = 400, within sampling noise
    other, _ = apply_policy(scored, suppressed, no_prior(spark), audience("other", control_share=0.2, limit=5000), POLICY)
    assert {r["person_id"]: r["group"] for r in other.collect()} != groups[0]   # each audience holds out its own


def test_a_person_held_out_by_an_earlier_audience_is_in_neither_group_of_a_later_one(spark):
    # P1 sits in audience A's control today; P2 was not held out. B would take both (no control share).
    scored = spark.createDataFrame([("P1", 0.9, 9, "s", "555", True), ("P2", 0.8, 8, "s", "555", True)], SCORED)
    suppressed = spark.createDataFrame([], "person_id string, suppression_reason string")
    held_out_by_a = spark.createDataFrame([("P1",)], "person_id string")
    selected, counts = apply_policy(scored, suppressed, no_prior(spark), audience("b", priority=2), POLICY, held_out_by_a)
    assert [(r["person_id"], r["group"]) for r in selected.collect()] == [("P2", "treatment")]
    assert (counts["matched"], counts["held_out_elsewhere"], counts["capped"], counts["exported"]) == (2, 1, 0, 1)


def test_a_held_out_person_is_counted_at_an_earlier_step_that_stops_them(spark):
    # P1 is held out by A and has no consent, P2 is held out by A and bounced: each counted once,
    # at the first step that stops them; P3 held out and over the cap counts as held out.
    scored = spark.createDataFrame([("P1", 0.9, 9, "s", "555", False), ("P2", 0.8, 8, "s", "555", True), ("P3", 0.7, 7, "s", "555", True)], SCORED)
    suppressed = spark.createDataFrame([("P2", "bounced")], "person_id string, suppression_reason string")
    prior = spark.createDataFrame([("P3", 2)], "person_id string, contacts long")
    held_out_by_a = spark.createDataFrame([("P1",), ("P2",), ("P3",)], "person_id string")
    _, counts = apply_policy(scored, suppressed, prior, audience("b", priority=2), POLICY, held_out_by_a)
    assert (counts["no_consent"], counts["suppressed"]["bounced"], counts["held_out_elsewhere"], counts["capped"]) == (1, 1, 1, 0)


def test_audiences_sharing_persons_hold_each_person_out_in_at_most_one_control_group(spark):
    # A and B match the same 40 persons with large control shares; decide serves A, then B with
    # A's control group held out, as run() does.
    scored = spark.createDataFrame([(f"P{i:02d}", 0.9, 9, "s", "555", True) for i in range(40)], SCORED)
    suppressed = spark.createDataFrame([], "person_id string, suppression_reason string")
    policy = Policy(max_contacts=5, window_days=30, complaint_quiet_days=30)
    a, counts_a = apply_policy(scored, suppressed, no_prior(spark), audience("a", priority=1, control_share=0.5), policy)
    groups_a = {r["person_id"]: r["group"] for r in a.collect()}
    control_a = {p for p, g in groups_a.items() if g == "control"}
    held_out = spark.createDataFrame([(p,) for p in sorted(control_a)], "person_id string")
    b, counts_b = apply_policy(scored, suppressed, no_prior(spark), audience("b", priority=2, control_share=0.5), policy, held_out)
    groups_b = {r["person_id"]: r["group"] for r in b.collect()}
    assert 0 < len(control_a) < 40   # the case is only a test when A holds out some, not all
    assert control_a.isdisjoint(groups_b)   # neither in B's treatment nor in B's control
    assert set(groups_b) == set(groups_a) - control_a
    assert counts_b["held_out_elsewhere"] == len(control_a)
    steps = ("no_consent", "held_out_elsewhere", "capped", "over_limit", "control", "exported")
    assert counts_b["matched"] == sum(counts_b[s] for s in steps) + sum(counts_b["suppressed"].values()) == 40


def test_raw_contact_details_need_an_internal_channel():
    raw = "campaigns.audiences=[{name: x, rule: 'true', channel: email, raw_contact: true}]"
    with pytest.raises(ConfigError, match="audience 'x': raw_contact is allowed only for an internal channel"):
        load_conf(overrides=[raw], environ={})
    assert load_conf(overrides=[raw, "campaigns.internal_channels=[email]"], environ={}).campaigns.audiences[0].raw_contact


def test_lift_is_the_difference_of_conversion_rates_with_a_confidence_interval(spark):
    day = dt.date(2026, 11, 1)
    contacts = spark.createDataFrame(
        [(day, "a", "email", f"T{i}", "treatment") for i in range(100)] + [(day, "a", "email", f"C{i}", "control") for i in range(100)],
        "contact_date date, audience string, channel string, person_id string, group string",
    )
    # 30 of 100 contacted bought within 14 days, 20 of 100 controls; T0 bought again after the window.
    orders = spark.createDataFrame(
        [(f"T{i}", dt.date(2026, 11, 5), Decimal("100.00")) for i in range(30)]
        + [(f"C{i}", dt.date(2026, 11, 10), Decimal("50.00")) for i in range(20)]
        + [("T0", dt.date(2026, 11, 30), Decimal("999.00"))],
        "person_id string, order_date date, line_amount decimal(18,2)",
    )
    (row,) = campaign_results(contacts, orders, RUN, 14, {"email": 1.0}).collect()
    se = (0.3 * 0.7 / 100 + 0.2 * 0.8 / 100) ** 0.5
    assert (row["contacted"], row["control"], row["contacted_converted"], row["control_converted"]) == (100, 100, 30, 20)
    assert row["lift"] == pytest.approx(0.1) and row["relative_lift"] == pytest.approx(0.5)
    assert row["lift_ci_low"] == pytest.approx(0.1 - 1.959964 * se, abs=1e-6)
    assert row["lift_ci_high"] == pytest.approx(0.1 + 1.959964 * se, abs=1e-6)
    assert (row["revenue_per_contact"], row["revenue_per_control"], row["window_complete"]) == (30.0, 10.0, True)


def test_an_audience_selects_and_orders_by_the_next_best_category(spark):
    scored = spark.createDataFrame(
        [("P1", 0.9, "toys", 0.2), ("P2", 0.1, "books", 0.9), ("P3", 0.5, "books", 0.4), ("P4", 0.8, "books", 0.6)],
        "person_id string, propensity_score double, top_category string, top_category_score double",
    ).withColumn("marketing_consent", F.lit(True))
    books = Audience(name="books", rule="top_category = 'books'", order_by="top_category_score DESC", channel="email", limit=2, control_share=0.0)
    selected, counts = apply_policy(scored, spark.createDataFrame([], "person_id string, suppression_reason string"), no_prior(spark), books, POLICY)
    assert {r["person_id"] for r in selected.collect()} == {"P2", "P4"}   # the two likeliest book buyers, not the likeliest buyers
    assert (counts["matched"], counts["over_limit"], counts["exported"]) == (3, 1, 2)


def test_prior_contacts_count_the_treatment_rows_within_the_window_on_both_sides_of_the_run_date(spark, lake):
    day = lambda offset: RUN + dt.timedelta(days=offset)  # noqa: E731
    rows = [(day(-30), "treatment", "A1"), (day(-29), "treatment", "A1"), (day(-2), "control", "A1"), (day(0), "treatment", "A1"),
            (day(5), "treatment", "A1"), (day(29), "treatment", "A1"), (day(30), "treatment", "A1"), (day(3), "treatment", "B1")]
    history = spark.createDataFrame([(d, "a", "email", 1, "P_OLD", account, group, 0.5) for d, group, account in rows], lake.catalog.spec(CONTACT_HISTORY).ddl)
    lake.append(CONTACT_HISTORY, history, partition_by=["contact_date"])
    # A1's person is P now (a merge since); B1 is in no map: counted under the person it had then.
    identity_map = spark.createDataFrame([(ACCOUNT, "A1", "P")], "identifier_type string, identifier string, person_id string")
    inputs = Snapshot(lake, {CONTACT_HISTORY: lake.version(CONTACT_HISTORY)})
    counts = {r["person_id"]: r["contacts"] for r in prior_contacts(inputs, identity_map, RUN, 30).collect()}
    # Days -29, +5 and +29: the run date's own row (a rerun rewrites it), the control row and days -30, +30 are out.
    assert counts == {"P": 3, "P_OLD": 1}


def test_a_run_replaces_the_history_of_the_audiences_it_recorded_and_keeps_the_others(spark):
    def rows(*pairs):
        return spark.createDataFrame([(RUN, a, "email", 1, p, f"A_{p}", "treatment", 0.5) for a, p in pairs], CONTACT_SCHEMA)

    earlier = rows(("a", "P1"), ("b", "P2"), ("c", "P3"))
    recorded = rows(("a", "P4"), ("b", "P5"))   # this run's: a recorded and published, b recorded but not published, c failed

    def people(history):
        return sorted((r["audience"], r["person_id"]) for r in history.collect())

    assert people(date_history(recorded, earlier, ["a"])) == [("a", "P4"), ("b", "P2"), ("c", "P3")]
    assert people(date_history(recorded, earlier, ["a", "b"])) == [("a", "P4"), ("b", "P5"), ("c", "P3")]
    assert people(date_history(recorded, earlier, [])) == people(earlier)
    assert people(date_history(recorded, rows(), ["a"])) == [("a", "P4")]   # a first run: nothing earlier to keep
