"""`ablate bench`: build one model or a pair, time them against each other, break the time down."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.counting.kinds import GroupOf
from ablate.counting.networks import group_function
from ablate.errors import MeasurementError
from ablate.measurement.backends import backend_fuses, prepare_runnable
from ablate.measurement.calibration import RooflineSummary, cached_calibration, roofline_summary
from ablate.measurement.clock import Clock
from ablate.measurement.engine import StoppingPolicy, measure_latency
from ablate.measurement.profile import OpProfile, profile_operators
from ablate.measurement.results import LatencyResult, latency_to_dict
from ablate.measurement.setup import INSTANCES, MeasurementSetup, configure_torch, example_input
from ablate.runs.runner import runtime_profile
from ablate.runs.schema import RuntimeProfile
from ablate.services.inspect import ModelChoice as ModelChoice  # a model as bench takes it
from ablate.services.inspect import model_choice
from ablate.spec import defaults

if TYPE_CHECKING:
    import torch

    from ablate.runs.bench import BenchResults

# Two builds of one model differ by up to ~1% on CPU (memory placement); three copies per
# model average most of that out at a build cost of well under a second in eager mode.


@dataclass(frozen=True)
class Breakdown:
    """Where one variant's time goes: profiled shares, and the roofline when calibrated."""

    variant: str
    profile: OpProfile  # eager PyTorch's, by block and aten op
    roofline: RooflineSummary | None
    # The mobile runtime's own per-kernel times of the program that was timed, where its Python
    # API has a profiler (ExecuTorch's ETDump); None otherwise.
    runtime_profile: RuntimeProfile | None = None


@dataclass(frozen=True)
class BenchReport:
    latency: LatencyResult
    breakdowns: tuple[Breakdown, ...]
    calibrated: bool  # False: no calibration cached, so no roofline (run `ablate roofline`)


def run_bench(
    *,
    model: str,
    factors: Mapping[str, Any] | None = None,
    vs: str | None = None,
    vs_factors: Mapping[str, Any] | None = None,
    backend: str = "eager",
    precision: str = "fp32",
    threads: int = 1,
    budget_s: float = 60.0,
    device: str = "cpu",
    batch: int = 1,
    channels_last: bool = False,
    target_ci: float = 0.01,
    settle_s: float = defaults.SETTLE_S,
    instances: int = INSTANCES,
    breakdown: bool = True,
    seed: int = 0,
    clock: Clock | None = None,
    cluster: str | None = None,
    args: Mapping[str, Any] | None = None,
    vs_args: Mapping[str, Any] | None = None,
    resolution: int | None = None,
    allow_import: bool = False,
) -> BenchReport:
    """Times `model` (the baseline) and, with `vs`, `vs_factors` or `vs_args`, a second
    model against it.

    A model is a built-in's name with factors, or a module's factory by import path with
    keyword `args` (`vs_args`) at `resolution`, imported only with `allow_import`
    (`services.inspect.model_choice`). `vs_factors` (`vs_args`) without `vs` compares the
    same model with other settings. Each model
    is built as a run builds it (seeded weights, batch-norm statistics re-estimated: realistic
    activations, see measurement.activations), copied `instances` times into separate memory,
    and the rounds cycle through the copies (see measurement.engine); on a mobile backend the
    copies share one exported program from the cache. `clock` replaces the real clock (tests),
    as in `measure_latency`, and so does `settle_s` (a spec's `measure.settle_s` by default).
    `cluster`: export the programs on that Ray cluster.
    """
    from ablate.measurement.backends import check_backend_available

    if instances < 1:
        raise MeasurementError(f"instances must be at least 1 (got {instances})")
    check_backend_available(backend, precision)  # one line, before anything is built
    setup = MeasurementSetup(
        backend=backend,
        device=device,
        threads=threads,
        batch=batch,
        channels_last=channels_last,
        precision=precision,
    )
    stopping = StoppingPolicy(target_ci=target_ci, budget_seconds=budget_s)
    configure_torch(setup)
    choices = [
        model_choice(
            model, factors=factors, args=args, resolution=resolution, allow_import=allow_import
        )
    ]
    if vs is not None or vs_factors or vs_args:
        choices.append(
            model_choice(
                vs or model,
                factors=vs_factors,
                args=vs_args,
                resolution=resolution,
                allow_import=allow_import,
                options=("--set2", "--arg2"),
            )
        )
    labels = _labels(choices)

    built = {label: _build(choice) for label, choice in zip(labels, choices, strict=True)}
    groups = {
        label: group_function(choice.network())
        for label, choice in zip(labels, choices, strict=True)
    }
    from ablate.cluster import exports_on_cluster

    with exports_on_cluster(cluster, backend):
        _export_ahead(built, setup)
    # Copied alternately (A, B, A, B, ...), so that neither model always gets the earlier memory.
    copies: dict[str, list[tuple[torch.nn.Module, torch.Tensor]]] = {label: [] for label in labels}
    for instance in range(instances):
        for label, (module, resolution) in built.items():
            duplicate = module if instance == 0 else copy.deepcopy(module)
            copies[label].append((duplicate, example_input(setup, resolution)))
    runnables = {
        label: [prepare_runnable(module, images, setup) for module, images in pairs]
        for label, pairs in copies.items()
    }
    latency = measure_latency(
        runnables,
        baseline=labels[0],
        setup=setup,
        stopping=stopping,
        seed=seed,
        clock=clock,
        settle_s=settle_s,
    )
    calibration = cached_calibration(threads=threads, device=device)
    breakdowns: list[Breakdown] = []
    if breakdown:
        for label, [(module, images), *_] in copies.items():
            profile = profile_operators(module, images, device=device, group_of=groups[label])
            roofline = None
            # The calibration is an fp32 peak: an int8 model has no roofline against it.
            if calibration is not None and precision == "fp32":
                fused = backend_fuses(backend)
                per_block = _flops_and_bytes(
                    module, tuple(images.shape), fused=fused, group_of=groups[label]
                )
                roofline = roofline_summary(
                    per_block, calibration, latency.variant(label).median_ms / 1e3
                )
            kernels = runtime_profile(module, images, setup, runs=profile.runs)
            breakdowns.append(Breakdown(label, profile, roofline, kernels))
    return BenchReport(latency, tuple(breakdowns), calibrated=calibration is not None)


def _labels(choices: list[ModelChoice]) -> list[str]:
    labels = [choice.label for choice in choices]
    if len(labels) == 2 and labels[0] == labels[1]:  # an A/A comparison
        return [f"{labels[0]} #1", f"{labels[1]} #2"]
    return labels


def _build(choice: ModelChoice) -> tuple[torch.nn.Module, int]:
    """The model as a run builds it (seeded, realistic activations), and its input resolution."""
    from ablate.measurement.activations import realistic_module

    network = choice.network()
    return realistic_module(network), network.resolution


def _export_ahead(
    built: Mapping[str, tuple[torch.nn.Module, int]], setup: MeasurementSetup
) -> None:
    """On a mobile backend, both models' programs exported at once in worker processes."""
    from ablate.measurement.export_pool import export_pool

    with export_pool(setup.backend, setup.precision, len(built)) as pool:
        if pool is not None:
            for name, (module, resolution) in built.items():
                pool.submit(module, example_input(setup, resolution), name)
            pool.wait()


def _flops_and_bytes(
    module: torch.nn.Module, input_shape: tuple[int, ...], *, fused: bool, group_of: GroupOf
) -> dict[str, tuple[int, int]]:
    """Per block: eager runs every op on its own (unfused traffic, batch norm computed);
    the graph backends fold batch norm and fuse activations into the convs."""
    from ablate.counting.engine import count_model

    counts = count_model(module, input_shape, group_of=group_of)
    if fused:
        return {layer.name: (layer.flops_folded, layer.bytes_fused) for layer in counts.layers}
    return {layer.name: (layer.flops, layer.bytes_unfused) for layer in counts.layers}


def bench_results(report: BenchReport) -> BenchResults:
    """The report as its renderer reads it (`report.bench_console`): the results model's
    pieces, made from the engines' records as a run makes them."""
    from ablate.runs.bench import BenchResults, BenchVariant, Roofline, TimeBreakdown
    from ablate.runs.entries import latency_entry, measurement_entry, op_time_entry

    latency = report.latency
    return BenchResults(
        measurement=measurement_entry(latency, None),
        environment=dataclasses.asdict(latency.environment),
        variants=[BenchVariant(name=v.name, latency=latency_entry(v)) for v in latency.variants],
        breakdowns=[
            TimeBreakdown(
                variant=breakdown.variant,
                shares=op_time_entry(breakdown.profile),
                roofline=None if breakdown.roofline is None else Roofline.of(breakdown.roofline),
                runtime_profile=breakdown.runtime_profile,
            )
            for breakdown in report.breakdowns
        ],
        calibrated=report.calibrated,
    )


def bench_to_dict(report: BenchReport) -> dict[str, Any]:
    return {
        "latency": latency_to_dict(report.latency),
        "calibrated": report.calibrated,
        "breakdowns": [_breakdown_to_dict(breakdown) for breakdown in report.breakdowns],
    }


def _breakdown_to_dict(breakdown: Breakdown) -> dict[str, Any]:
    profile = breakdown.profile
    data: dict[str, Any] = {
        "variant": breakdown.variant,
        "profiled_runs": profile.runs,
        "by_block": [dataclasses.asdict(share) for share in profile.by_group()],
        "by_operator": [dataclasses.asdict(share) for share in profile.by_operator()],
        "roofline": None,
        "runtime_profile": None
        if breakdown.runtime_profile is None
        else breakdown.runtime_profile.model_dump(),
    }
    roofline = breakdown.roofline
    if roofline is not None:
        data["roofline"] = {
            "minimum_ms": roofline.minimum_seconds * 1e3,
            "measured_ms": roofline.measured_seconds * 1e3 if roofline.measured_seconds else None,
            "attainment": roofline.attainment,
            "blocks": [
                {
                    "name": block.name,
                    "flops": block.flops,
                    "bytes_moved": block.bytes_moved,
                    "minimum_ms": block.minimum_seconds * 1e3,
                    "bound": block.bound,
                }
                for block in roofline.blocks
            ],
        }
    return data
