"""What `ablate run`, `compare` and `report` do: run a spec, find and load its runs, write
their reports (rendered by `ablate.report`).

Each command parses its options and calls one function here; nothing here prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ablate.errors import AblateError
from ablate.measurement.backends import check_backend_available
from ablate.runs.estimate import check_fits, estimate_run
from ablate.runs.runner import (
    Run,
    RunProgress,
    SharedWork,
    SilentProgress,
    built_copies,
    rerun_command,
)
from ablate.runs.schema import Results, load_results
from ablate.runs.storage import (
    check_out_dir,
    latest_run,
    new_run_directory,
    resumable_run,
    unfinished_run,
)


def run_experiment(
    *,
    spec_path: Path,
    out_dir: Path = Path("runs"),
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    quick: bool = False,
    resume: bool = False,
    force: bool = False,
    progress: RunProgress | None = None,
    device: str | None = None,
    prior: str = "stated",
    kernels: bool | None = None,
    run_directory: Path | None = None,
    rerun: Callable[[Path], tuple[Sequence[str], Sequence[str]]] | None = None,
    shared: SharedWork | None = None,
    cluster: str | None = None,
    phone: str | None = None,
    allow_import: bool = False,
) -> Path:
    """Run the experiment of ``spec_path``; returns its run directory.

    ``device``: predict every latency on that device profile instead of timing; ``prior``:
    `none` predicts with the profile's raw fit (`devices.profile.PRIOR_CHOICES`).
    ``kernels`` overrides `measure.kernels`. ``run_directory``, with ``resume``: the run to
    continue (default: the latest unfinished run of the spec in ``out_dir``). ``rerun``, given
    the run directory: the command line that starts the run again and the arguments that make
    it continue this one, which an interruption names (default: `ablate run` with these
    arguments, and `--resume`). ``shared``: what a device matrix's runs share (counts, eager op
    profiles), which this run reads and adds to instead of doing what another device's did.
    ``cluster``: export the mobile programs on that Ray cluster (`ablate.cluster`).
    ``phone``: time the programs on the phone of that adb serial (`measurement.phone`).
    ``allow_import``: a spec that names a module to import (`model:`) runs its code; without
    it such a spec is refused (`spec.imports`).
    """
    from ablate.spec import load_spec, with_overrides
    from ablate.spec.imports import admit_imports

    spec = with_overrides(
        load_spec(spec_path),
        backend=backend,
        precision=precision,
        threads=threads,
        quick=True if quick else None,
        kernels=kernels,
    )
    admit_imports(spec, allow_import)
    predictor = None
    if device is None and prior != "stated":
        raise AblateError(f"--prior {prior}: only with --device (it chooses a profile's fit)")
    if device is not None and phone is not None:
        raise AblateError("--device predicts, --phone measures on a phone: give one of them")
    if device is not None:
        from ablate.devices.profile import load_profile
        from ablate.devices.runs import ProfilePredictor

        # A bad name fails before the run directory exists.
        predictor = ProfilePredictor(load_profile(device, prior), prior)
    progress = progress or SilentProgress()
    # The arguments first (an --out that is a file, nothing to resume): an estimate printed
    # before the refusal would read as if the run had started.
    check_out_dir(out_dir, create=not resume)
    resumed = None
    if resume:
        resumed = (
            unfinished_run(out_dir, spec.to_json())
            if run_directory is None
            else resumable_run(run_directory, spec.to_json())
        )
    # Before anything is created: a missing runtime or a run too big for the machine is
    # refused while there is nothing to clean up.
    if predictor is None:
        check_backend_available(spec.measure.backend, spec.measure.precision)
        if phone is not None:
            from ablate.measurement.backends import BACKENDS
            from ablate.measurement.phone import phone_target

            phone_target(phone, BACKENDS.get(spec.measure.backend))  # adb and binary found
        estimate = estimate_run(spec, built_copies(len(spec.architecture_groups())))
        check_fits(estimate, force=force)
        progress.note(estimate.summary())
    # Joined before the run directory exists: a cluster that cannot be reached, or a node
    # refused, leaves nothing behind.
    joined = contextlib.ExitStack()
    if predictor is None and cluster is not None:
        from ablate.cluster import exports_on_cluster

        joined.enter_context(exports_on_cluster(cluster, spec.measure.backend))
    if resumed is not None:
        directory = resumed
        progress.note(f"resuming {directory}")
    else:
        try:
            directory = new_run_directory(out_dir, spec.name)
        except BaseException:
            joined.close()
            raise
    if rerun is not None:
        command, resume_arguments = rerun(directory)
    else:
        command = rerun_command(
            spec_path,
            out_dir,
            backend=backend,
            precision=precision,
            threads=threads,
            quick=quick,
            force=force,
            device=device,
            prior=prior,
            cluster=cluster,
            phone=phone,
            allow_import=allow_import,
        )
        resume_arguments = ("--resume",)
    try:
        with joined:
            Run(spec, directory, progress, predictor, shared=shared, phone=phone).execute(
                resume, command, resume_arguments
            )
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
    formats: Sequence[str]  # keys of report.write.REPORT_FORMATS
    output: str | None  # a file, report.write.STDOUT, or None for RUN/report.<extension>
    versus: Path | None
    baseline: str | None


def write_reports(request: ReportRequest) -> list[tuple[str, str | None]]:
    """Render every requested format: (destination, text) where the destination is STDOUT
    and the text is still to print, or (path, None) for a file written."""
    from ablate.report.compare import check_baseline
    from ablate.report.write import REPORT_FORMATS, REPORT_STEM, write_format

    if request.output is not None and len(request.formats) > 1:
        raise AblateError("-o names one file: choose one of --markdown, --json, --csv")
    if request.versus is not None and "markdown" not in request.formats:
        raise AblateError("--vs sets a second run beside this one in the Markdown report only")
    run_directory, results = load_run(request.run, request.out_dir)
    check_baseline(results, request.baseline)
    second = None if request.versus is None else load_run(request.versus, request.out_dir)[1]
    done = []
    for name in request.formats:
        destination = request.output or str(run_directory / f"{REPORT_STEM}.{REPORT_FORMATS[name]}")
        try:
            done.append(
                write_format(name, results, run_directory, destination, request.baseline, second)
            )
        except OSError as error:
            where = error.filename or destination
            raise AblateError(f"{where}: cannot write ({error.strerror})") from None
    return done
