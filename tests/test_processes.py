"""Issue 25, item 9: an `ablate` process leaves no process of its own behind, however it ends.

Real `ablate export` and `ablate run --backend executorch` processes with their export pool
running (two worker processes and multiprocessing's resource tracker, found in /proc among
the process's children), then a real SIGKILL, or a SIGINT to the main process alone, or to
its whole process group as a terminal's Ctrl-C sends it. Every process it started must be
gone within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.runs.schema import load_results

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc"
)

# Four distinct networks as small as a spec allows: each export takes seconds, and two
# workers have work enough to be exporting when the signal comes.
SPEC = """\
name: pool
base: mobilenet_v3_small
input: {resolution: 32}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: a
variants:
  a: {width: 0.25}
  b: {width: 0.25, se: false}
  c: {width: 0.25, activation: relu}
  d: {width: 0.5}
"""

START_S = 300.0  # torch imported, the networks built and the pool's processes started
GONE_S = 10.0  # the bound for every process after a kill
INTERRUPTED_S = 3.0  # the main process's exit after a Ctrl-C (the issue: "< 2-3 s")


def _executorch() -> None:
    from ablate.measurement.backends import BACKENDS, module_available

    if not all(module_available(m) for m in BACKENDS.get("executorch").modules):
        pytest.skip("executorch not installed")


Process = tuple[int, int]  # pid, start time in clock ticks: the same pid reused is another


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 0


def descendants(pid: int) -> dict[Process, str]:
    """Every live process below `pid`, with its command line."""
    found: dict[Process, str] = {}
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                fields = _stat(child)
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if fields is not None:
                    found[(child, int(fields[19]))] = command.replace(b"\0", b" ").decode()
                    stack.append(child)
    return found


def alive(process: Process) -> bool:
    """Running or stopped; a zombie (dead, not yet reaped by its new parent) is gone."""
    fields = _stat(process[0])
    return fields is not None and int(fields[19]) == process[1] and fields[0] not in "ZX"


def start(tmp_path: Path, *arguments: str) -> subprocess.Popen[str]:
    """`python -m ablate ...` in a process group of its own (a terminal's foreground job),
    with SIGINT raising KeyboardInterrupt even when pytest runs as a background job."""
    env = {
        **os.environ,
        "ABLATE_CACHE_DIR": str(tmp_path / "cache"),
        "ABLATE_EXPORT_WORKERS": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ablate", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def pool_started(
    process: subprocess.Popen[str], exporting_in: Path | None = None
) -> dict[Process, str]:
    """Waits for both export workers and the resource tracker, and with `exporting_in`, for
    both workers to be exporting (each holds a file of that cache open: its entry's lock);
    returns every descendant."""
    deadline = time.monotonic() + START_S
    while True:
        below = descendants(process.pid)
        workers = [pid for (pid, _), command in below.items() if "spawn_main" in command]
        tracker = any("resource_tracker" in command for command in below.values())
        exporting = exporting_in is None or all(_holds_open(p, exporting_in) for p in workers)
        if len(workers) == 2 and tracker and exporting:
            return below
        if process.poll() is not None:
            raise AssertionError(f"ablate ended ({process.returncode}) before its pool started: "
                                 f"{process.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no export pool after {START_S:.0f} s: {below}")
        time.sleep(0.05)


def _holds_open(pid: int, directory: Path) -> bool:
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor).startswith(f"{directory}/"):
                return True
        except OSError:
            continue
    return False


def survivors(processes: dict[Process, str], within: float) -> dict[Process, str]:
    """Those of `processes` still alive after `within` seconds (returns as soon as none is)."""
    deadline = time.monotonic() + within
    while True:
        left = {process: command for process, command in processes.items() if alive(process)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def exit_within(process: subprocess.Popen[str], seconds: float) -> tuple[int, str, float]:
    """The exit code, stderr and how long the process took to exit after now."""
    sent = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"ablate still running {seconds:.0f} s after the signal") from None
    return process.returncode, stderr, time.monotonic() - sent


def write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "pool.yaml"
    spec.write_text(SPEC)
    return spec


def export_arguments(tmp_path: Path) -> list[str]:
    return ["export", str(write_spec(tmp_path)), "--backend", "executorch", "-o",
            str(tmp_path / "bundle")]


def run_arguments(tmp_path: Path) -> list[str]:
    return ["run", str(write_spec(tmp_path)), "--backend", "executorch", "--quick", "--out",
            str(tmp_path / "runs")]


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "export": export_arguments,
    "run": run_arguments,
}


@pytest.mark.parametrize(
    ("command", "moment"),
    [
        ("export", "starting"),
        pytest.param("export", "exporting", marks=pytest.mark.slow),
        pytest.param("run", "exporting", marks=pytest.mark.slow),
    ],
)
def test_a_killed_ablate_leaves_no_process_behind(
    tmp_path: Path, command: str, moment: str
) -> None:
    """SIGKILL: nothing runs in ablate after it; its workers die of their parent's death
    (while they start: importing torch; or while they export), and the resource tracker
    exits once nothing holds its pipe."""
    _executorch()
    process = start(tmp_path, *COMMANDS[command](tmp_path))
    started = pool_started(process, tmp_path / "cache" if moment == "exporting" else None)
    process.kill()
    assert process.wait(timeout=GONE_S) == -signal.SIGKILL
    assert survivors(started, GONE_S) == {}


def test_a_worker_started_as_its_parent_dies_exits_at_once(tmp_path: Path) -> None:
    """The race the parent-death signal leaves: a parent gone before its worker asked for
    the signal. The worker sees another parent and exits instead of waiting for work."""
    script = (
        "import os, sys, time\n"
        "from ablate.measurement.export_pool import _export_worker_started\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the test reads the parent's to EOF\n"
        "    os.read(int(sys.argv[1]), 1)  # until the parent is gone\n"
        "    _export_worker_started(parent)\n"
        "    time.sleep(600)  # as a worker waits for work; not reached: it has exited\n"
        "print(pid, flush=True)\n"
        "os._exit(0)\n"
    )
    read, write = os.pipe()
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(read)], stdout=subprocess.PIPE, text=True,
        pass_fds=(read,),
    )
    os.close(read)
    child = int(parent.communicate(timeout=60)[0])  # and the parent reaped
    fields = _stat(child)
    assert fields is not None and int(fields[2]) != parent.pid  # reparented: the parent is gone
    os.close(write)  # the orphan now starts as a worker of a parent that no longer exists
    assert survivors({(child, int(fields[19])): "worker"}, GONE_S) == {}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["main process", "process group"])
def test_ctrl_c_during_the_export_pool_ends_an_export_at_once(
    tmp_path: Path, target: str
) -> None:
    """SIGINT to the main process only (`kill -INT PID`), or to the group as a terminal
    sends it: the workers are killed, not waited for, and nothing is written."""
    _executorch()
    process = start(tmp_path, *export_arguments(tmp_path))
    started = pool_started(process, tmp_path / "cache")
    if target == "main process":
        process.send_signal(signal.SIGINT)
    else:
        os.killpg(process.pid, signal.SIGINT)
    code, stderr, seconds = exit_within(process, INTERRUPTED_S)
    assert survivors(started, GONE_S) == {}
    assert code == 130 and seconds < INTERRUPTED_S
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted"
    assert not (tmp_path / "bundle").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".bundle")] == []


@pytest.mark.slow
def test_ctrl_c_during_a_runs_exports_keeps_it_resumable(tmp_path: Path) -> None:
    _executorch()
    process = start(tmp_path, *run_arguments(tmp_path))
    started = pool_started(process, tmp_path / "cache")
    process.send_signal(signal.SIGINT)
    code, stderr, seconds = exit_within(process, INTERRUPTED_S)
    assert survivors(started, GONE_S) == {}
    assert code == 130 and seconds < INTERRUPTED_S
    assert "Traceback" not in stderr
    (directory,) = (tmp_path / "runs").iterdir()
    spec = tmp_path / "pool.yaml"
    command = (
        f"ablate run {spec} --out {tmp_path / 'runs'} --backend executorch --quick --resume"
    )
    assert stderr.strip().splitlines()[-1] == (
        f"error: interrupted: {directory} keeps the run so far (status counted, 0 "
        f"measurement rounds in journal.jsonl); continue it with: {command}"
    )
    resumed = start(tmp_path, *command.split()[1:])  # exactly the command printed
    code, stderr, _ = exit_within(resumed, 600)
    assert code == 0, stderr
    results = load_results(directory)
    assert results.status == "complete"
    assert [variant.name for variant in results.variants] == ["a", "b", "c", "d"]
    assert all(variant.runtime is not None for variant in results.variants)


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not click's "Aborted!" and exit 1: the same line and code as an interrupted run."""
    from typer.testing import CliRunner

    import ablate.services.bundle_export as bundle_export
    from ablate.cli import app

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_export, "export_bundle", interrupted)
    result = CliRunner().invoke(
        app, ["export", str(write_spec(tmp_path)), "--backend", "executorch", "-o", "b"]
    )
    assert (result.exit_code, result.output) == (130, "error: interrupted\n")
