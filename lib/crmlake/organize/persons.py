"""Organize's identity step: who is one person, kept in three silver tables.

* ``silver.identity_weights``: the Fellegi–Sunter weights pairs are decided with. Estimated
  on the first build, and again by a full rebuild once older than
  ``organize.identity.weights.reestimate_after_days``; a daily run keeps them, so that growing
  the map and rebuilding it decide every pair alike.
* ``silver.identity_pairs``: every candidate pair of accounts with its evidence and decision
  (why each account joined its person, or did not).
* ``silver.identity_map``: every account, and each cookie, email and phone of one person alone,
  with a stable person id. A cookie an erased account shared with another person's
  (``silver.shared_identifiers``, recorded by the erasure) stays out of it, grown or rebuilt:
  its erased holder's links are gone, yet the one left is not its only user.
* ``silver.account_persons``: each person an account left (split off, or merged into another
  person whose id survived), from when to the run date it left (:func:`persons_left`): the
  rows scored for that person meanwhile were computed from the account's data too, so an
  erasure and subject access find them (:mod:`crmlake.subjects`). Only the accounts whose
  person changed are written, before the map (a run killed between the two finds the same
  moves again, and the merge on the table's keys writes them once); a full refresh keeps it.

A day's change grows them (:func:`~crmlake.organize.identity.grow_identity_map`); a full
refresh or an erasure (the erased account's identifiers leave the map and its pairs the table,
so what it linked is found again from all accounts) rebuilds them whole. Weights re-estimated
by a rebuild are written last, after the pairs and the map they decided.
Each run's figures (persons, pairs by decision) go to its summary and the page; when
``organize.identity.truth_file`` names a labelled sample, pairwise precision and recall over
its accounts, per planted cause, go there too and to MLflow (a run named ``identity <date>``,
with the figures and the weights).
"""

from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import files
from crmlake.config import Conf, ConfigError
from crmlake.faults import crash_point
from crmlake.lake import Lake
from crmlake.lake.frames import counted, maybe_broadcast
from crmlake.log import get_logger
from crmlake.organize.identity import Matching, build_identity_map, grow_identity_map, identity_quality, touched_blocks
from crmlake.organize.matching import Weights, blocks, candidate_pairs, comparison_levels, estimate_weights, match_profiles, prior_weights, random_pairs, sized_blocks
from crmlake.people import ACCOUNT
from crmlake.privacy import SHARED_IDENTIFIERS
from crmlake.subjects import ACCOUNT_PERSONS
from crmlake.summaries import IDENTITY_JSON, write_summary
from crmlake.tracking import tracked_run

log = get_logger("organize.persons")
WEIGHTS, PAIRS, MAP = "silver.identity_weights", "silver.identity_pairs", "silver.identity_map"


def stored_weights(lake: Lake) -> tuple[Weights, dt.date] | None:
    """The weights silver.identity_weights holds and the date they were estimated, or None."""
    if not lake.exists(WEIGHTS):
        return None
    # Safe to collect: one row per comparison level (a dozen).
    rows = [r.asDict() for r in lake.read(WEIGHTS).collect()]
    if not rows:
        return None
    first = rows[0]
    return Weights.from_rows(rows, first["prior"], first["method"], int(first["pairs"])), first["estimated_on"]


def store_weights(lake: Lake, weights: Weights, run_date: dt.date) -> None:
    """Write ``weights`` as silver.identity_weights, estimated on ``run_date``."""
    rows = [(*row, weights.prior, weights.method, weights.pairs, run_date) for row in weights.rows()]
    lake.overwrite(WEIGHTS, lake.spark.createDataFrame(rows, lake.catalog.spec(WEIGHTS).ddl))


def matching_weights(lake: Lake, conf: Conf, profiles: DataFrame, links: DataFrame, run_date: dt.date, rebuild: bool) -> tuple[Weights, bool]:
    """Return the weights to decide pairs with and whether they were estimated now: those
    stored, unless there are none or a ``rebuild`` finds them older than
    ``reestimate_after_days``; then estimated on ``profiles``
    (:func:`~crmlake.organize.matching.match_profiles`) and ``links`` (every candidate pair,
    and random pairs for ``u``), for the caller to store (:func:`store_weights`) once the
    pairs and the map they decide are written."""
    section = conf.organize.identity.weights
    stored = stored_weights(lake)
    if stored and not (rebuild and (run_date - stored[1]).days > section.reestimate_after_days):
        return stored[0], False
    max_per_key = conf.organize.identity.max_accounts_per_key
    sized = sized_blocks(blocks(profiles, links)).cache()
    levelled = comparison_levels(candidate_pairs(sized, max_per_key), profiles)
    accounts = profiles.count()
    randoms = comparison_levels(random_pairs(profiles, section.random_pairs, accounts, seed=17), profiles)
    weights = estimate_weights(levelled, randoms, prior_weights(section), section.min_pairs_to_estimate, section.em_iterations)
    sized.unpersist()
    log.info("identity weights estimated (%s) from %d candidate pairs: prior %.4f, %s", weights.method, weights.pairs, weights.prior,
             {f"{c}.{lv}": round(w, 2) for c, lv, _, _, w in weights.rows()})
    return weights, True


def organize_identity(
    lake: Lake, conf: Conf, run_date: dt.date, full: bool, erased: bool, profiles_before: int | None, changed: DataFrame, new_links: DataFrame
) -> tuple[DataFrame, dict]:
    """Update silver.identity_weights, silver.identity_pairs, silver.identity_map and, for the
    accounts whose person changed, silver.account_persons; return the map before this run
    (empty on a first run) and the run's figures.

    Grown from the ``changed`` accounts (account_id) and the ``new_links`` (anonymous_id,
    account_id) unless ``full``, ``erased`` (an account erased by this run), the profiles
    before are unknown (``profiles_before`` None) or there is no map yet: then rebuilt whole.
    """
    region = conf.business.default_phone_region
    customers = lake.read("silver.customers")
    profiles = match_profiles(customers, region).checkpoint()
    links = lake.read("silver.identity_links").select("anonymous_id", "account_id")
    # The map as this run found it, pinned (read as it was after this run rewrites it); its rows from the Delta log.
    previous = lake.read(MAP, lake.version(MAP)) if lake.exists(MAP) else lake.read_or_empty(MAP)
    previous_rows = lake.logged_rows(MAP)
    # Without stored weights (a first run, or one killed before it stored those it estimated) the
    # pairs and the map may have been decided with others: rebuilt whole.
    whole = full or erased or profiles_before is None or not lake.exists(MAP) or not lake.exists(PAIRS) or not lake.exists(WEIGHTS)
    weights, estimated = matching_weights(lake, conf, profiles, links, run_date, whole)
    rules = conf.organize.identity
    matching = Matching(weights, rules.link_min_probability, rules.max_accounts_per_key, rules.broadcast_max_rows, rules.driver_components_max_edges)
    reached = None
    if whole:
        def written(pairs: DataFrame) -> DataFrame:
            # Written first, then read back for the map (no checkpoint of their own): a run killed
            # after this write rebuilds them again, and the persons come from the table as written.
            lake.overwrite(PAIRS, pairs.withColumn("scored_on", F.lit(run_date)))
            crash_point("organize.identity_pairs")   # the fault suite kills a run here, the map not yet written
            return lake.read(PAIRS)

        identity_map, _ = build_identity_map(profiles, links, previous, matching, previous_rows, keep_pairs=written)
    else:
        blocks_touched = touched_blocks(lake.read("silver.customers", profiles_before), customers, changed, new_links, region)
        touched = changed.select("account_id").unionByName(new_links.select("account_id")).distinct()
        identity_map, pair_changes, reached = grow_identity_map(profiles, links, previous, lake.read(PAIRS), touched, blocks_touched, matching)
        # The map is computed (from the pairs as they were) before the pairs are merged.
        identity_map = identity_map.checkpoint()
        lake.merge(PAIRS, pair_changes.withColumn("scored_on", F.lit(run_date)), keys=["account_a", "account_b"], order_by="scored_on", delete_when="_gone")
    moved = 0
    # An empty map before (a first build, or every account erased): no account left a person, and
    # the new map is read once, by its write. Rows unknown (None: a file's count not logged): compared.
    if previous_rows != 0:
        if whole:   # read twice (the accounts that moved, the write); a grown map is checkpointed already
            identity_map = identity_map.checkpoint()
        # Before the map: a rerun of a run killed after this write compares the same two maps again.
        moves, moved = counted(persons_left(previous, identity_map, lake.read_or_empty(ACCOUNT_PERSONS), run_date, reached, rules.broadcast_max_rows))
        if moved:
            lake.merge(ACCOUNT_PERSONS, moves, keys=["account_id", "person_id", "to_date"], order_by="to_date")
    # Without the erased holder's links, the other holder looks like the cookie's only one: the
    # erasure's record says otherwise. A handful of rows (none before an erasure): sent to every
    # task by its count in the Delta log, not shuffled and sorted with the whole map to meet it.
    shared_rows = lake.logged_rows(SHARED_IDENTIFIERS)
    if shared_rows != 0:
        shared = lake.read(SHARED_IDENTIFIERS).select("identifier_type", "identifier")
        few = shared_rows is not None and shared_rows <= rules.broadcast_max_rows
        identity_map = identity_map.join(maybe_broadcast(shared, few), ["identifier_type", "identifier"], "left_anti")
    lake.overwrite(MAP, identity_map, partition_by=["identifier_type"])
    if estimated:
        store_weights(lake, weights, run_date)
    return previous, {"identity_grown": not whole, "identity_weights": matching.weights.method, "accounts_moved": moved}


def persons_left(previous_map: DataFrame, identity_map: DataFrame, history: DataFrame, run_date: dt.date,
                 reached: DataFrame | None = None, broadcast_max_rows: int = 0) -> DataFrame:
    """Return the rows of silver.account_persons for the accounts whose person changed from
    ``previous_map`` to ``identity_map`` (identifier_type, identifier, person_id): per account,
    the person it left, ``from_date`` (when it joined that person: the latest date ``history``,
    silver.account_persons, records it leaving another, up to ``run_date``; null when none is
    recorded, the account held it from before) and ``to_date`` (``run_date``). An account
    missing from the new map (erased) left no one. With ``reached`` (person_id: the persons a
    grown map recomputed, all others' accounts kept as they were) only their accounts are
    compared, so the cost follows the day's change."""
    def accounts(identity_map: DataFrame, person: str) -> DataFrame:
        return identity_map.where(F.col("identifier_type") == ACCOUNT).select(F.col("identifier").alias("account_id"), F.col("person_id").alias(person))

    before = accounts(previous_map, "person_id")
    after = accounts(identity_map, "_now")
    if reached is not None:
        before, compared = counted(before.join(reached, "person_id", "left_semi"))
        after = after.join(maybe_broadcast(before.select("account_id"), compared <= broadcast_max_rows), "account_id", "left_semi")
    moved = before.join(after, "account_id").where(F.col("person_id") != F.col("_now")).select("account_id", "person_id")
    # A rerun of the same day finds its own row of the person left: only the others' dates say when it joined.
    joined = (
        history.select("account_id", F.col("person_id").alias("_other"), "to_date").join(moved, "account_id")
        .where((F.col("_other") != F.col("person_id")) & (F.col("to_date") <= F.lit(run_date)))
        .groupBy("account_id", "person_id").agg(F.max("to_date").alias("from_date"))
    )
    return moved.join(joined, ["account_id", "person_id"], "left").select("account_id", "person_id", "from_date", F.lit(run_date).alias("to_date"))


def _log_quality(lake: Lake, conf: Conf, run_date: dt.date, facts: dict, decisions: dict) -> None:
    """Log the run's identity figures, its quality against the labelled sample and the weights
    to MLflow as the run ``identity <run_date>``."""
    import mlflow

    with tracked_run(conf, f"identity {run_date.isoformat()}", {"stage": "organize", "run_date": run_date.isoformat()}):
        quality = facts["quality"]
        mlflow.log_metrics({k: float(v) for k, v in facts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_metrics({f"pairs_{k.replace(' ', '_')}": float(v) for k, v in decisions.items()})
        mlflow.log_metrics({k: float(quality[k]) for k in ("precision", "recall", "f1")})
        mlflow.log_dict(quality, "identity_quality.json")
        weights = stored_weights(lake)
        if weights:
            mlflow.log_dict({"method": weights[0].method, "prior": weights[0].prior, "estimated_on": str(weights[1]),
                             "levels": [dict(zip(("comparison", "level", "m", "u", "weight"), row)) for row in weights[0].rows()]}, "identity_weights.json")


def identity_figures(lake: Lake, conf: Conf, run_date: dt.date, identity_map: DataFrame, clicks: DataFrame) -> dict:
    """Return the run's identity figures (:func:`~crmlake.organize.identity.identity_quality`,
    pairs by decision and, with ``organize.identity.truth_file``, pairwise quality against it,
    then logged to MLflow as the run ``identity <run_date>``); the pairs linked and kept apart
    by what they share, and the quality, also go to the page's summary ``identity.json``."""
    facts = identity_quality(identity_map, clicks)
    # Safe to collect: one row per shared kind of key and decision (a few dozen).
    evidence = [r.asDict() for r in lake.read(PAIRS).groupBy("compared_for", "decision").agg(F.count(F.lit(1)).alias("pairs")).orderBy("compared_for", "decision").collect()]
    decisions: dict = {}
    for row in evidence:
        decisions[row["decision"]] = decisions.get(row["decision"], 0) + row["pairs"]
    facts["pairs"] = decisions
    truth_file = conf.organize.identity.truth_file
    if truth_file:
        from crmlake.organize.identity_truth import pairwise_quality, read_identity_truth

        if files.info(truth_file) is None:
            raise ConfigError(f"organize.identity.truth_file: {truth_file} does not exist (a labelled sample: account_id, person, causes)")
        accounts = identity_map.where(F.col("identifier_type") == ACCOUNT).select(F.col("identifier").alias("account_id"), "person_id")
        facts["quality"] = pairwise_quality(accounts, read_identity_truth(lake.spark, files.spark_uri(truth_file)))
    if "quality" in facts:
        _log_quality(lake, conf, run_date, facts, decisions)
    write_summary(conf.exports_root, IDENTITY_JSON, {"run_date": run_date.isoformat(), "persons": facts["persons"], "pairs": evidence, "quality": facts.get("quality")})
    log.info("identity: %s", json.dumps(facts, default=str))
    return facts
