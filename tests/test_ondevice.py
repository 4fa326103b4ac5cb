"""On-device measurement: export a bundle, drive it through a fake adb, ingest the rounds."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import InputFileError
from ablate.measurement.clock import WarmupOutcome
from ablate.measurement.statistics import NoiseThresholds, summarise
from ablate.runs.entries import latency_entry
from ablate.runs.schema import Variant, load_results
from ablate.services.bundle_format import (
    BUNDLE_SCHEMA,
    DRIVER_FILES,
    LIST_NAME,
    Bundle,
    list_text,
    parse_timings,
    read_bundle,
    write_program,
)
from ablate.services.ingest import THERMAL_DRIFT, summarise_rounds, thermal_flag
from tests.fake_phone import FAKE_ADB, FAKE_GETPROP, adb_commands

# Two factors, four networks; 64x64 keeps export and timing to seconds.
SPEC = """\
name: phone
input: {resolution: 64}
measure: {backend: onnxruntime, budget_s: 600}
attribution:
  from: mobilenet_v2
  to: mobilenet_v3_small
  factors: [stem_channels, last_stage]
"""

# onnxruntime_perf_test's command line and output, timing with the bundle's host runner.
FAKE_PERF_TEST = """\
#!/bin/sh
runs=1
while [ $# -gt 1 ]; do
    case $1 in -r) runs=$2; shift ;; esac
    shift
done
ms=$("$FAKE_PYTHON" "$FAKE_BUNDLE/run_host.py" "$1" "$runs" | sed -n 's/^ablate-ms: //p')
echo "Session creation time cost: 0.01 s"
echo "Average inference time cost: $ms ms"
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The onnxruntime bundle of SPEC (the tests that time it skip without onnxruntime)."""
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("bundle")
    spec = root / "phone.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["export", str(spec), "--backend", "onnxruntime", "-o", str(root / "b")]
    )
    assert result.exit_code == 0, result.output
    return root / "b"


@pytest.fixture(scope="module")
def measured(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The driver run through the fake adb: timings.csv and device.json in the returned dir."""
    root = tmp_path_factory.mktemp("phone")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", FAKE_ADB)
    _script(bin_dir / "getprop", FAKE_GETPROP)
    perf_test = _script(root / "onnxruntime_perf_test", FAKE_PERF_TEST)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_ADB_LOG": str(root / "adb.log"),
        "FAKE_PYTHON": sys.executable,
        "FAKE_BUNDLE": str(bundle),
        "ANDROID_SERIAL": "FAKE0001",
        "BENCHMARK_BINARY": str(perf_test),
        "DEVICE_DIR": str(root / "device"),
        "OUT_DIR": str(root / "out"),
        "ROUNDS": "6",
        "MIN_ROUNDS": "6",
        "ITERATIONS": "2",
        "WARMUP": "1",
        "SEED": "7",
    }
    import subprocess

    completed = subprocess.run(
        ["sh", str(bundle / "measure.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(root / "out" / "timings.csv")
    return root


def test_the_bundle_holds_each_network_once_with_hashes_and_counts(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == BUNDLE_SCHEMA
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert "onnxruntime" in manifest["runtime_versions"]
    names = ["to:{}", "to:{stem_channels}", "to:{last_stage}", "to:{stem_channels,last_stage}"]
    assert [unit["name"] for unit in manifest["units"]] == names
    for unit in manifest["units"]:
        data = (bundle / unit["file"]).read_bytes()
        assert unit["file"].endswith(".onnx")
        assert hashlib.sha256(data).hexdigest() == unit["sha256"]
        assert unit["input_shape"] == [1, 3, 64, 64]
    counts = {variant["name"]: Variant.model_validate(variant) for variant in manifest["variants"]}
    assert list(counts) == names and all(v.measured_as == v.name for v in counts.values())
    # V2's stem at 64x64: a 3x3 conv, 3 -> 32 channels, stride 2: 32 x 32 x 32 x 27 MACs.
    assert counts["to:{}"].blocks[0].name == "stem"
    assert counts["to:{}"].blocks[0].macs == 32 * 32 * 32 * 27
    assert counts["to:{stem_channels}"].blocks[0].macs == 32 * 32 * 16 * 27
    assert os.access(bundle / "measure.sh", os.X_OK)
    assert (bundle / "run_host.py").is_file()
    # The driver's list: id, file, its sha256 and the unit's name as one CSV field (it holds
    # commas).
    hashes = [unit["sha256"] for unit in manifest["units"]]
    assert (bundle / "variants.txt").read_text().splitlines() == [
        f"v000\tmodels/v000.onnx\t{hashes[0]}\tto:{{}}",
        f"v001\tmodels/v001.onnx\t{hashes[1]}\tto:{{stem_channels}}",
        f"v002\tmodels/v002.onnx\t{hashes[2]}\tto:{{last_stage}}",
        f'v003\tmodels/v003.onnx\t{hashes[3]}\t"to:{{stem_channels,last_stage}}"',
    ]
    # Every file the driver reads or runs, with its sha256.
    assert sorted(manifest["files"]) == sorted(DRIVER_FILES)
    for name, sha256 in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == sha256
    # Its defaults, from SPEC: no round cap (60), 20 minimum rounds, a 600 s budget, seed 0.
    settings = dict(
        line.split("=", 1)
        for line in (bundle / "bundle.env").read_text().splitlines()
        if not line.startswith("#")
    )
    assert len(settings["BUNDLE_ID"]) == 12
    defaults = {key: settings[f"BUNDLE_{key}"] for key in ("ROUNDS", "MIN_ROUNDS", "BUDGET_S")}
    assert defaults == {"ROUNDS": "60", "MIN_ROUNDS": "20", "BUDGET_S": "600"}
    assert settings["BUNDLE_SEED"] == "0"
    # Values as they are: the driver reads them as data, never runs them.
    assert settings["BUNDLE_BINARY_HINT"].startswith("onnxruntime_perf_test, ")
    assert settings["BUNDLE_PYTHON"] == sys.executable
    assert "{model}" in settings["BUNDLE_BENCHMARK_ARGS"]


# Slow: the driver times a bundle for 8 s; tests/test_phone_live.py drives a stand-in phone
# in the fast suite.
@pytest.mark.slow
def test_the_driver_pushes_times_in_seeded_orders_and_records_the_device(
    bundle: Path, measured: Path
) -> None:
    log = adb_commands(measured / "adb.log")
    device = measured / "device"
    assert (device / "benchmark").is_file()
    for unit in json.loads((bundle / "manifest.json").read_text())["units"]:
        assert (device / unit["file"]).read_bytes() == (bundle / unit["file"]).read_bytes()
    timed = [line for line in log if line.startswith("shell") and "-r 2" in line]
    assert len(timed) == 6 * 4 and all("-x 1 -y 1" in line for line in timed)
    with (measured / "out" / "timings.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    orders = [[row["variant"] for row in rows if row["round"] == str(r)] for r in range(6)]
    assert {tuple(order) for order in orders} != {tuple(orders[0])}  # a fresh order per round
    for r, order in enumerate(orders):
        positions = [row["position"] for row in rows if row["round"] == str(r)]
        assert positions == ["0", "1", "2", "3"] and len(set(order)) == 4
    record = json.loads((measured / "out" / "device.json").read_text())
    assert record["mode"] == "adb" and record["serial"] == "FAKE0001"
    assert record["model"] == 'Pixel "Fake" FAKE0001' and record["operating_system"] == "Android 15"
    assert record["soc"] == "Tensor-G4" and record["rounds"] == 6
    assert record["stop_reason"] == "max_rounds" and record["iterations"] == 2
    assert {row["session"] for row in rows} == {record["session"]}


@pytest.mark.slow
def test_the_same_seed_draws_the_same_orders(bundle: Path, tmp_path: Path) -> None:
    """The host mode (no adb), one host runner per session: orders are a function of seed and
    round, and each session has its own id, on every row and in its record."""
    import subprocess

    orders, sessions = [], []
    for name in ("a", "b"):
        environment = {
            **os.environ,
            "ABLATE_MODE": "host",
            "OUT_DIR": str(tmp_path / name),
            "ROUNDS": "8",
            "MIN_ROUNDS": "6",
            "SEED": "3",
            "ITERATIONS": "1",
            "WARMUP": "1",
        }
        completed = subprocess.run(
            ["sh", str(bundle / "measure.sh")], env=environment, capture_output=True, text=True
        )
        assert completed.returncode == 0, completed.stderr
        with (tmp_path / name / "timings.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 8 * 4 and all(float(row["milliseconds"]) > 0 for row in rows)
        orders.append([(row["round"], row["variant"], row["position"]) for row in rows])
        record = json.loads((tmp_path / name / "device.json").read_text())
        assert record["mode"] == "host" and record["rounds"] == 8
        assert record["binary"] == "run_host.py" and record["stop_reason"] == "max_rounds"
        assert {row["session"] for row in rows} == {record["session"]}
        sessions.append(record["session"])
    assert orders[0] == orders[1]
    assert sessions[0] != sessions[1]


# Slow: the driver times a bundle for 8 s; tests/test_phone_live.py drives a stand-in phone
# in the fast suite.
@pytest.mark.slow
def test_ingest_makes_a_complete_run_with_the_same_statistics_and_an_attribution(
    bundle: Path, measured: Path, tmp_path: Path
) -> None:
    timings = measured / "out" / "timings.csv"
    result = CliRunner().invoke(
        app,
        ["ingest", str(bundle), str(timings), "--out", str(tmp_path), "--device-name", "Fake 9"],
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    results = load_results(directory)
    assert results.status == "complete"
    assert results.measurement is not None
    assert results.measurement.rounds == 6 and results.measurement.device == "Fake 9"
    assert results.environment["operating_system"] == "Android 15"
    assert results.environment["measured_on_device"]["model"] == 'Pixel "Fake" FAKE0001'

    # The same rounds, read here with the csv module, fed to summarise directly.
    samples: dict[str, list[float]] = {}
    with timings.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["round"]))
    for row in rows:
        samples.setdefault(row["variant"], []).append(float(row["milliseconds"]) / 1e3)
    warmups = {
        name: WarmupOutcome(1, True, 2, float(np.median(values)))
        for name, values in samples.items()
    }
    direct = summarise(
        samples,
        baseline="to:{}",
        target_ci=0.01,
        warmups=warmups,
        thresholds=NoiseThresholds(),
        seed=0,
    )
    for expected in direct:
        latency = results.variant(expected.name).latency
        assert latency == latency_entry(expected)

    journal = [json.loads(line) for line in (directory / "journal.jsonl").read_text().splitlines()]
    assert [entry["round"] for entry in journal] == list(range(6))
    assert journal[0]["seconds"]["to:{}"] == samples["to:{}"][0]

    attribution = results.attribution
    assert attribution is not None
    assert [effect.label for effect in attribution.shapley] == ["stem_channels", "last_stage"]
    shapley_ms = sum(effect.latency.ms for effect in attribution.shapley)  # type: ignore[union-attr]
    assert attribution.total.latency is not None
    assert shapley_ms == pytest.approx(attribution.total.latency.ms)
    # The total is the median V3 path time minus V2's, from the same rounds.
    to_v3 = np.median(samples["to:{stem_channels,last_stage}"]) * 1e3
    assert attribution.to_values.latency is not None
    assert attribution.to_values.latency.ms == pytest.approx(to_v3)

    report = CliRunner().invoke(app, ["report", str(directory), "--markdown", "-o", "-"])
    assert report.exit_code == 0, report.output
    assert "Fake 9" in report.output


def test_thermal_drift_is_flagged_when_later_rounds_are_slower() -> None:
    rounds = 30
    rising = [0.010 * (1 + 0.01 * index) for index in range(rounds)]
    samples = {"a": rising, "b": [value * 1.2 for value in rising]}
    results = summarise_rounds(
        samples, baseline="a", target_ci=0.01, seed=0, iterations=1, warmup_runs=0
    )
    assert "drift" in results[0].flag_names()
    flag = thermal_flag(results[0], (31.0, 44.0))
    assert flag is not None and flag.name == THERMAL_DRIFT
    assert flag.detail.startswith("later rounds slower (31 °C -> 44 °C)")
    # The ratio did not move: pairing kept the comparison sound.
    assert "ratio_drift" not in results[1].flag_names()
    falling = {"a": rising[::-1], "b": [value * 1.2 for value in rising[::-1]]}
    cooled = summarise_rounds(
        falling, baseline="a", target_ci=0.01, seed=0, iterations=1, warmup_runs=0
    )
    assert "drift" in cooled[0].flag_names() and thermal_flag(cooled[0], (None, None)) is None
    steady = {"a": [0.01] * rounds, "b": [0.012] * rounds}
    flat = summarise_rounds(
        steady, baseline="a", target_ci=0.01, seed=0, iterations=1, warmup_runs=0
    )
    assert thermal_flag(flat[0], (None, None)) is None


# -- bad input -----------------------------------------------------------------------------

HEADER = "round,variant,milliseconds,position,session\n"


def _rows(rounds: int = 6, a: str = "1.5", b: str = "2.0") -> str:
    return "".join(f'{r},a,{a},0,S\n{r},"b,2",{b},1,S\n' for r in range(rounds))


def driver_files(directory: Path, units: list[dict]) -> dict[str, str]:
    """Stand-ins for the driver's files beside hand-made `units`, the list the manifest's
    units make; their sha256 by name, the manifest's `files`."""
    texts = {name: f"# {name} of a test bundle\n" for name in DRIVER_FILES}
    texts[LIST_NAME] = list_text(units)
    for name, text in texts.items():
        (directory / name).write_text(text)
    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    """A bundle of two one-line 'models' with their real hashes (enough for the checks)."""
    directory = tmp_path / "small"
    directory.mkdir()
    units = [
        write_program(
            directory,
            index,
            name=name,
            variants=[name],
            suffix=".onnx",
            program=f"model {name}".encode(),
            input_shape=(1, 3, 8, 8),
            precision="fp32",
            runtime=None,
        )
        for index, name in enumerate(("a", "b,2"))
    ]
    assert [unit["file"] for unit in units] == ["models/v000.onnx", "models/v001.onnx"]
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "backend": "onnxruntime",
        "precision": "fp32",
        "spec": {"name": "x"},
        "spec_text": "name: x\n",
        "baseline": "a",
        "units": units,
        "variants": [],
        "files": driver_files(directory, units),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _parse(bundle: Path, tmp_path: Path, text: str) -> str:
    path = tmp_path / "timings.csv"
    path.write_text(text)
    with pytest.raises(InputFileError) as error:
        parse_timings(path, read_bundle(bundle))
    return str(error.value).replace(str(path), "T")


def test_a_good_timings_file_parses_to_seconds_and_orders(
    small_bundle: Path, tmp_path: Path
) -> None:
    path = tmp_path / "timings.csv"
    # Rows of a round in any order; the variant column holds the names, as measure.sh writes.
    path.write_text(HEADER + "".join(f'{r},"b,2",2.0,0,S\n{r},a,1.5,1,S\n' for r in range(6)))
    rounds = parse_timings(path, read_bundle(small_bundle))
    samples = rounds.samples()
    assert list(samples) == ["a", "b,2"]
    assert samples["a"].tolist() == [0.0015] * 6 and samples["b,2"].tolist() == [0.002] * 6
    assert rounds.orders() == [["b,2", "a"]] * 6


TIME_RULE = "must be a positive finite time, 1e-06 ms (1 ns) to 3.6e+06 ms (1 h)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEADER + _rows() + "6,c,1.0,0,S\n",
            "T:14: variant: unknown variant 'c' (not in the bundle); valid: a, b,2",
        ),
        (
            HEADER + _rows() + "6,a,1.0,0,S\n",
            "T:14: round 6 lacks 'b,2': every round must time every variant",
        ),
        (HEADER + _rows(a="fast"), "T:2: milliseconds is not a number (got 'fast')"),
        (HEADER + _rows(a="-1.5"), f"T:2: milliseconds {TIME_RULE} (got '-1.5')"),
        (HEADER + _rows(a="0"), f"T:2: milliseconds {TIME_RULE} (got '0')"),
        (HEADER + _rows(b="nan"), f"T:3: milliseconds {TIME_RULE} (got 'nan')"),
        (HEADER + _rows(b="inf"), f"T:3: milliseconds {TIME_RULE} (got 'inf')"),
        (
            HEADER + _rows(5),
            "T: 5 complete rounds; at least 6 are needed for a 95% interval of a median",
        ),
        (HEADER + _rows() + "0,a,1.0,2,S\n", "T:14: variant 'a' timed twice in round 0"),
        (
            HEADER + _rows() + "6,a,1.0,0,S2\n",
            "T:14: session 'S2', not 'S' as on line 2: a timings file holds the rows of one "
            "session",
        ),
        (
            "round,name,ms\n" + _rows(),
            "T:1: header is 'round,name,ms', expected round,variant,milliseconds,position,session",
        ),
        (HEADER + "x,a,1.0,0,S\n", "T:2: round must be a whole number >= 0 (got 'x')"),
        (HEADER + "0,a,1.0,0\n", "T:2: expected 5 fields, got 4"),
        ("", "T: empty; expected a header round,variant,milliseconds,position,session"),
    ],
)
def test_every_bad_timings_file_names_the_line_and_the_problem(
    small_bundle: Path, tmp_path: Path, text: str, message: str
) -> None:
    assert _parse(small_bundle, tmp_path, text) == message


def test_a_changed_model_file_or_another_schema_is_refused(
    small_bundle: Path, tmp_path: Path
) -> None:
    (small_bundle / "models" / "v001.onnx").write_bytes(b"tampered")
    with pytest.raises(InputFileError, match=r"v001\.onnx: sha256 differs from manifest\.json"):
        read_bundle(small_bundle)
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    manifest["schema"] = "ablate.bundle/0"
    (small_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        InputFileError,
        match=r"manifest\.json: schema: unsupported schema "
        r"'ablate\.bundle/0'.*valid: ablate\.bundle/2",
    ):
        read_bundle(small_bundle)
    (small_bundle / "models" / "v000.onnx").unlink()
    manifest["schema"] = BUNDLE_SCHEMA
    (small_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputFileError, match=r"v000\.onnx: missing from the bundle"):
        read_bundle(small_bundle)


@pytest.mark.parametrize(
    "text",
    [HEADER + _rows() + "6,c,1.0,0,S\n", HEADER + _rows(a="nan"), HEADER + _rows(3)],
)
def test_ingest_of_bad_input_is_one_line_exit_2_and_writes_nothing(
    small_bundle: Path, tmp_path: Path, text: str
) -> None:
    timings = tmp_path / "timings.csv"
    timings.write_text(text)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["ingest", str(small_bundle), str(timings), "--out", str(out)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(f"error: {timings}:")
    assert not out.exists()


def test_export_refuses_before_writing(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "b"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["export", str(spec), "--backend", "onnxruntime", "--precision", "int8", "-o", str(out)],
    )
    assert result.exit_code == 2 and "measures fp32 only" in result.output
    result = runner.invoke(app, ["export", str(spec), "--backend", "eager", "-o", str(out)])
    assert result.exit_code == 2
    assert "cannot export for 'eager'; valid: onnxruntime, executorch, litert" in result.output
    out.mkdir()
    (out / "keep").write_text("x")
    result = runner.invoke(app, ["export", str(spec), "--backend", "onnxruntime", "-o", str(out)])
    assert result.exit_code == 2 and "already exists and is not an empty directory" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b", "s.yaml"]


def test_bundle_unit_names_follow_the_manifest() -> None:
    bundle = Bundle(Path("."), {"units": [{"name": "x"}, {"name": "y"}], "baseline": "x"})
    assert bundle.unit_names == ["x", "y"] and bundle.baseline == "x"


def test_a_bundle_reads_its_manifest_for_ingest() -> None:
    record = {"runtime": "executorch", "precision": "int8"}
    units = [
        {"id": "v000", "name": "x", "input_shape": [4, 3, 8, 8], "runtime": None},
        {"id": "v001", "name": "y", "input_shape": [4, 3, 8, 8], "runtime": record},
    ]
    manifest = {"backend": "executorch", "precision": "int8", "spec_text": "name: s\n"}
    bundle = Bundle(Path("."), {**manifest, "spec": {"name": "s"}, "units": units, "variants": []})
    assert (bundle.backend, bundle.precision, bundle.batch) == ("executorch", "int8", 4)
    assert bundle.runtimes == {"y": record}  # only where the exporter made a program record
    assert bundle.spec_text == "name: s\n" and bundle.resolved_spec == {"name": "s"}
    # Keys that older bundles may lack read as absent.
    assert bundle.spec_label == "bundle spec" and bundle.runtime_versions == {}
    assert bundle.ablate_version is None and bundle.weights is None


@pytest.mark.parametrize("key", ["spec", "spec_text", "units", "variants"])
def test_a_manifest_missing_a_key_ingest_reads_is_refused(small_bundle: Path, key: str) -> None:
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    del manifest[key]
    (small_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputFileError, match=rf"manifest\.json: {key}: missing$"):
        read_bundle(small_bundle)


# -- the mobile runtimes' bundles, through their own benchmark binaries' command lines ----------

# executor_runner's flags (gflags) and its summary line, as examples/portable/executor_runner
# prints them; the time comes from the bundle's host runner on the .pte.
FAKE_EXECUTOR_RUNNER = """\
#!/bin/sh
for argument; do
    case $argument in
        --model_path=*) model=${argument#--model_path=} ;;
        --num_executions=*) runs=${argument#--num_executions=} ;;
        --cpu_threads=1) ;;
        *) echo "ERROR: unknown command line flag '$argument'" >&2; exit 1 ;;
    esac
done
ms=$("$FAKE_PYTHON" "$FAKE_BUNDLE/run_host.py" "$model" "$runs" | sed -n 's/^ablate-ms: //p')
total=$(awk -v ms="$ms" -v runs="$runs" 'BEGIN { printf "%f", ms * runs }')
echo "I 00:00:00.100 executorch:executor_runner.cpp:300] Model loaded in 1.5 ms."
printf 'I 00:00:00.200 executorch:executor_runner.cpp:420] Model executed successfully %s %s\n' \\
    "$runs" "time(s) in $total ms."
"""
# benchmark_model's flags and its timing line (microseconds).
FAKE_BENCHMARK_MODEL = """\
#!/bin/sh
for argument; do
    case $argument in
        --graph=*) model=${argument#--graph=} ;;
        --num_runs=*) runs=${argument#--num_runs=} ;;
        --num_threads=1 | --warmup_runs=1 | --min_secs=0 | --warmup_min_secs=0) ;;
        --use_xnnpack=true) ;;
        *) echo "ERROR: unknown flag $argument" >&2; exit 1 ;;
    esac
done
ms=$("$FAKE_PYTHON" "$FAKE_BUNDLE/run_host.py" "$model" "$runs" | sed -n 's/^ablate-ms: //p')
us=$(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms * 1000 }')
printf 'Inference timings in us: Init: 9000, First inference: 5000, %s\n' \\
    "Warmup (avg): $us, Inference (avg): $us"
"""
TWO_VARIANT_SPEC = """\
name: phone-{backend}
base: mobilenet_v3_small
input: {{resolution: 64}}
measure: {{budget_s: 600}}
baseline: se
variants:
  se: {{width: 0.35}}
  no_se: {{width: 0.35, se: false}}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "binary", "script", "flag"),
    [
        ("executorch", "executor_runner", FAKE_EXECUTOR_RUNNER, "--cpu_threads=1"),
        ("litert", "benchmark_model", FAKE_BENCHMARK_MODEL, "--num_threads=1"),
    ],
)
def test_a_mobile_runtime_bundle_runs_through_its_benchmark_binary(
    backend: str, binary: str, script: str, flag: str, tmp_path: Path
) -> None:
    """Export, the driver through fake adb and the runtime's own binary, ingest."""
    from ablate.measurement.backends import BACKENDS

    for module in BACKENDS.get(backend).modules:
        pytest.importorskip(module)
    import subprocess

    spec = tmp_path / "phone.yaml"
    spec.write_text(TWO_VARIANT_SPEC.format(backend=backend))
    exported = CliRunner().invoke(
        app, ["export", str(spec), "--backend", backend, "-o", str(tmp_path / "b")]
    )
    assert exported.exit_code == 0, exported.output
    bundle = tmp_path / "b"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [unit["file"].rsplit(".", 1)[1] for unit in manifest["units"]] == [
        {"executorch": "pte", "litert": "tflite"}[backend]
    ] * 2
    for unit in manifest["units"]:
        assert unit["runtime"]["runtime"] == backend and unit["runtime"]["precision"] == "fp32"
        delegation = unit["runtime"]["delegation"]
        assert sum(delegation["delegated"].values()) > 0
        data = (bundle / unit["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == unit["sha256"]

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", FAKE_ADB)
    _script(bin_dir / "getprop", FAKE_GETPROP)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_ADB_LOG": str(tmp_path / "adb.log"),
        "FAKE_PYTHON": sys.executable,
        "FAKE_BUNDLE": str(bundle),
        "ANDROID_SERIAL": "FAKE0002",
        "BENCHMARK_BINARY": str(_script(tmp_path / binary, script)),
        "DEVICE_DIR": str(tmp_path / "device"),
        "OUT_DIR": str(tmp_path / "out"),
        "ROUNDS": "6",
        "MIN_ROUNDS": "6",
        "ITERATIONS": "2",
        "WARMUP": "1",
    }
    completed = subprocess.run(
        ["sh", str(bundle / "measure.sh")], env=environment, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    timed = [
        line
        for line in adb_commands(tmp_path / "adb.log")
        if line.startswith("shell") and "/benchmark' --" in line  # the pushed binary, run
    ]
    assert timed and all(flag in line for line in timed)

    ingested = CliRunner().invoke(
        app, ["ingest", str(bundle), str(tmp_path / "out" / "timings.csv"), "--out", str(tmp_path)]
    )
    assert ingested.exit_code == 0, ingested.output
    results = load_results(Path(ingested.output.strip().splitlines()[-1]))
    assert results.status == "complete" and results.measurement is not None
    assert results.measurement.rounds == 6
    assert all(variant.latency is not None for variant in results.variants)
    assert all(
        variant.runtime is not None and variant.runtime.runtime == backend
        for variant in results.variants
    )
    no_se = results.variant("no_se")
    assert no_se.latency is not None and no_se.latency.ratio_to_baseline is not None
    assert no_se.macs < results.variant("se").macs
