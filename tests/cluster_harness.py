"""A local Ray cluster for the cluster tests and benchmark, in a network namespace of its own.

    unshare -n sh -c 'ip link set lo up && python tests/cluster_harness.py PLAN.json'

Inside the namespace the only interface is loopback, so every node registers at 127.0.0.1
and nothing leaves the machine. The plan (JSON) says which worker nodes to start (CPUs, extra
environment) and the steps, in order: a command to run against the cluster (its
``{address}`` replaced by the cluster's address, a ``glob:PATTERN`` part by the last path
that matches), or a node to add. A command's step may kill a worker node while the command
runs, as soon as one of that node's Ray workers is running a given task (Ray titles a busy
worker ``ray::TASK``) or a file has so many lines: SIGKILL of its raylet and workers
(`Cluster.remove_node(allow_graceful=False)`). The harness prints one JSON object:
the nodes (id, address, CPUs) and each step's exit status and output. Health checks are
short, so that a lost node is noticed in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# A lost node is declared dead after about a second instead of Ray's default 30 s.
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


def _children_titled(parent: int, title: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent_of = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent_of == parent and command.startswith(title):
            found.append(int(entry))
    return found


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _lines(pattern: str) -> int:
    import glob

    found = sorted(glob.glob(pattern))
    return Path(found[-1]).read_bytes().count(b"\n") if found else 0


def _kill_when(cluster: Any, node: Any, kill: dict[str, Any], seen: dict[str, Any]) -> None:
    """SIGKILL of ``node`` once a worker of its raylet runs a ``when_running`` task, or once
    the file ``when_lines["glob"]`` matches has ``when_lines["lines"]`` lines."""
    raylet = _raylet_pid(node)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if "when_running" in kill:
            busy = _children_titled(raylet, kill["when_running"])
            seen["busy_workers"] = busy
            ready = bool(busy)
        else:
            seen["lines_at_kill"] = _lines(kill["when_lines"]["glob"])
            ready = seen["lines_at_kill"] >= kill["when_lines"]["lines"]
            if ready:
                import glob

                journal = Path(sorted(glob.glob(kill["when_lines"]["glob"]))[-1])
                seen["file_at_kill"] = journal.read_bytes().decode()
        if ready:
            cluster.remove_node(node, allow_graceful=False)
            seen["killed"] = True
            return
        time.sleep(0.05)
    seen["killed"] = False


def _expanded(part: str, address: str) -> str:
    """``{address}``: the cluster's; ``glob:PATTERN``: the last path that matches."""
    import glob

    if part.startswith("glob:"):
        found = sorted(glob.glob(part.removeprefix("glob:")))
        return found[-1] if found else part
    return part.replace("{address}", address)


def main(plan_path: str) -> int:
    # On a loaded 2-core machine a raylet can take longer than Ray's 10 s to register.
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "60")
    import ray
    from ray.cluster_utils import Cluster

    plan = json.loads(Path(plan_path).read_text())
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "_system_config": SYSTEM_CONFIG,
        },
    )
    report: dict[str, Any] = {"steps": []}
    try:
        workers = []
        for node in plan["nodes"]:
            workers.append(
                cluster.add_node(
                    num_cpus=node.get("cpus", 1),
                    resources=node.get("resources", {}),
                    env_vars=node.get("env", {}),
                )
            )
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        report["nodes"] = [
            {
                "node_id": entry["NodeID"],
                "address": entry["NodeManagerAddress"],
                "cpus": entry["Resources"].get("CPU", 0.0),
            }
            for entry in ray.nodes()
            if entry["Alive"]
        ]
        report["workers"] = [worker.node_id for worker in workers]
        ray.shutdown()
        for step in plan["steps"]:
            if "add_node" in step:
                node = step["add_node"]
                workers.append(
                    cluster.add_node(
                        num_cpus=node.get("cpus", 1),
                        resources=node.get("resources", {}),
                        env_vars=node.get("env", {}),
                    )
                )
                cluster.wait_for_nodes()
                report["steps"].append({"added": workers[-1].node_id})
                continue
            command = [_expanded(part, cluster.address) for part in step["command"]]
            started = time.monotonic()
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **step.get("env", {})},
            )
            kill = step.get("kill_worker")
            killer, seen = None, {}
            if kill is not None:
                killer = threading.Thread(
                    target=_kill_when, args=(cluster, workers[kill["index"]], kill, seen)
                )
                killer.start()
            stdout, stderr = process.communicate(timeout=step.get("timeout_s", 240))
            if killer is not None:
                killer.join()
            report["steps"].append(
                {
                    "returncode": process.returncode,
                    "stdout": stdout,
                    "stderr": stderr,
                    "seconds": time.monotonic() - started,
                    **seen,
                }
            )
    finally:
        cluster.shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
