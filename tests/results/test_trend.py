"""The trend test (results/trend.py) against independent values: numpy.polyfit for the slope,
hand-computed pooled variance, normal quantiles and t quantiles from a printed table, exact
permutation counts, and simulations with a planted slope (detection, false verdicts under pure
noise, bootstrap coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from results.trend import TrendTest, trend_test, verdict_sentence

# 5 widths over 2 decades of parameters, the design the issue sizes the test for
PARAMS = [1e4, 10**4.5, 1e5, 10**5.5, 1e6]
# Normal quantiles z_0.975 and z_0.8 and the Student t 97.5% quantile at df = 2, from printed
# tables (not from the statistics modules the code uses)
Z975, Z80 = 1.959963984540054, 0.8416212335729143
T975_DF2 = 4.302652729911275


def _planted(rng: np.random.Generator, slope: float, n_seeds: int = 5, sd: float = 0.1):
    """Gains = slope * log10(params) + N(0, sd^2) per seed (intercept irrelevant to the slope)."""
    return [list(slope * math.log10(p) + 0.3 + rng.normal(0.0, sd, n_seeds)) for p in PARAMS]


def _verdict_rate(slope: float, n_draws: int, verdict: str, rng_seed: int) -> float:
    rng = np.random.default_rng(rng_seed)
    hits = 0
    for k in range(n_draws):
        t = trend_test(PARAMS, _planted(rng, slope), n_perm=999, n_boot=200, seed=k)
        hits += t.verdict == verdict
    return hits / n_draws


def test_slope_equals_polyfit_on_seed_level_points():
    # unsorted widths, unequal seed counts and a nan that must be dropped
    params = [3e5, 2e4, 1e6, 7e4]
    gains = [[0.5, 0.9, math.nan], [0.1, -0.2, 0.4, 0.0], [1.3], [0.2, 0.6]]
    xs = [math.log10(p) for p, g in zip(params, gains) for v in g if not math.isnan(v)]
    ys = [v for g in gains for v in g if not math.isnan(v)]
    t = trend_test(params, gains)
    assert t.slope == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-12)
    assert (t.n_widths, t.n_seeds) == (4, 9)


def test_exact_line_gives_its_slope_and_a_minimal_p():
    gains = [[0.25 * math.log10(p) - 1.0] * 4 for p in PARAMS]
    gains = [[g + d for g, d in zip(gs, (0.01, -0.01, 0.02, -0.02))] for gs in gains]
    t = trend_test(PARAMS, gains, n_perm=999)
    assert t.slope == pytest.approx(0.25, rel=1e-12)
    # no permutation of 20 well-separated gains matches the sorted one: p = 1 / (n_perm + 1)
    assert t.p_rises == pytest.approx(1 / 1000)
    assert t.p_falls == 1.0
    assert t.verdict == "rises"
    assert t.spearman == pytest.approx(1.0)


def test_permutation_p_matches_exact_enumeration():
    # 3 widths x 1 seed with increasing gains: 1 of the 3! = 6 orders is as steep as observed
    t = trend_test([1e3, 1e4, 1e5], [[0.1], [0.5], [0.7]], n_perm=5999)
    assert t.p_rises == pytest.approx(1 / 6, abs=0.02)
    assert t.p_falls == 1.0  # every permutation is <= the steepest one
    assert t.verdict == "no trend detected"  # the smallest possible p, 1/6, cannot decide


@pytest.mark.parametrize("slope, verdict", [(0.2, "rises"), (-0.2, "falls")])
def test_planted_slope_is_detected(slope, verdict):
    assert _verdict_rate(slope, n_draws=50, verdict=verdict, rng_seed=1) >= 0.9


def test_pure_noise_gives_no_trend_in_at_least_95_percent():
    # family-wise: rises or falls under pure noise must together stay <= 5% (alpha/2 per side)
    assert _verdict_rate(0.0, n_draws=200, verdict="no trend detected", rng_seed=2) >= 0.95


def test_bootstrap_interval_covers_the_true_slope():
    rng = np.random.default_rng(3)
    covered = 0
    for k in range(100):
        lo, hi = trend_test(PARAMS, _planted(rng, 0.1), n_perm=99, seed=k).slope_ci95
        covered += lo <= 0.1 <= hi
    assert 0.85 <= covered / 100 <= 1.0


def test_min_detectable_slope_by_hand():
    # x = 1, 2, 3; width means 0.1, 0.2, 0.3; within-width sums of squares 0.02, 0.02, 0.08
    # sigma^2 = 0.12 / (6 - 3) = 0.04; Sxx = 2 * (1 + 0 + 1) = 4; SE = sqrt(0.04 / 4) = 0.1
    t = trend_test([10, 100, 1000], [[0.0, 0.2], [0.1, 0.3], [0.5, 0.1]])
    assert t.min_detectable_slope == pytest.approx(0.1 * (Z975 + Z80), rel=1e-9)
    # slope = sum_i n_i (x_i - xbar) mean_i / Sxx = 2 * (-0.1 + 0.3) / 4
    assert t.slope == pytest.approx(0.1, rel=1e-12)


def test_largest_width_interval_and_call_by_hand():
    # the largest width is found by params, not by position; 3 seeds -> t with df = 2
    tight = trend_test([1e6, 1e4, 1e5], [[1.9, 2.0, 2.1], [0.0, 0.1], [0.2, 0.3]])
    half = T975_DF2 * 0.1 / math.sqrt(3)
    assert tight.largest_gain == pytest.approx(2.0)
    assert tight.largest_gain_ci95 == pytest.approx((2.0 - half, 2.0 + half))
    assert tight.at_largest == "SAM better"
    worse = trend_test([1e4, 1e6], [[0.0, 0.1], [-2.1, -2.0, -1.9]])
    assert worse.at_largest == "SAM worse"
    wide = trend_test([1e4, 1e6], [[0.0, 0.1], [1.0, 2.0, 3.0]])  # 2 +- 4.30 / sqrt(3)
    assert wide.largest_gain_ci95[0] < 0 < wide.largest_gain_ci95[1]
    assert wide.at_largest == "not resolved"


def test_one_width_is_too_few():
    t = trend_test([1e5], [[0.1, 0.2, 0.3]])
    assert t.verdict == "too few widths"
    assert math.isnan(t.slope) and math.isnan(t.p_rises) and math.isnan(t.spearman)
    assert t.largest_gain == pytest.approx(0.2)  # the largest width is still reported
    assert "too few widths" in verdict_sentence(t)


def test_nan_gains_and_empty_widths_are_dropped():
    clean = trend_test(PARAMS[:3], [[0.1, 0.2], [0.3, 0.2], [0.5, 0.4]])
    dirty = trend_test(
        PARAMS[:3] + [1e7],
        [[0.1, math.nan, 0.2], [0.3, 0.2], [math.inf, 0.5, 0.4], [math.nan, math.nan]],
    )
    assert dirty == clean
    assert dirty.n_widths == 3 and dirty.n_seeds == 6
    # 2 widths x 1 gain = 2 gains < 3: no slope to test
    assert trend_test([1e4, 1e5], [[0.1, math.nan], [0.2]]).verdict == "too few widths"


def test_one_seed_per_width_has_no_power_estimate():
    gains = [[0.02 * i] for i in range(5)]
    t = trend_test(PARAMS, gains)
    assert t.slope == pytest.approx(0.04)  # 0.02 per half decade
    assert math.isnan(t.min_detectable_slope)
    assert all(math.isnan(v) for v in t.slope_ci95)  # a bootstrap of single seeds cannot vary
    assert t.at_largest == "not resolved"
    # 5 increasing points: p ~ 1/5! can still decide, from the permutation test alone
    assert t.verdict == "rises"
    assert "no within-width variance" in verdict_sentence(t)


def test_same_seed_same_result_and_streams_are_independent():
    gains = _planted(np.random.default_rng(4), 0.05)
    a, b = trend_test(PARAMS, gains, seed=7), trend_test(PARAMS, gains, seed=7)
    assert a == b
    fewer_boot = trend_test(PARAMS, gains, seed=7, n_boot=500)
    assert (fewer_boot.p_rises, fewer_boot.p_falls) == (a.p_rises, a.p_falls)
    assert trend_test(PARAMS, gains, seed=8).slope_ci95 != a.slope_ci95


def _no_trend(mds: float) -> TrendTest:
    return TrendTest(
        n_widths=5,
        n_seeds=25,
        slope=0.01,
        slope_ci95=(-0.03, 0.05),
        p_rises=0.2,
        p_falls=0.8,
        verdict="no trend detected",
        min_detectable_slope=mds,
        spearman=0.5,
        largest_gain=0.1,
        largest_gain_ci95=(-0.1, 0.3),
        at_largest="not resolved",
    )


def test_verdict_sentence_reports_power_with_and_without_paper_slope():
    t = _no_trend(0.12)
    plain = verdict_sentence(t, "pp")
    assert plain.startswith("no trend detected")
    assert "0.12 pp per decade" in plain and "p = 0.40 two-sided" in plain
    assert "paper" not in plain
    enough = verdict_sentence(t, paper_slope=-0.2)  # |paper slope| counts, not its sign
    assert "paper's slope of -0.2 would have been detectable" in enough
    short = verdict_sentence(t, paper_slope=0.05)
    assert "would not have been detectable: not enough power" in short
    unknown = verdict_sentence(_no_trend(math.nan), paper_slope=0.05)
    assert "no within-width variance" in unknown and "unknown" in unknown
    assert "would have been detectable" not in unknown


def test_verdict_sentence_for_a_detected_fall():
    gains = [[-0.2 * math.log10(p) + d for d in (0.0, 0.05, -0.05)] for p in PARAMS]
    t = trend_test(PARAMS, gains, n_perm=999)
    s = verdict_sentence(t)
    assert s.startswith("gain falls with width: slope -0.2 per decade")
    assert f"p = {t.p_falls:.2g} (one-sided)" in s and t.p_falls < 0.01
    assert "SAM worse" in s
