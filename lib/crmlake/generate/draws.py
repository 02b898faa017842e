"""Deterministic random draws as Spark columns: the same seed and ids give the same values,
whatever the partitioning, because every draw is a hash of (seed, salt, ids)."""

from __future__ import annotations

import math
from typing import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

_MANTISSA = (1 << 53) - 1


def uniform(seed: int, salt: str, *ids) -> Column:
    """Return a uniform draw in [0, 1) from hashing ``seed``, ``salt`` and the id columns."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *[F.col(i) if isinstance(i, str) else i for i in ids])
    return (hashed.bitwiseAND(F.lit(_MANTISSA)) / float(1 << 53)).cast("double")


def normal(seed: int, salt: str, *ids) -> Column:
    """Return a standard normal draw (Box-Muller over two uniforms)."""
    u1 = F.greatest(uniform(seed, salt + ".1", *ids), F.lit(1e-12))
    u2 = uniform(seed, salt + ".2", *ids)
    return F.sqrt(-2 * F.log(u1)) * F.cos(2 * math.pi * u2)


def geometric(mean: Column, u: Column) -> Column:
    """Return a count >= 0 with the given mean (geometric: P(n >= k) = q^k, q = mean / (1 + mean))."""
    q = mean / (mean + 1)
    return F.when(mean <= 0, F.lit(0)).otherwise(F.floor(F.log(F.greatest(u, F.lit(1e-12))) / F.log(q))).cast("int")


def choice(u: Column, values: Sequence, weights: Sequence[float] | None = None) -> Column:
    """Return one of ``values`` picked by the uniform ``u`` with ``weights`` (default equal)."""
    weights = list(weights) if weights is not None else [1.0] * len(values)
    total = float(sum(weights))
    cumulative, expr = 0.0, None
    for value, weight in zip(values[:-1], weights[:-1]):
        cumulative += weight / total
        expr = F.when(u < cumulative, F.lit(value)) if expr is None else expr.when(u < cumulative, F.lit(value))
    return F.lit(values[-1]) if expr is None else expr.otherwise(F.lit(values[-1]))
