"""Identity resolution: components on hand-built graphs, stable ids, and accounts into persons by weighed evidence."""

import datetime as dt
import random
import re

import pytest

from crmlake.config import load_conf
from crmlake.organize.components import connected_components
from crmlake.organize.identity import Matching, assign_person_ids, build_identity_map, grow_identity_map, touched_blocks
from crmlake.organize.matching import LINKED, VETOED, blocks, expectation_maximisation, identifier_blocks, match_profiles, prior_weights

MAP_SCHEMA = "identifier_type string, identifier string, person_id string"
LINK_SCHEMA = "anonymous_id string, account_id string"
ACCOUNT_SCHEMA = "account_id string, email string, phone string, name string, birth_year int, erased boolean"


def components_of(spark, pairs, extra_nodes=(), broadcast_max_rows=0, driver_max_edges=0):
    nodes = spark.createDataFrame([(n,) for n in {*extra_nodes, *[n for p in pairs for n in p]}], "node string")
    edges = spark.createDataFrame(pairs, "src string, dst string")
    found = connected_components(nodes, edges, broadcast_max_rows=broadcast_max_rows, driver_max_edges=driver_max_edges)
    return {r["node"]: r["component"] for r in found.collect()}


# Where the components are found: by Spark's rounds, or on the driver.
FINISHED = pytest.mark.parametrize("driver_max_edges", [0, 10**6], ids=["rounds", "driver"])


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


@FINISHED
def test_a_long_chain_in_scrambled_order_is_one_component(spark, driver_max_edges):
    names = [f"n{i:04d}" for i in range(150)]
    random.Random(1).shuffle(names)
    chain = list(zip(names, names[1:]))
    assert set(components_of(spark, chain, driver_max_edges=driver_max_edges).values()) == {"n0000"}


@FINISHED
def test_a_large_star_and_an_isolated_node(spark, driver_max_edges):
    star = [("hub", f"leaf{i:04d}") for i in range(200)]
    found = components_of(spark, star, extra_nodes=["alone"], driver_max_edges=driver_max_edges)
    assert found["alone"] == "alone"
    assert {v for k, v in found.items() if k != "alone"} == {"hub"}


@FINISHED
def test_random_graph_matches_union_find(spark, driver_max_edges):
    rng = random.Random(7)
    pairs = [(f"v{rng.randrange(400):03d}", f"v{rng.randrange(400):03d}") for _ in range(300)]
    expected = union_find(pairs)
    assert components_of(spark, pairs, driver_max_edges=driver_max_edges) == expected


def test_the_driver_finds_the_components_when_the_edges_are_few_enough(spark):
    import logging

    from crmlake.organize.components import log

    names = [f"n{i:04d}" for i in range(150)]
    random.Random(2).shuffle(names)
    chain = list(zip(names, names[1:]))
    seen = []

    class Seen(logging.Handler):
        def emit(self, record):
            seen.append((record.args[0], "on the driver" in record.msg))  # (Spark's rounds, found on the driver)

    handler, level = Seen(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for driver_max_edges in (0, 148, 149):
            assert set(components_of(spark, chain, driver_max_edges=driver_max_edges).values()) == {"n0000"}
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    # A chain of 150 accounts is 149 edges: one more than the bound and the rounds run.
    (rounds_alone, driver_alone), (rounds_above, driver_above), (no_round, on_driver) = seen
    assert rounds_alone > 1 and not driver_alone
    assert rounds_above == rounds_alone and not driver_above
    assert no_round == 0 and on_driver


@FINISHED
def test_no_edge_or_a_loop_alone_leaves_every_node_its_own_component(spark, driver_max_edges):
    assert components_of(spark, [], extra_nodes=["a", "b"], driver_max_edges=driver_max_edges) == {"a": "a", "b": "b"}
    assert components_of(spark, [("a", "a")], extra_nodes=["b"], driver_max_edges=driver_max_edges) == {"a": "a", "b": "b"}


@FINISHED
def test_the_smallest_node_is_smallest_by_bytes_as_spark_compares_strings(spark, driver_max_edges):
    # Accented, upper-case, CJK and astral letters: UTF-8's byte order is the code points' order (union_find's).
    letters = ["a", "Z", "é", "z", "É", "人", "𝔸", "0", "ß"]
    rng = random.Random(9)
    pairs = [(f"{rng.choice(letters)}{rng.randrange(40)}", f"{rng.choice(letters)}{rng.randrange(40)}") for _ in range(250)]
    assert components_of(spark, pairs, driver_max_edges=driver_max_edges) == union_find(pairs)


def test_components_are_the_same_when_the_stars_are_sent_to_every_task(spark):
    rng = random.Random(8)
    pairs = [(f"v{rng.randrange(300):03d}", f"v{rng.randrange(300):03d}") for _ in range(200)]
    assert components_of(spark, pairs, extra_nodes=["alone"], broadcast_max_rows=1000) == {**union_find(pairs), "alone": "alone"}


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


def test_a_first_run_mints_the_ids_a_run_with_no_id_to_avoid_would(spark):
    comps = spark.createDataFrame([("account_id:A1", "account_id:A1"), ("anonymous_id:ck1", "account_id:A1"), ("account_id:A2", "account_id:A2")], "node string, component string")
    no_map = spark.createDataFrame([], MAP_SCHEMA)
    first = assign_person_ids(comps, no_map).collect()
    with_nothing_taken = assign_person_ids(comps, no_map, taken=no_map).collect()
    assert sorted(first) == sorted(with_nothing_taken) and len({r["person_id"] for r in first}) == 2


def test_an_erased_account_alone_again_never_takes_the_id_it_once_minted_for_the_person_it_left(spark):
    # A1 and A2 share an email: their person's id was minted from A1, its smallest account.
    # A1 is erased: its rows leave the map and its blank profile is a node alone again.
    first = person_map(spark, {"account_id:A1": "account_id:A1", "account_id:A2": "account_id:A1"})
    assert first[("account_id", "A1")] == first[("account_id", "A2")]
    previous = [("account_id", "A2", first[("account_id", "A2")])]
    now = person_map(spark, {"account_id:A1": "account_id:A1", "account_id:A2": "account_id:A2"}, previous)
    assert now[("account_id", "A2")] == first[("account_id", "A2")]  # the live account keeps its person
    assert now[("account_id", "A1")].startswith("P") and now[("account_id", "A1")] != now[("account_id", "A2")]



def matching(max_per_key=5, broadcast_max_rows=1000):
    """The shipped conf's prior weights and threshold: decisions that do not depend on EM."""
    conf = load_conf("conf/local.yaml", environ={})
    return Matching(prior_weights(conf.organize.identity.weights), conf.organize.identity.link_min_probability, max_per_key, broadcast_max_rows)


def resolved(spark, accounts, links=(), previous=(), rules=None):
    """Return (map as {(type, identifier): person}, pairs as {(a, b): row}) rebuilt whole."""
    profiles = match_profiles(spark.createDataFrame(accounts, ACCOUNT_SCHEMA), "TW")
    identity_map, pairs = build_identity_map(profiles, spark.createDataFrame(list(links), LINK_SCHEMA), spark.createDataFrame(list(previous), MAP_SCHEMA), rules or matching())
    return as_dict(identity_map), {(r["account_a"], r["account_b"]): r for r in pairs.collect()}


def as_dict(identity_map):
    return {(r["identifier_type"], r["identifier"]): r["person_id"] for r in identity_map.collect()}


def test_one_persons_accounts_join_by_email_case_phone_format_and_a_typo_and_take_their_cookie(spark):
    accounts = [
        ("A1", "john.lee@example.com", "0912345678", "John Lee", 1980, False),
        ("A2", "  JOHN.LEE@Example.com ", None, "john  lee", 1980, False),   # same mailbox, other case and spaces
        ("A3", "other@mail.example", "+886 912 345 678", "John Lee", 1980, False),  # the same phone in another format
        ("A4", "jonh.lee@example.com", None, "John Lee", 1981, False),       # a typo, a birth year one off
        ("A5", "ann@example.com", None, "Ann Wu", 1990, False),
    ]
    people, pairs = resolved(spark, accounts, links=[("ck1", "A1"), ("ck1", "A3")])
    john = {people[("account_id", a)] for a in ("A1", "A2", "A3", "A4")}
    assert len(john) == 1 and people[("account_id", "A5")] not in john
    assert people[("anonymous_id", "ck1")] in john
    assert pairs[("A1", "A4")]["email_level"] == "near" and pairs[("A1", "A4")]["decision"] == LINKED
    assert pairs[("A1", "A3")]["device_level"] == "shared" and pairs[("A1", "A3")]["phone_level"] == "exact"


def test_a_household_sharing_a_computer_and_a_mailbox_stays_two_persons_and_owns_neither(spark):
    accounts = [
        ("A1", "family@example.com", "0911111111", "Mary Chen", 1975, False),
        ("A2", "family@example.com", "0922222222", "Tom Chen", 2004, False),
        ("A3", "tom.chen@example.com", "0922222222", "Tom Chen", 2004, False),  # Tom's own second account
    ]
    people, pairs = resolved(spark, accounts, links=[("ck_home", "A1"), ("ck_home", "A2"), ("ck_tom", "A3")])
    assert pairs[("A1", "A2")]["decision"] == VETOED and pairs[("A1", "A2")]["device_level"] == "shared" and pairs[("A1", "A2")]["email_level"] == "exact"
    mary, tom = people[("account_id", "A1")], people[("account_id", "A2")]
    assert mary != tom and people[("account_id", "A3")] == tom
    # The shared computer and the family mailbox are nobody's; Tom's own cookie is his.
    assert ("anonymous_id", "ck_home") not in people and people[("anonymous_id", "ck_tom")] == tom
    family_keys = [k for k in people if k[0] == "email_sha256"]
    assert len(family_keys) == 1  # only tom.chen@ (held by Tom alone) is attached


def test_the_map_is_the_same_whether_small_sides_are_broadcast_or_shuffled(spark):
    accounts = [
        ("A1", "family@example.com", "0911111111", "Mary Chen", 1975, False),
        ("A2", "family@example.com", "0922222222", "Tom Chen", 2004, False),
        ("A3", "tom.chen@example.com", "0922222222", "Tom Chen", 2004, False),
    ]
    links = [("ck_home", "A1"), ("ck_home", "A2"), ("ck_tom", "A3"), ("ck_tom", "A9")]
    broadcast, _ = resolved(spark, accounts, links, rules=matching(broadcast_max_rows=1000))
    shuffled, _ = resolved(spark, accounts, links, rules=matching(broadcast_max_rows=0))
    assert broadcast == shuffled


def test_an_account_known_by_its_links_alone_is_one_person_holding_its_cookies(spark):
    profiles = match_profiles(spark.createDataFrame([("A1", "ann@example.com", None, "Ann Wu", 1990, False)], ACCOUNT_SCHEMA), "TW")
    links = spark.createDataFrame([("ck1", "A9"), ("ck2", "A9"), ("ck3", "A1")], LINK_SCHEMA)
    rows = build_identity_map(profiles, links, spark.createDataFrame([], MAP_SCHEMA), matching())[0].collect()
    assert [r["identifier"] for r in rows if r["identifier_type"] == "account_id"].count("A9") == 1
    people = {(r["identifier_type"], r["identifier"]): r["person_id"] for r in rows}
    assert people[("anonymous_id", "ck1")] == people[("anonymous_id", "ck2")] == people[("account_id", "A9")] != people[("account_id", "A1")]


def test_an_identifier_two_accounts_of_one_person_hold_is_one_row_of_the_map(spark):
    profiles = match_profiles(spark.createDataFrame([("A1", "ann@example.com", None, "Ann Wu", 1990, False), ("A2", "ann@example.com", None, "Ann Wu", 1990, False)], ACCOUNT_SCHEMA), "TW")
    links = spark.createDataFrame([("ck1", "A1"), ("ck1", "A2")], LINK_SCHEMA)
    rows = build_identity_map(profiles, links, spark.createDataFrame([], MAP_SCHEMA), matching())[0].collect()
    assert sorted(r["identifier_type"] for r in rows) == ["account_id", "account_id", "anonymous_id", "email_sha256"]
    assert len({r["person_id"] for r in rows}) == 1


def test_identifier_blocks_are_the_email_phone_and_cookie_blocks(spark):
    profiles = match_profiles(spark.createDataFrame([("A1", "ann@example.com", "0911111111", "Ann", 1990, False), ("A2", None, None, "Bo", 1991, False)], ACCOUNT_SCHEMA), "TW")
    links = spark.createDataFrame([("ck1", "A2")], LINK_SCHEMA)
    every = {(r["account_id"], r["block"]) for r in blocks(profiles, links).collect()}
    identifiers = identifier_blocks(profiles, links).collect()
    assert len(identifiers) == 3
    assert {(r["account_id"], r["block"]) for r in identifiers} == {b for b in every if b[1].split(":")[0] in ("email_sha256", "phone_sha256", "anonymous_id")}


def test_a_shop_phone_and_placeholders_merge_nobody(spark):
    shop = [(f"S{i}", None, "02-2345-6789", ["Ann Wu", "Bo Lin", "Cy Tsai"][i], 1960 + i, False) for i in range(3)]
    placeholder = [(f"N{i}", "none@none.com", "0900000000", f"Buyer Number{i}", 1970 + i, False) for i in range(8)]
    people, pairs = resolved(spark, shop + placeholder)
    assert len({people[("account_id", a)] for a, *_ in shop + placeholder}) == 11
    assert {pairs[p]["decision"] for p in pairs} == {VETOED}          # the shop's trio: compared and refused
    assert not any(a.startswith("N") for pair in pairs for a in pair)  # the placeholder (8 > 5 accounts) pairs nobody


def test_a_recycled_number_does_not_link_its_old_and_new_holders(spark):
    accounts = [
        ("A1", "old@example.com", "0933333333", "Wei Lin", 1950, False),   # kept the number in a stale profile
        ("A2", "new@example.com", "0933333333", "Yu Hsu", 1999, False),
    ]
    people, pairs = resolved(spark, accounts)
    assert people[("account_id", "A1")] != people[("account_id", "A2")] and pairs[("A1", "A2")]["decision"] == VETOED


def test_expectation_maximisation_recovers_the_share_of_matches_and_their_levels(spark):
    # Planted: 200 one-person pairs (email exact 90%, name exact), 800 pairs of two persons (name differ, email differ).
    u = {"email": {"exact": 0.01, "near": 0.01, "differ": 0.98}, "phone": {"exact": 0.01, "differ": 0.99},
         "name": {"exact": 0.01, "near": 0.01, "differ": 0.98}, "birth_year": {"exact": 0.05, "near": 0.1, "differ": 0.85},
         "device": {"shared": 0.001, "none": 0.999}}
    start = {c: {lv: 1 / len(levels) for lv in levels} for c, levels in u.items()}
    patterns = [(("exact", None, "exact", "exact", "none"), 180), (("differ", None, "exact", "exact", "none"), 20), (("differ", None, "differ", "differ", "none"), 800)]
    m, prior = expectation_maximisation(patterns, u, start, 0.5, iterations=50)
    assert abs(prior - 0.2) < 0.01
    assert abs(m["email"]["exact"] - 0.9) < 0.02 and m["name"]["exact"] > 0.98


def grown_and_rebuilt(spark, old_accounts, new_accounts, old_links, new_links, also_touched=()):
    """Maps of the new accounts and links: rebuilt whole, and grown from the old ones' map."""
    rules = matching(max_per_key=3)
    frame = lambda rows, schema: spark.createDataFrame(list(rows), schema)  # noqa: E731
    old_profiles = match_profiles(frame(old_accounts, ACCOUNT_SCHEMA), "TW")
    first, old_pairs = build_identity_map(old_profiles, frame(old_links, LINK_SCHEMA), frame([], MAP_SCHEMA), rules)
    previous = first.checkpoint()
    profiles = match_profiles(frame(new_accounts, ACCOUNT_SCHEMA), "TW")
    links = frame(new_links, LINK_SCHEMA)
    rebuilt, _ = build_identity_map(profiles, links, previous, rules)
    changed = frame([(a,) for a in sorted({r[0] for r in set(old_accounts) ^ set(new_accounts)} | set(also_touched))], "account_id string")
    added = frame(sorted(set(new_links) - set(old_links)), LINK_SCHEMA)
    touched = touched_blocks(frame(old_accounts, ACCOUNT_SCHEMA), frame(new_accounts, ACCOUNT_SCHEMA), changed, added, "TW")
    grown, _, _ = grow_identity_map(profiles, links, previous, old_pairs.checkpoint(), changed.unionByName(added.select("account_id")), touched, rules)
    return as_dict(previous), as_dict(rebuilt), as_dict(grown)


def population(rng, n):
    """Accounts of about n/2 persons: second accounts (same name and birth year, the email in
    other case or the same phone), a shop phone and a shared mailbox among a few strangers."""
    rows = []
    for i in range(n):
        person = i // 2 if rng.random() < 0.4 else 1000 + i
        name, year = f"Person {person}", 1950 + person % 50
        email = rng.choice([f"p{person}@example.com", f"P{person}@Example.com ", f"p{person}.{i}@mail.example", "shared@example.com"])
        phone = rng.choice([f"09{person:08d}", None, "0223456789"])
        rows.append((f"a{i:03d}", email, phone, name, year, False))
    return rows


def test_growing_the_map_gives_the_full_rebuild_under_profile_changes_new_accounts_and_links(spark):
    rng = random.Random(11)
    old_accounts = population(rng, 120)
    old_links = sorted({(f"c{rng.randrange(150):03d}", f"a{rng.randrange(120):03d}") for _ in range(90)})
    # Emails and phones changed (a key reaching or leaving max_per_key), new accounts, new links (a shared computer).
    moved = {a for a, *_ in rng.sample(old_accounts, 15)}
    new_accounts = [(a, rng.choice(["shared@example.com", f"x{a}@mail.example", e]), rng.choice([p, "0223456789"]), n, y, x) if a in moved else (a, e, p, n, y, x)
                    for a, e, p, n, y, x in old_accounts]
    new_accounts += population(random.Random(3), 130)[120:]
    new_links = sorted(set(old_links) | {(f"c{rng.randrange(160):03d}", f"a{rng.randrange(130):03d}") for _ in range(20)})
    previous, rebuilt, grown = grown_and_rebuilt(spark, old_accounts, new_accounts, old_links, new_links)
    assert grown == rebuilt
    unchanged = [k for k in previous if k in grown and grown[k] == previous[k]]
    assert len(unchanged) > len(previous) / 2   # persons no change reached keep their ids


def test_a_mailbox_one_account_leaves_becomes_the_other_persons_own(spark):
    old = [("A1", "family@example.com", None, "Mary Chen", 1975, False), ("A2", "family@example.com", None, "Tom Chen", 2004, False)]
    new = [old[0], ("A2", "tom@example.com", None, "Tom Chen", 2004, False)]
    previous, rebuilt, grown = grown_and_rebuilt(spark, old, new, [], [])
    assert not [k for k in previous if k[0] == "email_sha256"]          # shared: nobody's
    assert grown == rebuilt
    assert len([k for k in grown if k[0] == "email_sha256"]) == 2 and grown[("account_id", "A1")] == previous[("account_id", "A1")]


def test_blocks_pair_a_typo_by_its_letters_and_a_name_by_its_birth_year(spark):
    profiles = match_profiles(spark.createDataFrame([("A1", "john@x.com", None, "Ann", 1990, False), ("A2", "jonh@x.com", None, "Bo", None, False)], ACCOUNT_SCHEMA), "TW")
    found = blocks(profiles, spark.createDataFrame([], LINK_SCHEMA)).collect()
    kinds = {(r["account_id"], r["block"].split(":")[0]) for r in found}
    assert ("A1", "name_birth_year") in kinds and ("A2", "name_birth_year") not in kinds   # no birth year, no such block
    letters = {r["block"] for r in found if r["block"].startswith("email_letters")}
    assert len(letters) == 1   # john and jonh: the same letters at the same domain


def test_the_blocks_are_sorted_once_for_their_sizes_and_their_pairs(spark):
    """The blocks are sorted once, by their hash first: both windows by block (its holders
    counted, then listed) share that shuffle and sort, and the pairs' grouping is the plan's
    only other shuffle."""
    from crmlake.organize.matching import candidate_pairs, sized_blocks

    memberships = spark.createDataFrame([("A1", "email_sha256:x"), ("A2", "email_sha256:x"), ("A2", "phone_sha256:y")], "account_id string, block string")
    pairs = candidate_pairs(sized_blocks(memberships), 20)
    plan = pairs._jdf.queryExecution().executedPlan().toString()
    operators = re.findall(r"^[\s:+|-]*(\w+)", plan, re.M)
    assert (operators.count("Window"), operators.count("Sort"), operators.count("Exchange")) == (2, 1, 2)
    assert re.search(r"Sort \[_block_hash#\d+L ASC NULLS FIRST, block#", plan)
    assert [(r["account_a"], r["account_b"], r["shared_blocks"]) for r in pairs.collect()] == [("A1", "A2", ["email_sha256"])]


def test_an_account_touched_without_a_profile_or_a_link_stays_out_of_the_grown_map(spark):
    # An erased account that a later unsubscribe names: touched, but no person's account.
    accounts = [("A1", "ann@example.com", None, "Ann Wu", 1990, False), ("A2", "ann@example.com", None, "Ann Wu", 1990, False)]
    previous, rebuilt, grown = grown_and_rebuilt(spark, accounts, accounts, [], [], also_touched=["A0_erased"])
    assert grown == rebuilt and ("account_id", "A0_erased") not in grown
    assert grown[("account_id", "A1")] == previous[("account_id", "A1")]


def moves(spark, previous, now, history=(), reached=None, run_date=dt.date(2026, 11, 21)):
    """Return persons_left as {(account, person left): (from_date, to_date)}."""
    from crmlake.organize.persons import persons_left

    frames = [spark.createDataFrame(list(rows), MAP_SCHEMA) for rows in (previous, now)]
    recorded = spark.createDataFrame(list(history), "account_id string, person_id string, from_date date, to_date date")
    persons = None if reached is None else spark.createDataFrame([(p,) for p in reached], "person_id string")
    return {(r["account_id"], r["person_id"]): (r["from_date"], r["to_date"]) for r in persons_left(*frames, recorded, run_date, persons).collect()}


def test_an_account_split_off_leaves_its_person_from_before_any_recorded_move_to_the_run_date(spark):
    previous = [("account_id", "A1", "P1"), ("account_id", "A2", "P1"), ("email_sha256", "h", "P1"), ("account_id", "A3", "P3")]
    now = [("account_id", "A1", "P1"), ("account_id", "A2", "Q2"), ("email_sha256", "h", "Q2"), ("account_id", "A4", "P4")]
    # A2 left P1; A1 stayed; A3 (erased: not in the new map) left no one; A4 is new.
    assert moves(spark, previous, now) == {("A2", "P1"): (None, dt.date(2026, 11, 21))}


def test_an_account_leaving_a_person_it_joined_by_a_recorded_move_held_it_from_that_day_and_a_rerun_finds_the_same(spark):
    # A2 left P0 for P1 on Nov 10 (merged into P1), and now leaves P1.
    previous, now = [("account_id", "A1", "P1"), ("account_id", "A2", "P1")], [("account_id", "A1", "P1"), ("account_id", "A2", "Q2")]
    history = [("A2", "P0", None, dt.date(2026, 11, 10))]
    expected = {("A2", "P1"): (dt.date(2026, 11, 10), dt.date(2026, 11, 21))}
    assert moves(spark, previous, now, history) == expected
    # A run killed after writing this row, rerun the same day, compares the same maps: the same row (merged by its keys: once).
    assert moves(spark, previous, now, [*history, ("A2", "P1", dt.date(2026, 11, 10), dt.date(2026, 11, 21))]) == expected


def test_a_grown_map_compares_only_the_accounts_of_the_persons_it_recomputed(spark):
    previous = [("account_id", "A1", "P1"), ("account_id", "A2", "P1"), ("account_id", "A5", "P5")]
    now = [("account_id", "A1", "P1"), ("account_id", "A2", "Q2"), ("account_id", "A5", "P6")]
    assert moves(spark, previous, now, reached=["P1"]) == {("A2", "P1"): (None, dt.date(2026, 11, 21))}


def test_a_stored_phone_hash_is_kept_and_only_rows_without_one_are_parsed(spark):
    import hashlib

    from crmlake.people import with_phone_sha256

    rows = [("A1", "0911 111 111", "stored-by-the-customers-step"), ("A2", "0922-222-222", None), ("A3", None, None), ("A4", "not a phone", None)]
    stored = {r["account_id"]: r["phone_sha256"] for r in with_phone_sha256(spark.createDataFrame(rows, "account_id string, phone string, phone_sha256 string"), "TW").collect()}
    assert stored == {"A1": "stored-by-the-customers-step", "A2": hashlib.sha256(b"+886922222222").hexdigest(), "A3": None, "A4": None}
    # Without the column (a hand-built frame, a table written before it was declared) every phone is parsed.
    parsed = with_phone_sha256(spark.createDataFrame([r[:2] for r in rows], "account_id string, phone string"), "TW").collect()
    assert {r["account_id"]: r["phone_sha256"] for r in parsed}["A1"] == hashlib.sha256(b"+886911111111").hexdigest()
    # Matching reads the stored hash: the phone's node is the one the customers step computed.
    profiles = match_profiles(spark.createDataFrame([(*rows[0], "ann@example.com", "Ann", 1990, False)],
                                                    "account_id string, phone string, phone_sha256 string, email string, name string, birth_year int, erased boolean"), "TW")
    assert profiles.first()["phone_key"] == "phone_sha256:stored-by-the-customers-step"


def test_a_name_or_mailbox_mistyped_is_near_and_other_differences_differ(spark):
    """Near: one letter added, dropped or changed between texts without digits, or two
    adjacent letters swapped where neither is a digit; anything else differs."""
    from crmlake.organize.matching import comparison_levels

    cases = [("john lee", "jonh lee", "near"), ("li", "il", "near"), ("chen", "cehn", "near"), ("ann", "anne", "near"), ("ann", "amn", "near"),
             ("x1ab", "x1ba", "near"), ("member12", "member21", "differ"), ("member1", "member2", "differ"), ("abcd", "cbad", "differ"),
             ("abc", "bca", "differ"), ("ab", "abcd", "differ")]
    accounts = [row for i, (a, b, _) in enumerate(cases) for row in ((f"A{i}", f"{a.replace(' ', '.')}@x.com", None, a, None, False),
                                                                     (f"B{i}", f"{b.replace(' ', '.')}@x.com", None, b, None, False))]
    profiles = match_profiles(spark.createDataFrame(accounts, ACCOUNT_SCHEMA), "TW")
    pairs = spark.createDataFrame([(f"A{i}", f"B{i}", []) for i in range(len(cases))], "account_a string, account_b string, shared_blocks array<string>")
    levels = {r["account_a"]: (r["name"], r["email"]) for r in comparison_levels(pairs, profiles).collect()}
    assert [levels[f"A{i}"] for i in range(len(cases))] == [(want, want) for _, _, want in cases]
