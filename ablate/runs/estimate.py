"""What a run will need before anything is measured: memory and time, against the machine.

A run builds every distinct architecture while counting, then keeps `copies` built copies of
each alive while measuring, and one forward pass at a time holds its live activations. So

    memory ~ this process + sum over architectures of copies x weight bytes
             + the largest forward's activations (x2: the counting pass records them too)

Weights are exact for the architectures estimated (built, parameters counted); activations
come from a forward pass on a small input, scaled by the area (every activation of these
networks scales with height x width). A spec with many architectures is estimated on an
evenly spaced sample that includes its widest and its largest-input ones, and extrapolated.

Time, stage by stage, from one eager forward pass per architecture (a fixed cost plus MACs
at a fitted rate): counting grows with MACs; preparing builds every network and re-estimates
its batch norms (16 images; skipped for statistics already in the cache); exporting (mobile
backends) takes the median time of this host's latest exports in the cache (a default until
there are some) per program, split over the export processes, and is given as a range: from
that time slowed by the machine's present load to the slowdown measured under load;
measuring takes the budget, unless the minimum rounds of every variant, each one timed
forward after its untimed ones (`measure.settle_s`, at most 30 calls), take longer; the
per-op profile runs a few profiled passes per network. All are rough: the forward rate is
fitted on one machine on one day, and a shared VM can run three times slower on another.
Memory is what is refused, because running out of it kills the run.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ablate.errors import AblateError

if TYPE_CHECKING:
    from ablate.architecture.imported import Network
    from ablate.spec.model import ExperimentSpec

SAMPLE_LIMIT = 16
PROBE_RESOLUTION = 64
FLOAT_BYTES = 4
# Counting one architecture: building, the recorded pass and its aggregation. Fitted to
# counting runs on a 2-core x86 VM (0.2 s for a 250M-MAC network).
COUNT_SECONDS_FIXED = 0.1
COUNT_SECONDS_PER_MAC = 4e-10
# One eager forward pass on one x86 core: fixed dispatch cost plus MACs at ~15 GMAC/s
# (V3-Large, 217M MACs, 14 ms), with the warm-up block floor of the latency engine.
FORWARD_SECONDS_FIXED = 1.5e-3
FORWARD_SECONDS_PER_MAC = 1 / 15e9
# The per-op profile's passes (one unrecorded, then the recorded runs and one more) cost
# about 2x their forward time with the profiler's hooks and the reading of its trace: V3-Large
# 2.1x, V2 1.8x on a 2-core x86 VM (2026-11-30; 4x and more when the trace was read into
# torch's FunctionEvent tree).
PROFILER_OVERHEAD = 2.0
# Exporting one full-size MobileNet for a mobile runtime, one process: why_v3_faster's
# programs took 16.2 s each on average on a 2-core x86 VM, two at a time, batch norms folded
# and provenance shared (ExecuTorch 1.5.1, 2026-11-30; 18.8 s copying provenance, 34 s before
# folding). In int8 they took 51-65 s copying provenance (the calibration, and the quantize /
# dequantize nodes the lowering passes walk one by one); sharing it took V3-Large from 63-64 s
# to 56-57 s, 11% less.
EXPORT_SECONDS = {"fp32": 16.5, "int8": 52.0}
# Those are the defaults, for a host that has exported nothing yet. Once the export cache
# holds at least EXPORT_HISTORY_MINIMUM of this host's programs for the backend and precision,
# the median of its latest EXPORT_HISTORY stands in for them: on the AVX-512 host of
# 2026-12-07 an int8 program took 19 s (36 calibration networks: 694 s on 2 processes), where
# the default said 52 and the estimate 21-44 min for 6.1.
EXPORT_HISTORY = 36
EXPORT_HISTORY_MINIMUM = 3
# Exporting is CPU-bound Python, one program per process: an export process runs at the speed
# above while it has a core to itself, and proportionally slower once the export processes and
# the machine's other runnable processes (its load average) outnumber the cores. The same
# programs that took 16 s each took about 45 s while other work kept both cores busy (issue
# 25): the range's high end allows that slowdown, or half as much again as the load now gives,
# whichever is more (the load an estimate sees is not the load the exports will meet).
EXPORT_SLOWDOWN_UNDER_LOAD = 2.8
LOAD_SWING = 1.5
# The runtime's own per-op profile of one exported full-size MobileNet (ExecuTorch's ETDump):
# reading the program from the cache, loading it with the event tracer, the runs, reading the
# trace: 0.25-0.5 s on a 2-core x86 VM (V3-Large, 2026-11-30).
RUNTIME_PROFILE_SECONDS = 0.4
# Separately built copies of a backend's runnable: exported backends hold a second copy of
# the weights in their own runtime.
RUNTIME_WEIGHT_COPIES = 2


@dataclass(frozen=True)
class ArchitectureSize:
    params: int
    macs: int
    activation_peak_bytes: int  # the largest input + output of any layer, at batch 1


@dataclass(frozen=True)
class RunEstimate:
    variants: int
    architectures: int
    estimated_on: int  # architectures built for the estimate
    copies: int  # built copies of each architecture while measuring
    batch: int
    process_bytes: int  # this process before the run (Python, torch)
    weight_bytes: int  # every copy of every architecture
    activation_bytes: int  # the largest forward's activations, counted twice
    count_seconds: float
    minimum_measure_seconds: float  # the minimum rounds, one forward per variant each
    budget_seconds: float
    available_bytes: int | None  # what this process may still use; None when unknown
    export_seconds: float = 0.0  # exporting every program, none cached, split over the workers,
    export_workers: int = 1  # on an idle machine (see `export_range`)
    export_history: int = 0  # this host's exports the time per program came from; 0: default
    load: float | None = None  # runnable processes on this process's cores (1-minute average)
    cores: int = 1  # the cores this process may use
    prepare_seconds: float = 0.0  # building and re-estimating batch norms, none cached
    profile_seconds: float = 0.0  # the per-op profile of every architecture

    @property
    def memory_bytes(self) -> int:
        return self.process_bytes + self.weight_bytes + self.activation_bytes

    @property
    def measure_seconds(self) -> float:
        """The budget, or the minimum rounds where they take longer; a run whose target is
        met sooner stops sooner (an attribution run often after its first check)."""
        return max(self.budget_seconds, self.minimum_measure_seconds)

    @property
    def export_range(self) -> tuple[float, float]:
        """Exporting every program, none cached: at the present load, and at the most the
        estimate allows for (the slowdown measured under load, or the present one half again)."""
        now = export_slowdown(self.load, self.cores, self.export_workers)
        return (
            self.export_seconds * now,
            self.export_seconds * max(EXPORT_SLOWDOWN_UNDER_LOAD, LOAD_SWING * now),
        )

    @property
    def total_seconds(self) -> float:
        """Every stage, nothing cached, exporting at the present load."""
        return self._total(self.export_range[0])

    @property
    def total_high_seconds(self) -> float:
        """Every stage, nothing cached, exporting as slowly as the estimate allows for."""
        return self._total(self.export_range[1])

    def _total(self, export_seconds: float) -> float:
        return (
            self.count_seconds
            + self.prepare_seconds
            + export_seconds
            + self.measure_seconds
            + self.profile_seconds
        )

    def summary(self) -> str:
        sample = (
            ""
            if self.estimated_on == self.architectures
            else f" (estimated on {self.estimated_on} of them)"
        )
        return (
            f"{self.architectures} distinct architectures for {self.variants} variants{sample}; "
            f"memory about {_gigabytes(self.memory_bytes)} "
            f"({self.copies} built {'copy' if self.copies == 1 else 'copies'} each)"
            f"{'' if self.available_bytes is None else ' of ' + _gigabytes(self.available_bytes)}"
            f" available; counting about {_duration(self.count_seconds)}, "
            + (
                f"preparing at most about {_duration(self.prepare_seconds)}, "
                if self.prepare_seconds
                else ""
            )
            + (
                f"exporting about {_duration_range(*self.export_range)} "
                f"({self.export_workers} process{'es' if self.export_workers != 1 else ''}"
                f"{self._export_basis()}, {self._load_text()}; none for programs in the export "
                "cache), "
                if self.export_seconds
                else ""
            )
            + f"measuring at most about {_duration(self.measure_seconds)}"
            + (
                f", profiling about {_duration(self.profile_seconds)}; in all about "
                + (
                    _duration_range(self.total_seconds, self.total_high_seconds)
                    if self.export_seconds
                    else _duration(self.total_seconds)
                )
                + " with nothing cached"
                if self.profile_seconds
                else ""
            )
        )

    def _export_basis(self) -> str:
        each = self.export_seconds * self.export_workers / max(self.architectures, 1)
        if self.export_history:
            return (
                f" at {_duration(each)} a program, the median of this host's "
                f"{self.export_history} latest exports"
            )
        return f" at {_duration(each)} a program, a default"

    def _load_text(self) -> str:
        if self.load is None:
            return "load unknown"
        return f"load {self.load:.1f} on {self.cores} core{'s' if self.cores != 1 else ''}"

    def refusal(self) -> str | None:
        """Why this run cannot go ahead on this machine, or None."""
        if self.available_bytes is not None and self.memory_bytes > self.available_bytes:
            return (
                f"needs about {_gigabytes(self.memory_bytes)} of memory "
                f"({self.architectures} architecture{'s' if self.architectures != 1 else ''} "
                f"x {self.copies} built "
                f"{'copy' if self.copies == 1 else 'copies'}, batch {self.batch}), more than "
                f"the {_gigabytes(self.available_bytes)} this process may use; measure fewer "
                "variants, a smaller width, resolution or batch, or pass --force to try anyway"
            )
        if self.minimum_measure_seconds > 2 * self.budget_seconds:
            return (
                f"the minimum rounds alone take about {_duration(self.minimum_measure_seconds)}, "
                f"more than twice the {_duration(self.budget_seconds)} budget; raise "
                "measure.budget_s, measure fewer variants, or pass --force to take them anyway"
            )
        return None


def _visit_seconds(forward: float, settle_s: float) -> float:
    """One variant's part of a round: its untimed calls (one, then until `settle_s` or
    `SETTLE_CALLS` calls) and the timed one."""
    from ablate.measurement.engine import SETTLE_CALLS

    return forward + max(forward, min(settle_s, SETTLE_CALLS * forward))


def _gigabytes(value: int) -> str:
    return f"{value / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def sequential_total(estimates: Sequence[RunEstimate]) -> tuple[float, float]:
    """(low, high) seconds of runs made one after another, nothing cached, the first counting
    for all (a device matrix shares its counts)."""
    low = sum(estimate.total_seconds for estimate in estimates)
    high = sum(estimate.total_high_seconds for estimate in estimates)
    shared = sum(estimate.count_seconds for estimate in estimates[1:])
    return low - shared, high - shared


def duration_range_text(low: float, high: float) -> str:
    return _duration(low) if high - low < 1 else _duration_range(low, high)


def _duration_range(low: float, high: float) -> str:
    """Both ends in the high end's unit: "16-45 s", "1.5-4.2 min"."""
    if high < 120:
        return f"{low:.0f}-{high:.0f} s"
    return f"{low / 60:.1f}-{high / 60:.1f} min"


def export_seconds_each(backend: str, precision: str) -> tuple[float, int]:
    """Seconds to export one program for `backend` in `precision` on an idle machine, and how
    many of this host's exports that is the median of (0: the default, EXPORT_SECONDS)."""
    import statistics

    from ablate.measurement.export_cache import recent_export_seconds

    history = recent_export_seconds(backend, precision, newest=EXPORT_HISTORY)
    if len(history) < EXPORT_HISTORY_MINIMUM:
        return EXPORT_SECONDS.get(precision, EXPORT_SECONDS["int8"]), 0
    return statistics.median(history), len(history)


def export_slowdown(load: float | None, cores: int, workers: int) -> float:
    """How many times slower than on an idle machine each of `workers` export processes runs
    beside `load` other runnable processes on `cores` cores; 1 where the load is unknown."""
    if load is None:
        return 1.0
    return max(1.0, (load + workers) / max(cores, 1))


def machine_load() -> tuple[float | None, int]:
    """The runnable processes on the cores this process may use (the 1-minute load average,
    the machine's, in proportion to those cores: a container pinned to 2 of a host's 64 cores
    sees the host's load), and how many cores that is. None where the system does not say."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine = os.cpu_count() or cores or 1
    cores = cores or machine
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None, cores
    return load * cores / max(machine, cores), cores


def architecture_size(architecture: Network) -> ArchitectureSize:
    """Parameters (exact), MACs and activation peak (scaled from a small input) at batch 1."""
    import torch
    from torch import nn

    from ablate.architecture.imported import ImportedModel, build_network

    model = build_network(architecture)
    # An imported module may take no other input size than its own (a fixed-size position
    # embedding, a flatten into a linear): probed at its own resolution.
    probe = architecture.resolution if isinstance(architecture, ImportedModel) else PROBE_RESOLUTION
    params = sum(parameter.numel() for parameter in model.parameters())
    conv_macs = linear_macs = peak = 0

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal conv_macs, linear_macs, peak
        peak = max(peak, sum(t.numel() for t in inputs) + output.numel())
        if isinstance(module, nn.Conv2d):
            kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
            if output.shape[-1] * output.shape[-2] > 1:
                conv_macs += output.numel() * kernel
            else:  # SE's convs act on the pooled 1x1 map, whatever the input size
                linear_macs += output.numel() * kernel
        elif isinstance(module, nn.Linear):
            linear_macs += output.numel() * module.in_features

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [leaf.register_forward_hook(record) for leaf in leaves]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, probe, probe))
    finally:
        for handle in handles:
            handle.remove()
    # Conv outputs scale with the input area; the classifier's linear layers do not (and are
    # never the activation peak).
    area = (architecture.resolution / probe) ** 2
    return ArchitectureSize(
        params=params,
        macs=int(conv_macs * area) + linear_macs,
        activation_peak_bytes=int(peak * area * FLOAT_BYTES),
    )


def _sample(architectures: list[Network]) -> list[int]:
    """Indices to estimate: all, or the widest and largest-input ones and an even spread."""
    count = len(architectures)
    if count <= SAMPLE_LIMIT:
        return list(range(count))
    chosen = {
        # An imported module has no width multiplier: as wide as its factory made it (1).
        max(range(count), key=lambda i: getattr(architectures[i], "width", 1.0)),
        max(range(count), key=lambda i: architectures[i].resolution),
    }
    spread: list[int] = []
    points = SAMPLE_LIMIT - len(chosen)
    while len(chosen | set(spread)) < SAMPLE_LIMIT:
        spread = [round(i * (count - 1) / (points - 1)) for i in range(points)]
        points += 1
    extra = [index for index in spread if index not in chosen]
    return sorted(chosen | set(extra[: SAMPLE_LIMIT - len(chosen)]))


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the machine's available memory,
    the cgroup's limit (v2 or v1) and the address-space limit, each less what is in use."""
    limits: list[int] = []
    meminfo = _read_fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        limits.append(meminfo["MemAvailable"] * 1024)
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            limits.append(max(0, limit - usage))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        status = _read_fields(f"/proc/{os.getpid()}/status")
        limits.append(max(0, soft - status.get("VmSize", 0) * 1024))
    return min(limits) if limits else None


def _process_bytes() -> int:
    return _read_fields(f"/proc/{os.getpid()}/status").get("VmRSS", 0) * 1024


def _read_fields(path: str) -> dict[str, int]:
    fields = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0])
    except OSError:
        pass
    return fields


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def estimate_run(spec: ExperimentSpec, copies: int) -> RunEstimate:
    """Memory and time of running `spec` with `copies` built copies per architecture."""
    from ablate.measurement.activations import DEFAULT_BATCH_SIZE, DEFAULT_BATCHES
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.export_pool import export_workers
    from ablate.runs.runner import PROFILE_RUNS, QUICK_PROFILE_RUNS

    groups = spec.architecture_groups()
    architectures = list(groups)
    indices = _sample(architectures)
    sizes = [architecture_size(architectures[index]) for index in indices]
    scale = len(architectures) / len(sizes)
    batch = spec.input.batch
    backend = BACKENDS.get(spec.measure.backend)
    runtime_copies = RUNTIME_WEIGHT_COPIES if backend.fuses else 1
    weights = sum(size.params for size in sizes) * FLOAT_BYTES * copies * runtime_copies * scale
    count_seconds = sum(
        COUNT_SECONDS_FIXED + COUNT_SECONDS_PER_MAC * size.macs * batch for size in sizes
    )
    forwards = [
        FORWARD_SECONDS_FIXED + FORWARD_SECONDS_PER_MAC * size.macs * batch for size in sizes
    ]
    passes = 2 + (QUICK_PROFILE_RUNS if spec.measure.quick else PROFILE_RUNS)
    # Re-estimating batch norms: one train-mode forward per image, unless cached.
    images = DEFAULT_BATCHES * DEFAULT_BATCH_SIZE
    settings = spec.measure.effective()
    workers = max(1, min(export_workers(), len(architectures)))
    each, history = (
        export_seconds_each(backend.name, spec.measure.precision) if backend.mobile else (0.0, 0)
    )
    exporting = len(architectures) * each
    load, cores = machine_load() if backend.mobile else (None, 1)
    profiled_by_runtime = backend.profiler is not None
    runtime_profiling = len(architectures) * RUNTIME_PROFILE_SECONDS if profiled_by_runtime else 0.0
    return RunEstimate(
        variants=len(spec.variants),
        architectures=len(architectures),
        estimated_on=len(sizes),
        copies=copies,
        batch=batch,
        process_bytes=_process_bytes(),
        weight_bytes=int(weights),
        activation_bytes=2 * batch * max(size.activation_peak_bytes for size in sizes),
        count_seconds=count_seconds * scale,
        minimum_measure_seconds=settings.min_rounds
        * sum(_visit_seconds(forward * scale, settings.settle_s) for forward in forwards),
        budget_seconds=settings.budget_s,
        available_bytes=available_memory(),
        export_seconds=exporting / workers,
        export_workers=workers,
        export_history=history,
        load=load,
        cores=cores,
        prepare_seconds=scale * sum(COUNT_SECONDS_FIXED + images * forward for forward in forwards),
        profile_seconds=scale
        * sum(COUNT_SECONDS_FIXED + PROFILER_OVERHEAD * passes * forward for forward in forwards)
        + runtime_profiling,
    )


def check_fits(estimate: RunEstimate, *, force: bool) -> None:
    """Refuse, in one line, a run the estimate says this machine cannot take."""
    reason = estimate.refusal()
    if reason is not None and not force:
        raise AblateError(f"this run {reason}")
