"""Ranks among all persons, spread over every core: quantile buckets and running totals.

A window ordered over every person (``Window.orderBy`` with no ``partitionBy``, or one
partitioned by a boolean) sends all the rows to one task: one core sorts every person
while the others wait, and that task's memory caps how many persons a retailer may have.
Deciles, RFM scores, the most valuable top share and the Pareto curve are built here from
operations that spread instead:

* :func:`with_quantile_buckets`: cut points from ``percentile_approx`` (one aggregation,
  partial sketches per partition, merged), joined back to every row as one broadcast row;
* :func:`with_running_totals`: the exact running sum of values sorted from the highest, as
  a distributed prefix sum: rows split into value ranges, each range sorted and summed by
  its own task, the ranges' counts and totals (one small row per range) added back as
  offsets.

Accuracy: ``percentile_approx(value, p, accuracy)`` returns a value whose rank among the n
non-null values is within about ``n / accuracy`` of the exact quantile's (the smallest value
with at least ``p * n`` values at or below it): exact on a few thousand rows at the default
accuracy of 10,000, one rank in ten thousand off beyond. ``accuracy`` comes from conf
``analyze.ranking.quantile_accuracy``.
"""

from __future__ import annotations

import itertools

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def cut_points(frame: DataFrame, values: dict[str, Column], probabilities: list[float], accuracy: int) -> DataFrame:
    """Return one row: for each name of ``values``, the array of its approximate quantiles at
    ``probabilities`` among ``frame``'s non-null values (null when there is none).

    The cut at p is the smallest value with at least ``p * n`` values at or below it, to
    within about ``n / accuracy`` ranks.
    """
    return frame.agg(*[F.percentile_approx(value, probabilities, accuracy).alias(name) for name, value in values.items()])


def with_quantile_buckets(frame: DataFrame, values: dict[str, Column], buckets: int, accuracy: int) -> DataFrame:
    """Add one int column per entry of ``values`` (output name -> value): its bucket, 1 (lowest
    values) .. ``buckets`` (highest), among the frame's non-null values; a null value gets null.

    With exact cuts (a few rows): bucket = 1 + floor(buckets * below / n), with ``below``
    the rows whose value is strictly lower and n the rows with a value. Distinct values give
    ntile's balanced buckets (sizes differ by at most one); tied values share a bucket, the
    lowest their ranks reach, instead of being split by an arbitrary tie-breaker, so a large
    tie block leaves the buckets it spans above its own smaller or empty. With approximate
    cuts, a row whose ``below`` is within about ``n / accuracy`` of a bucket boundary may land
    in the neighbouring bucket. Order descending by negating the value. One aggregation for all the
    entries; ``frame`` is read by it and by the rows, so cache an expensive one.
    """
    probabilities = [k / buckets for k in range(1, buckets)]
    cut_columns = {name: f"_cuts_{name}" for name in values}
    cuts = cut_points(frame, {cut_columns[name]: value for name, value in values.items()}, probabilities, accuracy)
    bucketed = frame.crossJoin(F.broadcast(cuts))
    for name, value in values.items():
        lower_cuts = F.filter(F.col(cut_columns[name]), lambda cut: cut < value)  # F.filter calls the lambda at once: value is this entry's
        bucketed = bucketed.withColumn(name, F.when(value.isNotNull(), (F.size(lower_cuts) + 1).cast("int")))
    return bucketed.drop(*cut_columns.values())


def with_running_totals(frame: DataFrame, value: str, ranges: int, accuracy: int) -> tuple[DataFrame, int, float]:
    """Rank the rows of ``frame`` by ``value``, highest first, and sum them along that order.

    Returns (the rows with ``rank`` 1..n and ``cumulative``, the sum of ``value`` over ranks
    1..rank; n; the total of ``value``). Exact whatever ``accuracy``: tied values take
    consecutive ranks in an arbitrary order, and since they are equal ``cumulative`` at each
    rank is the same whichever. The rows are split into about ``ranges`` value ranges (cut
    at approximate quantiles, so a tie block stays in one range); each range is sorted and
    summed by its own task, and the counts and totals of the ranges above it are added
    back. Runs two small jobs (the cut points, then one row per range, collected) before the
    rows are read again: ``frame`` must give the same rows every time (a table read, or
    cached). A null ``value`` is left out.
    """
    present = frame.where(F.col(value).isNotNull())
    # Safe to collect: at most ranges - 1 numbers.
    found = cut_points(present, {"cuts": F.col(value)}, [k / ranges for k in range(1, ranges)], accuracy).first()["cuts"] or []
    cuts = F.array(*[F.lit(cut) for cut in sorted(set(found))])
    # Range 0 holds the highest values: a row's range is the number of cuts at or above its value.
    ranged = present.withColumn("_range", F.size(F.filter(cuts, lambda cut: cut >= F.col(value))) if found else F.lit(0))
    # Safe to collect: one row per range.
    per_range = {r["_range"]: (r["rows"], float(r["total"]))
                 for r in ranged.groupBy("_range").agg(F.count(F.lit(1)).alias("rows"), F.sum(value).alias("total")).collect()}
    in_order = [per_range.get(r, (0, 0.0)) for r in range(max(per_range, default=-1) + 1)]
    rows_before = list(itertools.accumulate((rows for rows, _ in in_order), initial=0))
    total_before = list(itertools.accumulate((total for _, total in in_order), initial=0.0))
    in_range = Window.partitionBy("_range").orderBy(F.col(value).desc())
    offset_rows = F.array(*[F.lit(n) for n in rows_before]).cast("array<bigint>")
    offset_total = F.array(*[F.lit(t) for t in total_before]).cast("array<double>")
    ranked = ranged.select(
        "*",
        (offset_rows[F.col("_range")] + F.row_number().over(in_range)).alias("rank"),
        (offset_total[F.col("_range")] + F.sum(value).over(in_range.rowsBetween(Window.unboundedPreceding, Window.currentRow))).alias("cumulative"),
    ).drop("_range")
    return ranked, rows_before[-1], total_before[-1]
