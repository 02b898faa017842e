"""The analyze stage's configuration (``analyze`` in base.yaml): each of its sections, in
base.yaml's order. Part of the one configuration :class:`crmlake.config_schema.CrmlakeConf`
(which resolves these sections' references to one another once all are declared)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from crmlake.config_section import PositiveInt, Section


class Analyze(Section):
    """The analyze stage (``analyze``): RFM, rankings, the models, lifetime value, value tiers, reports, loyalty, service, acquisition."""

    rfm_quantiles: int = Field(ge=2)
    training_max_persons: int = PositiveInt
    steps_at_once: int = PositiveInt
    ranking: Ranking
    propensity: Propensity
    segmentation: Segmentation
    next_best_category: NextBestCategory
    uplift: Uplift
    lifetime_value: LifetimeValue
    value: Value
    profit: Profit
    reports: Reports
    loyalty: Loyalty
    service: Service
    retention: Retention
    acquisition: Acquisition


class Ranking(Section):
    """How persons are ranked over every core (``analyze.ranking``): the quantiles' accuracy and the Pareto curve's ranges."""

    quantile_accuracy: int = PositiveInt
    pareto_ranges: int = Field(ge=2)


class ModelSettings(Section):
    """The keys every model's section has: the name it is registered under, and the margin by
    which a challenger must beat the champion on the holdout to replace it."""

    model_name: str
    champion_margin: float = Field(ge=0)


class Propensity(ModelSettings):
    """The purchase-propensity model (``analyze.propensity``): label window, holdout, estimators and the champion's margin."""

    label_days: int = PositiveInt
    holdout_share: float = Field(gt=0, lt=1)
    seed: int
    max_iter: int = PositiveInt
    trees: int = PositiveInt
    tree_depth: int = PositiveInt


class Segmentation(ModelSettings):
    """The behavioural segmentation (``analyze.segmentation``): the range of k tried and the champion's margin."""

    k_range: tuple[int, int]
    seed: int

    @field_validator("k_range")
    @classmethod
    def ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= value[0] <= value[1]:
            raise ValueError(f"{list(value)} must be [low, high] with 2 <= low <= high")
        return value


class NextBestCategory(ModelSettings):
    """The next-best-category model (``analyze.next_best_category``): categories offered and the champion's margin."""

    max_iter: int = PositiveInt
    top_n: int = PositiveInt


class Uplift(ModelSettings):
    """Each audience's uplift model (``analyze.uplift``): the contact dates and group sizes it needs."""

    contact_dates: int = PositiveInt
    min_group_persons: int = PositiveInt
    max_iter: int = PositiveInt


class LifetimeValue(Section):
    """Lifetime value (``analyze.lifetime_value``): the time unit, the horizon and the repeat buyers needed to fit."""

    time_unit_days: float = Field(gt=0)   # recency and T are fractions of the unit
    horizon_days: int = PositiveInt
    min_repeat_buyers: int = PositiveInt


class Value(Section):
    """Value tiers (``analyze.value``): the most valuable share, the growth rule, margin and cost to serve."""

    most_valuable_top_share: float = Field(gt=0, le=1)
    growth_ratio: float = Field(gt=0)
    growth_min_value: float = Field(ge=0)
    margin: float = Field(ge=0, le=1)
    cost_to_serve: float = Field(ge=0)


class Profit(Section):
    """Customer profitability (``analyze.profit``): each product category's margin (the share of
    the list price left after the cost of goods; ``default_margin`` for a category not listed),
    and what handling a returned line and a service contact cost (a marketing contact's cost:
    ``campaigns.cost_per_contact``)."""

    category_margin: dict[str, Annotated[float, Field(ge=0, le=1)]]
    default_margin: float = Field(ge=0, le=1)
    return_cost: float = Field(ge=0)
    service_contact_cost: float = Field(ge=0)


class Reports(Section):
    """The manager's reports (``analyze.reports``): the trend's days, the weeks each figure is compared with, the top lists."""

    trend_days: int = PositiveInt
    trailing_weeks: int = PositiveInt
    top_n: int = PositiveInt


class Loyalty(Section):
    """The loyalty ladder's rungs (``analyze.loyalty``): a repeat buyer has at least
    ``repeat_min_orders`` orders, an advocate has referred ``advocate_min_referred_buyers`` buyers;
    a latest rating in the ``satisfaction_recent_days`` below ``satisfied_min_rating`` is no
    satisfied customer."""

    repeat_min_orders: int = PositiveInt
    advocate_min_referred_buyers: int = PositiveInt
    satisfied_min_rating: int = Field(ge=1, le=5)
    satisfaction_recent_days: int = PositiveInt


class Service(Section):
    """The service desk's figures (``analyze.service``): the hours within which a contact should
    close (one value, and any channel's own), and who is a repeat complainer worth a call."""

    target_hours: float = Field(gt=0)
    target_hours_by_channel: dict[str, float]
    repeat_complaints: int = PositiveInt
    complaint_window_days: int = PositiveInt
    high_value_tiers: list[str]

    @field_validator("target_hours_by_channel")
    @classmethod
    def positive_hours(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {channel: hours for channel, hours in value.items() if hours <= 0}
        if bad:
            raise ValueError(f"every channel's target must be a positive number of hours, got {bad}")
        return value

    def target_of(self, channel: str) -> float:
        """Return the hours a contact on ``channel`` should close within."""
        return self.target_hours_by_channel.get(channel, self.target_hours)


class Retention(Section):
    """Retention and churn (``analyze.retention``): the churn ranking's judged window, and the
    thresholds of each churn reason (:mod:`crmlake.analyze.retention` defines them)."""

    churn_days: int = PositiveInt
    overdue_factor: float = Field(gt=0)
    complaint_days: int = PositiveInt
    visit_window_days: int = PositiveInt
    visit_drop_share: float = Field(gt=0, le=1)
    min_earlier_visits: int = PositiveInt


class Acquisition(Section):
    """Where new customers come from (``analyze.acquisition``): the days from acquisition over
    which a new customer's early value is counted."""

    value_days: int = PositiveInt
