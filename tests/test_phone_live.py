"""A live run on a phone (`ablate run --phone SERIAL`): the engine's blocks timed on a
stand-in phone (tests/fake_phone.py) whose times are known exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.measurement.phone import MINIMUM_RUNS, parse_milliseconds
from ablate.measurement.setup import cpu_flags, cpu_identity
from ablate.runs.schema import load_results
from tests.fake_phone import BYTES_PER_MS, install_fake_phone

SPEC = """\
name: live-phone
base: mobilenet_v3_small
input: {{resolution: 32}}
measure: {{backend: {backend}, settle_s: 0, budget_s: 60, min_rounds: 6, max_rounds: 6,
  warmup_s: 1}}
baseline: se
variants:
  se: {{width: 0.35}}
  no_se: {{width: 0.35, se: false}}
"""


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    added = install_fake_phone(tmp_path / "phone")
    monkeypatch.setenv("PATH", f"{added['PATH_PREFIX']}{os.pathsep}{os.environ['PATH']}")
    for name in ("BENCHMARK_BINARY", "DEVICE_DIR", "FAKE_ADB_LOG"):
        monkeypatch.setenv(name, added[name])
    monkeypatch.delenv("ADB", raising=False)
    return added


def _spec(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(SPEC.format(backend=backend))
    return path


def _run_on_phone(tmp_path: Path, serial: str, *arguments: str) -> Any:
    """`ablate run` of the ONNX spec on the phone `serial`, its runs under tmp_path/r."""
    spec = str(_spec(tmp_path, "onnxruntime"))
    command = ["run", spec, "--phone", serial, "--out", str(tmp_path / "r"), *arguments]
    return CliRunner().invoke(app, command)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
@pytest.mark.parametrize(
    "backend", ["onnxruntime", pytest.param("executorch", marks=pytest.mark.slow)]
)
def test_a_live_phone_run_times_every_program_on_the_phone(
    backend: str, phone: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip({"onnxruntime": "onnxruntime", "executorch": "executorch"}[backend])
    result = CliRunner().invoke(
        app,
        ["run", str(_spec(tmp_path, backend)), "--phone", "FAKE0001", "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    results = load_results(directory)
    assert results.status == "complete"
    assert results.measurement is not None
    assert results.measurement.device == "phone FAKE0001"
    assert results.measurement.rounds == 6
    assert results.measurement.roofline_calibration is None  # the host's: not the phone's

    # Each program was pushed once, under its content's name; the stand-in phone's time of a
    # pass is its size / BYTES_PER_MS, so each median is known exactly.
    suffix = {"onnxruntime": ".onnx", "executorch": ".pte"}[backend]
    pushed = sorted(Path(phone["DEVICE_DIR"]).glob(f"*{suffix}"))
    assert len(pushed) == 2
    sizes = {path.stat().st_size for path in pushed}
    medians = set()
    for variant in results.variants:
        assert variant.latency is not None
        medians.add(round(variant.latency.median_ms * BYTES_PER_MS))
        assert variant.latency.ci95_ms[0] == pytest.approx(variant.latency.median_ms, rel=1e-5)
        if backend == "executorch":  # the mobile runtime's program record comes along
            assert variant.runtime is not None and variant.runtime.runtime == "executorch"
            assert variant.runtime.program_bytes in sizes
    assert medians == sizes
    no_se, se = results.variant("no_se").latency, results.variant("se").latency
    assert no_se is not None and se is not None and no_se.ratio_to_baseline is not None
    assert no_se.ratio_to_baseline.median == pytest.approx(no_se.median_ms / se.median_ms, rel=1e-5)

    environment = json.loads((directory / "environment.json").read_text())
    assert environment["device_name"] == 'Pixel "Fake" FAKE0001'
    assert environment["cpu_model"] == "Tensor-G4"
    assert environment["measured_on_device"]["serial"] == "FAKE0001"
    assert environment["measured_on_device"]["mode"] == "adb-live"
    assert environment["host"]["cpu_model"]  # the driving host is kept beside it
    # The host's CPU identity stays with the host: nothing of it is claimed for the phone.
    host_cpu = Path("/proc/cpuinfo").read_text()
    assert environment["host"]["cpu_flags"] == list(cpu_flags(host_cpu))
    assert environment["host"]["cpu_identity"] == cpu_identity(host_cpu)
    assert (environment["cpu_identity"], environment["cpu_flags"]) == ("", [])
    assert environment["cpu_caches"] == ""

    report = CliRunner().invoke(app, ["report", str(directory), "--markdown", "-o", "-"])
    assert report.exit_code == 0, report.output
    assert 'Pixel "Fake" FAKE0001' in report.output and "Tensor-G4" in report.output

    log = Path(phone["FAKE_ADB_LOG"]).read_text().splitlines()
    assert log and all(line.startswith("FAKE0001 ") for line in log)
    timed = [line for line in log if "/benchmark' " in line or "/benchmark " in line]
    runs = [
        int(part.split("=")[1]) if "=" in part else None
        for line in timed
        for part in line.split()
        if part.startswith("--num_executions=")
    ]
    if backend == "executorch":
        assert runs and min(runs) >= MINIMUM_RUNS  # every binary run amortises its cold pass


def test_the_binary_outputs_parse_to_milliseconds_per_pass() -> None:
    assert parse_milliseconds("Model executed successfully 20 time(s) in 50.000000 ms.") == 2.5
    assert parse_milliseconds("Inference (avg): 1500.5\n") == pytest.approx(1.5005)
    assert parse_milliseconds("x\nAverage inference time cost: 3.25 ms\n") == 3.25
    assert parse_milliseconds("ablate-ms: 0.5") == 0.5
    assert parse_milliseconds("Model executed successfully 0 time(s) in 0 ms.") is None
    assert parse_milliseconds("segmentation fault") is None


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"),
    [
        (["--backend", "eager"], {}, "backend 'eager' writes no program a phone could run"),
        ([], {"BENCHMARK_BINARY": ""}, "phone FAKE0001: set BENCHMARK_BINARY to the onnxruntime"),
        ([], {"BENCHMARK_BINARY": "/nonexistent/x"}, "'/nonexistent/x' is not a file"),
        (["--device", "pixel1"], {}, "--device predicts, --phone measures on a phone"),
    ],
)
def test_a_phone_that_cannot_be_used_is_one_line_exit_2_before_any_run_directory(
    arguments: list[str],
    environment: dict[str, str],
    expected: str,
    phone: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("onnxruntime")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "r"
    result = _run_on_phone(tmp_path, "FAKE0001", *arguments)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_a_phone_not_ready_on_adb_is_refused_in_one_line(
    phone: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    adb = Path(phone["PATH_PREFIX"]) / "adb"
    adb.write_text(adb.read_text().replace("get-state) echo device", "get-state) echo offline"))
    result = _run_on_phone(tmp_path, "FAKE0009")
    assert result.exit_code == 2, result.output
    assert "phone FAKE0009: not ready on adb (state 'offline')" in result.output


def test_a_phone_is_a_device_of_the_matrix_vocabulary() -> None:
    from ablate.devices.vocabulary import DeviceNameError, parse_device

    device = parse_device("executorch/int8", phone="R58M123ABC")
    assert (device.name, device.slug, device.phone, device.node) == (
        "executorch/int8@R58M123ABC",
        "executorch-int8-on-R58M123ABC",
        "R58M123ABC",
        None,
    )
    with pytest.raises(DeviceNameError, match="give phone alone"):
        parse_device("executorch", phone="X1", node="executorch-host-lab")
    with pytest.raises(DeviceNameError, match="give phone alone"):
        parse_device("executorch", phone="X1", python="/usr/bin/python3")
    with pytest.raises(DeviceNameError, match="a phone runs a backend's program") as raised:
        parse_device("eager", phone="X1")
    assert "executorch" in raised.value.choices and "eager" not in raised.value.choices
    with pytest.raises(DeviceNameError, match="only a backend names one"):
        parse_device("pixel1", phone="X1")


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_matrix_device_on_a_phone_here_runs_live_without_a_cluster(
    phone: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "matrix.yaml"
    spec.write_text(
        SPEC.format(backend="onnxruntime")
        + "devices:\n  - {device: onnxruntime, phone: FAKE0003}\n"
    )
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime@FAKE0003: complete" in result.output
    run = next((tmp_path / "m").glob("*-matrix/onnxruntime-on-FAKE0003/*/results.json"))
    results = load_results(run.parent)
    assert results.measurement is not None and results.measurement.device == "phone FAKE0003"
    log = Path(phone["FAKE_ADB_LOG"]).read_text().splitlines()
    assert log and all(line.startswith("FAKE0003 ") for line in log)


def test_a_bad_phone_entry_in_a_spec_names_the_line_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "matrix.yaml"
    spec.write_text(
        SPEC.format(backend="onnxruntime") + "devices:\n  - {device: eager, phone: FAKE0003}\n"
    )
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert f"{spec}:11: devices[0].device" in line and "a phone runs a backend's program" in line
