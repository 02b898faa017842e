"""RFM and labels on tiny data, answers by hand."""

import datetime as dt
from decimal import Decimal

from pyspark.sql import functions as F

from crmlake.analyze.features import customer_behaviour, with_purchase_label, with_rfm_scores
from crmlake.config import load_conf

AS_OF = dt.date(2026, 11, 21)
UTC = dt.timezone.utc
UTC_BUSINESS = load_conf(environ={}).business.model_copy(update={"timezone": "UTC"})   # business dates in UTC
ACCURACY = 10_000   # percentile_approx's: exact on a few rows


def frames(spark):
    customers = spark.createDataFrame(
        [(a, dt.datetime(2026, 1, 1, tzinfo=UTC)) for a in ("A", "B", "C")] + [("LATE", dt.datetime(2026, 11, 22, tzinfo=UTC))],
        "person_id string, signup_time timestamp",
    )
    lines = spark.createDataFrame(
        [
            ("o1", "A", dt.date(2026, 11, 20), "completed", Decimal("100.00")),
            ("o2", "A", dt.date(2026, 11, 10), "completed", Decimal("50.00")),
            ("o3", "B", dt.date(2026, 10, 1), "completed", Decimal("500.00")),
            ("o4", "B", dt.date(2026, 11, 19), "returned", Decimal("999.00")),
            ("o5", "C", dt.date(2026, 11, 25), "completed", Decimal("10.00")),   # after as_of
        ],
        "order_id string, person_id string, order_date date, status string, line_amount decimal(18,2)",
    )
    sessions = spark.createDataFrame([("A", AS_OF)], "person_id string, session_date date").selectExpr(
        "person_id", "session_date", "2 as product_views", "1 as adds_to_cart"
    )
    return customers, lines, sessions


def test_behaviour_counts_completed_orders_up_to_the_date_and_skips_later_signups(spark):
    customers, lines, sessions = frames(spark)
    rows = {r["person_id"]: r for r in customer_behaviour(customers, lines, sessions, AS_OF, "UTC").collect()}
    assert set(rows) == {"A", "B", "C"}
    assert (rows["A"]["frequency"], rows["A"]["monetary"], rows["A"]["recency_days"], rows["A"]["sessions_30d"]) == (2, 150.0, 1, 1)
    assert (rows["B"]["frequency"], rows["B"]["monetary"], rows["B"]["recency_days"]) == (1, 500.0, 51)
    assert (rows["C"]["frequency"], rows["C"]["recency_days"]) == (0, rows["C"]["tenure_days"] + 1)


def test_rfm_scores_rank_buyers_and_give_non_buyers_zero(spark):
    customers, lines, sessions = frames(spark)
    scored = {r["person_id"]: r["rfm_cell"] for r in with_rfm_scores(customer_behaviour(customers, lines, sessions, AS_OF, "UTC"), 2, ACCURACY).collect()}
    # Two buyers, two quantiles: A is more recent and more frequent, B spent more.
    assert scored == {"A": "221", "B": "112", "C": "000"}


def test_rfm_scores_give_tied_buyers_the_same_score(spark):
    # Six one-order buyers, then 2, 3, 4 and 5 orders; one who never bought. Quintiles of ten
    # buyers: a buyer's score is 1 + floor(5 x buyers with fewer orders / 10). The six with one
    # order share score 1 (not 1, 1, 2, 2, 3, 3 by person as ntile split them), so scores 2
    # and 3 are empty; 2 orders: 6 below -> 4; 3: 7 below -> 4; 4: 8 -> 5; 5: 9 -> 5.
    orders = [1] * 6 + [2, 3, 4, 5]
    behaviour = spark.createDataFrame(
        [(f"P{i}", 10, n, 100.0) for i, n in enumerate(orders)] + [("NEVER", 400, 0, 0.0)],
        "person_id string, recency_days int, frequency long, monetary double",
    )
    scores = {r["person_id"]: r["f_score"] for r in with_rfm_scores(behaviour, 5, ACCURACY).collect()}
    assert scores == {**{f"P{i}": 1 for i in range(6)}, "P6": 4, "P7": 4, "P8": 5, "P9": 5, "NEVER": 0}


def test_only_the_visit_window_of_sessions_counts(spark):
    from pyspark.sql import functions as F

    from crmlake.analyze.features import in_session_window

    days = spark.createDataFrame([(AS_OF - dt.timedelta(days=n),) for n in (-1, 0, 29, 30)], "session_date date")
    kept = sorted(r["session_date"] for r in days.where(in_session_window(F.col("session_date"), AS_OF)).collect())
    assert kept == [AS_OF - dt.timedelta(days=29), AS_OF]   # 30 days up to and including as_of


def test_label_is_a_completed_purchase_inside_the_horizon(spark):
    customers, lines, sessions = frames(spark)
    cutoff = dt.date(2026, 11, 15)
    labels = {r["person_id"]: r["label"] for r in with_purchase_label(customer_behaviour(customers, lines, sessions, cutoff, "UTC"), lines, cutoff, 7).collect()}
    assert labels == {"A": 1.0, "B": 0.0, "C": 0.0}   # B's order in the window was returned; C's is after it


ORDER_SCHEMA = (
    "order_id string, line_no int, order_time timestamp, order_date date, account_id string, guest_email string, channel string, "
    "store_id string, product_id string, category string, quantity int, unit_price decimal(18,2), discount decimal(18,2), "
    "currency string, status string, updated_time timestamp, ingested_at timestamp"
)


def order_version(order_id, account, day, status, updated, amount="100.00"):
    """One bronze order line version, hand-built (quantity 1, no discount)."""
    at = dt.datetime.combine(day, dt.time(10), tzinfo=UTC)
    return (order_id, 1, at, day, account, None, "web", None, "p", "books", 1, Decimal(amount), None, "TWD", status, updated, updated)


def test_a_line_returned_after_the_cutoff_still_counts_as_a_purchase_at_the_cutoff(spark):
    from crmlake.analyze.features import order_lines_as_of

    bought = dt.date(2026, 11, 10)
    orders = spark.createDataFrame(
        [
            order_version("o1", "A", bought, "completed", dt.datetime(2026, 11, 10, 10, tzinfo=UTC)),
            order_version("o1", "A", bought, "returned", dt.datetime(2026, 11, 18, 9, tzinfo=UTC)),   # after the cutoff
            order_version("o2", "B", bought, "completed", dt.datetime(2026, 11, 10, 10, tzinfo=UTC)),
            order_version("o2", "B", bought, "cancelled", dt.datetime(2026, 11, 15, 23, 30, tzinfo=UTC)),  # the cutoff's last half hour
        ],
        ORDER_SCHEMA,
    )
    customers = spark.createDataFrame([(p, dt.datetime(2026, 1, 1, tzinfo=UTC)) for p in ("A", "B")], "person_id string, signup_time timestamp")
    sessions = spark.createDataFrame([], "person_id string, session_date date, product_views long, adds_to_cart long")
    cutoff = dt.date(2026, 11, 15)

    def bought_by(day):
        lines = order_lines_as_of(orders, day, UTC_BUSINESS).withColumnRenamed("account_id", "person_id")
        return {r["person_id"]: (r["frequency"], r["monetary"]) for r in customer_behaviour(customers, lines, sessions, day, "UTC").collect()}

    assert bought_by(cutoff) == {"A": (1, 100.0), "B": (0, 0.0)}   # A's return was still to come; B's cancel came that day
    assert bought_by(AS_OF) == {"A": (0, 0.0), "B": (0, 0.0)}


def test_members_as_of_take_the_profiles_valid_then_and_the_earliest_signup(spark):
    from crmlake.analyze.features import members_as_of

    def at(day):
        return dt.datetime.combine(day, dt.time(12), tzinfo=UTC)

    history = spark.createDataFrame(
        [
            ("X", "upsert", at(dt.date(2026, 11, 1)), at(dt.date(2026, 11, 20)), at(dt.date(2026, 11, 1))),
            ("X", "erase", at(dt.date(2026, 11, 20)), None, None),
            ("Z", "upsert", at(dt.date(2025, 1, 1)), None, at(dt.date(2025, 1, 1))),   # a second, older account of P1
            ("Y", "upsert", at(dt.date(2026, 11, 18)), None, at(dt.date(2026, 11, 18))),  # joined after the cutoff
        ],
        "account_id string, op string, valid_from timestamp, valid_to timestamp, signup_time timestamp",
    )
    identity_map = spark.createDataFrame(
        [("account_id", "X", "P1"), ("account_id", "Z", "P1"), ("account_id", "Y", "P2")], "identifier_type string, identifier string, person_id string"
    )
    then = {r["person_id"]: r["signup_time"].date() for r in members_as_of(history, identity_map, dt.date(2026, 11, 15), "UTC").collect()}
    assert then == {"P1": dt.date(2025, 1, 1)}
    now = {r["person_id"] for r in members_as_of(history, identity_map, AS_OF, "UTC").collect()}
    assert now == {"P1", "P2"}   # P1 lives on through Z after X's erasure


def test_the_holdout_is_the_same_quarter_of_persons_on_every_run(spark):
    from pyspark.sql import functions as F

    from crmlake.analyze.features import in_holdout

    persons = spark.range(20_000).select(F.format_string("person-%d", "id").alias("person_id"))
    first = {r["person_id"] for r in persons.where(in_holdout(F.col("person_id"), 0.25)).collect()}
    again = {r["person_id"] for r in persons.repartition(7).where(in_holdout(F.col("person_id"), 0.25)).collect()}
    assert first == again
    assert abs(len(first) / 20_000 - 0.25) < 0.015


def test_models_train_on_a_bounded_sample_of_persons_the_same_on_every_run_and_apart_from_the_holdout(spark):
    from pyspark.sql import functions as F

    from crmlake.analyze.features import in_holdout, training_sample

    # Two rows per person, as the next-best-category pairs have several per person.
    persons = spark.range(20_000).select(F.format_string("person-%d", "id").alias("person_id"))
    rows = persons.crossJoin(spark.range(2).withColumnRenamed("id", "category"))
    sampled, share = training_sample(rows, 20_000, 5_000)
    assert share == 0.25
    chosen = {r["person_id"] for r in sampled.select("person_id").distinct().collect()}
    assert abs(len(chosen) - 5_000) < 300
    assert sampled.count() == 2 * len(chosen)   # a chosen person keeps all of its rows
    again, _ = training_sample(rows.repartition(7), 20_000, 5_000)
    assert {r["person_id"] for r in again.select("person_id").distinct().collect()} == chosen
    # Another hash than the holdout's: the sample takes about its share of the holdout too,
    # so holding out and sampling do not pick the same persons.
    held = {r["person_id"] for r in persons.where(in_holdout(F.col("person_id"), 0.25)).collect()}
    assert abs(len(chosen & held) / len(held) - 0.25) < 0.03
    # Fewer persons than the bound: every row, unfiltered.
    whole, share = training_sample(rows, 20_000, 20_000)
    assert whole is rows and share == 1.0


def test_features_as_of_a_past_date_give_a_person_the_anonymous_visits_of_the_cookies_they_had_logged_in_on_by_then(spark):
    from crmlake.analyze.features import cookie_first_logins, sessions_known_as_of
    from crmlake.people import ACCOUNT, COOKIE, with_session_person_id

    day = lambda d: dt.date(2026, 11, d)  # noqa: E731
    cutoff = day(10)
    sessions = spark.createDataFrame(
        [
            ("s1", "c-early", True, "A1", day(2)),   # A1 logs in on c-early before the cutoff
            ("s2", "c-early", True, None, day(5)),   # anonymous on a cookie theirs by then
            ("s3", "c-late", True, None, day(6)),    # anonymous on a cookie A1 first logs in on after the cutoff
            ("s4", "c-late", True, "A1", day(15)),
            ("s5", "c-seen", False, None, day(3)),   # refused tracking (silver then holds no account): nobody's, whenever
            ("s6", "c-seen", True, "A1", day(4)),
        ],
        "session_id string, anonymous_id string, tracking_consent boolean, account_id string, session_date date",
    )
    identity_map = spark.createDataFrame([(ACCOUNT, "A1", "P1"), *[(COOKIE, c, "P1") for c in ("c-early", "c-late", "c-seen")]],
                                         "identifier_type string, identifier string, person_id string")
    first_logins = cookie_first_logins(sessions)
    assert sorted((r["anonymous_id"], r["first_login_date"]) for r in first_logins.collect()) == [("c-early", day(2)), ("c-late", day(15)), ("c-seen", day(4))]
    then = with_session_person_id(sessions_known_as_of(sessions.where(F.col("session_date") <= F.lit(cutoff)), first_logins, cutoff), identity_map)
    assert {r["session_id"]: r["person_id"] for r in then.collect()} == {"s1": "P1", "s2": "P1", "s3": None, "s5": None, "s6": "P1"}
    # Today's map gives c-late's anonymous visit to P1: right for today's features, the future for the cutoff's.
    now = with_session_person_id(sessions, identity_map)
    assert now.where(F.col("session_id") == "s3").first()["person_id"] == "P1"
