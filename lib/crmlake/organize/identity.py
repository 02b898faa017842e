"""Identity resolution: cookies, accounts, emails and phones into persons.

The graph's nodes are identifiers (``account_id:A1``, ``anonymous_id:ck9``, and the
SHA-256 of a normalised email or E.164 phone); its edges are evidence that two identifiers
belong to one person:

* a cookie and an account seen together in a logged-in event *with tracking consent*
  (an event without consent never links anything);
* an account and its normalised email, and an account and its normalised phone, so that
  accounts sharing either are one person, and a guest checkout's email reaches the account
  holding it. A key shared by more than ``max_accounts_per_key`` accounts (a shop's shared
  mailbox, a dummy ``0000000000``) is not evidence and is dropped.

Every edge has an account end, so the graph is first contracted by account: each other
identifier hangs on its smallest adjacent account (its anchor), found in one shuffle of the
edges, and an identifier reaching several accounts links them to its anchor. Connected
components are found on these links only (few: most accounts are alone) with the alternating
large-star / small-star algorithm of Kiveris et al. (2014), entirely in Spark: O(log^2 n)
rounds on any graph, long chains and large stars included, with no collect of the graph to
the driver. The rounds run on long node ids and are written to reliable checkpoints
(``paths.checkpoints``). Every identifier then takes its anchor's component.

Person ids are stable. A component keeps the id that most of its identifiers held in the
previous map; **when two persons merge, the id held by more identifiers survives, ties going
to the smaller id**. A component with no previous id (new, or the smaller part of a split)
gets ``P`` + 16 hex digits of the SHA-256 of its smallest account (of the identifier itself when
it has none; and of the ids its nodes held).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F

from crmlake.log import get_logger
from crmlake.people import ACCOUNT, COOKIE, EMAIL, PHONE, e164_phone, normalised_email, sha256_hex

log = get_logger("organize.identity")


def _node(identifier_type: str, identifier) -> F.Column:
    return F.concat(F.lit(identifier_type + ":"), identifier)


def _contact_keys(accounts: DataFrame, default_phone_region: str) -> DataFrame:
    """Return ``(account_id, key)``: the node of each account's normalised email and phone hash."""
    return accounts.select(
        "account_id",
        F.explode(
            F.array(
                _node(EMAIL, sha256_hex(normalised_email(F.col("email")))),
                _node(PHONE, sha256_hex(e164_phone(F.col("phone"), default_phone_region))),
            )
        ).alias("key"),
    ).where(F.col("key").isNotNull())


def account_nodes(accounts: DataFrame, default_phone_region: str) -> DataFrame:
    """Return ``node`` for each of ``accounts`` (account_id, email, phone) and each contact key
    it holds, trusted or not: every node whose edges a change of these accounts can add or remove."""
    keys = _contact_keys(accounts, default_phone_region).select(F.col("key").alias("node"))
    return accounts.select(_node(ACCOUNT, F.col("account_id")).alias("node")).unionByName(keys)


def identity_edges(
    clicks: DataFrame, accounts: DataFrame, default_phone_region: str, max_accounts_per_key: int
) -> tuple[DataFrame, DataFrame]:
    """Return ``(nodes, edges)`` of the identity graph.

    Takes bronze clickstream (anonymous_id, account_id, tracking_consent) and silver customers
    (account_id, email, phone, erased). ``nodes`` has one ``node`` per identifier (every
    account, consented cookies, contact keys); ``edges`` has ``src``, ``dst`` node pairs.
    Every edge joins an account (``src`` for a contact key, ``dst`` for a cookie) to another
    identifier: :func:`identity_components` relies on it.
    """
    cookie_edges = (
        clicks.where(F.col("tracking_consent") & F.col("account_id").isNotNull())
        .select(_node(COOKIE, F.col("anonymous_id")).alias("src"), _node(ACCOUNT, F.col("account_id")).alias("dst"))
        .distinct()
    )
    keys = _contact_keys(accounts.where(~F.col("erased")), default_phone_region)
    per_key = Window.partitionBy("key")
    trusted = keys.withColumn("_accounts", F.count(F.lit(1)).over(per_key)).where(F.col("_accounts") <= max_accounts_per_key)
    key_edges = trusted.select(_node(ACCOUNT, F.col("account_id")).alias("src"), F.col("key").alias("dst"))
    edges = cookie_edges.unionByName(key_edges)
    nodes = (
        accounts.select(_node(ACCOUNT, F.col("account_id")).alias("node"))
        .unionByName(edges.select(F.col("src").alias("node")))
        .unionByName(edges.select(F.col("dst").alias("node")))
        .distinct()
    )
    return nodes, edges


def _numbered(nodes: DataFrame) -> DataFrame:
    """Return ``(node, id)``: a distinct long per node, in no particular order (no sort).
    Checkpointed: the numbering must not change if a lost partition is recomputed."""
    return nodes.distinct().withColumn("id", F.monotonically_increasing_id()).checkpoint()


def _star_round(edges: DataFrame) -> tuple[DataFrame, bool]:
    """Return one large-star then one small-star step over ``(child, parent)`` edges, parent <
    child, written to a reliable checkpoint, and whether ``edges`` already was a union of stars
    (no node with a parent has another neighbour), which the step returns unchanged: observed
    on the way, so convergence costs no job of its own. Three shuffles: two windows, one distinct."""
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
    # Small star: each node and its smaller neighbours are linked to the smallest of those.
    small = large.withColumn("smallest", F.min("parent").over(Window.partitionBy("child")))
    siblings = small.select(F.col("parent").alias("child"), F.col("smallest").alias("parent"))
    itself = small.select("child", F.col("smallest").alias("parent"))
    stepped = siblings.unionByName(itself).where(F.col("child") != F.col("parent")).distinct().checkpoint()
    return stepped, stars.get["not_star"] == 0


def _checkpointed(frame: DataFrame, **figures: Column) -> tuple[DataFrame, dict]:
    """Checkpoint ``frame`` (reliably: the session's checkpoint directory) and return it with
    ``figures`` (name -> aggregate), observed while it is written: no second pass to count."""
    observed = Observation("identity")
    frame = frame.observe(observed, *[aggregate.alias(name) for name, aggregate in figures.items()]).checkpoint()
    return frame, observed.get


def connected_components(nodes: DataFrame, edges: DataFrame, max_rounds: int = 64) -> DataFrame:
    """Return ``(node, component)`` for every node: ``component`` is the smallest node of its component.

    Takes ``nodes`` (node) and undirected ``edges`` (src, dst). Nodes are numbered (longs
    join and sort faster than strings); each round is one large-star and one small-star step
    written to a reliable checkpoint (the session's checkpoint directory, which a lost
    executor's data survives, and which cuts the plan). A round observes on the way whether
    the edges it took already were a union of stars (the components): then it is the last.
    Raises RuntimeError if it has not converged after ``max_rounds`` rounds (never seen:
    rounds grow as log^2 n). Each component is then labelled with its smallest node.
    """
    numbered = _numbered(nodes)
    ids = numbered.select(F.col("node").alias("_node"), F.col("id").alias("_id"))
    linked = (
        edges.join(ids.withColumnRenamed("_id", "src_id"), edges["src"] == F.col("_node")).drop("_node")
        .join(ids.withColumnRenamed("_id", "dst_id"), edges["dst"] == F.col("_node"))
        .where(F.col("src_id") != F.col("dst_id"))
        .select(F.greatest("src_id", "dst_id").alias("child"), F.least("src_id", "dst_id").alias("parent"))
        .distinct()
    )
    current, figures = _checkpointed(linked, edges=F.count(F.lit(1)))
    # No edge: every node is its own component (and a round over nothing would observe nothing).
    converged, rounds = figures["edges"] == 0, 0
    while not converged:
        if rounds == max_rounds:
            raise RuntimeError(f"identity graph did not converge in {max_rounds} rounds")
        current, converged = _star_round(current)
        rounds += 1
    log.info("identity graph: components found after %d rounds", rounds)
    components = numbered.join(current, numbered["id"] == current["child"], "left").select("node", F.coalesce("parent", "id").alias("_component_id"))
    return components.select("node", F.min("node").over(Window.partitionBy("_component_id")).alias("component"))


def _is_account(node: Column) -> Column:
    return node.startswith(ACCOUNT + ":")


def identity_components(nodes: DataFrame, edges: DataFrame) -> DataFrame:
    """Return ``(node, component)`` for every node of the identity graph: ``component`` is the
    smallest account of the node's component, or the node itself when the component has none
    (a node with no edge). As ``account_id:`` sorts before the other identifier types, that
    is also the component's smallest node.

    Takes ``nodes`` (node, one row each) and undirected ``edges`` (src, dst) between them, and
    relies on every edge having an account end, as :func:`identity_edges` guarantees; raises
    ValueError when one has none, or a null end. The graph is contracted by account before the
    rounds: each other node's anchor is its smallest adjacent account (an account is its own
    anchor), found by one shuffle of the edges and nodes; every other account a node reaches is
    linked to its anchor. :func:`connected_components` runs on these links only, and every node
    takes the component of its anchor (its anchor when that has no link): one more shuffle of
    the nodes to their anchors (a checkpoint's size estimate is its plan's, so Spark seldom
    broadcasts the links' components; nothing forces it, as they grow with the data).
    """
    src_is_account = _is_account(F.col("src"))
    ends = edges.select(
        F.when(src_is_account, F.col("dst")).otherwise(F.col("src")).alias("node"),
        F.when(src_is_account, F.col("src")).otherwise(F.col("dst")).alias("account"),
        F.lit(True).alias("_edge"),
    )
    node, account, anchor, edge = F.col("node"), F.col("account"), F.col("anchor"), F.col("_edge")
    no_edge = [F.lit(None).cast("string").alias("account"), F.lit(False).alias("_edge")]
    # Grouped by node: a row per other node and one per edge (its account end beside the other
    # end). An account node is its own anchor and needs no grouping.
    rows = nodes.where(~_is_account(node)).select("node", *no_edge).unionByName(ends)
    nearest = F.coalesce(F.min("account").over(Window.partitionBy("node")), node)
    invalid = edge & (node.isNull() | ~F.coalesce(_is_account(account), F.lit(False)))
    anchored, figures = _checkpointed(
        rows.withColumn("anchor", F.when(_is_account(node), node).otherwise(nearest))
        # An edge to its node's anchor is no link: kept are the nodes, the links and the invalid
        # edges, counted here (at the top of the plan, where no empty input prunes the count away).
        .where(~edge | (account != anchor) | invalid)
        .unionByName(nodes.where(_is_account(node)).select("node", *no_edge, node.alias("anchor"))),
        invalid_edges=F.count_if(invalid),
    )
    if figures["invalid_edges"]:
        raise ValueError(f"identity graph: {figures['invalid_edges']} edges lack an account_id end or have a null end (identity_edges makes none)")
    # Checkpointed (few rows) so that the rounds read the whole graph's anchors no more. Not made
    # distinct here: connected_components numbers the nodes and keeps distinct edges.
    links = anchored.where(edge).select(account.alias("src"), anchor.alias("dst")).checkpoint()
    linked_accounts = links.select(F.col("src").alias("node")).unionByName(links.select(F.col("dst").alias("node")))
    of_anchor = connected_components(linked_accounts, links).select(F.col("node").alias("anchor"), "component")
    return anchored.where(~edge).join(of_anchor, "anchor", "left").select("node", F.coalesce("component", "anchor").alias("component"))


def assign_person_ids(components: DataFrame, previous_map: DataFrame) -> DataFrame:
    """Return the identity map (identifier_type, identifier, person_id) for ``components``.

    Takes ``(node, component)`` (the component's label, e.g. from :func:`identity_components`:
    only a grouping key and the seed of new ids) and the previous identity map (empty on a first run). Each
    component keeps the previous person id held by most of its nodes (ties: the smaller
    id); when components compete for one id (a split), the component holding it more often
    keeps it (ties: the smaller component) and the others get new ids: ``P`` + 16 hex digits
    of the SHA-256 of the component's label and the previous ids it held, so that a new id
    is never one a component of the previous map still holds.
    """
    previous = previous_map.select(_node_of_map().alias("node"), F.col("person_id").alias("previous_id"))
    votes = components.join(previous, "node").groupBy("component", "previous_id").agg(F.count(F.lit(1)).alias("votes"))
    best_for_component = Window.partitionBy("component").orderBy(F.col("votes").desc(), "previous_id")
    best_for_id = Window.partitionBy("previous_id").orderBy(F.col("votes").desc(), "component")
    kept = (
        votes.withColumn("_choice", F.row_number().over(best_for_component))
        .where("_choice = 1")
        .withColumn("_owner", F.row_number().over(best_for_id))
        .where("_owner = 1")
        .select("component", F.col("previous_id").alias("kept_id"))
    )
    held = votes.groupBy("component").agg(F.array_join(F.sort_array(F.collect_list("previous_id")), ",").alias("_held"))
    # A component that held ids and kept none mints from them too: never the id it lost.
    minted = F.concat(F.lit("P"), F.sha2(F.concat_ws("|", "component", "_held"), 256).substr(1, 16))
    person = (
        components.join(kept, "component", "left").join(held, "component", "left").withColumn("person_id", F.coalesce("kept_id", minted))
    )
    identifier_type = F.substring_index("node", ":", 1)
    return person.select(
        identifier_type.alias("identifier_type"),
        F.expr("substring(node, length(substring_index(node, ':', 1)) + 2)").alias("identifier"),
        "person_id",
    )


def grow_identity_map(
    nodes: DataFrame, edges: DataFrame, previous_map: DataFrame, touched: DataFrame, broadcast_max_rows: int
) -> DataFrame:
    """Return the identity map of the graph ``(nodes, edges)``, recomputing only the persons a change reaches.

    Takes the graph as :func:`identity_edges` returns it, the previous identity map,
    ``touched`` (node): nodes whose edges may have been removed since (:func:`account_nodes`
    of the accounts changed), and the most identifiers to recompute with broadcast joins
    (no shuffle of the unchanged rest). Nodes touched besides: both ends of an edge that
    joins two persons of the previous map or reaches a node it lacks, nodes new to it and
    nodes gone from it. Every person holding a touched node is recomputed (components of
    its nodes and the touched ones, then :func:`assign_person_ids` against the ids they
    held); every other row of the previous map is kept as it is. An unchanged edge lies
    within one previous person and a new one has touched ends, so the recomputed nodes'
    edges reach no other node: the result is that of a full rebuild with the same map.
    Three shuffles cross the whole graph (nodes against the map, each edge end against it).
    """
    previous = previous_map.select(_node_of_map().alias("node"), "person_id")
    # One pass over nodes and map: each node's previous person; new (no person) and gone (no node).
    node_person = (
        nodes.select("node", F.lit(True).alias("_current"))
        .join(previous, "node", "full_outer")
        .select("node", "person_id", F.coalesce("_current", F.lit(False)).alias("_current"))
    ).checkpoint()
    person_of = node_person.where("_current").select("node", "person_id")
    ends = edges.join(person_of.select(F.col("node").alias("src"), F.col("person_id").alias("_src_person")), "src", "left").join(
        person_of.select(F.col("node").alias("dst"), F.col("person_id").alias("_dst_person")), "dst", "left"
    )
    crossing = ends.where(F.col("_src_person").isNull() | F.col("_dst_person").isNull() | (F.col("_src_person") != F.col("_dst_person")))
    all_touched = (
        touched.select("node")
        .unionByName(crossing.select(F.col("src").alias("node")))
        .unionByName(crossing.select(F.col("dst").alias("node")))
        .unionByName(node_person.where(F.col("person_id").isNull() | ~F.col("_current")).select("node"))
        .distinct()
    )
    all_touched, touched_count = _counted(all_touched)
    small = touched_count <= broadcast_max_rows
    persons_reached = node_person.join(_maybe_broadcast(all_touched, small), "node", "left_semi").where(F.col("person_id").isNotNull()).select("person_id").distinct()
    persons_reached, reached_count = _counted(persons_reached)
    held = node_person.join(_maybe_broadcast(persons_reached, small), "person_id", "left_semi")
    recomputed_nodes = held.select("node", "_current").unionByName(all_touched.join(node_person, "node").select("node", "_current"))
    recomputed_nodes, node_count = _counted(recomputed_nodes.where("_current").select("node").distinct())
    small = small and node_count <= broadcast_max_rows
    recomputed_edges = edges.join(_maybe_broadcast(recomputed_nodes.select(F.col("node").alias("src")), small), "src", "left_semi")
    log.info("identity map grown: %d identifiers touched, %d persons and %d identifiers recomputed", touched_count, reached_count, node_count)
    recomputed = assign_person_ids(
        identity_components(recomputed_nodes, recomputed_edges), previous_map.join(_maybe_broadcast(persons_reached, small), "person_id", "left_semi")
    )
    kept = previous_map.join(_maybe_broadcast(persons_reached, small), "person_id", "left_anti")
    return kept.unionByName(recomputed)


def _counted(frame: DataFrame) -> tuple[DataFrame, int]:
    """Checkpoint ``frame`` and return it with its row count, observed while it is written."""
    frame, figures = _checkpointed(frame, rows=F.count(F.lit(1)))
    return frame, int(figures["rows"])


def _maybe_broadcast(frame: DataFrame, small: bool) -> DataFrame:
    return F.broadcast(frame) if small else frame


def _node_of_map() -> F.Column:
    return F.concat(F.col("identifier_type"), F.lit(":"), F.col("identifier"))


def identity_quality(identity_map: DataFrame, clicks: DataFrame) -> dict:
    """Return the run's quality figures: persons, accounts per person (mean, max), and the share
    of the distinct cookies of ``clicks`` (the run's) linked to a person (cookies that refused
    tracking count as unlinked)."""
    per_person = identity_map.where(F.col("identifier_type") == ACCOUNT).groupBy("person_id").count()
    # Safe to collect: single-row aggregates.
    accounts = per_person.agg(F.count(F.lit(1)).alias("persons"), F.avg("count").alias("mean"), F.max("count").alias("max")).first()
    cookies = clicks.select("anonymous_id").distinct()
    known = identity_map.where(F.col("identifier_type") == COOKIE).select(F.col("identifier").alias("anonymous_id"), F.lit(1).alias("_linked"))
    counted = cookies.join(known, "anonymous_id", "left").agg(F.count(F.lit(1)).alias("total"), F.count("_linked").alias("linked")).first()
    total, linked_count = counted["total"], counted["linked"]
    return {
        "persons": int(accounts["persons"] or 0),
        "accounts_per_person_mean": round(float(accounts["mean"] or 0.0), 3),
        "accounts_per_person_max": int(accounts["max"] or 0),
        "cookies_linked_share": round(linked_count / total, 3) if total else 0.0,
    }
