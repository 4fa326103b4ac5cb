"""`ablate run --devices` and `ablate matrix`: one spec on several devices, each device's
measurement a normal run directory (`run_experiment`'s), tied together by `matrix.json`
(`runs.matrix`).

Devices run one after another, never together: two measurements at once would disturb each
other. The first device's run counts every architecture and profiles its eager ops, and the
later ones read them (`runs.runner.SharedWork`); the export cache shares the programs. A
device that fails is recorded (status, error, the command that continues it) and the others
go on; the matrix then ends in one line naming what is not complete. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.devices.vocabulary import (
    DEFAULT_PRECISION,
    NODE_SEPARATOR,
    DeviceChoice,
    backend_device_name,
    check_device_available,
    device_slug,
    first_repeat,
    parse_device,
    parse_device_list,
    spec_devices,
)
from ablate.errors import AblateError, DeviceLost, RunInterrupted, excerpt
from ablate.files import write_text_atomic
from ablate.measurement.setup import release_memory
from ablate.runs.matrix import (
    MATRIX_NAME,
    MATRIX_SCHEMA,
    DeviceProperties,
    Matrix,
    MatrixDevice,
    RunOptions,
    device_free_spec,
    load_matrix,
    matrix_spec_sha256,
    write_matrix,
)
from ablate.runs.runner import RunProgress, SharedWork, SilentProgress
from ablate.runs.storage import (
    MEASURED_ELSEWHERE_KEY,
    RESOLVED_SPEC_NAME,
    SPEC_NAME,
    check_out_dir,
    first_difference,
    new_run_directory,
    run_status,
)

if TYPE_CHECKING:
    from ablate.runs.schema import Results
    from ablate.spec.model import ExperimentSpec

MATRIX_SUFFIX = "-matrix"  # a matrix directory is <timestamp>-<spec name>-matrix
# Seconds a device run in another interpreter gets to save its run after a Ctrl-C that its
# process group shared, before it is sent one of its own.
CHILD_INTERRUPT_GRACE_S = 5.0
ERROR_CHARACTERS = 300  # a device's error is one line in matrix.json and in the last message

ProgressFactory = Callable[[], RunProgress]


class MatrixIncomplete(AblateError):
    """The matrix ran every device it could; some did not complete (exit 1, not 2: the
    command was right, and the complete devices' runs are kept)."""

    exit_code = 1


@dataclass(frozen=True)
class MatrixRequest:
    """What `ablate run` is asked for when it runs (or continues) a matrix."""

    spec_path: Path  # the spec; for a resume, the matrix directory
    devices: str | None  # `--devices` as given
    resume: bool


def is_matrix_directory(path: Path) -> bool:
    return path.is_dir() and (path / MATRIX_NAME).is_file()


def matrix_request(
    spec_path: Path,
    *,
    devices: str | None,
    resume: bool,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    prior: str = "stated",
    threads: int | None = None,
    quick: bool = False,
    force: bool = False,
    phone: str | None = None,
) -> MatrixRequest | None:
    """The matrix `ablate run` runs with these options; None for one run. A spec that lists
    `devices:` runs them unless an option names one device (--backend, --precision,
    --device): that is one device's run of the spec."""
    one_device = [
        option
        for option, given in (
            ("--backend", backend is not None),
            ("--precision", precision is not None),
            ("--device", device is not None),
            ("--prior", prior != "stated"),
            ("--phone", phone is not None),
        )
        if given
    ]
    if is_matrix_directory(spec_path):
        if not resume:
            raise AblateError(
                f"{spec_path}: a matrix directory; continue it with: "
                f"{shlex.join(resume_command(spec_path))}"
            )
        options = [
            *one_device,
            *(["--threads"] if threads is not None else []),
            *(["--quick"] if quick else []),
            *(["--force"] if force else []),
        ]
        if options:
            raise AblateError(
                f"{options[0]}: a matrix continues with the options it started with "
                "(only --devices chooses which of its devices)"
            )
        return MatrixRequest(spec_path, devices, resume=True)
    if devices is None:
        if one_device:
            return None
        from ablate.spec import load_spec

        if load_spec(spec_path).devices is None:
            return None
    elif one_device:
        raise AblateError(
            f"{one_device[0]} with --devices: name each device in --devices instead "
            "(executorch/int8, pixel1, ...)"
        )
    if resume:
        raise AblateError(
            "--resume: continue a matrix by its directory: ablate run --resume MATRIX_DIR"
        )
    return MatrixRequest(spec_path, devices, resume=False)


def run_requested_matrix(
    spec_path: Path,
    *,
    devices: str | None,
    resume: bool,
    out_dir: Path = Path("runs"),
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    prior: str = "stated",
    threads: int | None = None,
    quick: bool = False,
    force: bool = False,
    progress: ProgressFactory = SilentProgress,
    cluster: str | None = None,
    phone: str | None = None,
) -> tuple[Path, Matrix] | None:
    """`ablate run`'s matrix (`matrix_request`), started or continued: (its directory, its
    matrix); None when the options ask for one run."""
    request = matrix_request(
        spec_path,
        devices=devices,
        resume=resume,
        backend=backend,
        precision=precision,
        device=device,
        prior=prior,
        threads=threads,
        quick=quick,
        force=force,
        phone=phone,
    )
    if request is None:
        return None
    if request.resume:
        return resume_matrix(
            request.spec_path, devices=request.devices, progress=progress, cluster=cluster
        )
    chosen = None if request.devices is None else parse_device_list(request.devices)
    return run_matrix(
        spec_path=request.spec_path,
        devices=chosen,
        out_dir=out_dir,
        threads=threads,
        quick=quick,
        force=force,
        progress=progress,
        cluster=cluster,
    )


def run_matrix(
    *,
    spec_path: Path,
    devices: Sequence[DeviceChoice] | None = None,
    out_dir: Path = Path("runs"),
    threads: int | None = None,
    quick: bool = False,
    force: bool = False,
    progress: ProgressFactory = SilentProgress,
    cluster: str | None = None,
) -> tuple[Path, Matrix]:
    """Run the spec on ``devices`` (default: its `devices:`) into a new matrix directory in
    ``out_dir``: (the directory, its matrix). Raises `MatrixIncomplete` after the last
    device if any did not complete. ``cluster``: the Ray cluster whose nodes measure the
    devices that name one (`{device: B, node: NAME}`), and that exports for the others."""
    from ablate.spec import load_spec, with_overrides
    from ablate.spec.imports import refuse_imports

    options = RunOptions(threads=threads, quick=quick, force=force)
    spec = with_overrides(load_spec(spec_path), threads=threads, quick=True if quick else None)
    refuse_imports(spec, "a device matrix")
    chosen = list(spec_devices(spec) or ()) if devices is None else list(devices)
    if not chosen:
        raise AblateError(
            f"{spec_path}: no devices to run: list them with --devices NAME,NAME,... or in the "
            "spec's devices:"
        )
    repeated = first_repeat(chosen)
    if repeated is not None:
        raise AblateError(f"device {chosen[repeated[0]].name!r} given twice; give it once")
    # Before anything is created: a missing backend or a run too big for the machine.
    for device in chosen:
        check_device_available(device)
    _check_cluster_given(chosen, cluster)
    if any(device.kind == "backend" for device in chosen):
        from ablate.runs.estimate import check_fits, estimate_run
        from ablate.runs.runner import built_copies

        estimate = estimate_run(spec, built_copies(len(spec.architecture_groups())))
        check_fits(estimate, force=force)
    check_out_dir(out_dir, create=True)
    directory = new_run_directory(out_dir, f"{spec.name}{MATRIX_SUFFIX}")
    # The matrix's own copy: every device's run (and its resume) reads this spec.
    write_text_atomic(directory / SPEC_NAME, spec.source_text)
    matrix = Matrix.model_validate(
        {
            "schema": MATRIX_SCHEMA,
            "name": spec.name,
            "spec_sha256": matrix_spec_sha256(spec.to_json()),
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "devices": [_pending(device) for device in chosen],
            "options": options,
        }
    )
    write_matrix(directory, matrix)
    with _joined(cluster) as joined:
        return directory, _MatrixRunner(directory, matrix, chosen, progress, joined).run(None)


def resume_matrix(
    directory: Path,
    *,
    devices: str | None = None,
    progress: ProgressFactory = SilentProgress,
    cluster: str | None = None,
) -> tuple[Path, Matrix]:
    """Continue the devices of a matrix directory that are not complete (only those named in
    ``devices``, comma-separated, when given), each from where its run stopped."""
    from ablate.spec import load_spec, with_overrides

    matrix = load_matrix(directory)
    options = matrix.options
    spec = with_overrides(
        load_spec(directory / SPEC_NAME),
        threads=options.threads,
        quick=True if options.quick else None,
    )
    if matrix_spec_sha256(spec.to_json()) != matrix.spec_sha256:
        raise AblateError(
            f"{directory / SPEC_NAME}: not the spec this matrix started with (its sha256 "
            f"differs from {MATRIX_NAME}'s); start a new matrix"
        )
    names = [device.name for device in matrix.devices]
    only = None
    if devices is not None:
        only = {part.strip() for part in devices.split(",")}
        unknown = sorted(only - set(names))
        if unknown:
            raise AblateError(
                f"--devices: {unknown[0]!r} is not a device of {directory}; valid: "
                + ", ".join(names)
            )
    listed = {device.name: device for device in spec_devices(spec) or ()}
    chosen = [
        listed.get(device.name)
        or parse_device(
            device.name.partition(NODE_SEPARATOR)[0], python=device.python, node=device.node
        )
        for device in matrix.devices
    ]
    for device, entry in zip(chosen, matrix.devices, strict=True):
        if entry.status != "complete" and (only is None or entry.name in only):
            check_device_available(device)
    _check_cluster_given(
        [d for d, e in zip(chosen, matrix.devices, strict=True) if e.status != "complete"],
        cluster,
    )
    with _joined(cluster) as joined:
        return directory, _MatrixRunner(directory, matrix, chosen, progress, joined).run(only)


def _check_cluster_given(devices: Sequence[DeviceChoice], cluster: str | None) -> None:
    on_nodes = [device.name for device in devices if device.node is not None]
    if on_nodes and cluster is None:
        raise AblateError(
            f"device {on_nodes[0]} is measured on a cluster node: give --cluster ADDRESS "
            "(the Ray cluster that node joined; `ablate node`)"
        )


@contextlib.contextmanager
def _joined(address: str | None) -> Iterator[_Cluster | None]:
    """The cluster at ``address`` joined (None: none), its nodes exporting for every device
    measured here."""
    if address is None:
        yield None
        return
    from ablate.cluster.connection import connected
    from ablate.cluster.exports import ClusterExporters
    from ablate.measurement.export_pool import exports_on

    with connected(address) as cluster, exports_on(ClusterExporters(cluster)):
        yield _Cluster(cluster, address)


@dataclass(frozen=True)
class _Cluster:
    connection: Any  # ablate.cluster.connection.ClusterConnection
    address: str


def matrix_estimate(spec: ExperimentSpec, devices: Sequence[DeviceChoice]) -> str:
    """One line: the time of each device's run with nothing cached (`runs.estimate`, the spec
    set to its backend and precision) and of all of them one after another."""
    from ablate.runs.estimate import duration_range_text, estimate_run, sequential_total
    from ablate.runs.runner import built_copies
    from ablate.spec import with_overrides

    copies = built_copies(len(spec.architecture_groups()))
    estimates, parts = [], []
    for device in devices:
        if device.kind != "backend":
            parts.append(f"{device.name} seconds (predicted)")
            continue
        estimate = estimate_run(
            with_overrides(spec, backend=device.backend, precision=device.precision), copies
        )
        estimates.append(estimate)
        low, high = estimate.total_seconds, estimate.total_high_seconds
        parts.append(f"{device.name} {duration_range_text(low, high)}")
    low, high = sequential_total(estimates)
    return (
        f"the devices one after another: about {duration_range_text(low, high)} with nothing "
        f"cached, counting once ({'; '.join(parts)})"
    )


def resume_command(directory: Path, device: str | None = None) -> list[str]:
    command = ["ablate", "run", "--resume", str(directory)]
    return command if device is None else [*command, "--devices", device]


def _pending(device: DeviceChoice) -> MatrixDevice:
    return MatrixDevice(
        name=device.name,
        kind=device.kind,
        backend=device.backend,
        precision=device.precision,
        profile=device.profile,
        python=device.python,
        node=device.node,
        status="pending",
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    if not isinstance(error, AblateError):  # a crash: its type says what kind
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    if len(line) > ERROR_CHARACTERS:
        line = line[: ERROR_CHARACTERS - 3] + "..."
    return line


class _MatrixRunner:
    """A matrix directory's devices, run in order; `matrix.json` rewritten at every change,
    so a kill at any point leaves it saying which run each device has."""

    def __init__(
        self,
        directory: Path,
        matrix: Matrix,
        devices: Sequence[DeviceChoice],
        progress: ProgressFactory,
        cluster: _Cluster | None = None,
    ):
        self.cluster = cluster
        self.directory = directory
        self.matrix = matrix
        self.devices = {device.name: device for device in devices}
        self.progress = progress
        self.shared = SharedWork()

    def update(self, name: str, **changes: Any) -> MatrixDevice:
        devices = [
            device.model_copy(update=changes) if device.name == name else device
            for device in self.matrix.devices
        ]
        self.matrix = self.matrix.model_copy(update={"devices": devices})
        write_matrix(self.directory, self.matrix)
        return next(device for device in devices if device.name == name)

    def run(self, only: set[str] | None) -> Matrix:
        total = len(self.matrix.devices)
        for position, entry in enumerate(list(self.matrix.devices), 1):
            if entry.status == "complete" or (only is not None and entry.name not in only):
                continue
            device = self.devices[entry.name]
            display = self.progress()
            display.note(f"device {position} of {total}: {device.name}")
            resume = shlex.join(self._resume_command(device.name))
            try:
                run = self._run_device(device, entry, display)
            except DeviceLost as error:  # its rounds kept; the next device goes on
                self.update(
                    device.name, status="interrupted", error=_one_line(error), resume=resume
                )
                continue
            except (RunInterrupted, KeyboardInterrupt) as error:
                self.update(
                    device.name, status="interrupted", error=_one_line(error), resume=resume
                )
                raise RunInterrupted(
                    f"interrupted while {device.name} ran; {self.directory} keeps the devices "
                    f"done; continue the matrix with: {shlex.join(self._resume_command())}"
                ) from None
            except Exception as error:  # recorded; the other devices go on
                self.update(device.name, status="failed", error=_one_line(error), resume=resume)
                continue
            finally:
                display.close()
                # Each device's run starts with the memory the last one held: without this, a
                # TorchScript device left 8 GB and the next was refused as too big.
                release_memory()
            self.update(
                device.name,
                status="complete",
                run=str(run.relative_to(self.directory)),
                error=None,
                resume=None,
                properties=device_properties_of(
                    run, device.name, profile=device.profile, calibrated=device.calibrated
                ),
            )
        missing = [device for device in self.matrix.devices if device.status != "complete"]
        if missing:
            listed = ", ".join(
                f"{device.name} ({device.status}: {device.error})" for device in missing
            )
            raise MatrixIncomplete(
                f"{self.directory}: {len(missing)} of {total} devices not complete: {listed}; "
                f"the others' runs are kept; continue with: {shlex.join(self._resume_command())}"
            )
        return self.matrix

    def _resume_command(self, device: str | None = None) -> list[str]:
        command = resume_command(self.directory, device)
        return command if self.cluster is None else [*command, "--cluster", self.cluster.address]

    def _run_device(self, device: DeviceChoice, entry: MatrixDevice, display: RunProgress) -> Path:
        """The device's complete run directory: run, or continued from where it stopped."""
        out_dir = self.directory / device.slug
        if device.python is not None:
            return self._run_elsewhere(device, display)
        if device.node is not None or (device.phone is not None and self.cluster is not None):
            return self._run_on_node(device, entry, display)
        run = self.matrix.run_directory(self.directory, entry)
        if run is not None and not (run / RESOLVED_SPEC_NAME).is_file():
            # Killed between making the directory and writing its spec: nothing to keep.
            _remove_empty(run)
            run = None
        if run is not None and run_status(run) == "complete":
            return run  # completed before the matrix could say so
        from ablate.services.experiment import run_experiment

        options = self.matrix.options
        return run_experiment(
            spec_path=self.directory / SPEC_NAME,
            out_dir=out_dir,
            backend=device.backend,
            precision=device.precision,
            threads=options.threads,
            quick=options.quick,
            force=options.force,
            resume=run is not None,
            progress=display,
            device=device.profile,
            run_directory=run,
            rerun=lambda directory: self._started(device.name, directory),
            shared=self.shared,
            phone=device.phone,
        )

    def _run_on_node(self, device: DeviceChoice, entry: MatrixDevice, display: RunProgress) -> Path:
        """The device's run as an actor on the cluster node that has it (`cluster_devices`),
        mirrored into its directory here; continued from the mirror where one exists. A phone
        is the cluster device of its serial, driven by the node it is attached to."""
        from ablate.services.cluster_devices import node_wait_seconds, run_on_node

        node_device = device.node or device.phone
        assert self.cluster is not None and node_device is not None and device.backend
        run = self.matrix.run_directory(self.directory, entry)
        if run is not None and run_status(run) == "complete":
            return run
        options = self.matrix.options
        return run_on_node(
            self.cluster.connection,
            device_name=device.name,
            node_device=node_device,
            spec_text=(self.directory / SPEC_NAME).read_text(),
            out_dir=self.directory / device.slug,
            run=run,
            backend=device.backend,
            precision=device.precision or DEFAULT_PRECISION,
            options={
                "threads": options.threads,
                "quick": options.quick,
                "force": options.force,
                "phone": device.phone,
            },
            note=display.note,
            wait_s=node_wait_seconds(),
            started=lambda directory: self.update(
                device.name, run=str(directory.relative_to(self.directory))
            ),
        )

    def _started(self, name: str, run: Path) -> tuple[Sequence[str], Sequence[str]]:
        """The run directory recorded as soon as it exists; an interruption of the run names
        the matrix's own continuation."""
        self.update(name, run=str(run.relative_to(self.directory)))
        return resume_command(self.directory, name), ()

    def _run_elsewhere(self, device: DeviceChoice, display: RunProgress) -> Path:
        """`PYTHON -m ablate run` of this matrix's spec on the device; its lines passed on to
        ``display``. The run directory is the one it makes in the device's directory."""
        assert device.python is not None and device.backend is not None
        out_dir = self.directory / device.slug
        done = [run for run in _runs_in(out_dir) if run_status(run) == "complete"]
        if done:
            return done[-1]
        options = self.matrix.options
        command = [
            device.python,
            "-m",
            "ablate",
            "run",
            str(self.directory / SPEC_NAME),
            "--out",
            str(out_dir),
            "--backend",
            device.backend,
            "--precision",
            device.precision or DEFAULT_PRECISION,
            *(["--threads", str(options.threads)] if options.threads is not None else []),
            *(["--quick"] if options.quick else []),
            *(["--force"] if options.force else []),
            *(["--resume"] if _runs_in(out_dir) else []),
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        last_error = None
        try:
            assert process.stderr is not None
            for line in process.stderr:
                display.note(line.rstrip("\n"))
                if line.startswith("error: "):
                    last_error = line.removeprefix("error: ").strip()
            status = process.wait()
        except KeyboardInterrupt:
            _interrupt_child(process)
            raise
        runs = _runs_in(out_dir)
        if runs:
            self.update(device.name, run=str(runs[-1].relative_to(self.directory)))
        if status == RunInterrupted.exit_code:
            raise RunInterrupted(last_error or "interrupted")
        if status != 0:
            raise AblateError(
                f"{device.python} -m ablate run exited with status {status}"
                + (f": {last_error}" if last_error else "")
            )
        if not runs or run_status(runs[-1]) != "complete":
            raise AblateError(f"{out_dir}: {device.python} -m ablate run left no complete run")
        return runs[-1]


def _interrupt_child(process: subprocess.Popen[str]) -> None:
    """A Ctrl-C at a terminal reached the child too, which saves its run and exits; one sent
    to this process alone is passed on."""
    try:
        process.wait(timeout=CHILD_INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait()


def _runs_in(out_dir: Path) -> list[Path]:
    """The run directories `ablate run --out out_dir` made, oldest first."""
    if not out_dir.is_dir():
        return []
    runs = [
        path
        for path in out_dir.iterdir()
        if not path.name.startswith(".") and (path / RESOLVED_SPEC_NAME).is_file()
    ]
    return sorted(runs, key=lambda path: path.name)


def _remove_empty(directory: Path) -> None:
    # Not empty, or gone already: the new run takes a directory of its own anyway.
    with contextlib.suppress(OSError):
        directory.rmdir()


def device_properties_of(
    run: Path, name: str, *, profile: str | None, calibrated: str | None = None
) -> DeviceProperties:
    """A device's properties for the matrix report: from the calibrated profile the spec
    names for it, or the profile that predicts it; else from a profile fitted to its run."""
    from ablate.devices.profile import load_profile
    from ablate.devices.properties import device_properties

    named = calibrated or profile
    if named is None:
        return fitted_properties(run, device_slug(name))
    try:
        loaded = load_profile(named)
    except AblateError as error:  # gone since: the matrix keeps the device's run all the same
        return unknown_properties(_one_line(error))
    return device_properties(loaded, f"{'calibrated profile' if calibrated else 'profile'} {named}")


def fitted_properties(run: Path, name: str) -> DeviceProperties:
    """The properties of a profile fitted to ``run`` (`ablate fit-device NAME --from RUN`,
    not written anywhere); none, and why, where the run cannot be fitted."""
    from ablate.devices.fit import fit_profile
    from ablate.devices.observations import run_observations
    from ablate.devices.properties import device_properties

    try:
        observations, view, batch = run_observations([run])
        profile = fit_profile(
            observations,
            name=name,
            description=f"fitted to {run}",
            view=view,
            batch=batch,
            origin=str(run),
        )
    except AblateError as error:
        return unknown_properties(f"no profile fitted to its run: {_one_line(error)}")
    return device_properties(profile, f"fitted to its run (form {profile.form})")


def unknown_properties(why: str) -> DeviceProperties:
    return DeviceProperties(
        source=why, depthwise_to_pointwise=None, elementwise_gb_per_s=None, overhead_us=None
    )


# `ablate matrix RUN RUN ...`: a matrix of existing runs.


def assemble_matrix(
    runs: Sequence[Path],
    *,
    out_dir: Path = Path("runs"),
    calibrated: Mapping[str, str] | None = None,
) -> tuple[Path, Matrix]:
    """A matrix directory in ``out_dir`` whose `matrix.json` names ``runs`` (complete runs
    of one spec, each of another device) by their absolute paths. ``calibrated`` names a
    device's calibrated profile (device name -> profile), whose costs are its properties."""
    from ablate.runs.schema import load_results

    if len(runs) < 2:
        raise AblateError("ablate matrix: give at least two runs (RUN RUN ...)")
    loaded = []
    for path in runs:
        run = path if path.is_dir() else path.parent
        results = load_results(path)
        if results.status != "complete" or results.measurement is None:
            raise AblateError(
                f"{run}: the run is not complete (status {results.status!r}); finish it with "
                "--resume first"
            )
        loaded.append((run.resolve(), results))
    first_run, first = loaded[0]
    digest = matrix_spec_sha256(first.spec)
    for run, results in loaded[1:]:
        if matrix_spec_sha256(results.spec) != digest:
            key, this, that = first_difference(
                device_free_spec(results.spec), device_free_spec(first.spec)
            )
            raise AblateError(
                f"{run}: not the spec of {first_run} ({key} {excerpt(this)} against "
                f"{excerpt(that)}); a matrix holds runs of one spec"
            )
    devices = [_assembled(run, results) for run, results in loaded]
    repeated = first_repeat(devices)
    if repeated is not None:
        later, earlier = repeated
        raise AblateError(
            f"{loaded[later][0]}: a second run of device {devices[later].name!r} (the first: "
            f"{loaded[earlier][0]}); a matrix holds one run per device"
        )
    calibrated = dict(calibrated or {})
    unknown = sorted(set(calibrated) - {device.name for device in devices})
    if unknown:
        raise AblateError(
            f"--calibrated {unknown[0]}=...: no run of that device; the devices: "
            f"{', '.join(device.name for device in devices)}"
        )
    devices = [
        device.model_copy(
            update={
                "properties": device_properties_of(
                    run, device.name, profile=device.profile, calibrated=calibrated.get(device.name)
                )
            }
        )
        for device, (run, _) in zip(devices, loaded, strict=True)
    ]
    check_out_dir(out_dir, create=True)
    directory = new_run_directory(out_dir, f"{first.experiment}{MATRIX_SUFFIX}")
    matrix = Matrix.model_validate(
        {
            "schema": MATRIX_SCHEMA,
            "name": first.experiment,
            "spec_sha256": digest,
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "devices": devices,
        }
    )
    write_matrix(directory, matrix)
    return directory, matrix


def _assembled(run: Path, results: Results) -> MatrixDevice:
    """The device a complete run measured (or predicted) on, as the matrix names it."""
    measurement = results.measurement
    assert measurement is not None  # `assemble_matrix` took complete runs only
    if measurement.predicted_on is not None:
        return MatrixDevice(
            name=measurement.predicted_on,
            kind="profile",
            profile=measurement.predicted_on,
            run=str(run),
            status="complete",
        )
    ingested = MEASURED_ELSEWHERE_KEY in results.environment
    return MatrixDevice(
        name=measurement.device
        if ingested
        else backend_device_name(measurement.backend, measurement.precision),
        kind="ingested" if ingested else "backend",
        backend=measurement.backend,
        precision=measurement.precision,
        run=str(run),
        status="complete",
    )
