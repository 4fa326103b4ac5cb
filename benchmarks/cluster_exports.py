"""Exports on a Ray cluster: what a task costs beside the export, and what a cluster would save.

Starts a local cluster (a head with no CPUs, two worker nodes of one CPU each) in a network
namespace that has only loopback (the script re-executes itself under `unshare -n`; root),
then measures, on that cluster:

1. the per-task overhead of scheduling and moving bytes: a task that takes an argument the
   size of a pickled network (what the driver sends) and returns bytes the size of a program
   (what comes back), against a task that moves nothing; median ms over repeats, and MB/s;
2. one real export through `ClusterExportPool` (MobileNetV3-Large, ExecuTorch fp32, a fresh
   cache): its export time on the node and its wall time at the driver.

It then projects the wall time of `why_v3_faster` (128 distinct networks) on ExecuTorch fp32
and int8 for 1, 4, 16 and 64 export CPUs: ceil(128 / N) waves of (export time + overhead),
plus the measuring budget and the preparation the driver does itself. The int8 export time is
an input (``--int8-export-s``, default 57 s: measured here per program in earlier runs,
docs/cluster.md), since one int8 export takes a minute. Every assumption is printed.

    python benchmarks/cluster_exports.py [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAMESPACE_MARK = "ABLATE_IN_LOOPBACK_NAMESPACE"
PROGRAMS = 128  # why_v3_faster: 2^7 coalitions, each a distinct network
BUDGET_S = 480.0  # its measuring budget (experiments/why_v3_faster.yaml)
PREPARE_S = 80.0  # counting and building 128 networks at the driver (runs on this host: 76 s)
CPUS = (1, 4, 16, 64)


def _in_namespace() -> None:
    if os.environ.get(NAMESPACE_MARK) == "1":
        return
    if shutil.which("unshare") is None:
        sys.exit("needs unshare (util-linux) and root: the cluster talks over loopback only")
    script = " ".join(
        f"'{part}'" for part in [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    )
    os.execvpe(
        "unshare",
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {script}"],
        {**os.environ, NAMESPACE_MARK: "1"},
    )


def _timed_tasks(ray: Any, send: int, back: int, repeats: int) -> list[float]:
    @ray.remote(num_cpus=1)
    def echo(payload: bytes, size: int) -> bytes:
        return bytes(size)

    payload = ray.put(os.urandom(send)) if send else b""
    ray.get(echo.remote(payload, back))  # a worker started on each node first
    ray.get([echo.remote(b"", 0) for _ in range(4)])
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        ray.get(echo.remote(os.urandom(send) if send else b"", back))
        seconds.append(time.perf_counter() - started)
    return seconds


def _real_export(cache: Path) -> dict[str, float]:
    import ray

    from ablate.cluster.connection import ClusterConnection
    from ablate.cluster.exports import ClusterExportPool
    from ablate.measurement.activations import realistic_module
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.setup import MeasurementSetup, example_input
    from ablate.variants.resolve import resolve_architecture

    architecture = resolve_architecture("mobilenet_v3_large")
    model = realistic_module(architecture)
    image = example_input(MeasurementSetup(), architecture.resolution)
    connection = ClusterConnection(ray, "local")
    pool = ClusterExportPool(connection, BACKENDS.get("executorch"), "fp32", cache_directory=cache)
    started = time.perf_counter()
    pool.submit(model, image, "mobilenet_v3_large")
    pool.wait()
    wall = time.perf_counter() - started
    (export_seconds,) = pool.exported.values()
    program = next((cache / "exports").glob("*.export")).stat().st_size
    return {"export_s": export_seconds, "wall_s": wall, "entry_mb": program / 1e6}


def projection(export_s: float, task_s: float, start_s: float, cpus: int) -> float:
    """Preparing at the driver, one worker start per CPU (in parallel), the waves of exports
    each with its task's overhead, then the measuring budget."""
    waves = math.ceil(PROGRAMS / cpus)
    return PREPARE_S + start_s + waves * (export_s + task_s) + BUDGET_S


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=20)
    options.add_argument(
        "--module-mb",
        type=float,
        default=22.0,
        help="bytes sent per task (a pickled MobileNetV3-Large: 22 MB)",
    )
    options.add_argument(
        "--program-mb",
        type=float,
        default=21.7,
        help="bytes back per task (its ExecuTorch fp32 program)",
    )
    options.add_argument("--int8-export-s", type=float, default=57.0)
    options.add_argument("--json", action="store_true")
    arguments = options.parse_args()  # fmt: skip
    _in_namespace()

    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    report: dict[str, Any] = {}
    cache = Path(tempfile.mkdtemp(prefix="ablate-cluster-bench-"))
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
        report["node_addresses"] = sorted(addresses)
        send, back = int(arguments.module_mb * 1e6), int(arguments.program_mb * 1e6)
        empty = statistics.median(_timed_tasks(ray, 0, 0, arguments.repeats))
        moving = statistics.median(_timed_tasks(ray, send, back, arguments.repeats))
        report["empty_task_ms"] = empty * 1e3
        report["moving_task_ms"] = moving * 1e3
        report["moved_mb"] = (send + back) / 1e6
        report["mb_per_s"] = (send + back) / 1e6 / max(moving - empty, 1e-9)
        report["real_export"] = _real_export(cache)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(cache, ignore_errors=True)
    real = report["real_export"]
    task_s = report["moving_task_ms"] / 1e3
    start_s = max(real["wall_s"] - real["export_s"] - task_s, 0.0)
    report["task_overhead_s"], report["worker_start_s"] = task_s, start_s
    report["projection_s"] = {
        precision: {str(cpus): projection(export_s, task_s, start_s, cpus) for cpus in CPUS}
        for precision, export_s in (("fp32", real["export_s"]), ("int8", arguments.int8_export_s))
    }
    if arguments.json:
        print(json.dumps(report, indent=2))
        return
    print(f"nodes at {', '.join(report['node_addresses'])} (loopback only)")
    print(f"empty task: {report['empty_task_ms']:.1f} ms median of {arguments.repeats}")
    print(
        f"task moving {arguments.module_mb:.1f} MB there and {arguments.program_mb:.1f} MB back: "
        f"{report['moving_task_ms']:.1f} ms ({report['mb_per_s']:.0f} MB/s beyond the empty task)"
    )
    print(
        f"one real export (MobileNetV3-Large, ExecuTorch fp32): {real['export_s']:.1f} s on the "
        f"node, {real['wall_s']:.1f} s at the driver: a worker's start (imports) "
        f"{start_s:.1f} s once per CPU, then {task_s:.2f} s per task beside its export"
    )
    print(
        f"why_v3_faster projected: {PROGRAMS} exports in ceil({PROGRAMS}/N) waves of (export + "
        f"task overhead), + one worker start, + {PREPARE_S:.0f} s counting and building at the "
        f"driver, + the {BUDGET_S:.0f} s measuring budget; int8 export "
        f"{arguments.int8_export_s:.0f} s each (given); N CPUs of this host's speed"
    )
    print("export CPUs | fp32 min | int8 min")
    for cpus in CPUS:
        fp32 = report["projection_s"]["fp32"][str(cpus)] / 60
        int8 = report["projection_s"]["int8"][str(cpus)] / 60
        print(f"{cpus:>11} | {fp32:8.1f} | {int8:8.1f}")


if __name__ == "__main__":
    main()
