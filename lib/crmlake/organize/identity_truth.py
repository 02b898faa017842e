"""How well predicted persons match a landing zone's planted identity truth, pair by pair.

The generator writes ``_truth/identity.csv`` (account_id, person, causes): each account's true
person and the causes planted on it as ';'-joined ``cause:group`` tags
(:func:`crmlake.generate.members.identity_truth`). A pair is an unordered pair of distinct
accounts; predicted persons are scored over the pairs they put together against the pairs one
true person holds (precision, recall, F1), and per cause: for causes that make one person look
like two, how many of the true pairs within a group were found; for causes that make two persons
look like one, how many of the cross-person pairs within a group were wrongly merged. Every
figure is counted from group sizes (a group of n accounts holds n(n-1)/2 pairs), so a
placeholder carried by thousands of accounts costs an aggregate, not millions of pairs.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.people import MERGING_CAUSES, SPLITTING_CAUSES

TRUTH_SCHEMA = "account_id STRING, person STRING, causes STRING"


def read_identity_truth(spark: SparkSession, path: str) -> DataFrame:
    """Read a generated ``identity.csv`` (header: account_id,person,causes) at ``path``.

    Returns (account_id, person, causes) as strings, ``causes`` "" for an account with none.
    """
    truth = spark.read.option("header", True).option("mode", "FAILFAST").schema(TRUTH_SCHEMA).csv(path)
    return truth.select("account_id", "person", F.coalesce(F.col("causes"), F.lit("")).alias("causes"))


def _twice_pairs(size: Column) -> Column:
    """n(n-1) for a group of n accounts: twice its pairs, exact in a long."""
    return (size * (size - 1)).cast("long")


def _sum_twice_pairs(cells: DataFrame, keys: list[str], by: list[str]) -> DataFrame:
    """Sum over the groups ``keys`` of ``cells`` (keys..., n) of n(n-1), per ``by``."""
    groups = cells.groupBy(*keys).agg(F.sum("n").alias("size"))
    return groups.groupBy(*by).agg(F.sum(_twice_pairs(F.col("size"))).alias("twice"))


def _ratio(part: int, whole: int) -> float:
    """part / whole rounded to 4 places; 1.0 when whole is 0 (nothing to get wrong)."""
    return round(part / whole, 4) if whole else 1.0


def pairwise_quality(predicted: DataFrame, truth: DataFrame) -> dict:
    """Score predicted persons against the planted truth over unordered pairs of accounts.

    Takes ``predicted`` (account_id, person_id) and ``truth`` (account_id, person, causes), as
    :func:`read_identity_truth` returns. The accounts scored are the truth's; one the
    prediction leaves out counts as a person of its own (an account predicted but absent from
    the truth is ignored). Returns::

        {"precision", "recall", "f1",            # over pairs; 1.0 when there is no pair to judge
         "true_pairs", "predicted_pairs",        # pairs within one true / one predicted person
         "largest_person_accounts",              # accounts of the largest predicted person
         "by_cause": {cause: {...}}}             # every cause of SPLITTING_ and MERGING_CAUSES

    For a cause making one person look like two (SPLITTING_CAUSES): ``pairs`` (pairs of one
    true person within one of its groups), ``merged`` (of those, in one predicted person),
    ``missed`` and ``recall``. For a cause making two persons look like one (MERGING_CAUSES):
    ``pairs`` (pairs of two true persons within one of its groups), ``merged`` (pairs within
    one of its groups in one predicted person, whoever holds them), ``wrongly_merged`` (of
    those, pairs of two true persons) and ``precision`` (of ``merged``, the share that is one
    true person). Ratios are floats rounded to 4 places, counts ints.
    """
    accounts = truth.join(predicted.select("account_id", "person_id"), "account_id", "left").select(
        "account_id", "person", F.coalesce("person_id", F.concat(F.lit("unpredicted:"), "account_id")).alias("person_id"), "causes"
    )
    cells = accounts.groupBy("person", "person_id").agg(F.count("*").alias("n"))
    overall = (
        _sum_twice_pairs(cells, ["person", "person_id"], []).select(F.lit("both").alias("measure"), "twice")
        .unionByName(_sum_twice_pairs(cells, ["person"], []).select(F.lit("true").alias("measure"), "twice"))
        .unionByName(_sum_twice_pairs(cells, ["person_id"], []).select(F.lit("predicted").alias("measure"), "twice"))
        .unionByName(cells.groupBy("person_id").agg(F.sum("n").alias("size")).agg(F.max("size").cast("long").alias("twice")).select(F.lit("largest").alias("measure"), "twice"))
    )
    figures = {r["measure"]: r["twice"] or 0 for r in overall.collect()}  # safe: four rows
    both, true_pairs, predicted_pairs = figures["both"] // 2, figures["true"] // 2, figures["predicted"] // 2
    precision, recall = (both / predicted_pairs if predicted_pairs else 1.0), (both / true_pairs if true_pairs else 1.0)

    tags = accounts.select("person", "person_id", F.explode(F.split("causes", ";")).alias("tag")).where(F.col("tag") != "")
    tagged = tags.select("person", "person_id", F.substring_index("tag", ":", 1).alias("cause"), F.expr("substr(tag, instr(tag, ':') + 1)").alias("group"))
    cause_cells = tagged.groupBy("cause", "group", "person", "person_id").agg(F.count("*").alias("n"))
    per_cause = (
        _sum_twice_pairs(cause_cells, ["cause", "group"], ["cause"]).select("cause", F.lit("all").alias("measure"), "twice")
        .unionByName(_sum_twice_pairs(cause_cells, ["cause", "group", "person"], ["cause"]).select("cause", F.lit("true").alias("measure"), "twice"))
        .unionByName(_sum_twice_pairs(cause_cells, ["cause", "group", "person_id"], ["cause"]).select("cause", F.lit("predicted").alias("measure"), "twice"))
        .unionByName(_sum_twice_pairs(cause_cells, ["cause", "group", "person", "person_id"], ["cause"]).select("cause", F.lit("both").alias("measure"), "twice"))
    )
    counts = {(r["cause"], r["measure"]): r["twice"] // 2 for r in per_cause.collect()}  # safe: four rows per cause

    def count(cause: str, measure: str) -> int:
        return counts.get((cause, measure), 0)

    by_cause: dict = {}
    for cause in SPLITTING_CAUSES:
        pairs, found = count(cause, "true"), count(cause, "both")
        by_cause[cause] = {"pairs": pairs, "merged": found, "missed": pairs - found, "recall": _ratio(found, pairs)}
    for cause in MERGING_CAUSES:
        merged = count(cause, "predicted")
        wrongly = merged - count(cause, "both")
        by_cause[cause] = {"pairs": count(cause, "all") - count(cause, "true"), "merged": merged, "wrongly_merged": wrongly, "precision": _ratio(merged - wrongly, merged)}
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "largest_person_accounts": figures["largest"],
        "by_cause": by_cause,
    }
