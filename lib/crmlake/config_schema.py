"""The configuration's schema and the object every stage reads: each section, key and type.

:func:`crmlake.config.load_conf` validates the merged configuration against
:class:`CrmlakeConf` and returns it (as :class:`crmlake.config.Conf`, which adds the table
locations and overrides); stages read it as typed attributes
(``conf.organize.identity.link_min_probability``). An unknown key, a missing one or a wrong
type is a :class:`crmlake.config.ConfigError` naming the key, where it came from and the
nearest valid key.

Defaults live in ``crmlake/conf/base.yaml`` (shipped in the package), not here: every key
of a section is required, so base.yaml holds each one with its default. The one exception
is an audience's optional keys (:class:`Audience`): an entry of a list has no place in
base.yaml, so their defaults are declared here. A new key is one line here and one line
(with its default) in base.yaml.

A stage reads its own section and the shared ones (``paths``, ``business``, ``spark``,
``lake``, ``mlflow``, ``campaigns``), never another stage's. The sections read top-down, in
base.yaml's order; the analyze stage's, the most numerous, are in :mod:`crmlake.config_analyze`.
"""

from __future__ import annotations

import math
import re
from typing import Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from crmlake.config_analyze import Analyze
from crmlake.config_section import PositiveInt, Section
from crmlake.files import local_path
from crmlake.summaries import REPORTS_DIR, SUMMARY_DIR


class CrmlakeConf(Section):
    """The whole configuration, as merged from base.yaml, --conf, --set and the environment."""

    paths: Paths
    business: Business
    spark: Spark
    lake: LakeSettings
    mlflow: Mlflow
    acquire: Acquire
    organize: Organize
    analyze: Analyze
    decide: Decide
    campaigns: Campaigns


class Paths(Section):
    """Where the landing zone, the lake, the exports and the checkpoints live (``paths``)."""

    landing: str
    lake: str
    exports: str
    checkpoints: str | None

    @field_validator("exports")
    @classmethod
    def exports_on_a_local_folder(cls, value: str) -> str:
        """The exports root is a local or mounted folder (a ``file:`` URI names one): every
        publish there is a rename on that disk (:mod:`crmlake.exports`, :mod:`crmlake.summaries`),
        which HDFS and object stores do not offer."""
        if "://" not in value and not value.startswith("file:"):
            return value   # a path; made absolute by load_conf
        path = local_path(value)
        if path is None:
            raise ValueError("must be a local or mounted folder: exports are published by an atomic rename on its disk; "
                             "mount the file system and name the mount, e.g. paths.exports=/mnt/crm/exports")
        return path


class Business(Section):
    """The business's calendar and defaults shared by every stage (``business``)."""

    timezone: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[str, float] = {}   # units of ``currency`` per unit of each other currency order lines hold
    default_phone_region: str = Field(pattern=r"^[A-Z]{2}$")

    @model_validator(mode="after")
    def rates_of_other_currencies(self) -> "Business":
        for code, rate in self.exchange_rates.items():
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ValueError(f"exchange_rates: {code!r} is not an ISO-4217 currency code (three capital letters, e.g. USD)")
            if code == self.currency:
                raise ValueError(f"exchange_rates: {code} is business.currency itself (its amounts are never converted)")
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"exchange_rates: {code}: {rate} is no exchange rate (units of business.currency per {code}, a number above 0)")
        return self

    @field_validator("timezone")
    @classmethod
    def known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Taipei, Europe/Paris, UTC)") from None
        return value


class Spark(Section):
    """The Spark session every job builds (``spark``): master, application name and any ``spark.*`` setting."""

    master: str
    app_name: str
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
    conf: dict[str, str | bool | int | float]  # Spark's own keys, passed through as text


class LakeSettings(Section):
    """The Delta lake (``lake``): which engine commits, file sizes, retention and the writers' lease."""

    engine: Literal["auto", "rs", "spark"]
    resolve_delta_jars: bool
    target_file_rows: int = PositiveInt
    small_file_bytes: int = PositiveInt
    retention_days: RetentionDays
    lease: Lease


class RetentionDays(Section):
    """How long each layer keeps removed files and log entries before ``crmlake maintain``
    vacuums them (``lake.retention_days``)."""

    bronze: int = Field(ge=0)
    silver: int = Field(ge=0)
    gold: int = Field(ge=0)


class Lease(Section):
    """The lease one writer holds on the lake while it runs (``lake.lease``), renewed by a heartbeat."""

    wait_seconds: float = Field(ge=0)
    expiry_seconds: float = Field(gt=0)
    heartbeat_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def renewed_before_it_expires(self) -> "Lease":
        if self.heartbeat_seconds >= self.expiry_seconds:
            raise ValueError(f"heartbeat_seconds ({self.heartbeat_seconds}) must be below expiry_seconds ({self.expiry_seconds}): a live holder would lose its lease")
        return self


class Mlflow(Section):
    """Where runs and the model registry live (``mlflow``)."""

    tracking_uri: str
    artifact_root: Optional[str]
    experiment: str


class Acquire(Section):
    """How acquire reads landing files (``acquire``): the longest line, the quarantined text
    kept, the repeats sent to every task, the sources acquired side by side."""

    max_line_bytes: int = PositiveInt
    raw_text_max_chars: int = PositiveInt
    repeats_broadcast_max_rows: int = PositiveInt
    sources_at_once: int = PositiveInt


class Organize(Section):
    """The organize stage (``organize``): sessions, rebuilds, identity and the customer 360."""

    session_gap_minutes: int = PositiveInt
    full_refresh: bool
    steps_at_once: int = PositiveInt
    identity: Identity
    customer_360: Customer360


class Identity(Section):
    """Identity resolution (``organize.identity``): which pairs of accounts are one person, and how their ids are kept."""

    max_accounts_per_key: int = PositiveInt
    link_min_probability: float = Field(gt=0, lt=1)
    truth_file: Optional[str]
    weights: MatchWeights
    broadcast_max_rows: int = PositiveInt
    driver_components_max_edges: int = Field(ge=0)


class MatchWeights(Section):
    """The match weights' estimation (``organize.identity.weights``): the EM's inputs, and the m and u shares it starts from."""

    min_pairs_to_estimate: int = PositiveInt
    em_iterations: int = PositiveInt
    random_pairs: int = PositiveInt
    reestimate_after_days: int = PositiveInt
    prior: float = Field(gt=0, lt=1)
    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]

    @model_validator(mode="after")
    def shares_are_probabilities(self):
        for name, table in (("m", self.m), ("u", self.u)):
            for comparison, levels in table.items():
                if not all(0 < v < 1 for v in levels.values()):
                    raise ValueError(f"weights.{name}.{comparison}: every level's share must lie between 0 and 1, got {levels}")
        return self


class Customer360(Section):
    """The customer 360's plausibility and staleness rules and price bands (``organize.customer_360``)."""

    student_max_age: int = PositiveInt
    min_plausible_age: int = PositiveInt
    max_plausible_age: int = PositiveInt
    stale_profile_days: int = PositiveInt
    price_band_low_below: float = Field(ge=0)
    price_band_high_from: float = Field(ge=0)


class Decide(Section):
    """The decide stage (``decide``): the contact policy."""

    policy: Policy


class Policy(Section):
    """The contact policy (``decide.policy``): the frequency cap and the quiet days after a service complaint."""

    max_contacts: int = Field(ge=0)
    window_days: int = PositiveInt
    complaint_quiet_days: int = Field(ge=0)


class Campaigns(Section):
    """The campaigns, shared by analyze (each audience's uplift model, learnt once its
    attribution window is complete) and decide (who each audience contacts, and its results)."""

    attribution_days: int = PositiveInt
    internal_channels: list[str]
    cost_per_contact: CostPerContact
    audiences: list[Audience]

    @model_validator(mode="after")
    def raw_contact_on_internal_channels_only(self) -> "Campaigns":
        for audience in self.audiences:
            if audience.raw_contact and audience.channel not in self.internal_channels:
                raise ValueError(f"audience {audience.name!r}: raw_contact is allowed only for an internal channel "
                                 f"(campaigns.internal_channels = {self.internal_channels})")
        return self


class CostPerContact(Section):
    """One contact's cost per channel in ``business.currency``: campaign cost (analyze) and each audience's ROI (decide)."""

    email: float = Field(ge=0)
    sms: float = Field(ge=0)
    ads: float = Field(ge=0)


# An audience's name is a folder under the exports (and part of model names): a slug, so it can
# neither climb out of the exports (``../x``, ``a/b``) nor hide from the page and from erasure
# amendments (``.x``). crmlake.exports checks it again before publishing.
AUDIENCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
NOT_AUDIENCES = (REPORTS_DIR, SUMMARY_DIR)   # the other folders under the exports root
UPLIFT_COLUMN = re.compile(r"\buplift\b")


class Audience(Section):
    """One audience of ``campaigns.audiences``: a rule (Spark SQL) over the scored persons, the
    order its best are taken in, and where they go. The keys an entry may leave out have
    their defaults here (a list's entries have none in base.yaml)."""

    name: str = Field(pattern=AUDIENCE_NAME_PATTERN)
    description: str = ""
    rule: str
    order_by: str = "propensity_score DESC"
    limit: int = Field(default=100_000, gt=0)
    channel: Literal["email", "sms", "ads"]
    priority: int = 100                       # served by priority, 1 first
    control_share: float = Field(default=0.1, ge=0, lt=1)
    raw_contact: bool = False                 # raw email and phone in its file: internal channels only
    platform_format: Optional[Literal["google_customer_match", "meta_custom_audience"]] = None
    target: Literal["persons", "companies"] = "persons"

    @field_validator("name")
    @classmethod
    def not_another_exports_folder(cls, value: str) -> str:
        if value in NOT_AUDIENCES:
            raise ValueError(f"the name is taken by the exports' {value}/ folder")
        return value

    @model_validator(mode="after")
    def platform_file_for_ads_only(self) -> "Audience":
        if self.platform_format is not None and self.channel != "ads":
            raise ValueError(f"audience {self.name!r}: platform_format is for an ads audience (channel is {self.channel!r})")
        return self

    @property
    def uses_uplift(self) -> bool:
        """True when the rule or ``order_by`` reads the ``uplift`` column."""
        return bool(UPLIFT_COLUMN.search(f"{self.rule} {self.order_by}"))


def _resolve_sections(section: type[Section] = Section) -> None:
    """Resolve every section's annotations: each names the sections below it before they are
    declared (this file reads top-down, as base.yaml does)."""
    for child in section.__subclasses__():
        child.model_rebuild(force=True)
        _resolve_sections(child)


_resolve_sections()
