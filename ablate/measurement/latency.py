"""The latency engine: warm up each variant, take interleaved rounds, summarise."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ablate.measurement.clock import (
    BlockTimer,
    Clock,
    Runnable,
    clock_block_timer,
    cuda_event_block_timer,
    cuda_synchronized_clock,
)
from ablate.measurement.environment import collect_environment
from ablate.measurement.errors import MeasurementError
from ablate.measurement.noise import NoiseThresholds
from ablate.measurement.results import LatencyResult
from ablate.measurement.rounds import RoundCallback, StoppingPolicy, TimedInstance, run_rounds
from ablate.measurement.setup import MeasurementSetup
from ablate.measurement.summary import summarise
from ablate.measurement.warmup import WarmupOutcome, WarmupPolicy, combined_warmup, warm_up


def measure_latency(
    variants: Mapping[str, Runnable | Sequence[Runnable]],
    *,
    baseline: str,
    setup: MeasurementSetup | None = None,
    stopping: StoppingPolicy | None = None,
    warmup: WarmupPolicy | None = None,
    thresholds: NoiseThresholds | None = None,
    clock: Clock | None = None,
    block_timer: BlockTimer | None = None,
    on_round: RoundCallback | None = None,
    prior_rounds: Sequence[Mapping[str, float]] = (),
    seed: int = 0,
) -> LatencyResult:
    """Times prepared variants against `baseline` until the ratio intervals are narrow enough.

    `variants` maps names to zero-argument callables that each run one forward pass (see
    `prepare_runnable`), or to lists of such instances of one model built separately, which
    the rounds cycle through (rounds.py says why several are better than one). `setup`
    describes how they were prepared; it is recorded, not applied (call
    `configure_torch(setup)` before preparing). `clock` and `block_timer` are injectable: by
    default perf_counter and a timeit loop on CPU, a synchronising clock and CUDA events on
    CUDA. `on_round(index, {name: seconds})` sees each round as it is taken; `prior_rounds`
    (same shape, oldest first) continues an interrupted measurement. `seed` (>= 0) fixes the
    round orders and the bootstrap.
    """
    setup = setup or MeasurementSetup()
    stopping = stopping or StoppingPolicy()
    warmup = warmup or WarmupPolicy()
    thresholds = thresholds or NoiseThresholds()
    if not variants:
        raise MeasurementError("nothing to measure: no variants given")
    if seed < 0:
        raise MeasurementError(f"seed must be a non-negative integer (got {seed})")
    if baseline not in variants:
        raise MeasurementError(
            f"baseline {baseline!r} is not one of the variants; valid: {', '.join(variants)}"
        )
    if clock is None:
        clock = cuda_synchronized_clock() if setup.device == "cuda" else time.perf_counter
    if block_timer is None:
        block_timer = (
            cuda_event_block_timer() if setup.device == "cuda" else clock_block_timer(clock)
        )

    runnables = {name: _instances(name, given) for name, given in variants.items()}
    started = clock()
    instances: dict[str, list[TimedInstance]] = {}
    warmups: dict[str, WarmupOutcome] = {}
    for name, copies in runnables.items():
        blocks = [block_timer(runnable) for runnable in copies]
        outcomes = [warm_up(block, policy=warmup, clock=clock) for block in blocks]
        instances[name] = [
            TimedInstance(block, outcome.iterations_per_round)
            for block, outcome in zip(blocks, outcomes, strict=True)
        ]
        warmups[name] = combined_warmup(outcomes)
    outcome = run_rounds(
        instances,
        baseline=baseline,
        policy=stopping,
        clock=clock,
        started=started,
        seed=seed,
        on_round=on_round,
        prior_rounds=prior_rounds,
    )
    return LatencyResult(
        baseline=baseline,
        variants=summarise(
            outcome.samples,
            baseline=baseline,
            target_ci=stopping.target_ci,
            warmups=warmups,
            thresholds=thresholds,
            seed=seed,
        ),
        stop_reason=outcome.stop_reason,
        rounds=len(outcome.samples[baseline]),
        elapsed_s=outcome.elapsed_seconds,
        backend=setup.backend,
        device=setup.device,
        batch=setup.batch,
        threads=setup.threads,
        target_ci=stopping.target_ci,
        budget_s=stopping.budget_seconds,
        seed=seed,
        environment=collect_environment(setup),
    )


def _instances(name: str, given: Runnable | Sequence[Runnable]) -> list[Runnable]:
    copies = [given] if callable(given) else list(given)
    if not copies or not all(callable(copy) for copy in copies):
        raise MeasurementError(f"variant {name!r}: expected a runnable or a list of runnables")
    return copies
