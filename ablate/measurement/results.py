"""What a measurement found, as frozen records; how it is shown lives in render.py.

Times are stored in the unit their field name says (`_ms`, `_s`) and JSON keys are the
field names, so a JSON file and the Python record read the same.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

StopReason = Literal["target", "budget", "max_rounds"]
# Why a measurement stopped, as every report words it.
STOP_REASONS: dict[StopReason, str] = {
    "target": "every interval reached the target width",
    "budget": "the time budget ran out first",
    "max_rounds": "the round cap was reached first",
}

# What the target width judged (`stop_on`): each variant's ratio to the baseline, or the
# Shapley values and total an attribution derives from all of them (`PrecisionTarget`).
StopOn = Literal["ratios", "attribution"]
RATIOS: StopOn = "ratios"
ATTRIBUTION: StopOn = "attribution"

# What the caches held when each timing started (engine.py, "Interleaved rounds", says why
# it matters): after untimed calls of the same model for `settle_s` seconds, after one
# untimed call (runs of 2026-12-07), or right after whichever variant the round ran before
# it, as runs did before that.
CacheState = Literal["settled", "warm", "rotating"]
CACHE_STATES: dict[CacheState, str] = {
    "settled": "each timing after untimed calls of the same model for settle_s seconds",
    "warm": "each timing right after one untimed call of the same model (runs of 2026-12-07)",
    "rotating": "each timing right after the round's previous variant (runs before 2026-12-07)",
}


def describe_cache_state(state: CacheState, settle_s: float | None) -> str:
    """One line for a report: the state's meaning, with its settling time where it has one."""
    text = CACHE_STATES[state]
    return text if settle_s is None else text.replace("settle_s seconds", f"{settle_s:g} s")


def cache_state_of(settle_s: float) -> CacheState:
    """The state the engine times in, given its settling time (0: one untimed call)."""
    return "settled" if settle_s > 0 else "warm"


JSON_SCHEMA = "ablate.latency/1"


def round_value(timings: list[float] | tuple[float, ...]) -> float:
    """A round's value for a variant timed an odd number of times in it: the middle timing,
    one that was measured rather than an average of two (engine.RoundPlan says why)."""
    return sorted(timings)[len(timings) // 2]


@dataclass(frozen=True)
class NoiseFlag:
    """A reason to distrust a number, e.g. name `high_iqr`, detail `IQR is 14% of the median`."""

    name: str
    detail: str


@dataclass(frozen=True)
class RatioEstimate:
    """Variant time / baseline time: the median of per-round ratios and its 95% interval."""

    median: float
    ci95: tuple[float, float]

    @property
    def percent_change(self) -> float:
        return (self.median - 1) * 100


@dataclass(frozen=True)
class VariantResult:
    name: str
    median_ms: float
    iqr_ms: float
    ci95_ms: tuple[float, float]
    rounds: int
    instances: int  # separately built copies the rounds cycled through
    iterations_per_round: int
    warmup_runs: int
    # None for the baseline itself, whose ratio is 1 by definition, not by measurement.
    ratio_to_baseline: RatioEstimate | None
    # True when the ratio interval excludes 1.0; None for the baseline.
    significant: bool | None
    flags: tuple[NoiseFlag, ...]
    # Per-round time of one iteration, in round order: the median of the round's timings.
    samples_ms: tuple[float, ...] = dataclasses.field(repr=False)
    timings_per_round: int = 1  # odd; see engine.RoundPlan

    def flag_names(self) -> tuple[str, ...]:
        return tuple(flag.name for flag in self.flags)


@dataclass(frozen=True)
class Environment:
    """What the numbers depend on besides the model: recorded with every result."""

    cpu_model: str
    logical_cores: int
    operating_system: str
    python_version: str
    torch_version: str
    threads: int
    interop_threads: int
    flush_denormal: bool
    steady_allocator: bool
    channels_last: bool
    device_name: str
    # 1-minute load average at the end: above the core count, other jobs shared the caches
    # and memory bus, which moves models of different memory intensity by different amounts.
    load_average: float
    # Which CPU precisely: one marketing name ("AMD EPYC") covers generations with different
    # SIMD extensions, and those change which kernels run and so the ratios between models.
    # Defaults keep results recorded before these existed loadable.
    cpu_identity: str = ""
    cpu_flags: tuple[str, ...] = ()
    cpu_caches: str = ""

    @property
    def busy(self) -> bool:
        return self.load_average > self.logical_cores


@dataclass(frozen=True)
class LatencyResult:
    baseline: str
    variants: tuple[VariantResult, ...]
    stop_reason: StopReason
    rounds: int
    elapsed_s: float
    backend: str
    device: str
    batch: int
    threads: int
    target_ci: float
    budget_s: float
    seed: int
    environment: Environment
    precision: str = "fp32"
    stop_on: StopOn = RATIOS
    cache_state: CacheState = "rotating"  # older files; the engine records its own
    settle_s: float | None = None  # untimed seconds before each timing; None in older files

    def variant(self, name: str) -> VariantResult:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    @property
    def flagged(self) -> bool:
        return any(variant.flags for variant in self.variants)


def latency_to_dict(result: LatencyResult, *, include_samples: bool = False) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    if not include_samples:
        for variant in data["variants"]:
            del variant["samples_ms"]
    return {"schema": JSON_SCHEMA, **data}


def to_json(result: LatencyResult, *, include_samples: bool = False) -> str:
    return json.dumps(latency_to_dict(result, include_samples=include_samples), indent=2)
