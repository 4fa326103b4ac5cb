"""What `ablate run`, `compare` and `report` do: run a spec, find and load runs, write reports.

Each command parses its options and calls one function here; nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ablate.errors import AblateError
from ablate.runs.runner import Run, RunProgress, SilentProgress
from ablate.runs.schema import Results, load_results
from ablate.runs.storage import latest_run, new_run_directory, unfinished_run

STDOUT = "-"
REPORT_STEM = "report"
REPORT_FORMATS = {"markdown": "md", "json": "json", "csv": "csv"}


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
    try:
        Run(spec, directory, progress).execute(resume)
    finally:
        progress.close()
    return directory


def resolve_run(path: Path | None, out_dir: Path) -> Path:
    """The run to read: `path` (a directory or a results.json), or the latest in `out_dir`."""
    if path is None:
        return latest_run(out_dir)
    if not path.exists():
        raise AblateError(f"{path}: no such run directory or results.json")
    return path


def load_run(path: Path | None, out_dir: Path) -> tuple[Path, Results]:
    """(the run directory, its validated results, attribution included)."""
    run = resolve_run(path, out_dir)
    results = load_results(run)
    return (run if run.is_dir() else run.parent), results


@dataclass(frozen=True)
class ReportRequest:
    run: Path | None
    out_dir: Path
    formats: Sequence[str]  # keys of REPORT_FORMATS
    output: str | None  # a file, STDOUT, or None for RUN/report.<extension>
    versus: Path | None
    baseline: str | None


def write_reports(request: ReportRequest) -> list[tuple[str, str | None]]:
    """Render every requested format: (destination, text) where the destination is STDOUT
    and the text is still to print, or (path, None) for a file written."""
    from ablate.report.compare import check_baseline

    if request.output is not None and len(request.formats) > 1:
        raise AblateError("-o names one file: choose one of --markdown, --json, --csv")
    if request.versus is not None and "markdown" not in request.formats:
        raise AblateError("--vs sets a second run beside this one in the Markdown report only")
    run_directory, results = load_run(request.run, request.out_dir)
    check_baseline(results, request.baseline)
    second = None if request.versus is None else load_run(request.versus, request.out_dir)[1]
    done = []
    for name in request.formats:
        destination = request.output or str(
            run_directory / f"{REPORT_STEM}.{REPORT_FORMATS[name]}"
        )
        try:
            done.append(
                _write_format(name, results, run_directory, destination, request.baseline, second)
            )
        except OSError as error:
            where = error.filename or destination
            raise AblateError(f"{where}: cannot write ({error.strerror})") from None
    return done


def _write_format(
    name: str,
    results: Results,
    run_directory: Path,
    destination: str,
    baseline: str | None,
    versus: Results | None,
) -> tuple[str, str | None]:
    from ablate.files import write_text_atomic
    from ablate.report.tabular import comparison_csv, comparison_json

    if name == "markdown":
        text = _markdown(results, run_directory, destination, baseline, versus)
    elif name == "json":
        text = comparison_json(results, baseline)
    else:
        text = comparison_csv(results, baseline)
    if destination == STDOUT:
        return STDOUT, text
    write_text_atomic(Path(destination), text)
    return destination, None


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
