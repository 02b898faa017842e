"""Organize section: identity resolution as organize runs it (``organize_identity``: the profiles
built, candidate pairs from blocks, each pair's evidence weighed, persons the connected
components of the linked pairs, in Spark, the pairs and the map written to the lake) on
synthetic sources of about 1M and 5M edges with chains and hubs (:mod:`benchmarks.graphs`), an
edge being a candidate pair of accounts scored or a cookie link read; the weights estimated by
expectation maximisation as a first build does. crmlake's components step and SciPy's
``csgraph`` (the peer: GraphFrames needs a jar from Maven) each partition the graph crmlake
accepted, from Parquet to Parquet, and the accounts the map and SciPy place differently are
counted. Then a day adding 1% new edges (new cookies, a few new accounts) grown into the lake
against a full rebuild of a copy of it, each with organize's rewrite of the map, and the rows
where the two maps differ. Then sessionization of 10M events (``--session-events``, 0: none)
by crmlake's Spark transform and by DuckDB computing the same sessions in SQL on the same
Parquet, both writing Parquet (the rows of either output missing from the other are counted).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.common import FIRST_DAY, seconds
from benchmarks.graphs import accepted_graph, crmlake_components, identity_day, identity_sources, placed_differently, planted_persons_missed, rounds_taken, scipy_components

# What crmlake.organize.transforms.sessionize computes, column for column (the bench checks that
# both give the same sessions, tests/unit/test_organize.py on hostile clicks): a visitor's events
# with and without tracking consent apart; entry page, device, source and referrer those of the
# session's first event by (event_time, event_id), null when that event's is (``arg_min_null``:
# DuckDB's ``arg_min`` skips nulls; one call for the four, which DuckDB runs faster than four), the
# exit page its last event's; the session id from its smallest event_id.
SESSION_SQL = """
COPY (
  WITH clicks AS (
    SELECT * REPLACE (coalesce(tracking_consent, false) AS tracking_consent) FROM read_parquet('{source}/*.parquet')
  ), marked AS (
    SELECT *, CASE WHEN lag(event_time) OVER w IS NULL
                     OR epoch_ms(event_time) // 1000 - epoch_ms(lag(event_time) OVER w) // 1000 > {gap} THEN 1 ELSE 0 END AS new_session
    FROM clicks WINDOW w AS (PARTITION BY anonymous_id, tracking_consent ORDER BY event_time, event_id)
  ), numbered AS (
    SELECT *, sum(new_session) OVER (PARTITION BY anonymous_id, tracking_consent ORDER BY event_time, event_id ROWS UNBOUNDED PRECEDING) AS session_no
    FROM marked
  ), sessions AS (
    SELECT anonymous_id, tracking_consent, min(event_id) AS least_event_id,
           max(CASE WHEN tracking_consent THEN account_id END) AS account_id,
           min(event_time) AS session_start, max(event_time) AS session_end,
           arg_min_null(struct_pack(entry_page := page_url, device := device, utm_source := nullif(lower(trim(utm_source)), ''),
                                    referrer_host := regexp_replace(lower(nullif(regexp_extract(referrer_url, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)', 1), '')), '^www\\.', '')),
                        (event_time, event_id)) AS first_event,
           arg_max_null(page_url, (event_time, event_id)) AS exit_page,
           count(*) AS events,
           sum(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END)::BIGINT AS pages,
           sum(CASE WHEN event_type = 'product_view' THEN 1 ELSE 0 END)::BIGINT AS product_views,
           sum(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END)::BIGINT AS adds_to_cart,
           sum(CASE WHEN event_type = 'checkout_start' THEN 1 ELSE 0 END)::BIGINT AS checkouts,
           coalesce(bool_or(event_type = 'purchase'), false) AS converted,
           max(utm_campaign) AS utm_campaign
    FROM numbered GROUP BY anonymous_id, tracking_consent, session_no
  )
  SELECT substr(sha256(anonymous_id || ':' || least_event_id), 1, 32) AS session_id, anonymous_id, tracking_consent, account_id,
         session_start, session_end, first_event.entry_page AS entry_page, exit_page, events, pages, product_views, adds_to_cart,
         checkouts, converted, first_event.device AS device, utm_campaign, first_event.utm_source AS utm_source,
         first_event.referrer_host AS referrer_host
  FROM sessions
) TO '{target}' (FORMAT parquet)
"""
SESSIONS_DIFFER_SQL = """
WITH spark AS (SELECT * FROM read_parquet('{spark}')), duck AS (SELECT * FROM read_parquet('{duckdb}'))
SELECT (SELECT count(*) FROM (SELECT * FROM spark EXCEPT ALL SELECT * FROM duck))
     + (SELECT count(*) FROM (SELECT * FROM duck EXCEPT ALL SELECT * FROM spark))
"""


def _lake_with_sources(spark: SparkSession, conf_file: str | None, root: str, customers: DataFrame, links: DataFrame):
    """Return ``(lake, conf)``: a lake of its own under ``root`` (its silver.identity_weights
    estimated there, not found from another size) holding ``customers`` as silver.customers
    (with their phones' hashes, as organize's customers step writes them) and ``links`` as
    silver.identity_links, the other declared columns null."""
    from crmlake.config import load_conf
    from crmlake.lake import Lake
    from crmlake.people import with_phone_sha256

    conf = load_conf(conf_file, [f"paths.lake={root}"])
    lake = Lake(spark, conf)
    customers = with_phone_sha256(customers, conf.business.default_phone_region)
    for table, rows in (("silver.customers", customers), ("silver.identity_links", links)):
        lake.overwrite(table, lake.catalog.spec(table).padded(rows))
    return lake, conf


def _copied_lake(spark: SparkSession, conf_file: str | None, lake, root: str):
    """Return a Lake at ``root`` holding a copy of ``lake``'s tables (not its checkpoints)."""
    import shutil

    from crmlake.config import load_conf
    from crmlake.lake import Lake

    shutil.copytree(lake.conf.paths.lake, root, ignore=shutil.ignore_patterns("_checkpoints"))
    return Lake(spark, load_conf(conf_file, [f"paths.lake={root}"]))


def bench_identity(spark: SparkSession, conf_file: str | None, tmp: str, edges_wanted: int) -> list[str]:
    """Time, on :func:`~benchmarks.graphs.identity_sources` of about ``edges_wanted`` edges, the
    weights' estimation, then a full rebuild of identity as organize runs it
    (:func:`crmlake.organize.persons.organize_identity`: the profiles built, the pairs scored,
    the components, the map, both written to the lake), crmlake's components step and SciPy's
    on the graph it accepted, whether they place the accounts alike, and a day of 1% new edges
    grown into the lake against a full rebuild of a copy of it; return printable lines."""
    from crmlake.organize.matching import LINKED, VETOED, match_profiles
    from crmlake.organize.persons import MAP, PAIRS, matching_weights, organize_identity, store_weights
    from crmlake.people import ACCOUNT, with_phone_sha256

    root = f"{tmp}/identity-{edges_wanted}"
    lake, conf = _lake_with_sources(spark, conf_file, f"{root}/lake", *identity_sources(spark, edges_wanted))
    links = lake.read("silver.identity_links").select("anonymous_id", "account_id")
    weights = []

    def estimated() -> None:
        profiles = match_profiles(lake.read("silver.customers"), conf.business.default_phone_region).checkpoint()
        weights.append(matching_weights(lake, conf, profiles, links, FIRST_DAY, rebuild=True)[0])
        store_weights(lake, weights[0], FIRST_DAY)

    estimated_took = seconds(estimated)
    nothing = spark.createDataFrame([], "anonymous_id string, account_id string")
    # The stored weights are kept (estimated today): the rebuild is organize's with young weights,
    # and no map yet (a first build; a full refresh over a map is timed with the day below).
    with rounds_taken() as rounds:
        took = seconds(lambda: organize_identity(lake, conf, FIRST_DAY, True, False, None, nothing.select("account_id"), nothing))
    pairs, identity_map = lake.read(PAIRS), lake.read(MAP)
    # Safe to collect: one row per decision.
    decisions = {row["decision"]: row["count"] for row in pairs.groupBy("decision").count().collect()}
    link_count = links.count()
    sizes = identity_map.where(F.col("identifier_type") == ACCOUNT).groupBy("person_id").count().agg(F.count(F.lit(1)).alias("persons"), F.max("count").alias("largest")).first()
    edges = sum(decisions.values()) + link_count
    merged, split = planted_persons_missed(identity_map)
    lines = [
        f"identity weights            : {weights[0].method} from {weights[0].pairs:,} candidate pairs in {estimated_took:.1f}s (profiles built, EM, stored)",
        (f"identity, first build       : {edges:,} edges = {sum(decisions.values()):,} candidate pairs scored ({decisions.get(LINKED, 0):,} linked,"
         f" {decisions.get(VETOED, 0):,} vetoed by names) + {link_count:,} cookie links -> {sizes['persons']:,} persons (up to {sizes['largest']} accounts, components in {rounds[0]} rounds),"
         f" in {took:.1f}s = {edges / took:,.0f} edges/s (aim >= 50,000 at 1M; no map before it: every id minted; profiles built, pairs and map written to the lake)"),
        f"identity, planted persons   : {merged:,} persons merging planted ones (hubs), {split:,} planted persons split (chains)",
    ]
    lines += _components_against_scipy(spark, pairs, links, identity_map, root, took)

    # A day adding 1% new edges, written to silver as organize's accounts and sessions steps would
    # (untimed), then grown into the lake against a full rebuild of a copy of it, both with the map's rewrite.
    new_customers, new_links = identity_day(spark, edges_wanted)
    before = lake.version("silver.customers")
    lake.append("silver.customers", lake.catalog.spec("silver.customers").padded(with_phone_sha256(new_customers, conf.business.default_phone_region)))
    lake.append("silver.identity_links", lake.catalog.spec("silver.identity_links").padded(new_links))
    rebuilt_lake = _copied_lake(spark, conf_file, lake, f"{root}/rebuilt")
    day = FIRST_DAY + dt.timedelta(days=1)
    changed = new_customers.select("account_id")
    grown_took = seconds(lambda: organize_identity(lake, conf, day, False, False, before, changed, new_links))
    rebuilt_took = seconds(lambda: organize_identity(rebuilt_lake, rebuilt_lake.conf, day, True, False, before, changed, new_links))
    maps = [each.read(MAP) for each in (lake, rebuilt_lake)]
    differ = maps[0].exceptAll(maps[1]).count() + maps[1].exceptAll(maps[0]).count()
    day_edges = new_links.count() + lake.read(PAIRS).where(F.col("scored_on") == day).count()
    lines.append(f"identity, a day of 1% edges : {day_edges:,} edges (new cookie links + pairs rescored); grown {grown_took:.1f}s, full rebuild {rebuilt_took:.1f}s"
                 f" (ratio {grown_took / rebuilt_took:.2f}, aim <= 0.10; each with the pairs' write and the map's rewrite); map rows differing: {differ:,}")
    # The first build had no map (every id minted); the day's rebuild of the copy ran over its map, as --full-refresh does.
    rebuilt_edges = rebuilt_lake.read(PAIRS).count() + rebuilt_lake.read("silver.identity_links").count()
    lines.append(f"identity, full refresh      : {rebuilt_edges:,} edges rebuilt over the map before (ids kept by vote) in {rebuilt_took:.1f}s"
                 f" = {rebuilt_edges / rebuilt_took:,.0f} edges/s (aim >= 50,000 at 1M)")
    return lines


def _components_against_scipy(spark: SparkSession, pairs: DataFrame, links: DataFrame, identity_map: DataFrame, root: str, rebuild_took: float) -> list[str]:
    """Time crmlake's components step and SciPy's, each a job from Parquet to Parquet, on the
    graph crmlake accepted (:func:`~benchmarks.graphs.accepted_graph` of ``pairs``, ``links``
    and ``identity_map``), and count the accounts and cookies the map and SciPy place
    differently; return printable lines, the full rebuild's ``rebuild_took`` seconds beside."""
    nodes, edges = accepted_graph(pairs, links, identity_map, f"{root}/accepted")
    node_count, edge_count = spark.read.parquet(f"file://{nodes}").count(), spark.read.parquet(f"file://{edges}").count()
    with rounds_taken() as rounds:
        crmlake_took = seconds(lambda: crmlake_components(spark, nodes, edges, f"{root}/components-crmlake"))
    found = []
    scipy_took = seconds(lambda: found.append(scipy_components(nodes, edges, f"{root}/components-scipy.parquet")))
    differ = placed_differently(identity_map, spark.read.parquet(f"file://{root}/components-scipy.parquet"))
    return [
        (f"identity, components alone : {edge_count:,} accepted edges (linked pairs + links of attached cookies) over {node_count:,} nodes -> {found[0]:,} components;"
         f" crmlake's connected_components (Spark's rounds, as organize runs them on more than organize.identity.driver_components_max_edges linked pairs; {rounds[0]} rounds) {crmlake_took:.1f}s, SciPy (pyarrow + csgraph, 1 core) {scipy_took:.1f}s"
         f" (ratio {crmlake_took / scipy_took:.1f}; each from Parquet to Parquet); crmlake's whole rebuild {rebuild_took:.1f}s"),
        (f"identity, against SciPy     : accounts placed differently: {differ[0]:,}, cookies: {differ[1]:,}"
         " (crmlake's persons against SciPy's components of the edges crmlake accepted; crmlake's rules chose the edges)"),
    ]


def bench_organize(spark: SparkSession, conf_file: str | None, tmp: str, edge_counts: list[int], session_events: int) -> list[str]:
    """Time identity resolution at each of ``edge_counts`` and, unless ``session_events`` is 0,
    sessionization against DuckDB; return printable lines."""
    import duckdb
    from crmlake.organize.transforms import sessionize

    lines = [line for edges_wanted in edge_counts for line in bench_identity(spark, conf_file, tmp, edges_wanted)]
    if not session_events:
        return lines

    visitors = max(1, session_events // 40)
    source = f"{tmp}/session-events"
    spark.range(session_events).select(
        F.col("id").cast("string").alias("event_id"),
        # Each visitor: 40 events, in 5 visits on 5 days, 8 clicks two minutes apart.
        (F.lit(1_790_000_000) + F.floor(F.col("id") / visitors) * 120 + F.floor(F.col("id") / visitors / 8) * 86400).cast("timestamp").alias("event_time"),
        F.element_at(F.array(*[F.lit(t) for t in ("page_view", "product_view", "add_to_cart", "purchase")]), (F.col("id") % 4 + 1).cast("int")).alias("event_type"),
        (F.col("id") % visitors).cast("string").alias("anonymous_id"),
        (F.col("id") % visitors).cast("string").alias("account_id"),
        (F.col("id") % 10 != 0).alias("tracking_consent"),
        F.concat(F.lit("/p/"), (F.col("id") % 500).cast("string")).alias("page_url"),
        F.lit("app").alias("device"),
        F.lit(None).cast("string").alias("utm_campaign"),
        F.lit(None).cast("string").alias("utm_source"),
        F.lit(None).cast("string").alias("referrer_url"),
    ).write.parquet(f"file://{source}")
    # Each side twice, the second run warm (the JVM's code compiled, the files in the page cache):
    # the aim is set on the warm runs.
    spark_took = [seconds(lambda: sessionize(spark.read.parquet(f"file://{source}"), 30).write.parquet(f"file://{tmp}/sessions-spark-{run}")) for run in (1, 2)]
    sessions = spark.read.parquet(f"file://{tmp}/sessions-spark-2").count()
    with duckdb.connect() as db:
        duck_took = [seconds(lambda: db.execute(SESSION_SQL.format(gap=30 * 60, source=source, target=f"{tmp}/sessions-duckdb-{run}.parquet"))) for run in (1, 2)]
        duck_sessions = db.execute(f"SELECT count(*) FROM read_parquet('{tmp}/sessions-duckdb-2.parquet')").fetchone()[0]
        differ = db.execute(SESSIONS_DIFFER_SQL.format(spark=f"{tmp}/sessions-spark-2/*.parquet", duckdb=f"{tmp}/sessions-duckdb-2.parquet")).fetchone()[0]
    lines += [
        f"sessionize (Spark)          : {session_events:,} events -> {sessions:,} sessions in {spark_took[0]:.1f}s, warm {spark_took[1]:.1f}s = {session_events / spark_took[1]:,.0f} events/s",
        f"sessionize (DuckDB, same SQL): {session_events:,} events -> {duck_sessions:,} sessions in {duck_took[0]:.1f}s, warm {duck_took[1]:.1f}s = {session_events / duck_took[1]:,.0f} events/s",
        f"sessions differing          : {differ:,} (rows of either output not in the other)",
        f"ratio Spark / DuckDB        : warm {spark_took[1] / duck_took[1]:.2f} (aim <= 2.5), first runs {spark_took[0] / duck_took[0]:.2f} (one machine; Spark's edge is the cluster, not 2 cores)",
    ]
    return lines
