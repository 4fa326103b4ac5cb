"""Noise flags: reasons to distrust a number, each with the figure that raised it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ablate.measurement.results import NoiseFlag
from ablate.measurement.statistics import Interval, interquartile_range, median, median_interval

HIGH_IQR = "high_iqr"
DRIFT = "drift"
RATIO_DRIFT = "ratio_drift"
WIDE_INTERVAL = "wide_interval"
WARMUP_UNSTABLE = "warmup_unstable"

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
    interval: Interval, center: float, target: float, what: str
) -> list[NoiseFlag]:
    half_width = interval.relative_half_width(center)
    if half_width <= target:
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
