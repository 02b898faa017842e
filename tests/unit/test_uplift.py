"""Uplift on hand-built contacts, answers worked out by hand: the contacts a model may learn
from, its labels, the Qini of a ranking, and an audience ordered by uplift."""

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from crmlake.analyze.features import FEATURE_COLUMNS
from crmlake.analyze.uplift import decile_outcomes, learnable_contacts, qini, uplift_examples
from crmlake.config_schema import Policy
from crmlake.decide.audiences import Audience, apply_policy, with_audience_uplift

RUN = dt.date(2026, 11, 21)
ACCURACY = 10_000   # percentile_approx's: exact on a few rows
CONTACTS = "contact_date date, audience string, person_id string, group string, score double"


def days_before(n):
    return RUN - dt.timedelta(days=n)


def test_a_model_learns_from_each_audience_latest_contact_dates_whose_window_is_complete(spark):
    contacts = spark.createDataFrame(
        [(days_before(n), "a", f"P{n}", "treatment", 0.5) for n in (30, 20, 14, 13)] + [(days_before(40), "b", "P40", "control", 0.5)],
        CONTACTS,
    )
    kept = {(r["audience"], r["contact_date"]) for r in learnable_contacts(contacts, RUN, 14, 2).collect()}
    # a: 13 days ago is still inside its 14-day window; of the complete dates, the 2 latest. b: its only date.
    assert kept == {("a", days_before(20)), ("a", days_before(14)), ("b", days_before(40))}


def test_examples_are_labelled_by_conversion_in_the_window_and_featured_as_of_their_contact_date(spark):
    day1, day2 = days_before(30), days_before(20)
    contacts = spark.createDataFrame(
        [(day1, "a", "P1", "treatment", 0.9), (day2, "a", "P1", "treatment", 0.8), (day1, "a", "P2", "control", 0.1), (day1, "a", "P3", "control", 0.2)],
        CONTACTS,
    )
    orders = spark.createDataFrame(
        [("P1", days_before(25), Decimal("10.00")),   # 5 days after day1: converted then; before day2
         ("P2", day1, Decimal("10.00")),              # on the contact date itself: not after it
         ("P2", days_before(1), Decimal("10.00"))],   # 29 days after: outside the window
        "person_id string, order_date date, line_amount decimal(18,2)",
    )
    behaviour = spark.createDataFrame(
        [("P1", day1, 1), ("P1", day2, 2), ("P2", day1, 3)],   # P3: no longer a member, no features
        "person_id string, contact_date date, frequency long",
    ).select("person_id", "contact_date", *[F.col("frequency").cast("double").alias(c) if c == "frequency" else F.lit(0.0).alias(c) for c in FEATURE_COLUMNS])
    rows = {(r["person_id"], r["contact_date"]): r for r in uplift_examples(contacts, orders, 14, behaviour).collect()}
    assert set(rows) == {("P1", day1), ("P1", day2), ("P2", day1)}
    assert [(rows[k]["label"], rows[k]["frequency"], rows[k]["score"], rows[k]["group"]) for k in (("P1", day1), ("P1", day2), ("P2", day1))] == [
        (1.0, 1.0, 0.9, "treatment"), (0.0, 2.0, 0.8, "treatment"), (0.0, 3.0, 0.1, "control"),
    ]


def ranked_contacts(spark):
    """100 contacts with distinct scores, five contacted and five control per decile; in the best
    decile 4 of 5 contacted and 1 of 5 control persons convert, in the second 3 and 1, elsewhere 1 and 1."""
    rows = []
    for decile in range(1, 11):
        contacted_converted = {1: 4, 2: 3}.get(decile, 1)
        for i in range(10):
            group = "treatment" if i < 5 else "control"
            converted = i < contacted_converted if group == "treatment" else i == 5
            rows.append((f"P{decile:02d}{i}", RUN, group, 1.0 if converted else 0.0, float(100 - (decile - 1) * 10 - i)))
    return spark.createDataFrame(rows, "person_id string, contact_date date, group string, label double, score double")


def test_qini_of_a_ranking_that_puts_the_moved_persons_first_and_of_its_reverse(spark):
    scored = ranked_contacts(spark).withColumn("reverse", -F.col("score"))
    deciles = decile_outcomes(scored, "score", ACCURACY)
    assert [(d["decile"], d["contacted"], d["contacted_converted"], d["control"], d["control_converted"]) for d in deciles[:3]] == [
        (1, 5, 4, 5, 1), (2, 5, 3, 5, 1), (3, 5, 1, 5, 1),
    ]
    best = qini(deciles)
    # Conversions added in the best k deciles over the 50 contacted: 3 after the first, 5 after
    # the second, and no more: 0, .06, .1, .1, ... The area under it, .003 + .008 + 8 * .01 = .091,
    # less the random line's .05.
    assert best["curve"] == pytest.approx([0, 0.06] + [0.1] * 9)
    assert best["qini"] == pytest.approx(0.041)
    assert best["uplift_by_decile"] == pytest.approx([0.6, 0.4] + [0.0] * 8)
    worst = qini(decile_outcomes(scored, "reverse", ACCURACY))
    # Reversed: nothing added over eight deciles, then 2 and 3 more: .002 + .007 - .05.
    assert worst["curve"] == pytest.approx([0] * 9 + [0.04, 0.1])
    assert worst["qini"] == pytest.approx(-0.041)


def test_a_ranking_that_ties_every_contact_ranks_no_one_first_and_its_qini_is_zero(spark):
    # No score (contacts made before propensity had a champion) or one score for all: every contact
    # shares decile 1, so the curve's only step spans all persons and lies on the random line.
    scored = ranked_contacts(spark).withColumn("none", F.lit(None).cast("double")).withColumn("same", F.lit(0.5))
    for column in ("none", "same"):
        tied = qini(decile_outcomes(scored, column, ACCURACY))
        assert tied["curve"] == pytest.approx([0] + [0.1] * 10) and tied["shares"] == [0.0] + [1.0] * 10
        assert tied["qini"] == pytest.approx(0.0)   # k/10 as its x would credit it with .045, more than the best ranking's .041
    assert qini(decile_outcomes(scored, "score", ACCURACY))["qini"] > 0


def test_contacts_without_a_score_share_the_decile_after_all_scored_ones(spark):
    # 16 distinct scores and 4 nulls: a contact's decile is 1 + floor(10 x contacts ranked
    # before / 20), so the scored ones fill deciles 1..8 two by two, the 4 nulls (16 before)
    # all land in decile 9 and decile 10 is empty.
    rows = [(f"P{i:02d}", RUN, "treatment", 0.0, float(100 - i)) for i in range(16)] + [(f"N{i}", RUN, "control", 1.0, None) for i in range(4)]
    scored = spark.createDataFrame(rows, "person_id string, contact_date date, group string, label double, score double")
    deciles = decile_outcomes(scored, "score", ACCURACY)
    assert [(d["contacted"], d["control"], d["control_converted"]) for d in deciles] == [(2, 0, 0)] * 8 + [(0, 4, 4), (0, 0, 0)]


def test_a_decile_without_control_persons_has_no_uplift_and_adds_nothing_to_the_curve():
    deciles = [{"decile": d, "contacted": 2, "contacted_converted": 1, "control": 0 if d == 1 else 2, "control_converted": 0} for d in range(1, 11)]
    result = qini(deciles)
    assert result["uplift_by_decile"][0] is None and result["uplift_by_decile"][1] == 0.5
    assert result["curve"][1] == 0.0 and result["curve"][2] == pytest.approx((2 - 0) / 20)


def test_an_audience_ordered_by_uplift_takes_the_persons_a_contact_moves_most(spark):
    scored = spark.createDataFrame(
        [("P1", 0.9), ("P2", 0.2), ("P3", 0.5), ("P4", 0.8)], "person_id string, propensity_score double"
    ).withColumn("marketing_consent", F.lit(True))
    uplift = spark.createDataFrame(
        [("P1", "persuadables", 0.0, "m/1"), ("P2", "persuadables", 0.4, "m/1"), ("P3", "persuadables", 0.3, "m/1"), ("P4", "other", 0.9, "o/1")],
        "person_id string, audience string, uplift double, uplift_model string",
    )
    entry = {"name": "persuadables", "rule": "true", "order_by": "uplift DESC, propensity_score DESC", "channel": "email", "control_share": 0.0}
    nobody = spark.createDataFrame([], "person_id string, suppression_reason string")
    no_prior = spark.createDataFrame([], "person_id string, contacts long")
    policy = Policy(max_contacts=2, window_days=30, complaint_quiet_days=30)

    selected = apply_policy(with_audience_uplift(scored, uplift, "persuadables"), nobody, no_prior, Audience(**entry, limit=3), policy)[0]
    # By propensity: P1, P4, P3. By uplift: P2, P3, then P1 (0.0) before P4, whose 0.9 is
    # another audience's uplift (it has none for this one: last).
    assert {r["person_id"] for r in selected.collect()} == {"P1", "P2", "P3"}
    assert Audience(**entry).uses_uplift
    assert not Audience(**{**entry, "order_by": "propensity_score DESC", "rule": "uplift_model IS NOT NULL"}).uses_uplift


def test_decide_gives_an_audience_reading_uplift_its_own_and_names_the_model_in_the_manifest(spark):
    from crmlake.decide.job import with_uplift_of

    persons = spark.createDataFrame([("P1", 0.9), ("P2", 0.2)], "person_id string, propensity_score double")
    uplift = spark.createDataFrame([("P1", "persuadables", 0.1, "crmlake-uplift-persuadables/3")], "person_id string, audience string, uplift double, uplift_model string")
    manifest = {"propensity": {"name": "crmlake-propensity", "version": "1"}}
    entry = {"name": "persuadables", "rule": "true", "order_by": "uplift DESC, propensity_score DESC", "channel": "email"}
    frame, models_used = with_uplift_of(Audience(**entry), persons, uplift, manifest)
    assert {r["person_id"]: r["uplift"] for r in frame.collect()} == {"P1": 0.1, "P2": None}
    assert models_used == {**manifest, "uplift": {"name": "crmlake-uplift-persuadables", "version": "3"}}
    # Not scored yet: the column is there, all null, and the manifest names no uplift model.
    frame, models_used = with_uplift_of(Audience(**{**entry, "name": "newcomers"}), persons, uplift, manifest)
    assert [r["uplift"] for r in frame.collect()] == [None, None] and models_used == manifest
    # An audience that does not read it is left as it is.
    assert with_uplift_of(Audience(**{**entry, "order_by": "propensity_score DESC"}), persons, None, manifest) == (persons, manifest)
