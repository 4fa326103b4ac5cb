"""Latency attributions from interleaved measurement rounds, with bootstrap intervals.

Input: a rounds x coalitions matrix of times in seconds, where every round ran every
variant once. Each coalition's latency is the median over rounds, in milliseconds. A round
shares its machine state (clocks, temperature, background load) across variants, so the
bootstrap resamples whole rounds (rows), keeping that pairing, recomputes the medians and
re-applies the attribution - a linear map - to all resamples in one matrix product.
Intervals are percentile intervals of the resampled attributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ablate.analysis.coalitions import (
    AttributionError,
    CoalitionSpace,
    LinearView,
    check_factors,
    check_rounds,
)
from ablate.analysis.shapley import check_exact_size, shapley_view
from ablate.measurement.statistics import resampled_medians

MILLISECONDS_PER_SECOND = 1e3

# Resamples are taken in blocks of about this many float64 elements (32 MB), which bounds
# memory for large round counts without giving up vectorisation.


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise AttributionError(f"bootstrap resamples must be at least 1, got {self.resamples}")
        if not 0 < self.confidence < 1:
            raise AttributionError(
                f"bootstrap confidence must be between 0 and 1, got {self.confidence}"
            )

    @property
    def interval_key(self) -> str:
        """JSON key of the interval, e.g. ``ci95`` for 95%."""
        return f"ci{self.confidence * 100:g}"


@dataclass(frozen=True, eq=False)
class LatencyEstimates:
    """One view of the latency table: per row, the point value and its interval.

    Arrays have one entry (or one [low, high] pair) per label. Percentages are of the
    `from` model's median latency, resampled together with the contributions.
    """

    labels: tuple[str, ...]
    milliseconds: np.ndarray
    intervals_milliseconds: np.ndarray
    percent_of_from: np.ndarray
    intervals_percent: np.ndarray


@dataclass(frozen=True, eq=False)
class LatencyTable:
    """Median latency per coalition (ms) and the bootstrap resamples of those medians."""

    masks: np.ndarray
    medians_milliseconds: np.ndarray
    resampled_milliseconds: np.ndarray
    round_count: int
    settings: BootstrapSettings

    def values(self, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Point medians and resampled medians at `masks`."""
        columns = self.columns(masks)
        return self.medians_milliseconds[columns], self.resampled_milliseconds[:, columns]

    def columns(self, masks: ArrayLike) -> np.ndarray:
        wanted = np.asarray(masks, dtype=np.int64)
        columns = np.searchsorted(self.masks, wanted).clip(max=self.masks.shape[0] - 1)
        missing = wanted[self.masks[columns] != wanted]
        if missing.size:
            raise AttributionError(
                f"latency was not measured for {missing.size} coalition(s) the attribution "
                f"needs, e.g. mask {int(missing[0])}"
            )
        return columns

    def estimate(self, view: LinearView) -> LatencyEstimates:
        point, resampled = self.values(view.masks)
        from_point, from_resampled = self.values([0])
        estimates = view.apply(point)
        resampled_estimates = view.apply(resampled)
        percent = estimates / from_point[0] * 100
        resampled_percent = resampled_estimates / from_resampled * 100
        return LatencyEstimates(
            labels=view.labels,
            milliseconds=estimates,
            intervals_milliseconds=self._intervals(resampled_estimates),
            percent_of_from=percent,
            intervals_percent=self._intervals(resampled_percent),
        )

    def _intervals(self, resampled: np.ndarray) -> np.ndarray:
        tail = (1 - self.settings.confidence) / 2 * 100
        low, high = np.percentile(resampled, [tail, 100 - tail], axis=0)
        return np.stack([low, high], axis=-1)


def latency_table(
    rounds: ArrayLike,
    factor_count: int,
    *,
    masks: Sequence[int] | None = None,
    settings: BootstrapSettings | None = None,
    keep_masks: ArrayLike | None = None,
) -> LatencyTable:
    """Medians and bootstrap resamples from a rounds x coalitions matrix in seconds.

    `masks` names the coalition of each column; by default the columns are all 2^n
    coalitions in mask order. The `from` model (mask 0) must be among them. With
    `keep_masks`, only those coalitions are kept (and resampled); each must be measured.
    """
    settings = settings or BootstrapSettings()
    column_masks = np.asarray(
        np.arange(1 << factor_count) if masks is None else masks, dtype=np.int64
    )
    if column_masks.ndim != 1:
        raise AttributionError("latency: column masks must be a flat sequence of integers")
    times = check_rounds(rounds, column_masks.shape[0])
    if ((column_masks < 0) | (column_masks >= 1 << factor_count)).any():
        raise AttributionError(f"latency: column masks must lie in 0..{(1 << factor_count) - 1}")
    if np.unique(column_masks).shape[0] != column_masks.shape[0]:
        raise AttributionError("latency: a coalition appears in more than one column")
    if 0 not in column_masks:
        raise AttributionError("latency: the `from` model (mask 0) was not measured")
    order = np.argsort(column_masks)
    if keep_masks is not None:
        kept = np.union1d(np.asarray(keep_masks, dtype=np.int64), [0])
        present = np.isin(kept, column_masks)
        if not present.all():
            raise AttributionError(
                f"latency was not measured for {int((~present).sum())} coalition(s) the "
                f"attribution needs, e.g. mask {int(kept[~present][0])}"
            )
        order = order[np.isin(column_masks[order], kept)]
    times = times[:, order] * MILLISECONDS_PER_SECOND
    medians = np.median(times, axis=0)
    if medians[0] <= 0:
        raise AttributionError("latency: the `from` model's median time is 0; percentages need it")
    rng = np.random.default_rng(settings.seed)
    return LatencyTable(
        masks=column_masks[order],
        medians_milliseconds=medians,
        resampled_milliseconds=resampled_medians(times, settings.resamples, rng),
        round_count=int(times.shape[0]),
        settings=settings,
    )


def latency_shapley(
    rounds: ArrayLike, factors: Sequence[str], settings: BootstrapSettings | None = None
) -> LatencyEstimates:
    """Exact Shapley values of the median latencies (ms), with bootstrap intervals.

    `rounds` has one column per coalition in mask order (see `CoalitionSpace`).
    """
    space = CoalitionSpace(check_factors(factors))
    check_exact_size(space.size)
    table = latency_table(rounds, space.size, settings=settings)
    return table.estimate(shapley_view(space.factors))
