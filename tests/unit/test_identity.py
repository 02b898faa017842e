"""Identity resolution on hand-built graphs: chains, stars, merges, consent refused."""

import hashlib
import random

import pytest
from pyspark.sql import functions as F

from crmlake.organize.identity import assign_person_ids, connected_components, grow_identity_map, identity_components, identity_edges, touched_nodes, unmapped_nodes

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


def test_an_erased_account_alone_again_never_takes_the_id_it_once_minted_for_the_person_it_left(spark):
    # A1 and A2 share an email: their person's id was minted from A1, its smallest account.
    # A1 is erased: its rows leave the map and its blank profile is a node alone again.
    first = person_map(spark, {"account_id:A1": "account_id:A1", "account_id:A2": "account_id:A1"})
    assert first[("account_id", "A1")] == first[("account_id", "A2")]
    previous = [("account_id", "A2", first[("account_id", "A2")])]
    now = person_map(spark, {"account_id:A1": "account_id:A1", "account_id:A2": "account_id:A2"}, previous)
    assert now[("account_id", "A2")] == first[("account_id", "A2")]  # the live account keeps its person
    assert now[("account_id", "A1")].startswith("P") and now[("account_id", "A1")] != now[("account_id", "A2")]


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


def key_node(email):
    return "email_sha256:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def union_find_persons(links, accounts, max_per_key):
    """The persons of the graph of ``links`` and ``accounts``, found in Python: cookie edges,
    email keys held by at most ``max_per_key`` live accounts, union-find; a set of frozensets
    of (identifier_type, identifier)."""
    holders = {}
    for account_id, email, _phone, erased in accounts:
        if email and email.strip() and not erased:
            holders.setdefault(key_node(email), []).append(account_id)
    pairs = [(f"anonymous_id:{c}", f"account_id:{a}") for c, a in links]
    pairs += [(f"account_id:{a}", key) for key, held in holders.items() if len(held) <= max_per_key for a in held]
    pairs += [(f"account_id:{a}",) * 2 for a, *_ in accounts]
    components = union_find(pairs)
    return {frozenset(tuple(n.split(":", 1)) for n, c in components.items() if c == root) for root in set(components.values())}


def persons_in(identity_map):
    return {frozenset(k for k, p in identity_map.items() if p == pid) for pid in set(identity_map.values())}


def full_and_grown(spark, old_links, new_links, old_accounts, new_accounts, max_per_key=5, broadcast_max_rows=1000, erased=()):
    """Maps of the graph of ``new_links`` and ``new_accounts``: rebuilt whole, and grown from
    the map of the old graph, told the links added or removed and the accounts changed. With
    ``erased`` (identifiers), an erasure deleted those rows from the map first: both start from
    that map, and growing touches what it lacks instead of the profiles as they were."""
    def sources(links, accounts):
        return spark.createDataFrame(links, "anonymous_id string, account_id string").withColumn("tracking_consent", F.lit(True)), spark.createDataFrame(accounts, ACCOUNT_SCHEMA)

    # The old graph's map, found in Python: a person id per union-find component.
    old_persons = sorted(sorted(person) for person in union_find_persons(old_links, old_accounts, max_per_key))
    rows = [(*node, f"P{n:03d}") for n, person in enumerate(old_persons) for node in person if node[1] not in erased]
    previous = spark.createDataFrame(rows, MAP_SCHEMA)
    links, accounts = sources(new_links, new_accounts)
    rebuilt = assign_person_ids(identity_components(*identity_edges(links, accounts, "TW", max_per_key)), previous)
    linked_or_unlinked = sorted(set(old_links) ^ set(new_links))
    changed = sorted({a for a, *_ in set(old_accounts) ^ set(new_accounts)})
    touched = touched_nodes(
        spark.createDataFrame(linked_or_unlinked, "anonymous_id string, account_id string"),
        spark.createDataFrame([(a,) for a in changed], "account_id string"),
        accounts.limit(0) if erased else sources(old_links, old_accounts)[1],
        accounts,
        "TW",
        broadcast_max_rows,
    )
    if erased:
        touched = touched.unionByName(unmapped_nodes(links, accounts, previous, "TW", max_per_key))
    grown = grow_identity_map(links, accounts, previous, touched, "TW", max_per_key, broadcast_max_rows)
    as_dict = lambda df: {(r["identifier_type"], r["identifier"]): r["person_id"] for r in df.collect()}
    return as_dict(previous), as_dict(rebuilt), as_dict(grown)


def test_growing_the_map_gives_the_full_rebuild_under_additions_and_removals(spark):
    rng = random.Random(11)
    emails = [f"m{i:03d}@example.com" for i in range(100)]
    # Accounts sharing emails (some by more than max_per_key = 3 accounts: no evidence), cookies linking them.
    old_accounts = [(f"a{i:03d}", rng.choice(emails) if rng.random() < 0.5 else None, None, False) for i in range(200)]
    old = sorted({(f"c{rng.randrange(400):03d}", f"a{rng.randrange(200):03d}") for _ in range(150)})
    removed = set(rng.sample(old, 15))  # may split persons
    added = {(f"c{rng.randrange(430):03d}", f"a{rng.randrange(215):03d}") for _ in range(20)}  # merges, new nodes
    new = sorted((set(old) - removed) | added)
    # Email changes (a key leaving or reaching max_per_key), new accounts, an email dropped.
    moved = {a for a, *_ in rng.sample(old_accounts, 12)}
    new_accounts = [(a, rng.choice(emails) if a in moved else e, p, x) for a, e, p, x in old_accounts]
    new_accounts += [(f"a{i:03d}", rng.choice(emails), None, False) for i in range(200, 210)]
    previous, rebuilt, grown = full_and_grown(spark, old, new, old_accounts, new_accounts, max_per_key=3)
    assert grown == rebuilt
    # The partition into persons is the graph's connected components, found apart.
    assert persons_in(grown) == union_find_persons(new, new_accounts, 3)
    # Persons no change reached keep their ids: most of them, here.
    unchanged = [k for k in previous if k in grown and grown[k] == previous[k]]
    assert len(unchanged) > len(previous) / 2


def test_a_node_gone_from_the_graph_leaves_the_map(spark):
    old = [("c1", "a1"), ("c2", "a2")]
    new = [("c2", "a2")]
    # Without broadcasts (more persons reached than broadcast_max_rows): the same map.
    previous, rebuilt, grown = full_and_grown(spark, old, new, [], [], broadcast_max_rows=0)
    assert ("account_id", "a1") in previous and ("account_id", "a1") not in grown
    assert grown == rebuilt and grown[("account_id", "a2")] == previous[("account_id", "a2")]


def test_an_email_change_takes_the_old_key_out_of_the_map_and_splits_who_shared_it(spark):
    links = [("c1", "A1"), ("c2", "A2")]
    old_accounts = [("A1", "ann@example.com", None, False), ("A2", "ANN@example.com ", None, False), ("A3", "old@example.com", None, False)]
    new_accounts = [("A1", "ann@example.com", None, False), ("A2", "bob@example.com", None, False), ("A3", "new@example.com", None, False)]
    previous, rebuilt, grown = full_and_grown(spark, links, links, old_accounts, new_accounts)
    assert previous[("account_id", "A1")] == previous[("account_id", "A2")]
    assert grown == rebuilt and persons_in(grown) == union_find_persons(links, new_accounts, 5)
    assert grown[("account_id", "A1")] != grown[("account_id", "A2")]
    assert tuple(key_node("old@example.com").split(":")) not in grown
    assert grown[tuple(key_node("new@example.com").split(":"))] == grown[("account_id", "A3")] == previous[("account_id", "A3")]


def test_a_key_reaching_too_many_accounts_stops_linking_them_and_links_them_again_when_one_leaves(spark):
    links = [("c1", "A1"), ("c2", "A2"), ("c3", "A3")]
    shared = [("A1", "shop@example.com", None, False), ("A2", "shop@example.com", None, False)]
    two, three = shared + [("A3", "me@example.com", None, False)], shared + [("A3", "Shop@example.com", None, False)]
    # A3 takes the key: three accounts hold it, more than max_per_key = 2, so it links none of them.
    previous, rebuilt, grown = full_and_grown(spark, links, links, two, three, max_per_key=2)
    assert previous[("account_id", "A1")] == previous[("account_id", "A2")]
    assert grown == rebuilt and persons_in(grown) == union_find_persons(links, three, 2)
    assert len({grown[("account_id", a)] for a in ("A1", "A2", "A3")}) == 3
    assert tuple(key_node("shop@example.com").split(":")) not in grown
    # A3 leaves it: A1 and A2, untouched, are one person again (the old key is touched).
    previous, rebuilt, grown = full_and_grown(spark, links, links, three, two, max_per_key=2)
    assert grown == rebuilt and persons_in(grown) == union_find_persons(links, two, 2)
    assert grown[("account_id", "A1")] == grown[("account_id", "A2")] == grown[("anonymous_id", "c2")] != grown[("account_id", "A3")]


def test_an_erasure_splits_the_persons_it_joined_and_keeps_the_keys_others_hold(spark):
    # A5 shares an email with A1 and a cookie with A3; the erasure deletes its account, email
    # key and cookies from the map, its links and profile from silver (a blank row stays).
    old_links = [("c1", "A1"), ("c5", "A5"), ("c3", "A5"), ("c3", "A3")]
    new_links = [("c1", "A1"), ("c3", "A3")]
    old_accounts = [("A1", " ANN@example.com", None, False), ("A3", "cy@example.com", None, False), ("A5", "ann@example.com", None, False)]
    new_accounts = [*old_accounts[:2], ("A5", None, None, True)]
    erased = ["A5", key_node("ann@example.com").split(":")[1], "c5", "c3"]
    previous, rebuilt, grown = full_and_grown(spark, old_links, new_links, old_accounts, new_accounts, erased=erased)
    assert len(set(previous.values())) == 1
    assert grown == rebuilt and persons_in(grown) == union_find_persons(new_links, new_accounts, 5)
    ann = tuple(key_node("ann@example.com").split(":"))
    assert grown[ann] == grown[("account_id", "A1")] != grown[("account_id", "A3")] == grown[("anonymous_id", "c3")]
