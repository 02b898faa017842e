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
``lake``, ``mlflow``, ``campaigns``), never another stage's.
"""

from __future__ import annotations

import re
from typing import Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmlake.files import local_path
from crmlake.summaries import REPORTS_DIR, SUMMARY_DIR

PositiveInt = Field(gt=0)
Share = Field(ge=0, lt=1)


class Section(BaseModel):
    """A configuration section: unknown keys are errors, numbers given as text are parsed, and
    nothing changes it once validated (a variant is a copy: ``Conf.with_overrides``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)


class Paths(Section):
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
    timezone: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    default_phone_region: str = Field(pattern=r"^[A-Z]{2}$")

    @field_validator("timezone")
    @classmethod
    def known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Taipei, Europe/Paris, UTC)") from None
        return value


class Spark(Section):
    master: str
    app_name: str
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
    conf: dict[str, str | bool | int | float]  # Spark's own keys, passed through as text


class RetentionDays(Section):
    bronze: int = Field(ge=0)
    silver: int = Field(ge=0)
    gold: int = Field(ge=0)


class Lease(Section):
    wait_seconds: float = Field(ge=0)
    expiry_seconds: float = Field(gt=0)
    heartbeat_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def renewed_before_it_expires(self) -> "Lease":
        if self.heartbeat_seconds >= self.expiry_seconds:
            raise ValueError(f"heartbeat_seconds ({self.heartbeat_seconds}) must be below expiry_seconds ({self.expiry_seconds}): a live holder would lose its lease")
        return self


class LakeSettings(Section):
    engine: Literal["auto", "rs", "spark"]
    resolve_delta_jars: bool
    target_file_rows: int = PositiveInt
    small_file_bytes: int = PositiveInt
    retention_days: RetentionDays
    lease: Lease


class Mlflow(Section):
    tracking_uri: str
    artifact_root: Optional[str]
    experiment: str


class Acquire(Section):
    max_line_bytes: int = PositiveInt
    raw_text_max_chars: int = PositiveInt
    repeats_broadcast_max_rows: int = PositiveInt


class MatchWeights(Section):
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


class Identity(Section):
    max_accounts_per_key: int = PositiveInt
    link_min_probability: float = Field(gt=0, lt=1)
    truth_file: Optional[str]
    weights: MatchWeights
    broadcast_max_rows: int = PositiveInt


class Customer360(Section):
    student_max_age: int = PositiveInt
    min_plausible_age: int = PositiveInt
    max_plausible_age: int = PositiveInt
    stale_profile_days: int = PositiveInt
    price_band_low_below: float = Field(ge=0)
    price_band_high_from: float = Field(ge=0)


class Organize(Section):
    session_gap_minutes: int = PositiveInt
    full_refresh: bool
    identity: Identity
    customer_360: Customer360


class Propensity(Section):
    model_name: str
    label_days: int = PositiveInt
    holdout_share: float = Field(gt=0, lt=1)
    seed: int
    max_iter: int = PositiveInt
    trees: int = PositiveInt
    tree_depth: int = PositiveInt
    champion_margin: float = Field(ge=0)


class Segmentation(Section):
    model_name: str
    k_range: tuple[int, int]
    seed: int
    champion_margin: float = Field(ge=0)

    @field_validator("k_range")
    @classmethod
    def ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= value[0] <= value[1]:
            raise ValueError(f"{list(value)} must be [low, high] with 2 <= low <= high")
        return value


class NextBestCategory(Section):
    model_name: str
    max_iter: int = PositiveInt
    top_n: int = PositiveInt
    champion_margin: float = Field(ge=0)


class Uplift(Section):
    model_name: str
    contact_dates: int = PositiveInt
    min_group_persons: int = PositiveInt
    max_iter: int = PositiveInt
    champion_margin: float = Field(ge=0)


class LifetimeValue(Section):
    time_unit_days: float = Field(gt=0)   # recency and T are fractions of the unit
    horizon_days: int = PositiveInt
    min_repeat_buyers: int = PositiveInt


class Value(Section):
    most_valuable_top_share: float = Field(gt=0, le=1)
    growth_ratio: float = Field(gt=0)
    growth_min_value: float = Field(ge=0)
    margin: float = Field(ge=0, le=1)
    cost_to_serve: float = Field(ge=0)


class Reports(Section):
    trend_days: int = PositiveInt
    trailing_weeks: int = PositiveInt
    top_n: int = PositiveInt


class Loyalty(Section):
    repeat_min_orders: int = PositiveInt
    advocate_min_referred_buyers: int = PositiveInt


class Ranking(Section):
    quantile_accuracy: int = PositiveInt
    pareto_ranges: int = Field(ge=2)


class Analyze(Section):
    rfm_quantiles: int = Field(ge=2)
    training_max_persons: int = PositiveInt
    ranking: Ranking
    propensity: Propensity
    segmentation: Segmentation
    next_best_category: NextBestCategory
    uplift: Uplift
    lifetime_value: LifetimeValue
    value: Value
    reports: Reports
    loyalty: Loyalty


class Policy(Section):
    """The contact policy (``decide.policy``): the frequency cap and the quiet days after a service complaint."""

    max_contacts: int = Field(ge=0)
    window_days: int = PositiveInt
    complaint_quiet_days: int = Field(ge=0)


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


class Campaigns(Section):
    """The campaigns, shared by analyze (each audience's uplift model, learnt once its
    attribution window is complete) and decide (who each audience contacts, and its results)."""

    attribution_days: int = PositiveInt
    internal_channels: list[str]
    audiences: list[Audience]

    @model_validator(mode="after")
    def raw_contact_on_internal_channels_only(self) -> "Campaigns":
        for audience in self.audiences:
            if audience.raw_contact and audience.channel not in self.internal_channels:
                raise ValueError(f"audience {audience.name!r}: raw_contact is allowed only for an internal channel "
                                 f"(campaigns.internal_channels = {self.internal_channels})")
        return self


class Decide(Section):
    policy: Policy


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
