"""Connected components of a graph whose nodes are strings: the persons of
:mod:`crmlake.organize.identity` are the components of its linked pairs.

The edges are reduced in Spark by the alternating large-star / small-star rounds of Kiveris et
al. (2014): O(log^2 n) rounds on any graph, long chains included, each round written to a
reliable checkpoint (``paths.checkpoints``). The rounds shorten paths, not the edges: a
component of n nodes keeps n - 1 edges to the end. So the choice is made once, before the
first round: edges few enough (``driver_max_edges``,
``organize.identity.driver_components_max_edges``) are collected and resolved on the driver
instead, by SciPy's ``csgraph`` in one call. On a graph of persons a round holds well under a
megabyte and costs Spark's fixed price per stage (about a second a round on 2 cores), not the
data's; a graph bigger than the bound goes through Spark's rounds, which no one machine's
memory limits.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Observation, Window
from pyspark.sql import functions as F
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components as csgraph_components

from crmlake.lake.frames import checkpointed, counted, maybe_broadcast
from crmlake.log import get_logger

log = get_logger("organize.components")


def _star_round(edges: DataFrame) -> tuple[DataFrame, bool]:
    """Return one large-star then one small-star step over ``(child, parent)`` edges, parent <
    child, written to a reliable checkpoint, and whether ``edges`` already was a union of stars
    (no node with a parent has another neighbour), which the step returns unchanged: observed
    while the round is written, so that the last round stops there. One checkpoint and three
    shuffles (two windows, one distinct) per round: the last round's small star, which would
    only give the stars back, is written and discarded (cheaper than a second checkpoint in
    every round)."""
    # Large star: each node links its larger neighbours to the smallest node of its neighbourhood.
    neighbours = edges.select(F.col("child").alias("node"), F.col("parent").alias("nbr")).unionByName(
        edges.select(F.col("parent").alias("node"), F.col("child").alias("nbr"))
    )
    around = Window.partitionBy("node")
    stars = Observation("star round")
    large = (
        neighbours.withColumn("smallest", F.least(F.col("node"), F.min("nbr").over(around)))
        .withColumn("degree", F.count(F.lit(1)).over(around))
        .observe(stars, F.count_if((F.col("smallest") < F.col("node")) & (F.col("degree") > 1)).alias("not_star"))
        .where(F.col("nbr") > F.col("node"))
        .select(F.col("nbr").alias("child"), F.col("smallest").alias("parent"))
    )
    # Small star: each node and its smaller neighbours are linked to the smallest of those (the
    # node's own edge and its siblings' from one row: the large star is computed once).
    small = large.withColumn("smallest", F.min("parent").over(Window.partitionBy("child")))
    linked = small.select(F.explode(F.array(
        F.struct(F.col("parent").alias("child"), F.col("smallest").alias("parent")),
        F.struct(F.col("child"), F.col("smallest").alias("parent")),
    )).alias("_edge")).select("_edge.child", "_edge.parent")
    after = linked.where(F.col("child") != F.col("parent")).distinct().checkpoint()
    if stars.get["not_star"] == 0:
        return edges, True
    return after, False


def stars_of(edges: pa.Table) -> pa.Table:
    """Return the components of ``edges`` (an Arrow table of child, parent: strings) as stars
    ``(child, parent)``: every node of the edges but the smallest of its component, with that
    smallest node (by bytes, as Spark compares strings). The nodes are numbered in the order of
    their names and the components found by SciPy's ``csgraph`` in one call."""
    ends = pa.chunked_array(edges.column("child").chunks + edges.column("parent").chunks).cast(pa.string())
    names = pc.unique(ends)
    names = names.take(pc.sort_indices(names))  # numbered in byte order: the smallest index is the smallest node
    index = pc.index_in(ends, value_set=names).to_numpy()
    child, parent = index[: edges.num_rows], index[edges.num_rows:]
    # Booleans: a repeated edge stays one edge (small integers summed by the matrix could wrap to 0).
    graph = coo_array((np.ones(edges.num_rows, dtype=bool), (child, parent)), shape=(len(names), len(names)))
    _, labels = csgraph_components(graph, directed=False)
    # Each component's first node in name order is its smallest.
    _, smallest = np.unique(labels, return_index=True)
    centre = smallest[labels]
    leaves = np.flatnonzero(centre != np.arange(len(names)))
    return pa.table({"child": names.take(leaves), "parent": names.take(centre[leaves])})


def connected_components(nodes: DataFrame, edges: DataFrame, max_rounds: int = 64, broadcast_max_rows: int = 0, driver_max_edges: int = 0) -> DataFrame:
    """Return ``(node, component)`` for every node: ``component`` is the smallest node of its component.

    Takes ``nodes`` (node, each once) and undirected ``edges`` (src, dst) between them. The
    rounds run over the edges alone, on the nodes as they are (numbering them first would cost
    a distinct, two joins and a relabelling: more than the rounds over strings on graphs of
    persons); each round is one large-star and one small-star step written to a reliable
    checkpoint (the session's checkpoint directory, which a lost executor's data survives, and
    which cuts the plan); an edge whose ends have no other edge is a component of its own and
    is set aside before the first round. A round observes on the way whether the edges it took
    already were a union of stars (the components): then it is the last, and each star's
    centre, smaller than its leaves, is its component's smallest node. When the edges are at
    most ``driver_max_edges`` (0: never; counted while written to a checkpoint) they are
    collected instead, as Arrow, and :func:`stars_of` finds their components on the driver.
    Raises RuntimeError if it has not converged after ``max_rounds`` rounds (never seen: rounds
    grow as log^2 n). The stars' leaves (no more than the edges) meet the nodes sent to every
    task when the edges are at most ``broadcast_max_rows``.
    """
    oriented = edges.where(F.col("src") != F.col("dst")).select(F.greatest("src", "dst").alias("child"), F.least("src", "dst").alias("parent"))
    if driver_max_edges:
        # Counted while written (a limit would gather its rows through one task), then collected if few enough.
        oriented, edge_count = counted(oriented)
        if edge_count <= driver_max_edges:
            log.info("identity graph: components found after %d rounds (%d edges, found on the driver)", 0, edge_count)
            return _components(nodes, edges.sparkSession.createDataFrame(stars_of(oriented.toArrow())), edge_count <= broadcast_max_rows)
    # An edge whose two ends have no other (most persons of two accounts) is a component already:
    # set aside before the rounds, which then run over the bigger components only. Told by each
    # end's count of edges (a window by node; a repeated edge counts twice, and merely goes to
    # the rounds), gathered per edge by the grouping that makes the edges distinct.
    ends = oriented.select(F.explode(F.array("child", "parent")).alias("_end"), "child", "parent")
    flagged = (
        ends.withColumn("_alone", F.count(F.lit(1)).over(Window.partitionBy("_end")) == 1)
        .groupBy("child", "parent").agg(F.bool_and("_alone").alias("_pair"))
    )
    flagged, figures = checkpointed(flagged, edges=F.count(F.lit(1)), pairs=F.count_if("_pair"))
    current = flagged.where(~F.col("_pair")).select("child", "parent")
    # No edge left: every node is its own component or a pair's (and a round over nothing would observe nothing).
    converged, rounds = figures["edges"] == figures["pairs"], 0
    while not converged:
        if rounds == max_rounds:
            raise RuntimeError(f"identity graph did not converge in {max_rounds} rounds")
        current, converged = _star_round(current)
        rounds += 1
    log.info("identity graph: components found after %d rounds (%d of %d edges pairs alone, set aside)", rounds, figures["pairs"], figures["edges"])
    return _components(nodes, current.unionByName(flagged.where(F.col("_pair")).select("child", "parent")), figures["edges"] <= broadcast_max_rows)


def _components(nodes: DataFrame, stars: DataFrame, few: bool) -> DataFrame:
    """Return ``(node, component)`` for every one of ``nodes`` from the ``stars`` (child, parent)
    of its components, sent to every task when ``few``: a node that is no star's leaf (a centre,
    or linked to none) is its component's smallest node."""
    leaves = maybe_broadcast(stars.select(F.col("child").alias("node"), F.col("parent").alias("component")), few)
    return nodes.join(leaves, "node", "left").select("node", F.coalesce("component", "node").alias("component"))
