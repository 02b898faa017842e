"""Who a record belongs to: normalised contact keys and the person behind an account or cookie.

Shared by the stages that read ``silver.identity_map`` (organize writes it; analyze and
decide join it), so that the identifier types, the normalisation of email and phone and
the join to a person are defined once.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from crmlake.lake.frames import maybe_broadcast

# What makes identity hard, as the generator plants it (crmlake.generate.members.identity_truth) and
# crmlake.organize.identity_truth scores it: causes making one person look like two ...
SPLITTING_CAUSES = ("second_account", "typo_email", "shared_device")
# ... and two persons look like one.
MERGING_CAUSES = ("household", "family_mailbox", "shop_phone", "placeholder_email", "placeholder_phone", "recycled_phone")

# identifier_type values of silver.identity_map
ACCOUNT = "account_id"
COOKIE = "anonymous_id"
EMAIL = "email_sha256"
PHONE = "phone_sha256"


def normalised_email(email: Column) -> Column:
    """Return the email trimmed and lower-cased (null when blank): how accounts are matched."""
    cleaned = F.lower(F.trim(email))
    return F.when(cleaned != "", cleaned)


def sha256_hex(value: Column) -> Column:
    """Return the lower-case hex SHA-256 of a string column (null stays null)."""
    return F.when(value.isNotNull(), F.sha2(value, 256))


def e164_phone(phone: Column, default_region: str) -> Column:
    """Return the phone in E.164 (``+886912345678``), parsed in any common format with
    ``default_region`` for numbers without a country code; null when it is not a valid number."""

    @pandas_udf("string")
    def to_e164(numbers: pd.Series) -> pd.Series:
        import phonenumbers

        def one(number):
            if number is None or not str(number).strip():
                return None
            try:
                parsed = phonenumbers.parse(str(number), default_region)
            except phonenumbers.NumberParseException:
                return None
            if not phonenumbers.is_valid_number(parsed):
                return None
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

        return numbers.map(one)

    return to_e164(phone)


def with_phone_sha256(accounts: DataFrame, default_region: str) -> DataFrame:
    """Return ``accounts`` (account rows with ``phone``) with ``phone_sha256``: the SHA-256 of
    the phone in E.164 (:func:`e164_phone`; null when none is valid). Parsing a phone is the
    dear part of matching, so silver.customers keeps the hash, computed once when a profile
    changes: a row that holds one keeps it, and only rows without (a frame without the column,
    rows written before it was declared, an invalid number) are parsed, in Spark, each run."""
    parsed = sha256_hex(e164_phone(F.col("phone"), default_region))
    if PHONE not in accounts.columns:
        return accounts.withColumn(PHONE, parsed)
    unparsed = F.col(PHONE).isNull() & F.col("phone").isNotNull()
    return accounts.where(~unparsed).unionByName(accounts.where(unparsed).withColumn(PHONE, parsed))


def with_person_id(df: DataFrame, identity_map: DataFrame, *identifiers: tuple[str, Column]) -> DataFrame:
    """Add ``person_id`` to ``df``: the person of the first of ``identifiers`` that the map knows.

    Takes any frame, ``silver.identity_map`` (identifier_type, identifier, person_id) and
    (identifier_type, column) pairs in order of preference; rows with no known identifier
    get a null person_id.
    """
    out = df.withColumn("person_id", F.lit(None).cast("string"))
    for n, (identifier_type, identifier) in enumerate(identifiers):
        people = identity_map.where(F.col("identifier_type") == identifier_type).select(
            F.col("identifier").alias(f"_identifier{n}"), F.col("person_id").alias(f"_person{n}")
        )
        out = (
            out.withColumn(f"_identifier{n}", identifier)
            .join(people, f"_identifier{n}", "left")
            .withColumn("person_id", F.coalesce("person_id", f"_person{n}"))
            .drop(f"_identifier{n}", f"_person{n}")
        )
    return out


def rows_holding(rows: DataFrame, identifiers: DataFrame, *columns: tuple[str, Column], broadcast: bool = False) -> DataFrame:
    """Return the rows of ``rows`` where any of ``columns`` ((identifier_type, column) pairs)
    holds one of ``identifiers`` (identifier_type, identifier; each once, as in
    ``silver.identity_map``). With ``broadcast`` the identifiers are sent whole to every task,
    so ``rows`` are filtered where they are read, without a shuffle."""
    hit = F.lit(False)
    for n, (identifier_type, identifier) in enumerate(columns):
        wanted = identifiers.where(F.col("identifier_type") == identifier_type).select(
            F.col("identifier").alias(f"_held{n}"), F.lit(True).alias(f"_hit{n}")
        )
        rows = rows.withColumn(f"_held{n}", identifier).join(maybe_broadcast(wanted, broadcast), f"_held{n}", "left")
        hit = hit | F.col(f"_hit{n}").isNotNull()
    return rows.where(hit).drop(*[f"_{part}{n}" for n in range(len(columns)) for part in ("held", "hit")])


def with_order_person_id(order_lines: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Add ``person_id`` to order lines: through the account, or for a guest checkout through
    the SHA-256 of the guest email (linked to the account that holds that email)."""
    return with_person_id(
        order_lines, identity_map, (ACCOUNT, F.col("account_id")), (EMAIL, sha256_hex(normalised_email(F.col("guest_email"))))
    )


def referrals(accounts: DataFrame, buyers: DataFrame) -> DataFrame:
    """Return (referrer_person_id, person_id, bought), once per pair: the members another person
    referred (an account's ``referred_by``) and whether they bought.

    Takes accounts carrying ``person_id`` and ``referred_by`` (the referrer's account id, as
    silver.customers holds it) and ``buyers`` (person_id, once each: the persons with a completed
    order). A member referred by an account of their own person, or by an account no person
    holds, is no one's referral.
    """
    referrer = accounts.select(F.col("account_id").alias("referred_by"), F.col("person_id").alias("referrer_person_id"))
    pairs = accounts.where(F.col("referred_by").isNotNull()).join(referrer, "referred_by").where(F.col("referrer_person_id") != F.col("person_id"))
    bought = buyers.select("person_id", F.lit(True).alias("bought"))
    return pairs.select("referrer_person_id", "person_id").distinct().join(bought, "person_id", "left").select(
        "referrer_person_id", "person_id", F.coalesce("bought", F.lit(False)).alias("bought")
    )


def with_session_person_id(sessions: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Add ``person_id`` to sessions with tracking consent: through the logged-in account, else
    the cookie; a session without tracking consent gets a null person_id, whatever its cookie.

    Takes silver sessions (anonymous_id, tracking_consent, account_id). Sessions' ``account_id``
    is only set on consented sessions, and the identity map holds only cookies linked with
    consent, so a visitor who refused is never a person here.
    """
    consented = F.coalesce(F.col("tracking_consent"), F.lit(False))
    return with_person_id(
        sessions, identity_map, (ACCOUNT, F.when(consented, F.col("account_id"))), (COOKIE, F.when(consented, F.col("anonymous_id")))
    )
