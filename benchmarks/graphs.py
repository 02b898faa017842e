"""The identity bench's graphs and its components peer.

The synthetic sources (:func:`identity_sources`, :func:`identity_day`) hold chains and hubs: one
person in eight has a chain of 2 to 16 accounts, each sharing a phone or an email with the next
only (a person who changed email, then phone, then email...), so that the components need several
rounds of crmlake's algorithm; shop phones typed for the customers of a shop (4 accounts: pairs
that the names veto; 50: more than ``max_accounts_per_key``, pairing nobody), household computers
(two persons: vetoed) and internet cafés (30 accounts on one cookie: pairing nobody, attached to
nobody), none of which merges anybody by crmlake's rules.

The peer partitions exactly the graph crmlake accepted (:func:`accepted_graph`): the linked
candidate pairs and the links of the cookies attached to a person, over every account and
attached cookie of the map. SciPy's ``scipy.sparse.csgraph.connected_components`` runs on it as
a whole job (:func:`scipy_components`: the Parquet read by pyarrow, the ids factorised to ints,
the components, the Parquet written), beside crmlake's own components step on the same files
(:func:`crmlake_components`: :func:`crmlake.organize.components.connected_components` in Spark,
read to write). GraphFrames is not the peer: PyPI's ``graphframes-py`` (0.12.3) is Python only,
its ``GraphFrame`` calls the JVM class ``org.graphframes.GraphFramePythonAPI``, whose jar comes
from Maven (``--packages io.graphframes:...``), which this machine cannot reach
(``ClassNotFoundException`` on PySpark 4.2 without it).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

CHAIN_EVERY, CHAIN_LENGTHS = 8, 15       # one person in 8 holds a chain of 2..16 accounts
BIG_SHOP, SMALL_SHOP, CAFE = 50, 4, 30   # accounts sharing a shop's phone (pairing nobody / vetoed), a café's cookie
EDGES_PER_PERSON = 8.2                   # candidate pairs + cookie links per person, on average


def _phone(number) -> F.Column:
    """A valid mobile number of the default region (TW) for ``number`` (< 10^8)."""
    return F.format_string("09%08d", number)


def _accounts(spark: SparkSession, persons: int) -> DataFrame:
    """Return ``(person, k, chain)``: each person's accounts, ``k`` from 0; ``chain`` when the
    person's accounts link in a chain (2..16 of them), else two accounts of one email."""
    person = F.col("id")
    chain = person % CHAIN_EVERY == 0
    held = F.when(chain, F.lit(2) + F.floor(person / CHAIN_EVERY) % CHAIN_LENGTHS).otherwise(F.lit(2))
    return spark.range(persons).select(person.alias("person"), chain.alias("chain"), F.explode(F.sequence(F.lit(0), held - 1)).alias("k"))


def identity_sources(spark: SparkSession, edges_wanted: int) -> tuple[DataFrame, DataFrame]:
    """Return ``(customers, links)`` with the columns of silver.customers and
    silver.identity_links that identity reads (account_id, email, phone, name, birth_year, erased;
    anonymous_id, account_id), of about ``edges_wanted`` edges (candidate pairs + cookie links).

    Person ``p`` (name ``Member p``, one birth year) holds accounts ``a<p>-<k>``. A chain's account
    ``k`` has email ``(k + 1) // 2`` and phone ``k // 2`` of its person: each shares one contact
    with the next, none with the others. Otherwise both accounts have email 0, the first a phone;
    the second account of one person in 40 has a shop's phone instead (a shop of 50 accounts),
    of another in 40 a small shop's (4). Every account has two cookies of its own; the first
    accounts of persons ``10h`` and ``10h + 1`` share a household computer, and those of one
    person in ten share an internet café's (30 accounts)."""
    persons = max(2 * CHAIN_EVERY, int(edges_wanted / EDGES_PER_PERSON))
    p, k, chain = F.col("person"), F.col("k"), F.col("chain")
    group = F.floor(p / 40)
    phone = (
        F.when(chain, _phone(p * 8 + F.floor(k / 2)))
        .when(k == 0, _phone(p * 8))
        .when(p % 40 == 1, _phone(F.lit(90_000_000) + F.floor(group / BIG_SHOP)))
        .when(p % 40 == 21, _phone(F.lit(95_000_000) + F.floor(group / SMALL_SHOP)))
    )
    accounts = _accounts(spark, persons).withColumn("account_id", F.format_string("a%d-%d", p, k))
    customers = accounts.select(
        "account_id",
        F.format_string("member%d.%d@example.com", p, F.when(chain, F.floor((k + 1) / 2)).otherwise(0)).alias("email"),
        phone.alias("phone"),
        F.format_string("Member %d", p).alias("name"),
        (F.lit(1950) + p % 55).cast("int").alias("birth_year"),
        F.lit(False).alias("erased"),
    )
    own = accounts.select(F.explode(F.array(F.format_string("c%d-%d-0", p, k), F.format_string("c%d-%d-1", p, k))).alias("anonymous_id"), "account_id")
    first = accounts.where(k == 0)
    households = first.where(p % 10 <= 1).select(F.format_string("h%d", F.floor(p / 10)).alias("anonymous_id"), "account_id")
    cafes = first.where(p % 10 == 5).select(F.format_string("cafe%d", F.floor(p / 10 / CAFE)).alias("anonymous_id"), "account_id")
    return customers, own.unionByName(households).unionByName(cafes)


def identity_day(spark: SparkSession, edges_wanted: int) -> tuple[DataFrame, DataFrame]:
    """Return ``(new_customers, new_links)``: a day adding about 1% of ``edges_wanted`` edges to
    :func:`identity_sources`: new cookies of existing persons' first accounts (one in four logged
    into by their second account too) and, one per thousand edges, a new account of an existing
    person with its first account's email."""
    persons = max(2 * CHAIN_EVERY, int(edges_wanted / EDGES_PER_PERSON))
    person = F.pmod(F.xxhash64("id"), F.lit(persons))
    cookies = spark.range(max(1, edges_wanted // 100)).select(F.format_string("d%d", F.col("id")).alias("anonymous_id"), person.alias("_person"), (F.col("id") % 4 == 0).alias("_both"))
    links = cookies.select("anonymous_id", F.format_string("a%d-0", "_person").alias("account_id")).unionByName(
        cookies.where("_both").select("anonymous_id", F.format_string("a%d-1", "_person").alias("account_id"))
    )
    person = F.pmod(F.xxhash64("id", F.lit(1)), F.lit(persons))
    customers = spark.range(max(1, edges_wanted // 1000)).select(
        F.format_string("n%d", F.col("id")).alias("account_id"),
        F.format_string("member%d.0@example.com", person).alias("email"),
        F.lit(None).cast("string").alias("phone"),
        F.format_string("Member %d", person).alias("name"),
        (F.lit(1950) + person % 55).cast("int").alias("birth_year"),
        F.lit(False).alias("erased"),
    )
    return customers, links


def accepted_graph(pairs: DataFrame, links: DataFrame, identity_map: DataFrame, root: str) -> tuple[str, str]:
    """Write the graph crmlake's persons are the components of, and return its Parquet folders
    ``(nodes, edges)``: nodes (node: ``account_id:<id>`` or ``anonymous_id:<id>``, as the map's
    identifier type and identifier) every account and
    cookie of ``identity_map`` (silver.identity_map); edges (src, dst) the linked ``pairs``
    (silver.identity_pairs) and the ``links`` (silver.identity_links) of the cookies the map
    attached to a person."""
    from crmlake.organize.matching import LINKED
    from crmlake.people import ACCOUNT, COOKIE

    typed = lambda kind, column: F.concat(F.lit(kind + ":"), F.col(column))  # noqa: E731
    linked = pairs.where(F.col("decision") == LINKED).select(typed(ACCOUNT, "account_a").alias("src"), typed(ACCOUNT, "account_b").alias("dst"))
    attached = identity_map.where(F.col("identifier_type") == COOKIE).select(F.col("identifier").alias("anonymous_id"))
    used = links.join(attached, "anonymous_id", "left_semi").select(typed(COOKIE, "anonymous_id").alias("src"), typed(ACCOUNT, "account_id").alias("dst"))
    nodes = identity_map.where(F.col("identifier_type").isin(ACCOUNT, COOKIE)).select(F.concat_ws(":", "identifier_type", "identifier").alias("node"))
    nodes.write.parquet(f"file://{root}/nodes")
    linked.unionByName(used).write.parquet(f"file://{root}/edges")
    return f"{root}/nodes", f"{root}/edges"


def scipy_components(nodes: str, edges: str, target: str) -> int:
    """SciPy's job: read ``nodes`` (node) and ``edges`` (src, dst) from Parquet with pyarrow,
    number the nodes, find the connected components with ``scipy.sparse.csgraph``, write
    ``(node, component)`` (the component a number) as Parquet to ``target``; return the components."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    names = pq.read_table(nodes).column("node")
    ends = pq.read_table(edges)
    index = pc.index_in(pa.chunked_array(ends.column("src").chunks + ends.column("dst").chunks), value_set=names).to_numpy()
    src, dst = index[: ends.num_rows], index[ends.num_rows:]
    graph = coo_array((np.ones(ends.num_rows, dtype=np.int8), (src, dst)), shape=(len(names), len(names)))
    count, labels = connected_components(graph, directed=False)
    pq.write_table(pa.table({"node": names, "component": labels}), target)
    return int(count)


def crmlake_components(spark: SparkSession, nodes: str, edges: str, target: str) -> None:
    """crmlake's components step as a job of its own: read ``nodes`` and ``edges`` (as
    :func:`scipy_components` does), :func:`crmlake.organize.components.connected_components` by
    Spark's rounds alone (as on a graph beyond ``organize.identity.driver_components_max_edges``:
    below it, organize's components are SciPy's own), write ``(node, component)`` (the component
    its smallest node) as Parquet to ``target``."""
    from crmlake.organize.components import connected_components

    connected_components(spark.read.parquet(f"file://{nodes}"), spark.read.parquet(f"file://{edges}")).write.parquet(f"file://{target}")


def planted_persons_missed(identity_map: DataFrame) -> tuple[int, int]:
    """Return ``(merged, split)`` of the map's persons against the planted ones (account
    ``a<p>-<k>`` is person ``p``'s, :func:`identity_sources`): persons of ``identity_map`` holding
    accounts of several planted persons (a hub that merged them), and planted persons whose
    accounts are in several (a chain not followed to its end)."""
    from crmlake.people import ACCOUNT

    accounts = identity_map.where(F.col("identifier_type") == ACCOUNT).select("person_id", F.regexp_extract("identifier", r"^a(\d+)-", 1).alias("planted"))
    merged = accounts.groupBy("person_id").agg(F.count_distinct("planted").alias("n")).where("n > 1").count()
    split = accounts.groupBy("planted").agg(F.count_distinct("person_id").alias("n")).where("n > 1").count()
    return merged, split


@contextmanager
def rounds_taken() -> Iterator[list[int]]:
    """Collect the rounds each :func:`crmlake.organize.components.connected_components` ending
    inside the block took, from the line it logs (at INFO, kept from the log's handlers)."""
    from crmlake.organize.components import log

    rounds: list[int] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg.startswith("identity graph: components found after"):
                rounds.append(int(record.args[0]))

    collector, level, propagate = Collector(logging.INFO), log.level, log.propagate
    log.addHandler(collector)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield rounds
    finally:
        log.removeHandler(collector)
        log.setLevel(level)
        log.propagate = propagate


def placed_differently(identity_map: DataFrame, components: DataFrame) -> tuple[int, int]:
    """Return ``(accounts, cookies)``: how many nodes of each of ``identity_map``
    (silver.identity_map) and of ``components`` (node, component: any label) are not in the same
    group on both sides: each node's group named by its smallest account or cookie node, by
    person on one side and by component on the other (a node on one side only counts too)."""
    from crmlake.people import ACCOUNT, COOKIE

    def named(frame: DataFrame, group: str) -> DataFrame:
        return frame.select("node", F.min("node").over(Window.partitionBy(group)).alias(f"_{group}"))

    persons = identity_map.where(F.col("identifier_type").isin(ACCOUNT, COOKIE)).select(F.concat_ws(":", "identifier_type", "identifier").alias("node"), "person_id")
    both = named(persons, "person_id").join(named(components, "component"), "node", "full_outer")
    differ = both.where(~F.col("_person_id").eqNullSafe(F.col("_component"))).groupBy(F.substring_index("node", ":", 1).alias("kind")).count()
    # Safe to collect: one row per identifier type.
    counts = {row["kind"]: row["count"] for row in differ.collect()}
    return counts.get(ACCOUNT, 0), counts.get(COOKIE, 0)
