"""A simulated retailer as Spark DataFrames: persons, accounts, sessions, clicks, orders, campaigns.

Everything is computed in Spark from hashed draws (:mod:`crmlake.generate.draws`), so it
scales to tens of millions of events on a cluster and the same seed always gives the
same records. The planted truth, per person:

* ``daily_purchase_rate``: latent purchases per active day, lognormal (a few members do
  most of the buying), a quarter of members nearly dormant;
* ``daily_lapse_hazard``: the chance per day of lapsing for good (0 for most);
* ``favourite_category``: 60% of a member's visits and of their order lines are in it
  (the others in any category): what a next-best-category model finds;
* who is who (:func:`identity_truth`), as the contract's customers section says real
  landing zones hold it: some persons hold a second account (the same email in other case
  and spaces, or a mistyped one, or another mailbox; the same phone in another format; the
  name sometimes in other case and spacing; some of its visits on the first account's
  laptop); households of two persons share a computer (a household cookie both log in on)
  and some a family mailbox; a shop types its own phone for a few customers; placeholder
  emails and phones; numbers an operator gave to a new subscriber after an older member gave
  them up (the older profile updated to a new number, or left stale). The shares are the
  module's constants; however small the zone, one household with a family mailbox and one
  shop (picked by the seed) and one recycled number (when an older member fits) are planted
  whatever their draws;
* declared income band and occupation are drawn independently of behaviour (a baseline
  that should not predict), and "student" stays declared long after the birth year
  says otherwise.

Weekends lift visits and orders by 25%; hours follow a day curve peaking in the evening;
campaign days (every 7th day) bring utm-tagged visits and campaign responses whose
conversion rises with the member's purchase rate.

Heterogeneous campaign effects (:func:`response_types`, :func:`campaign_responses`): how our
own contacts move each person is planted too, so that an uplift model has something to find:
frequent buyers buy anyway (sure things), rarer buyers browsing at the time of a contact buy
because of it (persuadables), the rest do not buy either way. Nothing of it is generated
unless contacts are given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from crmlake.generate.draws import choice, geometric, normal, uniform

CATEGORIES = ["books", "electronics", "fashion", "home", "beauty", "sports", "toys", "grocery"]
CATEGORY_PRICE = {"books": 380, "electronics": 4200, "fashion": 1200, "home": 900, "beauty": 650, "sports": 1500, "toys": 700, "grocery": 250}
CITIES = ["Taipei", "New Taipei", "Taichung", "Kaohsiung", "Tainan", "Hsinchu", "Taoyuan"]
OCCUPATIONS = ["student", "engineer", "teacher", "sales", "nurse", "designer", "retired", "homemaker"]
HOURS = list(range(24))
HOUR_WEIGHTS = [1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2, 2.2, 2.4, 2.6, 3, 2.6, 2.4, 2.4, 2.6, 2.8, 3.2, 3.8, 4.2, 4.0, 3.0, 1.8]
CAMPAIGN_EVERY_DAYS = 7

# Identity (contract, customers): what makes one person look like two ...
SECOND_ACCOUNT_SHARE = 0.06      # of persons: a second account, signed up 1-200 days after the first
SAME_EMAIL_SHARE = 0.6           # of second accounts: the first account's email in other case and spaces
TYPO_EMAIL_SHARE = 1 / 3         # of the other second accounts: the first account's email with two adjacent letters swapped
NAME_VARIANT_SHARE = 1 / 3       # of second accounts: the name in other case or with extra spaces
SHARED_DEVICE_SHARE = 1 / 3      # of a second account's visits: on the first account's first cookie (one laptop)
# ... and two persons look like one.
HOUSEHOLD_SHARE = 0.08           # of persons: in a household of two (consecutive person_no) sharing a computer
HOUSEHOLD_COOKIE_SHARE = 0.5     # of a household member's visits: on the household's cookie "ck-H%08d"
FAMILY_MAILBOX_SHARE = 1 / 3     # of households: the second member's first account carries the first member's email
SHOP_PHONE_SHARE = 0.01          # of persons: a shop typed its own phone on their first account ...
SHOP_GROUP = 3                   # ... for this many consecutive persons per shop
PLACEHOLDER_EMAIL_SHARE = 0.02   # of accounts: "none@none.com", in some case
PLACEHOLDER_EMAILS = ["none@none.com", "None@None.com", "NONE@NONE.COM"]
PLACEHOLDER_PHONE_SHARE = 0.02   # of accounts: PLACEHOLDER_PHONE
PLACEHOLDER_PHONE = "0900000000"
RECYCLED_PHONE_SHARE = 0.01      # of persons joining in the window: the number of an older one-account member
RECYCLED_CHANGED_SHARE = 0.5     # of those numbers: the older member's profile changes to a new number before; the rest stay stale
RECYCLED_CANDIDATES = 8          # older persons tried per new holder (the first that fits gives the number)
# The "member" of "member123@example.com" with two adjacent letters swapped.
_TYPOS = ["emmber", "mmeber", "mebmer", "memebr", "membre"]


@dataclass(frozen=True)
class Plan:
    """What to simulate: persons, days ending on ``end``, the seed."""

    customers: int
    days: int
    end: dt.date
    seed: int
    timezone: str = "Asia/Taipei"

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)


def _day_date(plan: Plan, day: Column) -> Column:
    return F.date_add(F.lit(plan.start), day.cast("int"))


def _forced_unit(plan: Plan, salt: int, units: int) -> int:
    """The one unit (household, shop) planted whatever its draw, so that a small zone holds one
    too: picked by the seed, -1 when there is no room for any."""
    return (plan.seed * 7919 + salt * 104_729) % units if units > 0 else -1


def _at(plan: "Plan", date: Column, seconds: Column) -> Column:
    """Return the instant ``seconds`` after local midnight of ``date``.

    The generator builds its frames with the session time zone set to ``plan.timezone``
    (see :func:`crmlake.generate.landing.write_landing`), so a date cast to a timestamp is
    local midnight in the business time zone.
    """
    return F.timestamp_seconds(F.unix_timestamp(date.cast("timestamp")) + seconds)


def persons(spark: SparkSession, plan: Plan) -> DataFrame:
    """One row per simulated person with the planted truth and declared attributes.

    Identity: ``accounts`` (1 or 2) and ``second_signup_day``; ``household`` (the unit
    person_no // 2 of two persons sharing a computer, or null) and ``family_mailbox`` (that
    household shares a mailbox too); ``shop`` (the unit person_no // SHOP_GROUP whose first
    accounts carry one shop's phone, or null).
    """
    s, p = plan.seed, "person_no"
    rate = F.exp(-4.0 + 1.3 * normal(s, "rate", p)) * F.when(uniform(s, "dormant", p) < 0.25, 0.05).otherwise(1.0)
    hazard = choice(uniform(s, "lapse", p), [0.0, 0.004, 0.02], [0.6, 0.3, 0.1])
    signup_day = F.when(uniform(s, "joined_late", p) < 0.3, F.floor(uniform(s, "signup", p) * plan.days)).otherwise(
        -F.floor(uniform(s, "signup", p) * 5 * 365)
    ).cast("int")
    lifetime = F.when(hazard > 0, F.floor(-F.log(F.greatest(uniform(s, "life", p), F.lit(1e-12))) / hazard)).otherwise(F.lit(10**6))
    birth_year = (1955 + F.floor(uniform(s, "birth", p) * 53)).cast("int")
    young = (plan.end.year - birth_year) < 24
    accounts = F.when(uniform(s, "two_accounts", p) < SECOND_ACCOUNT_SHARE, 2).otherwise(1)
    household = F.floor(F.col(p) / 2)
    in_household = ((uniform(s, "household", household) < HOUSEHOLD_SHARE) | (household == _forced_unit(plan, 1, plan.customers // 2))) & (
        household * 2 + 1 < plan.customers
    )
    family_mailbox = (uniform(s, "family_mailbox", household) < FAMILY_MAILBOX_SHARE) | (household == _forced_unit(plan, 1, plan.customers // 2))
    shop = F.floor(F.col(p) / SHOP_GROUP)
    in_shop = ((uniform(s, "shop_phone", shop) < SHOP_PHONE_SHARE) | (shop == _forced_unit(plan, 2, plan.customers // SHOP_GROUP))) & (
        (shop + 1) * SHOP_GROUP <= plan.customers
    )
    frame = spark.range(plan.customers).withColumnRenamed("id", p)
    return frame.select(
        p,
        F.format_string("P%07d", F.col(p)).alias("person"),
        rate.alias("daily_purchase_rate"),
        hazard.cast("double").alias("daily_lapse_hazard"),
        choice(uniform(s, "favourite_category", p), CATEGORIES).alias("favourite_category"),
        signup_day.alias("signup_day"),
        (F.greatest(signup_day, F.lit(0)) + lifetime).cast("int").alias("alive_until"),
        (rate * 6 + 0.05 * F.exp(0.5 * normal(s, "browse", p))).alias("daily_visit_rate"),
        accounts.alias("accounts"),
        # the second account's signup day (the draw accounts() makes for k = 1): its visits start then
        F.when(accounts > 1, signup_day + 1 + F.floor(uniform(s, "second", p, F.lit(1)) * 200).cast("int")).alias("second_signup_day"),
        F.when(in_household, household).alias("household"),
        (in_household & family_mailbox).alias("family_mailbox"),
        F.when(in_shop, shop).alias("shop"),
        birth_year.alias("birth_year"),
        F.when(young & (uniform(s, "student", p) < 0.7), F.lit("student")).otherwise(choice(uniform(s, "occupation", p), OCCUPATIONS)).alias("occupation"),
    )


BUSINESS_SHARE = 0.03       # of accounts: business accounts of customer companies
ACCOUNTS_PER_COMPANY = 4    # on average: a few buyers and decision makers per company (at least 3 companies)


def _mobile(person_no: Column) -> Column:
    """Column: the person's own mobile number, "09" and 8 digits (a bijection of person_no below 10**8)."""
    return F.format_string("09%08d", (person_no * 7919 + 10_000_000) % 100_000_000)


def _shop_phone(shop: Column) -> Column:
    """Column: the landline a shop types for its customers, one per shop."""
    return F.format_string("02-%04d-%04d", (2000 + F.floor(shop / 10_000)).cast("int"), (shop % 10_000).cast("int"))


def recycled_numbers(people: DataFrame, plan: Plan) -> DataFrame:
    """Return (person_no, old_person_no, recycled, phone_changed_time): the numbers an operator
    gave to a person joining in the window (``person_no``, signup_day > 0) after an older
    one-account member (``old_person_no``, signup_day <= 0) gave them up.

    About RECYCLED_PHONE_SHARE of the persons joining in the window (at least one), none of
    them a shop's customer; each older member gives up one number. ``recycled`` names the
    pair ("R" and the new holder's person_no); ``phone_changed_time`` is when the older
    member's profile changed to a new number, shortly before the new holder signed up, for
    RECYCLED_CHANGED_SHARE of the numbers (null: their profile keeps the old number, stale).
    """
    s = plan.seed
    joining = people.where((F.col("signup_day") > 0) & F.col("shop").isNull()).select("person_no", "signup_day")
    draw = uniform(s, "recycled", "person_no")
    new = joining.where(draw < RECYCLED_PHONE_SHARE).unionByName(joining.orderBy(draw).limit(1)).distinct()
    tries = new.select("*", F.explode(F.sequence(F.lit(0), F.lit(RECYCLED_CANDIDATES - 1))).alias("_try")).withColumn(
        "old_person_no", F.floor(uniform(s, "recycled_from", "person_no", "_try") * plan.customers).cast("long")
    )
    older = people.where((F.col("signup_day") <= 0) & (F.col("accounts") == 1) & F.col("shop").isNull()).select(F.col("person_no").alias("old_person_no"))
    fits = tries.join(older, "old_person_no").groupBy("person_no", "signup_day").agg(F.min(F.struct("_try", "old_person_no")).alias("_fit"))
    # One new holder per number: the smallest person_no of those it fits first.
    pairs = fits.groupBy(F.col("_fit.old_person_no").alias("old_person_no")).agg(F.min(F.struct("person_no", "signup_day")).alias("_new")).select(
        F.col("_new.person_no").alias("person_no"), "old_person_no", F.col("_new.signup_day").alias("signup_day")
    )
    changed = uniform(s, "recycled_changed", "person_no") < RECYCLED_CHANGED_SHARE
    # 23:00-23:30 the day before the new holder signs up: after the older member's signup (a day <= 0, by 23:00), before the new one's (from 08:00).
    change_at = _at(plan, _day_date(plan, F.col("signup_day")), -(1800 + F.floor(uniform(s, "recycled_change_at", "person_no") * 1800)))
    return pairs.select("person_no", "old_person_no", F.format_string("R%07d", "person_no").alias("recycled"), F.when(changed, change_at).alias("phone_changed_time"))


def accounts(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per account (the customers source's upserts), with signup time and profile.

    Beside the profile, the planted identity truth that :func:`identity_truth` reads (not
    written to the landing zone): ``person``, ``household``, ``family_mailbox``, ``shop``,
    ``email_typo`` (a second account's mistyped email), ``recycled`` (the number's pair id,
    on both holders' accounts), ``phone_changed_time`` and ``changed_phone`` (the older
    holder's new number, see :func:`phone_changes`).
    """
    s = plan.seed
    numbers = recycled_numbers(people, plan)
    holders = numbers.select("person_no", F.col("old_person_no").alias("_number_of"), "recycled", F.lit(None).cast("timestamp").alias("phone_changed_time")).unionByName(
        numbers.select(F.col("old_person_no").alias("person_no"), F.col("old_person_no").alias("_number_of"), "recycled", "phone_changed_time")
    )
    exploded = people.join(F.broadcast(holders), "person_no", "left").select("*", F.explode(F.sequence(F.lit(0), F.col("accounts") - 1)).alias("k"))
    ids = ("person_no", "k")
    first = F.col("k") == 0
    signup_day = F.when(first, F.col("signup_day")).otherwise(F.col("second_signup_day"))
    seconds = (8 + F.floor(uniform(s, "signup_hour", *ids) * 15)) * 3600 + F.floor(uniform(s, "signup_min", *ids) * 3600)

    own_email = F.format_string("member%d@example.com", F.col("person_no"))
    mailbox_holder = F.col("family_mailbox") & (F.col("person_no") == F.col("household") * 2 + 1)

    def placeholder_email(k: Column) -> Column:
        # never on a family mailbox's first accounts: the shared mailbox stays visible
        return (uniform(s, "placeholder_email", "person_no", k) < PLACEHOLDER_EMAIL_SHARE) & ~(F.col("family_mailbox") & (k == 0))

    same_email = uniform(s, "same_email", *ids) < SAME_EMAIL_SHARE
    first_holds_own = ~mailbox_holder & ~placeholder_email(F.lit(0))
    typo = ~first & ~same_email & (uniform(s, "typo_email", *ids) < TYPO_EMAIL_SHARE) & first_holds_own & ~placeholder_email(F.col("k"))
    typo_local = F.element_at(F.array(*[F.lit(t) for t in _TYPOS]), (1 + F.floor(uniform(s, "typo_at", *ids) * len(_TYPOS))).cast("int"))
    email = (
        F.when(placeholder_email(F.col("k")), choice(uniform(s, "placeholder_case", *ids), PLACEHOLDER_EMAILS))
        .when(first & mailbox_holder, F.format_string("member%d@example.com", F.col("household") * 2))
        .when(first, own_email)
        .when(same_email, F.concat(F.lit("  "), F.upper(own_email), F.lit(" ")))
        .when(typo, F.format_string("%s%d@example.com", typo_local, F.col("person_no")))
        .otherwise(F.format_string("other%d.%d@mail.example", F.col("person_no"), F.col("k")))
    )

    number = _mobile(F.coalesce(F.col("_number_of"), F.col("person_no")))  # a recycled number: the older holder's
    shop_phone = first & F.col("shop").isNotNull()
    placeholder_phone = (uniform(s, "placeholder_phone", *ids) < PLACEHOLDER_PHONE_SHARE) & ~shop_phone & F.col("recycled").isNull()
    phone = (
        F.when(shop_phone, _shop_phone(F.col("shop")))
        .when(placeholder_phone, F.lit(PLACEHOLDER_PHONE))
        .when(first, number)
        .otherwise(F.concat_ws(" ", F.lit("+886"), number.substr(2, 3), number.substr(5, 3), number.substr(8, 3)))
    )
    name = F.format_string("Member %d", F.col("person_no"))
    name_variant = ~first & (uniform(s, "name_variant", *ids) < NAME_VARIANT_SHARE)
    name = F.when(name_variant, F.when(uniform(s, "name_case", *ids) < 0.5, F.upper(name)).otherwise(F.format_string(" member  %d ", F.col("person_no")))).otherwise(name)

    business = uniform(s, "business", *ids) < BUSINESS_SHARE
    companies = max(3, int(plan.customers * BUSINESS_SHARE / ACCOUNTS_PER_COMPANY))
    referred = (F.col("person_no") > 0) & (uniform(s, "referred", *ids) < 0.15)
    referrer = F.format_string("A%08d", F.floor(uniform(s, "referrer", *ids) * F.col("person_no")).cast("long") * 2)
    return exploded.where(signup_day <= plan.days - 1).select(
        "person_no",
        "person",
        F.format_string("A%08d", F.col("person_no") * 2 + F.col("k")).alias("account_id"),
        _at(plan, _day_date(plan, signup_day), seconds).alias("signup_time"),
        email.alias("email"),
        phone.alias("phone"),
        name.alias("name"),
        choice(uniform(s, "gender", *ids), ["f", "m", "x"], [0.52, 0.45, 0.03]).alias("gender"),
        "birth_year",
        "occupation",
        choice(uniform(s, "city", *ids), CITIES).alias("city"),
        choice(uniform(s, "income", *ids), ["low", "mid", "high"]).alias("income_band"),
        (uniform(s, "consent", *ids) < 0.8).alias("marketing_consent"),
        _at(plan, _day_date(plan, signup_day), seconds).alias("marketing_consent_time"),  # set at signup
        F.when(referred, referrer).alias("referred_by"),
        F.when(business, "business").otherwise("consumer").alias("account_type"),
        F.when(business, F.format_string("C%04d", (1 + F.floor(uniform(s, "company", *ids) * companies)).cast("int"))).alias("company_id"),
        "household",
        "family_mailbox",
        "shop",
        typo.alias("email_typo"),
        "recycled",
        "phone_changed_time",
        F.when(F.col("phone_changed_time").isNotNull(), _mobile(F.col("person_no") + 50_000_000)).alias("changed_phone"),  # nobody's: no zone holds 5e7 persons
    )


def _phone_at(time: Column) -> Column:
    """Column: an account's phone as its profile holds it at ``time`` (after a change, the new number)."""
    return F.when(F.col("phone_changed_time").isNotNull() & (time >= F.col("phone_changed_time")), F.col("changed_phone")).otherwise(F.col("phone"))


def phone_changes(accts: DataFrame) -> DataFrame:
    """One upsert per older holder of a recycled number whose profile changed to a new number
    (:func:`recycled_numbers`): the profile as it was, with ``changed_phone`` from ``phone_changed_time``."""
    return accts.where(F.col("phone_changed_time").isNotNull()).select(
        *[c for c in accts.columns if c != "phone"], F.col("changed_phone").alias("phone"), F.col("phone_changed_time").alias("updated_time")
    )


def identity_truth(accts: DataFrame, visits: DataFrame) -> DataFrame:
    """Return (account_id, person, causes): every account of ``accts`` (:func:`accounts`), its
    true person, and the planted causes it carries as ';'-joined ``cause:group`` tags (null
    when none), ``group`` naming the accounts that share the cause:

    * ``second_account:<person>``: the person holds several accounts;
    * ``typo_email:<person>``: one of them carries the other's email mistyped;
    * ``shared_device:<person>``: the account logged in (with tracking consent) on a cookie
      another account of the person logged in on too;
    * ``household:H<household>``: the account logged in (with tracking consent) on its
      household's cookie;
    * ``family_mailbox:H<household>``: the account carries its household's shared mailbox;
    * ``shop_phone:S<shop>``: the account carries a shop's phone;
    * ``placeholder_email:-``, ``placeholder_phone:-``: the account carries a placeholder;
    * ``recycled_phone:R<id>``: the account holds, or held, a number an operator recycled
      (the older and the new holder carry the same id).

    Cookie causes are read from ``visits`` (:func:`sessions`): evidence a resolver can see.
    """
    logins = visits.where(F.col("logged_in") & F.col("tracking_consent")).select(F.col("account").alias("account_id"), "anonymous_id").distinct()
    own_cookies = logins.where(F.col("anonymous_id").startswith("ck-A"))
    shared = own_cookies.groupBy("anonymous_id").agg(F.count("*").alias("_accounts")).where("_accounts > 1")
    on_shared = own_cookies.join(shared, "anonymous_id").select("account_id", F.lit(True).alias("_shared_device")).distinct()
    on_household = logins.where(F.col("anonymous_id").startswith("ck-H")).groupBy("account_id").agg(F.min(F.substring("anonymous_id", 4, 20)).alias("_household"))
    per_person = Window.partitionBy("person")
    normalised_email = F.lower(F.trim("email"))
    tags = [
        F.when(F.count("*").over(per_person) > 1, F.concat(F.lit("second_account:"), "person")),
        F.when(F.max(F.col("email_typo").cast("int")).over(per_person) == 1, F.concat(F.lit("typo_email:"), "person")),
        F.when(F.col("_shared_device"), F.concat(F.lit("shared_device:"), "person")),
        F.when(F.col("_household").isNotNull(), F.concat(F.lit("household:"), "_household")),
        F.when(F.col("family_mailbox") & (normalised_email == F.format_string("member%d@example.com", F.col("household") * 2)), F.format_string("family_mailbox:H%08d", "household")),
        F.when(F.col("phone") == _shop_phone(F.col("shop")), F.format_string("shop_phone:S%07d", "shop")),
        F.when(normalised_email == PLACEHOLDER_EMAILS[0], F.lit("placeholder_email:-")),
        F.when(F.col("phone") == PLACEHOLDER_PHONE, F.lit("placeholder_phone:-")),
        F.when(F.col("recycled").isNotNull(), F.concat(F.lit("recycled_phone:"), "recycled")),
    ]
    causes = F.concat_ws(";", *tags)
    joined = accts.join(on_shared, "account_id", "left").join(on_household, "account_id", "left")
    return joined.select("account_id", "person", F.when(causes != "", causes).alias("causes"))


def member_days(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per person and day on which the person is a live member."""
    first = F.greatest(F.col("signup_day"), F.lit(0))
    last = F.least(F.col("alive_until"), F.lit(plan.days - 1))
    return people.where(first <= last).select(
        "person_no", "accounts", "second_signup_day", "household", "daily_purchase_rate", "daily_visit_rate", "favourite_category",
        F.explode(F.sequence(first, last)).alias("day"),
    )


def sessions(spark: SparkSession, people: DataFrame, plan: Plan) -> DataFrame:
    """One row per visit: members' visits (some buying) and anonymous visitors'.

    A member visits as one of their accounts (the second only from its signup day on), on one
    of its three cookies "ck-A<account>-<n>"; SHARED_DEVICE_SHARE of a second account's
    visits are on the first account's first cookie (the person's laptop), and
    HOUSEHOLD_COOKIE_SHARE of a household member's visits on the household's cookie
    "ck-H<household>", logged in as any visit.
    """
    s = plan.seed
    days = member_days(people, plan)
    date = _day_date(plan, F.col("day"))
    boost = F.when(F.dayofweek(date).isin(1, 7), 1.25).otherwise(1.0)
    ids = ("person_no", "day")
    orders = geometric(F.col("daily_purchase_rate") * boost, uniform(s, "orders", *ids))
    visits = F.greatest(geometric(F.col("daily_visit_rate") * boost, uniform(s, "visits", *ids)), orders)
    counted = days.select("*", orders.alias("n_orders"), visits.alias("n_visits")).where("n_visits > 0")
    member = counted.select("*", F.explode(F.sequence(F.lit(0), F.col("n_visits") - 1)).alias("visit"))
    vid = ("person_no", "day", "visit")
    second = (F.col("accounts") > 1) & (F.col("day") >= F.col("second_signup_day"))
    member = member.withColumn("_k", F.when(second, F.floor(uniform(s, "which_account", *vid) * 2)).otherwise(F.lit(0)).cast("long"))
    account_no = F.col("person_no") * 2 + F.col("_k")
    cookie_no = F.floor(uniform(s, "cookie", *vid) * 3).cast("int")
    cookie = (
        F.when(F.col("household").isNotNull() & (uniform(s, "household_cookie", *vid) < HOUSEHOLD_COOKIE_SHARE), F.format_string("ck-H%08d", "household"))
        .when((F.col("_k") == 1) & (uniform(s, "shared_device", *vid) < SHARED_DEVICE_SHARE), F.format_string("ck-A%08d-0", F.col("person_no") * 2))
        .otherwise(F.format_string("ck-A%08d-%d", account_no, cookie_no))
    )
    buys = F.col("visit") < F.col("n_orders")
    member = member.select(
        F.format_string("m%d-%d-%d", "person_no", "day", "visit").alias("session_key"),
        "day",
        F.format_string("A%08d", account_no).alias("account"),
        cookie.alias("anonymous_id"),
        (buys | (uniform(s, "login", *vid) < 0.6)).alias("logged_in"),
        buys.alias("buys"),
        "favourite_category",
    )
    anonymous = spark.range(int(plan.customers * 0.05) * plan.days).select(
        F.format_string("a%d", "id").alias("session_key"),
        (F.col("id") % plan.days).cast("int").alias("day"),
        F.lit(None).cast("string").alias("account"),
        F.format_string("ck-anon-%d", "id").alias("anonymous_id"),
        F.lit(False).alias("logged_in"),
        (uniform(s, "anon_buys", "id") < 0.05).alias("buys"),
        F.lit(None).cast("string").alias("favourite_category"),
    )
    both = member.unionByName(anonymous)
    k = ("session_key",)
    hour = choice(uniform(s, "hour", *k), HOURS, HOUR_WEIGHTS)
    campaign_day = (F.col("day") % CAMPAIGN_EVERY_DAYS) == 3
    tagged = campaign_day & (uniform(s, "utm", *k) < 0.3)
    device = choice(uniform(s, "device", *k), ["desktop", "mobile", "tablet", "app"], [0.3, 0.45, 0.05, 0.2])
    carts = F.col("buys") | (uniform(s, "cart", *k) < 0.15)
    return both.select(
        "*",
        _at(plan, _day_date(plan, F.col("day")), hour * 3600 + F.floor(uniform(s, "second", *k) * 3600)).alias("session_start"),
        (uniform(s, "consent", *k) < 0.9).alias("tracking_consent"),
        device.alias("device"),
        F.when(tagged, F.format_string("c-%s", F.date_format(_day_date(plan, F.col("day")), "yyyyMMdd"))).alias("utm_campaign"),
        F.when(F.col("favourite_category").isNotNull() & (uniform(s, "in_favourite", *k) < 0.6), F.col("favourite_category"))
        .otherwise(choice(uniform(s, "category", *k), CATEGORIES)).alias("category"),
        (1 + F.floor(uniform(s, "views", *k) * 4)).cast("int").alias("product_views"),
        (uniform(s, "search", *k) < 0.4).alias("searched"),
        carts.alias("carted"),
        (F.col("buys") | (carts & (uniform(s, "checkout", *k) < 0.3))).alias("checked_out"),
    )


def _steps(visits: DataFrame) -> DataFrame:
    empty = F.array().cast("array<string>")
    steps = F.concat(
        F.array(F.lit("page_view")),
        F.when(F.col("searched"), F.array(F.lit("search"))).otherwise(empty),
        F.array_repeat(F.lit("product_view"), F.col("product_views")),
        F.when(F.col("carted"), F.array(F.lit("add_to_cart"))).otherwise(empty),
        F.when(F.col("checked_out"), F.array(F.lit("checkout_start"))).otherwise(empty),
        F.when(F.col("buys"), F.array(F.lit("purchase"))).otherwise(empty),
    )
    return visits.withColumn("steps", steps)


def _price(category: Column) -> Column:
    expr = None
    for name, price in CATEGORY_PRICE.items():
        expr = F.when(category == name, F.lit(price)) if expr is None else expr.when(category == name, F.lit(price))
    return expr.otherwise(F.lit(500))


def clicks(visits: DataFrame, plan: Plan) -> DataFrame:
    """One row per click event of every visit, fields as the contract names them."""
    s = plan.seed
    exploded = _steps(visits).select("*", F.posexplode("steps").alias("step_no", "event_type"))
    e = ("session_key", "step_no")
    event_time = F.timestamp_micros(
        F.unix_micros(F.col("session_start")) + (F.col("step_no") * 90 + F.floor(uniform(s, "gap", *e) * 60)) * 1_000_000 + F.floor(uniform(s, "ms", *e) * 1000) * 1000
    )
    product = F.col("event_type").isin("product_view", "add_to_cart")
    return exploded.select(
        F.concat(F.lit("e-"), F.col("session_key"), F.lit("-"), F.col("step_no")).alias("event_id"),
        event_time.alias("event_time"),
        F.timestamp_micros(F.unix_micros(event_time) + (50 + F.floor(uniform(s, "lag", *e) * 3950)).cast("long") * 1000).alias("received_time"),
        "event_type",
        "anonymous_id",
        F.when(F.col("logged_in"), F.col("account")).alias("account_id"),
        "tracking_consent",
        F.format_string("/%s?c=%s", F.regexp_replace("event_type", "_", "-"), F.col("category")).alias("page_url"),
        F.when(product, F.format_string("%s-%d", F.col("category").substr(1, 3), F.floor(uniform(s, "product", *e) * 500).cast("int"))).alias("product_id"),
        F.when(product, F.col("category")).alias("category"),
        F.when(product, F.format_string("%.2f", _price(F.col("category")).cast("double"))).alias("price"),
        F.when(F.col("event_type") == "purchase", F.concat(F.lit("O-"), F.col("session_key"))).alias("order_id"),
        F.when(F.col("event_type") == "search", F.col("category")).alias("search_query"),
        F.when(F.col("utm_campaign").isNotNull(), F.lit("newsletter")).alias("utm_source"),
        F.when(F.col("utm_campaign").isNotNull(), F.lit("email")).alias("utm_medium"),
        "utm_campaign",
        "device",
        F.lit("TW").alias("country"),
    )


def order_lines(visits: DataFrame, plan: Plan) -> DataFrame:
    """One row per order line version: every buying visit's lines, and later status changes."""
    s = plan.seed
    buying = _steps(visits.where("buys"))
    lines = buying.select("*", F.explode(F.sequence(F.lit(1), (1 + F.floor(uniform(s, "lines", "session_key") * 3)).cast("int"))).alias("line_no"))
    l_ids = ("session_key", "line_no")
    # Later lines follow the member's taste as their visits do: the favourite 60% of the time.
    favourite = F.col("favourite_category").isNotNull() & (uniform(s, "line_in_favourite", *l_ids) < 0.6)
    category = (
        F.when(F.col("line_no") == 1, F.col("category"))
        .when(favourite, F.col("favourite_category"))
        .otherwise(choice(uniform(s, "line_category", *l_ids), CATEGORIES))
    )
    # Drawn once as columns: the price (a branch per category) and the columns below refer to
    # them, so no expression repeats the category's draw (the formatted lines' plan: 107k -> 61k
    # characters, optimised in 0.19 s instead of 0.67 s).
    drawn = lines.withColumn("_category", category).withColumn(
        "_unit_price", F.round(_price(F.col("_category")) * F.exp(0.4 * normal(s, "unit_price", *l_ids)), 0)
    ).withColumn("_quantity", (1 + F.floor(uniform(s, "quantity", *l_ids) * 2)).cast("int"))
    category, unit_price, quantity = F.col("_category"), F.col("_unit_price"), F.col("_quantity")
    order_time = F.timestamp_seconds(F.unix_timestamp("session_start") + (F.size("steps") - 1) * 90 + 60)
    guest = F.col("account").isNull()
    first = drawn.select(
        F.concat(F.lit("O-"), F.col("session_key")).alias("order_id"),
        "line_no",
        order_time.alias("order_time"),
        F.when(~guest, F.col("account")).alias("account_id"),
        F.when(guest, F.format_string("guest%d@mail.example", F.floor(uniform(s, "guest", "session_key") * 1e6).cast("int"))).alias("guest_email"),
        F.when(F.col("device") == "app", "app").otherwise("web").alias("channel"),
        F.lit(None).cast("string").alias("store_id"),
        F.format_string("%s-%d", category.substr(1, 3), F.floor(uniform(s, "line_product", *l_ids) * 500).cast("int")).alias("product_id"),
        category.alias("category"),
        quantity.alias("quantity"),
        unit_price.alias("unit_price"),
        F.when(uniform(s, "discount", *l_ids) < 0.2, F.round(unit_price * quantity * 0.1, 2)).otherwise(F.lit(0.0)).alias("discount"),
        F.lit("TWD").alias("currency"),
        F.lit("completed").alias("status"),
        order_time.alias("updated_time"),
        uniform(s, "status_change", *l_ids).alias("_change"),
        uniform(s, "change_delay", *l_ids).alias("_delay"),
    )
    changed = first.where("_change < 0.06").withColumn("status", F.when(F.col("_change") < 0.04, "returned").otherwise("cancelled")).withColumn(
        "updated_time", F.timestamp_seconds(F.unix_timestamp("order_time") + (1 + F.floor(F.col("_delay") * 8)) * 86400 + F.floor(F.col("_delay") * 97) * 431)
    )
    return first.unionByName(changed).drop("_change", "_delay")


def campaign_events(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per campaign event: sends on campaign days to live members, and their responses."""
    s = plan.seed
    targets = member_days(people, plan).where((F.col("day") % CAMPAIGN_EVERY_DAYS) == 3)
    ids = ("person_no", "day")
    targets = targets.where(uniform(s, "targeted", *ids) < 0.35)
    bounced = uniform(s, "bounce", *ids) < 0.03
    opened = ~bounced & (uniform(s, "open", *ids) < 0.3)
    unsubscribed = opened & (uniform(s, "unsubscribe", *ids) < 0.02)
    clicked = opened & ~unsubscribed & (uniform(s, "click", *ids) < 0.3)
    converted = clicked & (uniform(s, "convert", *ids) < F.least(F.lit(0.9), 0.05 + F.col("daily_purchase_rate") * 8))
    open_minutes = 60 + F.floor(uniform(s, "open_delay", *ids) * 29 * 60)

    def event(name, when, minutes):
        return F.when(when, F.struct(F.lit(name).alias("event"), minutes.cast("long").alias("minutes")))

    events = F.filter(
        F.array(
            event("sent", F.lit(True), F.lit(0)),
            event("bounced", bounced, F.lit(1)),
            event("delivered", ~bounced, F.lit(1)),
            event("opened", opened, open_minutes),
            event("unsubscribed", unsubscribed, open_minutes + 2),
            event("clicked", clicked, open_minutes + 1),
            event("converted", converted, open_minutes + 120),
        ),
        lambda e: e.isNotNull(),
    )
    sent_at = _at(plan, _day_date(plan, F.col("day")), F.lit(10 * 3600))
    exploded = targets.select("*", F.explode(events).alias("e"))
    return exploded.select(
        F.format_string("c-%s", F.date_format(_day_date(plan, F.col("day")), "yyyyMMdd")).alias("campaign_id"),
        F.format_string("A%08d", F.col("person_no") * 2).alias("account_id"),
        F.col("e.event").alias("event"),
        F.timestamp_seconds(F.unix_timestamp(sent_at) + F.col("e.minutes") * 60).alias("event_time"),
        F.when(F.col("e.event") == "converted", F.round(F.exp(7 + 0.6 * normal(s, "revenue", *ids)), 2)).alias("revenue"),
    )


def interactions(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per service contact (about 0.4% of member-days)."""
    s = plan.seed
    ids = ("person_no", "day")
    contacts = member_days(people, plan).where(uniform(s, "contact", *ids) < 0.004)
    kind = choice(uniform(s, "type", *ids), ["inquiry", "complaint", "praise", "return_request", "technical"], [0.45, 0.15, 0.1, 0.2, 0.1])
    opened = _at(plan, _day_date(plan, F.col("day")), F.floor(uniform(s, "opened", *ids) * 86400))
    closed = uniform(s, "closed", *ids) < 0.85
    satisfaction = F.when(kind == "complaint", 1 + F.floor(uniform(s, "sat", *ids) * 2)).otherwise(3 + F.floor(uniform(s, "sat", *ids) * 3))
    return contacts.select(
        F.format_string("I%d-%d", "person_no", "day").alias("interaction_id"),
        F.format_string("A%08d", F.col("person_no") * 2).alias("account_id"),
        choice(uniform(s, "channel", *ids), ["phone", "email", "chat", "message_board", "store"]).alias("channel"),
        kind.alias("type"),
        opened.alias("opened_time"),
        F.when(closed, F.timestamp_seconds(F.unix_timestamp(opened) + (1 + F.floor(uniform(s, "duration", *ids) * 72)) * 3600)).alias("closed_time"),
        F.when(closed & (uniform(s, "rated", *ids) < 0.7), satisfaction.cast("int").cast("string")).alias("satisfaction"),
        F.format_string("agent%d", (1 + F.floor(uniform(s, "agent", *ids) * 40)).cast("int")).alias("agent_id"),
    )


def profile_changes(accts: DataFrame, plan: Plan) -> DataFrame:
    """Later upserts of about 5% of accounts during the window: half a move (a new city, the
    consent and its time as they were), half a consent the member set anew (with its time)."""
    s = plan.seed
    changing = accts.where(uniform(s, "changes", "account_id") < 0.05)
    when = _at(plan, F.lit(plan.start), F.floor(uniform(s, "change_at", "account_id") * plan.days * 86400))
    sets_consent = uniform(s, "sets_consent", "account_id") < 0.5
    return changing.where(when > F.col("signup_time")).select(
        *[c for c in accts.columns if c not in ("city", "marketing_consent", "marketing_consent_time", "phone")],
        _phone_at(when).alias("phone"),
        choice(uniform(s, "new_city", "account_id"), CITIES).alias("city"),
        F.when(sets_consent, uniform(s, "new_consent", "account_id") < 0.5).otherwise(F.col("marketing_consent")).alias("marketing_consent"),
        F.when(sets_consent, when).otherwise(F.col("marketing_consent_time")).alias("marketing_consent_time"),
        when.alias("updated_time"),
    )


def moved_after_unsubscribing(accts: DataFrame, events: DataFrame, plan: Plan) -> DataFrame:
    """One upsert for one consenting account that unsubscribed before the window's last three
    days: a day later it moves (a new city) and the profile repeats its old consent and
    consent time, which must not undo the unsubscribe."""
    unsubscribed = events.where((F.col("event") == "unsubscribed") & (F.col("event_time") < F.lit(plan.end - dt.timedelta(days=3)).cast("timestamp")))
    first = unsubscribed.groupBy("account_id").agg(F.min("event_time").alias("_unsubscribed_at"))
    chosen = accts.where("marketing_consent").join(first, "account_id").orderBy(uniform(plan.seed, "moved", "account_id")).limit(1)
    moved_at = F.col("_unsubscribed_at") + F.expr("INTERVAL 1 DAY")
    return chosen.select(
        *[c for c in accts.columns if c not in ("city", "phone")],
        _phone_at(moved_at).alias("phone"),
        F.lit("Hualien").alias("city"),
        moved_at.alias("updated_time"),
    )


# How a contact (an exported audience member, not its control group) moves each person.
RESPONSE_TYPES = ("persuadable", "sure_thing", "lost_cause")
SURE_THING_RATE = 0.03      # daily purchase rate from which a member buys whether contacted or not
BROWSING_DAYS = 30          # a rarer buyer who visited on at least ...
PERSUADABLE_VISIT_DAYS = 3  # ... this many of the BROWSING_DAYS up to a contact is persuadable by it
RESPONSE_RATE = 0.7         # a contacted persuadable buys because of it with this probability ...
RESPONSE_DAYS = 7           # ... on one of the days after the contact


def person_no_of_account(account: Column) -> Column:
    """Column: the simulated person holding ``account`` (ids are "A" and person_no * 2 + k, k = 0 or 1)."""
    return F.floor(account.substr(2, 20).cast("long") / 2)


def response_types(people: DataFrame, visits: DataFrame, on: DataFrame) -> DataFrame:
    """Return (person_no, day, response_type): how a contact on ``day`` moves the person,
    planted from their latent purchase rate and their visits then.

    Takes persons (:func:`persons`), visits (:func:`sessions`) and (person_no, day) pairs.

    * ``sure_thing``: buys often (``daily_purchase_rate`` >= SURE_THING_RATE): converts as
      much contacted or not: a high propensity and no uplift;
    * ``persuadable``: a rarer buyer browsing now: visited on at least
      PERSUADABLE_VISIT_DAYS of the BROWSING_DAYS up to ``day`` (in the market, not buying);
      contacted, buys with RESPONSE_RATE in the RESPONSE_DAYS after
      (:func:`campaign_responses`); not contacted, only at their own rate;
    * ``lost_cause``: everyone else; a contact changes nothing.
    """
    visited = visits.where(F.col("account").isNotNull()).select(person_no_of_account(F.col("account")).alias("person_no"), F.col("day").alias("_visit_day"))
    recent = (F.col("_visit_day") <= F.col("day")) & (F.col("_visit_day") > F.col("day") - BROWSING_DAYS)
    browsing = on.join(visited, "person_no").where(recent).groupBy("person_no", "day").agg(F.countDistinct("_visit_day").alias("_visit_days"))
    kind = (
        F.when(F.col("daily_purchase_rate") >= SURE_THING_RATE, F.lit("sure_thing"))
        .when(F.coalesce("_visit_days", F.lit(0)) >= PERSUADABLE_VISIT_DAYS, F.lit("persuadable"))
        .otherwise(F.lit("lost_cause"))
    )
    return on.join(people.select("person_no", "daily_purchase_rate"), "person_no").join(browsing, ["person_no", "day"], "left").select(
        "person_no", "day", kind.alias("response_type")
    )


def campaign_responses(people: DataFrame, visits: DataFrame, contacts: DataFrame, plan: Plan) -> DataFrame:
    """Return the order lines our contacts caused, as :func:`order_lines` (one line per order).

    Takes persons (:func:`persons`), visits (:func:`sessions`) and contact rows (account_id,
    contact_date, group: treatment or control), e.g. gold.contact_history. A persuadable
    (:func:`response_types`) contacted on a date (in the treatment group of any audience)
    buys with RESPONSE_RATE on one of the RESPONSE_DAYS after it, in their favourite
    category, from the contacted account. Control persons, sure things and lost causes buy
    nothing more than they would anyway; responses after ``plan.end`` have not happened and
    are left out.
    """
    s = plan.seed
    contacted = contacts.where(F.col("group") == "treatment").select(
        person_no_of_account(F.col("account_id")).alias("person_no"), "account_id", F.datediff("contact_date", F.lit(plan.start)).alias("day"),
    ).groupBy("person_no", "day").agg(F.min("account_id").alias("account_id"))
    persuadable = response_types(people, visits, contacted.select("person_no", "day")).where(F.col("response_type") == "persuadable")
    ids = ("person_no", "contact_day")
    responding = (
        contacted.join(persuadable, ["person_no", "day"]).join(people.select("person_no", "favourite_category"), "person_no")
        .withColumnRenamed("day", "contact_day").where(uniform(s, "responds", *ids) < RESPONSE_RATE)
        .withColumn("day", F.col("contact_day") + 1 + F.floor(uniform(s, "response_day", *ids) * RESPONSE_DAYS).cast("int"))
    )
    order_time = _at(plan, _day_date(plan, F.col("day")), choice(uniform(s, "response_hour", *ids), HOURS, HOUR_WEIGHTS) * 3600
                     + F.floor(uniform(s, "response_second", *ids) * 3600))
    unit_price = F.round(_price(F.col("favourite_category")) * F.exp(0.4 * normal(s, "response_price", *ids)), 0)
    return responding.where(F.col("day") <= plan.days - 1).select(
        F.format_string("O-r%d-%d", "person_no", "contact_day").alias("order_id"),
        F.lit(1).alias("line_no"),
        order_time.alias("order_time"),
        "account_id",
        F.lit(None).cast("string").alias("guest_email"),
        F.lit("web").alias("channel"),
        F.lit(None).cast("string").alias("store_id"),
        F.format_string("%s-%d", F.col("favourite_category").substr(1, 3), F.floor(uniform(s, "response_product", *ids) * 500).cast("int")).alias("product_id"),
        F.col("favourite_category").alias("category"),
        F.lit(1).alias("quantity"),
        unit_price.alias("unit_price"),
        F.lit(0.0).alias("discount"),
        F.lit("TWD").alias("currency"),
        F.lit("completed").alias("status"),
        order_time.alias("updated_time"),
    )
