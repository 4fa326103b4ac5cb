"""`ablate bench`: options in, one library call (`run_bench`), render.

Only typer, the standard library and the backend registry (its descriptors, which import
nothing heavy) at import time: torch loads inside the command.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from ablate.commands.architecture import (
    AllowImportOption,
    ArgOption,
    ModelArgument,
    ResolutionOption,
)
from ablate.commands.devices import ClusterOption
from ablate.measurement.backends import BACKENDS, PRECISIONS, backends_offering
from ablate.spec.defaults import SETTLE_S


def bench_command(
    model: ModelArgument,
    set_options: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="FACTOR=VALUE",
            help="Factor setting of MODEL, VALUE read as YAML (se=off, kernel=5). Repeatable.",
        ),
    ] = None,
    vs: Annotated[
        str | None,
        typer.Option("--vs", metavar="MODEL2", help="A second model, timed against MODEL."),
    ] = None,
    set2_options: Annotated[
        list[str] | None,
        typer.Option(
            "--set2",
            metavar="FACTOR=VALUE",
            help="Factor setting of the second model; without --vs, MODEL with these settings.",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(help=f"{' | '.join(BACKENDS.names())}."),
    ] = "eager",
    precision: Annotated[
        str,
        typer.Option(
            help=f"{' | '.join(PRECISIONS)} (static PT2E; "
            f"{', '.join(backends_offering('int8'))} only)."
        ),
    ] = "fp32",
    threads: Annotated[int, typer.Option(min=1, help="Intra-op threads.")] = 1,
    budget: Annotated[
        float, typer.Option(min=0.001, help="Seconds for the whole measurement, warm-up included.")
    ] = 60.0,
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    batch: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 1,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="NHWC memory layout for model and input.")
    ] = False,
    target_ci: Annotated[
        float,
        typer.Option(help="Stop once every 95% interval is within +/- this fraction (0.01 = 1%)."),
    ] = 0.01,
    settle: Annotated[
        float,
        typer.Option(
            "--settle-s",
            min=0.0,
            help="Untimed seconds of a model before each timing (at most 30 calls; 0: one "
            "call), as a spec's measure.settle_s.",
        ),
    ] = SETTLE_S,
    instances: Annotated[
        int,
        typer.Option(
            min=1,
            help="Separately built copies of each model, cycled through: two builds of one "
            "model differ by up to ~1% on CPU (memory placement).",
        ),
    ] = 3,
    breakdown: Annotated[
        bool,
        typer.Option(
            "--breakdown/--no-breakdown", help="Profile per-op time shares (and the roofline)."
        ),
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    cluster: ClusterOption = None,
    allow_import: AllowImportOption = False,
    arg_options: ArgOption = None,
    arg2_options: Annotated[
        list[str] | None,
        typer.Option(
            "--arg2",
            metavar="KEY=VALUE",
            help="A keyword argument of the second model's factory (an imported --vs, or "
            "without --vs, MODEL called with these arguments).",
        ),
    ] = None,
    resolution: ResolutionOption = None,
) -> None:
    """Time MODEL (and a second model against it) with intervals, significance and noise flags."""
    from rich.console import Console

    from ablate.report.bench_console import bench_report
    from ablate.services.bench import bench_results, bench_to_dict, run_bench
    from ablate.spec.source import parse_set_options

    report = run_bench(
        model=model,
        factors=parse_set_options(set_options or []),
        vs=vs,
        vs_factors=parse_set_options(set2_options or [], option="--set2"),
        backend=backend,
        precision=precision,
        threads=threads,
        budget_s=budget,
        device=device,
        batch=batch,
        channels_last=channels_last,
        target_ci=target_ci,
        settle_s=settle,
        instances=instances,
        breakdown=breakdown,
        cluster=cluster,
        args=parse_set_options(arg_options or [], option="--arg"),
        vs_args=parse_set_options(arg2_options or [], option="--arg2"),
        resolution=resolution,
        allow_import=allow_import,
    )
    if json_output:
        typer.echo(json.dumps(bench_to_dict(report), indent=2))
    else:
        Console().print(bench_report(bench_results(report)))


# `ablate roofline`: options in, one library call (`calibrate_machine`), render.
#
# Only typer and the standard library at import time: torch loads inside the command.


def roofline_command(
    threads: Annotated[int, typer.Option(min=1, help="Threads to measure the roofs for.")] = 1,
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    force: Annotated[
        bool, typer.Option("--force", help="Measure again, ignoring the cache.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure peak fp32 FLOP/s and memory bandwidth once; `bench` then shows the roofline."""
    from rich.console import Console

    from ablate.measurement.calibration import calibrate_machine
    from ablate.report.bench_console import calibration_report
    from ablate.runs.bench import MachineCalibration

    outcome = calibrate_machine(threads=threads, device=device, force=force)
    if json_output:
        data = dataclasses.asdict(outcome.calibration)
        data.update(path=str(outcome.path), source=outcome.source)
        typer.echo(json.dumps(data, indent=2))
    else:
        Console().print(calibration_report(MachineCalibration.of(outcome)))
