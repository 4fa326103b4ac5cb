"""A matrix device measured on a cluster node: its whole run as one Ray actor there.

A node advertises what it measures as custom resources (`ablate node`: one unit of
``ablate-device:NAME`` each). A matrix device ``{device: BACKEND, node: NAME}`` runs as a
`DeviceRun` actor that asks for that unit, so one measurement at a time runs on the device,
and the actor runs `ablate run`'s own `run_experiment` of the matrix's spec there, in a
directory of its own. While it runs, the driver asks the actor every `POLL_S` for what its
run directory gained: whole files that changed (results.json, the resolved spec, the
environment) and the journal's new whole lines (the whole journal where a resumed run set the
mirrored one aside, `runs.storage.set_journal_aside`). The driver keeps that mirror as the device's
run directory in the matrix, so the rounds a node has measured are on the driver's disk
within `POLL_S` of being taken (a lost node costs at most the rounds of its last poll).

When the node is lost the driver waits up to `wait_s` for a node with the same device to
join, and continues there: the new actor gets the mirror and resumes it (`--resume`), keeping
its rounds. Otherwise the device is interrupted (the matrix says how to resume it), and a
later ``ablate run --resume MATRIX --cluster ADDRESS`` continues from the mirror the same way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.cluster.connection import DEVICE_RESOURCE_PREFIX, ClusterConnection, first_line
from ablate.errors import AblateError, DeviceLost
from ablate.files import write_bytes_atomic
from ablate.runs.runner import SilentProgress

if TYPE_CHECKING:
    from collections.abc import Callable

POLL_S = 0.25
# How long a lost device's node gets to come back before the device is interrupted; the
# environment's ABLATE_NODE_WAIT_S sets another (seconds).
WAIT_FOR_NODE_S = 60.0
WAIT_ENVIRONMENT_VARIABLE = "ABLATE_NODE_WAIT_S"
JOURNAL = "journal.jsonl"


@dataclass
class RunSnapshot:
    """What a run directory gained since the last one: its name, the whole files that changed,
    the journal's new complete lines, and the run's progress lines."""

    name: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    journal: bytes = b""
    notes: list[str] = field(default_factory=list)


class _NoteProgress(SilentProgress):
    """A run's progress, kept for the driver to show: only its notes (one line each)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


class DeviceRun:
    """The actor (see the module): one device's run on the node that has the device."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ablate-device-run-"))
        self.out = self.root / "runs"
        self.out.mkdir()
        self.progress = _NoteProgress()
        self._sent: dict[str, tuple[int, int]] = {}  # file -> (size, mtime_ns) sent
        self._journal_sent = 0
        self._journal_inode: int | None = None  # the journal file the sent bytes came from

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(
        self,
        spec_text: str,
        backend: str,
        precision: str,
        options: dict[str, Any],
        mirror: dict[str, bytes],
        mirror_name: str | None,
    ) -> str:
        """Runs (or, given a mirror, resumes) the spec on this node's backend; returns the run
        directory's name once complete."""
        from ablate.services.experiment import run_experiment

        spec = self.root / "spec.yaml"
        spec.write_text(spec_text)
        run_directory = None
        if mirror_name is not None:
            run_directory = self.out / mirror_name
            run_directory.mkdir()
            for name, data in mirror.items():
                (run_directory / name).write_bytes(data)
            self._journal_sent = len(mirror.get(JOURNAL, b""))
            journal = run_directory / JOURNAL
            self._journal_inode = journal.stat().st_ino if journal.exists() else None
            self._sent = {name: _stamp(run_directory / name) for name in mirror if name != JOURNAL}
        directory = run_experiment(
            spec_path=spec,
            out_dir=self.out,
            backend=backend,
            precision=precision,
            threads=options.get("threads"),
            quick=bool(options.get("quick")),
            force=bool(options.get("force")),
            resume=run_directory is not None,
            run_directory=run_directory,
            progress=self.progress,
            phone=options.get("phone"),
        )
        return directory.name

    def changes(self) -> RunSnapshot:
        """What the run directory gained since the last call (see `RunSnapshot`)."""
        snapshot = RunSnapshot(notes=self.progress.notes)
        self.progress.notes = []
        runs = sorted(path for path in self.out.iterdir() if path.is_dir())
        if not runs:
            return snapshot
        directory = runs[-1]
        snapshot.name = directory.name
        for path in sorted(directory.iterdir()):
            if not path.is_file():
                continue
            if path.name == JOURNAL:
                data = path.read_bytes()
                whole = data[: data.rfind(b"\n") + 1]  # never a line still being written
                inode = path.stat().st_ino
                if self._journal_inode not in (None, inode):
                    # A new journal: the resumed run set the mirrored one aside (rounds of
                    # another cache state; sent as its own file). Replace, never append.
                    snapshot.files[JOURNAL] = whole
                else:
                    snapshot.journal = whole[self._journal_sent :]
                self._journal_sent, self._journal_inode = len(whole), inode
                continue
            stamp = _stamp(path)
            if self._sent.get(path.name) != stamp:
                snapshot.files[path.name] = path.read_bytes()
                self._sent[path.name] = stamp
        return snapshot


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def node_wait_seconds() -> float:
    configured = os.environ.get(WAIT_ENVIRONMENT_VARIABLE, "").strip()
    try:
        return max(0.0, float(configured)) if configured else WAIT_FOR_NODE_S
    except ValueError:
        raise AblateError(
            f"{WAIT_ENVIRONMENT_VARIABLE}={configured!r}: expected seconds, e.g. 60"
        ) from None


def device_resource(node_device: str) -> str:
    return f"{DEVICE_RESOURCE_PREFIX}{node_device}"


def device_available(cluster: ClusterConnection, node_device: str) -> bool:
    """Whether a live node advertises ``node_device``."""
    return any(node_device in node.devices for node in cluster.nodes())


def _mirror(directory: Path, snapshot: RunSnapshot) -> None:
    """The snapshot onto the driver's copy of the run: whole files replaced atomically, the
    journal's lines appended and flushed to disk."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in snapshot.files.items():
        write_bytes_atomic(directory / name, data)
    if snapshot.journal:
        with (directory / JOURNAL).open("ab") as handle:
            handle.write(snapshot.journal)
            handle.flush()
            os.fsync(handle.fileno())


def _mirror_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def run_on_node(
    cluster: ClusterConnection,
    *,
    device_name: str,
    node_device: str,
    spec_text: str,
    out_dir: Path,
    run: Path | None,
    backend: str,
    precision: str,
    options: dict[str, Any],
    note: Callable[[str], None],
    wait_s: float = WAIT_FOR_NODE_S,
    started: Callable[[Path], None] | None = None,
) -> Path:
    """Device ``device_name``'s run on the node that advertises ``node_device``, mirrored in
    ``out_dir`` (continuing the mirror ``run`` where given); its directory once complete. A
    `DeviceLost` when the device's node is gone for longer than ``wait_s``."""
    from ablate.measurement.backends import BACKENDS

    ray = cluster.ray
    cluster.check_versions(BACKENDS.get(backend))
    if not _wait_for(cluster, node_device, wait_s):
        raise AblateError(
            f"device {device_name}: no live cluster node advertises {node_device} "
            f"(ablate-device:{node_device}); start one with `ablate node --start`"
        )
    actor_class = ray.remote(DeviceRun)
    while True:
        actor = actor_class.options(
            num_cpus=0, resources={device_resource(node_device): 1}, max_concurrency=2
        ).remote()
        mirror = _mirror_files(run) if run is not None else {}
        reference = actor.run.remote(
            spec_text, backend, precision, options, mirror, None if run is None else run.name
        )
        try:
            name = _follow(ray, actor, reference, out_dir, run, note, started)
        except ray.exceptions.RayError as error:
            run = _latest(out_dir) or run
            rounds = _rounds(run)
            if isinstance(error, ray.exceptions.RayTaskError):  # the run itself failed there
                cause = getattr(error, "cause", None) or error
                raise AblateError(
                    f"device {device_name} on its node: {first_line(cause)}"
                ) from None
            note(
                f"{device_name}: its node was lost ({type(error).__name__}); {rounds} rounds "
                f"kept; waiting up to {wait_s:.0f} s for {node_device} to rejoin"
            )
            if not _wait_for(cluster, node_device, wait_s):
                raise DeviceLost(
                    f"device {device_name}: its node left the cluster and {node_device} did not "
                    f"rejoin in {wait_s:.0f} s; {rounds} measurement rounds kept"
                ) from None
            continue
        finally:
            with contextlib.suppress(Exception):  # already gone with its node
                ray.kill(actor, no_restart=True)
        return out_dir / name


def _follow(
    ray: Any,
    actor: Any,
    reference: Any,
    out_dir: Path,
    run: Path | None,
    note: Callable[[str], None],
    started: Callable[[Path], None] | None,
) -> str:
    """Mirrors the actor's run until it completes; its run directory's name."""
    named = run is not None
    while True:
        ready, _ = ray.wait([reference], timeout=POLL_S)
        snapshot: RunSnapshot = ray.get(actor.changes.remote())
        for line in snapshot.notes:
            note(line)
        if snapshot.name is not None:
            directory = out_dir / snapshot.name
            _mirror(directory, snapshot)
            if not named and started is not None:
                started(directory)
                named = True
        if ready:
            return ray.get(reference)


def _latest(out_dir: Path) -> Path | None:
    runs = sorted(path for path in out_dir.iterdir() if path.is_dir()) if out_dir.is_dir() else []
    return runs[-1] if runs else None


def _rounds(run: Path | None) -> int:
    if run is None or not (run / JOURNAL).is_file():
        return 0
    return sum(1 for line in (run / JOURNAL).read_bytes().splitlines() if line.strip())


def _wait_for(cluster: ClusterConnection, node_device: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        if device_available(cluster, node_device):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
