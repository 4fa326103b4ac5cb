"""`ablate calibrate`: the calibration spec run with every kernel timed, then fitted; the
results' `kernels`; `ablate roofline`, the command `calibrate` was before."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ablate.runs.runner as runner_module
import ablate.services.calibration as calibration_module
from ablate.cli import app
from ablate.errors import AblateError, InputFileError
from ablate.measurement.backends import BACKENDS, Backend
from ablate.measurement.kernels import KernelClass, KernelEvent
from ablate.runs.runner import Run, SilentProgress, rerun_command
from ablate.runs.schema import KernelTimeEntry, KernelTimes, Results, load_results
from ablate.services.calibration import calibrate_device
from ablate.spec import load_spec_text, with_overrides

FIXTURES = Path(__file__).parent / "fixtures"

# Five distinct networks, small enough to count, time and profile in seconds; the resolution
# of each is what the fake kernel timer turns into milliseconds.
TINY_CALIBRATION = """\
name: calibrate
base: mobilenet_v3_small
input: {resolution: 32}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 8}
baseline: small
variants:
  small: {}
  small-half: {width: 0.5}
  small-48: {resolution: 48}
  v2: {base: mobilenet_v2, width: 0.35}
  large: {base: mobilenet_v3_large, width: 0.35}
"""


@dataclasses.dataclass
class FakeTimer:
    """Two kernels per network: a conv of (input side / 100) ms that names its counting record,
    and a layout copy outside the delegate that does not. Call `die_on` (1-based) is Ctrl-C."""

    calls: list[tuple[int, str, int, int]] = dataclasses.field(default_factory=list)
    die_on: int | None = None

    def __call__(
        self, model: Any, example_input: Any, *, precision: str, runs: int, threads: int
    ) -> list[KernelEvent]:
        side = int(example_input.shape[-1])
        self.calls.append((side, precision, runs, threads))
        if len(self.calls) == self.die_on:
            raise KeyboardInterrupt
        return [
            KernelEvent("conv", side / 100, True, KernelClass.CONV, 0),
            KernelEvent("Transpose", 0.25, False, KernelClass.LAYOUT),
        ]


def expected_kernels(side: int) -> dict[str, Any]:
    return {
        "timer": "eager",
        "runs": 1,  # a quick run profiles once
        "events": [
            {
                "name": "conv",
                "milliseconds": side / 100,
                "delegated": True,
                "kind": "conv",
                "record": 0,
            },
            {
                "name": "Transpose",
                "milliseconds": 0.25,
                "delegated": False,
                "kind": "layout",
                "record": None,
            },
        ],
    }


@pytest.fixture
def calibration_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spec = tmp_path / "calibrate.yaml"
    spec.write_text(TINY_CALIBRATION)
    monkeypatch.setattr(calibration_module, "CALIBRATION_SPEC", spec)
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(tmp_path / "devices"))
    return spec


def with_eager(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    """The eager backend's descriptor with `fields` replaced, for this test."""
    eager = BACKENDS.get("eager")
    monkeypatch.setitem(BACKENDS._entries, "eager", dataclasses.replace(eager, **fields))


# -- the command line ------------------------------------------------------------------------


def test_roofline_is_the_old_calibrate_and_calibrate_takes_the_new_options() -> None:
    roofline = CliRunner().invoke(app, ["roofline", "--help"])
    assert roofline.exit_code == 0
    assert "Measure peak fp32 FLOP/s and memory bandwidth once" in roofline.output
    calibrate = CliRunner().invoke(app, ["calibrate", "--help"])
    assert calibrate.exit_code == 0
    for option in ("--backend", "--precision", "--name", "--out", "--quick", "--resume"):
        assert option in calibrate.output
    assert "RUN_DIR" in calibrate.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--backend", "tflite", "--name", "t"],
            "unknown backend 'tflite'; valid: eager, torchscript, onnxruntime, compile, "
            "executorch, litert",
        ),
        (
            ["--backend", "eager", "--precision", "int8", "--name", "t"],
            "backend 'eager' measures fp32 only; precision 'int8' needs one of: executorch, litert",
        ),
        (
            ["--backend", "eager", "--precision", "int4", "--name", "t"],
            "unknown precision 'int4'; valid: fp32, int8",
        ),
        (
            ["--backend", "eager", "--name", "my/phone"],
            "NAME 'my/phone': use letters, digits, '_', '-' and '.' (it names the profile file)",
        ),
        (
            ["--backend", "eager", "--name", ".hidden"],
            "NAME '.hidden': use letters, digits, '_', '-' and '.' (it names the profile file)",
        ),
    ],
)
def test_bad_input_is_one_line_before_anything_is_created(
    calibration_spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    message: str,
) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["calibrate", *arguments, "--out", str(out)])
    assert result.exit_code == 2
    assert result.output == f"error: {message}\n"
    assert not out.exists() and not (tmp_path / "devices").exists()


def test_a_backend_not_installed_names_its_extra(
    calibration_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = Backend(
        "absent", BACKENDS.get("eager").factory, False, modules=("no_such_module_x",), extra="x"
    )
    monkeypatch.setitem(BACKENDS._entries, "absent", absent)
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["calibrate", "--backend", "absent", "--name", "t", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output == (
        "error: backend 'absent' needs the Python package 'no_such_module_x', which is not "
        "installed; install it with: pip install 'ablate[x]'\n"
    )
    assert not out.exists()


def test_resume_needs_a_run_of_this_calibration(calibration_spec: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        app, ["calibrate", "--backend", "eager", "--name", "t", "--resume", str(empty)]
    )
    assert result.exit_code == 2
    assert result.output == (
        f"error: {empty}: not a run directory (no readable resolved_spec.json)\n"
    )
    # A run of the calibration on another backend: the first setting that differs is named.
    other = tmp_path / "runs" / "20260101-000000-calibrate"
    other.mkdir(parents=True)
    spec = with_overrides(load_spec_text(TINY_CALIBRATION), backend="onnxruntime", kernels=True)
    (other / "resolved_spec.json").write_text(json.dumps(spec.to_json()))
    result = CliRunner().invoke(
        app, ["calibrate", "--backend", "eager", "--name", "t", "--resume", str(other)]
    )
    assert result.exit_code == 2
    assert result.output == (
        f"error: {other}: started with measure.backend 'onnxruntime', not 'eager'; run "
        "without --resume to start a fresh run\n"
    )


def test_an_interrupted_run_names_the_precision_it_continues_with() -> None:
    assert rerun_command(Path("s.yaml"), Path("runs"), backend="executorch", precision="int8") == [
        *("ablate", "run", "s.yaml", "--out", "runs"),
        *("--backend", "executorch", "--precision", "int8"),
    ]


# -- the profiling stage ---------------------------------------------------------------------


class Notes(SilentProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)


def run_of(text: str, tmp_path: Path, **overrides: Any) -> tuple[Run, Notes]:
    notes = Notes()
    spec = with_overrides(load_spec_text(text), **overrides)
    return Run(spec, tmp_path, notes), notes


def test_a_backend_without_a_kernel_timer_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_eager(monkeypatch, kernel_timer=None)
    run, notes = run_of(TINY_CALIBRATION, tmp_path, kernels=True)
    assert run._kernel_timer() is None
    assert notes.lines == [
        "eager gives no per-kernel times: a device profile fitted from this run rests on "
        "whole-network latencies only"
    ]


def test_kernel_times_are_taken_only_when_the_spec_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FakeTimer()
    with_eager(monkeypatch, kernel_timer=timer)
    asked, notes = run_of(TINY_CALIBRATION, tmp_path, kernels=True)
    assert asked._kernel_timer() is timer and notes.lines == []
    not_asked, notes = run_of(TINY_CALIBRATION, tmp_path)
    assert not_asked._kernel_timer() is None and notes.lines == []


# -- the results model -----------------------------------------------------------------------


def hswish_results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "hswish_eager" / "results.json").read_text())
    return data


def test_results_without_kernels_still_load(tmp_path: Path) -> None:
    data = hswish_results()
    assert all("kernels" not in variant for variant in data["variants"])
    results = load_results(FIXTURES / "hswish_eager")
    assert [variant.kernels for variant in results.variants] == [None] * len(data["variants"])


def test_results_with_kernels_round_trip(tmp_path: Path) -> None:
    data = hswish_results()
    data["variants"][0]["kernels"] = expected_kernels(224)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    results = load_results(path)
    kernels = results.variants[0].kernels
    assert kernels == KernelTimes(
        timer="eager",
        runs=1,
        events=[
            KernelTimeEntry(name="conv", milliseconds=2.24, delegated=True, kind="conv", record=0),
            KernelTimeEntry(
                name="Transpose", milliseconds=0.25, delegated=False, kind="layout", record=None
            ),
        ],
    )
    assert Results.model_validate(results.to_json()) == results
    assert results.to_json()["variants"][0]["kernels"] == expected_kernels(224)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "kind",
            "fft",
            "variants[0].kernels.events[1].kind: Value error, unknown kernel class; valid: "
            + ", ".join(kind.value for kind in KernelClass)
            + " (got 'fft')",
        ),
        (
            "milliseconds",
            -0.5,
            "variants[0].kernels.events[1].milliseconds: Input should be greater than or equal "
            "to 0 (got -0.5)",
        ),
        (
            "milliseconds",
            math.inf,
            "variants[0].kernels.events[1].milliseconds: Input should be a finite number (got inf)",
        ),
        (
            "record",
            -1,
            "variants[0].kernels.events[1].record: Input should be greater than or equal to 0 "
            "(got -1)",
        ),
    ],
)
def test_a_damaged_kernel_entry_is_one_line_naming_its_key(
    tmp_path: Path, key: str, value: Any, message: str
) -> None:
    data = hswish_results()
    data["variants"][0]["kernels"] = expected_kernels(224)
    data["variants"][0]["kernels"]["events"][1][key] = value
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFileError) as caught:
        load_results(path)
    assert f"{path}: {message}" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_calibrate_runs_the_spec_with_kernel_times_and_writes_the_profile(
    calibration_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FakeTimer()
    with_eager(monkeypatch, kernel_timer=timer)
    out = tmp_path / "runs"
    arguments = ["calibrate", "--backend", "eager", "--name", "t", "--quick", "--out", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (directory,) = out.iterdir()
    profile = tmp_path / "devices" / "t.json"
    assert result.output.splitlines()[-2:] == [f"wrote {profile}", f"run: {directory}"]
    assert json.loads(profile.read_text())["name"] == "t"
    resolved = json.loads((directory / "resolved_spec.json").read_text())
    assert resolved["measure"]["kernels"] is True and resolved["measure"]["quick"] is True
    results = load_results(directory)
    assert results.status == "complete"
    sides = {"small": 32, "small-half": 32, "small-48": 48, "v2": 32, "large": 32}
    for variant in results.variants:
        assert variant.kernels is not None
        assert variant.kernels.model_dump() == expected_kernels(sides[variant.name])
    # One call per network, in spec order, as the run measured them: fp32, 1 run, 1 thread.
    assert timer.calls == [(side, "fp32", 1, 1) for side in sides.values()]

    # A complete run is fitted again, and nothing is run again.
    profile.unlink()
    timer.calls.clear()
    again = CliRunner().invoke(app, [*arguments, "--resume", str(directory)])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-2:] == [f"wrote {profile}", f"run: {directory}"]
    assert timer.calls == [] and profile.is_file()
    assert len(list(out.iterdir())) == 1


@pytest.mark.slow
def test_a_resumed_calibration_keeps_the_kernels_it_timed(
    calibration_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while timing the third network's kernels, with the profiling saved after every
    network: the line says how to continue, and the continued run times the last three
    networks' kernels and keeps the first two's as they were."""
    monkeypatch.setattr(runner_module, "PROFILE_SAVE_INTERVAL_S", 0.0)
    timer = FakeTimer(die_on=3)
    with_eager(monkeypatch, kernel_timer=timer)
    out = tmp_path / "runs"
    arguments = ["calibrate", "--backend", "eager", "--name", "t", "--out", str(out), "--quick"]
    interrupted = CliRunner().invoke(app, arguments)
    assert interrupted.exit_code == 130
    (directory,) = out.iterdir()
    line = interrupted.output.splitlines()[-1]
    assert line.startswith(f"error: interrupted: {directory} keeps the run so far (status measured")
    continuation = line.split("; continue it with: ")[1]
    assert continuation == (
        f"ablate calibrate --backend eager --precision fp32 --name t --out {out} --quick "
        f"--resume {directory}"
    )
    partial = load_results(directory)
    kept = [variant.kernels is not None for variant in partial.variants]
    assert kept == [True, True, False, False, False]
    saved = {variant.name: variant.kernels for variant in partial.variants[:2]}

    timer.calls.clear()
    timer.die_on = None
    resumed = CliRunner().invoke(app, continuation.split()[1:])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.splitlines()[-1] == f"run: {directory}"
    assert [side for side, *_ in timer.calls] == [48, 32, 32]  # small-48, v2, large
    results = load_results(directory)
    assert results.status == "complete"
    assert {name: results.variant(name).kernels for name in saved} == saved
    small_48 = results.variant("small-48").kernels
    assert small_48 is not None and small_48.model_dump() == expected_kernels(48)


def test_calibrate_device_refuses_a_missing_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "calibrate.yaml"
    monkeypatch.setattr(calibration_module, "CALIBRATION_SPEC", missing)
    with pytest.raises(AblateError) as caught:
        calibrate_device(backend="eager", name="t", out_dir=tmp_path / "runs")
    assert str(caught.value) == (f"{missing}: the calibration spec is missing (a broken install?)")
