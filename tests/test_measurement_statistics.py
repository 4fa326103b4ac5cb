"""Estimators and noise flags on seeded synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.measurement import statistics as noise
from ablate.measurement.statistics import (
    Interval,
    bootstrap_median_interval,
    interquartile_range,
    median,
    median_interval,
    normal_median_interval,
    paired_ratios,
    ratio_interval,
)


def test_median_and_iqr_of_known_samples():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert median(samples) == 3.0
    assert interquartile_range(samples) == pytest.approx(2.0)  # 4 - 2, the outlier ignored


def test_interval_helpers():
    interval = Interval(0.98, 1.02)
    assert interval.contains(1.0) and not interval.contains(1.03)
    assert interval.relative_half_width(1.0) == pytest.approx(0.02)
    assert interval.overlaps(Interval(1.01, 1.2)) and not interval.overlaps(Interval(1.03, 1.2))
    assert interval.scaled(1e3).as_pair() == pytest.approx((980.0, 1020.0))


def test_bootstrap_interval_is_seeded_and_brackets_the_median():
    samples = np.random.default_rng(0).normal(10.0, 1.0, 400)
    first = bootstrap_median_interval(samples, rng=np.random.default_rng(1))
    again = bootstrap_median_interval(samples, rng=np.random.default_rng(1))
    assert first == again
    assert first.low < median(samples) < first.high
    # Width of a median interval at n=400, sigma=1: about 2 x 1.96 x 1.25 / 20 = 0.25.
    assert 0.12 < first.high - first.low < 0.4


def test_bootstrap_handles_long_runs_in_chunks():
    samples = np.random.default_rng(0).normal(10.0, 1.0, 20_000)
    interval = bootstrap_median_interval(samples, rng=np.random.default_rng(0), resamples=300)
    assert interval.contains(10.0)


def test_median_interval_is_the_order_statistic_pair():
    samples = np.arange(1.0, 31.0)  # n = 30: the sign-test interval is x(10) .. x(21)
    assert median_interval(samples).as_pair() == (10.0, 21.0)


def test_median_interval_of_too_few_samples_is_the_full_range():
    assert median_interval([3.0, 1.0, 2.0]).as_pair() == (1.0, 3.0)


def test_normal_median_interval_of_lognormal_samples():
    samples = np.random.default_rng(0).lognormal(0.0, 0.05, 400)
    interval = normal_median_interval(samples)
    # 1.96 x 1.2533 x 0.05 / 20 = 0.61% either side of the median.
    assert interval.relative_half_width(median(samples)) == pytest.approx(0.0061, rel=0.15)
    assert interval.contains(1.0)


def test_ratio_interval_is_the_union_of_both():
    ratios = np.random.default_rng(3).lognormal(0.0, 0.03, 50)
    union = ratio_interval(ratios)
    for part in (median_interval(ratios), normal_median_interval(ratios)):
        assert union.low <= part.low and part.high <= union.high
    assert union.low in (median_interval(ratios).low, normal_median_interval(ratios).low)


def test_ratio_interval_covers_one_in_at_least_95_percent_of_a_a_comparisons():
    # The property the A/A benchmark checks on real timings, here on lognormal rounds.
    rng = np.random.default_rng(42)
    covered = 0
    trials = 400
    for _ in range(trials):
        baseline = rng.lognormal(np.log(0.01), 0.05, 80)
        same = rng.lognormal(np.log(0.01), 0.05, 80)
        covered += ratio_interval(paired_ratios(same, baseline)).contains(1.0)
    assert covered / trials >= 0.95


def test_paired_ratios_cancel_a_shared_drift():
    drift = np.linspace(1.0, 1.3, 50)  # the machine slows by 30% over the run
    ratios = paired_ratios(0.0103 * drift, 0.010 * drift)
    assert ratios == pytest.approx(np.full(50, 1.03))


def test_spread_flag_above_ten_percent_iqr():
    rng = np.random.default_rng(0)
    calm = rng.lognormal(0.0, 0.02, 200)
    jittery = rng.lognormal(0.0, 0.2, 200)  # IQR ~ 27% of the median
    assert noise.spread_flags(calm, noise.NoiseThresholds()) == []
    (flag,) = noise.spread_flags(jittery, noise.NoiseThresholds())
    assert flag.name == noise.HIGH_IQR
    assert "% of the median" in flag.detail


def test_drift_flag_needs_a_large_and_clear_shift():
    rng = np.random.default_rng(0)
    steady = rng.normal(1.0, 0.02, 90)
    shifted = np.concatenate([rng.normal(1.0, 0.02, 45), rng.normal(1.08, 0.02, 45)])
    small_shift = np.concatenate([rng.normal(1.0, 0.02, 45), rng.normal(1.03, 0.02, 45)])
    kwargs = {"name": noise.DRIFT, "threshold": 0.05, "what": "latency median"}
    assert noise.drift_flags(steady, **kwargs) == []
    assert noise.drift_flags(small_shift, **kwargs) == []  # clear, but below 5%
    (flag,) = noise.drift_flags(shifted, **kwargs)
    assert flag.name == noise.DRIFT
    assert "+8." in flag.detail or "+7." in flag.detail


def test_drift_is_not_judged_on_too_few_rounds():
    assert noise.drift_flags([1.0] * 9 + [2.0] * 8, name="drift", threshold=0.05, what="x") == []


def test_wide_interval_flag():
    assert noise.wide_interval_flags(Interval(0.995, 1.005), 1.0, 0.01, "ratio") == []
    (flag,) = noise.wide_interval_flags(Interval(0.97, 1.03), 1.0, 0.01, "ratio")
    assert flag.name == noise.WIDE_INTERVAL
    assert "+/-3.0%" in flag.detail


@pytest.mark.parametrize("count", [4, 5])
def test_drawn_medians_follow_the_bootstrap_distribution_exactly(count: int) -> None:
    """Every one of the count^count equally likely resamples enumerated gives the exact
    distribution of a resampled median; 200,000 drawn medians match it to sampling noise."""
    import itertools

    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0][:count])
    exact: dict[float, float] = {}
    for indices in itertools.product(range(count), repeat=count):
        value = float(np.median(values[list(indices)]))
        exact[value] = exact.get(value, 0.0) + count**-count
    drawn = noise._drawn_medians(values, 200_000, np.random.default_rng(0))
    found, counts = np.unique(drawn, return_counts=True)
    assert set(found.tolist()) <= set(exact)
    frequencies = dict(zip(found.tolist(), (counts / drawn.size).tolist(), strict=True))
    for value, probability in exact.items():
        # 4 standard errors of a frequency from 200,000 draws: at most 0.0045.
        assert abs(frequencies.get(value, 0.0) - probability) < 4 * (0.25 / 200_000) ** 0.5


def test_a_long_run_draws_its_medians_and_keeps_its_interval() -> None:
    """From 10,000 samples on, the interval of a median comes from drawn medians: the
    percentile interval that resampling gives, to the resampling's noise."""
    samples = np.random.default_rng(0).lognormal(0.0, 0.1, 20_000)
    drawn = bootstrap_median_interval(samples, rng=np.random.default_rng(1))
    resampled = noise.resampled_medians(samples[:, None], 400, np.random.default_rng(1))[:, 0]
    low, high = np.quantile(resampled, [0.025, 0.975])
    width = high - low
    assert abs(drawn.low - low) < 0.15 * width and abs(drawn.high - high) < 0.15 * width
