"""What `ablate report` and `ablate compare` do with a matrix directory (`matrix.json` and its
devices' runs, `runs.matrix`): load it into the matrix report's model and write or return its
renderings. A matrix compares its own devices, so the options that set one run beside another
or re-base a run (`--vs`, a second run, `--baseline`) are refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ablate.errors import AblateError
from ablate.report.matrix_model import MatrixReport, matrix_report
from ablate.runs.matrix import MATRIX_NAME, load_device_results, load_matrix

HEATMAP_SUFFIX = "-shapley.png"


def is_matrix(path: Path | None) -> bool:
    """Whether `path` is a matrix directory or its matrix.json."""
    if path is None:
        return False
    return (path / MATRIX_NAME).is_file() if path.is_dir() else path.name == MATRIX_NAME


def _directory(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def load_matrix_report(path: Path) -> MatrixReport:
    """The model of the matrix at `path`, each complete device's results read and checked."""
    directory = _directory(path)
    matrix = load_matrix(directory)
    return matrix_report(matrix, load_device_results(matrix, directory))


def compare_matrix(path: Path, second: Path | None, baseline: str | None) -> MatrixReport:
    """`ablate compare MATRIX_DIR`: the model, or one line for an option a matrix takes not."""
    if second is not None:
        raise AblateError(
            f"{second if is_matrix(second) else path}: a matrix sets its devices side by side "
            "itself; compare it alone (ablate compare MATRIX_DIR)"
        )
    if baseline is not None:
        raise AblateError(
            f"--baseline {baseline}: a matrix compares each device's attribution ends (from "
            "and to); it takes no baseline"
        )
    return load_matrix_report(path)


def write_matrix_reports(
    path: Path,
    formats: Sequence[str],
    output: str | None,
    versus: Path | None,
    baseline: str | None,
) -> list[tuple[str, str | None]]:
    """Render every requested format of the matrix at `path`, as `services.experiment.
    write_reports` does for a run: (STDOUT, text) to print, or (path, None) for a file
    written; the default file is MATRIX_DIR/report.<extension>."""
    from ablate.files import write_text_atomic
    from ablate.report.matrix_export import matrix_csv, matrix_json
    from ablate.report.write import REPORT_FORMATS, REPORT_STEM, STDOUT

    if versus is not None:
        raise AblateError(
            f"--vs {versus}: a matrix sets its devices side by side itself; it takes no second run"
        )
    if baseline is not None:
        raise AblateError(
            f"--baseline {baseline}: a matrix compares each device's attribution ends (from "
            "and to); it takes no baseline"
        )
    if output is not None and len(formats) > 1:
        raise AblateError("-o names one file: choose one of --markdown, --json, --csv")
    directory = _directory(path)
    report = load_matrix_report(path)
    done: list[tuple[str, str | None]] = []
    for name in formats:
        destination = output or str(directory / f"{REPORT_STEM}.{REPORT_FORMATS[name]}")
        try:
            if name == "markdown":
                text = _markdown(report, directory, destination, STDOUT)
            elif name == "json":
                text = matrix_json(report)
            else:
                text = matrix_csv(report)
            if destination == STDOUT:
                done.append((STDOUT, text))
                continue
            write_text_atomic(Path(destination), text)
        except OSError as error:
            where = error.filename or destination
            raise AblateError(f"{where}: cannot write ({error.strerror})") from None
        done.append((destination, None))
    return done


def _markdown(report: MatrixReport, directory: Path, destination: str, stdout: str) -> str:
    """The Markdown text, its heatmap written beside it (in the matrix directory for stdout,
    linked from where we stand)."""
    from ablate.report.matrix_markdown import render_matrix_markdown
    from ablate.report.matrix_plots import write_shapley_heatmap
    from ablate.report.write import REPORT_STEM

    if destination == stdout:
        written = write_shapley_heatmap(report, directory / f"{REPORT_STEM}{HEATMAP_SUFFIX}")
        link = None if written is None else os.path.relpath(written)
    else:
        target = Path(destination)
        name = f"{target.stem}{HEATMAP_SUFFIX}"
        written = write_shapley_heatmap(report, target.parent / name)
        link = None if written is None else name
    return render_matrix_markdown(report, heatmap=link)
