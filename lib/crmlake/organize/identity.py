"""Identity resolution: accounts into persons by weighed evidence, and cookies, emails and
phones attached to the person holding them alone.

Accounts are linked pairwise (:mod:`crmlake.organize.matching`: candidate pairs from blocks,
each pair's evidence weighed, a name that disagrees vetoing); **persons are the connected
components of the linked pairs** (:mod:`crmlake.organize.components`: by SciPy on the driver
when they are few enough, else by Spark's large-star / small-star rounds).

A cookie, an email or a phone is not a link: it is *attached* to a person when every account
holding it is that person's (a cookie logged into by one person's accounts, a mailbox only
they carry). One held by several persons' accounts (a household's shared computer, a family
mailbox, a shop's phone, a placeholder) belongs to nobody and is left out of the map: the
events of a shared cookie belong to the account logged in within the session
(:func:`crmlake.people.with_session_person_id`), or to no person.

A day's change need not recompute every person: :func:`grow_identity_map` rescores the pairs
of the accounts the change touched, recomputes only the persons they reach, and gives what a
full rebuild (:func:`build_identity_map`) would with the same weights.

Person ids are stable. A component keeps the id that most of its identifiers held in the
previous map; **when two persons merge, the id held by more identifiers survives, ties going
to the smaller id**. A component with no previous id (new, or the smaller part of a split)
gets ``P`` + 16 hex digits of the SHA-256 of its smallest account (and of the ids its nodes held).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crmlake.lake.frames import counted, hash_keyed, maybe_broadcast
from crmlake.log import get_logger
from crmlake.organize.components import connected_components
from crmlake.organize.matching import LEVELS, LINKED, Weights, blocks, candidate_pairs, comparison_levels, decided_pairs, identifier_blocks, match_profiles, sized_blocks
from crmlake.people import ACCOUNT, COOKIE, EMAIL, PHONE

log = get_logger("organize.identity")
ATTACHED = (COOKIE, EMAIL, PHONE)   # the identifier types attached to the one person holding them
# silver.identity_pairs: each comparison's level as ``<comparison>_level`` (a level, never the value compared).
LEVEL_COLUMNS = {comparison: f"{comparison}_level" for comparison in LEVELS}
PAIR_COLUMNS = ["account_a", "account_b", "compared_for", *LEVEL_COLUMNS.values(), "match_weight", "match_probability", "decision"]


@dataclass(frozen=True)
class Matching:
    """How pairs are decided and persons found: the fitted weights, the link threshold, the block
    size beyond which a key pairs nobody, the most rows sent to every task in a broadcast join, and
    the most linked pairs whose components are found on the driver (0: Spark's rounds always;
    :func:`~crmlake.organize.components.connected_components`)."""

    weights: Weights
    link_min_probability: float
    max_accounts_per_key: int
    broadcast_max_rows: int
    driver_components_max_edges: int = 0


def _node(identifier_type: str, identifier) -> Column:
    return F.concat(F.lit(identifier_type + ":"), identifier)


def _account_node(column: str = "account_id") -> Column:
    return _node(ACCOUNT, F.col(column))


def _is_attached(block: Column) -> Column:
    return F.substring_index(block, ":", 1).isin(*ATTACHED)


def scored_pairs(profiles: DataFrame, memberships: DataFrame, matching: Matching, touched: DataFrame | None = None) -> DataFrame:
    """Return the decided candidate pairs (:data:`PAIR_COLUMNS`) of ``memberships`` (account_id,
    block: :func:`~crmlake.organize.matching.blocks` of every account holding a block of
    interest), compared on ``profiles`` (:func:`~crmlake.organize.matching.match_profiles`);
    with ``touched`` (account_id), only the pairs with a touched end."""
    sized = sized_blocks(memberships)
    pairs = candidate_pairs(sized, matching.max_accounts_per_key, touched)
    levelled = comparison_levels(pairs, profiles)
    decided = decided_pairs(levelled, matching.weights, matching.link_min_probability)
    return decided.withColumn("compared_for", F.array_join("shared_blocks", ",")).withColumnsRenamed(LEVEL_COLUMNS).select(*PAIR_COLUMNS)


def persons_of(accounts: DataFrame, pairs: DataFrame, matching: Matching) -> DataFrame:
    """Return ``(node, component)`` for each of ``accounts`` (account_id, each once) as an
    identity-map node: the connected components of the linked ``pairs`` (account_a, account_b,
    decision), found over the linked accounts only; every other account is a component of its
    own. Every linked account must be one of ``accounts``. ``matching`` gives the bounds
    :func:`~crmlake.organize.components.connected_components` takes."""
    linked = pairs.where(F.col("decision") == LINKED).select(F.col("account_a").alias("src"), F.col("account_b").alias("dst"))
    # The rounds run over the linked pairs only: an account linked to none is a person of its own.
    # Over the bare account ids, whose first bytes tell them apart (a sort compares those first;
    # behind ``account_id:`` every comparison reads on), prefixed after: the smallest is the same.
    components = connected_components(accounts.select(F.col("account_id").alias("node")), linked, broadcast_max_rows=matching.broadcast_max_rows,
                                      driver_max_edges=matching.driver_components_max_edges)
    return components.select(_account_node("node").alias("node"), _account_node("component").alias("component"))


def attached(holders: DataFrame, person_of_account: DataFrame) -> DataFrame:
    """Return ``(node, person)``: each identifier of ``holders`` (account_id, block: cookie,
    email and phone nodes with every account holding them, each once) whose holders are all one
    person of ``person_of_account`` (account_id, person: one per account); an identifier of
    several persons is left out."""
    # One person when the smallest and the largest are one (a person is never null), told on the
    # row of the identifier's smallest holder. A window: one sort, by the block's hash then the
    # block, where a grouping (of strings: sorted, not hashed) would sort twice, before and after
    # the shuffle.
    held, by_block = hash_keyed(holders.where(_is_attached(F.col("block"))).join(person_of_account, "account_id"), "block")
    each = Window.partitionBy(*by_block)
    return (
        held
        .select("block", "account_id", "person", F.min("person").over(each).alias("_first"), F.max("person").over(each).alias("_last"),
                F.min("account_id").over(each).alias("_holder"))
        .where((F.col("_first") == F.col("_last")) & (F.col("account_id") == F.col("_holder")))
        .select(F.col("block").alias("node"), "person")
    )


def _account_of(components: DataFrame) -> DataFrame:
    """(account_id, person) of the account nodes of ``components`` (node, component)."""
    return components.where(F.col("node").startswith(ACCOUNT + ":")).select(
        F.expr(f"substring(node, {len(ACCOUNT) + 2})").alias("account_id"), F.col("component").alias("person")
    )


def build_identity_map(profiles: DataFrame, links: DataFrame, previous_map: DataFrame, matching: Matching,
                       previous_rows: int | None = None, keep_pairs: Callable[[DataFrame], DataFrame] = lambda pairs: pairs.checkpoint()) -> tuple[DataFrame, DataFrame]:
    """Return ``(identity_map, pairs)`` of every account, rebuilt whole.

    Takes :func:`~crmlake.organize.matching.match_profiles` of the live accounts, silver
    identity links (anonymous_id, account_id), the previous map (ids to keep; its rows when
    known, else counted: :func:`assign_person_ids`) and the matching rules. ``pairs``: every
    candidate pair with its evidence and decision (silver.identity_pairs), as ``keep_pairs``
    keeps them for the map (a checkpoint; organize writes them and reads them back). The map:
    every account (of a profile or a link), and each cookie, email and phone held by one
    person's accounts alone.
    """
    small = lambda rows: rows <= matching.broadcast_max_rows  # noqa: E731
    few_profiles = small(profiles.count())
    # The profiles sent to every task when few: the candidate pairs meet both ends' without a shuffle.
    pairs = keep_pairs(scored_pairs(maybe_broadcast(profiles, few_profiles), blocks(profiles, links), matching))
    # Every account once: a profile's (one per account), and those of the links without one, the
    # only rows made distinct (the links' other accounts are left out first, without a shuffle when
    # the profiles are few).
    profile_accounts = profiles.select("account_id")
    link_only = links.select("account_id").join(maybe_broadcast(profile_accounts, few_profiles), "account_id", "left_anti").distinct()
    accounts = profile_accounts.unionByName(link_only)
    # Checkpointed: read twice below (the accounts' persons, and the map's account rows).
    components, account_count = counted(persons_of(accounts, pairs, matching))
    # The accounts' persons sent to every task when few: the identifiers are not shuffled to meet them.
    person_of_account = maybe_broadcast(_account_of(components), small(account_count))
    # The identifiers read again from the profiles and links: no hash to compute (the pairing's are not kept).
    identifiers = attached(identifier_blocks(profiles, links), person_of_account).select("node", F.col("person").alias("component"))
    return assign_person_ids(components.unionByName(identifiers), previous_map, broadcast_max_rows=matching.broadcast_max_rows, previous_rows=previous_rows), pairs


def touched_blocks(profiles_before: DataFrame, profiles_after: DataFrame, changed: DataFrame, new_links: DataFrame, default_phone_region: str) -> DataFrame:
    """Return ``block``: the blocks the ``changed`` accounts (account_id) held before the change
    (silver customers at the version before) and hold now, and the newly linked cookies (silver
    identity links' new rows): what :func:`~crmlake.organize.identity.grow_identity_map` takes."""
    empty = new_links.limit(0).select("anonymous_id", "account_id")
    held = [blocks(match_profiles(p.join(changed, "account_id", "left_semi"), default_phone_region), empty) for p in (profiles_before, profiles_after)]
    cookies = new_links.select(F.concat(F.lit(COOKIE + ":"), F.col("anonymous_id")).alias("block"))
    return held[0].select("block").unionByName(held[1].select("block")).unionByName(cookies).distinct()


def grow_identity_map(
    profiles: DataFrame,
    links: DataFrame,
    previous_map: DataFrame,
    previous_pairs: DataFrame,
    touched_accounts: DataFrame,
    touched_blocks: DataFrame,
    matching: Matching,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Return ``(identity_map, pair_changes, persons_reached)``: the map after a change, only the
    persons it reaches recomputed, and the rows to merge into silver.identity_pairs (the
    touched accounts' pairs, ``_gone`` on those no longer candidates).

    Takes what :func:`build_identity_map` takes, the previous pairs (silver.identity_pairs),
    the accounts the change touched (account_id: a changed or new profile, a new link) and the
    blocks they left or joined (block: :func:`~crmlake.organize.matching.blocks` of the changed
    profiles before and after, the newly linked cookies).

    Why this is the full rebuild's map with the same weights: a pair's levels depend on its two
    profiles, the cookies they share and whether the email or phone they share is held too
    widely. So a pair changes only when an end is touched, or when a block they share crossed
    ``max_accounts_per_key``; then all its holders are few and are touched too. Rescored are
    the touched accounts' pairs; reached are the persons of the touched accounts, of their
    linked partners, and of the identifiers touched. A person not reached keeps its accounts'
    pairs, so it is a whole component of the new graph and keeps its id; the reached persons'
    accounts are recomputed and vote for ids among those they held, and every identifier held
    by a recomputed account (or touched, or held by a reached person) is attached anew.
    """
    small = lambda rows: rows <= matching.broadcast_max_rows  # noqa: E731
    memberships = blocks(profiles, links).checkpoint()
    # Only the accounts a full rebuild maps (a live profile or a link): an erased account a later
    # event names (an unsubscribe) stays out of the map.
    touched_accounts, touched_count = counted(touched_accounts.select("account_id").distinct())
    live = profiles.select("account_id").unionByName(links.select("account_id"))
    touched_accounts, touched_count = counted(live.join(maybe_broadcast(touched_accounts, small(touched_count)), "account_id", "left_semi").distinct())
    # A touched block's other holders are touched too when they are few: its size may have crossed the limit.
    touched_blocks = touched_blocks.select("block").unionByName(
        memberships.join(maybe_broadcast(touched_accounts, small(touched_count)), "account_id", "left_semi").select("block")
    ).distinct()
    touched_blocks, block_count = counted(touched_blocks)
    holders = memberships.join(maybe_broadcast(touched_blocks, small(block_count)), "block", "left_semi")
    flagged = holders.join(maybe_broadcast(touched_accounts.withColumn("_touched", F.lit(True)), small(touched_count)), "account_id", "left")
    few = flagged.groupBy("block").agg(F.count_if(F.col("_touched").isNull()).alias("_others")).where(F.col("_others") <= matching.max_accounts_per_key)
    touched, count = counted(touched_accounts.unionByName(holders.join(few, "block", "left_semi").select("account_id")).distinct())
    touched = maybe_broadcast(touched, small(count))
    # The touched accounts' blocks with every holder: the candidate pairs with a touched end.
    their_blocks, n_blocks = counted(memberships.join(touched, "account_id", "left_semi").select("block").distinct())
    around = memberships.join(maybe_broadcast(their_blocks, small(n_blocks)), "block", "left_semi")
    compared, n_compared = counted(around.select("account_id").distinct())
    rescored = scored_pairs(profiles.join(maybe_broadcast(compared, small(n_compared)), "account_id", "left_semi"), around, matching, touched).checkpoint()
    old = previous_pairs.join(touched.withColumnRenamed("account_id", "account_a"), "account_a", "left_semi").unionByName(
        previous_pairs.join(touched.withColumnRenamed("account_id", "account_b"), "account_b", "left_semi")
    ).select("account_a", "account_b").distinct()
    gone = old.join(rescored, ["account_a", "account_b"], "left_anti")
    pair_changes = rescored.withColumn("_gone", F.lit(False)).unionByName(gone.withColumn("_gone", F.lit(True)), allowMissingColumns=True)
    # Reached: the persons of the touched accounts and identifiers, and of the touched accounts' linked partners.
    linked = rescored.where(F.col("decision") == LINKED)
    partners = linked.select(F.col("account_a").alias("account_id")).unionByName(linked.select(F.col("account_b").alias("account_id")))
    reaching = (
        touched.select(_account_node().alias("node"))
        .unionByName(partners.select(_account_node().alias("node")))
        .unionByName(touched_blocks.where(_is_attached(F.col("block"))).select(F.col("block").alias("node")))
    )
    reaching, reaching_count = counted(reaching.distinct())
    previous = previous_map.select(_node_of_map().alias("node"), "person_id")
    persons_reached, reached_count = counted(previous.join(maybe_broadcast(reaching, small(reaching_count)), "node", "left_semi").select("person_id").distinct())
    reached = maybe_broadcast(persons_reached, small(reached_count))
    held = previous.join(reached, "person_id", "left_semi").select("node")
    recomputed, n_recomputed = counted(
        held.unionByName(reaching).where(F.col("node").startswith(ACCOUNT + ":"))
        .select(F.expr(f"substring(node, {len(ACCOUNT) + 2})").alias("account_id")).distinct()
    )
    recomputed_ids = maybe_broadcast(recomputed, small(n_recomputed))
    # Their linked pairs: the rescored ones and the kept ones (both ends recomputed: a kept pair lies within one person).
    kept_pairs = previous_pairs.join(recomputed_ids.withColumnRenamed("account_id", "account_a"), "account_a", "left_semi").join(
        touched.withColumnRenamed("account_id", "account_a"), "account_a", "left_anti").join(touched.withColumnRenamed("account_id", "account_b"), "account_b", "left_anti")
    components = persons_of(recomputed, kept_pairs.select("account_a", "account_b", "decision").unionByName(rescored.select("account_a", "account_b", "decision")),
                            matching)
    # Identifiers attached anew: every one a recomputed account holds, touched, or a reached person held.
    derived = (
        memberships.join(recomputed_ids, "account_id", "left_semi").select("block")
        .unionByName(touched_blocks.select("block"))
        .unionByName(held.select(F.col("node").alias("block")))
        .where(_is_attached(F.col("block"))).distinct()
    )
    derived, n_derived = counted(derived)
    derived = maybe_broadcast(derived, small(n_derived))
    their_holders = memberships.join(derived, "block", "left_semi")
    new_person = _account_of(components).select("account_id", F.concat(F.lit("new:"), "person").alias("person"))
    kept_person = previous.where(F.col("node").startswith(ACCOUNT + ":")).join(reached, "person_id", "left_anti").select(
        F.expr(f"substring(node, {len(ACCOUNT) + 2})").alias("account_id"), F.concat(F.lit("kept:"), "person_id").alias("person"))
    holder_persons = new_person.unionByName(kept_person.join(their_holders.select("account_id").distinct(), "account_id", "left_semi"))
    resolved = attached(their_holders, holder_persons).checkpoint()
    to_new = resolved.where(F.col("person").startswith("new:")).select("node", F.expr("substring(person, 5)").alias("component"))
    to_kept = resolved.where(F.col("person").startswith("kept:")).select("node", F.expr("substring(person, 6)").alias("person_id"))
    ids = assign_person_ids(components.unionByName(to_new), previous_map.join(reached, "person_id", "left_semi"), taken=previous_map,
                            broadcast_max_rows=matching.broadcast_max_rows)
    kept = previous.join(reached, "person_id", "left_anti").join(derived.select(F.col("block").alias("node")), "node", "left_anti")
    identity_map = kept.unionByName(to_kept).select(
        F.substring_index("node", ":", 1).alias("identifier_type"),
        F.expr("substring(node, length(substring_index(node, ':', 1)) + 2)").alias("identifier"),
        "person_id",
    ).unionByName(ids)
    log.info("identity map grown: %d accounts touched (%d with the few other holders of their blocks), %d persons reached, %d accounts recomputed",
             touched_count, count, reached_count, n_recomputed)
    return identity_map, pair_changes.select(*PAIR_COLUMNS, "_gone"), persons_reached


def assign_person_ids(components: DataFrame, previous_map: DataFrame, taken: DataFrame | None = None, broadcast_max_rows: int = 0,
                      previous_rows: int | None = None) -> DataFrame:
    """Return the identity map (identifier_type, identifier, person_id) for ``components``.

    Takes ``(node, component)`` (the component's label, e.g. from :func:`persons_of`: only a
    grouping key and the seed of new ids), the previous identity map of those nodes' persons
    (empty on a first run), ``taken`` (person_id: every id in use, which no new id may be;
    default: ``previous_map``'s) and the most rows of the previous map, of the components that
    held ids, or of the ids in use, sent to every task rather than shuffled with the nodes. Each
    component keeps the previous person id held by most of its nodes (ties: the smaller
    id); when components compete for one id (a split), the component holding it more often
    keeps it (ties: the smaller component) and the others get new ids: ``P`` + 16 hex digits
    of the SHA-256 of the component's label and the previous ids it held (and, should that
    give a previous id, of that id too), so that a new id is never one the previous map holds.
    ``previous_rows``: the previous map's rows when known (a whole table's, from its Delta log),
    else the map is counted (checkpointed and counted on the way).
    """
    small = lambda rows: rows <= broadcast_max_rows  # noqa: E731
    previous = previous_map.select(_node_of_map().alias("node"), F.col("person_id").alias("previous_id"))
    if previous_rows is None:
        previous, previous_rows = counted(previous)
    if previous_rows == 0 and taken is None:
        # A first run: no id to keep, none to avoid. Each component mints from its label alone, as
        # below when it held nothing; the components are read once (the map), not checkpointed.
        return _map_rows(components.withColumn("person_id", _minted_id("component")))
    # Checkpointed: the components are read twice (votes, the map), their lineage once.
    components = components.checkpoint()
    votes = components.join(maybe_broadcast(previous, small(previous_rows)), "node").groupBy("component", "previous_id").agg(F.count(F.lit(1)).alias("votes"))
    # One row per component that held ids: the id it keeps, if any, and those it held. Both
    # windows by component share one sort: its best id (the most votes, ties: the smaller id)
    # and every id it held, on its best id's row; then each best id is kept by the component
    # holding it most often (ties: the smaller component).
    votes, by_component = hash_keyed(votes, "component")
    each_component = Window.partitionBy(*by_component)
    best_for_component = each_component.orderBy(F.col("votes").desc(), "previous_id")
    best_for_id = Window.partitionBy("previous_id").orderBy(F.col("votes").desc(), "component")
    # The list of ids held is on each of the component's rows: k ids held cost k^2 (a merge of k
    # persons; k is a handful even on a rebuild that joins a household's accounts).
    voted, voted_count = counted(
        votes.withColumn("_choice", F.row_number().over(best_for_component))
        .withColumn("_held", F.array_join(F.sort_array(F.collect_list("previous_id").over(each_component)), ","))
        .where("_choice = 1")
        .withColumn("_owner", F.row_number().over(best_for_id))
        .select("component", "_held", F.when(F.col("_owner") == 1, F.col("previous_id")).alias("kept_id"))
    )
    # The ids in use: the previous map's, no more than its rows (when those are few, sent to every
    # task as they are, not written and counted first), or ``taken``'s, counted and sent when few.
    in_use = previous.select("previous_id") if taken is None else taken.select(F.col("person_id").alias("previous_id"))
    ids_in_use = in_use.select(F.col("previous_id").alias("_minted")).distinct().withColumn("_taken", F.lit(True))
    if taken is None and small(previous_rows):
        few_in_use = True
    else:
        ids_in_use, in_use_count = counted(ids_in_use)
        few_in_use = small(in_use_count)
    # A component that held ids and kept none mints from them too: never the id it lost. One
    # that held none may still be the seed of a previous id (an erased account, its rows gone
    # from the map, alone again with the label that minted its old person's id): it mints again
    # from that id too. Minted on each node, from what is the same on every node of its
    # component: no grouping of the nodes by component.
    person = (
        components.join(maybe_broadcast(voted, small(voted_count)), "component", "left")
        .withColumn("_minted", F.when(F.col("kept_id").isNull(), _minted_id("component", "_held")))
        .join(maybe_broadcast(ids_in_use, few_in_use), "_minted", "left")
        .withColumn("person_id", F.coalesce("kept_id", F.when(F.col("_taken"), _minted_id("component", "_held", "_minted")).otherwise(F.col("_minted"))))
    )
    return _map_rows(person)


def _minted_id(*seed: str) -> Column:
    """A new person id: ``P`` + 16 hex digits of the SHA-256 of the ``seed`` columns (nulls left out)."""
    return F.concat(F.lit("P"), F.sha2(F.concat_ws("|", *seed), 256).substr(1, 16))


def _map_rows(person: DataFrame) -> DataFrame:
    """(identifier_type, identifier, person_id) of ``person`` (node, person_id)."""
    return person.select(
        F.substring_index("node", ":", 1).alias("identifier_type"),
        F.expr("substring(node, length(substring_index(node, ':', 1)) + 2)").alias("identifier"),
        "person_id",
    )


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
