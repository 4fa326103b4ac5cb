"""Per-op profiles from a phone: the driver's profile pass, the three binaries' profile files
read back as kernel times, and ingest's checks on them (issue 27)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import AblateError, InputFileError
from ablate.measurement.backends import BACKENDS
from ablate.measurement.host_backends import onnxruntime_profile_file
from ablate.measurement.kernels import KernelClass, KernelEvent
from ablate.measurement.runtimes.litert import benchmark_model_profile_events, tflite_kernel_class
from ablate.runs.schema import load_results
from ablate.services.bundle_format import (
    DEVICE_SCHEMA,
    DriverSettings,
    _settings_text,
    read_device_record,
)

C = KernelClass
RUN_HOST = Path(__file__).parents[1] / "ablate" / "services" / "bundle_files" / "run_host.py"

# -- benchmark_model's op-profiling CSV -------------------------------------------------------
#
# Laid out as tensorflow/lite/tools/benchmark/profiling_listener.cc writes the file and
# StatsCalculator::GetOutputString formats each section with format_as_csv
# (third_party/xla/xla/tsl/util/stats_calculator.cc; tensorflow/core/util before): a Run
# Order table, `node type, first, avg_ms, %, cdf%, mem KB, times called, name`, then the
# other tables and "Timings (microseconds): count=N". The XNNPACK delegate's operators are
# rows named `Delegate/<operator>:<n>` (profiling/profile_summarizer.cc), a name's commas
# written as tabs; the DELEGATE node that holds them has a row of its own.
XNNPACK_PROFILE = """\
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
ModifyGraphWithDelegate, 6.348, 6.348, 55.64%, 55.64%, 7148, 1, ModifyGraphWithDelegate/0
AllocateTensors, 5.061, 5.061, 44.36%, 100%, 10292, 1, AllocateTensors/0

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 1.3, 1.25, 50%, 50%, 0, 1, [StatefulPartitionedCall:0]:12
Convolution (NHWC, F32) IGEMM, 0.5, 0.4, 16%, 66%, 0, 1, Delegate/Convolution (NHWC\tF32) IGEMM:0
HardSwish (NC), 0.1, 0.05, 2%, 68%, 0, 1, Delegate/HardSwish (NC):1
Convolution (NHWC, F32) DWConv, 0.2, 0.15, 6%, 74%, 0, 1, Delegate/Convolution (NHWC\tF32) DWConv:2
Mean (ND) Reduce2, 0.03, 0.02, 0.8%, 74.8%, 0, 1, Delegate/Mean (ND) Reduce2:3
Fully Connected (NC, F32) GEMM, 0.3, 0.25, 20%, 95%, 0, 2, Delegate/Fully Connected (NC\tF32) GEMM:4
Transpose (ND, X32), 0.01, 0.005, 0.2%, 95.2%, 0, 1, Delegate/Transpose (ND\tX32):5
SOFTMAX, 0.02, 0.02, 0.8%, 95.8%, 0, 1, [Identity]:13

============================== Top by Computation Time ==============================
node type, first, avg_ms, %, cdf%, mem KB, times called, name
TfLiteXNNPackDelegate, 1.3, 1.25, 50%, 50%, 0, 1, [StatefulPartitionedCall:0]:12

Number of nodes executed: 8
============================== Summary by node type ==============================
node type, count, avg_ms, avg %, cdf %, mem KB, times called
TfLiteXNNPackDelegate, 1, 1.25, 50%, 50%, 0, 1

Timings (microseconds): count=50 first=1320 curr=1270 min=1250 max=1400 avg=1275 std=30
Memory (bytes): count=0
8 nodes observed
"""

# An older build: a `start` column, no delegate (TFLite's own kernels), names with commas.
BUILTIN_PROFILE = """\
Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
CONV_2D, 0.066, 0.9, 0.8, 40%, 40%, 0, 1, [MobilenetV3/Conv/hard_swish]:0
HARD_SWISH, 0.9, 0.2, 0.1, 5%, 45%, 0, 1, [MobilenetV3/Conv/hard_swish/mul_1]:1
DEPTHWISE_CONV_2D, 1.0, 0.3, 0.25, 12.5%, 57.5%, 0, 1, [MobilenetV3/expanded_conv/depthwise]:2
MEAN, 1.3, 1e-05, 2e-05, 0.001%, 57.501%, 0, 1, [MobilenetV3/expanded_conv/squeeze_excite/AvgPool]:3
LOGISTIC, 1.3, 0.01, 0.01, 0.5%, 58.001%, 0, 1, [a, b]:4
MUL, 1.31, 0.02, 0.03, 1.5%, 59.501%, 0, 2, [MobilenetV3/expanded_conv/squeeze_excite/Mul]:5
ADD, 1.35, 0.02, 0.02, 1%, 60.501%, 0, 1, [MobilenetV3/expanded_conv/add]:6
AVERAGE_POOL_2D, 1.4, 0.05, 0.05, 2.5%, 63.001%, 0, 1, [MobilenetV3/AvgPool]:7
FULLY_CONNECTED, 1.45, 0.3, 0.3, 15%, 78.001%, 0, 1, [MobilenetV3/Logits]:8
DELEGATE, 1.75, 0.2, 0.2, 10%, 88.001%, 0, 1, [MobilenetV3/rest]:9
"""


def _write(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_benchmark_model_profile_gives_the_delegates_operators_in_order(tmp_path: Path) -> None:
    events, runs = benchmark_model_profile_events(_write(tmp_path, XNNPACK_PROFILE))
    # The DELEGATE node (TfLiteXNNPackDelegate) is left out: its operators are listed; the
    # operators' names get their commas back; the GEMM called twice a run counts twice.
    assert events == [
        KernelEvent("Convolution (NHWC, F32) IGEMM", 0.4, True, C.CONV),
        KernelEvent("HardSwish (NC)", 0.05, True, C.HARDSWISH),
        KernelEvent("Convolution (NHWC, F32) DWConv", 0.15, True, C.DEPTHWISE),
        KernelEvent("Mean (ND) Reduce2", 0.02, True, C.MEAN),
        KernelEvent("Fully Connected (NC, F32) GEMM", 0.5, True, C.GEMM),
        KernelEvent("Transpose (ND, X32)", 0.005, True, C.LAYOUT),
        KernelEvent("SOFTMAX", 0.02, False, C.OTHER),
    ]
    assert runs == 50  # from the regular runs' "Timings (microseconds): count=50"


def test_benchmark_model_profile_of_tflites_own_kernels(tmp_path: Path) -> None:
    events, runs = benchmark_model_profile_events(_write(tmp_path, BUILTIN_PROFILE))
    assert [(event.name, event.kind) for event in events] == [
        ("CONV_2D", C.CONV),
        ("HARD_SWISH", C.HARDSWISH),
        ("DEPTHWISE_CONV_2D", C.DEPTHWISE),
        ("MEAN", C.MEAN),
        ("LOGISTIC", C.SIGMOID),
        ("MUL", C.MULTIPLY),
        ("ADD", C.ADD),
        ("AVERAGE_POOL_2D", C.AVERAGE_POOL),
        ("FULLY_CONNECTED", C.GEMM),
        ("DELEGATE", C.OTHER),  # kept: the file lists no operator inside it
    ]
    assert [event.milliseconds for event in events] == [
        0.8, 0.1, 0.25, 2e-05, 0.01, 0.06, 0.02, 0.05, 0.3, 0.2,
    ]  # fmt: skip
    assert [event.delegated for event in events] == [False] * 9 + [True]
    assert runs is None  # no "Timings" line


@pytest.mark.parametrize(
    ("node_type", "expected"),
    [
        ("CONV_2D", C.CONV),
        ("CONV_2D/some description", C.CONV),
        ("SUB", C.SUBTRACT),
        ("DIV", C.DIVIDE),
        ("RELU6", C.CLAMP),
        ("MAX_POOL_2D", C.MAX_POOL),
        ("RESHAPE", C.LAYOUT),
        ("QUANTIZE", C.CONVERT),
        ("DEQUANTIZE", C.CONVERT),
        ("BATCH_MATMUL", C.GEMM),
        ("SOFTMAX", C.OTHER),
    ],
)
def test_tflite_builtins_are_classified(node_type: str, expected: KernelClass) -> None:
    assert tflite_kernel_class(node_type) == expected


HEADER = "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
TITLE = "============================== Run Order ==============================\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Profiling Info for Benchmark Initialization:\n" + TITLE + HEADER,
            "P: no section 'Operator-wise Profiling Info for Regular Benchmark Runs:': not "
            "benchmark_model's op profile",
        ),
        (
            SECTION + "Timings (microseconds): count=1\n",
            "P: its regular runs have no Run Order table",
        ),
        (
            SECTION + TITLE + "node, ms\nCONV_2D, 1\n",
            "P:3: header 'node, ms': not a Run Order table's (node type, ..., avg_ms, ..., "
            "times called, name)",
        ),
        (
            SECTION + TITLE + HEADER + "CONV_2D, 0.5, fast, 1%, 1%, 0, 1, [x]:0\n",
            "P:4: not a row of the Run Order table",
        ),
        (
            SECTION + TITLE + HEADER + "CONV_2D, 0.5, 0.4, 1%, 1%, 0, 0, [x]:0\n",
            "P:4: avg_ms 0.4 and times called 0: expected a finite time >= 0 and at least one "
            "call per run",
        ),
        (
            SECTION + TITLE + HEADER + "CONV_2D, 0.5, nan, 1%, 1%, 0, 1, [x]:0\n",
            "P:4: avg_ms nan and times called 1: expected a finite time >= 0 and at least one "
            "call per run",
        ),
        (SECTION + TITLE + HEADER + "\n", "P:3: its Run Order table lists no node"),
    ],
)
def test_a_file_that_is_not_benchmark_models_profile_is_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError) as error:
        benchmark_model_profile_events(path)
    assert str(error.value).replace(str(path), "P") == message


def test_a_profile_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(InputFileError, match=r"p\.csv: not UTF-8 text$"):
        benchmark_model_profile_events(path)


# -- ONNX Runtime's JSON profile (onnxruntime_perf_test -p) -----------------------------------


def _ort_trace(conv_times: list[int]) -> list[dict[str, Any]]:
    """A profile of len(conv_times) model runs of [depthwise Conv, Add]."""
    events: list[dict[str, Any]] = []
    for run, conv_time in enumerate(conv_times):
        start = 1000 + 100 * run
        shapes = [{"float": [1, 8, 16, 16]}, {"float": [8, 1, 3, 3]}]
        events += [
            {"cat": "Session", "name": "model_run", "ts": start, "dur": 90},
            {
                "cat": "Node",
                "name": "dw_kernel_time",
                "ts": start + 1,
                "dur": conv_time,
                "args": {"op_name": "Conv", "input_type_shape": shapes},
            },
            {
                "cat": "Node",
                "name": "add_kernel_time",
                "ts": start + 50,
                "dur": 7,
                "args": {"op_name": "Add"},
            },
        ]
    return events


def test_an_onnxruntime_profile_file_gives_every_run_but_the_first(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(_ort_trace([300, 20, 40, 10])), "p.json")
    # The first run (300 µs) is left out; the median of 20, 40 and 10 µs is 20 µs.
    assert onnxruntime_profile_file(path) == (
        [KernelEvent("dw", 0.02, True, C.DEPTHWISE), KernelEvent("add", 0.007, True, C.ADD)],
        3,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "P:1: not valid JSON (Expecting property name enclosed in double quotes)"),
        (
            json.dumps(_ort_trace([300])),
            "P: 1 model runs; a profile needs at least 2 (the first, which packs weights, is "
            "left out)",
        ),
        (
            json.dumps({"traceEvents": []}),
            "P: not an ONNX Runtime profile of a session's runs (AttributeError: 'str' object "
            "has no attribute 'get')",
        ),
        (
            json.dumps([{"name": "model_run", "cat": "Session"}] * 2),
            "P: not an ONNX Runtime profile of a session's runs (KeyError: 'ts')",
        ),
    ],
)
def test_a_file_that_is_not_an_onnxruntime_profile_is_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text, "p.json")
    with pytest.raises(InputFileError) as error:
        onnxruntime_profile_file(path)
    assert str(error.value).replace(str(path), "P") == message


# -- what the bundle and the driver record --------------------------------------------------


def _settings(**profile: Any) -> str:
    base = DriverSettings(
        rounds=60,
        min_rounds=20,
        budget_s=600,
        seed=0,
        python="python3",
        binary_hint="executor_runner",
        benchmark_args="--model_path={model}",
    )
    return _settings_text(DriverSettings(**{**base.__dict__, **profile}), [])


def test_bundle_env_carries_the_profile_flags_only_when_kernels_are_asked_for() -> None:
    assert "PROFILE" not in _settings()
    lines = _settings(
        profile_args="--etdump_path={profile}", profile_suffix=".etdp", profile_runs=5
    ).splitlines()
    assert lines[-3:] == [
        "BUNDLE_PROFILE_ARGS=--etdump_path={profile}",
        "BUNDLE_PROFILE_SUFFIX=.etdp",
        "BUNDLE_PROFILE_RUNS=5",
    ]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            {"profile_args": "-p {profile}; rm -rf /", "profile_suffix": ".json"},
            "bundle.env: BUNDLE_PROFILE_ARGS: '-p {profile}; rm -rf /' holds a character the "
            "driver refuses (shell syntax); a flag takes letters, digits, spaces and _{}=.,:/-",
        ),
        (
            {"profile_args": "-p {profile}", "profile_suffix": "json"},
            "bundle.env: BUNDLE_PROFILE_SUFFIX: 'json' is not a dot and lower-case letters, as "
            "the driver requires",
        ),
    ],
)
def test_bundle_env_refuses_profile_settings_the_driver_would(
    profile: dict[str, str], message: str
) -> None:
    with pytest.raises(AblateError) as error:
        _settings(**profile)
    assert str(error.value) == message


def test_the_mobile_runtimes_name_their_binaries_profile_flags() -> None:
    programs = {name: BACKENDS.get(name).program for name in ("executorch", "litert")}
    programs["onnxruntime"] = BACKENDS.get("onnxruntime").program
    flags = {name: (p.profile_arguments, p.profile_suffix) for name, p in programs.items() if p}
    assert flags == {
        "executorch": ("--etdump_path={profile}", ".etdp"),
        "litert": (
            "--enable_op_profiling=true --op_profiling_output_mode=csv "
            "--op_profiling_output_file={profile}",
            ".csv",
        ),
        "onnxruntime": ("-p {profile}", ".json"),
    }


@pytest.mark.parametrize(
    "profiles",
    [["v000.etdp"], {"v000.etdp": "abc"}, {"../v000.etdp": "0" * 64}, {"v000.etdp": 5}],
)
def test_a_device_record_with_bad_profile_hashes_is_refused(
    tmp_path: Path, profiles: object
) -> None:
    path = _write(
        tmp_path, json.dumps({"schema": DEVICE_SCHEMA, "profiles": profiles}), "device.json"
    )
    with pytest.raises(
        InputFileError,
        match=r"device\.json: profiles: expected an object of profile file names and their "
        r"sha256 \(got ",
    ):
        read_device_record(path)


def test_the_host_runner_has_no_profiler_for_litert_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "v000.csv"
    done = subprocess.run(
        [sys.executable, str(RUN_HOST), "--profile", "models/v000.tflite", str(out), "3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3
    assert done.stderr == (
        "run_host.py: no per-op profile of .tflite programs on this machine: LiteRT's Python "
        "interpreter has no op profiler (benchmark_model on a phone writes one)\n"
    )
    assert not out.exists()


# -- end to end: export, the driver's profile pass through a stand-in adb, ingest, fit ---------

KERNEL_SPEC = """\
name: phone-kernels
base: mobilenet_v3_small
input: {resolution: 64}
measure: {budget_s: 600, kernels: true}
baseline: se
variants:
  se: {width: 0.35}
  no_se: {width: 0.35, se: false}
  k5: {width: 0.35, kernel: 5}
"""

# adb without a phone: pushes and pulls copy, shell commands run here; every call is logged.
FAKE_ADB = """\
#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_ADB_LOG"
case $1 in
    get-state) echo device ;;
    push) mkdir -p "$(dirname "$3")" && cp "$2" "$3" ;;
    pull) cp "$2" "$3" ;;
    shell) shift; exec sh -c "$*" ;;
    *) echo "fake adb: unsupported: $*" >&2; exit 1 ;;
esac
"""

# executor_runner's flags (gflags; --etdump_path only in a build with the event tracer) and
# its summary line. Its timings are made up (v000 about 10 ms, v001 about 12 ms); its ETDump
# is the real one, written by the bundle's host runner through ExecuTorch's runtime.
FAKE_EXECUTOR_RUNNER = """\
#!/bin/sh
etdump=""
for argument; do
    case $argument in
        --model_path=*) model=${argument#--model_path=} ;;
        --num_executions=*) runs=${argument#--num_executions=} ;;
        --etdump_path=*) etdump=${argument#--etdump_path=} ;;
        --cpu_threads=1) ;;
        *) echo "ERROR: unknown command line flag '$argument'" >&2; exit 1 ;;
    esac
done
if [ -n "$etdump" ]; then
    "$FAKE_PYTHON" "$FAKE_BUNDLE/run_host.py" --profile "$model" "$etdump" "$runs" || exit 1
fi
jitter=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
total=$(awk -v runs="$runs" -v m="$model" -v j="$jitter" \\
    'BEGIN { printf "%f", ((m ~ /v000/ ? 10 : 12) + j / 1000) * runs }')
printf 'I 00:00:00.200 executorch:executor_runner.cpp:420] Model executed successfully %s %s\\n' \\
    "$runs" "time(s) in $total ms."
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _export(tmp_path: Path, backend: str) -> Path:
    for module in BACKENDS.get(backend).modules:
        pytest.importorskip(module)
    spec = tmp_path / "kernels.yaml"
    spec.write_text(KERNEL_SPEC)
    bundle = tmp_path / "bundle"
    exported = CliRunner().invoke(
        app, ["export", str(spec), "--backend", backend, "-o", str(bundle)]
    )
    assert exported.exit_code == 0, exported.output
    return bundle


def _measure(bundle: Path, out: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "OUT_DIR": str(out),
        "ROUNDS": "6",
        "MIN_ROUNDS": "6",
        "ITERATIONS": "2",
        "WARMUP": "1",
        "PROFILE_RUNS": "2",
        **settings,
    }
    return subprocess.run(
        ["sh", str(bundle / "measure.sh")], env=environment, capture_output=True, text=True
    )


def _ingest(bundle: Path, out: Path, runs: Path) -> Any:
    return CliRunner().invoke(
        app, ["ingest", str(bundle), str(out / "timings.csv"), "--out", str(runs)]
    )


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """An ExecuTorch bundle of KERNEL_SPEC timed and profiled through the stand-in adb and
    executor_runner: (bundle, the driver's output directory, the adb log)."""
    root = tmp_path_factory.mktemp("phone-profiles")
    bundle = _export(root, "executorch")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", FAKE_ADB)
    runner = _script(root / "executor_runner", FAKE_EXECUTOR_RUNNER)
    completed = _measure(
        bundle,
        root / "out",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_ADB_LOG=str(root / "adb.log"),
        FAKE_PYTHON=sys.executable,
        FAKE_BUNDLE=str(bundle),
        BENCHMARK_BINARY=str(runner),
        DEVICE_DIR=str(root / "device"),
    )
    assert completed.returncode == 0, completed.stderr
    return bundle, root / "out", root / "adb.log"


@pytest.mark.slow
def test_the_driver_profiles_each_model_after_the_rounds_and_records_the_hashes(
    phone: tuple[Path, Path, Path],
) -> None:
    bundle, out, log = phone
    settings = (bundle / "bundle.env").read_text().splitlines()
    assert settings[-3:] == [
        "BUNDLE_PROFILE_ARGS=--etdump_path={profile}",
        "BUNDLE_PROFILE_SUFFIX=.etdp",
        "BUNDLE_PROFILE_RUNS=5",  # the runner's PROFILE_RUNS; PROFILE_RUNS=2 overrides it
    ]
    calls = log.read_text().splitlines()
    runs = [call for call in calls if call.startswith("shell") and "/benchmark' " in call]
    profiled = [call for call in runs if "--etdump_path=" in call]
    # 1 warm-up and 6 rounds of 3 models, then the profile pass: each model once, last.
    assert len(runs) == 3 + 6 * 3 + 3 and runs[-3:] == profiled
    assert all("--num_executions=2 " in call for call in profiled)
    pulls = [call.split()[1] for call in calls if call.startswith("pull")]
    assert [Path(pull).parent.name for pull in pulls] == ["v000.pte", "v001.pte", "v002.pte"]
    assert [Path(pull).name for pull in pulls] == ["profile.etdp"] * 3
    files = sorted(path.name for path in (out / "profiles").iterdir())
    assert files == ["v000.etdp", "v001.etdp", "v002.etdp"]  # nothing staged left behind
    record = json.loads((out / "device.json").read_text())
    assert record["profiles"] == {
        name: hashlib.sha256((out / "profiles" / name).read_bytes()).hexdigest() for name in files
    }
    assert record["profile_runs"] == 2 and record["rounds"] == 6
    assert record["profile_binary"].endswith("executor_runner")


@pytest.mark.slow
def test_ingest_reads_the_profiles_into_kernel_times_that_match_the_counting_records(
    phone: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import torch

    from ablate.devices.matching import match_kernels
    from ablate.devices.observations import run_observations
    from ablate.measurement.activations import realistic_module
    from ablate.measurement.runtimes.executorch import executorch_kernel_times
    from ablate.runs.runner import plan_units
    from ablate.spec import load_spec_text, with_overrides

    bundle, out, _ = phone
    ingested = _ingest(bundle, out, tmp_path / "runs")
    assert ingested.exit_code == 0, ingested.output
    run = Path(ingested.output.strip().splitlines()[-1])
    assert "no per-op profile" not in ingested.output
    results = load_results(run)
    # The phone's profiles give what this machine's kernel timer gives for the same programs
    # (from the export cache): the same kernels, in the same order, classified alike.
    spec = with_overrides(load_spec_text(KERNEL_SPEC, "kernels.yaml"), backend="executorch")
    for unit in plan_units(spec):
        kernels = results.variant(unit.name).kernels
        assert kernels is not None and kernels.timer == "executorch"
        assert kernels.runs == 2  # 3 executions by the host runner, the first left out
        example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        local = executorch_kernel_times(
            realistic_module(unit.architecture), example, precision="fp32", runs=1, threads=1
        )
        assert [(event.name, event.kind, event.delegated) for event in kernels.events] == [
            (event.name, event.kind.value, event.delegated) for event in local
        ]
        assert all(event.kind != "other" and event.milliseconds >= 0 for event in kernels.events)
    se, no_se = results.variant("se").kernels, results.variant("no_se").kernels
    assert se is not None and no_se is not None
    kinds = [event.kind for event in se.events], [event.kind for event in no_se.events]
    assert kinds[0].count("depthwise") == kinds[1].count("depthwise") == 11
    # The global pool, and the squeezes of V3-Small's 9 SE blocks.
    assert (kinds[0].count("mean"), kinds[1].count("mean")) == (10, 1)
    assert sorted(path.name for path in (run / "profiles").iterdir()) == [
        "v000.etdp",
        "v001.etdp",
        "v002.etdp",
    ]
    # What fit-device --from RUN fits on: each network's kernels matched to its records.
    observations, view, _ = run_observations([run])
    assert view == "fused" and [row.name for row in observations] == ["se", "no_se", "k5"]
    for row in observations:
        variant = results.variant(row.name).kernels
        assert variant is not None and row.kernels
        events = [
            KernelEvent(e.name, e.milliseconds, e.delegated, KernelClass(e.kind), e.record)
            for e in variant.events
        ]
        match = match_kernels(events, row.records, view)
        assert row.kernel_match == match.summary()
        assert not match.unmatched_records and match.matched_share > 0.9


@pytest.mark.slow
def test_fit_device_from_the_ingested_run(phone: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bundle, out, _ = phone
    ingested = _ingest(bundle, out, tmp_path / "runs")
    run = ingested.output.strip().splitlines()[-1]
    fitted = CliRunner().invoke(
        app,
        ["fit-device", "phone-test", "--from", run],
        env={"ABLATE_DEVICES_DIR": str(tmp_path / "devices")},
    )
    assert fitted.exit_code == 0, fitted.output
    profile = json.loads((tmp_path / "devices" / "phone-test.json").read_text())
    assert profile["form"].startswith("kernel_")  # a per-kernel form: the rows carry kernels
    assert [row["name"] for row in profile["rows"]] == ["se", "no_se", "k5"]
    assert all(
        row["kernels"] > 0 and "matched to" in row["kernel_match"] for row in profile["rows"]
    )


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


def _rehash(out: Path, name: str) -> None:
    """What a binary killed while writing leaves: a record whose hash is of what is there."""
    record = json.loads((out / "device.json").read_text())
    record["profiles"][name] = hashlib.sha256((out / "profiles" / name).read_bytes()).hexdigest()
    (out / "device.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_a_changed_or_truncated_profile_is_one_line_and_nothing_written(
    phone: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bundle, out, _ = phone
    copy = _copy(out, tmp_path)
    profile = copy / "profiles" / "v001.etdp"
    data = profile.read_bytes()
    profile.write_bytes(data[: len(data) // 2])
    changed = _ingest(bundle, copy, tmp_path / "runs")
    assert changed.exit_code == 2 and not (tmp_path / "runs").exists()
    assert changed.output == (
        f"error: {profile}: sha256 differs from device.json's: the profile changed since "
        "measure.sh wrote it; run measure.sh again\n"
    )
    _rehash(copy, "v001.etdp")
    truncated = _ingest(bundle, copy, tmp_path / "runs")
    assert truncated.exit_code == 2 and not (tmp_path / "runs").exists()
    assert len(truncated.output.splitlines()) == 1
    assert truncated.output.startswith(f"error: {profile}: not a readable ETDump (")


@pytest.mark.slow
def test_a_truncated_etdump_is_one_line(phone: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from ablate.measurement.runtimes.executorch import etdump_kernel_events

    _, out, _ = phone
    events, runs = etdump_kernel_events(out / "profiles" / "v000.etdp")
    assert runs == 2 and events and all(event.kind != C.OTHER for event in events)
    truncated = tmp_path / "v000.etdp"
    truncated.write_bytes((out / "profiles" / "v000.etdp").read_bytes()[:100])
    with pytest.raises(InputFileError) as error:
        etdump_kernel_events(truncated)
    assert str(error.value).startswith(f"{truncated}: not a readable ETDump (")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_a_missing_profile_leaves_its_network_on_whole_network_rows_said_once(
    phone: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bundle, out, _ = phone
    copy = _copy(out, tmp_path)
    (copy / "profiles" / "v001.etdp").unlink()
    ingested = _ingest(bundle, copy, tmp_path / "runs")
    assert ingested.exit_code == 0, ingested.output
    lines = ingested.output.strip().splitlines()
    assert lines[:-1] == [
        "note: no per-op profile for 1 of 3 networks (['no_se']): a device profile fitted "
        "from this run (fit-device --from) uses their whole-network latencies"
    ]
    results = load_results(Path(lines[-1]))
    assert results.variant("se").kernels is not None
    assert results.variant("no_se").kernels is None


@pytest.mark.slow
def test_empty_profile_args_skip_the_pass(phone: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bundle, _, _ = phone
    completed = _measure(bundle, tmp_path / "out", ABLATE_MODE="host", PROFILE_ARGS="")
    assert completed.returncode == 0, completed.stderr
    assert not (tmp_path / "out" / "profiles").exists()
    record = json.loads((tmp_path / "out" / "device.json").read_text())
    assert record["profiles"] is None and record["profile_runs"] is None
    assert "profile" not in completed.stderr


@pytest.mark.slow
def test_a_binary_without_the_profile_flag_ends_the_pass_and_keeps_the_timings(
    phone: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """executor_runner built without the event tracer knows no --etdump_path."""
    bundle, _, _ = phone
    plain = FAKE_EXECUTOR_RUNNER.replace(
        "        --etdump_path=*) etdump=${argument#--etdump_path=} ;;\n", ""
    )
    runner = _script(tmp_path / "executor_runner", plain)
    completed = _measure(
        bundle,
        tmp_path / "out",
        ABLATE_MODE="host",
        BENCHMARK_BINARY=str(runner),
        FAKE_PYTHON=sys.executable,
        FAKE_BUNDLE=str(bundle),
    )
    assert completed.returncode == 0, completed.stderr
    failure, *lines = completed.stderr.splitlines()[-3:]
    assert failure.startswith("ERROR: unknown command line flag '--etdump_path=")
    assert lines == [
        "measure.sh: the profile run failed on models/v000.pte",
        "measure.sh: no per-op profiles from models/v000.pte on; the timings are complete",
    ]
    record = json.loads((tmp_path / "out" / "device.json").read_text())
    assert record["profiles"] == {} and record["rounds"] == 6


@pytest.mark.slow
def test_onnxruntime_on_this_machine_profiles_through_the_host_runner(tmp_path: Path) -> None:
    """No adb, no binary: run_host.py times the rounds and writes ONNX Runtime's own profile,
    the format onnxruntime_perf_test -p writes on a phone."""
    bundle = _export(tmp_path, "onnxruntime")
    completed = _measure(bundle, tmp_path / "out", ABLATE_MODE="host")
    assert completed.returncode == 0, completed.stderr
    record = json.loads((tmp_path / "out" / "device.json").read_text())
    assert sorted(record["profiles"]) == ["v000.json", "v001.json", "v002.json"]
    assert record["profile_binary"] == "run_host.py"
    ingested = _ingest(bundle, tmp_path / "out", tmp_path / "runs")
    assert ingested.exit_code == 0, ingested.output
    results = load_results(Path(ingested.output.strip().splitlines()[-1]))
    kernels = results.variant("se").kernels
    assert kernels is not None and kernels.timer == "onnxruntime" and kernels.runs == 2
    assert kernels.events[0].kind == "conv"  # the stem, a Conv (FusedConv with its h-swish)
    assert sum(event.kind == "depthwise" for event in kernels.events) == 11
