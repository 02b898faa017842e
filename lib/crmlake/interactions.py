"""Service contacts as the contract defines them, shared by the stages that read
``bronze.interactions``: a contact may arrive again, closed or rated later, and counts in its
latest version everywhere (organize's customer 360, analyze's service figures)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.lake import latest_per_key


def latest_contacts(interactions: DataFrame) -> DataFrame:
    """Return ``interactions`` (bronze.interactions rows) with one row per ``interaction_id``:
    its latest version, by closing time (else opening time), then the latest ingested."""
    return latest_per_key(
        interactions.withColumn("_as_of", F.coalesce("closed_time", "opened_time")), ["interaction_id"], "_as_of", tie_breaker="ingested_at"
    ).drop("_as_of")
