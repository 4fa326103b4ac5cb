"""The latency engine: warm up each variant, take interleaved rounds, summarise."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ablate.errors import MeasurementError
from ablate.measurement.clock import (
    BlockTimer,
    Clock,
    Runnable,
    TimedBlock,
    WarmupOutcome,
    WarmupPolicy,
    clock_block_timer,
    combined_warmup,
    cuda_event_block_timer,
    cuda_synchronized_clock,
    warm_up,
)
from ablate.measurement.results import (
    RATIOS,
    LatencyResult,
    StopOn,
    StopReason,
    cache_state_of,
    round_value,
)
from ablate.measurement.setup import MeasurementSetup, collect_environment
from ablate.measurement.statistics import NoiseThresholds, stopping_widths, summarise


def _warm_up_every_instance(
    runnables: Mapping[str, Sequence[Runnable]],
    block_timer: BlockTimer,
    policy: WarmupPolicy,
    clock: Clock,
    settle_s: float,
) -> tuple[dict[str, list[TimedInstance]], dict[str, WarmupOutcome]]:
    """Each copy warmed up and sized for the clock; one combined outcome per variant."""
    instances: dict[str, list[TimedInstance]] = {}
    warmups: dict[str, WarmupOutcome] = {}
    for name, copies in runnables.items():
        blocks = [block_timer(runnable) for runnable in copies]
        outcomes = [warm_up(block, policy=policy, clock=clock) for block in blocks]
        instances[name] = [
            TimedInstance(block, outcome.iterations_per_round, settle_s)
            for block, outcome in zip(blocks, outcomes, strict=True)
        ]
        warmups[name] = combined_warmup(outcomes)
    return instances, warmups


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
    on_check: CheckCallback | None = None,
    prior_rounds: Sequence[Mapping[str, float]] = (),
    timings_per_round: Mapping[str, int] | None = None,
    seed: int = 0,
    settle_s: float = 0.0,
) -> LatencyResult:
    """Times prepared variants against `baseline` until the ratio intervals are narrow enough.

    `variants` maps names to zero-argument callables that each run one forward pass (see
    `prepare_runnable`), or to lists of such instances of one model built separately, which
    the rounds cycle through (rounds.py says why several are better than one). `setup`
    describes how they were prepared; it is recorded, not applied (call
    `configure_torch(setup)` before preparing). `clock` and `block_timer` are injectable: by
    default perf_counter and a timeit loop on CPU, a synchronising clock and CUDA events on
    CUDA. `on_round(index, {name: seconds}, {name: timings})` sees each round as it is taken,
    `on_check(widths)` each judgement of the stopping rule (its relative half-widths by name);
    `prior_rounds` (the seconds, oldest first) continues an interrupted measurement.
    `timings_per_round` (odd, 1 by default) times the named variants that many times in each
    round, at random places in its order; their round's value is the median of those timings
    (see `RoundPlan`). `seed` (>= 0) fixes the round orders and the bootstrap. Each timing
    follows untimed calls of the same instance: one, and more until `settle_s` seconds or
    `SETTLE_CALLS` calls have passed ("Interleaved rounds" below says why).
    """
    setup = setup or MeasurementSetup()
    stopping = stopping or StoppingPolicy()
    warmup = warmup or WarmupPolicy()
    thresholds = thresholds or NoiseThresholds()
    if not variants:
        raise MeasurementError("nothing to measure: no variants given")
    if seed < 0:
        raise MeasurementError(f"seed must be a non-negative integer (got {seed})")
    if not (math.isfinite(settle_s) and settle_s >= 0):
        raise MeasurementError(
            f"settle_s must be a non-negative number of seconds (got {settle_s})"
        )
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
    plan = RoundPlan.of(list(runnables), timings_per_round or {})
    started = clock()
    instances, warmups = _warm_up_every_instance(runnables, block_timer, warmup, clock, settle_s)
    outcome = run_rounds(
        instances,
        baseline=baseline,
        policy=stopping,
        plan=plan,
        clock=clock,
        started=started,
        seed=seed,
        on_round=on_round,
        on_check=on_check,
        prior_rounds=prior_rounds,
    )
    summaries = summarise(
        outcome.samples,
        baseline=baseline,
        # Flag a ratio as too wide only where the ratios were what had to be precise.
        target_ci=stopping.target_ci if stopping.judged is None else None,
        warmups=warmups,
        thresholds=thresholds,
        seed=seed,
    )
    return LatencyResult(
        baseline=baseline,
        variants=tuple(
            dataclasses.replace(summary, timings_per_round=plan.timings[summary.name])
            for summary in summaries
        ),
        stop_reason=outcome.stop_reason,
        rounds=len(outcome.samples[baseline]),
        elapsed_s=outcome.elapsed_seconds,
        backend=setup.backend,
        device=setup.device,
        batch=setup.batch,
        threads=setup.threads,
        target_ci=stopping.target_ci,
        stop_on=stopping.stop_on,
        budget_s=stopping.budget_seconds,
        seed=seed,
        environment=collect_environment(setup),
        precision=setup.precision,
        cache_state=cache_state_of(settle_s),
        settle_s=settle_s,
    )


def _instances(name: str, given: Runnable | Sequence[Runnable]) -> list[Runnable]:
    copies = [given] if callable(given) else list(given)
    if not copies or not all(callable(copy) for copy in copies):
        raise MeasurementError(f"variant {name!r}: expected a runnable or a list of runnables")
    return copies


# Interleaved rounds and the adaptive stopping rule.
#
# Every round times every variant once, in a fresh random order: a drift of the machine (a
# neighbour's job, a frequency change) then lands on all variants of a round alike and cancels
# in the per-round ratios, and no variant always runs right after the same other one.
#
# Each timing follows untimed calls of the same instance. Timed right after the round's
# previous variant, a model finds in the caches only what all the variants together leave
# there, so its latency would depend on how many variants the spec has. On the 2-core Xeon of
# 2026-12-07 (480 MiB L3; benchmarks/cache_state.py) ONNX Runtime's V2 takes 7.3 ms after a
# call of itself and 8.4 ms after an LLC-sized sweep (+14%), V3-Large +15%, eager +15% and
# +19%: 128 variants of ~20 MB each are the sweep.
#
# One untimed call (cache state "warm", `settle_s: 0`) is not enough on that CPU: its shared
# L3 keeps a model's weights only after they were read many times. ONNX Runtime's V2, run
# over and over after other networks, takes 8.3, 7.2, 7.2, 7.2, 7.1 ... ms, and 6.6 ms from
# about the 25th call (~170 ms) on; V3-Large 7.4, 6.5 ... 5.6 ms; a V2 at 96 px, whose time
# is mostly its 14 MB of weights, 3.3, 3.2, 2.6, 2.2 ... 2.0 ms (benchmarks/cache_state.py
# prints the curve). V3-Large / V2 is 0.90 at the second call and 0.85 settled, and the per-kernel
# profilers, which run a model many times in a row, see the settled costs. So by default a
# timing follows `settle_s` (0.2 s) of untimed calls, or SETTLE_CALLS of them if those end
# first: what the model costs run on its own, repeatedly, as benchmark_model and
# executor_runner time it too. Settling goes by reads of each weight (calls), not by time:
# V3-Small (2 ms) settles within 5-7 calls, V2 within about 25; 30 calls spare a 0.3 ms
# network 0.19 s of calls per timing that it does not need.
SETTLE_CALLS = 30
#
# A variant may come as several instances (the same model built several times): rounds cycle
# through them. Two builds of one model differ by up to about 1% on a CPU (where their weights
# landed in memory, measured here with identical weight values), an effect no number of
# rounds on one build can average away; cycling puts it into the per-round spread, and so
# into the interval, instead of into the estimate.
#
# The rule stops on precision (interval width), never on the estimate itself: checking often
# cannot then bias the estimate the way stopping on "significance reached" would.

RoundCallback = Callable[[int, dict[str, float], dict[str, tuple[float, ...]]], None]
"""Called after each round with its index; per variant, the seconds of one iteration; and,
for each variant timed more than once in the round, those timings in the order taken."""

CheckCallback = Callable[[Mapping[str, float]], None]
"""Called with each stopping check's judged half-widths (fractions, by name): a progress
display shows these rather than pay for a bootstrap of its own."""


@dataclass(frozen=True)
class PrecisionTarget:
    """What the target judges when it is not every variant's own interval.

    `widths` maps the rounds so far (per variant, seconds) to named relative half-widths,
    each compared with the policy's `target_ci`. An attribution run judges its Shapley values
    this way: the answer it reports can be precise long before each of 128 ratios is.
    """

    name: StopOn  # recorded with the result as `stop_on`
    widths: Callable[[Mapping[str, Sequence[float]]], Mapping[str, float]]


@dataclass(frozen=True)
class StoppingPolicy:
    # Stop once every judged interval's half-width is at most this fraction of its estimate
    # (of the `from` model's latency, for an attribution's values: see `judged`).
    target_ci: float = 0.01
    # Wall-clock seconds for the whole measurement, warm-up included.
    budget_seconds: float = 60.0
    # Always taken, budget or not: fewer rounds make intervals and drift checks meaningless.
    minimum_rounds: int = 20
    maximum_rounds: int | None = None
    # None: every variant's ratio to the baseline (a lone variant: its latency).
    judged: PrecisionTarget | None = None

    @property
    def stop_on(self) -> StopOn:
        return RATIOS if self.judged is None else self.judged.name

    def __post_init__(self) -> None:
        if not 0 < self.target_ci < 1:
            raise MeasurementError(f"target CI must be in (0, 1) (got {self.target_ci})")
        if not self.budget_seconds > 0:
            raise MeasurementError(f"budget must be positive (got {self.budget_seconds} s)")
        if self.minimum_rounds < 6:
            # The distribution-free 95% interval of a median needs at least 6 samples.
            raise MeasurementError(f"minimum rounds must be at least 6 (got {self.minimum_rounds})")
        if self.maximum_rounds is not None and self.maximum_rounds < self.minimum_rounds:
            raise MeasurementError(
                f"maximum rounds ({self.maximum_rounds}) is below minimum rounds "
                f"({self.minimum_rounds})"
            )


# Some variants matter more than others to what a measurement reports. An attribution's
# total is the difference of its two end models' medians and of nothing else, and each exact
# Shapley value weighs them by 1/n where most other coalitions weigh 1/(n C(n-1, s)). Timing
# those two several times a round, each at its own random place, and keeping the median of
# the timings narrows exactly the intervals that decide when to stop, for a few timings more
# per round. The median of an odd number of draws has the population median as its median,
# so the per-round values stay comparable with the variants timed once.


@dataclass(frozen=True)
class RoundPlan:
    """What one round times: each variant once, or `timings[name]` (odd) times."""

    timings: dict[str, int]  # every variant; 1 unless more were asked for
    slots: tuple[str, ...]  # each variant as often as it is timed, in variant order

    @classmethod
    def of(cls, names: Sequence[str], timings: Mapping[str, int]) -> RoundPlan:
        unknown = sorted(set(timings) - set(names))
        if unknown:
            raise MeasurementError(
                f"timings per round name {', '.join(map(repr, unknown))}, not variants; "
                f"valid: {', '.join(names)}"
            )
        for name, count in timings.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 1 or count % 2 == 0:
                raise MeasurementError(
                    f"variant {name!r}: timings per round must be a positive odd integer, so "
                    f"that the round's value is one of them (got {count!r})"
                )
        counts = {name: timings.get(name, 1) for name in names}
        slots = tuple(name for name in names for _ in range(counts[name]))
        return cls(timings=counts, slots=slots)


@dataclass(frozen=True)
class TimedInstance:
    block: TimedBlock
    iterations: int  # per block, from warm-up
    settle_s: float = 0.0  # untimed seconds before each timing, beyond the first call

    def seconds_per_iteration(self) -> float:
        # Untimed: the caches hold this model, not the previous variant's ...
        spent, calls = self.block(1), 1
        # ... and keep holding it only after several calls on some CPUs (see above).
        while spent < self.settle_s and calls < SETTLE_CALLS:
            spent += self.block(self.iterations)
            calls += self.iterations
        return self.block(self.iterations) / self.iterations


@dataclass(frozen=True)
class RoundsOutcome:
    samples: dict[str, list[float]]
    stop_reason: StopReason
    elapsed_seconds: float


def check_prior_rounds(
    prior_rounds: Sequence[Mapping[str, float]], names: Sequence[str]
) -> dict[str, list[float]]:
    """Rounds restored from a journal, as per-variant lists; they must match the variants."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index, round_seconds in enumerate(prior_rounds):
        if set(round_seconds) != set(names):
            raise MeasurementError(
                f"prior round {index} has variants {sorted(round_seconds)}; "
                f"this measurement has {sorted(names)}"
            )
        for name in names:
            seconds = float(round_seconds[name])
            if not (math.isfinite(seconds) and seconds > 0):
                raise MeasurementError(
                    f"prior round {index}: {name} has {seconds!r} s, not a positive time"
                )
            samples[name].append(seconds)
    return samples


def run_rounds(
    instances: Mapping[str, Sequence[TimedInstance]],
    *,
    baseline: str,
    policy: StoppingPolicy,
    clock: Clock,
    started: float,
    seed: int,
    plan: RoundPlan | None = None,
    on_round: RoundCallback | None = None,
    on_check: CheckCallback | None = None,
    prior_rounds: Sequence[Mapping[str, float]] = (),
) -> RoundsOutcome:
    names = list(instances)
    plan = plan or RoundPlan.of(names, {})
    samples = check_prior_rounds(prior_rounds, names)
    taken = len(prior_rounds)
    # Seeded by the rounds already taken too, so a resumed run does not replay the orders.
    rng = np.random.default_rng([seed, taken])
    next_check = policy.minimum_rounds
    while True:
        timings: dict[str, list[float]] = {name: [] for name in names}
        for position in rng.permutation(len(plan.slots)):
            name = plan.slots[position]
            # Cycling by timing count also keeps the cycle going across a resumed journal.
            count = plan.timings[name]
            copies = instances[name]
            instance = copies[(taken * count + len(timings[name])) % len(copies)]
            timings[name].append(instance.seconds_per_iteration())
        round_seconds = {name: round_value(timings[name]) for name in names}
        for name in names:
            samples[name].append(round_seconds[name])
        if on_round is not None:
            repeated = {name: tuple(timings[name]) for name in names if plan.timings[name] > 1}
            on_round(taken, round_seconds, repeated)
        taken += 1

        if policy.maximum_rounds is not None and taken >= policy.maximum_rounds:
            return RoundsOutcome(samples, "max_rounds", clock() - started)
        if taken < policy.minimum_rounds:
            continue
        out_of_budget = clock() - started >= policy.budget_seconds
        # The check costs a little (a bootstrap for a lone variant), so it is spaced out
        # geometrically, and always made before giving up on the budget.
        if taken >= next_check or out_of_budget:
            if _precise(samples, baseline, policy, seed, on_check):
                return RoundsOutcome(samples, "target", clock() - started)
            next_check = taken + max(1, taken // 10)
        if out_of_budget:
            return RoundsOutcome(samples, "budget", clock() - started)


def _precise(
    samples: Mapping[str, Sequence[float]],
    baseline: str,
    policy: StoppingPolicy,
    seed: int,
    on_check: CheckCallback | None = None,
) -> bool:
    if policy.judged is None:
        widths = stopping_widths(samples, baseline, seed)
    else:
        widths = policy.judged.widths(samples)
    if on_check is not None:
        on_check(widths)
    return all(width <= policy.target_ci for width in widths.values())
