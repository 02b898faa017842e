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

A day's change need not recompute the whole graph: :func:`grow_identity_map` recomputes only
the persons of the previous map that the change reaches, from their accounts' links and keys,
and gives what a full rebuild would.

Person ids are stable. A component keeps the id that most of its identifiers held in the
previous map; **when two persons merge, the id held by more identifiers survives, ties going
to the smaller id**. A component with no previous id (new, or the smaller part of a split)
gets ``P`` + 16 hex digits of the SHA-256 of its smallest account (of the identifier itself when
it has none; and of the ids its nodes held).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F

from crmlake.lake.frames import checkpointed, counted, maybe_broadcast
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


def link_nodes(links: DataFrame) -> DataFrame:
    """Return ``node`` for both ends of each of ``links`` (anonymous_id, account_id): the cookie and the account."""
    return links.select(_node(COOKIE, F.col("anonymous_id")).alias("node")).unionByName(links.select(_node(ACCOUNT, F.col("account_id")).alias("node")))


def live_contact_keys(accounts: DataFrame, default_phone_region: str) -> DataFrame:
    """Return ``(account_id, key)``: the contact keys of every live (not erased) account of
    ``accounts`` (account_id, email, phone, erased), which the key rule counts accounts over."""
    return _contact_keys(accounts.where(~F.col("erased")), default_phone_region)


def _cookie_edges(clicks: DataFrame) -> DataFrame:
    """Return ``(src, dst)``: a cookie node and an account node seen together with tracking
    consent in ``clicks`` (anonymous_id, account_id, tracking_consent), once each."""
    return (
        clicks.where(F.col("tracking_consent") & F.col("account_id").isNotNull())
        .select(_node(COOKIE, F.col("anonymous_id")).alias("src"), _node(ACCOUNT, F.col("account_id")).alias("dst"))
        .distinct()
    )


def _trusted_keys(keys: DataFrame, max_accounts_per_key: int) -> DataFrame:
    """Return the rows of ``keys`` (account_id, key) whose key at most ``max_accounts_per_key``
    accounts hold. ``keys`` must hold every live account of each key it has (one shuffle: a
    window by key)."""
    held_by = F.count(F.lit(1)).over(Window.partitionBy("key"))
    return keys.withColumn("_accounts", held_by).where(F.col("_accounts") <= max_accounts_per_key).drop("_accounts")


def identity_edges(
    clicks: DataFrame, accounts: DataFrame, default_phone_region: str, max_accounts_per_key: int, trusted_keys: DataFrame | None = None
) -> tuple[DataFrame, DataFrame]:
    """Return ``(nodes, edges)`` of the identity graph.

    Takes bronze clickstream or silver identity links (anonymous_id, account_id,
    tracking_consent) and silver customers (account_id, email, phone, erased). ``nodes`` has
    one ``node`` per identifier (every account, consented cookies, contact keys); ``edges`` has
    ``src``, ``dst`` node pairs. Every edge joins an account (``src`` for a contact key, ``dst``
    for a cookie) to another identifier: :func:`identity_components` relies on it.

    A key's accounts are counted over ``accounts``. When that is a subset of the live accounts
    (the persons :func:`grow_identity_map` recomputes), which cannot count them, pass
    ``trusted_keys`` (key): the keys the rule trusts in the whole graph; the subset's keys
    among them give its key edges.
    """
    keys = live_contact_keys(accounts, default_phone_region)
    trusted = _trusted_keys(keys, max_accounts_per_key) if trusted_keys is None else keys.join(trusted_keys, "key", "left_semi")
    key_edges = trusted.select(_node(ACCOUNT, F.col("account_id")).alias("src"), F.col("key").alias("dst"))
    edges = _cookie_edges(clicks).unionByName(key_edges)
    return _graph_nodes(accounts, edges), edges


def _graph_nodes(accounts: DataFrame, edges: DataFrame) -> DataFrame:
    """Return ``node``, once each: every account of ``accounts`` and both ends of every edge."""
    return (
        accounts.select(_node(ACCOUNT, F.col("account_id")).alias("node"))
        .unionByName(edges.select(F.col("src").alias("node")))
        .unionByName(edges.select(F.col("dst").alias("node")))
        .distinct()
    )


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
    current, figures = checkpointed(linked, edges=F.count(F.lit(1)))
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
    anchored, figures = checkpointed(
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
    of the SHA-256 of the component's label and the previous ids it held (and, should that
    give a previous id, of that id too), so that a new id is never one the previous map holds.
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

    def mint(*seed: str) -> Column:
        return F.concat(F.lit("P"), F.sha2(F.concat_ws("|", *seed), 256).substr(1, 16))

    # A component that held ids and kept none mints from them too: never the id it lost. One
    # that held none may still be the seed of a previous id (an erased account, its rows gone
    # from the map, alone again with the label that minted its old person's id): it mints again
    # from that id too. Per new component, not per identifier.
    taken = previous.select(F.col("previous_id").alias("_minted")).distinct().withColumn("_taken", F.lit(True))
    new_ids = (
        components.select("component").distinct().join(kept, "component", "left_anti").join(held, "component", "left")
        .withColumn("_minted", mint("component", "_held"))
        .join(taken, "_minted", "left")
        .select("component", F.when(F.col("_taken"), mint("component", "_held", "_minted")).otherwise(F.col("_minted")).alias("_new_id"))
    )
    person = components.join(kept, "component", "left").join(new_ids, "component", "left").withColumn("person_id", F.coalesce("kept_id", "_new_id"))
    identifier_type = F.substring_index("node", ":", 1)
    return person.select(
        identifier_type.alias("identifier_type"),
        F.expr("substring(node, length(substring_index(node, ':', 1)) + 2)").alias("identifier"),
        "person_id",
    )


def touched_nodes(
    new_links: DataFrame, changed_accounts: DataFrame, profiles_before: DataFrame, profiles_after: DataFrame, default_phone_region: str, broadcast_max_rows: int
) -> DataFrame:
    """Return ``node``: what :func:`grow_identity_map` takes as ``touched`` after a change.

    Takes the links added (anonymous_id, account_id), the accounts whose profile changed
    (account_id), and silver customers as they were before the change and as they are now
    (account_id, email, phone; semi-joined with a broadcast of the changed accounts when at
    most ``broadcast_max_rows``). Returns both ends of each link and :func:`account_nodes` of
    each changed account before and after: the key an account leaves too, as the accounts
    still holding it may now be few enough for the key to link them.
    """
    changed, changed_count = counted(changed_accounts.select("account_id").distinct())
    changed = maybe_broadcast(changed, changed_count <= broadcast_max_rows)
    profiles = [account_nodes(p.join(changed, "account_id", "left_semi"), default_phone_region) for p in (profiles_before, profiles_after)]
    return link_nodes(new_links).unionByName(profiles[0]).unionByName(profiles[1]).distinct()


def unmapped_nodes(links: DataFrame, accounts: DataFrame, identity_map: DataFrame, default_phone_region: str, max_accounts_per_key: int) -> DataFrame:
    """Return ``node``: the nodes of the graph of ``links`` and ``accounts`` (as
    :func:`identity_edges` takes them) that ``identity_map`` lacks.

    What :func:`grow_identity_map` must touch after an erasure deleted rows from the map (the
    erased account's keys and cookies, which other accounts may still hold). A pass over the
    whole graph: the key rule's count by key, the nodes made distinct, an anti-join with the map.
    """
    nodes, _ = identity_edges(links, accounts, default_phone_region, max_accounts_per_key)
    return nodes.join(identity_map.select(_node_of_map().alias("node")), "node", "left_anti")


def grow_identity_map(
    links: DataFrame,
    accounts: DataFrame,
    previous_map: DataFrame,
    touched: DataFrame,
    default_phone_region: str,
    max_accounts_per_key: int,
    broadcast_max_rows: int,
) -> DataFrame:
    """Return the identity map of the graph of ``links`` and ``accounts``, recomputing only the
    persons a change reaches.

    Takes the graph's sources as :func:`identity_edges` does (silver identity links:
    anonymous_id, account_id, tracking_consent; silver customers: account_id, email, phone,
    erased), the previous identity map (the map of the graph before the change, as a full
    rebuild made it or this function grew it), ``touched`` (node) and the most rows to send to
    every task in a broadcast join. ``touched`` must hold every node added to the graph since
    the previous map (or that the map lacks), an end of every edge removed, and the cookie or
    key end of every edge added: :func:`touched_nodes` gives them for links added and profiles
    changed, :func:`unmapped_nodes` after an erasure deleted rows from the map.

    The other end of each edge of a touched cookie or key in the new graph (the accounts
    linked to the cookie, the accounts holding the key when the key rule trusts it, counted
    over every live account) is touched too. The persons of the previous map holding a touched
    node are reached; their nodes and the touched ones are recomputed: the edges whose account
    end is one of them are read from the sources (a key no change touched keeps the trust it
    had, which the previous map shows: it had an edge, so it is a reached person's node), then
    :func:`identity_components` and :func:`assign_person_ids` against the ids those persons
    held. Every other row of the previous map is kept as it is.

    Why this is the full rebuild's map (same previous map): an edge of the new graph either
    lay within one previous person, or is added and has both ends touched; an edge removed
    has an end touched. So a person no change reached keeps exactly its edges and is a whole
    component of the new graph, which a full rebuild leaves its id; the recomputed nodes are
    the other components, whole, voting for ids that no kept person holds.

    Whole-graph work, all narrow (no shuffle of the whole graph while what is sent is at most
    ``broadcast_max_rows`` rows; plain shuffle joins beyond): the accounts' contact keys once
    when a key is touched (its holders), the links twice (linked to the touched cookies, then
    to the recomputed accounts), the accounts twice (profiles and nodes of the recomputed
    ones) and the previous map four times (persons reached, their nodes, their ids, the rows
    kept), each semi-joined with a broadcast of the rows wanted.
    """
    node = F.col("node")
    is_cookie, is_key = node.startswith(COOKIE + ":"), ~_is_account(node) & ~node.startswith(COOKIE + ":")
    previous = previous_map.select(_node_of_map().alias("node"), "person_id")
    touched, figures = checkpointed(touched.select("node").distinct(), rows=F.count(F.lit(1)), keys=F.count_if(is_key), cookies=F.count_if(is_cookie))
    small = figures["rows"] <= broadcast_max_rows
    # The touched keys the rule trusts, with every account holding them: counted over every
    # live account's keys (a narrow scan of the accounts, skipped when no key is touched).
    touched_keys = touched.where(is_key).select(F.col("node").alias("key"))
    held_keys = touched_keys.select(F.lit(None).cast("string").alias("account_id"), "key")  # none when no key is touched
    if figures["keys"]:
        holders = live_contact_keys(accounts, default_phone_region).join(maybe_broadcast(touched_keys, small), "key", "left_semi")
        held_keys, _ = counted(_trusted_keys(holders, max_accounts_per_key))
    reaching = touched.unionByName(held_keys.select(_node(ACCOUNT, F.col("account_id")).alias("node")))
    if figures["cookies"]:
        touched_cookies = touched.where(is_cookie).select(F.expr(f"substring(node, {len(COOKIE) + 2})").alias("anonymous_id"))
        reaching = reaching.unionByName(_cookie_edges(links.join(maybe_broadcast(touched_cookies, small), "anonymous_id", "left_semi")).select(F.col("dst").alias("node")))
    reaching, reaching_count = counted(reaching.distinct())
    small = reaching_count <= broadcast_max_rows
    persons_reached, reached_count = counted(previous.join(maybe_broadcast(reaching, small), "node", "left_semi").select("person_id").distinct())
    small = small and reached_count <= broadcast_max_rows
    held, _ = counted(previous.join(maybe_broadcast(persons_reached, small), "person_id", "left_semi").select("node"))
    recomputed_accounts = held.unionByName(reaching).where(_is_account(node)).select(F.expr(f"substring(node, {len(ACCOUNT) + 2})").alias("account_id")).distinct()
    recomputed_accounts, account_count = counted(recomputed_accounts)
    small = small and account_count <= broadcast_max_rows
    # A key of a recomputed account that no change touched is trusted as before: then it had
    # an edge to that account, so it is one of the reached persons' nodes.
    trusted = held.where(is_key).join(touched, "node", "left_anti").select(F.col("node").alias("key")).unionByName(held_keys.select("key"))
    recomputed_profiles = accounts.join(maybe_broadcast(recomputed_accounts, small), "account_id", "left_semi")
    _, edges = identity_edges(
        links.join(maybe_broadcast(recomputed_accounts, small), "account_id", "left_semi"),
        recomputed_profiles,
        default_phone_region,
        max_accounts_per_key,
        trusted_keys=maybe_broadcast(trusted.distinct(), small),
    )
    edges, edge_count = counted(edges)
    nodes, node_count = counted(_graph_nodes(recomputed_profiles, edges))
    log.info(
        "identity map grown: %d identifiers touched (%d with the accounts of their edges), %d persons reached, %d identifiers and %d edges recomputed",
        figures["rows"], reaching_count, reached_count, node_count, edge_count,
    )
    reached_ids = maybe_broadcast(persons_reached, small)
    recomputed = assign_person_ids(identity_components(nodes, edges), previous_map.join(reached_ids, "person_id", "left_semi"))
    kept = previous_map.join(reached_ids, "person_id", "left_anti").select("identifier_type", "identifier", "person_id")
    return kept.unionByName(recomputed)


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
