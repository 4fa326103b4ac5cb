"""Warm-up: run a variant until its timings settle, and size its blocks for the clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablate.measurement.clock import Clock, TimedBlock
from ablate.measurement.errors import MeasurementError


@dataclass(frozen=True)
class WarmupPolicy:
    # Settled when the median of the last `window` blocks is within `tolerance` of the median
    # of the `window` before: a median of several, so one preempted run does not reset it.
    window: int = 5
    tolerance: float = 0.02
    maximum_blocks: int = 200
    maximum_seconds: float = 10.0
    # A block repeats a fast runnable until it lasts this long, so clock resolution and
    # per-block overhead stay far below 0.1% of a sample.
    minimum_block_seconds: float = 1e-3

    def __post_init__(self) -> None:
        if self.window < 2:
            raise MeasurementError(f"warm-up window must be at least 2 (got {self.window})")
        if not 0 < self.tolerance < 1:
            raise MeasurementError(f"warm-up tolerance must be in (0, 1) (got {self.tolerance})")
        if self.maximum_blocks < 2 * self.window:
            raise MeasurementError(
                f"warm-up maximum_blocks must be at least 2 x window = {2 * self.window} "
                f"(got {self.maximum_blocks})"
            )


@dataclass(frozen=True)
class WarmupOutcome:
    runs: int
    stable: bool
    iterations_per_round: int
    seconds_per_iteration: float
    instances: int = 1


def combined_warmup(outcomes: Sequence[WarmupOutcome]) -> WarmupOutcome:
    """One variant's warm-up over its instances: stable only if every instance settled."""
    return WarmupOutcome(
        runs=sum(outcome.runs for outcome in outcomes),
        stable=all(outcome.stable for outcome in outcomes),
        iterations_per_round=max(outcome.iterations_per_round for outcome in outcomes),
        seconds_per_iteration=float(np.median([o.seconds_per_iteration for o in outcomes])),
        instances=len(outcomes),
    )


def warm_up(timed: TimedBlock, *, policy: WarmupPolicy, clock: Clock) -> WarmupOutcome:
    started = clock()
    iterations = 1
    runs = 0
    per_iteration: list[float] = []
    stable = False
    while True:
        per_iteration.append(timed(iterations) / iterations)
        runs += iterations
        # Re-sized after every block: the first, cold run overstates the steady-state time.
        iterations = _block_iterations(per_iteration[-1], policy.minimum_block_seconds)
        stable = _settled(per_iteration, policy.window, policy.tolerance)
        out_of_time = clock() - started >= policy.maximum_seconds
        if stable or len(per_iteration) >= policy.maximum_blocks or out_of_time:
            break
    settled = float(np.median(per_iteration[-policy.window :]))
    return WarmupOutcome(
        runs=runs,
        stable=stable,
        iterations_per_round=_block_iterations(settled, policy.minimum_block_seconds),
        seconds_per_iteration=settled,
    )


def _settled(per_iteration: list[float], window: int, tolerance: float) -> bool:
    if len(per_iteration) < 2 * window:
        return False
    recent = np.median(per_iteration[-window:])
    previous = np.median(per_iteration[-2 * window : -window])
    return bool(abs(recent / previous - 1) < tolerance)


def _block_iterations(seconds_per_iteration: float, minimum_block_seconds: float) -> int:
    if seconds_per_iteration <= 0:
        return 1
    return max(1, math.ceil(minimum_block_seconds / seconds_per_iteration))
