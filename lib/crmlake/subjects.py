"""Who a data subject is, which rows of a table are theirs, and what subject access returns.

A subject is resolved once into their identifiers (:class:`Subject`): accounts, emails,
email and phone hashes, cookies, person ids, and the hashes the ad platforms' upload files
hold. Then every table is walked from the catalog (``lib/crmlake/catalog.yaml``): its
``subject`` rule says which of its columns hold which of those identifiers
(:func:`subject_condition`). Erasure (:mod:`crmlake.privacy`) and subject access
(:func:`subject_access`) have no code of their own per table, so a table is covered by both
as soon as its catalog entry is written; a table whose rule is ``none`` says why it holds no
one's rows.

The two requests resolve a subject differently. An erasure (:func:`subject_of`, one
account) takes every value the account ever held, shared or not: a family mailbox is the
subject's personal data too, so it goes wherever it appears. A computer is the exception:
its cookie is the subject's when they logged in on it and no other person's live account
ever did (the others who did were erased); one another person's live account logs in on
too (a household's) is kept, with the other's rows, and recorded as shared
(``silver.shared_identifiers``, by :mod:`crmlake.privacy`), so that no rebuild of the persons
attaches it to the one left and credits them with the subject's visits. Subject access
(:func:`person_subject`) returns one person's data and never a household member's: their
accounts, the emails and phones the identity map attaches to their person (values no one
else holds), and the cookies it attaches to them or their accounts logged in on, less any
another person's live account logged in on; in the rows it returns, an identifier that is
someone else's (the other account of a candidate pair, a colleague in a company, a shared
computer's cookie) is blanked.

Who logged in on a computer is read from every login, with tracking consent or without
(:func:`linked_cookies`): the identity links and the identity map see only consented ones, so
a household member who refused tracking would otherwise leave the computer looking like the
subject's alone, and their unconsented visits, found by cookie, would be returned to the
subject and erased with them. Account and cookie are not partition columns, so that costs
reads of the login columns of bronze.clickstream's whole history, a few per request
(:func:`_cookies_of`); requests are rare.

A person is not forever. When an account leaves a person (split off by new evidence, or
merged into another whose id survives), the rows scored for that person before hold the
account's data too: organize records each such move in ``silver.account_persons``, and both
requests take the persons the subject's accounts left (:attr:`Subject.earlier_persons`),
whose rows in a table dated by its partition (``score_date``, ``list_date``) are the
subject's when dated while the account held that person, from the day it joined it (or
ever, if before any recorded move) to the day before it left; rows scored after it left are
the others' alone and stay. An erasure amends the audience files published on those days
and the reports' person lists of those months the same way (:func:`crmlake.exports.persons_held`).

No value of the subject is ever written into SQL text: a table's rows are found by comparing
its columns with a one-row frame of the subject's values (:meth:`Subject.frame`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.csv_cells import safe_rows
from crmlake.exports import PLATFORM_FORMATS, platform_hashes
from crmlake.lake import Lake, TableSpec
from crmlake.people import ACCOUNT, COOKIE, EMAIL, PHONE, e164_phone, normalised_email, sha256_hex

# The subject's values by kind of identifier, as columns of Subject.frame.
SUBJECT_COLUMNS = {"account": "_subject_accounts", "person": "_subject_persons", "cookie": "_subject_cookies",
                   "email": "_subject_emails", "identifier": "_subject_identifiers"}
# The persons the subject's accounts left, each with the dates it held them: an array of (person_id, from_date, to_date).
EARLIER = "_subject_earlier"
ACCOUNT_PERSONS = "silver.account_persons"


@dataclass(frozen=True)
class Subject:
    """What identifies one data subject across the lake and the exports (small: one person)."""

    account_ids: tuple
    emails: tuple           # normalised (trimmed, lower case)
    email_hashes: tuple
    phone_hashes: tuple
    cookies: tuple          # anonymous ids of theirs alone: no other person's live account logs in on them, with tracking consent or not
    person_ids: tuple
    platform_hashes: tuple  # their email and phone hashed the way each ad platform's upload file has them
    shared_cookies: tuple = ()   # anonymous ids they logged in on that another person's live account logs in on too: kept, recorded as shared
    earlier_persons: tuple = ()  # (person_id, from_date or None, to_date) ISO dates: persons an account of theirs left, while it held them

    def frame(self, spark) -> DataFrame:
        """Return the subject as one row, the data the catalog's ``subject`` rules
        compare a table's columns with (:func:`subject_condition`): one column per kind of
        identifier (:data:`SUBJECT_COLUMNS`; identifiers: accounts, email and phone hashes,
        cookies), ``_subject_quoted`` (one regular expression finding any of their account ids
        and own cookies as a JSON line quotes them: :func:`json_string_pattern`; ``(?!)``, which
        finds nothing, when they have none), ``_subject_mailboxes`` (:func:`mailbox_pattern` of each
        email) and ``_subject_earlier`` (:attr:`earlier_persons`, their dates as dates)."""
        # An account id or a cookie of theirs alone as a JSON line holds it: a malformed logged-out
        # click holds only its cookie. Matched case and all: "C-ann" is another person's cookie.
        quoted = "|".join(json_string_pattern(value) for value in sorted({*self.account_ids, *self.cookies})) or "(?!)"
        mailboxes = [mailbox_pattern(email) for email in self.emails]
        identifiers = [*self.account_ids, *self.email_hashes, *self.phone_hashes, *self.cookies]
        values = {"account": self.account_ids, "person": self.person_ids, "cookie": self.cookies, "email": self.emails, "identifier": identifiers}
        day = lambda iso: dt.date.fromisoformat(iso) if iso else None  # noqa: E731
        earlier = [(person, day(joined), day(left)) for person, joined, left in self.earlier_persons]
        return spark.createDataFrame(
            [(*[list(values[kind]) for kind in SUBJECT_COLUMNS], quoted, mailboxes, earlier)],
            ", ".join(f"{column} array<string>" for column in SUBJECT_COLUMNS.values())
            + f", _subject_quoted string, _subject_mailboxes array<string>, {EARLIER} array<struct<person_id: string, from_date: date, to_date: date>>",
        )


# Characters JSON has a short escape for (a slash's is optional: PHP writes \/).
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _regex_literal(text: str) -> str:
    """``text`` as a Java regular expression matching it letter for letter: every ASCII sign escaped."""
    return "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in text)


def json_string_pattern(value: str) -> str:
    """Return a Java regular expression finding the string ``value`` as any JSON line may quote
    it, whole between its quotes, case and all: each character as it is, as its short escape
    (``\\"``, ``\\/``, ``\\n``...) or as ``\\u`` and four hex digits in either case. So every
    writer's choice is found, and any mix of them: non-ASCII escaped or not, HTML's signs and
    the apostrophe escaped (Go, Gson, PHP's ``JSON_HEX_*`` flags, upper-case hex beside
    lower-case), slashes as ``\\/`` (PHP)."""
    def forms(letter: str) -> str:
        units = letter.encode("utf-16-be").hex()
        escaped = "".join("\\\\u" + "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in units[i:i + 4]) for i in range(0, len(units), 4))
        short = [_regex_literal(SHORT_ESCAPES[letter])] if letter in SHORT_ESCAPES else []
        return "(?:" + "|".join([_regex_literal(letter), *short, escaped]) + ")"

    return '"' + "".join(forms(letter) for letter in value) + '"'


def mailbox_pattern(email: str) -> str:
    """Return a Java regular expression finding the normalised ``email`` (lower case) in a lower-cased
    text as a whole address: no letter of an address right before it (``joann@...`` is
    another mailbox than ``ann@...``) nor after it (``...@example.com.tw`` is another domain);
    a full stop ending a sentence may follow. Every ASCII sign in it is escaped: the address
    is data, matched letter for letter."""
    return rf"(?<![a-z0-9._%+-]){_regex_literal(email)}(?![a-z0-9_-]|\.[a-z0-9])"


def _is_array(spec: TableSpec, column: str) -> bool:
    return spec.columns[column].lower().startswith("array")


def _dated_by(spec: TableSpec) -> str | None:
    """The date a row of ``spec``'s table was computed for: its date partition column, if any."""
    return next((c for c in spec.partition_by if spec.columns[c] == "date"), None)


def _of_person(spec: TableSpec, value: Column) -> Column:
    """Column: True when ``value`` is one of the subject's persons, or (in a table dated by its
    partition) a person an account of theirs left, on a row dated while it held it."""
    current = F.array_contains(F.col(SUBJECT_COLUMNS["person"]), value)
    dated = _dated_by(spec)
    if dated is None:   # rewritten whole from the current map (silver.customer_360): no earlier person's rows
        return current
    day = F.col(dated)
    return current | F.exists(F.col(EARLIER), lambda held: (held["person_id"] == value) & (day < held["to_date"])
                              & (held["from_date"].isNull() | (day >= held["from_date"])))


def _holds(spec: TableSpec, column: str, kind: str) -> Column:
    """Column: True when ``column`` of ``spec``'s table holds one of the subject's identifiers of
    ``kind`` (for ``text``: mentions one), over the columns of :meth:`Subject.frame`."""
    value, accounts = F.col(column), F.col(SUBJECT_COLUMNS["account"])
    if kind == "account":
        return F.arrays_overlap(value, accounts) if _is_array(spec, column) else F.array_contains(accounts, value)
    if kind == "email":
        return F.array_contains(F.col(SUBJECT_COLUMNS["email"]), normalised_email(value))
    if kind == "cookie":   # a logged-in row is its account's, whoever's computer it was on
        logged_out = [F.col(c).isNull() for c, k in spec.subject_match.items() if k == "account" and not _is_array(spec, c)]
        return reduce(lambda a, b: a & b, logged_out, F.array_contains(F.col(SUBJECT_COLUMNS["cookie"]), value))
    if kind == "person":
        return _of_person(spec, value)
    if kind in SUBJECT_COLUMNS:   # identifier
        return F.array_contains(F.col(SUBJECT_COLUMNS[kind]), value)
    # text: a JSON line quotes one of the subject's accounts or own cookies, a line holds one of
    # their emails as a whole address in any case, or a CSV line holds one of their accounts as a field
    fields = F.transform(F.split(value, ","), lambda field: F.regexp_replace(F.regexp_replace(F.trim(field), '^"|"$', ""), '""', '"'))
    return (F.regexp_like(value, F.col("_subject_quoted"))
            | F.exists(F.col("_subject_mailboxes"), lambda mailbox: F.regexp_like(F.lower(value), mailbox))
            | F.arrays_overlap(fields, accounts))


def subject_condition(spec: TableSpec) -> Column:
    """Return the condition selecting the subject's rows of ``spec``'s table, over its columns
    and those of :meth:`Subject.frame`: a row matching any of the ``subject.match`` columns
    (each by what it holds), and the fixed ``subject.where`` condition when there is one."""
    condition = reduce(lambda a, b: a | b, [F.coalesce(_holds(spec, c, k), F.lit(False)) for c, k in spec.subject_match.items()])
    return condition & F.expr(spec.subject_where) if spec.subject_where else condition


def _as_returned(spec: TableSpec) -> list[Column]:
    """Return ``spec``'s columns as subject access returns them: in a ``subject.match`` column,
    a value that is not the subject's (the other account of a candidate pair, a colleague in a
    company, a shared computer's cookie) is blanked; free text is returned as it is."""
    def own(column: str, kind: str) -> Column:
        value = F.col(column)
        if kind == "text":
            return value
        if kind == "person":   # an earlier person of theirs is shown on the rows dated while they held it
            return F.when(_of_person(spec, value), value)
        theirs = F.col(SUBJECT_COLUMNS[kind])
        if _is_array(spec, column):
            return F.filter(value, lambda held: F.array_contains(theirs, held))
        return F.when(F.array_contains(theirs, normalised_email(value) if kind == "email" else value), value)

    return [own(c, spec.subject_match[c]).alias(c) if c in spec.subject_match else F.col(c) for c in spec.columns]


def _values(df: DataFrame, column: str) -> tuple:
    # Safe to collect: the distinct identifiers of one person.
    return tuple(sorted(r[0] for r in df.select(column).where(F.col(column).isNotNull()).distinct().collect()))


# Where a login (a cookie seen with an account) is read: the identity links hold only those with
# tracking consent; bronze.clickstream holds every logged-in click, consented or not.
LOGINS = ("silver.identity_links", "bronze.clickstream")


def _logins(lake: Lake, column: str, values: tuple) -> DataFrame:
    """Return ``anonymous_id, account_id``: the distinct logins whose ``column`` (``account_id``
    or ``anonymous_id``) is one of ``values`` (a few: one person's), from every table of
    :data:`LOGINS` that exists, whatever the click's tracking consent. A narrow read: two
    columns, filtered on the values as Column literals (never SQL text)."""
    frames = [
        lake.read(name).select("anonymous_id", "account_id").where(F.col("account_id").isNotNull() & F.col(column).isin(*values))
        for name in LOGINS if values and lake.exists(name)
    ]
    if not frames:
        return lake.spark.createDataFrame([], "anonymous_id string, account_id string")
    return reduce(DataFrame.unionByName, frames).distinct()


def logged_into_by_others(lake: Lake, cookies: tuple, accounts: tuple, persons: tuple = ()) -> tuple:
    """Return, of ``cookies`` (a few: one person's), those a live account logged in on
    (silver.identity_links or bronze.clickstream, with tracking consent or not) that is none of
    ``accounts`` and none of the accounts the identity map gives ``persons``: a computer shared
    with another person. An account with an erase request (bronze.customers) is not live."""
    holders = lake.spark.createDataFrame([(a,) for a in accounts], "account_id string")
    if persons and lake.exists("silver.identity_map"):
        person_accounts = lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & F.col("person_id").isin(*persons))
        holders = holders.unionByName(person_accounts.select(F.col("identifier").alias("account_id")))
    erased = lake.read_or_empty("bronze.customers").where(F.col("op") == "erase").select("account_id")
    others = _logins(lake, "anonymous_id", cookies).join(holders, "account_id", "left_anti").join(erased, "account_id", "left_anti")
    # Safe to collect: at most the cookies of one person.
    found = {r["anonymous_id"] for r in others.select("anonymous_id").distinct().collect()}
    return tuple(c for c in sorted(set(cookies)) if c in found)


def _cookies_of(lake: Lake, accounts: tuple, persons: tuple, attached: bool) -> tuple[tuple, tuple]:
    """Return ``(own, shared)``: the cookies ``accounts`` logged into (with tracking consent or
    not; with ``attached``, also those the identity map attaches to ``persons``), split into
    those no other person's live account ever logged into, and those one did, consented or not
    (:func:`logged_into_by_others`; the accounts of ``persons`` are not another person's).

    Reads silver.identity_links and bronze.clickstream twice (the logins of ``accounts``, then
    every login on their cookies), two columns of their whole history each time (account and
    cookie are not partition columns), with silver.identity_map and bronze.customers' erase
    requests: once per request (an erasure or a subject access), which is rare."""
    # Safe to collect: the cookies of one person.
    theirs = {r["anonymous_id"] for r in _logins(lake, "account_id", accounts).select("anonymous_id").distinct().collect()}
    if attached and persons and lake.exists("silver.identity_map"):
        attached_cookies = lake.read("silver.identity_map").where((F.col("identifier_type") == COOKIE) & F.col("person_id").isin(*persons))
        # Safe to collect: the cookies of one person.
        theirs |= {r["identifier"] for r in attached_cookies.select("identifier").distinct().collect()}
    cookies = tuple(sorted(theirs))
    shared = logged_into_by_others(lake, cookies, accounts, persons) if cookies else ()
    return tuple(c for c in cookies if c not in shared), shared


def linked_cookies(lake: Lake, account_id: str, persons: tuple) -> tuple[tuple, tuple]:
    """Return ``(own, shared)``: the cookies ``account_id`` logged into, with tracking consent
    (silver.identity_links) or without it (bronze.clickstream), split into those of its
    ``persons`` alone (no other live person's account ever logged into them: the others who did
    are erased, or accounts of ``persons``) and those another person's live account logged into
    too, consented or not (a computer shared with a household member: the identity map, which
    sees only consented logins, may attach it to ``persons`` all the same). An account with an
    erase request is not live. ``persons``: the persons the identity map gives ``account_id``.

    A login without consent counts both ways: another's makes a computer shared, so that the
    subject's erasure never deletes the other's unconsented visits by cookie; the subject's own
    makes a computer theirs when no other live person logged in there, so that their erasure
    takes their unconsented visits (and the last member to use a shared computer takes it)."""
    return _cookies_of(lake, (account_id,), persons, attached=False)


def earlier_persons(lake: Lake, accounts: tuple) -> tuple:
    """Return :attr:`Subject.earlier_persons` of ``accounts``: each person one of them left, with
    the dates it held it (from silver.account_persons)."""
    if not accounts or not lake.exists(ACCOUNT_PERSONS):
        return ()
    # Safe to collect: the moves of one person's accounts.
    rows = lake.read(ACCOUNT_PERSONS).where(F.col("account_id").isin(*accounts)).collect()
    held = {(r["person_id"], r["from_date"] and r["from_date"].isoformat(), r["to_date"].isoformat()) for r in rows}
    return tuple(sorted(held, key=lambda h: (h[0], h[1] or "", h[2])))


def subject_of(lake: Lake, account_id: str, default_phone_region: str) -> Subject:
    """Return the identifiers an erasure of ``account_id`` removes: its emails and phones (as
    held in bronze, any version, shared or not) with their hashes, the cookies it logged in on
    (with tracking consent or not) that are its person's alone (:func:`linked_cookies`), the
    persons the identity map gives it and those it left (:func:`earlier_persons`); and the
    cookies it shares with another person's live account, which stay."""
    profiles = lake.read("bronze.customers").where((F.col("account_id") == account_id) & (F.col("op") == "upsert"))
    uploaded = [hashed for platform_format in PLATFORM_FORMATS for hashed in platform_hashes(default_phone_region, platform_format)]
    # One scan of bronze.customers for every value (each platform hashes its own normalisation).
    # Safe to collect: one row, the distinct values of one account.
    held = profiles.agg(
        *[F.collect_set(column).alias(name) for name, column in (
            ("email", normalised_email(F.col("email"))),
            ("email_hash", sha256_hex(normalised_email(F.col("email")))),
            ("phone_hash", sha256_hex(e164_phone(F.col("phone"), default_phone_region))),
        )],
        *[F.collect_set(column).alias(f"_platform_{i}") for i, column in enumerate(uploaded)],
    ).first()
    persons = (
        _values(lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & (F.col("identifier") == account_id)), "person_id")
        if lake.exists("silver.identity_map") else ()
    )
    # A computer shared with a household member is not the subject's (the rows logged in on it are, by account).
    cookies, shared = linked_cookies(lake, account_id, persons)
    platform = {value for i in range(len(uploaded)) for value in held[f"_platform_{i}"]}
    return Subject((account_id,), tuple(sorted(held["email"])), tuple(sorted(held["email_hash"])), tuple(sorted(held["phone_hash"])), cookies, persons,
                   tuple(sorted(platform)), shared, earlier_persons(lake, (account_id,)))


def person_subject(lake: Lake, accounts: list[str]) -> Subject:
    """Return what subject access looks for of the person holding ``accounts``: the persons the
    identity map gives them, every account of those persons, the email and phone hashes the map
    attaches to them (held by no one else), with the emails behind those hashes, the persons
    those accounts left (:func:`earlier_persons`), and their cookies: those the map attaches to
    them or their accounts logged in on (with tracking consent or not), less any another
    person's live account logged in on, consented or not (:func:`_cookies_of`; the map sees
    only consented logins, so it may attach a household's computer to one member)."""
    nodes = []
    if lake.exists("silver.identity_map"):
        identity_map = lake.read("silver.identity_map")
        persons = identity_map.where((F.col("identifier_type") == ACCOUNT) & F.col("identifier").isin(*accounts)).select("person_id").distinct()
        # Safe to collect: the identifiers of one person.
        nodes = identity_map.join(persons, "person_id").collect()

    def of_type(identifier_type: str) -> tuple:
        return tuple(sorted({r["identifier"] for r in nodes if r["identifier_type"] == identifier_type}))

    account_ids, email_hashes = tuple(sorted({*accounts, *of_type(ACCOUNT)})), of_type(EMAIL)
    person_ids = tuple(sorted({r["person_id"] for r in nodes}))
    # Not the map's cookies alone: it sees only consented logins, so a computer another person
    # logged into without consent may be attached to this one.
    cookies, _ = _cookies_of(lake, account_ids, person_ids, attached=True)
    profiles = lake.read_or_empty("bronze.customers").where(F.col("account_id").isin(*account_ids) & (F.col("op") == "upsert"))
    emails = _values(profiles.select(normalised_email(F.col("email")).alias("email")).where(sha256_hex(F.col("email")).isin(*email_hashes)), "email") if email_hashes else ()
    return Subject(account_ids, emails, email_hashes, of_type(PHONE), cookies, person_ids, (), earlier_persons=earlier_persons(lake, account_ids))


class SharedMailboxError(ValueError):
    """An email held by the accounts of several persons (a family mailbox) names no one subject."""


def accounts_with_email(lake: Lake, email: str) -> list[str]:
    """Return the accounts whose profile (any version in bronze) holds ``email``, matched as
    the contract says: trimmed and case-insensitively."""
    wanted = normalised_email(F.lit(email))
    # Safe to collect: the accounts of one address.
    return sorted(r["account_id"] for r in lake.read("bronze.customers").where(normalised_email(F.col("email")) == wanted).select("account_id").distinct().collect())


def persons_of_accounts(lake: Lake, accounts: list[str]) -> dict:
    """Return ``{person_id: [account_id, ...]}``: the persons the identity map gives ``accounts``
    (an account it does not know is a person of its own, keyed by the account)."""
    known = {}
    if lake.exists("silver.identity_map"):
        # Safe to collect: the rows of a few accounts.
        rows = lake.read("silver.identity_map").where((F.col("identifier_type") == ACCOUNT) & F.col("identifier").isin(*accounts)).collect()
        known = {r["identifier"]: r["person_id"] for r in rows}
    persons: dict = {}
    for account in accounts:
        persons.setdefault(known.get(account, account), []).append(account)
    return persons


def one_subject(lake: Lake, email: str) -> list[str]:
    """Return the accounts holding ``email`` when they are one person's; raise
    SharedMailboxError when they are several persons' (a family mailbox): a request concerns
    one person, who is then named by account."""
    accounts = accounts_with_email(lake, email)
    persons = persons_of_accounts(lake, accounts)
    if len(persons) > 1:
        raise SharedMailboxError(
            f"the email {email!r} is held by the accounts of {len(persons)} persons (a shared mailbox): "
            "name the requester by --account ACCOUNT_ID; nothing was done"
        )
    return accounts


def subject_access(lake: Lake, out_dir: str, email: str | None = None, account: str | None = None) -> dict:
    """Write everything held about one person under ``out_dir``: for every table whose catalog
    entry has a ``subject`` rule, their rows as ``<table>.json`` and ``<table>.csv`` (an
    identifier of anyone else in them blanked, see :func:`_as_returned`), and ``index.json``
    (accounts, persons, those their accounts left, rows per table, and why each other table
    holds no one's rows); return the rows per table (empty when no account is found).

    The person is named by ``account`` (their person's every account is included) or by
    ``email`` when the accounts holding it are one person's; an email several persons hold
    raises SharedMailboxError (:func:`one_subject`): a household member's data is never
    returned. A person's rows are few: each table's are collected on the driver.
    """
    named = [account] if account else one_subject(lake, email)
    if not named or (account and not lake.read_or_empty("silver.customers").where(F.col("account_id") == account).limit(1).count()):
        return {}
    subject = person_subject(lake, named)
    values = F.broadcast(subject.frame(lake.spark))
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for spec in lake.catalog.subject_tables():
        # Padded: a table written before a column was declared lacks it until its next write.
        frame = spec.padded(lake.read_or_empty(spec.name)).crossJoin(values).where(subject_condition(spec)).select(*_as_returned(spec))
        rows = [r.asDict(recursive=True) for r in frame.collect()]
        with open(os.path.join(out_dir, f"{spec.name}.json"), "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, default=str)
        with open(os.path.join(out_dir, f"{spec.name}.csv"), "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(frame.columns)
            writer.writerows(safe_rows([row[c] for c in frame.columns] for row in rows))
        counts[spec.name] = len(rows)
    index = {
        "accounts": list(subject.account_ids),
        "persons": list(subject.person_ids),
        "earlier_persons": [dict(zip(("person_id", "from_date", "to_date"), held)) for held in subject.earlier_persons],
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": counts,
        "tables_holding_no_one": {spec.name: spec.subject_none for spec in lake.catalog.tables.values() if not spec.holds_subjects},
    }
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=2)
    return counts
