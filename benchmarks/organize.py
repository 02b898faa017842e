"""Organize section: identity resolution as organize runs it (candidate pairs from blocks, each
pair's evidence weighed, persons the connected components of the linked pairs, in Spark) on
synthetic sources of about 1M and 5M edges, an edge being a candidate pair of accounts scored
or a cookie link read (persons of two accounts sharing an email, name and birth year, two
cookies each; one pair of persons in ten sharing a household computer, which the names veto);
the weights estimated by expectation maximisation as a rebuild does; then a day adding 1% new
edges (new cookies, a few new accounts) grown into the map against a full rebuild of the same
sources, and the rows where the two maps differ. Then sessionization of 10M events by
crmlake's Spark transform and by DuckDB computing the same sessions in SQL on the same
Parquet, both writing Parquet (the rows of either output missing from the other are counted).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.common import FIRST_DAY, seconds

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


def identity_sources(spark: SparkSession, edges_wanted: int) -> tuple[DataFrame, DataFrame]:
    """Return ``(customers, links)`` as silver.customers and silver.identity_links hold them,
    of about ``edges_wanted`` edges (candidate pairs + cookie links).

    A person ``p`` holds two accounts with one email, name and birth year (one pair), the
    first with a phone, and two cookies each (four links); one pair of persons in ten also
    shares a household computer (two links, one pair that the names veto)."""
    persons = max(2, edges_wanted // 5)
    account = F.col("id")
    person = F.floor(account / 2)
    customers = spark.range(2 * persons).select(
        F.format_string("a%d", account).alias("account_id"),
        F.format_string("member%d@example.com", person).alias("email"),
        F.when(account % 2 == 0, F.format_string("09%08d", person % 100_000_000)).alias("phone"),
        F.format_string("Member %d", person).alias("name"),
        (F.lit(1950) + person % 55).cast("int").alias("birth_year"),
        F.lit(False).alias("erased"),
    )
    own = spark.range(4 * persons).select(F.format_string("c%d", F.col("id")).alias("anonymous_id"), F.format_string("a%d", F.floor(F.col("id") / 2)).alias("account_id"))
    # The household computer of persons 10h and 10h + 1: each one's first account logged in on it.
    households = spark.range(max(1, persons // 10)).select(F.col("id").alias("household"), F.explode(F.array(F.lit(0), F.lit(2))).alias("offset"))
    shared = households.select(F.format_string("h%d", "household").alias("anonymous_id"), F.format_string("a%d", F.col("household") * 20 + F.col("offset")).alias("account_id"))
    return customers, own.unionByName(shared)


def identity_day(spark: SparkSession, edges_wanted: int) -> tuple[DataFrame, DataFrame]:
    """Return ``(new_customers, new_links)``: a day adding about 1% of ``edges_wanted`` edges to
    :func:`identity_sources`: new cookies of existing accounts (one in four logged into by both
    accounts of its person) and, one per thousand edges, a third account of an existing person."""
    persons = max(2, edges_wanted // 5)
    account = F.pmod(F.xxhash64("id"), F.lit(2 * persons))
    cookies = spark.range(max(1, edges_wanted // 100)).select(F.format_string("d%d", F.col("id")).alias("anonymous_id"), account.alias("_account"), (F.col("id") % 4 == 0).alias("_both"))
    links = cookies.select("anonymous_id", F.format_string("a%d", "_account").alias("account_id")).unionByName(
        cookies.where("_both").select("anonymous_id", F.format_string("a%d", F.col("_account").bitwiseXOR(F.lit(1))).alias("account_id"))
    )
    person = F.pmod(F.xxhash64("id", F.lit(1)), F.lit(persons))
    customers = spark.range(max(1, edges_wanted // 1000)).select(
        F.format_string("n%d", F.col("id")).alias("account_id"),
        F.format_string("member%d@example.com", person).alias("email"),
        F.lit(None).cast("string").alias("phone"),
        F.format_string("Member %d", person).alias("name"),
        (F.lit(1950) + person % 55).cast("int").alias("birth_year"),
        F.lit(False).alias("erased"),
    )
    return customers, links


def bench_identity(spark: SparkSession, conf_file: str | None, tmp: str, edges_wanted: int) -> list[str]:
    """Time a full rebuild of the identity map on about ``edges_wanted`` edges, the weights'
    estimation, and a day of 1% new edges grown against rebuilt; return printable lines."""
    from crmlake.config import load_conf
    from crmlake.lake import Lake
    from crmlake.organize.identity import (
        Matching,
        build_identity_map,
        grow_identity_map,
        touched_blocks,
    )
    from crmlake.organize.matching import LINKED, match_profiles
    from crmlake.organize.persons import matching_weights
    from crmlake.people import ACCOUNT

    root = f"{tmp}/identity-{edges_wanted}"
    # A lake of its own: silver.identity_weights is estimated here, not found from another size.
    conf = load_conf(conf_file, [f"paths.lake={root}/lake"])
    region = conf.business.default_phone_region
    customers, links = identity_sources(spark, edges_wanted)
    new_customers, new_links = identity_day(spark, edges_wanted)
    # As organize reads them: profiles checkpointed before identity starts, links from silver.
    profiles = match_profiles(customers, region).checkpoint()
    links = links.checkpoint()
    no_map = spark.createDataFrame([], "identifier_type string, identifier string, person_id string")
    weights = []
    estimated = seconds(lambda: weights.append(matching_weights(Lake(spark, conf), conf, profiles, links, FIRST_DAY, rebuild=True)[0]))
    rules = conf.organize.identity
    matching = Matching(weights[0], rules.link_min_probability, rules.max_accounts_per_key, rules.broadcast_max_rows)

    def rebuilt(at: str, profiles: DataFrame, links: DataFrame, previous: DataFrame) -> None:
        # What a full rebuild writes: the map and every scored pair.
        identity_map, pairs = build_identity_map(profiles, links, previous, matching)
        identity_map.write.parquet(f"file://{root}/{at}/map")
        pairs.write.parquet(f"file://{root}/{at}/pairs")

    took = seconds(lambda: rebuilt("first", profiles, links, no_map))
    pairs = spark.read.parquet(f"file://{root}/first/pairs")
    previous_map = spark.read.parquet(f"file://{root}/first/map")
    pair_count, link_count = pairs.count(), links.count()
    linked = pairs.where(F.col("decision") == LINKED).count()
    persons = previous_map.where(F.col("identifier_type") == ACCOUNT).select("person_id").distinct().count()
    edges = pair_count + link_count
    lines = [
        f"identity weights            : {weights[0].method} from {weights[0].pairs:,} candidate pairs in {estimated:.1f}s (a rebuild re-estimates them once they are old)",
        (f"identity, full rebuild      : {edges:,} edges = {pair_count:,} candidate pairs scored ({linked:,} linked) + {link_count:,} cookie links,"
         f" {persons:,} persons, in {took:.1f}s = {edges / took:,.0f} edges/s (aim >= 50,000 at 1M)"),
    ]

    # A day adding 1% new edges, grown into the map against a full rebuild of the same sources.
    customers_after = customers.unionByName(new_customers)
    profiles_after = match_profiles(customers_after, region).checkpoint()
    new_links = new_links.checkpoint()
    links_after = links.unionByName(new_links).checkpoint()
    changed = new_customers.select("account_id")

    def grown() -> None:
        blocks_touched = touched_blocks(customers, customers_after, changed, new_links, region)
        touched = changed.unionByName(new_links.select("account_id")).distinct()
        identity_map, pair_changes, _ = grow_identity_map(profiles_after, links_after, previous_map, pairs, touched, blocks_touched, matching)
        identity_map.write.parquet(f"file://{root}/grown/map")
        pair_changes.write.parquet(f"file://{root}/grown/pairs")

    grown_took = seconds(grown)
    rebuilt_took = seconds(lambda: rebuilt("rebuilt", profiles_after, links_after, previous_map))
    maps = [spark.read.parquet(f"file://{root}/{at}/map") for at in ("grown", "rebuilt")]
    differ = maps[0].exceptAll(maps[1]).count() + maps[1].exceptAll(maps[0]).count()
    day_edges = new_links.count() + spark.read.parquet(f"file://{root}/grown/pairs").where(~F.col("_gone")).count()
    lines.append(f"identity, a day of 1% edges : {day_edges:,} edges (new cookie links + pairs rescored); grown {grown_took:.1f}s, full rebuild {rebuilt_took:.1f}s"
                 f" (ratio {grown_took / rebuilt_took:.2f}); map rows differing: {differ:,}")
    return lines


def bench_organize(spark: SparkSession, conf_file: str | None, tmp: str, edge_counts: list[int], session_events: int) -> list[str]:
    """Time identity resolution against edge count and sessionization against DuckDB."""
    import duckdb
    from crmlake.organize.transforms import sessionize

    lines = [line for edges_wanted in edge_counts for line in bench_identity(spark, conf_file, tmp, edges_wanted)]

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
