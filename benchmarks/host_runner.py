"""The host runner's cost per timing: what a bundle's session spends beyond the forward passes.

Exports a bundle of three networks (mobilenet_v3_small at 224 px: as it is, without
squeeze-excite, with ReLU), then times it on this machine with `measure.sh` two ways:

- `session`: measure.sh's host mode, one `run_host.py --serve` for the whole session (each
  program loaded once, timed on request);
- `per timing`: one `run_host.py MODEL RUNS` process per timing, as a phone's benchmark
  binary is run (measure.sh with BENCHMARK_BINARY set to a wrapper of it): what the host mode
  did before.

Each session's rounds are timed from measure.sh's "round k" lines (the first round is left
out: it follows the warm-up). The forward passes of those rounds are the rows' milliseconds
times (ITERATIONS + 1): each timing runs one untimed pass first, as the phone binaries do.
The overhead per timing is the rest of the rounds' wall time, divided by their timings.

    python benchmarks/host_runner.py                       # about 3 minutes on 2 busy cores
    python benchmarks/host_runner.py --rounds 20 --per-timing-rounds 6 --keep /tmp/hr
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SPEC = """\
name: host-runner
base: mobilenet_v3_small
input: {resolution: 224}
measure: {backend: onnxruntime}
baseline: v3_small
variants:
  v3_small: {}
  no_se: {se: false}
  relu: {activation: relu}
"""
# A phone binary's command line, standing in for one: a new process per timing.
PER_TIMING_BINARY = """\
#!/bin/sh
exec "{python}" "{bundle}/run_host.py" "$1" "$2"
"""


@dataclass
class Session:
    mode: str
    timings: int  # timed in the rounds measured (all but the first)
    rounds_s: float  # wall time of those rounds
    forward_s: float  # their forward passes, the untimed one of each timing included
    untimed_s: float  # of which the untimed pass of each timing
    start_s: float  # from the start of measure.sh to the end of its first round

    @property
    def overhead_ms(self) -> float:
        return (self.rounds_s - self.forward_s) / self.timings * 1e3

    @property
    def overhead_with_untimed_ms(self) -> float:
        return (self.rounds_s - self.forward_s + self.untimed_s) / self.timings * 1e3


def export(root: Path) -> Path:
    spec = root / "host-runner.yaml"
    spec.write_text(SPEC)
    bundle = root / "bundle"
    subprocess.run(
        [sys.executable, "-m", "ablate", "export", str(spec), "--backend", "onnxruntime",
         "-o", str(bundle)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return bundle


def session(bundle: Path, out: Path, mode: str, rounds: int, iterations: int) -> Session:
    environment = {
        **os.environ,
        "ABLATE_MODE": "host",
        "OUT_DIR": str(out),
        "ROUNDS": str(rounds),
        "MIN_ROUNDS": str(min(rounds, 6)),
        "BUDGET_S": "100000",
        "ITERATIONS": str(iterations),
        "WARMUP": "5",
    }
    if mode == "per timing":
        binary = out.parent / "per-timing-runner"
        binary.write_text(PER_TIMING_BINARY.format(python=sys.executable, bundle=bundle))
        binary.chmod(0o755)
        environment |= {"BENCHMARK_BINARY": str(binary), "BENCHMARK_ARGS": "{model} {runs}"}
    started = time.monotonic()
    process = subprocess.Popen(
        ["sh", str(bundle / "measure.sh")],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    ends = []  # when each round's line came
    for line in process.stderr:
        if line.startswith("measure.sh: round "):
            ends.append(time.monotonic())
        else:
            print(line, end="", file=sys.stderr)
    if process.wait() != 0 or len(ends) != rounds:
        raise SystemExit(f"measure.sh failed ({mode}): exit {process.returncode}")
    with (out / "timings.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["round"] != "0"]
    untimed = sum(float(row["milliseconds"]) for row in rows) / 1e3
    return Session(
        mode=mode,
        timings=len(rows),
        rounds_s=ends[-1] - ends[0],
        forward_s=untimed * (iterations + 1),
        untimed_s=untimed,
        start_s=ends[0] - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="Rounds of the session mode.")
    parser.add_argument(
        "--per-timing-rounds", type=int, default=6, help="Rounds of the per-timing mode."
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="Work here instead of a temp dir, and keep it.")
    arguments = parser.parse_args()
    root = arguments.keep or Path(tempfile.mkdtemp(prefix="ablate-host-runner-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        bundle = root / "bundle" if (root / "bundle" / "manifest.json").is_file() else export(root)
        sessions = []
        for mode, rounds in (("session", arguments.rounds),
                             ("per timing", arguments.per_timing_rounds)):
            out = root / mode.replace(" ", "-")
            shutil.rmtree(out, ignore_errors=True)
            sessions.append(session(bundle, out, mode, rounds, arguments.iterations))
        print(f"3 networks, {arguments.iterations} iterations per timing (+1 untimed), "
              "the first round left out")
        header = ("mode", "timings", "rounds s", "passes s", "overhead/timing",
                  "incl. untimed pass", "to 1st round end")
        print("  ".join(f"{cell:>18}" for cell in header))
        for s in sessions:
            cells = (s.mode, str(s.timings), f"{s.rounds_s:.2f}", f"{s.forward_s:.2f}",
                     f"{s.overhead_ms:.1f} ms", f"{s.overhead_with_untimed_ms:.1f} ms",
                     f"{s.start_s:.1f} s")
            print("  ".join(f"{cell:>18}" for cell in cells))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}")
    finally:
        if arguments.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
