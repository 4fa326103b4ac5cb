"""Clocks and block timers: the only places where the engine reads time.

The engine is handed a clock (for its budget) and a block timer (for the samples), so tests
drive it with a simulated clock whose "runs" advance simulated time: they never sleep and
never time real code.
"""

from __future__ import annotations

import math
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ablate.errors import MeasurementError

if TYPE_CHECKING:
    import torch

Clock = Callable[[], float]
"""Seconds since an arbitrary origin; only differences are used."""

Runnable = Callable[[], object]
"""One forward pass of a prepared model (any output is ignored)."""

TimedBlock = Callable[[int], float]
"""Runs its runnable `iterations` times and returns the elapsed seconds of the whole block."""


class BlockTimer(Protocol):
    def __call__(self, runnable: Runnable) -> TimedBlock:
        """Binds a runnable once, so that per-block overhead stays out of the timed region."""
        ...


def clock_block_timer(clock: Clock = time.perf_counter) -> BlockTimer:
    """Times a block with `clock` read before and after it.

    This is the `timeit.Timer` that `torch.utils.benchmark.Timer` wraps (compiled loop, garbage
    collection off while timing). Torch's `Timer.timeit` itself is not used: it runs
    `max(number // 100, 2)` warm-up calls before every timing, which would triple the cost
    of the one-iteration blocks that interleaved rounds are made of.
    """

    def bind(runnable: Runnable) -> TimedBlock:
        timer = timeit.Timer(stmt="runnable()", globals={"runnable": runnable}, timer=clock)
        return timer.timeit

    return bind


def cuda_synchronized_clock(device: torch.device | str = "cuda") -> Clock:
    """perf_counter after draining the device's queue, so a reading includes launched work."""
    import torch

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def cuda_event_block_timer(device: torch.device | str = "cuda") -> BlockTimer:
    """Times a block with CUDA events on the current stream: device time, no host jitter.

    The block ends with a wait on its end event, so the next block starts on an idle device
    and one variant's queued kernels never spill into another's time.
    """
    import torch

    def bind(runnable: Runnable) -> TimedBlock:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def timed(iterations: int) -> float:
            with torch.cuda.device(device):
                start.record()
                for _ in range(iterations):
                    runnable()
                end.record()
                end.synchronize()
            return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds

        return timed

    return bind


# Warm-up: run a variant until its timings settle, and size its blocks for the clock.

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
