"""The simulated members: persons with their planted truth, their accounts and profile changes.

The planted truth, per person (:func:`persons`):

* ``daily_purchase_rate``: latent purchases per active day, lognormal (a few members do
  most of the buying), a quarter of members nearly dormant;
* ``daily_lapse_hazard``: the chance per day of lapsing for good (0 for most). A lapsing
  member fades before they go: over the FADE_DAYS days up to their last day, their daily
  visit rate is multiplied by a factor falling linearly from 1 to VISIT_FADE_FLOOR, and their
  purchase rate, more gently, by one falling to PURCHASE_FADE_FLOOR (:func:`activity_fade`),
  so most fading buyers still buy now and then. Their last day is the truth's ``lapse_date``
  whenever the fade has begun by the plan's end (:func:`lapse_day`): those lapsed, and those
  "about to churn", who lapse within FADE_DAYS after it;
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
  says otherwise;
* ``acquisition_source``: where a member joining in the window came from
  (ACQUISITION_SOURCES), its lift in their purchase rate: sources of different 90-day values.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from crmlake.generate.draws import choice, normal, uniform
from crmlake.generate.world import CATEGORIES, Plan, day_date, local_time

CITIES = ["Taipei", "New Taipei", "Taichung", "Kaohsiung", "Tainan", "Hsinchu", "Taoyuan"]
OCCUPATIONS = ["student", "engineer", "teacher", "sales", "nurse", "designer", "retired", "homemaker"]

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

# Churners fade before they lapse (:func:`activity_fade`): over the FADE_DAYS days up to a lapsing
# member's last day their rates fall linearly to these shares of themselves; purchases fade less
# than visits, so that most fading buyers still buy (and a churn model sees them as buyers).
FADE_DAYS = 28
VISIT_FADE_FLOOR = 0.2
PURCHASE_FADE_FLOOR = 0.5


class AcquisitionSource(NamedTuple):
    """Where members joining in the window came from, as the visit in which they signed up says
    (:func:`crmlake.generate.behaviour.sessions`), and how much more than others they buy."""

    share: float                # of the members joining after the window's first day
    utm_source: str | None
    utm_medium: str | None
    referrer_url: str | None    # on the visit's entry page
    purchase_lift: float        # their daily purchase (and visit) rate, times this


# Keyed by the first-touch source crmlake.analyze.acquisition reads from the visit. The review
# site brings the buyers who spend most: the best source of new customers' 90-day value.
ACQUISITION_SOURCES = {
    "facebook": AcquisitionSource(0.3, "facebook", "paid_social", None, 0.6),
    "google.com": AcquisitionSource(0.3, None, None, "https://www.google.com/search?q=gift+shop", 1.0),
    "reviews.example.org": AcquisitionSource(0.15, None, None, "https://reviews.example.org/best-shops-2026", 3.0),
    "direct": AcquisitionSource(0.25, None, None, None, 1.0),
}


def activity_fade(floor: float) -> Column:
    """Column: the factor on a member's daily rate on ``day``, given their last day ``alive_until``
    (:func:`crmlake.generate.world.member_days`' columns): 1 until the FADE_DAYS days up to their
    last day, then falling linearly to ``floor`` on it (exactly 1 for a member who does not lapse
    within FADE_DAYS, so their draws give what they gave before the fade was planted)."""
    days_left = F.col("alive_until") - F.col("day")
    return F.when(days_left < FADE_DAYS, floor + (1 - floor) * days_left / FADE_DAYS).otherwise(F.lit(1.0))


def lapse_day(plan: Plan) -> Column:
    """Column: a person's last day as a member (``alive_until`` of :func:`persons`, 0 = the plan's
    first day) when their fade (:func:`activity_fade`) has begun by the plan's last day: they
    lapsed in the plan, or lapse within FADE_DAYS after its end; null for the others."""
    return F.when(F.col("alive_until") < plan.days - 1 + FADE_DAYS, F.col("alive_until"))


def _forced_unit(plan: Plan, salt: int, units: int) -> int:
    """The one unit (household, shop) planted whatever its draw, so that a small zone holds one
    too: picked by the seed, -1 when there is no room for any."""
    return (plan.seed * 7919 + salt * 104_729) % units if units > 0 else -1


def persons(spark: SparkSession, plan: Plan) -> DataFrame:
    """One row per simulated person with the planted truth and declared attributes.

    Identity: ``accounts`` (1 or 2) and ``second_signup_day``; ``household`` (the unit
    person_no // 2 of two persons sharing a computer, or null) and ``family_mailbox`` (that
    household shares a mailbox too); ``shop`` (the unit person_no // SHOP_GROUP whose first
    accounts carry one shop's phone, or null). ``acquisition_source``: of a member joining
    after the window's first day, a key of ACQUISITION_SOURCES (its lift is in their purchase rate).
    """
    s, p = plan.seed, "person_no"
    hazard = choice(uniform(s, "lapse", p), [0.0, 0.004, 0.02], [0.6, 0.3, 0.1])
    signup_day = F.when(uniform(s, "joined_late", p) < 0.3, F.floor(uniform(s, "signup", p) * plan.days)).otherwise(
        -F.floor(uniform(s, "signup", p) * 5 * 365)
    ).cast("int")
    acquisition_source = F.when(
        signup_day >= 1, choice(uniform(s, "acquisition_source", p), list(ACQUISITION_SOURCES), [a.share for a in ACQUISITION_SOURCES.values()])
    )
    lift = F.lit(1.0)
    for source, acquired in ACQUISITION_SOURCES.items():
        lift = F.when(acquisition_source == source, F.lit(acquired.purchase_lift)).otherwise(lift)
    rate = F.exp(-4.0 + 1.3 * normal(s, "rate", p)) * F.when(uniform(s, "dormant", p) < 0.25, 0.05).otherwise(1.0) * lift
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
        acquisition_source.alias("acquisition_source"),
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
    change_at = local_time(plan, day_date(plan, F.col("signup_day")), -(1800 + F.floor(uniform(s, "recycled_change_at", "person_no") * 1800)))
    return pairs.select("person_no", "old_person_no", F.format_string("R%07d", "person_no").alias("recycled"), F.when(changed, change_at).alias("phone_changed_time"))


def signup_time(plan: Plan, signup_day: Column, *ids) -> Column:
    """Column: when an account (``ids``: person_no and k, its number) signed up on ``signup_day``, 08:00 to 22:59 local."""
    seconds = (8 + F.floor(uniform(plan.seed, "signup_hour", *ids) * 15)) * 3600 + F.floor(uniform(plan.seed, "signup_min", *ids) * 3600)
    return local_time(plan, day_date(plan, signup_day), seconds)


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
    signed_up = signup_time(plan, signup_day, *ids)

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
        signed_up.alias("signup_time"),
        email.alias("email"),
        phone.alias("phone"),
        name.alias("name"),
        choice(uniform(s, "gender", *ids), ["f", "m", "x"], [0.52, 0.45, 0.03]).alias("gender"),
        "birth_year",
        "occupation",
        choice(uniform(s, "city", *ids), CITIES).alias("city"),
        choice(uniform(s, "income", *ids), ["low", "mid", "high"]).alias("income_band"),
        (uniform(s, "consent", *ids) < 0.8).alias("marketing_consent"),
        signed_up.alias("marketing_consent_time"),  # set at signup
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

    Cookie causes are read from ``visits`` (:func:`crmlake.generate.behaviour.sessions`): evidence a resolver can see.
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


def profile_changes(accts: DataFrame, plan: Plan) -> DataFrame:
    """Later upserts of about 5% of accounts during the window: half a move (a new city, the
    consent and its time as they were), half a consent the member set anew (with its time)."""
    s = plan.seed
    changing = accts.where(uniform(s, "changes", "account_id") < 0.05)
    when = local_time(plan, F.lit(plan.start), F.floor(uniform(s, "change_at", "account_id") * plan.days * 86400))
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
