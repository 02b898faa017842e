"""``make bench``: figures measured against a peer in the same run (never asserted in tests).

Acquire section: a generated landing zone of about 1M and 10M clickstream events,
acquired into bronze, against plain copies measured in the same run (Spark reading the
same files as JSON with the contract's fields, and as text, writing Parquet with no checks).

Organize section: identity resolution as organize runs it (the graph contracted by account,
then connected components in Spark) on synthetic graphs of 1M and 5M edges (persons of two
accounts sharing an email, two cookies each), then a day adding 1% new edges grown
into the map against a full rebuild of the same graph; sessionization of 10M events by
crmlake's Spark transform and by DuckDB computing the same sessions in SQL on the same
Parquet, both writing Parquet (the rows of either output missing from the other are counted).

Daily section: one scheduled day at a constant daily volume after a short and a long history
(30 and 120 days by default). The same customers are simulated over each history plus one
day; the history is acquired and organized in one catch-up run (not timed), then the last
day is acquired and organized as the daily schedule would, each stage timed. The ratio
long / short says whether a day's cost follows the day's data or the lake's age; each
stage's steps are printed with their seconds.

Analyze section: the lifetime-value fit (grouping in Spark + maximum likelihood) on
purchase histories of 10k, 100k and 1M persons simulated from known BG/NBD and Gamma-Gamma
parameters: its time should stay nearly flat, and the fitted parameters approach the
simulated ones as persons grow. Then
the whole analyze stage (reports, propensity, segments, lifetime value, scores) at 100k
and 1M persons: a generated sample is organized and its silver tables replicated with
distinct ids to each size; the peer is a plain Spark copy of the same inputs.

Lake section: the configured engine's append against a plain ``df.write.parquet`` of the
same cached DataFrame (the copy limit), each timed several times alternately and
compared by median; a merge that changes 1% of the keys against a full rewrite of the
table; files per partition after the append. Then all the rows in one day: the append
against a plain ``df.write.partitionBy(...).parquet`` of the same frame, with the tasks
that wrote the day (cores used) and the files it got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import re
import statistics
import tempfile
import time

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.config import load_conf
from crmlake.lake import Lake, load_catalog
from crmlake.log import setup_logging, step_times
from crmlake.session import spark_session

FIRST_DAY = dt.date(2026, 10, 1)
RUN_DATE_SUFFIX = re.compile(r" (for|up to) \d{4}-\d{2}-\d{2}$")  # a step's name ends with its run date


def _seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _steps(steps: list[tuple[str, float]]) -> str:
    """The steps a stage logged (see :func:`crmlake.log.step_times`), each with its seconds, without the run date."""
    return ", ".join(f"{RUN_DATE_SUFFIX.sub('', step)} {seconds:.1f}s" for step, seconds in steps)


def events(spark: SparkSession, rows: int, days: int, first_id: int = 0) -> DataFrame:
    """Return ``rows`` synthetic click events over ``days`` date partitions."""
    return spark.range(first_id, first_id + rows).select(
        F.col("id").alias("event_id"),
        (F.col("id") % 100_000).cast("string").alias("account_id"),
        F.date_add(F.lit(FIRST_DAY), (F.col("id") % days).cast("int")).alias("event_date"),
        (F.col("id") * 7 % 10_000).cast("decimal(18,2)").alias("price"),
        F.sha2(F.col("id").cast("string"), 256).alias("page_url"),
    )


# The bench's own table, declared beside the library's catalog.
BENCH_TABLES = {
    "bronze.bench": {
        "description": "Synthetic events the lake bench writes.",
        "partition_by": ["event_date"],
        "columns": {"event_id": "bigint", "account_id": "string", "event_date": "date", "price": "decimal(18,2)", "page_url": "string"},
    }
}


def bench_lake(spark: SparkSession, conf_file: str | None, tmp: str, rows: int, days: int, repeats: int) -> list[str]:
    """Measure the lake's append, merge and layout; return printable lines."""
    frame = events(spark, rows, days).cache()
    frame.count()
    frame.write.parquet(f"file://{tmp}/warm-up")  # JIT and file-system warm-up, not timed
    plain_times, lake_times = [], []
    for attempt in range(repeats):
        conf = load_conf(conf_file, [f"paths.lake={tmp}/lake{attempt}"])
        lake = Lake(spark, conf, load_catalog().with_tables(BENCH_TABLES))
        plain_times.append(_seconds(lambda: frame.repartition("event_date").write.partitionBy("event_date").parquet(f"file://{tmp}/plain{attempt}")))
        lake_times.append(_seconds(lambda: lake.append("bronze.bench", frame, partition_by=["event_date"])))
    plain, appended = statistics.median(plain_times), statistics.median(lake_times)
    files = lake.files("bronze.bench")
    partitions = {tuple(sorted(f["partition_values"].items())) for f in files}

    keys = ["event_id", "event_date"]
    # 1% of the keys, spread over every partition (worst case: every file is rewritten) ...
    spread = frame.where(F.col("event_id") % 100 == 0).withColumn("price", F.col("price") + 1).cache()
    # ... and 1% of the keys within a few days (late corrections: only those partitions).
    last_days = FIRST_DAY + dt.timedelta(days=max(0, days - 3))
    clustered = frame.where(F.col("event_date") >= F.lit(last_days)).limit(rows // 100).withColumn("price", F.col("price") + 1).cache()
    spread_rows, clustered_rows = spread.count(), clustered.count()
    merged_spread = _seconds(lambda: lake.merge("bronze.bench", spread, keys=keys, order_by="price"))
    merged_clustered = _seconds(lambda: lake.merge("bronze.bench", clustered, keys=keys, order_by="price"))
    rewrite = _seconds(lambda: lake.overwrite("bronze.bench", frame, partition_by=["event_date"]))
    for cached in (frame, spread, clustered):
        cached.unpersist()
    return [
        f"lake append ({lake.engine.name} engine)  : {rows:,} rows, median {appended:.2f}s = {rows / appended:,.0f} rows/s",
        f"plain df.write.parquet      : {rows:,} rows, median {plain:.2f}s = {rows / plain:,.0f} rows/s",
        f"ratio append / plain        : {appended / plain:.2f} (aim <= 1.2; {repeats} runs each, alternating)",
        f"files per partition         : {len(files) / max(1, len(partitions)):.1f} ({len(files)} files, {len(partitions)} partitions)",
        f"full rewrite of the table   : {rows:,} rows in {rewrite:.2f}s",
        f"merge, 1% keys in all days  : {spread_rows:,} rows in {merged_spread:.2f}s (merge / rewrite = {merged_spread / rewrite:.2f})",
        f"merge, 1% keys in few days  : {clustered_rows:,} rows in {merged_clustered:.2f}s (merge / rewrite = {merged_clustered / rewrite:.2f})",
    ]


def writer_tasks(paths: list[str]) -> int:
    """Return how many Spark tasks wrote the data files ``paths``: each task names its files
    ``part-<task's partition>-...`` (``.c000``, ``.c001`` past ``maxRecordsPerFile``)."""
    return len({re.match(r"part-(\d+)", os.path.basename(p)).group(1) for p in paths})


def bench_one_day(spark: SparkSession, conf_file: str | None, tmp: str, rows: int, repeats: int) -> list[str]:
    """Time an append of ``rows`` events all in one date partition against a plain partitioned
    ``df.write.parquet`` of the same cached frame; return printable lines with the tasks and files
    that wrote the day."""
    frame = events(spark, rows, 1, first_id=rows).cache()
    frame.count()
    plain_times, lake_times = [], []
    for attempt in range(repeats):
        lake = Lake(spark, load_conf(conf_file, [f"paths.lake={tmp}/one-day{attempt}"]), load_catalog().with_tables(BENCH_TABLES))
        plain_path = f"{tmp}/one-day-plain{attempt}"
        plain_times.append(_seconds(lambda: frame.write.partitionBy("event_date").parquet(f"file://{plain_path}")))
        lake_times.append(_seconds(lambda: lake.append("bronze.bench", frame, partition_by=["event_date"])))
    frame.unpersist()
    plain, appended = statistics.median(plain_times), statistics.median(lake_times)
    lake_files = [f["path"] for f in lake.files("bronze.bench")]
    plain_files = glob.glob(f"{plain_path}/event_date=*/*.parquet")
    return [
        f"one day, lake append        : {rows:,} rows, median {appended:.2f}s, {writer_tasks(lake_files)} tasks wrote {len(lake_files)} files",
        f"one day, plain partitioned  : {rows:,} rows, median {plain:.2f}s, {writer_tasks(plain_files)} tasks wrote {len(plain_files)} files",
        f"ratio append / plain        : {appended / plain:.2f} for one day ({spark.sparkContext.defaultParallelism} cores)",
    ]


def _records_read(facts: dict) -> int:
    """Records one source's acquire read, from its facts: accepted, quarantined and duplicates."""
    return facts["accepted"] + facts["quarantined"] + facts["duplicates"]


def bench_acquire(spark: SparkSession, conf_file: str | None, tmp: str, events: int) -> list[str]:
    """Generate about ``events`` clickstream events, then time acquire against two plain copies:
    the same files read as text, and read as JSON with the contract's fields, written as Parquet."""
    from crmlake.acquire import job as acquire
    from crmlake.acquire.contract import SOURCES
    from crmlake.generate.landing import write_landing

    landing = f"{tmp}/landing-{events}"
    end = dt.date(2026, 11, 21)
    # The simulation yields about 75 events per person over 60 days.
    write_landing(spark, landing, max(100, events // 75), 60, end, 11, "Asia/Taipei")
    conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-lake-{events}"])
    files = f"file://{landing}/clickstream/dt=*/*"
    fields = ", ".join(f"{f.name} string" for f in SOURCES["clickstream"].fields)
    # JIT warm-up, not timed: each side once over the first 5 days (at 1M events a cold JVM's
    # compiling would otherwise be a good part of what is timed; a daily job's volume amortizes it).
    warm_until = end - dt.timedelta(days=55)
    warm_files = [f.path for f in acquire.discover(landing, "clickstream", warm_until)]
    spark.read.schema(fields).json(warm_files).write.parquet(f"file://{tmp}/json-warm-{events}")
    warm_conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={tmp}/acquire-warm-{events}"])
    acquire.acquire_source(spark, Lake(spark, warm_conf), warm_conf, SOURCES["clickstream"], warm_until, acquire.IngestLog(frozenset(), frozenset()))
    as_text = _seconds(lambda: spark.read.text(files).write.parquet(f"file://{tmp}/text-copy-{events}"))
    as_json = _seconds(lambda: spark.read.schema(fields).json(files).write.parquet(f"file://{tmp}/json-copy-{events}"))
    lake = Lake(spark, conf)
    facts: dict = {}
    took = _seconds(lambda: facts.update(acquire.acquire_source(spark, lake, conf, SOURCES["clickstream"], end, acquire.IngestLog(frozenset(), frozenset()))))
    read = _records_read(facts)
    written = lake.files("bronze.clickstream")
    partitions = {tuple(sorted(f["partition_values"].items())) for f in written}
    return [
        f"acquire clickstream         : {read:,} events in {took:.1f}s = {read / took:,.0f} events/s",
        f"plain copy, JSON -> parquet : {read:,} lines in {as_json:.1f}s = {read / as_json:,.0f} lines/s",
        f"plain copy, text -> parquet : {read:,} lines in {as_text:.1f}s = {read / as_text:,.0f} lines/s",
        f"ratio acquire / JSON copy   : {took / as_json:.2f} (aim <= 3); acquire / text copy {took / as_text:.2f}",
        f"bronze files per partition  : {len(written) / max(1, len(partitions)):.1f} ({len(written)} files, {len(partitions)} days)",
    ]


def bench_daily(spark: SparkSession, conf_file: str | None, tmp: str, daily_events: int, history_days: list[int]) -> list[str]:
    """Time one day's acquire and organize after each length of history in ``history_days``
    (about ``daily_events`` clickstream events that day); return printable lines with the
    ratio of each stage's time after the longest history to after the shortest."""
    from crmlake.acquire import job as acquire
    from crmlake.generate.landing import write_landing
    from crmlake.organize import job as organize

    end = dt.date(2026, 11, 21)
    customers = max(100, daily_events * 60 // 75)  # the simulation: about 75 events per person over 60 days
    lines, took = [], {}
    for days in history_days:
        root = f"{tmp}/daily-{days}"
        conf = load_conf(conf_file, [f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports"])
        write_landing(spark, conf.landing_root, customers, days + 1, end, 13, conf.get("business.timezone"))
        acquire.run(spark, conf, end - dt.timedelta(days=1))  # the history, caught up in one run
        organize.run(spark, conf, end - dt.timedelta(days=1))
        acquired: dict = {}
        with step_times() as steps:
            took[days] = (_seconds(lambda: acquired.update(acquire.run(spark, conf, end))), _seconds(lambda: organize.run(spark, conf, end)))
        day_events = _records_read(acquired["clickstream"])
        history_events = Lake(spark, conf).read("bronze.clickstream").count() - acquired["clickstream"]["accepted"]
        lines += [f"day after {days:>3} days history : {day_events:,} events that day ({history_events:,} in the history); "
                  f"acquire {took[days][0]:.1f}s, organize {took[days][1]:.1f}s",
                  f"{'  its steps':<28}: {_steps(steps)}"]
    short, long = min(history_days), max(history_days)
    if short != long:
        lines.append(f"{f'ratio {long} / {short} days':<28}: acquire {took[long][0] / took[short][0]:.2f}, organize {took[long][1] / took[short][1]:.2f} (aim <= 1.15)")
    return lines


# What crmlake.organize.transforms.sessionize computes, column for column (the bench checks that
# both give the same sessions): a visitor's events with and without tracking consent apart,
# entry and exit pages by (event_time, event_id), the session id from its first event.
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
  )
  SELECT substr(sha256(anonymous_id || ':' || min(event_id)), 1, 32) AS session_id, anonymous_id, tracking_consent,
         max(CASE WHEN tracking_consent THEN account_id END) AS account_id,
         min(event_time) AS session_start, max(event_time) AS session_end,
         arg_min(page_url, (event_time, event_id)) AS entry_page, arg_max(page_url, (event_time, event_id)) AS exit_page,
         count(*) AS events,
         sum(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END)::BIGINT AS pages,
         sum(CASE WHEN event_type = 'product_view' THEN 1 ELSE 0 END)::BIGINT AS product_views,
         sum(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END)::BIGINT AS adds_to_cart,
         sum(CASE WHEN event_type = 'checkout_start' THEN 1 ELSE 0 END)::BIGINT AS checkouts,
         bool_or(event_type = 'purchase') AS converted,
         arg_min(device, event_time) AS device, max(utm_campaign) AS utm_campaign
  FROM numbered GROUP BY anonymous_id, tracking_consent, session_no
) TO '{target}' (FORMAT parquet)
"""
SESSIONS_DIFFER_SQL = """
WITH spark AS (SELECT * FROM read_parquet('{spark}')), duck AS (SELECT * FROM read_parquet('{duckdb}'))
SELECT (SELECT count(*) FROM (SELECT * FROM spark EXCEPT ALL SELECT * FROM duck))
     + (SELECT count(*) FROM (SELECT * FROM duck EXCEPT ALL SELECT * FROM spark))
"""


def bench_organize(spark: SparkSession, tmp: str, edge_counts: list[int], session_events: int, broadcast_max_rows: int) -> list[str]:
    """Time identity resolution against edge count and sessionization against DuckDB."""
    import duckdb

    from crmlake.organize.identity import assign_person_ids, grow_identity_map, identity_components, identity_edges, touched_nodes
    from crmlake.organize.transforms import sessionize

    region, max_per_key = "TW", 5

    def identity_sources(edges_wanted: int) -> tuple[DataFrame, DataFrame]:
        # Persons of 6 edges: two accounts sharing an email (no phone), two cookies each, as
        # silver.customers and silver.identity_links hold them.
        persons = edges_wanted // 6
        accounts = spark.range(2 * persons).select(
            F.concat(F.lit("a"), F.col("id").cast("string")).alias("account_id"),
            F.format_string("member%d@example.com", F.floor(F.col("id") / 2)).alias("email"),
            F.lit(None).cast("string").alias("phone"),
            F.lit(False).alias("erased"),
        )
        links = spark.range(4 * persons).select(
            F.concat(F.lit("c"), F.col("id").cast("string")).alias("anonymous_id"), F.concat(F.lit("a"), F.floor(F.col("id") / 2).cast("string")).alias("account_id")
        )
        return accounts, links

    def day_links(edges_wanted: int) -> DataFrame:
        # A day's 1% of edges: new cookies of existing accounts.
        accounts = 2 * (edges_wanted // 6)
        return spark.range(edges_wanted // 100).select(
            F.concat(F.lit("d"), F.col("id").cast("string")).alias("anonymous_id"), F.concat(F.lit("a"), F.pmod(F.xxhash64("id"), F.lit(accounts)).cast("string")).alias("account_id")
        )

    def resolved(links: DataFrame, accounts: DataFrame, previous: DataFrame) -> DataFrame:
        return assign_person_ids(identity_components(*identity_edges(links.withColumn("tracking_consent", F.lit(True)), accounts, region, max_per_key)), previous)

    def noop(frame: DataFrame) -> None:
        frame.write.format("noop").mode("overwrite").save()

    lines = []
    no_map = spark.createDataFrame([], "identifier_type string, identifier string, person_id string")
    for edges_wanted in edge_counts:
        accounts, links = (frame.cache() for frame in identity_sources(edges_wanted))
        nodes, edges = (frame.cache() for frame in identity_edges(links.withColumn("tracking_consent", F.lit(True)), accounts, region, max_per_key))
        node_count, edge_count = nodes.count(), edges.count()
        took = _seconds(lambda: noop(assign_person_ids(identity_components(nodes, edges), no_map)))
        lines.append(f"identity resolution         : {edge_count:,} edges, {node_count:,} nodes in {took:.1f}s = {edge_count / took:,.0f} edges/s")
        # A day adding 1% new edges, grown into the map from the day's links against a full
        # rebuild of the same graph; both read the same cached sources (as organize reads silver).
        resolved(links, accounts, no_map).write.parquet(f"file://{tmp}/identity-map-{edges_wanted}")
        previous = spark.read.parquet(f"file://{tmp}/identity-map-{edges_wanted}")
        new_links = day_links(edges_wanted).cache()
        grown_links = links.unionByName(new_links).cache()
        grown_links.count()
        no_account = spark.createDataFrame([], "account_id string")
        touched = lambda: touched_nodes(new_links, no_account, accounts, accounts, region, broadcast_max_rows)  # noqa: E731
        grown = _seconds(lambda: noop(grow_identity_map(grown_links.withColumn("tracking_consent", F.lit(True)), accounts, previous, touched(), region, max_per_key, broadcast_max_rows)))
        rebuilt = _seconds(lambda: noop(resolved(grown_links, accounts, previous)))
        lines.append(f"identity, a day of 1% edges : grown {grown:.1f}s, full rebuild {rebuilt:.1f}s (ratio {grown / rebuilt:.2f})")
        for frame in (accounts, links, nodes, edges, new_links, grown_links):
            frame.unpersist()

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
    ).write.parquet(f"file://{source}")
    spark_took = _seconds(lambda: sessionize(spark.read.parquet(f"file://{source}"), 30).write.parquet(f"file://{tmp}/sessions-spark"))
    sessions = spark.read.parquet(f"file://{tmp}/sessions-spark").count()
    with duckdb.connect() as db:
        duck_took = _seconds(lambda: db.execute(SESSION_SQL.format(gap=30 * 60, source=source, target=f"{tmp}/sessions-duckdb.parquet")))
        duck_sessions = db.execute(f"SELECT count(*) FROM read_parquet('{tmp}/sessions-duckdb.parquet')").fetchone()[0]
        differ = db.execute(SESSIONS_DIFFER_SQL.format(spark=f"{tmp}/sessions-spark/*.parquet", duckdb=f"{tmp}/sessions-duckdb.parquet")).fetchone()[0]
    lines += [
        f"sessionize (Spark)          : {session_events:,} events -> {sessions:,} sessions in {spark_took:.1f}s = {session_events / spark_took:,.0f} events/s",
        f"sessionize (DuckDB, same SQL): {session_events:,} events -> {duck_sessions:,} sessions in {duck_took:.1f}s = {session_events / duck_took:,.0f} events/s",
        f"sessions differing          : {differ:,} (rows of either output not in the other)",
        f"ratio Spark / DuckDB        : {spark_took / duck_took:.2f} (one machine; Spark's edge is the cluster, not 2 cores)",
    ]
    return lines


def bench_lifetime_value(spark: SparkSession, person_counts: list[int]) -> list[str]:
    """Time the BG/NBD + Gamma-Gamma fit against the number of persons; return report lines.

    Persons are simulated from known parameters, their first purchases spread over the days
    of a year and the time unit a week, so each line also shows how close the fit comes to
    them. The fit's cost follows the distinct (frequency, recency, T), not the persons.
    """
    from crmlake.analyze.clv import fit_lifetime_value, grouped_bgnbd_inputs, simulate_purchases, simulate_spend

    truth = {"r": 0.6, "alpha": 4.0, "a": 0.8, "b": 2.4, "p": 6.0, "q": 4.0, "v": 150.0}
    lines = []
    for persons in person_counts:
        rng = np.random.default_rng(persons)
        rows = simulate_purchases(truth, rng.integers(1, 366, persons) / 7.0, rng, recency_step=1 / 7.0)
        spend = np.where(rows[:, 0] > 0, simulate_spend(truth, np.maximum(rows[:, 0], 1), rng), np.nan)
        frame = pd.DataFrame({"person_id": np.arange(persons).astype(str), "frequency": rows[:, 0], "recency": rows[:, 1], "T": rows[:, 2], "spend": spend})
        stats = spark.createDataFrame(frame).cache()
        stats.count()
        groups = len(grouped_bgnbd_inputs(stats))
        fitted = []
        took = _seconds(lambda: fitted.append(fit_lifetime_value(stats, 7.0)))
        model = fitted[0]
        worst = max(abs(value / truth[name] - 1) for name, value in model.params().items())
        lines.append(f"lifetime-value fit          : {persons:>9,} persons, {groups:,} distinct (frequency, recency, T) in {took:.1f}s;"
                     f" parameters within {worst:.0%} of the simulated ones")
        stats.unpersist()
    return lines


# How bench_analyze scales a generated sample: per table analyze reads, the partition columns and
# the columns that name a person, an account, a cookie, an order or a session (made unique
# per replica); hashed identifiers and guest emails are rewritten so that the joins of
# crmlake.people still match inside each replica.
SCALED_TABLES = {
    "silver.customer_360": ((), ("person_id", "primary_account_id")),
    "silver.customers": ((), ("account_id", "referred_by")),
    "silver.customer_history": ((), ("account_id", "referred_by")),
    "bronze.orders": (("order_date",), ("order_id", "account_id")),
    "silver.order_lines": (("order_date",), ("order_id", "account_id")),
    "silver.sessions": (("session_date",), ("session_id", "anonymous_id", "account_id")),
    "silver.identity_map": (("identifier_type",), ("person_id",)),
}


def replicated(df: DataFrame, replicas: int, id_columns: tuple[str, ...]) -> DataFrame:
    """Return ``replicas`` copies of a silver frame, ids suffixed ``~<replica>`` so copies are distinct people.

    ``identity_map.identifier`` keeps matching: plain identifiers are suffixed, hashed ones
    become sha256(hash~replica); an order line's ``guest_email`` becomes
    ``sha256(normalised email)~replica``, whose own hash is that same hashed identifier.
    """
    from crmlake.people import ACCOUNT, COOKIE, normalised_email, sha256_hex

    copies = df.crossJoin(df.sparkSession.range(replicas).select(F.concat(F.lit("~"), F.col("id").cast("string")).alias("_suffix")))
    for name in id_columns:
        copies = copies.withColumn(name, F.concat(name, "_suffix"))
    if "account_ids" in df.columns:
        copies = copies.withColumn("account_ids", F.transform("account_ids", lambda account: F.concat(account, F.col("_suffix"))))
    if "identifier" in df.columns:
        plain = F.col("identifier_type").isin(ACCOUNT, COOKIE)
        copies = copies.withColumn("identifier", F.when(plain, F.concat("identifier", "_suffix")).otherwise(F.sha2(F.concat("identifier", "_suffix"), 256)))
    if "guest_email" in df.columns:
        copies = copies.withColumn("guest_email", F.concat(sha256_hex(normalised_email(F.col("guest_email"))), "_suffix"))
    return copies.drop("_suffix")


def bench_analyze(spark: SparkSession, conf_file: str | None, tmp: str, person_counts: list[int], base_customers: int, days: int) -> list[str]:
    """Time the analyze stage at several numbers of persons; return printable lines.

    A landing zone of ``base_customers`` is generated, acquired and organized once; its
    silver tables are then replicated (distinct ids per copy) to each size, and the analyze
    stage runs on them with the configured models. The peer is a plain Spark copy of the
    same inputs (read every silver table analyze reads, write Parquet).
    """
    from crmlake.acquire import job as acquire
    from crmlake.analyze import job as analyze
    from crmlake.generate.landing import write_landing
    from crmlake.organize import job as organize

    end = FIRST_DAY + dt.timedelta(days=days - 1)

    def conf_at(root: str):
        return load_conf(conf_file, [f"paths.landing={tmp}/base/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                     f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts"])

    base = conf_at(f"{tmp}/base")
    write_landing(spark, base.landing_root, customers=base_customers, days=days, end=end, seed=7, timezone=base.get("business.timezone"))
    acquire.run(spark, base, end)
    organize.run(spark, base, end)
    base_lake = Lake(spark, base)
    base_persons = base_lake.read("silver.customer_360").count()
    lines = [f"sample                      : {base_customers:,} customers x {days} days generated and organized -> {base_persons:,} persons"]
    for persons in person_counts:
        replicas = max(1, round(persons / base_persons))
        scaled = conf_at(f"{tmp}/persons-{persons}")
        lake = Lake(spark, scaled)
        for table, (partition_by, id_columns) in SCALED_TABLES.items():
            lake.overwrite(table, replicated(base_lake.read(table), replicas, id_columns), partition_by=partition_by)
        rows = {table: lake.read(table).count() for table in SCALED_TABLES}
        copy = _seconds(lambda: [lake.read(t).write.mode("overwrite").parquet(f"file://{tmp}/copy-{persons}/{t}") for t in SCALED_TABLES])
        with step_times() as steps:
            took = _seconds(lambda: analyze.run(spark, scaled, end))
        lines += [
            f"analyze                     : {rows['silver.customer_360']:,} persons, {rows['silver.sessions']:,} sessions, "
            f"{rows['silver.order_lines']:,} order lines in {took:.1f}s = {rows['silver.customer_360'] / took:,.0f} persons/s",
            f"  its steps                 : {_steps(steps)}",
            f"copy limit (same inputs)    : {copy:.1f}s; ratio analyze / copy {took / copy:.1f}",
        ]
    return lines


def bench_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m crmlake.bench`` (``make bench ARGS="..."``)."""
    parser = argparse.ArgumentParser(prog="python -m crmlake.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default=None, help="environment file (e.g. conf/local.yaml)")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per write (default 2,000,000)")
    parser.add_argument("--days", type=int, default=30, help="date partitions the rows spread over (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each write (default 3)")
    parser.add_argument("--events", default="1000000,10000000", help="clickstream sizes for the acquire bench, comma-separated (default 1M and 10M)")
    parser.add_argument("--edges", default="1000000,5000000", help="identity graph sizes for the organize bench, comma-separated (default 1M and 5M)")
    parser.add_argument("--session-events", type=int, default=10_000_000, help="events sessionized in the organize bench (default 10,000,000)")
    parser.add_argument("--daily-events", type=int, default=300_000, help="clickstream events on the timed day of the daily-run bench (default 300,000)")
    parser.add_argument("--history-days", default="30,120", help="days of history before the timed day, comma-separated (default 30 and 120)")
    parser.add_argument("--ltv-persons", default="10000,100000,1000000", help="persons for the lifetime-value fit bench, comma-separated")
    parser.add_argument("--analyze-persons", default="100000,1000000", help="persons for the analyze-stage bench, comma-separated (default 100k and 1M)")
    parser.add_argument("--analyze-sample", type=int, default=2_000, help="customers generated for the analyze-stage bench before scaling (default 2,000)")
    parser.add_argument("--only", choices=("lake", "acquire", "daily", "organize", "analyze"), default=None, help="run one section only")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print figures with ratios against their peers."""
    args = bench_parser().parse_args(argv)
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        conf = load_conf(args.conf, [f"paths.lake={tmp}/lake"])
        with spark_session(conf, "bench") as spark:
            if args.only in (None, "lake"):
                print("\n".join(["", "crmlake bench: lake", *bench_lake(spark, args.conf, tmp, args.rows, args.days, args.repeats)]), flush=True)
                print("\n".join(["", "crmlake bench: lake, every row in one day", *bench_one_day(spark, args.conf, tmp, args.rows, args.repeats)]), flush=True)
            if args.only in (None, "acquire"):
                for events in (int(e) for e in args.events.split(",") if e.strip()):
                    print("\n".join(["", f"crmlake bench: acquire, about {events:,} events", *bench_acquire(spark, args.conf, tmp, events)]), flush=True)
            if args.only in (None, "daily"):
                histories = [int(d) for d in args.history_days.split(",") if d.strip()]
                print("\n".join(["", f"crmlake bench: a daily run of about {args.daily_events:,} events", *bench_daily(spark, args.conf, tmp, args.daily_events, histories)]), flush=True)
            if args.only in (None, "organize"):
                edge_counts = [int(e) for e in args.edges.split(",") if e.strip()]
                print("\n".join(["", "crmlake bench: organize", *bench_organize(spark, tmp, edge_counts, args.session_events, int(conf.get("organize.identity.broadcast_max_rows")))]), flush=True)
            if args.only in (None, "analyze"):
                persons = [int(p) for p in args.ltv_persons.split(",") if p.strip()]
                print("\n".join(["", "crmlake bench: analyze, lifetime-value fit", *bench_lifetime_value(spark, persons)]), flush=True)
                scaled = [int(p) for p in args.analyze_persons.split(",") if p.strip()]
                if scaled:
                    print("\n".join(["", "crmlake bench: analyze stage", *bench_analyze(spark, args.conf, tmp, scaled, args.analyze_sample, 60)]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
