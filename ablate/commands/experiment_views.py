"""`ablate compare` and `ablate report`: read a run's results.json, render, print or write.

Only typer and the standard library at import time: the renderers (rich, matplotlib) load
inside the commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ablate.runs.schema import Results

STDOUT = "-"
REPORT_STEM = "report"
_EXTENSIONS = {"markdown": "md", "json": "json", "csv": "csv"}

RunArgument = Annotated[
    Path | None,
    typer.Argument(
        help="A run directory or its results.json (default: the latest run in --out).",
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


def resolve_run(path: Path | None, out_dir: Path) -> Path:
    """The run to read: `path` (a directory or a results.json), or the latest in `out_dir`."""
    from ablate.errors import AblateError
    from ablate.runs.directory import latest_run

    if path is None:
        return latest_run(out_dir)
    if not path.exists():
        raise AblateError(f"{path}: no such run directory or results.json")
    return path


def load_run(path: Path | None, out_dir: Path) -> tuple[Path, Results]:
    """(the run directory, its validated results, attribution included)."""
    from ablate.analysis.attribution_view import parse_attribution
    from ablate.runs.schema import RESULTS_NAME, load_results

    run = resolve_run(path, out_dir)
    results = load_results(run)
    if results.attribution is not None:
        # Checked here, where the file is known, so a damaged one is named in the error.
        parse_attribution(results.attribution, run / RESULTS_NAME if run.is_dir() else run)
    return (run if run.is_dir() else run.parent), results


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

    _, first = load_run(run, out)
    if run2 is None:
        print_renderables(comparison_renderables(first, baseline))
        return
    _, second = load_run(run2, out)
    print_renderables(run_comparison_renderables(first, second, baseline))


def _formats(markdown: bool, json_output: bool, csv_output: bool) -> list[str]:
    chosen = [
        name
        for name, wanted in (("markdown", markdown), ("json", json_output), ("csv", csv_output))
        if wanted
    ]
    return chosen or ["markdown"]


def _markdown(
    results: Results,
    run_directory: Path,
    destination: str,
    baseline: str | None,
    versus: Results | None,
) -> str:
    """The report text, its figures written beside it (beside the run for stdout)."""
    from ablate.report.markdown import render_markdown
    from ablate.report.plots import write_report_plots

    if destination == STDOUT:
        # No file to sit beside: the figures go into the run, linked from where we stand.
        names = write_report_plots(
            results, run_directory, prefix=f"{REPORT_STEM}-", baseline=baseline
        )
        plots = {key: os.path.relpath(run_directory / name) for key, name in names.items()}
    else:
        path = Path(destination)
        plots = write_report_plots(results, path.parent, prefix=f"{path.stem}-", baseline=baseline)
    return render_markdown(results, plots=plots, baseline=baseline, versus=versus)


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
            help="File to write ('-' prints to stdout); default RUN/report.md, .json, .csv.",
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
    from ablate.analysis.compare import check_baseline
    from ablate.errors import AblateError

    formats = _formats(markdown, json_output, csv_output)
    if output is not None and len(formats) > 1:
        raise AblateError("-o names one file: choose one of --markdown, --json, --csv")
    if versus is not None and "markdown" not in formats:
        raise AblateError("--vs sets a second run beside this one in the Markdown report only")
    run_directory, results = load_run(run, out)
    check_baseline(results, baseline)
    second = None if versus is None else load_run(versus, out)[1]
    for name in formats:
        destination = output or str(run_directory / f"{REPORT_STEM}.{_EXTENSIONS[name]}")
        try:
            _write_format(name, results, run_directory, destination, baseline, second)
        except OSError as error:
            where = error.filename or destination
            raise AblateError(f"{where}: cannot write ({error.strerror})") from None


def _write_format(
    name: str,
    results: Results,
    run_directory: Path,
    destination: str,
    baseline: str | None,
    versus: Results | None,
) -> None:
    from ablate.files import write_text_atomic
    from ablate.report.tabular import comparison_csv, comparison_json

    if name == "markdown":
        text = _markdown(results, run_directory, destination, baseline, versus)
    elif name == "json":
        text = comparison_json(results, baseline)
    else:
        text = comparison_csv(results, baseline)
    if destination == STDOUT:
        typer.echo(text, nl=False)
        return
    write_text_atomic(Path(destination), text)
    typer.echo(f"wrote {destination}")
