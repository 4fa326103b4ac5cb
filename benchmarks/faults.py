"""Issue 10's faults, for real: `ablate run` processes killed, stopped, interrupted, racing
each other and running out of disk, then resumed. Prints one row per case: the fault, what
happened, the exit codes (the fault's, then the resume's) and whether anything measured was
lost, then the one-line messages the user saw.

The full disk is a real 4 MiB tmpfs when this process may mount one (root or CAP_SYS_ADMIN);
otherwise the `ablate` process is started with its one write system call (`files._write`)
replaced by a full disk, and the table says "injected".

Cases 25.5 and 25.6 are issue 25's device profiles: `fit-device` on the fewest architectures
it accepts, and profiles with a NaN, an overflow or the wrong shape used by `predict`, `run
--device` and `devices` (about 2 minutes).

Cases 25.3, 25.7 and 25.8 are issue 25's caches: a bit flipped in a stored batch-norm variance
(is the next bundle the same network?), in a calibration (what does bench draw?) and in an
export entry's header length (and the export after); `export` with its cache on a full and on
a read-only tmpfs (four real ExecuTorch exports: about 2-3 minutes).

Case 25.9 is issue 25's export pool: `export` and `run --backend executorch` SIGKILLed, and
sent SIGINT (the main process alone, and for `export` the whole process group as a terminal's
Ctrl-C), while both export workers are exporting; what is left of the workers and the
resource tracker 10 s later, and how long the main process took to exit (about a minute).

Case 25.bundle is issue 25's bundles (rows 25.2, 25.S2, 25.S3, 25.x), on one real ONNX export
with names that start like spreadsheet formulas: a second `measure.sh` session SIGKILLed
half-way and ingested (and with the first session's record put back), `timings.csv` a link
to a file outside, each driver file edited (the driver, then ingest), variants.txt's names
rotated with the manifest's hash updated, the formula names through timings.csv and back,
and `export -o` under a missing parent and onto a link (about a minute).

Case 25.ingest is issue 25's ingest (rows 25.1, 25.4, 25.10, 25.x), on one real ONNX export
whose variants are named `v001` and `v000` (the other's unit id): a real measure.sh session
ingested (does each name get its own timings?), `ingest` SIGKILLed while it writes a
50,000-round session then `run --resume` in the same --out and the next ingest, names a CSV
row cannot carry at `validate`, and real files with bad bytes (about a minute).

    python benchmarks/faults.py            # about 5 minutes on a busy 2-core machine
    python benchmarks/faults.py --keep /tmp/faults   # keep the run directories to inspect
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import errno
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ablate.runs.storage import (
    JOURNAL_NAME,
    RESOLVED_SPEC_NAME,
    latest_run,
    new_run_directory,
    read_journal,
    unfinished_run,
)

WAIT_S = 300.0
WIDTHS = (0.35, 0.5, 0.75, 1.0)

# The `ablate` CLI with a disk that fills up once FLAG exists: FREE more bytes, then a short
# write and ENOSPC, as a filling disk does.
INJECTED_FULL_DISK = """
import errno, os, sys
import ablate.files
flag, free = sys.argv[1], int(sys.argv[2])
left = [None]
real = ablate.files._write
def write(descriptor, data):
    if left[0] is None and os.path.exists(flag):
        left[0] = free
    if left[0] is None:
        return real(descriptor, data)
    if left[0] == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    written = real(descriptor, data[: left[0]])
    left[0] -= written
    return written
ablate.files._write = write
sys.argv = ["ablate", *sys.argv[3:]]
from ablate.cli import main
main()
"""

CREATOR = """
import datetime, sys
from pathlib import Path
from ablate.runs.storage import new_run_directory
out, go, tries = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
now = datetime.datetime(2026, 1, 1, 12, 0, 0)
print("ready", flush=True)
while not go.exists():
    pass
errors = 0
for _ in range(tries):
    try:
        print(new_run_directory(out, "race", now=now).name, flush=True)
    except Exception as error:
        errors += 1
        print("error", type(error).__name__, flush=True)
"""


@dataclass
class Row:
    case: str
    fault: str
    outcome: str
    exit_codes: str
    lost: str
    message: str = ""


def write_spec(
    directory: Path, name: str, *, budget_s: float, max_rounds: int, variants: int = 2
) -> Path:
    """mobilenet_v3_small at width 0.35 and 64 px (and wider ones for more variants): a
    round takes milliseconds, a run seconds."""
    lines = [
        f"name: {name}",
        "base: mobilenet_v3_small",
        "input: {resolution: 64}",
        f"measure: {{budget_s: {budget_s}, warmup_s: 0.1, min_rounds: 6, "
        f"max_rounds: {max_rounds}, target_ci: 0.0001}}",
        "baseline: w0.35",
        "variants:",
    ]
    for index in range(variants):
        width = WIDTHS[index // 2 % len(WIDTHS)]
        activation = ", activation: relu" if index % 2 else ""
        suffix = "-relu" if index % 2 else ""
        lines.append(f"  w{width}{suffix}: {{width: {width}{activation}}}")
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ablate(*arguments: str, injected: tuple[Path, int] | None = None) -> subprocess.Popen[str]:
    """An `ablate` process as a user starts one (Ctrl-C raises KeyboardInterrupt in it)."""
    if injected is None:
        command = [sys.executable, "-m", "ablate", *arguments]
    else:
        flag, free = injected
        command = [sys.executable, "-c", INJECTED_FULL_DISK, str(flag), str(free), *arguments]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=WAIT_S)
    return process.returncode, stderr


def exit_code(code: int) -> str:
    """Popen's -N (ended by signal N) as the signal's name."""
    return signal.Signals(-code).name if code < 0 else str(code)


def message(stderr: str) -> str:
    """The last line the user saw, and whether a traceback came with it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return ("TRACEBACK " if "Traceback" in stderr else "") + last


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ablate exited or stalled first: {message(finish(process)[1])}")
        time.sleep(0.02)


def run_directory(out: Path) -> Path | None:
    found = sorted(out.glob(f"*/{RESOLVED_SPEC_NAME}")) if out.is_dir() else []
    return found[0].parent if found else None


def journal_lines(out: Path) -> Callable[[], int]:
    def count() -> int:
        directory = run_directory(out)
        journal = None if directory is None else directory / JOURNAL_NAME
        return journal.read_bytes().count(b"\n") if journal and journal.exists() else 0

    return count


def rounds(directory: Path, names: set[str]) -> list[dict[str, float]]:
    return read_journal(directory / JOURNAL_NAME, names).rounds


def variant_names(spec: Path) -> set[str]:
    from ablate.spec import load_spec

    loaded = load_spec(spec)
    return {group[0] for group in loaded.architecture_groups().values()}


def status(directory: Path) -> str:
    return json.loads((directory / "results.json").read_text())["status"]


def kept_verdict(before: list[dict[str, float]], after: list[dict[str, float]]) -> str:
    return "no" if after[: len(before)] == before else "YES: saved rounds changed"


def cut_mid_line(journal: Path) -> None:
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    os.truncate(journal, start + (len(data) - start) // 2)


@contextmanager
def small_filesystem(root: Path) -> Iterator[Path | None]:
    """A real 4 MiB tmpfs, or None where mounting is not permitted."""
    mount_point = root / "tmpfs"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        yield None
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "ablate-faults", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(filesystem: Path) -> None:
    with (filesystem / "filler").open("wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise


# -- the cases ----------------------------------------------------------------------------


def torn_journal(root: Path) -> Row:
    spec = write_spec(root, "torn", budget_s=600, max_rounds=80)
    out = root / "torn-runs"
    names = variant_names(spec)
    torn = 0
    codes = []
    for threshold in (8, 20):
        arguments = ["run", str(spec), "--out", str(out), "--quick"]
        process = ablate(*arguments, *(["--resume"] if threshold > 8 else []))
        wait_until(lambda at=threshold: journal_lines(out)() >= at, process)
        process.kill()  # SIGKILL
        codes.append(exit_code(finish(process)[0]))
        directory = run_directory(out)
        assert directory is not None
        cut_mid_line(directory / JOURNAL_NAME)  # and the last line is torn for certain
        torn += 1
        kept = rounds(directory, names)
    code, stderr = finish(ablate("run", str(spec), "--out", str(out), "--quick", "--resume"))
    assert directory is not None
    final = rounds(directory, names)
    outcome = f"{status(directory)}, {len(final)} rounds, {torn} torn rounds retaken"
    return Row("1", "SIGKILL + line cut on disk, twice", outcome, f"{','.join(codes)} → {code}",
               kept_verdict(kept, final), message(stderr) if code else "")


def disk_full(root: Path, filesystem: Path | None, stage: str) -> Row:
    variants = 8 if stage == "counting" else 2
    spec = write_spec(root, f"full-{stage}", budget_s=600, max_rounds=60, variants=variants)
    names = variant_names(spec)
    kind = "tmpfs" if filesystem is not None else "injected"
    out = (filesystem or root) / f"full-{stage}-runs"
    flag = root / f"full-{stage}.flag"
    arguments = ["run", str(spec), "--out", str(out)]
    process = ablate(*arguments, injected=None if filesystem else (flag, 150))

    def two_counted() -> bool:
        directory = run_directory(out)
        try:
            results = json.loads((directory / "results.json").read_text())  # type: ignore[operator]
        except (OSError, ValueError, TypeError):
            return False
        return len(results["variants"]) >= 2

    wait_until(two_counted if stage == "counting" else lambda: journal_lines(out)() >= 5,
               process)
    if filesystem is not None:
        fill(filesystem)
    else:
        flag.touch()
    code, stderr = finish(process)
    directory = run_directory(out)
    assert directory is not None
    before_status = status(directory)
    journal = directory / JOURNAL_NAME
    torn = journal.exists() and not journal.read_bytes().endswith(b"\n")
    kept = rounds(directory, names)
    counted = json.loads((directory / "results.json").read_text())["variants"]
    if filesystem is not None:
        (filesystem / "filler").unlink()
    resumed, resume_stderr = finish(ablate(*arguments, "--resume"))
    final = rounds(directory, names)
    recounted = {v["name"]: v["macs"] for v in json.loads(
        (directory / "results.json").read_text())["variants"]}
    lost = kept_verdict(kept, final)
    if any(recounted.get(v["name"]) != v["macs"] for v in counted):
        lost = "YES: saved counts changed"
    outcome = (f"stopped at {before_status} ({len(counted)} counted, {len(kept)} rounds"
               f"{', a torn line' if torn else ''}); resumed: {status(directory)}")
    if resumed:
        outcome += f" [{message(resume_stderr)}]"
    return Row("2", f"disk full while {stage} ({kind})", outcome, f"{code} → {resumed}", lost,
               message(stderr))


def contended(root: Path) -> Row:
    spec = write_spec(root, "lock", budget_s=600, max_rounds=300)
    names = variant_names(spec)
    out = root / "lock-runs"
    first = ablate("run", str(spec), "--out", str(out))

    def started() -> bool:
        directory = run_directory(out)
        return directory is not None and (directory / "results.json").exists()

    wait_until(started, first)
    code, stderr = finish(ablate("run", str(spec), "--out", str(out), "--resume"))
    still_running = first.poll() is None
    first.kill()
    first.communicate()
    directory = run_directory(out)
    assert directory is not None
    kept = rounds(directory, names)
    resumed, _ = finish(ablate("run", str(spec), "--out", str(out), "--resume"))
    final = rounds(directory, names)
    names_pid = f"process {first.pid}" in stderr
    outcome = (f"second refused{' naming the PID' if names_pid else ''}"
               f"{'' if still_running else ' (first had already ended!)'}; after SIGKILL of "
               f"the first: {status(directory)}, {len(final)} rounds")
    return Row("3", "--resume while the run runs; then SIGKILL", outcome,
               f"{code} → {resumed}", kept_verdict(kept, final), message(stderr))


def racing(root: Path) -> Row:
    out, go = root / "race-runs", root / "race-go"
    processes = [
        subprocess.Popen([sys.executable, "-c", CREATOR, str(out), str(go), "30"],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        process.stdout.readline()
    go.touch()
    lines = [line for process in processes for line in process.communicate()[0].split("\n")]
    created = [line for line in lines if line and not line.startswith("error")]
    errors = sum(line.startswith("error") for line in lines)
    codes = {process.returncode for process in processes}
    outcome = f"{len(set(created))} distinct directories of 120, {errors} errors"
    return Row("4", "4 processes, same name and second, 30 each", outcome,
               ",".join(map(str, sorted(codes))), "n/a")


def ordering(root: Path) -> Row:
    out = root / "order-runs"
    resolved = {"name": "order"}
    for name, state in (("-2", "counted"), ("-10", "counted"), ("", "complete")):
        directory = out / f"20260101-000000-order{name}"
        directory.mkdir(parents=True)
        (directory / RESOLVED_SPEC_NAME).write_text(json.dumps(resolved))
        (directory / "results.json").write_text(json.dumps({"status": state}))
    resumed = unfinished_run(out, resolved).name
    latest = latest_run(out).name
    return Row("5", "unfinished -2 and -10 in one second", f"resume picks {resumed}, "
               f"latest is {latest}", "n/a", "n/a")


def out_not_a_directory(root: Path) -> Row:
    spec = write_spec(root, "outfile", budget_s=1, max_rounds=6)
    a_file = root / "a-file"
    a_file.write_text("")
    results = []
    for arguments in (
        ["run", str(spec), "--out", str(a_file)],
        ["run", str(spec), "--out", "/proc/version"],
        ["compare", "--out", "/proc/version"],
        ["report", "--out", str(a_file)],
    ):
        code, stderr = finish(ablate(*arguments))
        results.append((code, stderr))
    codes = sorted({code for code, _ in results})
    # `run` notes its size estimate first; the error must be the one error line, and last.
    one_line = all(
        [line for line in stderr.splitlines() if line.startswith("error: ")]
        == stderr.strip().splitlines()[-1:]
        and "Traceback" not in stderr
        for _, stderr in results
    )
    outcome = f"{len(results)} commands: {'one line each' if one_line else 'NOT one line'}"
    return Row("9", "--out a file, /proc/version (run, compare, report)", outcome,
               ",".join(map(str, codes)), "n/a", message(results[1][1]))


def interrupted(root: Path) -> tuple[Row, Row]:
    budget = 8.0
    spec = write_spec(root, "sigint", budget_s=budget, max_rounds=100_000)
    names = variant_names(spec)
    out = root / "sigint-runs"
    process = ablate("run", str(spec), "--out", str(out))
    wait_until(lambda: journal_lines(out)() >= 10, process)
    process.send_signal(signal.SIGINT)
    code, stderr = finish(process)
    directory = run_directory(out)
    assert directory is not None
    kept = rounds(directory, names)
    before = read_journal(directory / JOURNAL_NAME, names).elapsed_s
    line = message(stderr)
    command = line.split("continue it with: ")[-1].split()
    resumed, _ = finish(ablate(*command[1:]))  # exactly the command printed
    final = rounds(directory, names)
    measurement = json.loads((directory / "results.json").read_text())["measurement"]
    sigint = Row("10", "SIGINT while measuring", f"resumed with the printed command: "
                 f"{status(directory)}, {len(final)} rounds", f"{code} → {resumed}",
                 kept_verdict(kept, final), line)
    modes = {path.name: f"{path.stat().st_mode & 0o777:o}" for path in directory.iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    budget_row = Row(
        "12",
        f"umask {umask:03o}; resume after {before:.1f} s of an {budget:g} s budget",
        f"files {', '.join(sorted(set(modes.values())))}; measured "
        f"{measurement['elapsed_s']:.1f} s in all, stop: {measurement['stop_reason']}",
        "n/a",
        "n/a",
    )
    return sigint, budget_row


# -- issue 25: device profiles --------------------------------------------------------------

REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED_PROFILE = REPOSITORY / "ablate" / "devices" / "pixel1.json"
FOUR_ARCHITECTURE_RUN = REPOSITORY / "tests" / "fixtures" / "hswish_eager"


@contextmanager
def profile_directory(directory: Path) -> Iterator[Path]:
    """`ablate` processes started inside the block read their user profiles from here."""
    before = os.environ.get("ABLATE_DEVICES_DIR")
    os.environ["ABLATE_DEVICES_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if before is None:
            del os.environ["ABLATE_DEVICES_DIR"]
        else:
            os.environ["ABLATE_DEVICES_DIR"] = before


def one_error_line(code: int, stderr: str) -> bool:
    return code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def refused(code: int, stderr: str) -> str:
    return "one line, exit 2" if one_error_line(code, stderr) else "NOT one line"


def strict_json(text: str) -> bool:
    def no_constant(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=no_constant)
    except ValueError:
        return False
    return True


def four_architectures(root: Path) -> list[Row]:
    """Issue 25, item 5: the fewest architectures fit-device asks for, from a table and a run."""
    table = root / "four.csv"
    table.write_text(
        "model,set,latency_ms\n"
        + "".join(f"mobilenet_v3_small,resolution={r},{r * r / 4000}\n" for r in (64, 96, 128, 160))
    )
    rows = []
    with profile_directory(root / "four-profiles") as directory:
        for source, arguments in (
            ("--from-table", ["--from-table", str(table)]),
            ("--from RUN", ["--from", str(FOUR_ARCHITECTURE_RUN)]),
        ):
            name = "table" if source == "--from-table" else "run"
            code, stderr = finish(ablate("fit-device", name, *arguments))
            written = directory / f"{name}.json"
            if code == 0 and written.exists():
                quality = json.loads(written.read_text())["quality"]
                outcome = f"profile written: {quality['architectures']} architectures"
            else:
                outcome = "no profile"
            rows.append(Row("25.5", f"fit-device on exactly 4 architectures, {source}", outcome,
                            exit_code(code), "n/a", message(stderr)))
    return rows


def broken_profile(path: Path, change: Callable[[dict], object]) -> Path:
    data = json.loads(SHIPPED_PROFILE.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN and Infinity as tokens, as json.dumps writes them
    return path


def _zero_coefficients(data: dict) -> None:
    for parameter in data["parameters"]:
        parameter["value"] = 0.0


def bad_profiles(root: Path) -> list[Row]:
    """Issue 25, item 6: profiles with bad numbers and shapes, used by every command."""
    spec = write_spec(root, "predicted", budget_s=1, max_rounds=6)
    rows = []
    with profile_directory(root / "bad-profiles") as directory:
        directory.mkdir()
        broken_profile(directory / "nan.json", lambda d: d["parameters"][1].update(value=math.nan))
        broken_profile(directory / "overflow.json",
                       lambda d: d["bootstrap"]["residuals"].__setitem__(21, 1e308))
        broken_profile(directory / "shape.json", lambda d: d["parameters"].pop(3))
        broken_profile(directory / "zeros.json", _zero_coefficients)
        broken_profile(directory / "good.json", lambda d: d.update(name="good"))

        def run_with(device: str, fault: str) -> Row:
            out = root / f"runs-{device}"
            code, stderr = finish(ablate("run", str(spec), "--out", str(out), "--device", device))
            left = "run directory left" if out.exists() else "no run directory"
            return Row("25.6", fault, f"{refused(code, stderr)}, {left}", exit_code(code), "n/a",
                       message(stderr))

        def predict_with(device: str, fault: str) -> Row:
            process = ablate("predict", "mobilenet_v3_small", "--device", device, "--json")
            stdout, stderr = process.communicate(timeout=WAIT_S)
            code = process.returncode
            if code == 0:
                outcome = "printed " + ("valid JSON" if strict_json(stdout) else "INVALID JSON")
            else:
                outcome = refused(code, stderr)
            return Row("25.6", fault, outcome, exit_code(code), "n/a", message(stderr))

        rows.append(predict_with("nan", "predict, NaN coefficient"))
        rows.append(run_with("nan", "run --device, NaN coefficient"))
        rows.append(predict_with("overflow", "predict --json, a finite residual of 1e308"))
        rows.append(predict_with("shape", "predict, 4 coefficients for a 5-term form"))
        rows.append(run_with("zeros", "run --device, every coefficient 0 (the all-1e308 fit)"))

        table = root / "huge.csv"
        table.write_text("model,set,latency_ms\n"
                         + "".join(f"mobilenet_v3_small,resolution={r},{1e308 if r == 96 else r}\n"
                                   for r in (64, 96, 128, 160, 192)))
        code, stderr = finish(ablate("fit-device", "huge", "--from-table", str(table)))
        written = "profile written" if (directory / "huge.json").exists() else "no profile"
        rows.append(Row("25.6", "fit-device, a 1e308 ms row", f"{refused(code, stderr)}, {written}",
                        exit_code(code), "n/a", message(stderr)))

        process = ablate("devices", "--json")
        stdout, stderr = process.communicate(timeout=WAIT_S)
        listed = [entry["name"] for entry in json.loads(stdout)] if strict_json(stdout) else []
        named = [line for line in stderr.splitlines() if line.startswith("error: ")]
        rows.append(Row("25.6", "devices, 4 bad user profiles beside a good one",
                        f"listed {', '.join(listed) or 'nothing'}; {len(named)} lines name "
                        f"{sum(str(directory) in line for line in named)} files",
                        exit_code(process.returncode), "n/a", named[0] if named else ""))
    return rows


# -- issue 25: the caches (items 3, 7 and 8) ----------------------------------------------------

CACHE_SPEC = """\
name: cached
base: mobilenet_v3_small
input: {resolution: 32}
measure: {budget_s: 600}
baseline: se
variants:
  se: {width: 0.25}
"""
TINY_BENCH = ["mobilenet_v3_small", "--set", "width=0.25", "--set", "resolution=32"]


@contextmanager
def cache_directory(directory: Path) -> Iterator[Path]:
    """`ablate` processes started inside the block keep their caches here."""
    before = os.environ.get("ABLATE_CACHE_DIR")
    os.environ["ABLATE_CACHE_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if before is None:
            del os.environ["ABLATE_CACHE_DIR"]
        else:
            os.environ["ABLATE_CACHE_DIR"] = before


@contextmanager
def tmpfs(mount_point: Path, *, read_only: bool = False) -> Iterator[Path | None]:
    """A real 64 KiB tmpfs (remounted read-only, if asked), or None where mounting is not
    permitted."""
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "ablate-cache", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def cache_notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


def said(stderr: str) -> str:
    """What the user was told: the cache note lines, else the last line (or a traceback)."""
    notes = cache_notes(stderr)
    if "Traceback" in stderr:
        return message(stderr)
    return " | ".join(notes) if notes else message(stderr)


def told(stderr: str) -> str:
    count = len(cache_notes(stderr))
    return "nothing said" if count == 0 else f"said so in {count} line{'s' * (count > 1)}"


def export(spec: Path, backend: str, out: Path) -> tuple[int, str]:
    return finish(ablate("export", str(spec), "--backend", backend, "-o", str(out)))


def shipped(bundle: Path) -> bytes:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return (bundle / manifest["units"][0]["file"]).read_bytes()


def flip_variance_exponent(entry: Path) -> float:
    """Flips the exponent's top bit of a stored running variance in [0.5, 1): finite, about
    1.7e38. Works on either format of the entry (torch.save's zip, sealed or not)."""
    import io

    import torch

    data = bytearray(entry.read_bytes())
    start = data.find(b"PK\x03\x04")
    saved = torch.load(io.BytesIO(bytes(data[start:])), weights_only=True)["statistics"]
    variance = next(
        tensor
        for name, tensor in saved.items()
        if name.endswith("running_var") and bool(((tensor >= 0.5) & (tensor < 1)).any())
    )
    index = int(((variance >= 0.5) & (variance < 1)).nonzero()[0])
    top_byte = data.find(variance.numpy().tobytes()) + 4 * index + 3
    data[top_byte] ^= 0x40
    entry.write_bytes(bytes(data))
    return struct.unpack_from("<f", data, top_byte - 3)[0]


def flipped_statistics(root: Path) -> Row:
    """Item 3: one bit of a stored variance; is the next bundle the same network?"""
    spec = root / "cached.yaml"
    spec.write_text(CACHE_SPEC)
    with cache_directory(root / "statistics-cache") as cache:
        first, _ = export(spec, "onnxruntime", root / "statistics-1")
        (entry,) = (cache / "batch_norm").iterdir()
        value = flip_variance_exponent(entry)
        code, stderr = export(spec, "onnxruntime", root / "statistics-2")
    if code != 0:
        outcome = "no bundle"
    elif shipped(root / "statistics-1") == shipped(root / "statistics-2"):
        outcome = f"the same network shipped, {told(stderr)}"
    else:
        outcome = f"ANOTHER network shipped (a variance of {value:.2g}), {told(stderr)}"
    return Row("25.3", "batch-norm cache: a variance's exponent bit flipped, export", outcome,
               f"{exit_code(first)} → {exit_code(code)}", "n/a", said(stderr))


def flipped_calibration(root: Path) -> Row:
    """Must-hold: the calibration's peak, one bit of its first digit flipped; bench reads it."""
    with cache_directory(root / "calibration-cache") as cache:
        calibrated, _ = finish(ablate("roofline"))
        (path,) = cache.glob("calibration-*.json")
        text = path.read_text()
        at = text.index('"peak_flop_per_second": ') + len('"peak_flop_per_second": ')
        digit = text[at]
        flipped_digit = chr(ord(digit) ^ (0x02 if digit == "1" else 0x01))  # never a leading 0
        path.write_text(text[:at] + flipped_digit + text[at + 1 :])
        peak = json.loads(path.read_text())["peak_flop_per_second"]
        code, stderr = finish(ablate("bench", *TINY_BENCH, "--budget", "3", "--json"))
        after = json.loads(path.read_text())["peak_flop_per_second"]
    factor = int(flipped_digit) / int(digit)
    if after == peak:
        outcome = f"bench drew its roofline on a peak {factor:.2g}x off, {told(stderr)}"
    else:
        outcome = f"measured again ({after / 1e9:.0f} GFLOP/s), {told(stderr)}"
    return Row("25.3", f"calibration cache: peak's first digit {digit} -> {flipped_digit}, bench",
               outcome, f"{exit_code(calibrated)} → {exit_code(code)}", "n/a", said(stderr))


def flipped_header_length(root: Path) -> Row:
    """Item 7: bit 40 of an export entry's header length; the next two exports."""
    spec = root / "cached.yaml"
    spec.write_text(CACHE_SPEC)
    with cache_directory(root / "export-cache") as cache:
        first, _ = export(spec, "executorch", root / "header-1")
        (entry,) = (cache / "exports").glob("*.export")
        data = bytearray(entry.read_bytes())
        data[8 + 5] ^= 0x01  # the length field follows the 8-byte magic; bit 40: 1 TiB more
        entry.write_bytes(bytes(data))
        second, stderr = export(spec, "executorch", root / "header-2")
        third, third_stderr = export(spec, "executorch", root / "header-3")

    def outcome(code: int, stderr: str, bundle: Path) -> str:
        if code != 0:
            return "failed" + (" (traceback)" if "Traceback" in stderr else "")
        manifest = json.loads((bundle / "manifest.json").read_text())
        cached = manifest["units"][0]["runtime"]["export_cached"]
        return f"{'read from the cache' if cached else 'exported'}, {told(stderr)}"

    return Row("25.7", "export cache: bit 40 of an entry's header length flipped, 2 exports",
               f"{outcome(second, stderr, root / 'header-2')}; then "
               f"{outcome(third, third_stderr, root / 'header-3')}",
               f"{exit_code(first)} → {exit_code(second)} → {exit_code(third)}", "n/a",
               said(stderr))


def unwritable_cache(root: Path, read_only: bool) -> Row:
    """Item 8: the cache on a full tmpfs, or an empty read-only one; the bundle's disk has room."""
    spec = root / "cached.yaml"
    spec.write_text(CACHE_SPEC)
    kind = "read-only" if read_only else "full"
    fault = f"export with its cache on a {kind} tmpfs ({'empty' if read_only else 'filled up'})"
    with tmpfs(root / f"{kind}-cache", read_only=read_only) as mounted:
        if mounted is None:
            return Row("25.8", fault, "skipped: cannot mount a tmpfs here", "n/a", "n/a")
        if not read_only:
            fill(mounted)
        with cache_directory(mounted):
            code, stderr = export(spec, "executorch", root / f"{kind}-bundle")
    written = (root / f"{kind}-bundle" / "manifest.json").exists()
    outcome = f"{'bundle written' if written else 'no bundle'}, {told(stderr)}"
    return Row("25.8", fault, outcome, exit_code(code), "n/a", said(stderr))


# -- issue 25: bundles, sessions, formula names, export's output -------------------------------

BUNDLE_SPEC = """\
name: shared
base: mobilenet_v3_small
input: {resolution: 32}
measure: {backend: onnxruntime}
baseline: "=1+1"
variants:
  "=1+1": {width: 0.35}
  "-se": {width: 0.35, se: false}
  "@relu": {width: 0.35, activation: relu}
"""
PRECIOUS = b"precious, outside the bundle\n"


def driver(bundle: Path, out: Path | None, **settings: str) -> subprocess.Popen[str]:
    """measure.sh on this machine: its one host runner, short rounds unless told."""
    environment = {**os.environ, "ABLATE_MODE": "host", "ROUNDS": "6", "MIN_ROUNDS": "6",
                   "ITERATIONS": "1", "WARMUP": "1", **settings}
    if out is not None:
        environment["OUT_DIR"] = str(out)
    return subprocess.Popen(["sh", str(bundle / "measure.sh")], env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def bundle_copy(bundle: Path, root: Path, name: str) -> Path:
    copy = root / name
    shutil.copytree(bundle, copy, symlinks=True)
    return copy


def ingested(bundle: Path, timings: Path, out: Path) -> tuple[int, str, str]:
    """(exit code, stderr, outcome) of `ablate ingest`."""
    code, stderr = finish(ablate("ingest", str(bundle), str(timings), "--out", str(out)))
    outcome = "ingested" if code == 0 else refused(code, stderr)
    return code, stderr, outcome


def host_runners(bundle: Path) -> int:
    """How many `run_host.py --serve` of `bundle` are running."""
    wanted = str(bundle.resolve() / "run_host.py").encode()
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        count += wanted in arguments and b"--serve" in arguments
    return count


def linked_timings(bundle: Path, root: Path) -> Row:
    """S2: `timings.csv -> victim` inside a shared bundle."""
    copy = bundle_copy(bundle, root, "linked")
    victim = root / "victim"
    victim.write_bytes(PRECIOUS)
    (copy / "timings.csv").symlink_to(victim)
    code, stderr = finish(driver(copy, None))
    kept = "victim unchanged" if victim.read_bytes() == PRECIOUS else "VICTIM OVERWRITTEN"
    return Row("25.S2", "measure.sh, bundle/timings.csv -> a file outside",
               f"{refused(code, stderr)}, {kept}", exit_code(code), "n/a", message(stderr))


def edited(bundle: Path, measured: Path, root: Path, name: str) -> list[Row]:
    """S2: a file of the bundle edited after the export: the driver, then ingest."""
    copy = bundle_copy(bundle, root, f"edited-{name.replace('/', '-')}")
    with (copy / name).open("ab") as handle:
        handle.write(b"\n# edited\n" if not name.endswith(".onnx") else b"\0")
    code, stderr = finish(driver(copy, root / f"out-{copy.name}"))
    timed = "nothing timed" if not (root / f"out-{copy.name}").exists() else "TIMED"
    rows = [Row("25.S2", f"measure.sh, {name} edited", f"{refused(code, stderr)}, {timed}",
                exit_code(code), "n/a", message(stderr))]
    code, stderr, outcome = ingested(copy, measured / "timings.csv", root / "runs-edited")
    rows.append(Row("25.S2", f"ingest, {name} edited", outcome, exit_code(code), "n/a",
                    message(stderr)))
    return rows


def swapped_names(bundle: Path, measured: Path, root: Path) -> Row:
    """S2: variants.txt's names rotated and the manifest's hash of it updated to match."""
    copy = bundle_copy(bundle, root, "swapped")
    lines = (copy / "variants.txt").read_text().splitlines(keepends=True)
    names = [line.rsplit("\t", 1)[1] for line in lines]
    (copy / "variants.txt").write_text("".join(
        line.rsplit("\t", 1)[0] + "\t" + names[(index + 1) % len(names)]
        for index, line in enumerate(lines)))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["variants.txt"] = sha256_hex(copy / "variants.txt")
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    code, stderr, outcome = ingested(copy, measured / "timings.csv", root / "runs-swapped")
    return Row("25.S2", "ingest, variants.txt names rotated, manifest hash updated", outcome,
               exit_code(code), "n/a", message(stderr))


def sha256_hex(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def interrupted_session(bundle: Path, root: Path) -> list[Row]:
    """Item 2: session 1 completes (3 iterations a timing); session 2 (1 iteration) is
    SIGKILLed after 8 rounds. Ingest, then ingest with session 1's record put back."""
    out = root / "sessions"
    code, stderr = finish(driver(bundle, out, ROUNDS="7", ITERATIONS="3", SEED="1"))
    if code != 0:
        raise RuntimeError(f"session 1 failed: {message(stderr)}")
    first = json.loads((out / "device.json").read_text())
    second = driver(bundle, out, ROUNDS="1000000", BUDGET_S="100000", SEED="2")

    def eight_rounds_of_session_2() -> bool:
        record = json.loads((out / "device.json").read_text())
        rows = (out / "timings.csv").read_text().count("\n") - 1
        return record["session"] != first["session"] and rows >= 8 * 3

    wait_until(eight_rounds_of_session_2, second)
    second.kill()
    killed, _ = finish(second)
    deadline = time.monotonic() + 30
    while host_runners(bundle) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = host_runners(bundle)
    rows_kept = (out / "timings.csv").read_text().count("\n") - 1
    code, stderr, outcome = ingested(bundle, out / "timings.csv", root / "runs-sessions")
    if code == 0:
        [results_file] = (root / "runs-sessions").glob("*/results.json")
        results = json.loads(results_file.read_text())
        iterations = results["environment"]["measured_on_device"]["iterations_per_round"]
        whose = "session 2's" if iterations == 1 else "SESSION 1's"
        outcome = (f"ingested {results['measurement']['rounds']} of {rows_kept // 3} complete "
                   f"rounds, {whose} record ({iterations} iteration a timing)")
    rows = [Row("25.2", "measure.sh SIGKILLed in a 2nd session, then ingest",
                f"{outcome}; {left} host runner left", f"{exit_code(killed)} → {code}",
                "no" if rows_kept % 3 == 0 else "YES: a torn round", message(stderr))]
    (out / "device.json").write_text(json.dumps(first))
    code, stderr, outcome = ingested(bundle, out / "timings.csv", root / "runs-stale")
    rows.append(Row("25.2", "ingest, session 1's device.json beside session 2's rows", outcome,
                    exit_code(code), "n/a", message(stderr)))
    return rows


def formula_names(bundle: Path, measured: Path, root: Path) -> Row:
    """S3: names starting = - @ through variants.txt, measure.sh's timings.csv and ingest."""
    with (measured / "timings.csv").open(newline="") as handle:
        cells = sorted({row["variant"] for row in csv.DictReader(handle)})
    code, stderr, outcome = ingested(bundle, measured / "timings.csv", root / "runs-formula")
    names: list[str] = []
    for results in (root / "runs-formula").glob("*/results.json"):
        names = [variant["name"] for variant in json.loads(results.read_text())["variants"]]
    texts = all(not cell.startswith(("=", "+", "-", "@")) for cell in cells)
    return Row("25.S3", "names =1+1, -se, @relu: timings.csv and back",
               f"cells {' '.join(cells)} ({'text' if texts else 'FORMULAS'}); {outcome} as "
               f"{' '.join(names)}", exit_code(code), "n/a", message(stderr))


def export_output(root: Path) -> list[Row]:
    """Smaller cases: `export -o` under a missing parent, and onto a link."""
    spec = root / "shared-export.yaml"
    spec.write_text(BUNDLE_SPEC)
    empty = root / "empty-target"
    empty.mkdir()
    (root / "link-target").symlink_to(empty)
    rows = []
    for fault, out in (("export -o under a missing parent", root / "no" / "such" / "b"),
                       ("export -o onto a symbolic link", root / "link-target")):
        code, stderr = finish(ablate("export", str(spec), "--backend", "onnxruntime",
                                     "-o", str(out)))
        written = "nothing written" if not any(empty.iterdir()) else "WRITTEN"
        rows.append(Row("25.x", fault, f"{refused(code, stderr)}, {written}", exit_code(code),
                        "n/a", message(stderr)))
    return rows


def exported_and_measured(spec: Path, directory: Path) -> tuple[Path, Path]:
    """`spec` exported for ONNX Runtime into DIRECTORY/bundle and timed by its unmodified
    measure.sh into DIRECTORY/measured: the real session the bundle and ingest cases start from."""
    bundle = directory / "bundle"
    code, stderr = finish(ablate("export", str(spec), "--backend", "onnxruntime", "-o",
                                 str(bundle)))
    if code != 0:
        raise RuntimeError(f"export failed: {message(stderr)}")
    measured = directory / "measured"
    code, stderr = finish(driver(bundle, measured))
    if code != 0:
        raise RuntimeError(f"measure.sh failed: {message(stderr)}")
    return bundle, measured


def bundle_faults(root: Path) -> list[Row]:
    """Issue 25's bundle cases on one real export (about a minute)."""
    directory = root / "bundle-faults"
    directory.mkdir()
    spec = directory / "shared.yaml"
    spec.write_text(BUNDLE_SPEC)
    bundle, measured = exported_and_measured(spec, directory)
    rows = [*interrupted_session(bundle, directory), linked_timings(bundle, directory)]
    for name in ("measure.sh", "run_host.py", "bundle.env", "variants.txt"):
        rows += edited(bundle, measured, directory, name)
    rows += [swapped_names(bundle, measured, directory),
             formula_names(bundle, measured, directory), *export_output(directory)]
    return rows


# -- issue 25: the export pool's processes ----------------------------------------------------

POOL_SPEC = """\
name: pool
base: mobilenet_v3_small
input: {resolution: 32}
measure: {budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: a
variants:
  a: {width: 0.25}
  b: {width: 0.25, se: false}
  c: {width: 0.25, activation: relu}
  d: {width: 0.5}
"""
GONE_S = 10.0


def process_tree(pid: int) -> dict[tuple[int, int], str]:
    """Every live process below `pid`, as (pid, start time) with its command line."""
    found: dict[tuple[int, int], str] = {}
    stack = [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                started = process_start(child)
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if started is not None:
                    found[(child, started)] = command.decode()
                    stack.append(child)
    return found


def process_start(pid: int) -> int | None:
    """Its start time (clock ticks), None if it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] in "ZX" else int(fields[19])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def holds_open(pid: int, directory: Path) -> bool:
    """Whether `pid` has a file under `directory` open (an export entry's lock: exporting)."""
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


def pool_exporting(root: Path, command: str, name: str) -> tuple[subprocess.Popen[str], dict]:
    """`ablate export|run --backend executorch` with two export workers, once both export."""
    directory = root / name
    directory.mkdir()
    spec = directory / "pool.yaml"
    spec.write_text(POOL_SPEC)
    cache = directory / "cache"
    target = ["-o", str(directory / "bundle")] if command == "export" else [
        "--quick", "--out", str(directory / "runs")]
    environment = {**os.environ, "ABLATE_CACHE_DIR": str(cache), "ABLATE_EXPORT_WORKERS": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ablate", command, str(spec), "--backend", "executorch", *target],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        process_group=0, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    tree: dict = {}

    def both_exporting() -> bool:
        tree.clear()
        tree.update(process_tree(process.pid))
        workers = [pid for (pid, _), line in tree.items() if "spawn_main" in line]
        return (len(workers) == 2 and any("resource_tracker" in line for line in tree.values())
                and all(holds_open(pid, cache) for pid in workers))

    wait_until(both_exporting, process)
    return process, dict(tree)


def left_behind(tree: dict, within: float) -> tuple[dict, float]:
    """Those of `tree` alive after `within` s (sooner once none is), and when that was."""
    started = time.monotonic()
    while True:
        left = {key: line for key, line in tree.items() if process_start(key[0]) == key[1]}
        if not left or time.monotonic() - started > within:
            return left, time.monotonic() - started
        time.sleep(0.05)


def describe_left(tree: dict, left: dict, seconds: float) -> str:
    if not left:
        return f"all {len(tree)} gone after {seconds:.1f} s"
    workers = [pid for (pid, _), line in left.items() if "spawn_main" in line]
    memory = sum(rss_mb(pid) for pid in workers)
    tracker = any("resource_tracker" in line for line in left.values())
    for pid, _ in left:  # ours: not left running after this script
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return (f"{len(left)} of {len(tree)} alive {seconds:.0f} s later ({len(workers)} workers, "
            f"{memory:.0f} MB{'; the resource tracker' if tracker else ''})")


def pool_killed(root: Path, command: str) -> Row:
    process, tree = pool_exporting(root, command, f"pool-kill-{command}")
    memory = sum(rss_mb(pid) for (pid, _), line in tree.items() if "spawn_main" in line)
    process.kill()
    code = process.wait(timeout=WAIT_S)  # not its pipes' end: what survives may hold them
    left, seconds = left_behind(tree, GONE_S)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    return Row("25.9", f"SIGKILL of {command} while 2 workers export ({memory:.0f} MB)",
               describe_left(tree, left, seconds), exit_code(code), "n/a")


def pool_interrupted(root: Path, command: str, group: bool) -> Row:
    name = f"pool-int-{command}{'-group' if group else ''}"
    process, tree = pool_exporting(root, command, name)
    sent = time.monotonic()
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    code = process.wait(timeout=WAIT_S)
    exited = time.monotonic() - sent
    left, seconds = left_behind(tree, GONE_S)
    outcome = f"exited {exited:.1f} s after; {describe_left(tree, left, seconds)}"
    stderr = process.communicate(timeout=WAIT_S)[1]  # what was left behind is killed now
    lost = "n/a"
    if command == "run":
        directory = run_directory(root / name / "runs")
        resolved = None if directory is None else json.loads(
            (directory / RESOLVED_SPEC_NAME).read_text())
        resumable = resolved is not None and unfinished_run(root / name / "runs", resolved)
        lost = "no" if resumable == directory else "YES: not resumable"
        outcome += f"; resumable (status {status(directory)})" if lost == "no" else ""
    target = "the process group" if group else "the main process"
    return Row("25.9", f"SIGINT to {target} of {command} while 2 workers export", outcome,
               exit_code(code), lost, message(stderr))


def pool_faults(root: Path) -> list[Row]:
    return [pool_killed(root, "export"), pool_killed(root, "run"),
            pool_interrupted(root, "export", False), pool_interrupted(root, "export", True),
            pool_interrupted(root, "run", False)]


# -- issue 25: ingest ---------------------------------------------------------------------------

# Each name is the other's unit id: the exporter numbers the units v000, v001 in spec order.
SWAPPED_SPEC = """\
name: swapped
base: mobilenet_v3_small
input: {resolution: 32}
measure: {backend: onnxruntime}
baseline: v001
variants:
  v001: {width: 0.35}
  v000: {width: 0.35, se: false}
"""
TIMINGS_HEADER = "round,variant,milliseconds,position,session\n"


def swapped_ids(bundle: Path, measured: Path, root: Path) -> Row:
    """Item 1: a real session of a bundle whose names are the other unit's id."""
    timings = measured / "timings.csv"
    code, stderr, outcome = ingested(bundle, timings, root / "swapped-runs")
    run = run_directory(root / "swapped-runs")
    if code == 0 and run is not None:
        # Every row of the session against the journal's entry for its round and name.
        journal = [json.loads(line) for line in (run / JOURNAL_NAME).read_text().splitlines()]
        with timings.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        own = all(journal[int(row["round"])]["seconds"][row["variant"]]
                  == float(row["milliseconds"]) / 1e3 for row in rows)
        outcome = f"{len(rows)} rows: " + ("each name its own timings" if own
                                           else "SWAPPED: names take another's timings")
    return Row("25.1", "ingest, variants named v001 and v000 (each the other's unit id)",
               outcome, exit_code(code), "n/a", message(stderr))


def killed_ingest(bundle: Path, root: Path) -> Row:
    """Item 4: SIGKILL while ingest writes its run; then `run --resume` and the next ingest."""
    long = root / "long"
    long.mkdir()
    timings = long / "timings.csv"
    timings.write_text(TIMINGS_HEADER + "".join(
        f"{r},v001,{1.0 + r % 7 / 100:.2f},{r % 2},s\n{r},v000,3.0,{1 - r % 2},s\n"
        for r in range(50_000)))
    out = root / "killed-runs"
    process = ablate("ingest", str(bundle), str(timings), "--out", str(out))

    def staged() -> bool:  # what a listing of runs would have taken for one
        return out.is_dir() and any(path.name.startswith(".") and
                                    (path / RESOLVED_SPEC_NAME).exists()
                                    for path in out.iterdir())

    wait_until(staged, process)
    process.send_signal(signal.SIGKILL)
    killed, _ = finish(process)
    left = sorted(path.name for path in out.iterdir())
    spec = root / "swapped.yaml"
    resumed, resume_stderr = finish(ablate("run", str(spec), "--backend", "onnxruntime",
                                           "--resume", "--out", str(out)))
    adopted = resumed == 0 or "no unfinished run" not in resume_stderr
    short = root / "short"
    short.mkdir()
    (short / "timings.csv").write_text(TIMINGS_HEADER + "".join(
        f"{r},v001,1.0,0,s\n{r},v000,3.0,1,s\n" for r in range(6)))
    code, _, _ = ingested(bundle, short / "timings.csv", out)
    after = sorted(path.name for path in out.iterdir())
    hidden = [name for name in after if name.startswith(".")]
    outcome = (f"left {len(left)} entries ({sum(n.startswith('.') for n in left)} hidden); "
               f"resume {'ADOPTED the staging directory' if adopted else 'refused, none adopted'}"
               f"; next ingest: {len(after)} run, "
               f"{'staging LEFT' if hidden or len(after) != 1 else 'staging removed'}")
    return Row("25.4", "ingest SIGKILLed writing 50,000 rounds; run --resume; ingest again",
               outcome, f"{exit_code(killed)} → {exit_code(resumed)} → {exit_code(code)}",
               "n/a", message(resume_stderr))


def awkward_names(root: Path) -> list[Row]:
    """Item 10: names a CSV row or field cannot carry, at `validate`."""
    rows = []
    for label, key in (("' a' (leading space)", '" a"'), ("'a ' (trailing space)", '"a "'),
                       ("U+2028 inside", '"a\\Lb"'), ("U+0085 inside", '"a\\Nb"')):
        spec = root / "names.yaml"
        spec.write_text(f"name: names\nvariants:\n  b: {{}}\n  {key}: {{width: 0.5}}\n")
        code, stderr = finish(ablate("validate", str(spec)))
        rows.append(Row("25.10", f"validate, a variant named {label}", refused(code, stderr),
                        exit_code(code), "n/a", message(stderr)))
    return rows


def bad_bytes(bundle: Path, root: Path) -> list[Row]:
    """The smaller cases: real files with the bad bytes, through `ablate ingest`."""
    good = "".join(f"{r},v001,1.0,0,s\n{r},v000,3.0,1,s\n" for r in range(6))
    cases = [
        ("seconds that underflow (1e-320 ms)", TIMINGS_HEADER + good.replace("3.0", "1e-320", 1),
         None),
        ("an Arabic-Indic digit as round ('٣')", TIMINGS_HEADER + "٣" + good[1:], None),
        ("a fullwidth digit in a time ('１.0')", TIMINGS_HEADER + good.replace("1.0", "１.0", 1),
         None),
        ("a 200 KB field", TIMINGS_HEADER + "0," + "x" * 200_000 + ",1.0,0,s\n", None),
        ("device.json iterations \"10\" (text)", TIMINGS_HEADER + good,
         {"iterations": "10"}),
        ("device.json pinned \"yes\"", TIMINGS_HEADER + good, {"pinned": "yes"}),
        ("a UTF-8 BOM before the header", "\ufeff" + TIMINGS_HEADER + good, None),
    ]
    rows = []
    for index, (fault, text, record) in enumerate(cases):
        directory = root / f"bytes-{index}"
        directory.mkdir()
        (directory / "timings.csv").write_text(text, encoding="utf-8")
        if record is not None:
            (directory / "device.json").write_text(json.dumps({
                "schema": "ablate.device-record/2", "session": "s", "rounds": 6,
                "stop_reason": "max_rounds", "iterations": 10, **record}))
        code, stderr, outcome = ingested(bundle, directory / "timings.csv",
                                         root / f"bytes-runs-{index}")
        rows.append(Row("25.x", f"ingest, {fault}", outcome, exit_code(code), "n/a",
                        message(stderr)))
    tampered = bundle_copy(bundle, root, "tampered")
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["variants"][1]["measured_as"] = "v002"
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    (root / "bytes-0" / "timings.csv").write_text(TIMINGS_HEADER + good)
    code, stderr, outcome = ingested(tampered, root / "bytes-0" / "timings.csv",
                                     root / "tampered-runs")
    rows.append(Row("25.x", "ingest, manifest measured_as naming no unit", outcome,
                    exit_code(code), "n/a", message(stderr)))
    local = new_run_directory(root / "local-runs", "x")
    ingested_run = run_directory(root / "bytes-runs-6")
    modes = [oct(path.stat().st_mode & 0o777) if path else "none" for path in (local,
                                                                              ingested_run)]
    rows.append(Row("25.x", "an ingested run directory's mode against a local one's",
                    f"local {modes[0]}, ingested {modes[1]}", "n/a", "n/a"))
    spec = root / "batch0.yaml"
    spec.write_text("name: b0\ninput: {batch: 0}\n")
    code, stderr = finish(ablate("validate", str(spec)))
    rows.append(Row("25.x", "validate, input.batch: 0", refused(code, stderr), exit_code(code),
                    "n/a", message(stderr)))
    return rows


def ingest_faults(root: Path) -> list[Row]:
    """Issue 25's ingest cases on one real export and one real session (about a minute)."""
    directory = root / "ingest-faults"
    directory.mkdir()
    spec = directory / "swapped.yaml"
    spec.write_text(SWAPPED_SPEC)
    bundle, measured = exported_and_measured(spec, directory)
    return [swapped_ids(bundle, measured, directory), killed_ingest(bundle, directory),
            *awkward_names(directory), *bad_bytes(bundle, directory)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Keep the runs here instead of a temp dir.")
    parser.add_argument(
        "--injected", action="store_true", help="Inject ENOSPC even where a tmpfs can be mounted."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        help="Only these cases (1 2 3 4 5 9 10 25.3 25.5 25.6 25.7 25.8 25.9 25.bundle "
        "25.ingest; 10 includes 12).",
    )
    arguments = parser.parse_args()
    root = arguments.keep or Path(tempfile.mkdtemp(prefix="ablate-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    os.umask(0o022)
    started = dt.datetime.now()
    rows: list[Row] = []
    try:
        with small_filesystem(root) as mounted:
            filesystem = None if arguments.injected else mounted
            cases: list[tuple[str, Callable[[], list[Row]]]] = [
                ("1", lambda: [torn_journal(root)]),
                ("2", lambda: [disk_full(root, filesystem, "measuring")]),
                ("2", lambda: [disk_full(root, filesystem, "counting")]),
                ("3", lambda: [contended(root)]),
                ("4", lambda: [racing(root)]),
                ("5", lambda: [ordering(root)]),
                ("9", lambda: [out_not_a_directory(root)]),
                ("10", lambda: list(interrupted(root))),
                ("25.5", lambda: four_architectures(root)),
                ("25.6", lambda: bad_profiles(root)),
                ("25.3", lambda: [flipped_statistics(root), flipped_calibration(root)]),
                ("25.7", lambda: [flipped_header_length(root)]),
                ("25.8", lambda: [unwritable_cache(root, False), unwritable_cache(root, True)]),
                ("25.9", lambda: pool_faults(root)),
                ("25.bundle", lambda: bundle_faults(root)),
                ("25.ingest", lambda: ingest_faults(root)),
            ]
            for case, run in cases:
                if arguments.only and case not in arguments.only:
                    continue
                rows.extend(run())
                print(f"  case {case}: done", file=sys.stderr)
    finally:
        if arguments.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    headers = ("case", "fault", "outcome", "exit codes", "lost")
    table = [headers, *((r.case, r.fault, r.outcome, r.exit_codes, r.lost) for r in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(headers))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print("\nexit codes: the fault's, then the resume's (→). What the user saw:")
    for row in rows:
        if row.message:
            print(f"  {row.case}: {row.message}")
    seconds = (dt.datetime.now() - started).total_seconds()
    print(f"\n{len(rows)} cases in {seconds:.0f} s; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
