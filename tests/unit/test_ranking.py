"""Quantile buckets and running totals spread over every core, checked against exact answers
computed here by sorting in Python."""

import pytest
from pyspark.sql import functions as F

from crmlake.analyze.features import with_deciles
from crmlake.analyze.ranking import with_quantile_buckets, with_running_totals

EXACT = 10_000   # percentile_approx accuracy: exact on these few thousand rows


def test_tied_values_share_the_lowest_bucket_their_ranks_reach_and_null_has_none(spark):
    # Ten values, quintiles: bucket = 1 + floor(5 x values strictly lower / 10).
    # 1 (x6): 0 lower -> 1; 2: 6 -> 4; 3: 7 -> 4; 4: 8 -> 5; 5: 9 -> 5.
    frame = spark.createDataFrame([(f"a{i}", 1.0) for i in range(6)] + [("b", 2.0), ("c", 3.0), ("d", 4.0), ("e", 5.0), ("none", None)], "id string, v double")
    buckets = {r["id"]: r["bucket"] for r in with_quantile_buckets(frame, {"bucket": F.col("v")}, 5, EXACT).collect()}
    assert buckets == {**{f"a{i}": 1 for i in range(6)}, "b": 4, "c": 4, "d": 5, "e": 5, "none": None}


def scores(spark, n):
    """n distinct scores 0..n-1 in a shuffled order (7919 is prime to n), spread over 4 partitions."""
    return spark.createDataFrame([(f"P{i}", float(i * 7919 % n)) for i in range(n)], "person_id string, score double").repartition(4)


def test_deciles_of_distinct_scores_are_the_exact_tenths(spark):
    n = 2000
    deciles = {r["person_id"]: r["decile"] for r in with_deciles(scores(spark, n), "score", "decile", EXACT).collect()}
    # Score s has s lower scores: its exact decile is 1 + floor(10 s / n), 200 persons each.
    assert deciles == {f"P{i}": 1 + (i * 7919 % n) * 10 // n for i in range(n)}


def test_approximate_deciles_stay_balanced_and_within_one_of_the_exact_decile(spark):
    n, accuracy = 2000, 100   # a cut's rank may be off by n / accuracy = 20 persons
    rows = with_deciles(scores(spark, n), "score", "decile", accuracy).collect()
    sizes = {d: sum(1 for r in rows if r["decile"] == d) for d in range(1, 11)}
    assert all(abs(size - n / 10) <= 2 * n / accuracy for size in sizes.values()), sizes
    assert all(abs(r["decile"] - (1 + int(r["score"]) * 10 // n)) <= 1 for r in rows)


def test_running_totals_are_the_exact_running_sum_from_the_highest_value(spark):
    values = [float(i % 17) * 2.5 for i in range(500)] + [1e6]   # many ties, one outlier
    frame = spark.createDataFrame([(v,) for v in values] + [(None,)], "value double").repartition(3)
    ranked, rows, total = with_running_totals(frame, "value", 8, EXACT)
    descending = sorted(values, reverse=True)
    running = [sum(descending[: rank]) for rank in range(1, len(descending) + 1)]
    assert (rows, total) == (len(values), pytest.approx(sum(values)))
    got = sorted((r["rank"], r["value"], r["cumulative"]) for r in ranked.collect())
    assert [rank for rank, _, _ in got] == list(range(1, len(values) + 1))
    assert [value for _, value, _ in got] == descending
    assert [cumulative for _, _, cumulative in got] == pytest.approx(running)
