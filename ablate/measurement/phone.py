"""A phone as the measuring target of a live run: each timed block is one run of the runtime's
benchmark binary on the phone through adb, and the paired rounds stay on the driver.

`ablate export` + `measure.sh` + `ingest` measure a phone from a bundle, with nothing of
ablate on the host that drives it. A live run (`ablate run --phone SERIAL`, or a matrix device
``{device: BACKEND, phone: SERIAL}``, on a cluster node that has the phone) keeps ablate's own
engine instead: the same warm-up, interleaved rounds, journal and stopping rule as a host
backend, where the engine's block timer is the phone. So a run on a phone is resumable round
by round, and a cluster node streams its rounds back like any other device.

The binary and its flags are the backend's `ProgramFile` ones, as measure.sh runs them; the
environment names them as measure.sh does: `BENCHMARK_BINARY` (the binary on this host,
pushed to the phone), `DEVICE_DIR` (where on the phone), `ADB`. Every call has the phone's
serial in `ANDROID_SERIAL`, which adb reads, so several phones on one host never mix.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import MeasurementError

if TYPE_CHECKING:
    from ablate.measurement.backends import Backend, ProgramFile
    from ablate.measurement.clock import BlockTimer, Runnable, TimedBlock

BINARY_VARIABLE = "BENCHMARK_BINARY"
DEVICE_DIRECTORY_VARIABLE = "DEVICE_DIR"
ADB_VARIABLE = "ADB"
DEFAULT_DEVICE_DIRECTORY = "/data/local/tmp/ablate-live"
# Each run of the binary is a fresh process whose first pass is cold; the binary's mean over
# at least this many passes keeps that to a tenth of one, as measure.sh's ITERATIONS does.
MINIMUM_RUNS = 10
# One adb call's limit: a phone that stops answering fails the block instead of hanging it.
CALL_TIMEOUT_S = 600.0
# getprop keys of the phone record, as measure.sh's device.json names them.
PROPERTIES = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "android": "ro.build.version.release",
    "soc": "ro.soc.model",
    "platform": "ro.board.platform",
    "abi": "ro.product.cpu.abi",
}

# What each benchmark binary prints, as milliseconds per pass (measure.sh's parse_ms reads the
# same lines): benchmark_model's mean in microseconds, executor_runner's total over N runs,
# onnxruntime_perf_test's mean, the bundle's run_host.py.
_BENCHMARK_MODEL = re.compile(r"Inference \(avg\):\s*([0-9.eE+-]+)")
_EXECUTOR_RUNNER = re.compile(r"Model executed successfully\s+(\d+)\s+time\(s\) in\s+([0-9.eE+-]+)")
_PERF_TEST = re.compile(r"Average inference time cost:\s*([0-9.eE+-]+)")
_RUN_HOST = re.compile(r"^ablate-ms:\s*([0-9.eE+-]+)", re.MULTILINE)


def parse_milliseconds(output: str) -> float | None:
    """Milliseconds per pass from a benchmark binary's output; None where it gives none."""
    found: float | None = None
    for line in output.splitlines():
        if match := _BENCHMARK_MODEL.search(line):
            found = float(match.group(1)) / 1000
        elif (match := _EXECUTOR_RUNNER.search(line)) and int(match.group(1)) > 0:
            found = float(match.group(2)) / int(match.group(1))
        elif (match := _PERF_TEST.search(line)) or (match := _RUN_HOST.search(line)):
            found = float(match.group(1))
    return found


class PhoneProgram:
    """A unit's program, to be timed on the phone: a runnable only in name (the engine binds
    it to the phone's block timer, which never calls it)."""

    def __init__(self, name: str, program: bytes, suffix: str) -> None:
        self.name = name
        self.program = program
        self.suffix = suffix
        self.sha256 = hashlib.sha256(program).hexdigest()

    def __call__(self) -> Any:
        raise MeasurementError(f"{self.name}: a phone's program runs on the phone, not here")


@dataclass
class Phone:
    """One phone on this host's adb, with the binary that times the backend's programs."""

    serial: str
    backend: str
    program: ProgramFile
    binary: Path
    adb: str
    directory: str = DEFAULT_DEVICE_DIRECTORY
    _pin: str = ""
    _pushed: dict[str, str] = field(default_factory=dict)  # sha256 -> path on the phone
    _staging: Path | None = None

    def call(self, *arguments: str, check: bool = True) -> str:
        """adb ARGUMENTS for this phone: its output (stdout then stderr), carriage returns
        dropped; a failure is one line naming the phone and the command."""
        environment = {**os.environ, "ANDROID_SERIAL": self.serial}
        try:
            done = subprocess.run(
                [self.adb, *arguments],
                env=environment,
                capture_output=True,
                text=True,
                timeout=CALL_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise MeasurementError(
                f"phone {self.serial}: `adb {' '.join(arguments)[:80]}` gave no answer in "
                f"{CALL_TIMEOUT_S:g} s"
            ) from None
        output = (done.stdout + done.stderr).replace("\r", "")
        if check and done.returncode != 0:
            last = output.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise MeasurementError(
                f"phone {self.serial}: `adb {' '.join(arguments)[:80]}` failed: {last[0]}"
            )
        return output

    def shell(self, command: str, check: bool = True) -> str:
        return self.call("shell", command, check=check)

    def connect(self) -> None:
        """Checks the phone is ready, pushes the binary, and finds whether it can be pinned."""
        state = self.call("get-state", check=False).strip()
        if state != "device":
            raise MeasurementError(
                f"phone {self.serial}: not ready on adb (state {state or 'none'!r}); "
                "attach it with USB debugging on, or name another serial"
            )
        self.shell(f"mkdir -p {shlex.quote(self.directory)}")
        self.call("push", str(self.binary), f"{self.directory}/benchmark")
        self.shell(f"chmod 755 {shlex.quote(self.directory + '/benchmark')}")
        # The last core, a big one on most phones, where taskset works (as measure.sh pins).
        listed = self.shell("ls -d /sys/devices/system/cpu/cpu[0-9]* 2>/dev/null", check=False)
        cores = len([line for line in listed.splitlines() if line.strip()])
        mask = f"{1 << max(cores - 1, 0):x}"
        probe = self.shell(f"taskset {mask} true >/dev/null 2>&1 && echo pinned", check=False)
        self._pin = f"taskset {mask} " if probe.strip() == "pinned" else ""

    def record(self) -> dict[str, Any]:
        """The phone as results carry it (measure.sh's device-record keys)."""
        values = {
            key: self.shell(f"getprop {name} 2>/dev/null", check=False).strip().splitlines()[:1]
            for key, name in PROPERTIES.items()
        }
        found = {key: value[0] if value else "" for key, value in values.items()}
        return {
            "mode": "adb-live",
            "serial": self.serial,
            "model": found["model"] or None,
            "manufacturer": found["manufacturer"] or None,
            "operating_system": f"Android {found['android']}" if found["android"] else None,
            "soc": found["soc"] or found["platform"] or None,
            "abi": found["abi"] or None,
            "binary": str(self.binary),
            "pinned": bool(self._pin),
        }

    def push(self, program: PhoneProgram) -> str:
        """The program's path on the phone, pushed once per content."""
        if program.sha256 not in self._pushed:
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="ablate-phone-"))
            name = f"{program.sha256[:20]}{program.suffix}"
            local = self._staging / name
            local.write_bytes(program.program)
            self.call("push", str(local), f"{self.directory}/{name}")
            local.unlink()
            self._pushed[program.sha256] = f"{self.directory}/{name}"
        return self._pushed[program.sha256]

    def milliseconds(self, remote: str, runs: int) -> float:
        """One run of the binary on the phone: its mean milliseconds per pass over `runs`."""
        arguments = self.program.arguments.replace("{runs}", str(runs))
        arguments = arguments.replace("{model}", shlex.quote(remote))
        command = f"{self._pin}{shlex.quote(self.directory + '/benchmark')} {arguments} 2>&1"
        output = self.shell(command)
        value = parse_milliseconds(output)
        if value is None or value <= 0:
            tail = " | ".join(output.strip().splitlines()[-2:]) or "no output"
            raise MeasurementError(
                f"phone {self.serial}: no time in the benchmark's output for {remote} ({tail})"
            )
        return value

    def block_timer(self) -> BlockTimer:
        """The engine's block timer: a block of N passes is one binary run of at least
        `MINIMUM_RUNS` passes, scaled to N."""

        def bind(runnable: Runnable) -> TimedBlock:
            if not isinstance(runnable, PhoneProgram):
                raise MeasurementError("a phone times programs (PhoneProgram), not runnables")
            remote = self.push(runnable)

            def timed(iterations: int) -> float:
                per_pass = self.milliseconds(remote, max(iterations, MINIMUM_RUNS))
                return per_pass * iterations / 1000

            return timed

        return bind

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


def phone_target(serial: str, runtime: Backend) -> Phone:
    """The phone `serial` on this host's adb, timing `runtime`'s programs with the binary
    `BENCHMARK_BINARY` names; one line saying what is missing otherwise."""
    if runtime.program is None:
        raise MeasurementError(
            f"backend {runtime.name!r} writes no program a phone could run; a phone runs "
            "executorch, litert or onnxruntime programs"
        )
    adb = os.environ.get(ADB_VARIABLE) or shutil.which("adb")
    if not adb:
        raise MeasurementError(f"phone {serial}: no adb on PATH (set {ADB_VARIABLE}=/path/to/adb)")
    binary = os.environ.get(BINARY_VARIABLE)
    if not binary:
        raise MeasurementError(
            f"phone {serial}: set {BINARY_VARIABLE} to the {runtime.name} benchmark binary "
            f"({runtime.program.binary})"
        )
    if not Path(binary).is_file():
        raise MeasurementError(f"phone {serial}: {BINARY_VARIABLE} {binary!r} is not a file")
    directory = os.environ.get(DEVICE_DIRECTORY_VARIABLE) or DEFAULT_DEVICE_DIRECTORY
    return Phone(serial, runtime.name, runtime.program, Path(binary), adb, directory)
