"""Pure statistics over trial samples. A missed detection counts as +infinity, so a percentile
that lands on a miss reads "missed" instead of quietly shrinking the sample."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

__all__ = ["iqr", "median", "median_ci", "percentile", "spread"]

MISSED = math.inf


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks; None for no samples.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([1.0, 2.0, float("inf")], 95)
    inf
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if ordered[high] == MISSED:
        return MISSED
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float | None:
    return percentile(samples, 50)


def iqr(samples: Sequence[float]) -> float | None:
    """Interquartile range; None if there are fewer than 4 samples or the quartile is a miss."""
    if len(samples) < 4:
        return None
    q1, q3 = percentile(samples, 25), percentile(samples, 75)
    if q1 is None or q3 is None or math.isinf(q3):
        return None
    return q3 - q1


def spread(samples: Sequence[float]) -> tuple[float, float] | None:
    """(min, max) of the finite samples."""
    finite = [s for s in samples if math.isfinite(s)]
    return (min(finite), max(finite)) if finite else None


def median_ci(
    samples: Sequence[float], *, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """A bootstrap confidence interval of the median: how far a rerun's p50 could move.

    >>> median_ci([0.1] * 8)
    (0.1, 0.1)
    """
    if len(samples) < 3:
        return None
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(samples, k=len(samples))) for _ in range(resamples)
    )
    low = medians[int((1 - level) / 2 * resamples)]
    high = medians[int((1 + level) / 2 * resamples) - 1]
    if math.isinf(low) or math.isinf(high):
        return None
    return low, high
