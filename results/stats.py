"""The statistics behind the tables: mean and spread over seeds, Student-t confidence
intervals of paired gains, and Spearman's rank correlation of gain with model size."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["mean_std", "ci_half_width", "spearman"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std); nan for no values, std 0 for one."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def ci_half_width(values: Sequence[float], confidence: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean: t_{(1+c)/2, n-1} s / sqrt(n).

    The seeds' gains are paired differences (same seed for base and SAM), so this is the paired
    t interval. nan for fewer than two values: one seed gives no interval."""
    n = len(values)
    if n < 2:
        return math.nan
    from scipy import stats  # here: scipy costs ~0.8 s to import and most callers never need it

    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return float(t * statistics.stdev(values) / math.sqrt(n))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of y against x; nan with fewer than 3 points or a constant series (a rank
    correlation of 2 points is always +-1 and says nothing about a trend)."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if not (math.isnan(a) or math.isnan(b))]
    if len(pairs) < 3 or len({b for _, b in pairs}) < 2 or len({a for a, _ in pairs}) < 2:
        return math.nan
    from scipy import stats

    return float(stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
