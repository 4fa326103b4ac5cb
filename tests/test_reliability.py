"""Issue 10: faults, concurrency and hostile paths, reproduced for real.

Real torn files cut on disk, real processes (killed, stopped, interrupted) contending for a
run directory, a real full filesystem (a small tmpfs, where this process may mount one) and,
everywhere, a full disk injected at the one system call that writes bytes (`files._write`).
Timing logic (the budget left to a resumed run) runs on a simulated clock.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ablate.files as files_module
import ablate.report.progress as progress_module
import ablate.runs.runner as runner_module
import ablate.runs.storage as storage_module
from ablate.cli import app
from ablate.errors import AblateError, InputFileError, RunLockedError, WriteError
from ablate.files import append_line, truncate_torn_tail, write_json_atomic, write_text_atomic
from ablate.runs.runner import Run, SilentProgress
from ablate.runs.schema import load_results
from ablate.runs.storage import (
    JOURNAL_NAME,
    LOCK_NAME,
    RESOLVED_SPEC_NAME,
    hold_run_directory,
    latest_run,
    new_run_directory,
    read_journal,
    read_rounds,
    set_journal_aside,
    unfinished_run,
)
from ablate.services.experiment import run_experiment
from ablate.spec import load_spec

NAMES = {"small", "relu"}


def tiny_spec(
    directory: Path,
    *,
    budget_s: float = 60,
    max_rounds: int = 40,
    name: str = "tiny",
    settle_s: float = 0.0,
) -> Path:
    """Two distinct architectures that take milliseconds a pass: a run takes seconds (each
    timing after one untimed call unless `settle_s` is given)."""
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "base: mobilenet_v3_small\n"
        "input: {resolution: 64}\n"
        f"measure: {{budget_s: {budget_s}, warmup_s: 0.1, settle_s: {settle_s}, min_rounds: 6, "
        f"max_rounds: {max_rounds}, target_ci: 0.0001}}\n"
        "baseline: small\n"
        "variants:\n"
        "  small: {width: 0.35}\n"
        "  relu: {width: 0.35, activation: relu}\n"
    )
    return path


class Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after it runs, not even `except Exception`."""


class KillAtRound(SilentProgress):
    """Dies right after round `index` is journalled."""

    def __init__(self, index: int):
        self.index = index

    def measuring(
        self, round_index: int, variant: str, interval: float | None, seconds_left: float
    ) -> None:
        if round_index == self.index:
            raise Killed


def cut_mid_line(journal: Path) -> bytes:
    """Tear the last line on disk, as a kill mid-append does; returns the bytes cut off."""
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    keep = start + (len(data) - start) // 2
    os.truncate(journal, keep)
    return data[keep:]


def journal_lines(journal: Path) -> list[dict[str, object]]:
    """Every line parsed: raises if any line (torn or not) is not a whole JSON object."""
    return [json.loads(line) for line in journal.read_text().splitlines()]


# -- 1. A torn journal line is repaired on every resume -----------------------------------


@pytest.mark.slow
def test_a_torn_journal_is_repaired_before_each_resume(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    out = tmp_path / "runs"
    with pytest.raises(Killed):
        run_experiment(spec_path=spec, out_dir=out, quick=True, progress=KillAtRound(9))
    (directory,) = out.iterdir()
    journal = directory / JOURNAL_NAME
    first = read_rounds(journal, NAMES)
    assert len(first) == 10
    assert cut_mid_line(journal)  # round 9 is now a fragment on disk
    assert read_rounds(journal, NAMES) == first[:9]

    with pytest.raises(Killed):
        run_experiment(
            spec_path=spec, out_dir=out, quick=True, resume=True, progress=KillAtRound(14)
        )
    # Round 9 was taken again on a fresh line, not written onto the fragment.
    lines = journal_lines(journal)
    assert [line["round"] for line in lines] == list(range(15))
    second = read_rounds(journal, NAMES)
    assert second[:9] == first[:9]
    cut_mid_line(journal)

    run_experiment(spec_path=spec, out_dir=out, quick=True, resume=True)
    final = read_rounds(journal, NAMES)
    assert [line["round"] for line in journal_lines(journal)] == list(range(len(final)))
    assert final[:14] == second[:14]  # only the torn rounds (9, then 14) were taken again
    results = load_results(directory)
    assert results.status == "complete"
    assert results.measurement is not None and results.measurement.rounds == len(final) == 40


def test_truncate_torn_tail_keeps_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    assert truncate_torn_tail(path) == 0  # no file yet
    path.write_bytes(b"a\nbb\n")
    assert truncate_torn_tail(path) == 0 and path.read_bytes() == b"a\nbb\n"
    path.write_bytes(b"a\nbb\nccc")
    assert truncate_torn_tail(path) == 3 and path.read_bytes() == b"a\nbb\n"
    path.write_bytes(b"no newline at all")
    assert truncate_torn_tail(path) == 17 and path.read_bytes() == b""
    # A last line longer than the 64 KiB read from the end.
    path.write_bytes(b"x\n" + b"y" * 200_000)
    assert truncate_torn_tail(path) == 200_000 and path.read_bytes() == b"x\n"


# -- 2. A full disk is one line and a resumable state --------------------------------------


class FullDisk:
    """The disk as `files._write` sees it: `free` bytes left (None: plenty). A write beyond
    them is cut short where the space ends and the next one fails with ENOSPC, as a write
    to a filling disk does."""

    def __init__(self) -> None:
        self.free: int | None = None

    def write(self, descriptor: int, data: memoryview) -> int:
        if self.free is None:
            return os.write(descriptor, data)
        if self.free == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(descriptor, data[: self.free])
        self.free -= written
        return written


class FillingProgress(SilentProgress):
    """Stands in for the CLI's live display; fills the disk at a chosen point of the run."""

    disk: FullDisk
    at: tuple[str, int] = ("never", 0)
    free: int = 0

    def __init__(self) -> None:
        pass

    def _fill_at(self, point: tuple[str, int]) -> None:
        if point == self.at:
            self.disk.free = self.free
            FillingProgress.at = ("never", 0)  # once: the resumed run passes here again

    def counting(self, variant: str, done: int, total: int) -> None:
        self._fill_at(("counting", done))

    def measuring(
        self, round_index: int, variant: str, interval: float | None, seconds_left: float
    ) -> None:
        self._fill_at(("measuring", round_index))


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    disk = FullDisk()
    monkeypatch.setattr(files_module, "_write", disk.write)
    FillingProgress.disk = disk
    monkeypatch.setattr(progress_module, "run_progress", FillingProgress)
    yield disk
    FillingProgress.at = ("never", 0)


def run_cli(*arguments: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(arguments))
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output.strip().splitlines()


def the_error(lines: list[str]) -> str:
    """The one error line, which ends the output (`run` notes its size estimate first)."""
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def start_bytes(spec_path: Path) -> int:
    """What a run writes before environment.json: the lock's PID, the resolved spec, the
    spec copy (the order `Run.start` writes them in)."""
    spec = load_spec(spec_path)
    resolved = json.dumps(spec.to_json(), indent=2) + "\n"
    return len(f"{os.getpid()}\n") + len(resolved.encode()) + len(spec.source_text.encode())


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
@pytest.mark.parametrize(
    ("at", "free", "failing", "kept"),
    [
        (("measuring", 5), 150, JOURNAL_NAME, "status counted, 7 measurement rounds in "
         "journal.jsonl"),
        (("counting", 1), 0, "results.json", "status counting, 1 of 2 architectures counted"),
        (("start", 0), None, "environment.json", None),
    ],
    ids=["measuring", "counting", "starting"],
)
def test_disk_full_is_one_line_and_resume_completes(
    tmp_path: Path,
    full_disk: FullDisk,
    at: tuple[str, int],
    free: int | None,
    failing: str,
    kept: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Counting saves after each architecture here, so that the disk fills on a save mid-count.
    monkeypatch.setattr(runner_module, "COUNT_SAVE_INTERVAL_S", 0.0)
    spec = tiny_spec(tmp_path)
    out = tmp_path / "runs"
    if at[0] == "start":
        full_disk.free = start_bytes(spec)  # environment.json is the first write to fail
    else:
        FillingProgress.at, FillingProgress.free = at, free  # type: ignore[assignment]
    code, lines = run_cli("run", str(spec), "--out", str(out), "--quick")
    (directory,) = out.iterdir()
    command = f"ablate run {spec} --out {out} --quick --resume"
    what = (
        f"{directory} keeps the spec, nothing counted yet"
        if kept is None
        else f"{directory} keeps the run so far ({kept})"
    )
    assert code == 2
    assert lines == [
        f"error: {directory / failing}: cannot write (No space left on device); {what}; "
        f"continue it with: {command}"
    ]
    assert not [path.name for path in directory.iterdir() if path.name.endswith(".tmp")]
    journal = directory / JOURNAL_NAME
    before = read_rounds(journal, NAMES)

    full_disk.free = None  # space is back
    code, lines = run_cli(*command.split()[1:])
    assert code == 0, lines
    assert lines[-1] == str(directory)
    results = load_results(directory)
    assert results.status == "complete"
    after = read_rounds(journal, NAMES)
    assert after[: len(before)] == before and len(after) == 40
    assert [line["round"] for line in journal_lines(journal)] == list(range(40))


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_disk_full_before_anything_is_saved_says_to_run_again(
    tmp_path: Path, full_disk: FullDisk
) -> None:
    spec = tiny_spec(tmp_path)
    out = tmp_path / "runs"
    full_disk.free = 0
    code, lines = run_cli("run", str(spec), "--out", str(out), "--quick")
    (directory,) = out.iterdir()
    assert code == 2
    assert lines == [
        f"error: {directory / RESOLVED_SPEC_NAME}: cannot write (No space left on device); "
        f"nothing was saved in {directory}; run again with: ablate run {spec} --out {out} --quick"
    ]
    full_disk.free = None
    code, lines = run_cli("run", str(spec), "--out", str(out), "--quick")
    assert code == 0, lines
    assert load_results(Path(lines[-1])).status == "complete"


def test_a_write_error_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(WriteError) as raised:
        write_json_atomic(blocked / "results.json", {})  # a file where a directory should be
    assert isinstance(raised.value, OSError) and isinstance(raised.value, AblateError)
    assert raised.value.filename == str(blocked / "results.json")
    assert str(raised.value).startswith(f"{blocked / 'results.json'}: cannot write (")
    with pytest.raises(WriteError, match=r"journal\.jsonl: cannot write"):
        append_line(blocked / "journal.jsonl", "{}")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem, mounted for the test (root, or CAP_SYS_ADMIN, needed)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command: the real full-filesystem variant cannot run here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "ablate-test", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
            f"{done.stderr.strip() or done.returncode}; the injected-ENOSPC tests cover it"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(filesystem: Path) -> None:
    """Write until not even one byte fits (tmpfs hands out whole pages)."""
    with (filesystem / "filler").open("wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC


def ablate_process(*arguments: str) -> subprocess.Popen[str]:
    """`python -m ablate ...` as a user starts it: Ctrl-C raises KeyboardInterrupt there even
    when this test process ignores SIGINT (a background job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ablate", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"ablate exited ({process.returncode}) before {what}: "
                                 f"{process.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def journal_of(out: Path) -> Path | None:
    runs = list(out.glob(f"*/{JOURNAL_NAME}")) if out.is_dir() else []
    return runs[0] if runs else None


def journal_has(out: Path, rounds: int) -> Callable[[], bool]:
    def check() -> bool:
        journal = journal_of(out)
        return journal is not None and journal.read_bytes().count(b"\n") >= rounds

    return check


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_a_real_full_filesystem_while_measuring(tmp_path: Path, small_tmpfs: Path) -> None:
    spec = tiny_spec(tmp_path, budget_s=600, max_rounds=120)
    out = small_tmpfs / "runs"
    first = ablate_process("run", str(spec), "--out", str(out))
    wait_for(journal_has(out, 3), first, "measuring")
    fill(small_tmpfs)
    _, stderr = first.communicate(timeout=300)
    journal = journal_of(out)
    assert journal is not None
    directory = journal.parent
    assert first.returncode == 2, stderr
    assert "Traceback" not in stderr
    line = last_line(stderr)
    assert line.startswith(f"error: {journal}: cannot write (No space left on device); ")
    assert line.endswith(f"continue it with: ablate run {spec} --out {out} --resume")
    kept = read_rounds(journal, NAMES)
    assert f"(status counted, {len(kept)} measurement rounds in journal.jsonl)" in line

    (small_tmpfs / "filler").unlink()
    resumed = ablate_process("run", str(spec), "--out", str(out), "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert load_results(directory).status == "complete"
    final = read_rounds(journal, NAMES)
    assert final[: len(kept)] == kept and len(final) == 120
    assert [line["round"] for line in journal_lines(journal)] == list(range(120))


# -- 3. One process owns a run directory ---------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(directory.iterdir())
    }


@pytest.mark.slow
def test_a_second_process_cannot_take_a_running_run(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, budget_s=600, max_rounds=60)
    out = tmp_path / "runs"
    first = ablate_process("run", str(spec), "--out", str(out))
    try:
        wait_for(journal_has(out, 3), first, "measuring")
        # Stopped, it still holds the lock and cannot finish before the second one tries.
        first.send_signal(signal.SIGSTOP)
        journal = journal_of(out)
        assert journal is not None
        directory = journal.parent
        assert (directory / LOCK_NAME).read_text() == f"{first.pid}\n"
        before = snapshot(directory)

        second = ablate_process("run", str(spec), "--out", str(out), "--resume")
        _, stderr = second.communicate(timeout=300)
        assert second.returncode == 2
        assert "Traceback" not in stderr
        assert last_line(stderr) == (
            f"error: {directory}: in use by process {first.pid}, which holds its lock; wait "
            "for it to finish or stop it, then resume"
        )
        assert snapshot(directory) == before  # the second process wrote nothing
        kept = read_rounds(journal, NAMES)
    finally:
        first.kill()  # SIGKILL: the process cannot release anything itself
        first.communicate()

    resumed = ablate_process("run", str(spec), "--out", str(out), "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr  # the kernel dropped the lock with the process
    assert load_results(directory).status == "complete"
    final = read_rounds(journal, NAMES)
    assert final[: len(kept)] == kept and len(final) == 60


def test_the_lock_names_its_holder_and_is_released_after_the_block(tmp_path: Path) -> None:
    with hold_run_directory(tmp_path):
        with pytest.raises(RunLockedError) as raised, hold_run_directory(tmp_path):
            pass
        assert raised.value.pid == os.getpid()
        assert str(raised.value) == (
            f"{tmp_path}: in use by process {os.getpid()}, which holds its lock; wait for it "
            "to finish or stop it, then resume"
        )
    with hold_run_directory(tmp_path):  # released: taken again
        pass



def test_the_owner_removes_the_lock_file_as_it_lets_go(tmp_path: Path) -> None:
    with hold_run_directory(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_taken_on_a_file_its_owner_removed_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner before lets go between this process opening the file and locking it: the
    lock it gets is on a file nobody else can see, so it opens the path again."""
    real_flock = storage_module.fcntl.flock
    locked: list[int] = []

    def flock_after_the_owner_let_go(descriptor: int, operation: int) -> None:
        if not locked:
            (tmp_path / LOCK_NAME).unlink()
        locked.append(os.fstat(descriptor).st_ino)
        real_flock(descriptor, operation)

    monkeypatch.setattr(storage_module.fcntl, "flock", flock_after_the_owner_let_go)
    with hold_run_directory(tmp_path):
        # Held on the file at the path, which a second process would find locked.
        assert len(locked) == 2 and (tmp_path / LOCK_NAME).stat().st_ino == locked[1]
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists()

# -- 4. Run directories are created atomically ---------------------------------------------

CREATOR = """
import datetime, os, sys, time
from pathlib import Path
from ablate.runs.storage import new_run_directory
out, go, tries = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
now = datetime.datetime(2026, 1, 1, 12, 0, 0)
print("ready", flush=True)
while not go.exists():
    pass
for _ in range(tries):
    print(new_run_directory(out, "race", now=now).name, flush=True)
"""


def test_four_processes_creating_run_directories_at_once(tmp_path: Path) -> None:
    out, go = tmp_path / "runs", tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(out), str(go), "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    go.touch()  # all four start creating at once, with the same name and timestamp
    created: list[str] = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        created += stdout.split()
    assert len(created) == len(set(created)) == 120
    assert sorted(path.name for path in out.iterdir()) == sorted(created)
    suffixes = {int(name.rsplit("-", 1)[1]) for name in created if name != "20260101-120000-race"}
    assert "20260101-120000-race" in created and suffixes == set(range(2, 121))


# -- 5. --resume and the latest run go by creation order -----------------------------------


def make_run(out: Path, name: str, spec: dict[str, object], status: str) -> Path:
    directory = out / name
    directory.mkdir(parents=True)
    (directory / RESOLVED_SPEC_NAME).write_text(json.dumps(spec))
    (directory / "results.json").write_text(json.dumps({"status": status}))
    return directory


def test_resume_and_latest_follow_creation_order_not_text_order(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    resolved = {"name": "tiny"}
    make_run(out, "20260101-000000-tiny", resolved, "complete")
    make_run(out, "20260101-000000-tiny-2", resolved, "counted")
    newest = make_run(out, "20260101-000000-tiny-10", resolved, "counted")
    assert sorted(path.name for path in out.iterdir())[-1] == "20260101-000000-tiny-2"
    assert unfinished_run(out, resolved) == newest
    assert latest_run(out) == newest
    # The timestamp comes first: a later second beats any suffix.
    later = make_run(out, "20260101-000001-tiny", resolved, "measured")
    assert unfinished_run(out, resolved) == later and latest_run(out) == later


# -- 9. --out that is not a directory ------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "run --resume", "compare", "report"])
def test_out_that_is_a_file_is_one_line(tmp_path: Path, command: str) -> None:
    spec = tiny_spec(tmp_path)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    targets = [not_a_directory] + [Path("/proc/version")] * Path("/proc/version").is_file()
    for target in targets:
        words = command.split()
        arguments = [words[0], *([str(spec)] if words[0] == "run" else []), *words[1:]]
        code, lines = run_cli(*arguments, "--out", str(target))
        assert code == 2
        assert the_error(lines) == (
            f"error: {target}: not a directory (--out names the directory that holds the runs)"
        )


def test_out_below_a_file_is_one_line(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    (tmp_path / "file").write_text("")
    code, lines = run_cli("run", str(spec), "--out", str(tmp_path / "file" / "runs"))
    assert code == 2
    assert the_error(lines) == (
        f"error: {tmp_path / 'file' / 'runs'}: cannot create the runs directory (Not a directory)"
    )



@pytest.mark.parametrize(
    ("out", "resume", "error"),
    [
        ("file", False, "{out}: not a directory (--out names the directory that holds the runs)"),
        ("file/runs", False, "{out}: cannot create the runs directory (Not a directory)"),
        ("empty", True, "{out}: no unfinished run of 'tiny' to resume"),
    ],
)
def test_run_refuses_its_arguments_before_it_prints_an_estimate(
    tmp_path: Path, out: str, resume: bool, error: str
) -> None:
    spec = tiny_spec(tmp_path)
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    target = tmp_path / out
    code, lines = run_cli("run", str(spec), "--out", str(target), *["--resume"] * resume)
    assert code == 2
    # The error alone: no size estimate before it, as if the run had started.
    assert lines == [f"error: {error.format(out=target)}"]

# -- 10. Ctrl-C says what was kept and how to continue -------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_measurement_says_what_was_kept(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, budget_s=600, max_rounds=60)
    out = tmp_path / "runs"
    process = ablate_process("run", str(spec), "--out", str(out), "--threads", "1")
    wait_for(journal_has(out, 3), process, "measuring")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    journal = journal_of(out)
    assert journal is not None
    directory = journal.parent
    assert process.returncode == 130
    assert "Traceback" not in stderr
    kept = read_rounds(journal, NAMES)
    command = f"ablate run {spec} --out {out} --threads 1 --resume"
    assert last_line(stderr) == (
        f"error: interrupted: {directory} keeps the run so far (status counted, {len(kept)} "
        f"measurement rounds in journal.jsonl); continue it with: {command}"
    )
    resumed = ablate_process(*command.split()[1:])  # the command exactly as printed
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    final = read_rounds(journal, NAMES)
    assert final[: len(kept)] == kept and len(final) == 60
    assert load_results(directory).status == "complete"


def test_the_continue_command_repeats_every_option_that_shapes_the_run() -> None:
    from ablate.runs.runner import rerun_command

    assert rerun_command(Path("s.yaml"), Path("runs")) == [
        "ablate", "run", "s.yaml", "--out", "runs"
    ]
    assert rerun_command(
        Path("my spec.yaml"),
        Path("out"),
        backend="onnxruntime",
        threads=4,
        quick=True,
        force=True,
        device="pixel1",
    ) == [
        "ablate", "run", "my spec.yaml", "--out", "out", "--backend", "onnxruntime",
        "--threads", "4", "--quick", "--force", "--device", "pixel1",
    ]


# -- 12. Files honour the umask; a resumed run gets the budget that is left -----------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "results.json", "{}")
        write_json_atomic(tmp_path / "deep" / "environment.json", {})
        append_line(tmp_path / "journal.jsonl", "{}")
        with hold_run_directory(tmp_path):
            lock_mode = (tmp_path / LOCK_NAME).stat().st_mode & 0o777  # removed on release
    finally:
        os.umask(previous)
    for name in ("results.json", "deep/environment.json", "journal.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert lock_mode == mode


class SimulatedClock:
    """Every reading advances 2-4 ms: blocks, rounds and warm-up take simulated time, so the
    budget is spent by the clock, not by how busy this machine is."""

    def __init__(self, seed: int) -> None:
        self.now = 0.0
        self.random = random.Random(seed)

    def __call__(self) -> float:
        self.now += self.random.uniform(0.002, 0.004)
        return self.now


def elapsed(journal: Path) -> list[float]:
    return [float(line["elapsed_s"]) for line in journal_lines(journal)]  # type: ignore[arg-type]


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_resumed_run_gets_the_budget_that_is_left(tmp_path: Path) -> None:
    budget = 3.0
    spec = load_spec(tiny_spec(tmp_path, budget_s=budget, max_rounds=10_000))
    directory = new_run_directory(tmp_path / "runs", spec.name)
    journal = directory / JOURNAL_NAME
    with pytest.raises(Killed):
        Run(spec, directory, KillAtRound(14), clock=SimulatedClock(1)).execute(resume=False)
    spent = elapsed(journal)
    assert len(spent) == 15 and spent == sorted(spent)
    assert read_journal(journal, NAMES).elapsed_s == spent[-1]
    # Warm-up (3 copies of 2 variants) and 15 rounds (each timing after an untimed call):
    # less than half the budget, so a resumed session given the whole budget again would end
    # far past it.
    assert 0.5 < spent[-1] < 0.5 * budget

    Run(spec, directory, SilentProgress(), clock=SimulatedClock(2)).execute(resume=True)
    total = elapsed(journal)
    assert total[:15] == spent
    # The resumed session stopped when the whole run had used its budget, not a new one
    # (to within a round, about 34 simulated milliseconds; a new one would end near 4.1 s).
    assert total[-1] == pytest.approx(budget, abs=0.05)
    assert total[-2] < budget + 0.01
    results = load_results(directory)
    assert results.measurement is not None
    assert results.measurement.stop_reason == "budget"
    assert results.measurement.budget_s == budget
    assert results.measurement.elapsed_s == pytest.approx(total[-1], abs=0.05)
    assert results.measurement.rounds == len(total)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_resumed_run_whose_budget_is_spent_takes_one_round(tmp_path: Path) -> None:
    spec = load_spec(tiny_spec(tmp_path, budget_s=1.0, max_rounds=10_000))
    directory = new_run_directory(tmp_path / "runs", spec.name)
    journal = directory / JOURNAL_NAME
    with pytest.raises(Killed):
        Run(spec, directory, KillAtRound(9), clock=SimulatedClock(3)).execute(resume=False)
    # Killed just after the budget ran out: every saved round says so.
    lines = journal_lines(journal)
    journal.write_text("".join(json.dumps({**line, "elapsed_s": 1.5}) + "\n" for line in lines))
    Run(spec, directory, SilentProgress(), clock=SimulatedClock(4)).execute(resume=True)
    assert len(journal_lines(journal)) == 11
    results = load_results(directory)
    assert results.measurement is not None and results.measurement.stop_reason == "budget"


def test_journals_without_elapsed_time_still_read(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_NAME
    journal.write_text(
        '{"round": 0, "seconds": {"a": 0.01}}\n{"round": 1, "seconds": {"a": 0.02}}\n'
    )
    read = read_journal(journal, {"a"})
    assert read.rounds == [{"a": 0.01}, {"a": 0.02}] and read.elapsed_s == 0.0
    journal.write_text('{"round": 0, "seconds": {"a": 0.01}, "elapsed_s": -1}\n')
    with pytest.raises(InputFileError, match=r"journal.jsonl:1: elapsed_s: elapsed time is not"):
        read_journal(journal, {"a"})


def test_a_journal_holds_one_cache_state_and_older_ones_read_as_rotating(tmp_path: Path) -> None:
    journal = tmp_path / JOURNAL_NAME
    journal.write_text('{"round": 0, "seconds": {"a": 0.01}}\n')
    assert read_journal(journal, {"a"}).cache_state == "rotating"
    assert read_journal(tmp_path / "none.jsonl", {"a"}).cache_state is None
    journal.write_text(
        '{"round": 0, "seconds": {"a": 0.01}, "cache_state": "warm"}\n'
        '{"round": 1, "seconds": {"a": 0.02}}\n'
    )
    with pytest.raises(
        InputFileError,
        match=r"journal.jsonl:2: cache_state: round timed with rotating caches after rounds "
        r"timed with warm ones",
    ):
        read_journal(journal, {"a"})
    journal.write_text('{"round": 0, "seconds": {"a": 0.01}, "cache_state": "hot"}\n')
    with pytest.raises(
        InputFileError,
        match=r"journal.jsonl:1: cache_state: unknown cache state 'hot'; "
        r"valid: rotating, settled, warm$",
    ):
        read_journal(journal, {"a"})


class Notes(SilentProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_rounds_timed_with_rotating_caches_are_kept_aside_not_resumed(tmp_path: Path) -> None:
    """A journal begun before each timing followed an untimed call of its own model: its
    rounds ran 10-19% slower (evicted weights), so pooling them with warm ones would give
    each variant a median of two regimes. The resumed run keeps the file whole, beside it,
    measures from round 0 with the whole budget, and says so."""
    spec = load_spec(tiny_spec(tmp_path, budget_s=3.0, max_rounds=10_000, settle_s=0.01))
    directory = new_run_directory(tmp_path / "runs", spec.name)
    journal = directory / JOURNAL_NAME
    with pytest.raises(Killed):
        Run(spec, directory, KillAtRound(9), clock=SimulatedClock(5)).execute(resume=False)
    lines = journal_lines(journal)
    assert [line["cache_state"] for line in lines] == ["settled"] * 10
    # The same rounds as a journal of before: no cache state, so "rotating".
    older = "".join(
        json.dumps({key: value for key, value in line.items() if key != "cache_state"}) + "\n"
        for line in lines
    )
    journal.write_text(older)

    progress = Notes()
    Run(spec, directory, progress, clock=SimulatedClock(6)).execute(resume=True)
    aside = directory / "journal.rotating.jsonl"
    assert aside.read_text() == older  # kept byte for byte
    assert progress.notes[0] == (
        f"{journal}: its 10 rounds were timed with rotating caches (each timing right after "
        "the round's previous variant (runs before 2026-12-07)); kept as "
        "journal.rotating.jsonl, and the measurement starts again"
    )
    assert not any("resuming" in note for note in progress.notes)
    fresh = journal_lines(journal)
    assert [line["round"] for line in fresh] == list(range(len(fresh)))
    assert {line["cache_state"] for line in fresh} == {"settled"}
    # The whole budget again, from zero: the set-aside rounds' time is not charged.
    assert float(fresh[0]["elapsed_s"]) < float(lines[0]["elapsed_s"]) + 0.2  # type: ignore[arg-type]
    assert float(fresh[-1]["elapsed_s"]) == pytest.approx(3.0, abs=0.05)  # type: ignore[arg-type]
    results = load_results(directory)
    assert results.measurement is not None
    assert (results.measurement.cache_state, results.measurement.settle_s) == ("settled", 0.01)
    assert results.measurement.rounds == len(fresh)

    # A second journal of the old regime does not overwrite the first one set aside.
    journal.write_text(older[: len(older) // 2])
    assert set_journal_aside(journal, "rotating") == directory / "journal.rotating.2.jsonl"
    assert not journal.exists() and aside.read_text() == older


def test_a_journal_set_aside_on_a_node_replaces_the_drivers_copy(tmp_path: Path) -> None:
    """A node's resumed run that sets its journal aside starts a shorter one: the driver's
    mirror takes it whole, not appended to the old lines (a journal of two cache states)."""
    from ablate.services.cluster_devices import DeviceRun, _mirror

    node = DeviceRun()
    try:
        directory = node.out / "20261207-000000-tiny"
        directory.mkdir()
        journal = directory / JOURNAL_NAME
        older = "".join(
            json.dumps({"round": index, "seconds": {"small": 0.01, "relu": 0.02}}) + "\n"
            for index in range(3)
        )
        journal.write_text(older)
        driver = tmp_path / "driver"
        _mirror(driver, node.changes())
        assert (driver / JOURNAL_NAME).read_text() == older

        set_journal_aside(journal, "rotating")
        storage_module.append_round(
            journal, 0, {"small": 0.009, "relu": 0.019}, cache_state="warm", elapsed_s=0.1
        )
        snapshot = node.changes()
        assert snapshot.journal == b""
        assert set(snapshot.files) == {JOURNAL_NAME, "journal.rotating.jsonl"}
        _mirror(driver, snapshot)
        assert (driver / "journal.rotating.jsonl").read_text() == older
        assert read_journal(driver / JOURNAL_NAME, NAMES).rounds == [
            {"small": 0.009, "relu": 0.019}
        ]
        # From then on, only the new lines travel again.
        storage_module.append_round(
            journal, 1, {"small": 0.008, "relu": 0.018}, cache_state="warm", elapsed_s=0.2
        )
        snapshot = node.changes()
        assert JOURNAL_NAME not in snapshot.files and snapshot.journal.count(b"\n") == 1
        _mirror(driver, snapshot)
        assert len(read_journal(driver / JOURNAL_NAME, NAMES).rounds) == 2
    finally:
        shutil.rmtree(node.root)


def test_a_full_disk_outside_ablates_own_writes_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ablate.services.experiment as experiment

    def library_fills_the_disk(**options: object) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/kernel.so")

    monkeypatch.setattr(experiment, "run_experiment", library_fills_the_disk)
    spec = tiny_spec(tmp_path)
    code, lines = run_cli("run", str(spec))
    assert code == 2
    assert lines == ["error: /cache/kernel.so: cannot write (No space left on device)"]

    def a_bug(**options: object) -> Path:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(experiment, "run_experiment", a_bug)
    with pytest.raises(OSError, match="Bad file descriptor"):  # not hidden as a user error
        run_cli("run", str(spec))
