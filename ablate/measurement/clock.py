"""Clocks and block timers: the only places where the engine reads time.

The engine is handed a clock (for its budget) and a block timer (for the samples), so tests
drive it with a simulated clock whose "runs" advance simulated time: they never sleep and
never time real code.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

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
