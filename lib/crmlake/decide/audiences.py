"""Audiences: a rule over the scored member table, consent enforced whatever the rule says."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.config import ConfigError

EXPORT_COLUMNS = ("account_id", "propensity_score", "propensity_decile", "segment", "rfm_cell")


@dataclass(frozen=True)
class Audience:
    """One audience definition from conf ``decide.audiences``."""

    name: str
    description: str
    rule: str
    order_by: str
    limit: int
    channel: str

    @classmethod
    def from_conf(cls, entry: dict) -> "Audience":
        """Build an audience from one conf entry; raises ConfigError naming a missing key."""
        missing = [k for k in ("name", "rule", "channel") if not entry.get(k)]
        if missing:
            raise ConfigError(f"decide.audiences entry {entry.get('name', '?')!r}: missing {', '.join(missing)}")
        return cls(
            name=str(entry["name"]),
            description=str(entry.get("description", "")),
            rule=str(entry["rule"]),
            order_by=str(entry.get("order_by", "propensity_score DESC")),
            limit=int(entry.get("limit", 100_000)),
            channel=str(entry["channel"]),
        )


def order_columns(order_by: str) -> list:
    """Turn ``"score DESC, account_id"`` into Spark sort columns; raises ConfigError on a bad term."""
    columns = []
    for term in (t.strip() for t in order_by.split(",") if t.strip()):
        parts = term.split()
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise ConfigError(f"decide.audiences order_by {order_by!r}: expected 'column [ASC|DESC], ...'")
        column = F.expr(parts[0])
        columns.append(column.desc_nulls_last() if direction == "DESC" else column.asc_nulls_last())
    return columns


def select_audience(scores: DataFrame, audience: Audience) -> DataFrame:
    """Return the members matching ``audience.rule``, consenting, best first, at most ``limit``.

    Takes one score date of ``gold.customer_scores``; returns EXPORT_COLUMNS.
    Marketing consent is required here whatever the rule says.
    """
    matched = scores.where(F.expr(audience.rule)).where(F.col("marketing_consent"))
    return matched.orderBy(*order_columns(audience.order_by), "account_id").limit(audience.limit).select(*EXPORT_COLUMNS)
