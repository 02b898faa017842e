"""Identity section: who is one person, crmlake against Splink on one generated landing zone
(a few thousand customers, households, family mailboxes, shop phones, placeholders, recycled
numbers and mistyped emails planted with their truth). After acquire and organize, the same
live accounts of silver.customers, normalised alike, are resolved three ways: crmlake (weights
estimated by EM, then a full rebuild of the map; it also reads the cookie links), Splink
(PyPI ``splink``, DuckDB backend, its documented training: probability two random records
match, u by random sampling, m by EM over two blocking rules; comparisons on email, phone, name
and birth year; clustered at crmlake's link threshold), and the old identity (a union of
accounts sharing an email or phone held by at most ``max_accounts_per_key`` accounts, or a
cookie). Each is scored pair by pair against ``_truth/identity.csv``: precision, recall, F1
and wall time side by side, then the planted causes.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.common import FIRST_DAY, seconds


def splink_records(customers: DataFrame, region: str) -> DataFrame:
    """Return the records Splink compares, one per live account of ``customers``
    (silver.customers): account_id, email and phone normalised as crmlake matches them
    (:func:`crmlake.people.normalised_email`, :func:`crmlake.people.e164_phone`), name and
    birth_year as :func:`crmlake.organize.matching.match_profiles` keys them."""
    from crmlake.organize.matching import match_profiles
    from crmlake.people import e164_phone, normalised_email

    contacts = customers.where(~F.col("erased")).select("account_id", normalised_email(F.col("email")).alias("email"), e164_phone(F.col("phone"), region).alias("phone"))
    keys = match_profiles(customers, region).select("account_id", F.col("name_key").alias("name"), "birth_year")
    return contacts.join(keys, "account_id")


def splink_persons(records: pd.DataFrame, link_min_probability: float) -> tuple[pd.DataFrame, str]:
    """Return ``(clusters, splink_version)``: Splink's persons of ``records`` (a pandas frame of
    :func:`splink_records`) as a pandas frame (account_id, person_id).

    The documented workflow of Splink's DuckDB backend: blocking rules to generate candidate
    pairs, ``estimate_probability_two_random_records_match`` from deterministic rules,
    ``estimate_u_using_random_sampling``, ``estimate_parameters_using_expectation_maximisation``
    on two blocking rules (each trains the comparisons it does not block on), ``predict`` and
    ``cluster_pairwise_predictions_at_threshold``. Names are generated ("Member 123"), so they
    are compared exactly: a string similarity would find two members' names alike.
    """
    import splink
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    birth_year = cl.CustomComparison(
        [cll.NullLevel("birth_year"), cll.ExactMatchLevel("birth_year"), cll.AbsoluteDifferenceLevel("birth_year", 1), cll.ElseLevel()],
        output_column_name="birth_year",
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="account_id",
        comparisons=[
            cl.EmailComparison("email"),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.ExactMatch("name"),
            birth_year,
        ],
        blocking_rules_to_generate_predictions=[block_on("email"), block_on("phone"), block_on("name", "birth_year")],
    )
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(records), settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match([block_on("email", "name"), block_on("phone", "name")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=7)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name", "birth_year"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold_match_probability=link_min_probability)
    persons = clusters.as_pandas_dataframe()[["account_id", "cluster_id"]].rename(columns={"cluster_id": "person_id"})
    return persons, splink.__version__


def union_persons(customers: DataFrame, links: DataFrame, region: str, max_accounts_per_key: int) -> DataFrame:
    """Return (account_id, person_id): the old identity, accounts unioned when they share a
    normalised email or phone held by at most ``max_accounts_per_key`` live accounts, or a
    cookie of ``links`` (silver.identity_links), as connected components in Spark."""
    from crmlake.organize.components import connected_components
    from crmlake.people import EMAIL, PHONE, e164_phone, normalised_email, sha256_hex

    live = customers.where(~F.col("erased"))
    keys = live.select(
        "account_id",
        F.explode(F.array(
            F.concat(F.lit(EMAIL + ":"), sha256_hex(normalised_email(F.col("email")))),
            F.concat(F.lit(PHONE + ":"), sha256_hex(e164_phone(F.col("phone"), region))),
        )).alias("key"),
    ).where(F.col("key").isNotNull()).distinct()
    few = keys.groupBy("key").count().where(F.col("count") <= max_accounts_per_key)
    # Live accounts' cookies only: every end of an edge is a node (connected_components' rule).
    cookies = links.join(live, "account_id", "left_semi").select("account_id", F.concat(F.lit("cookie:"), "anonymous_id").alias("key")).distinct()
    edges = keys.join(few, "key", "left_semi").unionByName(cookies).select(F.concat(F.lit("account:"), "account_id").alias("src"), F.col("key").alias("dst"))
    nodes = live.select(F.concat(F.lit("account:"), "account_id").alias("node")).unionByName(edges.select(F.col("dst").alias("node"))).distinct()
    components = connected_components(nodes, edges)
    return components.where(F.col("node").startswith("account:")).select(F.expr("substring(node, 9)").alias("account_id"), F.col("component").alias("person_id"))


def bench_identity_quality(spark: SparkSession, conf_file: str | None, tmp: str, customers: int, days: int) -> list[str]:
    """Generate, acquire and organize ``customers`` x ``days``; resolve its accounts with
    crmlake, Splink and the old union; return printable lines of their quality and time."""
    from crmlake.acquire import job as acquire
    from crmlake.config import load_conf
    from crmlake.generate.landing import write_landing
    from crmlake.lake import Lake
    from crmlake.organize import job as organize
    from crmlake.organize.identity import Matching, build_identity_map
    from crmlake.organize.identity_truth import pairwise_quality, read_identity_truth
    from crmlake.people import MERGING_CAUSES, SPLITTING_CAUSES
    from crmlake.organize.matching import match_profiles
    from crmlake.organize.persons import matching_weights
    from crmlake.people import ACCOUNT

    root = f"{tmp}/identity-quality"
    conf = load_conf(conf_file, [f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                 f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts"])
    end = FIRST_DAY + dt.timedelta(days=days - 1)
    summary = write_landing(spark, conf.landing_root, customers=customers, days=days, end=end, seed=7, timezone=conf.business.timezone)
    acquire.run(spark, conf, end)
    organize.run(spark, conf, end)
    lake = Lake(spark, conf)
    truth = read_identity_truth(spark, f"{conf.landing_root}/_truth/identity.csv").cache()
    region = conf.business.default_phone_region
    rules = conf.organize.identity
    silver_customers = lake.read("silver.customers").cache()
    links = lake.read("silver.identity_links").select("anonymous_id", "account_id").cache()
    accounts = silver_customers.where(~F.col("erased")).count()
    no_map = spark.createDataFrame([], "identifier_type string, identifier string, person_id string")

    # crmlake: weights estimated (in a lake of their own: organize stored the zone's) and the map rebuilt whole, as a full refresh does.
    weights_conf = load_conf(conf_file, [f"paths.lake={root}/weights-lake"])
    crmlake_map = []

    def crmlake_run() -> None:
        profiles = match_profiles(silver_customers, region).checkpoint()
        weights, _ = matching_weights(Lake(spark, weights_conf), weights_conf, profiles, links, end, rebuild=True)
        matching = Matching(weights, rules.link_min_probability, rules.max_accounts_per_key, rules.broadcast_max_rows, rules.driver_components_max_edges)
        identity_map, _ = build_identity_map(profiles, links, no_map, matching)
        identity_map.write.parquet(f"file://{root}/crmlake-map")
        crmlake_map.append(spark.read.parquet(f"file://{root}/crmlake-map"))

    crmlake_took = seconds(crmlake_run)
    crmlake_persons = crmlake_map[0].where(F.col("identifier_type") == ACCOUNT).select(F.col("identifier").alias("account_id"), "person_id")

    # Safe to collect: the bench's sample of a few thousand accounts, which Splink reads in memory.
    records = splink_records(silver_customers, region).toPandas()
    splink_out = []
    splink_took = seconds(lambda: splink_out.append(splink_persons(records, rules.link_min_probability)))
    clusters, version = splink_out[0]
    splink_predicted = spark.createDataFrame(clusters.astype({"account_id": str, "person_id": str}))

    union_out = []
    union_took = seconds(lambda: union_out.append(union_persons(silver_customers, links, region, rules.max_accounts_per_key).checkpoint()))

    organized = lake.read("silver.identity_map").where(F.col("identifier_type") == ACCOUNT).select(F.col("identifier").alias("account_id"), "person_id")
    resolvers = [
        ("crmlake (EM weights + full rebuild)", crmlake_persons, crmlake_took),
        (f"Splink {version} (DuckDB, EM)", splink_predicted, splink_took),
        ("old identity (email/phone/cookie union)", union_out[0], union_took),
    ]
    scored = [(name, pairwise_quality(predicted, truth), took) for name, predicted, took in resolvers]
    lines = [
        (f"sample                      : {customers:,} customers x {days} days -> {accounts:,} live accounts, {summary['identity']['causes']['household']['groups']:,} households,"
         f" {links.count():,} cookie links; scored over {scored[0][1]['true_pairs']:,} true pairs (_truth/identity.csv)"),
        f"{'resolver':<47} {'precision':>9} {'recall':>7} {'F1':>7} {'pairs':>7} {'largest':>7} {'time':>7}",
    ]
    for name, quality, took in scored:
        lines.append(f"{name:<47} {quality['precision']:>9.4f} {quality['recall']:>7.4f} {quality['f1']:>7.4f} {quality['predicted_pairs']:>7,} {quality['largest_person_accounts']:>7} {took:>6.1f}s")
    organize_quality = pairwise_quality(organized, truth)
    lines.append(f"{'crmlake as organize wrote it (silver)':<47} {organize_quality['precision']:>9.4f} {organize_quality['recall']:>7.4f} {organize_quality['f1']:>7.4f}"
                 f" {organize_quality['predicted_pairs']:>7,} {organize_quality['largest_person_accounts']:>7}")
    lines.append(f"{'by planted cause':<47} {'crmlake':>9} {'Splink':>7} {'union':>7}  (recall of a person's split accounts; precision of merges)")
    for cause in (*SPLITTING_CAUSES, *MERGING_CAUSES):
        figure = "recall" if cause in SPLITTING_CAUSES else "precision"
        pairs = scored[0][1]["by_cause"][cause]["pairs"]
        values = " ".join(f"{q['by_cause'][cause][figure]:>{w}.4f}" for (_, q, _), w in zip(scored, (9, 7, 7)))
        lines.append(f"  {f'{cause} ({figure} of {pairs:,} pairs)':<45} {values}")
    lines.append(f"Splink clusters at match probability >= {rules.link_min_probability} (crmlake's organize.identity.link_min_probability); times include training and, for crmlake, Spark jobs")
    for frame in (truth, silver_customers, links):
        frame.unpersist()
    return lines
