"""Rounds -> per-variant estimates, intervals, significance and noise flags.

A pure function of the samples and a seed: the same rounds (a resumed journal, say) give
the same summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ablate.measurement import noise
from ablate.measurement.results import RatioEstimate, VariantResult
from ablate.measurement.statistics import (
    Interval,
    bootstrap_median_interval,
    interquartile_range,
    median,
    normal_median_interval,
    paired_ratios,
    ratio_interval,
)
from ablate.measurement.warmup import WarmupOutcome

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
    target_ci: float,
    warmups: Mapping[str, WarmupOutcome],
    thresholds: noise.NoiseThresholds,
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
    target_ci: float,
    warmup: WarmupOutcome,
    thresholds: noise.NoiseThresholds,
    seed: int,
) -> VariantResult:
    seconds = np.asarray(samples[name], dtype=float)
    latency = bootstrap_median_interval(seconds, rng=_rng(seed, name))
    flags = noise.spread_flags(seconds, thresholds)
    flags += noise.drift_flags(
        seconds, name=noise.DRIFT, threshold=thresholds.latency_drift, what="latency median"
    )
    flags += noise.warmup_flags(warmup.runs, warmup.stable)
    ratio: RatioEstimate | None = None
    significant: bool | None = None
    if len(samples) == 1:
        center, judged = judged_interval(samples, name, baseline, seed)
        flags += noise.wide_interval_flags(judged, center, target_ci, "latency")
    elif name != baseline:
        ratios = paired_ratios(seconds, samples[baseline])
        center, interval = median(ratios), ratio_interval(ratios)
        ratio = RatioEstimate(median=center, ci95=interval.as_pair())
        significant = not interval.contains(1.0)
        flags += noise.wide_interval_flags(interval, center, target_ci, "ratio")
        flags += noise.drift_flags(
            ratios, name=noise.RATIO_DRIFT, threshold=thresholds.ratio_drift, what="ratio"
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
