"""`ablate run SPEC`: options in, one library call; the run directory is the last line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run_command(
    spec: Annotated[
        Path, typer.Argument(help="Experiment spec (YAML), e.g. experiments/hswish.yaml")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory of run directories.")] = Path(
        "runs"
    ),
    backend: Annotated[
        str | None,
        typer.Option(help="Override the spec: eager | torchscript | onnxruntime | compile."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Override the spec's thread count.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A few seconds per variant; results say quick.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest unfinished run of this spec.")
    ] = False,
) -> None:
    """Build, count and measure every variant of SPEC; write DIR/<timestamp>-<name>/."""
    from ablate.analysis.compare import compare_variants
    from ablate.report.compare_console import latency_table, print_renderables
    from ablate.runs.progress import RichProgress
    from ablate.runs.runner import run_experiment
    from ablate.runs.schema import load_results

    directory = run_experiment(
        spec_path=spec,
        out_dir=out,
        backend=backend,
        threads=threads,
        quick=quick,
        resume=resume,
        progress=RichProgress(),
    )
    print_renderables([latency_table(compare_variants(load_results(directory)))])
    typer.echo(str(directory))
