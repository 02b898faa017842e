"""Which accounts are one person: candidate pairs, the evidence of each, Fellegi–Sunter weights.

Sharing an email, a phone or a computer is evidence, not proof (households share computers
and sometimes a family mailbox, shops type their own phone, placeholders are typed for
many, numbers are recycled). So accounts are not unioned on a shared key: each *pair* of
accounts that might be one person is compared field by field and its evidence weighed.

* **Candidate pairs** come from blocks: accounts sharing a normalised email, a phone, a
  consented cookie, a name with a birth year, or an email whose local part has the same
  letters at the same domain (``jonh.lee@`` beside ``john.lee@``). A block held by more than
  ``max_accounts_per_key`` accounts (a placeholder, a shop's number, a public computer) pairs
  nobody; an email or phone held that widely is no evidence either way (its level is null).
* **Comparison levels** per pair (:func:`comparison_levels`): email exact / near (same domain,
  the local part mistyped: two adjacent letters swapped, or one character off between texts
  without digits) / differ; phone exact / differ; name exact / near (mistyped, likewise) /
  differ (after trimming, case and inner spaces); birth year exact / within one / differ; device
  shared / none. A field missing on either side is null and weighs nothing.
* **Weights** (:func:`estimate_weights`): for each level, ``m`` (its share among pairs of
  one person) and ``u`` (among pairs of two). ``u`` is counted on random pairs of accounts,
  ``m`` and the share of matches among candidate pairs are estimated by expectation
  maximisation over the candidate pairs' level patterns, as Splink trains a model. A level's
  weight is ``log2(m / u)``; a pair's match weight is the prior's plus its levels', its match
  probability ``2^w / (1 + 2^w)``. With fewer candidate pairs than ``min_pairs_to_estimate``
  the conf's prior ``m`` and ``u`` are used as they are.
* **Decision** (:func:`decided_pairs`): a pair is linked when its probability reaches
  ``link_min_probability``, its names, both given, do not disagree (a name that disagrees
  vetoes: contact evidence shared with a household member never outweighs it) and it shares
  a contact (an email, exact or near, a phone or a computer: a name and birth year alone are
  a namesake's too). Every
  candidate pair keeps its levels, weight and decision: ``silver.identity_pairs`` says why
  each account joined its person.

Values compared are the accounts' *current* profile (silver.customers): a phone or email an
account gave up is no evidence about its next holder, for or against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from crmlake.config import ConfigError
from crmlake.config_schema import MatchWeights
from crmlake.lake.frames import hash_column, hash_keyed
from crmlake.people import COOKIE, EMAIL, PHONE, normalised_email, sha256_hex, with_phone_sha256

# Comparison -> its levels, in order (null: a side is missing, no weight).
LEVELS = {
    "email": ("exact", "near", "differ"),
    "phone": ("exact", "differ"),
    "name": ("exact", "near", "differ"),
    "birth_year": ("exact", "near", "differ"),
    "device": ("shared", "none"),
}
NAME_BLOCK, TYPO_BLOCK = "name_birth_year", "email_letters"
# Every kind of block :func:`blocks` makes, in order: a pair's kinds are gathered as one bit each
# (a hash aggregate; a set of strings is gathered by sorting every pair) and read back in order.
BLOCK_KINDS = tuple(sorted((COOKIE, EMAIL, PHONE, NAME_BLOCK, TYPO_BLOCK)))
LINKED, VETOED, TOO_LITTLE = "linked", "name disagrees", "too little evidence"


@dataclass(frozen=True)
class Weights:
    """A fitted Fellegi–Sunter model: ``m`` and ``u`` per (comparison, level), the prior
    share of matches among candidate pairs, how it was estimated and from how many pairs."""

    m: dict
    u: dict
    prior: float
    method: str
    pairs: int

    def level_weight(self, comparison: str, level: str) -> float:
        """Return ``log2(m / u)`` of ``level`` of ``comparison``."""
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    @property
    def prior_weight(self) -> float:
        """Return ``log2(prior / (1 - prior))``, the match weight of a pair with no evidence."""
        return math.log2(self.prior / (1 - self.prior))

    def rows(self) -> list[tuple]:
        """Return (comparison, level, m, u, weight) per level, as silver.identity_weights holds them."""
        return [(c, lv, self.m[c][lv], self.u[c][lv], self.level_weight(c, lv)) for c, levels in LEVELS.items() for lv in levels]

    @classmethod
    def from_rows(cls, rows: list, prior: float, method: str, pairs: int) -> "Weights":
        """Return the weights of ``rows`` (dicts with comparison, level, m, u)."""
        m, u = {c: {} for c in LEVELS}, {c: {} for c in LEVELS}
        for r in rows:
            m[r["comparison"]][r["level"]], u[r["comparison"]][r["level"]] = r["m"], r["u"]
        return cls(m, u, prior, method, pairs)


def prior_weights(section: MatchWeights) -> Weights:
    """Return the conf's prior weights (``organize.identity.weights``: prior, m and u per
    comparison and level); raise ConfigError naming a comparison whose levels are not
    exactly those of :data:`LEVELS`."""
    for name in ("m", "u"):
        for comparison, levels in LEVELS.items():
            given = getattr(section, name).get(comparison, {})
            if set(given) != set(levels):
                raise ConfigError(f"organize.identity.weights.{name}.{comparison}: give a share for each of {list(levels)}, got {sorted(given)}")
    return Weights(section.m, section.u, section.prior, "prior", 0)


def match_profiles(accounts: DataFrame, default_phone_region: str) -> DataFrame:
    """Return the fields compared, one row per live account of ``accounts`` (silver customers:
    account_id, email, phone, name, birth_year, erased, and the phone's hash ``phone_sha256``
    where stored: :func:`~crmlake.people.with_phone_sha256`): account_id, email_key (the
    identity map's node of the normalised email), email_local, email_domain, phone_key, name_key
    (trimmed, lower case, single spaces) and birth_year."""
    email = normalised_email(F.col("email"))
    name = F.regexp_replace(F.lower(F.trim(F.col("name"))), r"\s+", " ")
    return with_phone_sha256(accounts.where(~F.col("erased")), default_phone_region).select(
        "account_id",
        F.concat(F.lit(EMAIL + ":"), sha256_hex(email)).alias("email_key"),
        F.substring_index(email, "@", 1).alias("email_local"),
        F.when(email.contains("@"), F.substring_index(email, "@", -1)).alias("email_domain"),
        F.concat(F.lit(PHONE + ":"), F.col(PHONE)).alias("phone_key"),
        F.when(name != "", name).alias("name_key"),
        F.col("birth_year").cast("int").alias("birth_year"),
    )


def blocks(profiles: DataFrame, links: DataFrame) -> DataFrame:
    """Return ``(account_id, block)``: each account of ``profiles`` (:func:`match_profiles`) in
    each block it belongs to, and each account of ``links`` (silver identity links:
    anonymous_id, account_id, consented) in its cookies' blocks. Email, phone and cookie blocks
    are the identity map's nodes of those identifiers (:func:`identifier_blocks`); the name +
    birth year and the email letters blocks are hashes that only pair accounts."""
    letters = _letters(F.col("email_local"))
    keyed = profiles.select(
        "account_id",
        F.explode(F.array(
            F.when(F.col("name_key").isNotNull() & F.col("birth_year").isNotNull(),
                   F.concat(F.lit(NAME_BLOCK + ":"), F.sha2(F.concat_ws("|", "name_key", "birth_year"), 256))),
            F.when(F.col("email_domain").isNotNull(), F.concat(F.lit(TYPO_BLOCK + ":"), F.sha2(F.concat_ws("|", "email_domain", letters), 256))),
        )).alias("block"),
    )
    return identifier_blocks(profiles, links).unionByName(keyed.where(F.col("block").isNotNull()))


def identifier_blocks(profiles: DataFrame, links: DataFrame) -> DataFrame:
    """Return ``(account_id, block)``: the blocks of :func:`blocks` that are identity-map nodes,
    each account's email and phone and each linked cookie: read from the profiles and links as
    they are (no hash to compute)."""
    keyed = profiles.select("account_id", F.explode(F.array("email_key", "phone_key")).alias("block"))
    cookies = links.select("account_id", F.concat(F.lit(COOKIE + ":"), F.col("anonymous_id")).alias("block"))
    # Distinct already: each kind of block once per account, and the links are keyed by cookie and account.
    return keyed.where(F.col("block").isNotNull()).unionByName(cookies)


def sized_blocks(memberships: DataFrame) -> DataFrame:
    """Return ``memberships`` (account_id, block) with ``holders``: how many accounts of
    ``memberships`` are in the row's block, and ``_block_hash``: one shuffle and one sort, by
    the block's hash then the block (:func:`~crmlake.lake.frames.hash_keyed`), which
    :func:`candidate_pairs` reuses."""
    keyed, by_block = hash_keyed(memberships, "block")
    return keyed.withColumn("holders", F.count(F.lit(1)).over(Window.partitionBy(*by_block)))


def candidate_pairs(sized: DataFrame, max_accounts_per_key: int, touched: DataFrame | None = None) -> DataFrame:
    """Return ``(account_a, account_b, shared_blocks)``, account_a < account_b: the pairs of
    accounts sharing a block of ``sized`` (:func:`sized_blocks` of every account holding the
    blocks) held by at most ``max_accounts_per_key`` accounts, with the kinds of block they
    share (``email_sha256``, ``anonymous_id``...). With ``touched`` (account_id), only pairs
    with a touched end."""
    small = sized.where((F.col("holders") >= 2) & (F.col("holders") <= max_accounts_per_key))
    # Each holder of a small block pairs with the larger holders of the block. A second window
    # over the partitions and order ``sized`` already has: no self-join (which would shuffle,
    # or sort and count, the blocks twice), and a list never longer than max_accounts_per_key.
    holders = small.withColumn("_holders", F.collect_list("account_id").over(Window.partitionBy(hash_column("block"), "block")))  # sized_blocks' keys
    pairs = holders.select(F.col("account_id").alias("account_a"), F.explode("_holders").alias("account_b"), "block").where(F.col("account_a") < F.col("account_b"))
    if touched is not None:
        ids = touched.select("account_id")
        pairs = pairs.join(ids.withColumnRenamed("account_id", "account_a"), "account_a", "left_semi").unionByName(
            pairs.join(ids.withColumnRenamed("account_id", "account_b"), "account_b", "left_semi")
        )
    bit = F.create_map(*[x for i, kind in enumerate(BLOCK_KINDS) for x in (F.lit(kind), F.lit(1 << i))])[F.substring_index("block", ":", 1)]
    kinds = pairs.groupBy("account_a", "account_b").agg(F.bit_or(F.coalesce(bit, F.raise_error("a block of a kind not in BLOCK_KINDS"))).alias("_kinds"))
    return kinds.select("account_a", "account_b", F.array_compact(F.array(*[
        F.when(F.col("_kinds").bitwiseAND(1 << i) != 0, F.lit(kind)) for i, kind in enumerate(BLOCK_KINDS)
    ])).alias("shared_blocks"))


def comparison_levels(pairs: DataFrame, profiles: DataFrame) -> DataFrame:
    """Return ``pairs`` (account_a, account_b, shared_blocks: :func:`candidate_pairs`) with one
    level column per comparison of :data:`LEVELS` (null when a side is missing), from
    ``profiles`` (:func:`match_profiles`) of both accounts. An email or phone both accounts
    hold that is not among their shared blocks was held by more than ``max_accounts_per_key``
    accounts (a placeholder): it is no evidence, null."""
    def side(suffix: str) -> DataFrame:
        return profiles.select(*[F.col(c).alias(f"{c}_{suffix}") for c in profiles.columns])

    joined = pairs.join(side("a"), F.col("account_a") == F.col("account_id_a")).join(side("b"), F.col("account_b") == F.col("account_id_b"))

    def level(a: str, b: str, *rules: tuple[Column, str]) -> Column:
        out = F.when(F.col(a).isNull() | F.col(b).isNull(), F.lit(None).cast("string"))
        for condition, name in rules:
            out = out.when(condition, name)
        return out.otherwise("differ")

    same = lambda c: F.col(f"{c}_a") == F.col(f"{c}_b")  # noqa: E731
    email_common = same("email_key") & ~F.array_contains("shared_blocks", EMAIL)
    phone_common = same("phone_key") & ~F.array_contains("shared_blocks", PHONE)
    near_email = same("email_domain") & _typed_for(F.col("email_local_a"), F.col("email_local_b"))
    return joined.select(
        "account_a",
        "account_b",
        "shared_blocks",
        F.when(~email_common, level("email_key_a", "email_key_b", (same("email_key"), "exact"), (near_email, "near"))).alias("email"),
        F.when(~phone_common, level("phone_key_a", "phone_key_b", (same("phone_key"), "exact"))).alias("phone"),
        level("name_key_a", "name_key_b", (same("name_key"), "exact"), (_typed_for(F.col("name_key_a"), F.col("name_key_b")), "near")).alias("name"),
        level("birth_year_a", "birth_year_b", (same("birth_year"), "exact"), (F.abs(F.col("birth_year_a") - F.col("birth_year_b")) <= 1, "near")).alias("birth_year"),
        F.when(F.array_contains("shared_blocks", COOKIE), "shared").otherwise("none").alias("device"),
    )


def _letters(text: Column) -> Column:
    """The letters of ``text`` in sorted order: two texts with the same are one typed with letters swapped."""
    # sort_array, not array_sort: the same order for letters (never null), compiled rather than a lambda per element.
    return F.array_join(F.sort_array(F.split(text, "")), "")


def _swapped(a: Column, b: Column) -> Column:
    """Whether ``b`` is ``a`` with two adjacent letters swapped (``jonh`` for ``john``)."""
    # One lambda over the positions, each building ``a`` with the letters at i and i + 1 swapped:
    # it appears once in the expression, so it runs once per pair. (A list of the differing
    # positions, read for the first and the second position four times each, ran up to nine
    # times: on the bench's 258k candidate pairs the email and name levels took 1.74 and 1.24 s,
    # now 1.40 and 1.08 s.)
    def swapped_at(i: Column) -> Column:
        return F.concat(F.substring(a, 1, i - 1), F.substring(a, i + 1, 1), F.substring(a, i, 1), F.substring(a, i + 2, F.length(a)))

    # Two texts differing in digits alone are no swap of letters: told without the lambda.
    digitless = lambda text: F.regexp_replace(text, "[0-9]", "")  # noqa: E731
    return (
        (F.length(a) == F.length(b)) & (F.length(a) >= 2) & (digitless(a) != digitless(b))
        & F.exists(F.sequence(F.lit(1), F.length(a) - 1), lambda i: (swapped_at(i) == b) & ~F.substring(a, i, 2).rlike("[0-9]"))
    )


def _typed_for(a: Column, b: Column) -> Column:
    """Whether ``b`` is ``a`` mistyped: two adjacent letters swapped, or, between texts
    without digits, one character added, dropped or changed. Numbers differing by a digit
    (``member12``, ``member21``) are other people's, not typos."""
    no_digits = ~a.rlike("[0-9]") & ~b.rlike("[0-9]")
    # Levenshtein bounded at 2 (-1 beyond): a swap of two letters is two edits, and the swap's
    # test, a lambda per letter, runs only on the pairs within two edits of each other.
    edits = F.levenshtein(a, b, 2)
    return ((edits == 1) & no_digits) | ((edits == 2) & _swapped(a, b))


def random_pairs(profiles: DataFrame, wanted: int, accounts: int, seed: int) -> DataFrame:
    """Return about ``wanted`` random pairs of distinct accounts of ``profiles`` (``accounts``
    rows), as ``(account_a, account_b, shared_blocks)`` with no shared block (an email or phone
    two random accounts share weighs as a placeholder's: nothing): two hashes of the
    account id put each account in one of ``accounts^2 / wanted`` buckets twice, and accounts
    sharing a bucket pair up (one shuffle, no sort, no single task)."""
    buckets = max(1, int(accounts * accounts / max(wanted, 1)))
    a = profiles.select(F.col("account_id").alias("account_a"), F.pmod(F.xxhash64("account_id", F.lit(seed)), F.lit(buckets)).alias("_bucket"))
    b = profiles.select(F.col("account_id").alias("account_b"), F.pmod(F.xxhash64("account_id", F.lit(seed + 1)), F.lit(buckets)).alias("_bucket"))
    return a.join(b, "_bucket").where(F.col("account_a") != F.col("account_b")).select(
        "account_a", "account_b", F.array().cast("array<string>").alias("shared_blocks")
    )


def level_patterns(levelled: DataFrame) -> list[tuple[tuple, int]]:
    """Return each distinct pattern of levels in ``levelled`` (:func:`comparison_levels`) with
    its count. Safe to collect: at most the product of the levels' counts (a few hundred)."""
    rows = levelled.groupBy(*LEVELS).agg(F.count(F.lit(1)).alias("n")).collect()
    return [(tuple(r[c] for c in LEVELS), int(r["n"])) for r in rows]


def level_shares(patterns: list[tuple[tuple, int]], smoothing: float = 1.0) -> dict:
    """Return each comparison's level shares over ``patterns`` (nulls left out), smoothed by
    ``smoothing`` pseudo-counts per level so that no share is zero: ``u`` from random pairs."""
    shares = {}
    for i, (comparison, levels) in enumerate(LEVELS.items()):
        counts = {lv: smoothing for lv in levels}
        for pattern, n in patterns:
            if pattern[i] is not None:
                counts[pattern[i]] += n
        total = sum(counts.values())
        shares[comparison] = {lv: c / total for lv, c in counts.items()}
    return shares


def expectation_maximisation(patterns: list[tuple[tuple, int]], u: dict, m: dict, prior: float, iterations: int, floor: float = 1e-4) -> tuple[dict, float]:
    """Return ``(m, prior)`` fitted to the candidate pairs' ``patterns`` by expectation
    maximisation with ``u`` held fixed, from the starting ``m`` and ``prior``: the E step gives
    each pattern its probability of being a match, the M step the level shares among matches
    and the share of matches. Each ``m`` is kept at least ``floor`` (a level never seen among
    matches stays possible)."""
    comparisons = list(LEVELS)
    total = sum(n for _, n in patterns) or 1
    for _ in range(iterations):
        counts = {c: {lv: 0.0 for lv in LEVELS[c]} for c in comparisons}
        matched = 0.0
        for pattern, n in patterns:
            p_match, p_other = prior, 1 - prior
            for c, lv in zip(comparisons, pattern):
                if lv is not None:
                    p_match *= m[c][lv]
                    p_other *= u[c][lv]
            posterior = p_match / (p_match + p_other) if p_match + p_other > 0 else 0.0
            matched += n * posterior
            for c, lv in zip(comparisons, pattern):
                if lv is not None:
                    counts[c][lv] += n * posterior
        prior = min(max(matched / total, 1e-6), 1 - 1e-6)
        m = {}
        for c in comparisons:
            seen = sum(counts[c].values())
            shares = {lv: (counts[c][lv] / seen if seen else 1 / len(LEVELS[c])) for lv in LEVELS[c]}
            floored = {lv: max(s, floor) for lv, s in shares.items()}
            m[c] = {lv: s / sum(floored.values()) for lv, s in floored.items()}
    return m, prior


def estimate_weights(levelled: DataFrame, random_levelled: DataFrame, priors: Weights, min_pairs: int, iterations: int) -> Weights:
    """Return the weights for the candidate pairs ``levelled`` and the random pairs
    ``random_levelled`` (both :func:`comparison_levels`): ``u`` from the random pairs, ``m``
    and the prior by :func:`expectation_maximisation` from the ``priors``
    (:func:`prior_weights`); or, with fewer than ``min_pairs`` candidate pairs, the priors as
    they are."""
    patterns = level_patterns(levelled)
    pairs = sum(n for _, n in patterns)
    if pairs < min_pairs:
        return Weights(priors.m, priors.u, priors.prior, "prior", pairs)
    u = level_shares(level_patterns(random_levelled))
    # No random pair shares a cookie: its share is the conf's, not a smoothed zero.
    u["device"] = dict(priors.u["device"])
    m, prior = expectation_maximisation(patterns, u, priors.m, priors.prior, iterations)
    return Weights(m, u, prior, "expectation maximisation", pairs)


def decided_pairs(levelled: DataFrame, weights: Weights, link_min_probability: float) -> DataFrame:
    """Return ``levelled`` (:func:`comparison_levels`) with ``match_weight`` (the prior's and
    the levels' weights), ``match_probability`` and ``decision``: ``linked`` when the
    probability reaches ``link_min_probability`` and the names, both given, do not disagree;
    ``name disagrees`` when they do; ``too little evidence`` otherwise."""
    weight = F.lit(weights.prior_weight)
    for comparison, levels in LEVELS.items():
        by_level = F.create_map(*[x for lv in levels for x in (F.lit(lv), F.lit(weights.level_weight(comparison, lv)))])
        weight = weight + F.coalesce(by_level[F.col(comparison)], F.lit(0.0))
    probability = F.lit(1.0) / (F.lit(1.0) + F.pow(F.lit(2.0), -F.col("match_weight")))
    contact = F.col("email").isin("exact", "near") | (F.col("phone") == "exact") | (F.col("device") == "shared")
    return (
        levelled.withColumn("match_weight", weight)
        .withColumn("match_probability", probability)
        .withColumn(
            "decision",
            F.when(F.col("name") == "differ", F.lit(VETOED))
            .when((F.col("match_probability") >= link_min_probability) & contact, F.lit(LINKED))
            .otherwise(F.lit(TOO_LITTLE)),
        )
    )
