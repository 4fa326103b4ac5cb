"""`ablate run`: build, count and measure every variant of a spec, saving after each stage.

Stages: counting (results.json after every distinct architecture), measuring (every round
appended to the journal as it is taken), profiling, attribution. A run killed at any point
loses only the work in flight; `resume=True` redoes nothing that was saved.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate import __version__
from ablate.files import write_json_atomic, write_text_atomic
from ablate.runs.directory import (
    ENVIRONMENT_NAME,
    RESOLVED_SPEC_NAME,
    SPEC_NAME,
    new_run_directory,
    unfinished_run,
)
from ablate.runs.entries import (
    count_entry,
    latency_entry,
    measurement_entry,
    op_time_entry,
    results_document,
    with_time_shares,
)
from ablate.runs.journal import JOURNAL_NAME, append_round, read_rounds
from ablate.runs.progress import RunProgress, SilentProgress
from ablate.runs.schema import RESULTS_NAME

if TYPE_CHECKING:
    from ablate.architecture.description import Architecture
    from ablate.measurement.setup import MeasurementSetup
    from ablate.spec.model import ExperimentSpec

PROFILE_RUNS = 5
# Two builds of one model differ by up to ~1% from where their weights land in memory; the
# rounds cycle through separately built copies so that this widens the interval instead of
# biasing it. Attribution-sized runs (hundreds of variants) keep one copy each: memory and
# build time grow with the copies, and the placement effects average out over the coalitions.
INSTANCES = 3
MANY_VARIANTS = 16
QUICK_PROFILE_RUNS = 1
# Warm-up comes out of the measurement budget: with many variants each gets a small slice.
WARMUP_SHARE_OF_BUDGET = 0.2
MINIMUM_WARMUP_S = 0.05
PACKAGES = ("torch", "numpy", "scipy", "fvcore", "ptflops", "onnxruntime", "typer", "pydantic")


@dataclass(frozen=True)
class Unit:
    """One distinct architecture: built, counted and timed once for all its variants."""

    name: str  # the first variant that resolves to it
    architecture: Architecture
    variants: tuple[str, ...]


def plan_units(spec: ExperimentSpec) -> list[Unit]:
    return [
        Unit(names[0], architecture, tuple(names))
        for architecture, names in spec.architecture_groups().items()
    ]


def environment_record(setup: MeasurementSetup) -> dict[str, Any]:
    import dataclasses

    from ablate.measurement.environment import collect_environment

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        **dataclasses.asdict(collect_environment(setup)),
        "machine": platform.machine(),
        "backend": setup.backend,
        "device": setup.device,
        "batch": setup.batch,
        "ablate_version": __version__,
        "packages": versions,
    }


class _Run:
    def __init__(self, spec: ExperimentSpec, directory: Path, progress: RunProgress):
        from ablate.measurement.setup import MeasurementSetup

        self.spec = spec
        self.directory = directory
        self.progress = progress
        self.resolved = spec.to_json()
        self.units = plan_units(spec)
        self.unit_of = {name: unit for unit in self.units for name in unit.variants}
        measure = spec.measure
        self.setup = MeasurementSetup(
            backend=measure.backend,
            device=measure.device,
            threads=measure.threads,
            batch=spec.input.batch,
            channels_last=measure.channels_last,
        )
        self.results_path = directory / RESULTS_NAME
        self.document: dict[str, Any] = {}

    # -- state ---------------------------------------------------------------------------

    def start(self, resume: bool) -> None:
        from ablate.measurement.setup import configure_torch

        # Before anything is recorded or built: the environment record states these settings.
        configure_torch(self.setup)
        if resume and self.results_path.exists():
            from ablate.runs.schema import load_results

            self.document = load_results(self.results_path).model_dump(mode="json", by_alias=True)
            return
        environment = environment_record(self.setup)
        write_text_atomic(self.directory / SPEC_NAME, self.spec.source_text)
        write_json_atomic(self.directory / RESOLVED_SPEC_NAME, self.resolved)
        write_json_atomic(self.directory / ENVIRONMENT_NAME, environment)
        self.document = results_document(
            status="counting",
            version=__version__,
            spec=self.resolved,
            environment=environment,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            quick=self.spec.measure.quick,
            variants=[],
        )
        self.save()

    def save(self, status: str | None = None) -> None:
        if status is not None:
            self.document["status"] = status
        write_json_atomic(self.results_path, self.document)

    def entry(self, name: str) -> dict[str, Any]:
        return next(v for v in self.document["variants"] if v["name"] == name)

    # -- stages ----------------------------------------------------------------------------

    def count(self) -> None:
        from ablate.architecture.builder import build_module
        from ablate.architecture.summary import layer_rows
        from ablate.counting.engine import count_model
        from ablate.variants.describe import describe_factors

        done = {variant["name"] for variant in self.document["variants"]}
        specs = {variant.name: variant for variant in self.spec.variants}
        for position, unit in enumerate(self.units):
            if set(unit.variants) <= done:
                continue
            self.progress.counting(unit.name, position, len(self.units))
            model = build_module(unit.architecture)
            resolution = unit.architecture.resolution
            counts = count_model(model, (self.setup.batch, 3, resolution, resolution))
            rows = layer_rows(unit.architecture, model)
            described = describe_factors(unit.architecture)
            for name in unit.variants:
                self.document["variants"].append(
                    count_entry(
                        name=name,
                        base=specs[name].base,
                        factors=specs[name].factors,
                        resolved_factors=described,
                        measured_as=unit.name,
                        counts=counts,
                        rows=rows,
                    )
                )
            self.save()
        order = {variant.name: index for index, variant in enumerate(self.spec.variants)}
        self.document["variants"].sort(key=lambda variant: order[variant["name"]])
        self.progress.counting("done", len(self.units), len(self.units))
        self.save("counted")

    def measure(self) -> None:
        from ablate.architecture.builder import build_module
        from ablate.measurement.backends import prepare_runnable
        from ablate.measurement.calibrate import cached_calibration
        from ablate.measurement.latency import measure_latency
        from ablate.measurement.rounds import StoppingPolicy
        from ablate.measurement.setup import example_input
        from ablate.measurement.summary import stopping_widths
        from ablate.measurement.warmup import WarmupPolicy

        measure = self.spec.measure
        names = [unit.name for unit in self.units]
        baseline = self.unit_of[self.spec.baseline].name
        journal = self.directory / JOURNAL_NAME
        prior = read_rounds(journal, set(names))
        if prior:
            self.progress.note(f"resuming the measurement after {len(prior)} journal rounds")
        instances = 1 if len(self.units) > MANY_VARIANTS else INSTANCES
        runnables = {}
        for unit in self.units:
            images = example_input(self.setup, unit.architecture.resolution)
            runnables[unit.name] = [
                prepare_runnable(build_module(unit.architecture), images, self.setup)
                for _ in range(instances)
            ]

        settings = measure.effective()
        warmup_seconds = min(
            settings.warmup_s,
            max(MINIMUM_WARMUP_S, WARMUP_SHARE_OF_BUDGET * settings.budget_s / len(names)),
        )
        warmup = WarmupPolicy(maximum_seconds=warmup_seconds)
        budget = settings.budget_s
        samples: dict[str, list[float]] = {name: [] for name in names}
        for seconds in prior:
            for name in names:
                samples[name].append(seconds[name])
        started = time.perf_counter()
        widest: list[float | None] = [None]

        def on_round(index: int, seconds: Mapping[str, float]) -> None:
            append_round(journal, index, seconds)
            for name in names:
                samples[name].append(seconds[name])
            # A bootstrap per variant: cheap next to a round, but not worth every round.
            if len(names) > 1 and len(samples[baseline]) >= 6 and index % 5 == 0:
                widths = stopping_widths(samples, baseline, seed=index)
                widest[0] = max(widths.values(), default=None)
            self.progress.measuring(
                index, baseline, widest[0], budget - (time.perf_counter() - started)
            )

        result = measure_latency(
            runnables,
            baseline=baseline,
            setup=self.setup,
            stopping=StoppingPolicy(
                target_ci=settings.target_ci,
                budget_seconds=settings.budget_s,
                minimum_rounds=settings.min_rounds,
                maximum_rounds=settings.max_rounds,
            ),
            warmup=warmup,
            on_round=on_round,
            prior_rounds=prior,
            seed=settings.seed,
        )
        calibration = cached_calibration(threads=self.setup.threads, device=self.setup.device)
        for unit in self.units:
            latency = latency_entry(result.variant(unit.name))
            for name in unit.variants:
                self.entry(name)["latency"] = latency
        self.document["measurement"] = measurement_entry(result, calibration)
        self.save("measured")

    def profile(self) -> None:
        from ablate.architecture.builder import build_module
        from ablate.measurement.calibrate import cached_calibration
        from ablate.measurement.profile import profile_operators
        from ablate.measurement.setup import example_input

        calibration = cached_calibration(threads=self.setup.threads, device=self.setup.device)
        runs = QUICK_PROFILE_RUNS if self.spec.measure.quick else PROFILE_RUNS
        fused = self.setup.backend != "eager"
        for unit in self.units:
            model = build_module(unit.architecture)
            images = example_input(self.setup, unit.architecture.resolution)
            profile = profile_operators(model, images, runs=runs, device=self.setup.device)
            shares = op_time_entry(profile)
            for name in unit.variants:
                entry = self.entry(name)
                entry["op_time_shares"] = shares
                entry["blocks"] = with_time_shares(
                    entry["blocks"], shares["by_block"], calibration, fused=fused
                )
        self.save("profiled")

    def attribute(self) -> None:
        attribution = self.spec.attribution
        if attribution is None:
            self.save("complete")
            return
        from ablate.analysis.attribution import attribute
        from ablate.analysis.coalitions import CoalitionSpace

        space = CoalitionSpace(attribution.factors)
        names = {variant.name for variant in self.spec.variants}
        masks = [mask for mask in space.masks() if space.variant_name(mask) in names]
        units = [self.unit_of[space.variant_name(mask)].name for mask in masks]
        rounds = read_rounds(self.directory / JOURNAL_NAME, {unit.name for unit in self.units})
        latency = [[entry[unit] for unit in units] for entry in rounds]

        def metric(key: str) -> Any:
            by_mask = {mask: self.entry(space.variant_name(mask))[key] for mask in masks}
            return lambda mask: by_mask[mask]

        result = attribute(
            attribution.factors,
            {
                key: metric(key)
                for key in (
                    "params",
                    "macs",
                    "flops",
                    "flops_folded",
                    "bytes_unfused",
                    "bytes_fused",
                )
            },
            latency,
            from_name=attribution.from_architecture,
            to_name=attribution.to_architecture,
            latency_masks=masks,
            path_order=attribution.factors,
            method=attribution.method,
            permutation_count=attribution.permutations,
            sampling_seed=attribution.seed,
        )
        self.document["attribution"] = result.to_json()
        self.save("complete")


def run_experiment(
    *,
    spec_path: Path,
    out_dir: Path = Path("runs"),
    backend: str | None = None,
    threads: int | None = None,
    quick: bool = False,
    resume: bool = False,
    progress: RunProgress | None = None,
) -> Path:
    """Run the experiment of ``spec_path``; returns its run directory."""
    from ablate.spec import load_spec, with_overrides

    spec = with_overrides(
        load_spec(spec_path), backend=backend, threads=threads, quick=True if quick else None
    )
    progress = progress or SilentProgress()
    if resume:
        directory = unfinished_run(out_dir, spec.to_json())
        progress.note(f"resuming {directory}")
    else:
        directory = new_run_directory(out_dir, spec.name)
    run = _Run(spec, directory, progress)
    stages = (
        ("counting", run.count, "counted"),
        ("counted", run.measure, "measured"),
        ("measured", run.profile, "profiled"),
        ("profiled", run.attribute, "complete"),
    )
    try:
        run.start(resume)
        status = run.document["status"]
        for before, stage, after in stages:
            if status == before:
                started = time.perf_counter()
                stage()
                progress.note(f"{after} in {time.perf_counter() - started:.1f} s")
                status = after
    finally:
        progress.close()
    return directory
