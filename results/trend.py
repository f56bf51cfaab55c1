"""A trend test that can decide: does SAM's paired gain rise or fall with model size?

What it computes, from the seed-level paired gains (SAM minus base, positive = SAM better) at
each width:

- ``slope``: the least-squares slope of gain against log10(parameters) over every seed-level
  point (gain per decade of parameters).
- ``slope_ci95``: a percentile bootstrap interval of that slope; each replicate resamples the
  seeds with replacement within each width (the widths and their group sizes stay fixed).
- ``p_rises`` / ``p_falls``: one-sided permutation p-values. The seed-level gains are permuted
  across widths keeping the group sizes, which is exact under the null "gain does not depend on
  width"; p = (1 + #{permuted slope >= observed}) / (n_perm + 1) for rises and the mirror
  (<=) for falls, so p is never 0 and the test is valid at any n_perm.
- ``min_detectable_slope``: the smallest |slope| this design detects with two-sided level alpha
  and power 0.8, by the normal approximation

      MDS = (z_{1-alpha/2} + z_{power}) * sqrt(sigma^2 / sum_i n_i (x_i - xbar)^2),

  with x_i = log10(params_i), n_i the seeds at width i, xbar the mean of x over all seed-level
  points, and sigma^2 the pooled within-width variance of the gains,
  sum_i sum_j (g_ij - mean_i)^2 / (N - W) (N gains, W widths). The square root is the standard
  error of the least-squares slope. With one seed per width there is no within-width variance,
  so MDS is nan (and the bootstrap interval, which cannot vary, is (nan, nan)).
- ``largest_gain`` and its Student-t 95% interval at the width with the most parameters, and
  ``at_largest``: "SAM better" only if the interval's lower end is > 0, "SAM worse" if its upper
  end is < 0, else "not resolved".
- ``spearman`` of the mean gain per width against log params, kept as a column only.

Why: the report used to call a trend from Spearman's rho of the mean gains over 3 widths. With 3
points rho can only be +-1 or +-0.5, and even rho = 1 has p = 1/6 one-sided (1/3 two-sided), so
it can never reach p < 0.05: a "trend" from it is a coin toss, and "no trend" says nothing. The
slope over seed-level points uses every seed, and its permutation test can reach p ~ 1/(n_perm+1)
with enough seeds (5 widths x 5 seeds have 25!/(5!)^5 distinct splits).

Verdict rule: "rises" iff p_rises < alpha/2, "falls" iff p_falls < alpha/2, else "no trend
detected"; fewer than 2 widths or 3 gains give "too few widths". This is a two-sided test at
alpha reported with its direction. The issue asked for "rises (p < 0.05)" one-sided and for at
least 95% "no trend detected" under pure noise; testing both directions at 0.05 each would give
about 10% false verdicts, so each direction gets alpha/2 and the family-wise false-verdict rate
under noise is <= alpha. The p printed by ``verdict_sentence`` is the one-sided p of the
direction reported (two-sided p = 2 min(p_rises, p_falls) when no trend is detected).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from results.stats import ci_half_width, spearman

__all__ = ["TrendTest", "trend_test", "verdict_sentence"]

VERDICTS = ("rises", "falls", "no trend detected", "too few widths")
_NAN_PAIR = (math.nan, math.nan)


@dataclass(frozen=True)
class TrendTest:
    n_widths: int  # widths with at least one finite gain
    n_seeds: int  # total seed-level paired gains used
    slope: float  # least-squares slope of seed-level gain vs log10(params): gain per decade
    slope_ci95: tuple[float, float]  # percentile bootstrap, seeds resampled within each width
    p_rises: float  # one-sided permutation p-value for "gain rises with width"
    p_falls: float  # one-sided permutation p-value for "gain falls with width"
    verdict: str  # "rises" | "falls" | "no trend detected" | "too few widths"
    min_detectable_slope: float  # smallest |slope| detectable (two-sided alpha, power 0.8)
    spearman: float  # of mean gain per width vs log params (a column, never a verdict)
    largest_gain: float  # mean paired gain at the largest width
    largest_gain_ci95: tuple[float, float]  # Student-t 95% interval; (nan, nan) for < 2 seeds
    at_largest: str  # "SAM better" | "SAM worse" | "not resolved"


def trend_test(
    params: Sequence[float],
    gains: Sequence[Sequence[float]],
    *,
    alpha: float = 0.05,
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    power: float = 0.8,
) -> TrendTest:
    """Test whether the paired gain rises or falls with log10(params); see the module docstring.

    params[i]: parameter count at width i; gains[i]: the paired per-seed gains at width i.
    Non-finite gains are dropped, then widths with no gains left (or a non-positive or
    non-finite parameter count). The output depends only on the data and ``seed``."""
    if len(params) != len(gains):
        raise ValueError(f"{len(params)} parameter counts but {len(gains)} lists of gains")
    groups = []  # (log10 params, finite gains) per usable width
    for p, g in zip(params, gains):
        g = np.asarray(g, dtype=float).ravel()
        g = g[np.isfinite(g)]
        if g.size and math.isfinite(p) and p > 0:
            groups.append((math.log10(p), g))

    largest_gain, largest_ci, at_largest = _at_largest(groups)
    means = [float(g.mean()) for _, g in groups]
    rho = spearman([x for x, _ in groups], means)
    n_gains = sum(g.size for _, g in groups)
    if len(groups) < 2 or n_gains < 3 or len({x for x, _ in groups}) < 2:
        # (two widths with the same parameter count give no slope either)
        return TrendTest(
            n_widths=len(groups),
            n_seeds=n_gains,
            slope=math.nan,
            slope_ci95=_NAN_PAIR,
            p_rises=math.nan,
            p_falls=math.nan,
            verdict="too few widths",
            min_detectable_slope=math.nan,
            spearman=rho,
            largest_gain=largest_gain,
            largest_gain_ci95=largest_ci,
            at_largest=at_largest,
        )

    sizes = np.array([g.size for _, g in groups])
    x = np.repeat([x for x, _ in groups], sizes)  # (N,) log10 params of each seed-level point
    y = np.concatenate([g for _, g in groups])  # (N,) gains, grouped by width
    xc = x - x.mean()
    sxx = float(xc @ xc)
    # The LS slope is sum(xc * y) / Sxx because sum(xc) = 0, so every resampled or permuted
    # gain vector with the same x needs only one matrix-vector product.
    slope = float(xc @ y / sxx)

    # Independent streams, so changing n_boot does not change the permutation p-values.
    boot_seq, perm_seq = np.random.SeedSequence(seed).spawn(2)
    has_replicates = bool((sizes > 1).any())
    slope_ci = _NAN_PAIR
    if has_replicates:
        # Column j draws a seed index within its own width: offset of the width + [0, n_i).
        offsets = np.repeat(np.cumsum(sizes) - sizes, sizes)
        n_of_point = np.repeat(sizes, sizes)
        idx = offsets + np.random.default_rng(boot_seq).integers(0, n_of_point, (n_boot, x.size))
        boot = y[idx] @ xc / sxx  # (n_boot,)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        slope_ci = (float(lo), float(hi))

    perm = np.random.default_rng(perm_seq).permuted(np.tile(y, (n_perm, 1)), axis=1) @ xc / sxx
    # A permutation that reproduces the data must count as ">= observed" despite rounding in a
    # different summation order (the tolerance scipy.stats.permutation_test uses).
    tol = 100 * np.finfo(float).eps * abs(slope)
    p_rises = float((1 + np.count_nonzero(perm >= slope - tol)) / (n_perm + 1))
    p_falls = float((1 + np.count_nonzero(perm <= slope + tol)) / (n_perm + 1))
    if p_rises < alpha / 2:
        verdict = "rises"
    elif p_falls < alpha / 2:
        verdict = "falls"
    else:
        verdict = "no trend detected"

    return TrendTest(
        n_widths=len(groups),
        n_seeds=n_gains,
        slope=slope,
        slope_ci95=slope_ci,
        p_rises=p_rises,
        p_falls=p_falls,
        verdict=verdict,
        min_detectable_slope=_min_detectable_slope(groups, sxx, alpha, power),
        spearman=rho,
        largest_gain=largest_gain,
        largest_gain_ci95=largest_ci,
        at_largest=at_largest,
    )


def _min_detectable_slope(
    groups: list[tuple[float, np.ndarray]], sxx: float, alpha: float, power: float
) -> float:
    """(z_{1-alpha/2} + z_power) * sigma / sqrt(Sxx), sigma^2 pooled within widths; nan when
    no width has two seeds (no within-width variance to pool)."""
    df = sum(g.size - 1 for _, g in groups)
    if df == 0:
        return math.nan
    sigma2 = sum(float(((g - g.mean()) ** 2).sum()) for _, g in groups) / df
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(sigma2 / sxx)


def _at_largest(groups: list[tuple[float, np.ndarray]]) -> tuple[float, tuple[float, float], str]:
    """Mean gain, its Student-t 95% interval and the call at the width with the most params."""
    if not groups:
        return math.nan, _NAN_PAIR, "not resolved"
    g = max(groups, key=lambda group: group[0])[1]
    mean = float(g.mean())
    half = ci_half_width(g.tolist())  # nan for one seed
    if math.isnan(half):
        return mean, _NAN_PAIR, "not resolved"
    lo, hi = mean - half, mean + half
    call = "SAM better" if lo > 0 else "SAM worse" if hi < 0 else "not resolved"
    return mean, (lo, hi), call


def _num(v: float, signed: bool = True) -> str:
    """3 significant digits: gains are percent in some workloads and 1e-3 MSE in others."""
    return "n/a" if math.isnan(v) else f"{v:+.3g}" if signed else f"{v:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def verdict_sentence(t: TrendTest, metric_unit: str = "", paper_slope: float | None = None) -> str:
    """One generated sentence for the report: the verdict, the slope with its interval and
    p-value, whether these seeds had the power to see a trend (against the paper's slope when
    ``paper_slope`` is given, in the same units per decade), and the call at the largest width."""
    unit = f" {metric_unit}" if metric_unit else ""
    per_decade = f"{unit} per decade of parameters"
    mds = t.min_detectable_slope
    no_variance = "one seed per width gives no within-width variance"

    largest = f"at the largest width {t.at_largest} ({_num(t.largest_gain)}{unit}"
    if math.isnan(t.largest_gain_ci95[0]):
        largest += ", one seed)" if not math.isnan(t.largest_gain) else ")"
    else:
        lo, hi = t.largest_gain_ci95
        largest += f" [{_num(lo)}, {_num(hi)}])"

    if t.verdict == "too few widths":
        return (
            f"too few widths for a trend test ({_count(t.n_widths, 'width')}, "
            f"{_count(t.n_seeds, 'gain')}); "
            f"{largest}."
        )

    lo, hi = t.slope_ci95
    ci = "95% CI n/a" if math.isnan(lo) else f"95% CI {_num(lo)}, {_num(hi)}"
    slope = f"slope {_num(t.slope)}{per_decade} [{ci}]"
    if t.verdict in ("rises", "falls"):
        p = t.p_rises if t.verdict == "rises" else t.p_falls
        power = (
            f"minimum detectable slope n/a ({no_variance})"
            if math.isnan(mds)
            else f"minimum detectable slope {_num(mds, signed=False)}"
        )
        return (
            f"gain {t.verdict} with width: {slope}, permutation p = {_p(p)} (one-sided); "
            f"{power}; {largest}."
        )

    p_two = min(1.0, 2 * min(t.p_rises, t.p_falls))
    sentence = f"no trend detected ({slope}, permutation p = {_p(p_two)} two-sided); "
    if math.isnan(mds):
        sentence += f"the power is unknown: {no_variance}"
        if paper_slope is not None:
            sentence += (
                f", so it is unknown whether the paper's slope of {_num(paper_slope)} was "
                "detectable"
            )
    else:
        sentence += (
            f"the smallest slope these seeds could detect is {_num(mds, signed=False)}{unit} "
            "per decade"
        )
        if paper_slope is not None:
            if abs(paper_slope) >= mds:
                sentence += f"; the paper's slope of {_num(paper_slope)} would have been detectable"
            else:
                sentence += (
                    f"; the paper's slope of {_num(paper_slope)} would not have been detectable: "
                    "not enough power"
                )
    return f"{sentence}; {largest}."
