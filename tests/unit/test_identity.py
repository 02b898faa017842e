"""Identity resolution on hand-built graphs: chains, stars, merges, consent refused."""

import datetime as dt
import random

import pytest

from crmlake.organize.identity import assign_person_ids, connected_components, grow_identity_map, identity_components, identity_edges

MAP_SCHEMA = "identifier_type string, identifier string, person_id string"
CLICK_SCHEMA = "anonymous_id string, account_id string, tracking_consent boolean"
ACCOUNT_SCHEMA = "account_id string, email string, phone string, erased boolean"


def components_of(spark, pairs, extra_nodes=()):
    nodes = spark.createDataFrame([(n,) for n in {*extra_nodes, *[n for p in pairs for n in p]}], "node string")
    edges = spark.createDataFrame(pairs, "src string, dst string")
    return {r["node"]: r["component"] for r in connected_components(nodes, edges).collect()}


def union_find(pairs):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def test_a_long_chain_in_scrambled_order_is_one_component(spark):
    names = [f"n{i:04d}" for i in range(150)]
    random.Random(1).shuffle(names)
    chain = list(zip(names, names[1:]))
    assert set(components_of(spark, chain).values()) == {"n0000"}


def test_a_large_star_and_an_isolated_node(spark):
    star = [("hub", f"leaf{i:04d}") for i in range(200)]
    found = components_of(spark, star, extra_nodes=["alone"])
    assert found["alone"] == "alone"
    assert {v for k, v in found.items() if k != "alone"} == {"hub"}


def test_random_graph_matches_union_find(spark):
    rng = random.Random(7)
    pairs = [(f"v{rng.randrange(400):03d}", f"v{rng.randrange(400):03d}") for _ in range(300)]
    expected = union_find(pairs)
    assert components_of(spark, pairs) == expected


def persons_of(spark, pairs, extra_nodes=()):
    nodes = spark.createDataFrame([(n,) for n in {*extra_nodes, *[n for p in pairs for n in p]}], "node string")
    edges = spark.createDataFrame(pairs, "src string, dst string")
    return {r["node"]: r["component"] for r in identity_components(nodes, edges).collect()}


def test_identity_components_of_a_random_account_cookie_email_graph_match_union_find(spark):
    rng = random.Random(5)
    # As identity_edges orients them: cookie -> account, account -> email key.
    cookies = [(f"anonymous_id:c{rng.randrange(300):03d}", f"account_id:a{rng.randrange(200):03d}") for _ in range(250)]
    emails = [(f"account_id:a{rng.randrange(200):03d}", f"email_sha256:e{rng.randrange(60):02d}") for _ in range(80)]
    pairs = cookies + emails
    found = persons_of(spark, pairs)
    expected = union_find(pairs)
    members = lambda labels: {frozenset(n for n in labels if labels[n] == label) for label in set(labels.values())}
    assert members(found) == members(expected)
    for component in members(found):
        accounts = [n for n in component if n.startswith("account_id:")]
        assert {found[n] for n in component} == {min(accounts)}


def test_identity_components_keep_nodes_without_edges_as_their_own_component(spark):
    found = persons_of(spark, [("anonymous_id:c1", "account_id:a1")], extra_nodes=["account_id:a0", "anonymous_id:c0", "email_sha256:e0"])
    assert found == {
        "account_id:a1": "account_id:a1",
        "anonymous_id:c1": "account_id:a1",
        "account_id:a0": "account_id:a0",
        "anonymous_id:c0": "anonymous_id:c0",
        "email_sha256:e0": "email_sha256:e0",
    }


def test_a_cookie_linked_to_two_accounts_merges_them(spark):
    pairs = [("anonymous_id:c1", "account_id:a2"), ("anonymous_id:c1", "account_id:a1"), ("anonymous_id:c2", "account_id:a2")]
    assert set(persons_of(spark, pairs).values()) == {"account_id:a1"}


def test_a_key_shared_by_two_accounts_merges_them_and_their_cookies(spark):
    pairs = [("account_id:a2", "email_sha256:e1"), ("account_id:a1", "email_sha256:e1"), ("anonymous_id:c9", "account_id:a2"), ("anonymous_id:c8", "account_id:a3")]
    found = persons_of(spark, pairs)
    assert {found[n] for n in ("account_id:a1", "account_id:a2", "email_sha256:e1", "anonymous_id:c9")} == {"account_id:a1"}
    assert found["anonymous_id:c8"] == found["account_id:a3"] == "account_id:a3"


def test_an_edge_between_two_accounts_links_them(spark):
    pairs = [("account_id:a3", "account_id:a2"), ("anonymous_id:c1", "account_id:a3"), ("account_id:a1", "email_sha256:e1")]
    found = persons_of(spark, pairs)
    assert {found[n] for n in ("account_id:a2", "account_id:a3", "anonymous_id:c1")} == {"account_id:a2"}
    assert found["email_sha256:e1"] == "account_id:a1"


def test_identity_components_refuse_an_edge_without_an_account_end(spark):
    with pytest.raises(ValueError, match="1 edges lack an account_id end"):
        persons_of(spark, [("anonymous_id:c1", "email_sha256:e1"), ("anonymous_id:c1", "account_id:a1")])


def person_map(spark, components, previous=()):
    comps = spark.createDataFrame(list(components.items()), "node string, component string")
    return {
        (r["identifier_type"], r["identifier"]): r["person_id"]
        for r in assign_person_ids(comps, spark.createDataFrame(list(previous), MAP_SCHEMA)).collect()
    }


def test_an_account_joining_a_person_keeps_the_persons_id(spark):
    previous = [("account_id", "A1", "P_OLD"), ("anonymous_id", "ck1", "P_OLD")]
    now = person_map(spark, {"account_id:A1": "account_id:A1", "anonymous_id:ck1": "account_id:A1", "account_id:A0": "account_id:A1"}, previous)
    assert set(now.values()) == {"P_OLD"}


def test_when_two_persons_merge_the_id_held_by_more_identifiers_survives(spark):
    previous = [("account_id", "A1", "P_B"), ("anonymous_id", "ck1", "P_B"), ("account_id", "A2", "P_A")]
    merged = {"account_id:A1": "X", "anonymous_id:ck1": "X", "account_id:A2": "X"}
    assert set(person_map(spark, merged, previous).values()) == {"P_B"}
    # A tie (one identifier each) goes to the smaller id.
    tie = [("account_id", "A1", "P_B"), ("account_id", "A2", "P_A")]
    assert set(person_map(spark, {"account_id:A1": "X", "account_id:A2": "X"}, tie).values()) == {"P_A"}


def test_a_split_leaves_the_id_with_the_larger_part_and_mints_one_for_the_other(spark):
    previous = [("account_id", "A1", "P_1"), ("account_id", "A2", "P_1"), ("account_id", "A3", "P_1")]
    now = person_map(spark, {"account_id:A1": "a", "account_id:A2": "a", "account_id:A3": "b"}, previous)
    assert now[("account_id", "A1")] == now[("account_id", "A2")] == "P_1"
    assert now[("account_id", "A3")].startswith("P") and now[("account_id", "A3")] != "P_1"


def resolve(spark, clicks, accounts, max_per_key=5):
    nodes, edges = identity_edges(spark.createDataFrame(clicks, CLICK_SCHEMA), spark.createDataFrame(accounts, ACCOUNT_SCHEMA), "TW", max_per_key)
    return person_map(spark, {r["node"]: r["component"] for r in identity_components(nodes, edges).collect()})


def test_email_case_and_phone_format_link_accounts_but_refused_tracking_does_not(spark):
    accounts = [
        ("A1", "ann@example.com", "0912345678", False),
        ("A2", "  ANN@Example.com ", None, False),
        ("A3", None, "+886 912 345 678", False),
        ("A4", "bob@example.com", None, False),
    ]
    clicks = [("ck_ok", "A1", True), ("ck_refused", "A4", False)]
    people = resolve(spark, clicks, accounts)
    assert people[("account_id", "A1")] == people[("account_id", "A2")] == people[("account_id", "A3")] == people[("anonymous_id", "ck_ok")]
    assert people[("account_id", "A4")] != people[("account_id", "A1")]
    assert ("anonymous_id", "ck_refused") not in people


def test_a_key_shared_by_too_many_accounts_is_not_evidence(spark):
    accounts = [(f"A{i}", "shop@example.com", None, False) for i in range(3)]
    people = resolve(spark, [], accounts, max_per_key=2)
    assert len({people[("account_id", f"A{i}")] for i in range(3)}) == 3


def full_and_grown(spark, old_pairs, new_pairs, extra_nodes=(), broadcast_max_rows=1000):
    """Maps of the new graph: rebuilt whole, and grown from the old graph's map."""
    def graph(pairs):
        nodes = spark.createDataFrame([(n,) for n in {*extra_nodes, *[n for p in pairs for n in p]}], "node string")
        return nodes, spark.createDataFrame(pairs, "src string, dst string")

    empty = spark.createDataFrame([], MAP_SCHEMA)
    previous = assign_person_ids(identity_components(*graph(old_pairs)), empty).checkpoint()
    nodes, edges = graph(new_pairs)
    removed = set(old_pairs) - set(new_pairs)
    touched = spark.createDataFrame([(n,) for pair in removed for n in pair] or [("account_id:none",)], "node string")
    rebuilt = assign_person_ids(identity_components(nodes, edges), previous)
    grown = grow_identity_map(nodes, edges, previous, touched, broadcast_max_rows)
    as_dict = lambda df: {(r["identifier_type"], r["identifier"]): r["person_id"] for r in df.collect()}
    return as_dict(previous), as_dict(rebuilt), as_dict(grown)


def test_growing_the_map_gives_the_full_rebuild_under_additions_and_removals(spark):
    rng = random.Random(11)
    old = sorted({(f"account_id:a{rng.randrange(300):03d}", f"anonymous_id:c{rng.randrange(300):03d}") for _ in range(250)})
    removed = set(rng.sample(old, 15))  # may split persons
    added = {(f"account_id:a{rng.randrange(330):03d}", f"anonymous_id:c{rng.randrange(330):03d}") for _ in range(20)}  # merges, new nodes
    new = sorted((set(old) - removed) | added)
    previous, rebuilt, grown = full_and_grown(spark, old, new)
    assert grown == rebuilt
    # The partition into persons is the graph's connected components.
    components = union_find(new)
    assert {frozenset(k for k, p in grown.items() if p == pid) for pid in set(grown.values())} == {
        frozenset(tuple(n.split(":", 1)) for n, c in components.items() if c == root) for root in set(components.values())
    }
    # Persons no change reached keep their ids: most of them, here.
    unchanged = [k for k in previous if k in grown and grown[k] == previous[k]]
    assert len(unchanged) > len(previous) / 2


def test_a_node_gone_from_the_graph_leaves_the_map(spark):
    old = [("account_id:a1", "anonymous_id:c1"), ("account_id:a2", "anonymous_id:c2")]
    new = [("account_id:a2", "anonymous_id:c2")]
    # Without broadcasts (more persons reached than broadcast_max_rows): the same map.
    previous, rebuilt, grown = full_and_grown(spark, old, new, broadcast_max_rows=0)
    assert ("account_id", "a1") in previous and ("account_id", "a1") not in grown
    assert grown == rebuilt and grown[("account_id", "a2")] == previous[("account_id", "a2")]
