"""`--cluster`: exports as Ray tasks, on a real local cluster in a loopback-only namespace.

One cluster (a head with no CPUs, two worker nodes of one CPU each) serves every case, its
steps in order (tests/cluster_harness.py): an export whose two programs are made one on each
node; a run during which one node is killed for real (SIGKILL of its raylet and workers while
one of them exports), which completes on the other; then a node whose executorch
differs from the driver's joins, and the next export is refused in one line naming it. The
retry and refusal logic is also driven step by step through a stand-in for Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_phone import BYTES_PER_MS, install_fake_phone

ray = pytest.importorskip("ray")

REPOSITORY = Path(__file__).resolve().parent.parent
HARNESS = REPOSITORY / "tests" / "cluster_harness.py"
ABLATE = str(Path(sys.executable).parent / "ablate")

SPEC = """\
name: two
base: mobilenet_v3_small
input: {resolution: 32}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: a
variants:
  a: {width: 0.25}
  b: {width: 0.25, se: false}
"""

# A node whose environment says executorch 0.0.1: a distribution's metadata found first on
# its path, as a different installed version would be.
FAKE_METADATA = "Metadata-Version: 2.1\nName: executorch\nVersion: 0.0.1\n"

# Two eager devices, one on each node: rounds slow enough (V3-Large at 384x384, about 0.1 s a
# round here) for a node to be killed between them well before the last (a node's rounds
# reach the driver within a quarter second), and a fixed number of them (the target is out of
# reach).
MATRIX_SPEC = """\
name: nodes
base: mobilenet_v3_large
input: {resolution: 384}
measure: {settle_s: 0, budget_s: 120, warmup_s: 0.1, min_rounds: 6, max_rounds: 40,
  target_ci: 0.00001}
baseline: a
variants:
  a: {}
  b: {se: false}
devices:
  - {device: eager, node: eager-a}
  - {device: eager, node: eager-b}
"""
KILL_AT_ROUND = 8
ROUNDS = 40

# A stand-in phone on each node (tests/fake_phone.py), each timing ONNX programs; the phone's
# times are a function of the program, so every median is known.
PHONES = ("FAKEA01", "FAKEB01")
PHONE_SPEC = f"""\
name: phones
base: mobilenet_v3_small
input: {{resolution: 32}}
measure: {{settle_s: 0, budget_s: 60, warmup_s: 0.1, min_rounds: 6, max_rounds: 6}}
baseline: a
variants:
  a: {{width: 0.25}}
  b: {{width: 0.25, se: false}}
devices:
  - {{device: onnxruntime, phone: {PHONES[0]}}}
  - {{device: onnxruntime, phone: {PHONES[1]}}}
"""

CLUSTER_TIMEOUT_S = 600


def _executorch() -> None:
    from ablate.measurement.backends import BACKENDS, module_available

    if not all(module_available(m) for m in BACKENDS.get("executorch").modules):
        pytest.skip("executorch not installed")


@pytest.fixture(scope="module")
def cluster_steps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _executorch()
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) make the loopback-only namespace")
    root = tmp_path_factory.mktemp("cluster")
    spec = root / "two.yaml"
    spec.write_text(SPEC)
    fake = root / "fake-site" / "executorch-0.0.1.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text(FAKE_METADATA)
    matrix = root / "matrix.yaml"
    matrix.write_text(MATRIX_SPEC)
    phones = root / "phones.yaml"
    phones.write_text(PHONE_SPEC)
    phone_env = []
    for serial in PHONES:
        added = install_fake_phone(root / f"phone-{serial}")
        path = f"{added.pop('PATH_PREFIX')}{os.pathsep}{os.environ['PATH']}"
        phone_env.append({**added, "PATH": path})
    lost = str(root / "matrices" / "*-matrix" / "eager-on-eager-b" / "*" / "journal.jsonl")
    plan = {
        "nodes": [
            {
                "cpus": 1,
                "resources": {"ablate-device:eager-a": 1, f"ablate-device:{PHONES[0]}": 1},
                "env": phone_env[0],
            },
            {
                "cpus": 1,
                "resources": {"ablate-device:eager-b": 1, f"ablate-device:{PHONES[1]}": 1},
                "env": phone_env[1],
            },
        ],
        "steps": [
            {
                "command": [
                    ABLATE, "export", str(spec), "--backend", "executorch",
                    "-o", str(root / "bundle"), "--cluster", "{address}",
                ],
                "env": {"ABLATE_CACHE_DIR": str(root / "cache-export")},
            },
            # A phone on each node, each driven by its own node.
            {
                "command": [
                    ABLATE, "run", str(phones), "--out", str(root / "phones"),
                    "--cluster", "{address}",
                ],
                "env": {"ABLATE_CACHE_DIR": str(root / "cache-phones")},
            },
            # A matrix device on each node; eager-b's node killed mid-measurement.
            {
                "command": [
                    ABLATE, "run", str(matrix), "--out", str(root / "matrices"),
                    "--cluster", "{address}",
                ],
                "env": {"ABLATE_NODE_WAIT_S": "3", "ABLATE_CACHE_DIR": str(root / "cache-m")},
                "kill_worker": {"index": 1, "when_lines": {"glob": lost, "lines": KILL_AT_ROUND}},
            },
            {"add_node": {"cpus": 1, "resources": {"ablate-device:eager-b": 1}}},
            {
                "command": [
                    ABLATE, "run", "--resume", f"glob:{root / 'matrices' / '*-matrix'}",
                    "--cluster", "{address}",
                ],
                "env": {"ABLATE_CACHE_DIR": str(root / "cache-m")},
            },
            {
                "command": [
                    ABLATE, "run", str(spec), "--backend", "executorch", "--quick",
                    "--out", str(root / "runs"), "--cluster", "{address}",
                ],
                "env": {"ABLATE_CACHE_DIR": str(root / "cache-kill")},
                "kill_worker": {"index": 2, "when_running": "ray::export_on_node"},
            },
            {"add_node": {"cpus": 1, "env": {"PYTHONPATH": str(fake.parent)}}},
            {
                "command": [
                    ABLATE, "export", str(spec), "--backend", "executorch",
                    "-o", str(root / "refused"), "--cluster", "{address}",
                ],
                "env": {"ABLATE_CACHE_DIR": str(root / "cache-refused")},
            },
        ],
    }  # fmt: skip
    (root / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(
        [
            "unshare", "-n", "sh", "-c",
            f'ip link set lo up && exec "{sys.executable}" "{HARNESS}" "{root / "plan.json"}"',
        ],
        capture_output=True,
        text=True,
        timeout=CLUSTER_TIMEOUT_S,
        cwd=REPOSITORY,
    )  # fmt: skip
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"root": root, "spec": spec, **report}


def _cache_programs(cache: Path) -> dict[str, bytes]:
    from ablate.measurement.export_cache import _read_header

    programs = {}
    for entry in sorted((cache / "exports").glob("*.export")):
        with entry.open("rb") as handle:
            size = entry.stat().st_size
            _, offset = _read_header(handle, size)
            handle.seek(offset)
            programs[entry.name] = handle.read()
    return programs


@pytest.mark.slow
def test_every_node_is_on_loopback(cluster_steps: dict[str, Any]) -> None:
    nodes = cluster_steps["nodes"]
    assert len(nodes) == 3
    assert {node["address"] for node in nodes} == {"127.0.0.1"}
    assert sorted(node["cpus"] for node in nodes) == [0.0, 1.0, 1.0]


@pytest.mark.slow
def test_exports_spread_over_both_nodes_and_match_a_local_export(
    cluster_steps: dict[str, Any], tmp_path: Path
) -> None:
    step = cluster_steps["steps"][0]
    assert step["returncode"] == 0, step["stderr"][-2000:]
    manifest = json.loads((cluster_steps["root"] / "bundle" / "manifest.json").read_text())
    records = [unit["runtime"] for unit in manifest["units"]]
    assert len(records) == 2
    worker_ids = {node["node_id"] for node in cluster_steps["nodes"] if node["cpus"] > 0}
    # One program on each node, each recorded with the node that made it.
    assert {record["exported_on"]["node_id"] for record in records} == worker_ids
    assert not any(record["export_cached"] for record in records)
    # The same programs, byte for byte, under the same keys, as this machine's own export.
    local = tmp_path / "cache-local"
    done = subprocess.run(
        [ABLATE, "export", str(cluster_steps["spec"]), "--backend", "executorch",
         "-o", str(tmp_path / "bundle")],
        capture_output=True, text=True, env={**_environment(), "ABLATE_CACHE_DIR": str(local)},
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    remote = _cache_programs(cluster_steps["root"] / "cache-export")
    assert len(remote) == 2
    assert remote == _cache_programs(local)


@pytest.mark.slow
def test_a_node_killed_while_exporting_costs_only_a_retry(cluster_steps: dict[str, Any]) -> None:
    step = cluster_steps["steps"][5]
    assert step["killed"] and step["busy_workers"], "the node was not killed mid-export"
    assert step["returncode"] == 0, step["stderr"][-2000:]
    from ablate.runs.schema import load_results

    results = load_results(Path(step["stdout"].strip().splitlines()[-1]))
    records = {variant.name: variant.runtime for variant in results.variants}
    assert set(records) == {"a", "b"} and all(records.values())
    # Both programs made on the node left: the killed node's export was tried again there.
    survivor = {node["node_id"] for node in cluster_steps["nodes"] if node["cpus"] > 0}
    made_on = {record.exported_on.node_id for record in records.values()}
    assert len(made_on) == 1 and made_on <= survivor
    assert made_on == {cluster_steps["workers"][0]}  # not the killed one (workers[2])
    assert all(record.exported_on.hostname for record in records.values())


@pytest.mark.slow
def test_a_matrix_device_on_each_node_survives_a_lost_node(cluster_steps: dict[str, Any]) -> None:
    from ablate.runs.matrix import load_device_results, load_matrix

    lost, resumed = cluster_steps["steps"][2], cluster_steps["steps"][4]
    assert lost["killed"], "eager-b's node was not killed mid-measurement"
    # The matrix went on without it: eager-a complete, eager-b interrupted, exit 1.
    assert lost["returncode"] == 1, lost["stderr"][-2000:]
    assert (
        "1 of 2 devices not complete: eager@eager-b (interrupted: device eager@eager-b: "
        in (lost["stderr"])
    )
    directory = next((cluster_steps["root"] / "matrices").glob("*-matrix"))
    # After --resume on a node that has the device again: complete, every round kept.
    assert resumed["returncode"] == 0, resumed["stderr"][-2000:]
    matrix = load_matrix(directory)
    assert [(d.name, d.node, d.status) for d in matrix.devices] == [
        ("eager@eager-a", "eager-a", "complete"),
        ("eager@eager-b", "eager-b", "complete"),
    ]
    loaded = dict((d.name, r) for d, r in load_device_results(matrix, directory))
    for name in ("eager@eager-a", "eager@eager-b"):
        results = loaded[name]
        assert results is not None and results.status == "complete"
        assert results.measurement is not None and results.measurement.rounds == ROUNDS
    run = matrix.run_directory(directory, matrix.devices[1])
    journal = (run / "journal.jsonl").read_text()
    kept = lost["file_at_kill"]
    assert lost["lines_at_kill"] >= KILL_AT_ROUND and kept.count("\n") == lost["lines_at_kill"]
    assert journal.startswith(kept)  # the rounds taken before the kill, as they were
    assert journal.count("\n") == ROUNDS


@pytest.mark.slow
def test_a_phone_on_each_node_is_driven_by_its_own_node(cluster_steps: dict[str, Any]) -> None:
    from ablate.runs.matrix import load_device_results, load_matrix

    pytest.importorskip("onnxruntime")
    step, root = cluster_steps["steps"][1], cluster_steps["root"]
    assert step["returncode"] == 0, step["stderr"][-2000:]
    directory = next((root / "phones").glob("*-matrix"))
    matrix = load_matrix(directory)
    assert [(d.name, d.status) for d in matrix.devices] == [
        (f"onnxruntime@{PHONES[0]}", "complete"),
        (f"onnxruntime@{PHONES[1]}", "complete"),
    ]
    loaded = dict((d.name, r) for d, r in load_device_results(matrix, directory))
    for serial in PHONES:
        results = loaded[f"onnxruntime@{serial}"]
        assert results is not None and results.status == "complete"
        assert results.measurement is not None
        assert results.measurement.device == f"phone {serial}"
        assert results.measurement.rounds == 6
        assert results.environment["measured_on_device"]["serial"] == serial
        assert results.environment["device_name"] == f'Pixel "Fake" {serial}'
        # The phone's node pushed the programs and ran the binary; its adb spoke to no other.
        phone = root / f"phone-{serial}"
        log = (phone / "adb.log").read_text().splitlines()
        assert log and all(line.startswith(f"{serial} ") for line in log)
        sizes = {path.stat().st_size for path in (phone / "phone-storage").glob("*.onnx")}
        medians = set()
        for variant in results.variants:
            assert variant.latency is not None
            medians.add(round(variant.latency.median_ms * BYTES_PER_MS))
        assert len(sizes) == 2 and medians == sizes


@pytest.mark.slow
def test_a_node_with_another_runtime_version_is_refused(cluster_steps: dict[str, Any]) -> None:
    step = cluster_steps["steps"][7]
    assert step["returncode"] == 2
    line = _one_line(step["stderr"])
    assert line.startswith("error: cluster node ")
    assert "refused: executorch 0.0.1 (the driver has " in line
    assert not (cluster_steps["root"] / "refused").exists()


def _one_line(stderr: str) -> str:
    """The one line of a refusal (exit 2): no traceback, nothing else on stderr but Ray's
    own warnings about the network, which its C++ core prints before ablate can silence it."""
    lines = [line for line in stderr.splitlines() if "network_util.cc" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- The pool's retries, through a stand-in for Ray -------------------------------------------


class _Reference:
    def __init__(self, result: Any) -> None:
        self.result = result


class _Exceptions:
    class RayError(Exception):
        pass


class _FakeRay:
    """Ray as far as the pool uses it: each task's outcome is the next of ``outcomes``."""

    exceptions = _Exceptions

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.launched: list[dict[str, Any]] = []

    def remote(self, function: Any) -> Any:
        fake = self

        class _Task:
            def options(self, **options: Any) -> Any:
                class _Bound:
                    def remote(self, *arguments: Any) -> _Reference:
                        fake.launched.append(options)
                        return _Reference(fake.outcomes.pop(0))

                return _Bound()

        return _Task()

    def wait(self, references: list[_Reference], num_returns: int) -> tuple[list[Any], list[Any]]:
        return references[:num_returns], references[num_returns:]

    def get(self, reference: _Reference) -> Any:
        if isinstance(reference.result, BaseException):
            raise reference.result
        return reference.result

    def cancel(self, reference: _Reference, force: bool) -> None:
        pass


class _FakeCluster:
    def __init__(self, ray: _FakeRay) -> None:
        self.ray = ray

    def export_cpus(self) -> int:
        return 2


def _exported(program: bytes, node: str) -> dict[str, Any]:
    import hashlib

    return {
        "status": "exported",
        "node": {"hostname": "lab-1", "node_id": node},
        "program": program,
        "sha256": hashlib.sha256(program).hexdigest(),
        "delegation": {"delegate": "XNNPACK", "delegated": {"aten.convolution.default": 1}},
        "seconds": 1.5,
    }


def _failed(node: str, error: str = "RuntimeError: lowering failed") -> dict[str, Any]:
    return {"status": "failed", "node": {"hostname": "lab-2", "node_id": node}, "error": error}


def _pool(outcomes: list[Any], tmp_path: Path) -> tuple[Any, _FakeRay]:
    _executorch()
    from ablate.cluster.exports import ClusterExportPool
    from ablate.measurement.backends import BACKENDS

    fake = _FakeRay(outcomes)
    pool = ClusterExportPool(
        _FakeCluster(fake), BACKENDS.get("executorch"), "fp32", cache_directory=tmp_path
    )  # type: ignore[arg-type]
    return pool, fake


def _tiny() -> tuple[Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), torch.randn(1, 3, 8, 8)


def test_a_failed_export_is_tried_elsewhere_and_stored_with_its_node(tmp_path: Path) -> None:
    from ablate.measurement.export_cache import read_entry

    exported = _exported(b"program-bytes", "node-b")
    pool, fake = _pool([_failed("node-a"), exported], tmp_path)
    model, image = _tiny()
    pool.submit(model, image, "a")
    pool.wait()
    assert len(fake.launched) == 2
    assert "scheduling_strategy" not in fake.launched[0]
    strategy = fake.launched[1]["scheduling_strategy"]
    assert strategy.hard == [] and len(strategy.soft) == 1  # prefer a node not yet tried
    assert [fake.launched[i]["num_cpus"] for i in (0, 1)] == [1, 1]
    (entry,) = (tmp_path / "exports").glob("*.export")
    from ablate.measurement.exporting import export_input
    from ablate.measurement.programs import export_key

    key = export_key(pool.runtime, model, export_input(image), "fp32")
    artifact = read_entry(entry, key)
    assert artifact is not None and artifact.program == b"program-bytes"
    assert (artifact.origin.hostname, artifact.origin.node_id) == ("lab-1", "node-b")
    assert pool.failed == 1 and pool.made_now(artifact)


def test_a_program_no_node_can_export_fails_naming_the_variant(tmp_path: Path) -> None:
    from ablate.cluster.connection import ClusterError

    died = _FakeRay.exceptions.RayError("The node running this task died")
    corrupted = _exported(b"abc", "node-c")
    corrupted["sha256"] = "0" * 64
    pool, fake = _pool([_failed("node-a"), died, corrupted], tmp_path)
    model, image = _tiny()
    pool.submit(model, image, "to:{se}")
    with pytest.raises(ClusterError) as raised:
        pool.wait()
    assert str(raised.value) == (
        "variant to:{se}: its program could not be exported on the cluster (3 attempts; last: "
        "the program's sha256 changed on its way)"
    )
    assert len(fake.launched) == 3
    assert not (tmp_path / "exports").exists() or not list((tmp_path / "exports").iterdir())


def test_a_node_that_differs_is_refused_mid_run(tmp_path: Path) -> None:
    from ablate.cluster.connection import ClusterError

    refused = {
        "status": "refused",
        "node": {"hostname": "lab-3", "node_id": "f" * 56},
        "error": "torch 2.12.0 (the driver has 2.13.0)",
    }
    pool, _ = _pool([refused], tmp_path)
    model, image = _tiny()
    pool.submit(model, image, "a")
    with pytest.raises(
        ClusterError,
        match=r"^cluster node lab-3 \(node ffffffffffff\) refused: "
        r"torch 2.12.0 \(the driver has 2.13.0\); its programs would not be",
    ):
        pool.wait()


def test_version_mismatch_names_every_difference() -> None:
    from ablate.cluster.connection import version_mismatch

    driver = {"ablate": "0.9.0", "torch": "2.13.0", "executorch": "1.5.1"}
    assert version_mismatch(dict(driver), driver) is None
    assert version_mismatch({"ablate": "0.9.0", "torch": "2.13.0"}, driver) == (
        "executorch absent (the driver has 1.5.1)"
    )
    assert version_mismatch({**driver, "torch": "2.12.0", "ablate": "0.8.0"}, driver) == (
        "ablate 0.8.0 (the driver has 0.9.0), torch 2.12.0 (the driver has 2.13.0)"
    )


def test_without_ray_the_cluster_option_says_what_to_install(monkeypatch: Any) -> None:
    from ablate.cluster.connection import ClusterError, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterError, match=r"pip install -e '\.\[cluster\]'"):
        import_ray()


def test_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    _executorch()
    spec = tmp_path / "two.yaml"
    spec.write_text(SPEC)
    done = subprocess.run(
        [ABLATE, "export", str(spec), "--backend", "executorch", "-o", str(tmp_path / "b"),
         "--cluster", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith(
        "error: --cluster 127.0.0.1:1: cannot join the Ray cluster ("
    )
    assert not (tmp_path / "b").exists()
