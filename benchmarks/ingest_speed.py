"""`ablate ingest` of a long phone session: wall time and peak memory of the `ablate` process.

Exports a two-network bundle (mobilenet_v3_small at width 0.35 and 32 px, with and without
squeeze-excite; about 10 s), writes a `timings.csv` of ROWS rows as measure.sh writes them
(rounds of both networks in a seeded order, lognormal times around 1.5 and 2.0 ms, three
decimals) and a device record, then runs `ablate ingest` as a child process and reports its
wall time and its peak resident memory (`ru_maxrss` of that child, from `os.wait4`).

    python benchmarks/ingest_speed.py                 # 1,000,000 rows
    python benchmarks/ingest_speed.py --rows 100000 --keep /tmp/ingest
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: ingest-speed
base: mobilenet_v3_small
input: {resolution: 32}
measure: {backend: onnxruntime}
baseline: se
variants:
  se: {width: 0.35}
  no_se: {width: 0.35, se: false}
"""
MEDIANS_MS = {"se": 1.5, "no_se": 2.0}
SESSION = "20260101T120000-bench"


def export(root: Path) -> Path:
    spec = root / "ingest-speed.yaml"
    spec.write_text(SPEC)
    bundle = root / "bundle"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ablate",
            "export",
            str(spec),
            "--backend",
            "onnxruntime",
            "-o",
            str(bundle),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return bundle


def write_session(directory: Path, rows: int, seed: int = 0) -> Path:
    """timings.csv and device.json as measure.sh leaves them after `rows // 2` rounds."""
    from ablate.services.bundle_format import DEVICE_SCHEMA, TIMINGS_COLUMNS

    directory.mkdir(parents=True, exist_ok=True)
    generator = random.Random(seed)
    names = list(MEDIANS_MS)
    rounds = rows // len(names)
    timings = directory / "timings.csv"
    with timings.open("w", encoding="utf-8") as handle:
        handle.write(",".join(TIMINGS_COLUMNS) + "\n")
        for index in range(rounds):
            order = names[:]
            generator.shuffle(order)
            for position, name in enumerate(order):
                milliseconds = MEDIANS_MS[name] * generator.lognormvariate(0, 0.05)
                cells = {
                    "round": str(index), "variant": name, "milliseconds": f"{milliseconds:.3f}",
                    "position": str(position), "session": SESSION,
                }  # fmt: skip
                handle.write(",".join(cells[column] for column in TIMINGS_COLUMNS) + "\n")
    record = {
        "schema": DEVICE_SCHEMA,
        "session": SESSION,
        "mode": "adb",
        "model": "Pixel 8",
        "manufacturer": "Google",
        "operating_system": "15",
        "soc": "Tensor G3",
        "abi": "arm64-v8a",
        "cores": 9,
        "cpu": 7,
        "pinned": True,
        "governor": "performance",
        "temperature_start_raw": "31000",
        "temperature_end_raw": "33000",
        "binary": "onnxruntime_perf_test",
        "threads": 1,
        "iterations": 10,
        "warmup_iterations": 5,
        "seed": seed,
        "rounds": rounds,
        "stop_reason": "max_rounds",
        "elapsed_s": rounds,
    }
    (directory / "device.json").write_text(json.dumps(record, indent=2) + "\n")
    return timings


def ingest(bundle: Path, timings: Path, out: Path) -> tuple[int, float, float, float, str]:
    """(exit code, wall seconds, CPU seconds, peak RSS in MB, stderr) of one `ablate ingest`.
    CPU time says what wall time would be on an idle machine (ingest uses one core)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ablate", "ingest", str(bundle), str(timings), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, seconds, cpu, usage.ru_maxrss / 1024, stderr  # ru_maxrss: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Work here instead of a temp dir, and keep it.")
    arguments = parser.parse_args()
    root = arguments.keep or Path(tempfile.mkdtemp(prefix="ablate-ingest-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        bundle = root / "bundle" if (root / "bundle" / "manifest.json").is_file() else export(root)
        timings = write_session(root / "session", arguments.rows)
        size_mb = timings.stat().st_size / 1e6
        code, seconds, cpu, peak_mb, stderr = ingest(bundle, timings, root / "runs")
        print(f"rows: {arguments.rows:,} ({size_mb:.1f} MB of CSV)")
        print(
            f"ablate ingest: exit {code}, {seconds:.1f} s wall ({cpu:.1f} s CPU), "
            f"peak RSS {peak_mb:.0f} MB"
        )
        if code != 0:
            print(stderr.strip().splitlines()[-1] if stderr.strip() else "(no message)")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}"
        )
    finally:
        if arguments.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
