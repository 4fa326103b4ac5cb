"""`ablate validate`, `run`, `compare` and `report`: options in, one service call, render.

Only typer, the standard library and the vocabularies at import time: the engines and the
renderers (rich, matplotlib) load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ablate.commands.architecture import AllowImportOption
from ablate.commands.devices import ClusterOption, PriorOption
from ablate.measurement.backends import BACKENDS, PRECISIONS

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Go ahead even when the estimate says the run exceeds this machine's memory or "
        "its minimum rounds exceed twice the budget.",
    ),
]


def validate_command(
    spec: Annotated[
        Path, typer.Argument(help="An experiment spec (YAML), e.g. experiments/hswish.yaml.")
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the resolved spec (defaults filled in).")
    ] = False,
    force: ForceOption = False,
    allow_import: AllowImportOption = False,
) -> None:
    """Check a spec: keys, types, values, every variant's architecture, and whether the run
    fits this machine's memory and its budget. Nothing is measured."""
    from ablate.devices.vocabulary import spec_devices
    from ablate.report.console import summary_line, variant_lines
    from ablate.runs.estimate import check_fits, estimate_run
    from ablate.runs.runner import built_copies
    from ablate.spec import load_spec
    from ablate.spec.imports import admit_imports

    experiment = load_spec(spec)
    admit_imports(experiment, allow_import)
    devices = spec_devices(experiment)
    if json_output:
        typer.echo(json.dumps(experiment.to_json(), indent=2))
        return
    estimate = estimate_run(experiment, built_copies(len(experiment.architecture_groups())))
    check_fits(estimate, force=force)
    typer.echo(summary_line(experiment))
    typer.echo(estimate.summary())
    if devices is not None:
        from ablate.services.matrix import matrix_estimate

        typer.echo(f"devices (a run each): {', '.join(device.name for device in devices)}")
        typer.echo(matrix_estimate(experiment, devices))
    for line in variant_lines(experiment):
        typer.echo(line)


RunArgument = Annotated[
    Path | None,
    typer.Argument(
        help="A run directory or its results.json (default: the latest run in --out); or a "
        "matrix directory (`ablate run --devices`), its devices side by side.",
        show_default=False,
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        "-b",
        help="Compare against this variant instead of the run's baseline; latency changes "
        "are then approximate (the run paired its rounds with its own baseline).",
        show_default=False,
    ),
]
OutOption = Annotated[Path, typer.Option("--out", help="Where runs live, for the default RUN.")]


def run_command(
    spec: Annotated[
        Path,
        typer.Argument(
            help="Experiment spec (YAML), e.g. experiments/hswish.yaml; or, with --resume, a "
            "matrix directory to continue."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory of run directories.")] = Path(
        "runs"
    ),
    backend: Annotated[
        str | None,
        typer.Option(help=f"Override the spec: {' | '.join(BACKENDS.names())}."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help=f"Override the spec: {' | '.join(PRECISIONS)} (int8 on the mobile backends)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Override the spec's thread count.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A few seconds per variant; results say quick.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the latest unfinished run of this spec; `--resume MATRIX_DIR`: the "
            "matrix's devices not complete.",
        ),
    ] = False,
    force: ForceOption = False,
    device: Annotated[
        str | None,
        typer.Option(help="Predict on this device profile (`ablate devices`) instead of timing."),
    ] = None,
    prior: PriorOption = "stated",
    devices: Annotated[
        str | None,
        typer.Option(
            help="A device matrix, one run per device, one after another: BACKEND or "
            "BACKEND/PRECISION or a profile, comma-separated (e.g. eager,executorch/int8,"
            "pixel1); default: the spec's devices:. With --resume MATRIX_DIR: which of its "
            "devices to continue.",
            show_default=False,
        ),
    ] = None,
    cluster: ClusterOption = None,
    phone: Annotated[
        str | None,
        typer.Option(
            help="Time the programs on this phone (adb serial) through adb, by the runtime's "
            "benchmark binary that BENCHMARK_BINARY names (executorch, litert, onnxruntime).",
            show_default=False,
        ),
    ] = None,
    allow_import: AllowImportOption = False,
) -> None:
    """Build, count and measure every variant of SPEC; write DIR/<timestamp>-<name>/ (a
    device matrix: DIR/<timestamp>-<name>-matrix/ with matrix.json and a run per device)."""
    from ablate.report.compare import compare_variants
    from ablate.report.compare_console import print_renderables, run_renderables
    from ablate.report.progress import run_progress
    from ablate.runs.schema import load_results
    from ablate.services.experiment import run_experiment
    from ablate.services.matrix import run_requested_matrix

    matrix_run = run_requested_matrix(
        spec,
        devices=devices,
        resume=resume,
        out_dir=out,
        backend=backend,
        precision=precision,
        device=device,
        prior=prior,
        threads=threads,
        quick=quick,
        force=force,
        progress=run_progress,
        cluster=cluster,
        phone=phone,
    )
    if matrix_run is not None:
        matrix_directory, matrix = matrix_run
        for entry in matrix.devices:
            typer.echo(
                f"{entry.name}: {entry.status} {matrix.run_directory(matrix_directory, entry)}"
            )
        typer.echo(str(matrix_directory))
        return

    directory = run_experiment(
        spec_path=spec,
        out_dir=out,
        backend=backend,
        precision=precision,
        threads=threads,
        quick=quick,
        resume=resume,
        force=force,
        progress=run_progress(),
        device=device,
        prior=prior,
        cluster=cluster,
        phone=phone,
        allow_import=allow_import,
    )
    print_renderables(run_renderables(compare_variants(load_results(directory))))
    typer.echo(str(directory))


def compare_command(
    run: RunArgument = None,
    run2: Annotated[
        Path | None,
        typer.Argument(
            help="A second run: the same variants side by side, environment differences first.",
            show_default=False,
        ),
    ] = None,
    baseline: BaselineOption = None,
    out: OutOption = Path("runs"),
) -> None:
    """Every variant against the baseline: counts, latency with intervals, differing blocks."""
    from ablate.report.compare_console import (
        comparison_renderables,
        print_renderables,
        run_comparison_renderables,
    )
    from ablate.services.experiment import load_run
    from ablate.services.matrix_report import compare_matrix, is_matrix

    if run is not None and (is_matrix(run) or is_matrix(run2)):
        from ablate.report.matrix_console import matrix_renderables

        print_renderables(matrix_renderables(compare_matrix(run, run2, baseline)))
        return
    _, first = load_run(run, out)
    if run2 is None:
        print_renderables(comparison_renderables(first, baseline))
        return
    _, second = load_run(run2, out)
    print_renderables(run_comparison_renderables(first, second, baseline))


def report_command(
    run: RunArgument = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="A Markdown report with figures (the default).")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="The comparison rows and block changes as JSON.")
    ] = False,
    csv_output: Annotated[
        bool, typer.Option("--csv", help="The main table as CSV, one row per variant.")
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write ('-' prints to stdout; missing parent directories are "
            "created); default RUN/report.md, .json, .csv.",
            show_default=False,
        ),
    ] = None,
    versus: Annotated[
        Path | None,
        typer.Option(
            "--vs",
            help="A second run (another backend, say) to set beside this one in the report.",
            show_default=False,
        ),
    ] = None,
    baseline: BaselineOption = None,
    out: OutOption = Path("runs"),
) -> None:
    """Write a report of a run: Markdown with figures, or the comparison as JSON or CSV."""
    from ablate.services.experiment import ReportRequest, write_reports
    from ablate.services.matrix_report import is_matrix, write_matrix_reports

    wanted = (("markdown", markdown), ("json", json_output), ("csv", csv_output))
    formats = [name for name, chosen in wanted if chosen] or ["markdown"]
    if run is not None and is_matrix(run):
        done = write_matrix_reports(run, formats, output, versus, baseline)
    else:
        done = write_reports(ReportRequest(run, out, formats, output, versus, baseline))
    for destination, text in done:
        if text is None:
            typer.echo(f"wrote {destination}")
        else:
            typer.echo(text, nl=False)
