"""Estimators over rounds: medians, spreads, and 95% intervals of medians.

Latency intervals are percentile bootstraps of the median (vectorised numpy, seeded
Generator, so a result is a pure function of its samples and seed).

The ratio interval, which decides significance and stopping, is the union of two intervals
of the median of the per-round ratios:

- the distribution-free one, a pair of order statistics (`scipy.stats.quantile_test`, the
  sign-test inversion): exact 95% coverage at a fixed round count, whatever the
  distribution. A percentile bootstrap of a median covers only about 94% at 100-400 rounds.
- the normal-theory one on the log scale with a robust spread, median x exp(+/-1.96 x
  1.2533 x sigma / sqrt(n)), sigma = IQR / 1.349.

The first alone is not enough once the rule stops adaptively: the gap between order
statistics is noisy, and stopping at the first moment it is narrow selects intervals that
are too narrow (A/A coverage fell to 93-94% in simulation at 40-130 rounds). The second
moves smoothly with n. Their union covered 95.6-97% of simulated A/A runs (lognormal,
t3, and 10%-preempted rounds; 20 to 550 rounds), at about 5% more rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from ablate.measurement.clock import WarmupOutcome
from ablate.measurement.results import NoiseFlag, RatioEstimate, VariantResult

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
# Caps the index matrix of one vectorised bootstrap step (resamples x samples) at ~16 MB.
# Resampled values drawn per block: bounds the memory of a bootstrap whatever its size.
_BOOTSTRAP_BLOCK_ELEMENTS = 4_000_000
# From this many samples on, one sample's bootstrap draws each resample's median directly
# (`_drawn_medians`) instead of resampling: a phone session of 500,000 rounds would take
# minutes the other way. Below it, the draws (and so every interval) are as they always were.
_DRAWN_MEDIANS_FROM = 10_000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def relative_half_width(self, center: float) -> float:
        """Half the width as a fraction of `center`: 0.01 means +/-1%."""
        return (self.high - self.low) / 2 / abs(center)

    def as_pair(self) -> tuple[float, float]:
        return (self.low, self.high)

    def scaled(self, factor: float) -> Interval:
        return Interval(self.low * factor, self.high * factor)


def median(samples: ArrayLike) -> float:
    return float(np.median(np.asarray(samples, dtype=float)))


def interquartile_range(samples: ArrayLike) -> float:
    return float(stats.iqr(np.asarray(samples, dtype=float)))


def resampled_medians(times: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Column medians of `resamples` bootstrap resamples of the rows of `times`.

    Rows are resampled whole, so a round's paired times stay together. Drawn in blocks so
    that memory stays bounded; the draws are those of one `rng.integers` call.
    """
    round_count, column_count = times.shape
    medians = np.empty((resamples, column_count))
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // (round_count * column_count))
    for start in range(0, resamples, block):
        rows = rng.integers(0, round_count, size=(min(block, resamples - start), round_count))
        medians[start : start + block] = np.median(times[rows], axis=1)
    return medians


def _drawn_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The medians of `resamples` bootstrap resamples of `values`, each drawn in O(log n)
    without drawing the resample, from the same distribution as `resampled_medians`.

    A resample's r-th smallest value is found in the sorted values by halving: of the m
    draws that fell in a range, how many fall in its lower half is binomial (m, the half's
    share of the range), and the two halves are independent given that count. A median of
    an even count needs ranks n/2 and n/2 + 1 jointly: they share the halvings until a count
    separates them, then go on independently.
    """
    ordered = np.sort(values)
    count = ordered.size
    rank = np.full((2, resamples), (count + 1) // 2, dtype=np.int64)  # 1-based, in the range
    rank[1] += 1 - count % 2  # the upper middle rank of an even count
    low = np.zeros((2, resamples), dtype=np.int64)
    high = np.full((2, resamples), count, dtype=np.int64)
    draws = np.full((2, resamples), count, dtype=np.int64)
    together = np.ones(resamples, dtype=bool)
    while (high - low > 1).any():  # a range of one value stays put: its lower half is empty
        middle = (low + high) // 2
        lower = rng.binomial(draws, (middle - low) / (high - low))
        lower[1] = np.where(together, lower[0], lower[1])
        together &= (lower[0] >= rank[1]) | (lower[0] < rank[0])
        left = lower >= rank
        high = np.where(left, middle, high)
        low = np.where(left, low, middle)
        rank = np.where(left, rank, rank - lower)
        draws = np.where(left, lower, draws - lower)
    return (ordered[low[0]] + ordered[low[1]]) / 2


def bootstrap_median_interval(
    samples: ArrayLike,
    *,
    rng: np.random.Generator,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap interval of the median."""
    values = np.asarray(samples, dtype=float)
    if values.size >= _DRAWN_MEDIANS_FROM:
        medians = _drawn_medians(values, resamples, rng)
    else:
        medians = resampled_medians(values[:, None], resamples, rng)[:, 0]
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return Interval(float(low), float(high))


def median_interval(samples: ArrayLike, *, confidence: float = CONFIDENCE) -> Interval:
    """Distribution-free interval of the median: a pair of order statistics.

    Below 6 samples no pair reaches 95%; the full range is returned then, so the interval
    is honest about being wide rather than missing.
    """
    values = np.asarray(samples, dtype=float)
    interval = stats.quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(
        confidence
    )
    if np.isnan(interval.low) or np.isnan(interval.high):
        return Interval(float(values.min()), float(values.max()))
    return Interval(float(interval.low), float(interval.high))


def normal_median_interval(samples: ArrayLike, *, confidence: float = CONFIDENCE) -> Interval:
    """Median x exp(+/- z x 1.2533 x sigma / sqrt(n)) on the log scale, sigma from the IQR:
    the large-sample interval of a median of normal log-values, robust to outliers."""
    logs = np.log(np.asarray(samples, dtype=float))
    sigma = interquartile_range(logs) / 1.349  # the IQR of a normal is 1.349 sigma
    z = stats.norm.ppf(0.5 + confidence / 2)
    half_width = z * np.sqrt(np.pi / 2) * sigma / np.sqrt(logs.size)  # 1.2533 = sqrt(pi / 2)
    center = float(np.median(logs))
    return Interval(float(np.exp(center - half_width)), float(np.exp(center + half_width)))


def ratio_interval(ratios: ArrayLike, *, confidence: float = CONFIDENCE) -> Interval:
    """The union of the distribution-free and the normal-theory intervals (see above)."""
    exact = median_interval(ratios, confidence=confidence)
    smooth = normal_median_interval(ratios, confidence=confidence)
    return Interval(min(exact.low, smooth.low), max(exact.high, smooth.high))


def paired_ratios(variant_seconds: ArrayLike, baseline_seconds: ArrayLike) -> np.ndarray:
    """Per-round ratios: a drift of the machine scales both times of a round alike."""
    return np.asarray(variant_seconds, dtype=float) / np.asarray(baseline_seconds, dtype=float)


# Rounds -> per-variant estimates, intervals, significance and noise flags.
#
# A pure function of the samples and a seed: the same rounds (a resumed journal, say) give
# the same summary.

Samples = Mapping[str, Sequence[float]]
"""Per variant, the seconds of one iteration in each round, in round order."""


def judged_interval(
    samples: Samples, name: str, baseline: str, seed: int
) -> tuple[float, Interval]:
    """The estimate a variant is judged by, with its interval.

    In a comparison that is the ratio to the baseline; a variant measured alone is judged
    by its latency interval, widened like the ratio interval (see statistics.py) so that the
    stopping rule cannot pick a narrow-by-chance moment either.
    """
    values = np.asarray(samples[name], dtype=float)
    if len(samples) == 1:
        bootstrap = bootstrap_median_interval(values, rng=_rng(seed, name))
        smooth = normal_median_interval(values)
        return median(values), Interval(
            min(bootstrap.low, smooth.low), max(bootstrap.high, smooth.high)
        )
    ratios = paired_ratios(values, samples[baseline])
    return median(ratios), ratio_interval(ratios)


def judged_names(samples: Samples, baseline: str) -> list[str]:
    """The variants whose interval the stopping rule waits for."""
    return [name for name in samples if len(samples) == 1 or name != baseline]


def stopping_widths(samples: Samples, baseline: str, seed: int) -> dict[str, float]:
    """Per judged variant, its interval's half-width relative to its estimate."""
    widths = {}
    for name in judged_names(samples, baseline):
        center, interval = judged_interval(samples, name, baseline, seed)
        widths[name] = interval.relative_half_width(center)
    return widths


def summarise(
    samples: Samples,
    *,
    baseline: str,
    target_ci: float | None,
    warmups: Mapping[str, WarmupOutcome],
    thresholds: NoiseThresholds,
    seed: int,
) -> tuple[VariantResult, ...]:
    return tuple(
        _variant_result(samples, name, baseline, target_ci, warmups[name], thresholds, seed)
        for name in samples
    )


def _variant_result(
    samples: Samples,
    name: str,
    baseline: str,
    target_ci: float | None,
    warmup: WarmupOutcome,
    thresholds: NoiseThresholds,
    seed: int,
) -> VariantResult:
    seconds = np.asarray(samples[name], dtype=float)
    latency = bootstrap_median_interval(seconds, rng=_rng(seed, name))
    flags = spread_flags(seconds, thresholds)
    flags += drift_flags(
        seconds, name=DRIFT, threshold=thresholds.latency_drift, what="latency median"
    )
    flags += warmup_flags(warmup.runs, warmup.stable)
    ratio: RatioEstimate | None = None
    significant: bool | None = None
    if len(samples) == 1:
        center, judged = judged_interval(samples, name, baseline, seed)
        flags += wide_interval_flags(judged, center, target_ci, "latency")
    elif name != baseline:
        ratios = paired_ratios(seconds, samples[baseline])
        center, interval = median(ratios), ratio_interval(ratios)
        ratio = RatioEstimate(median=center, ci95=interval.as_pair())
        significant = not interval.contains(1.0)
        flags += wide_interval_flags(interval, center, target_ci, "ratio")
        flags += drift_flags(
            ratios, name=RATIO_DRIFT, threshold=thresholds.ratio_drift, what="ratio"
        )
    return VariantResult(
        name=name,
        median_ms=median(seconds) * 1e3,
        iqr_ms=interquartile_range(seconds) * 1e3,
        ci95_ms=latency.scaled(1e3).as_pair(),
        rounds=int(seconds.size),
        instances=warmup.instances,
        iterations_per_round=warmup.iterations_per_round,
        warmup_runs=warmup.runs,
        ratio_to_baseline=ratio,
        significant=significant,
        flags=tuple(flags),
        samples_ms=tuple(float(value) * 1e3 for value in seconds),
    )


def _rng(seed: int, name: str) -> np.random.Generator:
    # Seeded per variant by name, so adding a variant does not change another's interval.
    return np.random.default_rng([seed, *name.encode()])


# Noise flags: reasons to distrust a number, each with the figure that raised it.

HIGH_IQR = "high_iqr"
DRIFT = "drift"
RATIO_DRIFT = "ratio_drift"
WIDE_INTERVAL = "wide_interval"
WARMUP_UNSTABLE = "warmup_unstable"
# The flags that say a latency moved while it was measured: its rounds spread wide, or its
# level changed from the first third of them to the last.
MOVED_FLAGS = (HIGH_IQR, DRIFT)
# A set of latencies (a run, a profile's rows) is unsteady when at least this share moved.
UNSTEADY_SHARE = 0.5


def moved(flags: Iterable[str]) -> bool:
    """Whether a latency with these flags moved while it was measured."""
    return any(flag in MOVED_FLAGS for flag in flags)


def mostly_moved(moved_count: int, total: int) -> bool:
    """Whether `moved_count` of `total` latencies make the set unsteady."""
    return moved_count > 0 and moved_count >= UNSTEADY_SHARE * total


# Below this many rounds per third, a third's median interval is the third's full range
# (see median_interval) and a drift test would be meaningless.
_MINIMUM_ROUNDS_PER_THIRD = 6


@dataclass(frozen=True)
class NoiseThresholds:
    relative_iqr: float = 0.10
    # Latency drift between the first and last thirds of the rounds: the machine changed.
    latency_drift: float = 0.05
    # Ratio drift: the comparison itself changed during the run, which pairing cannot undo.
    ratio_drift: float = 0.02


def spread_flags(samples: ArrayLike, thresholds: NoiseThresholds) -> list[NoiseFlag]:
    relative = interquartile_range(samples) / median(samples)
    if relative <= thresholds.relative_iqr:
        return []
    return [
        NoiseFlag(
            HIGH_IQR,
            f"IQR is {relative:.0%} of the median (threshold {thresholds.relative_iqr:.0%})",
        )
    ]


def drift_flags(samples: ArrayLike, *, name: str, threshold: float, what: str) -> list[NoiseFlag]:
    """Flags a shift between the first and last thirds of the rounds.

    Both conditions must hold: the shift exceeds `threshold`, and the two thirds' median
    intervals are disjoint, so that a shift within the noise is not called drift.
    """
    values = np.asarray(samples, dtype=float)
    third = values.size // 3
    if third < _MINIMUM_ROUNDS_PER_THIRD:
        return []
    first, last = values[:third], values[-third:]
    change = median(last) / median(first) - 1
    if abs(change) <= threshold or median_interval(first).overlaps(median_interval(last)):
        return []
    return [
        NoiseFlag(
            name,
            f"{what} moved {change:+.1%} from the first to the last third of the rounds",
        )
    ]


def wide_interval_flags(
    interval: Interval, center: float, target: float | None, what: str
) -> list[NoiseFlag]:
    """None as `target`: the interval was not what had to be precise, so it is not judged."""
    half_width = interval.relative_half_width(center)
    if target is None or half_width <= target:
        return []
    return [
        NoiseFlag(
            WIDE_INTERVAL,
            f"{what} interval is +/-{half_width:.1%}, wider than the +/-{target:.1%} target: "
            f"too wide to call a smaller change",
        )
    ]


def warmup_flags(runs: int, stable: bool) -> list[NoiseFlag]:
    if stable:
        return []
    return [NoiseFlag(WARMUP_UNSTABLE, f"timings had not settled after {runs} warm-up runs")]
