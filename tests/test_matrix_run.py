"""`ablate run --devices`, `--resume MATRIX_DIR` and `ablate matrix`: the device vocabulary,
a matrix of two local backends and a profile end to end, a failed device, a real SIGKILL, a
device run by another interpreter, and assembling a matrix from runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ablate.counting.engine as counting_engine
import ablate.measurement.backends as backends_module
import ablate.measurement.profile as profiling
import ablate.services.experiment as experiment_service
from ablate.cli import app
from ablate.devices.profile import (
    Parameter,
    Prior,
    Profile,
    TermSupport,
    load_profile,
    shipped_path,
)
from ablate.devices.properties import device_properties
from ablate.devices.vocabulary import (
    DeviceChoice,
    parse_device,
    parse_device_list,
    spec_devices,
)
from ablate.errors import AblateError
from ablate.measurement.backends import BACKENDS
from ablate.runs.matrix import load_device_results, load_matrix, matrix_spec_sha256
from ablate.runs.schema import load_results
from ablate.services.matrix import assemble_matrix, device_properties_of, matrix_request
from ablate.spec import load_spec_text

FIXTURES = Path(__file__).parent / "fixtures"
# Four distinct architectures: the fewest a profile can be fitted to (leave-one-out needs
# one more than the two coefficients of the smallest cost model, and a spare).
TINY_SPEC = """\
name: tiny
base: mobilenet_v3_small
input: {resolution: 64}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: published
variants:
  published: {width: 0.35}
  relu: {width: 0.35, activation: relu}
  no-se: {width: 0.35, se: off}
  k3: {width: 0.35, kernel: 3}
"""
ARCHITECTURES = 4
ABLATE = (sys.executable, "-m", "ablate")
PIXEL1_DEPTHWISE_TO_POINTWISE = 1195.4678059552402 / 144.67556961702334  # pixel1.json's rates


@pytest.fixture(autouse=True)
def profiles(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user profile directory: the valid choices are the shipped profiles only."""
    directory = tmp_path_factory.mktemp("profiles")
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(directory))
    return directory


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def invoke(*arguments: str) -> Any:
    return CliRunner().invoke(app, list(arguments))


def error_line(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert lines, result.output
    return lines[-1]


# -- the vocabulary --------------------------------------------------------------------------


def test_device_names_parse_to_one_canonical_device() -> None:
    assert parse_device("executorch") == DeviceChoice(
        "executorch", "backend", backend="executorch", precision="fp32"
    )
    assert parse_device("executorch/fp32") == parse_device("executorch")
    assert parse_device("executorch/int8").name == "executorch/int8"
    assert parse_device("executorch/int8").slug == "executorch-int8"
    assert parse_device("pixel1") == DeviceChoice("pixel1", "profile", profile="pixel1")
    litert = parse_device("litert", python="/opt/litert/bin/python", calibrated="pixel1")
    assert (litert.python, litert.calibrated) == ("/opt/litert/bin/python", "pixel1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("eagr", "--devices: unknown device (got 'eagr'); valid: eager, torchscript"),
        ("eager/int8", "--devices: eager has no int8 (got 'eager/int8'); valid: eager"),
        ("eager/fp16", "--devices: unknown precision (got 'eager/fp16'); valid: fp32, int8"),
        ("host-et", "--devices: unknown device (got 'host-et'); valid: eager, torchscript"),
        ("eager,,pixel1", "--devices 'eager,,pixel1': an empty name; give NAME,NAME,..."),
        (
            "eager,eager/fp32",
            "--devices: 'eager/fp32' is the same device as 'eager'; give each device once",
        ),
    ],
)
def test_a_bad_device_list_is_one_line(text: str, message: str) -> None:
    with pytest.raises(AblateError) as raised:
        parse_device_list(text)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_the_choices_list_every_backend_precision_and_profile() -> None:
    with pytest.raises(AblateError) as raised:
        parse_device("nope")
    assert str(raised.value).endswith(
        "valid: eager, torchscript, onnxruntime, compile, executorch, executorch/int8, "
        "litert, litert/int8, pixel1"
    )


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("[eagr]", "devices[0]: unknown device (got 'eagr'); valid: eager, torchscript"),
        ("[eager, eager/fp32]", "devices[1]: the same device as devices[0] (got 'eager/fp32')"),
        ("[{device: eager, pyton: x}]", "devices[0].pyton: unknown key; valid: device, python"),
        ("[{python: /usr/bin/python3}]", "devices[0].device: missing required key"),
        ("[{device: eager, python: 3}]", "devices[0].python: expected a non-empty string (got 3)"),
        ("[7]", "devices[0]: expected a device name or a mapping {device: NAME, python: PATH}"),
        ("[]", "devices: must not be empty (got [])"),
        (
            "[{device: eager, profile: host-et}]",
            "devices[0].profile: no such device profile (got 'host-et'); valid: pixel1",
        ),
        (
            "[{device: pixel1, python: /usr/bin/python3}]",
            "devices[0].python: a profile predicts in this process: only a backend names one "
            "(got '/usr/bin/python3')",
        ),
        (
            "[{device: pixel1, node: lab-7}]",
            "devices[0].node: a profile predicts in this process: only a backend names one "
            "(got 'lab-7')",
        ),
        (
            "[{device: eager, node: lab-7, python: /usr/bin/python3}]",
            "devices[0].node: a cluster node runs its device in its own environment: give node "
            "or python, not both (got 'lab-7')",
        ),
        ("[{device: eager, node: ''}]", "devices[0].node: expected a non-empty string (got '')"),
    ],
)
def test_a_bad_devices_entry_names_the_file_and_key(devices: str, message: str) -> None:
    with pytest.raises(AblateError) as raised:
        spec_devices(
            load_spec_text(f"name: t\nvariants: {{a: {{}}}}\ndevices: {devices}\n", "spec.yaml")
        )
    assert str(raised.value).startswith(f"spec.yaml:3: {message}")


def test_a_device_on_a_cluster_node_is_named_by_its_node() -> None:
    spec = load_spec_text(
        "name: t\nvariants: {a: {}}\ndevices:\n  - {device: eager, node: eager-host-lab-7}\n"
        "  - {device: executorch/int8, node: executorch-host-lab-9}\n  - eager\n"
    )
    on_node, int8, here = spec_devices(spec) or ()
    assert (on_node.name, on_node.node, on_node.backend) == (
        "eager@eager-host-lab-7",
        "eager-host-lab-7",
        "eager",
    )
    assert on_node.slug == "eager-on-eager-host-lab-7"
    assert (int8.name, int8.precision) == ("executorch/int8@executorch-host-lab-9", "int8")
    assert int8.slug == "executorch-int8-on-executorch-host-lab-9"
    assert (here.name, here.node) == ("eager", None)  # the same backend here: another device


def test_a_matrix_with_a_node_device_needs_a_cluster(tmp_path: Path) -> None:
    spec = tmp_path / "nodes.yaml"
    spec.write_text(TINY_SPEC + "devices: [eager, {device: eager, node: eager-host-lab-7}]\n")
    result = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert error_line(result) == (
        "error: device eager@eager-host-lab-7 is measured on a cluster node: give --cluster "
        "ADDRESS (the Ray cluster that node joined; `ablate node`)"
    )
    assert not (tmp_path / "runs").exists()


def test_devices_are_not_part_of_a_runs_resolved_spec() -> None:
    plain = load_spec_text("name: t\nvariants: {a: {}}\n")
    listed = load_spec_text("name: t\nvariants: {a: {}}\ndevices: [eager, pixel1]\n")
    assert [device.name for device in spec_devices(listed) or ()] == ["eager", "pixel1"]
    assert spec_devices(plain) is None
    assert listed.to_json() == plain.to_json()


def test_the_matrix_digest_ignores_only_what_names_the_device() -> None:
    spec = load_spec_text("name: t\nvariants: {a: {}}\n").to_json()
    other_backend = {**spec, "measure": {**spec["measure"], "backend": "executorch"}}
    int8 = {**other_backend, "measure": {**other_backend["measure"], "precision": "int8"}}
    longer = {**spec, "measure": {**spec["measure"], "budget_s": 99.0}}
    older = {**spec, "measure": {k: v for k, v in spec["measure"].items() if k != "kernels"}}
    digest = matrix_spec_sha256(spec)
    assert matrix_spec_sha256(other_backend) == matrix_spec_sha256(int8) == digest
    assert matrix_spec_sha256(older) == digest  # measure.kernels: false before it existed
    assert matrix_spec_sha256(longer) != digest


# -- device properties -----------------------------------------------------------------------


def test_pixel1s_properties() -> None:
    properties = device_properties(load_profile("pixel1"))
    assert properties.source == "profile pixel1 (form conv_kinds)"
    assert properties.depthwise_to_pointwise == pytest.approx(PIXEL1_DEPTHWISE_TO_POINTWISE)
    assert properties.depthwise_to_pointwise == pytest.approx(8.2631, abs=1e-4)
    assert properties.elementwise_gb_per_s is None  # conv_kinds has no elementwise term
    assert properties.overhead_us is None  # its rows did not resolve `ops`


def _profile(
    values: dict[str, float], resolved: set[str] | None, priors: tuple[Prior, ...] = ()
) -> Profile:
    """pixel1 with these coefficients: only what `device_properties` reads is replaced."""
    base = load_profile("pixel1")
    parameters = [
        Parameter(name=name, meaning=name, value=value, unit="", ci95=(value, value), readable="")
        for name, value in values.items()
    ]
    support = None
    if resolved is not None:
        support = [
            TermSupport(
                name=name,
                resolved=name in resolved,
                why="",
                feature_range=(0.0, 1.0),
                share_range=(0.0, 1.0),
            )
            for name in values
        ]
    return base.model_copy(
        update={"parameters": parameters, "support": support, "priors": list(priors)}
    )


PER_SIZE = {
    "dense_macs": 100.0,
    "pointwise_macs": 150.0,
    "depthwise3_macs": 600.0,
    "elementwise_bytes": 250.0,  # ms per GB: 4 GB/s
    "conv_ops": 0.02,  # ms per kernel: 20 us
    "elementwise_ops": 0.005,
}


def test_properties_of_a_per_size_form_with_every_rate_resolved() -> None:
    properties = device_properties(_profile(PER_SIZE, set(PER_SIZE)), "calibrated host-et")
    assert properties.source == "calibrated host-et"
    assert properties.depthwise_to_pointwise == pytest.approx(600 / 150)
    assert properties.elementwise_gb_per_s == pytest.approx(4.0)
    assert properties.overhead_us == pytest.approx(20.0)


def test_a_form_with_an_overhead_per_conv_kind_reports_the_pointwise_one() -> None:
    kinds = {
        "pointwise_tiled_macs": 150.0,
        "depthwise3_macs": 600.0,
        "other_elementwise_bytes": 250.0,
        "pointwise_ops": 0.015,  # eager PyTorch's oneDNN call: 15 us per pointwise conv
        "depthwise_ops": 0.08,  # and 80 per depthwise conv
    }
    properties = device_properties(_profile(kinds, set(kinds)))
    assert properties.depthwise_to_pointwise == pytest.approx(600 / 150)
    assert properties.elementwise_gb_per_s == pytest.approx(4.0)
    assert properties.overhead_us == pytest.approx(15.0)


def test_an_unresolved_rate_is_no_property_unless_a_prior_ties_it_to_a_resolved_one() -> None:
    unresolved = device_properties(_profile(PER_SIZE, {"depthwise3_macs", "dense_macs"}))
    assert unresolved.depthwise_to_pointwise is None  # pointwise unresolved
    assert unresolved.elementwise_gb_per_s is None and unresolved.overhead_us is None
    tied = Prior(term="pointwise_macs", rate_of="dense_macs", statement="", reason="")
    prior = device_properties(_profile(PER_SIZE, {"depthwise3_macs", "dense_macs"}, (tied,)))
    assert prior.depthwise_to_pointwise == pytest.approx(600 / 150)


def test_zero_rates_and_profiles_without_support() -> None:
    zero = {**PER_SIZE, "pointwise_macs": 0.0, "elementwise_bytes": 0.0}
    properties = device_properties(_profile(zero, None))  # no support: every rate counts
    assert properties.depthwise_to_pointwise is None and properties.elementwise_gb_per_s is None
    assert properties.overhead_us == pytest.approx(20.0)
    macs = device_properties(_profile({"macs": 50.0, "ops": 0.01}, {"macs", "ops"}))
    assert macs.depthwise_to_pointwise is None and macs.overhead_us == pytest.approx(10.0)


def test_a_calibrated_profile_describes_its_device(profiles: Path) -> None:
    shutil.copyfile(shipped_path("pixel1"), profiles / "host-eager.json")
    spec = load_spec_text(
        "name: t\nvariants: {a: {}}\ndevices: [{device: eager, profile: host-eager}]\n"
    )
    (eager,) = spec_devices(spec) or ()
    assert (eager.name, eager.calibrated) == ("eager", "host-eager")
    properties = device_properties_of(
        Path("not read"), "eager", profile=None, calibrated="host-eager"
    )
    assert properties.source == "calibrated profile host-eager"
    assert properties.depthwise_to_pointwise == pytest.approx(PIXEL1_DEPTHWISE_TO_POINTWISE)


# -- refusals before anything is created -----------------------------------------------------


def test_an_unknown_device_is_one_line_and_creates_nothing(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke("run", str(tiny_spec), "--devices", "eager,pixel9", "--out", str(out))
    assert result.exit_code == 2
    assert error_line(result).startswith("error: --devices: unknown device (got 'pixel9')")
    assert not out.exists()


def test_a_missing_profile_in_the_spec_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC + "devices: [eager, {device: torchscript, profile: host-ts}]\n")
    result = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {spec}:11: devices[1].profile: no such device profile (got 'host-ts'); "
        "valid: pixel1"
    )


def test_a_backend_not_installed_is_one_line_naming_the_extra(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for check in ("module_importable", "module_available"):
        monkeypatch.setattr(backends_module, check, lambda module: False)
    out = tmp_path / "runs"
    result = invoke("run", str(tiny_spec), "--devices", "eager,executorch", "--out", str(out))
    assert result.exit_code == 2
    assert error_line(result) == (
        "error: device executorch: backend 'executorch' needs the Python package "
        "'executorch', which is not installed; install it with: pip install "
        "'ablate[executorch]'"
    )
    assert not out.exists()


def test_an_interpreter_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC + f"devices: [{{device: litert, python: {tmp_path}/nope}}]\n")
    result = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: device litert: python {tmp_path}/nope: no such executable file (name the "
        "interpreter of the environment that has its backend)"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"devices": "eager", "backend": "torchscript"},
            "--backend with --devices: name each device in --devices instead",
        ),
        ({"devices": "eager", "resume": True}, "--resume: continue a matrix by its directory"),
    ],
)
def test_options_that_contradict_a_matrix(
    tiny_spec: Path, options: dict[str, Any], message: str
) -> None:
    arguments = {"devices": None, "resume": False, **options}
    with pytest.raises(AblateError) as raised:
        matrix_request(tiny_spec, **arguments)
    assert str(raised.value).startswith(message)


def test_a_matrix_directory_continues_only_with_resume_and_its_own_options(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "matrix.json").write_text("{}")
    with pytest.raises(AblateError) as raised:
        matrix_request(directory, devices=None, resume=False)
    assert str(raised.value) == (
        f"{directory}: a matrix directory; continue it with: ablate run --resume {directory}"
    )
    with pytest.raises(AblateError) as raised:
        matrix_request(directory, devices=None, resume=True, threads=2)
    assert str(raised.value).startswith("--threads: a matrix continues with the options it")
    request = matrix_request(directory, devices="eager", resume=True)
    assert request is not None and (request.resume, request.devices) == (True, "eager")


def test_a_spec_listing_devices_runs_one_device_when_an_option_names_it(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC + "devices: [eager, pixel1]\n")
    assert matrix_request(spec, devices=None, resume=False, backend="eager") is None
    assert matrix_request(spec, devices=None, resume=False, device="pixel1") is None
    request = matrix_request(spec, devices=None, resume=False)
    assert request is not None and (request.devices, request.resume) == (None, False)


def _no_runs(exception: BaseException) -> Any:
    """`run_experiment` standing in for every device's run: it raises ``exception``."""

    def run_experiment(**arguments: Any) -> Path:
        raise exception

    return run_experiment


def test_a_ctrl_c_stops_the_matrix_and_records_the_device(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(experiment_service, "run_experiment", _no_runs(KeyboardInterrupt()))
    out = tmp_path / "runs"
    result = invoke("run", str(tiny_spec), "--devices", "eager,pixel1", "--out", str(out))
    assert result.exit_code == 130
    (directory,) = out.iterdir()
    assert error_line(result) == (
        f"error: interrupted while eager ran; {directory} keeps the devices done; continue the "
        f"matrix with: ablate run --resume {directory}"
    )
    eager, pixel1 = load_matrix(directory).devices
    assert (eager.status, eager.error, pixel1.status) == (
        "interrupted",
        "KeyboardInterrupt",
        "pending",
    )
    assert eager.resume == f"ablate run --resume {directory} --devices eager"


def test_a_resume_refuses_an_edited_spec_and_devices_the_matrix_lacks(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(experiment_service, "run_experiment", _no_runs(RuntimeError("down")))
    out = tmp_path / "runs"
    result = invoke("run", str(tiny_spec), "--devices", "eager,torchscript", "--out", str(out))
    assert result.exit_code == 1
    (directory,) = out.iterdir()
    assert [d.error for d in load_matrix(directory).devices] == ["RuntimeError: down"] * 2
    result = invoke("run", "--resume", str(directory), "--devices", "eager,pixel1")
    assert error_line(result) == (
        f"error: --devices: 'pixel1' is not a device of {directory}; valid: eager, torchscript"
    )
    (directory / "spec.yaml").write_text(TINY_SPEC.replace("budget_s: 2", "budget_s: 3"))
    result = invoke("run", "--resume", str(directory))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {directory / 'spec.yaml'}: not the spec this matrix started with (its sha256 "
        "differs from matrix.json's); start a new matrix"
    )


# -- assembling ------------------------------------------------------------------------------


def test_assembling_runs_of_different_specs_is_refused_in_one_line(tmp_path: Path) -> None:
    why, hswish = FIXTURES / "why_eager", FIXTURES / "hswish_eager"
    result = invoke("matrix", str(why), str(hswish), "--out", str(tmp_path / "m"))
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith(f"error: {hswish.resolve()}: not the spec of {why.resolve()} (")
    assert line.endswith("); a matrix holds runs of one spec")
    assert not (tmp_path / "m").exists()


def test_a_calibrated_profile_not_given_as_device_equals_profile_is_one_line(
    tmp_path: Path,
) -> None:
    why = FIXTURES / "why_eager"
    result = invoke("matrix", str(why), str(why), "--calibrated", "eager", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert error_line(result) == (
        "error: --calibrated 'eager': expected DEVICE=PROFILE, e.g. eager=host-eager"
    )


def test_assembling_two_runs_of_one_device_is_refused(tmp_path: Path) -> None:
    why = FIXTURES / "why_eager"
    with pytest.raises(AblateError) as raised:
        assemble_matrix([why, why / "results.json"], out_dir=tmp_path)
    assert str(raised.value) == (
        f"{why.resolve()}: a second run of device 'eager' (the first: {why.resolve()}); a "
        "matrix holds one run per device"
    )


def test_assembling_needs_two_complete_runs(tmp_path: Path) -> None:
    with pytest.raises(AblateError, match="give at least two runs"):
        assemble_matrix([FIXTURES / "why_eager"], out_dir=tmp_path)
    results = json.loads((FIXTURES / "why_eager" / "results.json").read_text())
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "results.json").write_text(json.dumps({**results, "status": "measured"}))
    with pytest.raises(AblateError) as raised:
        assemble_matrix([FIXTURES / "why_eager", unfinished], out_dir=tmp_path)
    assert str(raised.value) == (
        f"{unfinished}: the run is not complete (status 'measured'); finish it with --resume first"
    )


# -- end to end ------------------------------------------------------------------------------


def _matrix_directory(result: Any) -> Path:
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_backends_and_a_profile_end_to_end(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[object] = []
    real_count = counting_engine.count_model

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted.append(args[1])
        return real_count(*args, **kwargs)

    monkeypatch.setattr(counting_engine, "count_model", counting)
    profiled: list[object] = []
    real_profile = profiling.profile_operators

    def profile(*args: Any, **kwargs: Any) -> Any:
        profiled.append(args[0])
        return real_profile(*args, **kwargs)

    monkeypatch.setattr(profiling, "profile_operators", profile)
    out = tmp_path / "runs"
    result = invoke(
        "run", str(tiny_spec), "--devices", "eager,torchscript,pixel1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    directory = _matrix_directory(result)
    assert directory.parent == out and directory.name.endswith("-tiny-matrix")
    # Counted once, for the first device: the others read its counts. The eager op profile
    # too: torchscript's run takes eager's, and pixel1 times nothing.
    assert len(counted) == ARCHITECTURES
    assert len(profiled) == ARCHITECTURES
    matrix = load_matrix(directory)
    assert [(d.name, d.kind, d.status) for d in matrix.devices] == [
        ("eager", "backend", "complete"),
        ("torchscript", "backend", "complete"),
        ("pixel1", "profile", "complete"),
    ]
    loaded = load_device_results(matrix, directory)
    eager, torchscript, pixel1 = (results for _, results in loaded)
    assert eager is not None and torchscript is not None and pixel1 is not None
    for (device, results), backend in zip(
        loaded, ("eager", "torchscript", "predicted on pixel1"), strict=True
    ):
        assert results is not None and results.status == "complete"
        assert results.measurement is not None and results.measurement.backend == backend
        assert device.run is not None and device.run.startswith(f"{device.name}/")
        assert matrix_spec_sha256(results.spec) == matrix.spec_sha256
        assert device.error is None and device.resume is None
    assert pixel1.measurement is not None and pixel1.measurement.predicted_on == "pixel1"
    # The shared counts are the same counts: every device's variants agree.
    assert [v.macs for v in eager.variants] == [v.macs for v in pixel1.variants]
    assert [v.params for v in torchscript.variants] == [v.params for v in eager.variants]
    assert [v.op_time_shares for v in torchscript.variants] == [
        v.op_time_shares for v in eager.variants
    ]
    assert all(v.op_time_shares is not None for v in eager.variants)
    assert (directory / "spec.yaml").read_text() == TINY_SPEC
    # Properties: a profile fitted to each measured run; pixel1's own coefficients.
    for device in matrix.devices[:2]:
        assert device.properties is not None
        assert device.properties.source.startswith("fitted to its run (form ")
    assert matrix.devices[2].properties == device_properties(
        load_profile("pixel1"), "profile pixel1"
    )
    assert result.stdout.strip().splitlines()[:3] == [
        f"{d.name}: complete {directory / (d.run or '')}" for d in matrix.devices
    ]

    # The same runs, assembled: absolute paths, one digest, the same device names.
    runs = [str(directory / (d.run or "")) for d in matrix.devices]
    assembled = invoke("matrix", *runs, "--out", str(tmp_path / "assembled"))
    assert assembled.exit_code == 0, assembled.output
    again = load_matrix(_matrix_directory(assembled))
    assert again.spec_sha256 == matrix.spec_sha256
    assert [(d.name, d.kind, d.run) for d in again.devices] == [
        ("eager", "backend", str(Path(runs[0]).resolve())),
        ("torchscript", "backend", str(Path(runs[1]).resolve())),
        ("pixel1", "profile", str(Path(runs[2]).resolve())),
    ]
    assert [d.properties for d in again.devices][2] == matrix.devices[2].properties

    # A device's calibrated profile gives its properties; one of no run is refused.
    calibrated = invoke(
        "matrix", *runs, "--out", str(tmp_path / "c"), "--calibrated", "eager=pixel1"
    )
    assert calibrated.exit_code == 0, calibrated.output
    eager_properties = load_matrix(_matrix_directory(calibrated)).devices[0].properties
    assert eager_properties == device_properties(
        load_profile("pixel1"), "calibrated profile pixel1"
    )
    refused = invoke("matrix", *runs, "--out", str(tmp_path / "d"), "--calibrated", "onnx=x")
    assert refused.exit_code == 2
    assert error_line(refused) == (
        "error: --calibrated onnx=...: no run of that device; the devices: eager, torchscript, "
        "pixel1"
    )


@pytest.mark.slow
def test_a_failed_device_keeps_the_others_and_resumes(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = BACKENDS.get("eager")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the eager factory broke")

    monkeypatch.setitem(BACKENDS._entries, "eager", dataclasses.replace(eager, factory=broken))
    out = tmp_path / "runs"
    result = invoke("run", str(tiny_spec), "--devices", "pixel1,eager", "--out", str(out))
    assert result.exit_code == 1
    (directory,) = out.iterdir()
    assert error_line(result) == (
        f"error: {directory}: 1 of 2 devices not complete: eager (failed: RuntimeError: the "
        f"eager factory broke); the others' runs are kept; continue with: ablate run --resume "
        f"{directory}"
    )
    matrix = load_matrix(directory)
    pixel1, failed = matrix.devices
    assert (pixel1.status, failed.status) == ("complete", "failed")
    assert failed.error == "RuntimeError: the eager factory broke"
    assert failed.resume == f"ablate run --resume {directory} --devices eager"
    assert failed.run is not None  # counted before it failed: the resume keeps the counts
    assert load_results(directory / failed.run).status == "counted"
    kept = (directory / (pixel1.run or "") / "results.json").read_bytes()

    monkeypatch.setitem(BACKENDS._entries, "eager", eager)
    resumed = invoke("run", "--resume", str(directory), "--devices", "eager")
    assert resumed.exit_code == 0, resumed.output
    matrix = load_matrix(directory)
    assert [d.status for d in matrix.devices] == ["complete", "complete"]
    assert matrix.devices[1].run == failed.run and matrix.devices[1].error is None
    assert (directory / (pixel1.run or "") / "results.json").read_bytes() == kept


def _wait_for(condition: Any, process: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_device_killed_while_measuring_resumes_alone(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [
            *ABLATE,
            "run",
            str(tiny_spec),
            "--out",
            str(out),
            "--devices",
            "eager,torchscript,pixel1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )

    def torchscript_measuring() -> bool:
        journals = list(out.glob("*-matrix/torchscript/*/journal.jsonl"))
        return bool(journals) and journals[0].read_text().count("\n") >= 2

    try:
        _wait_for(torchscript_measuring, process, timeout_s=240)
    finally:
        process.kill()
        process.wait()
    (directory,) = out.iterdir()
    matrix = load_matrix(directory)
    eager, torchscript, pixel1 = matrix.devices
    assert (eager.status, torchscript.status, pixel1.status) == ("complete", "pending", "pending")
    assert torchscript.run is not None and pixel1.run is None  # recorded as soon as it began
    killed = directory / torchscript.run
    assert load_results(killed).status == "counted"
    rounds_before = (killed / "journal.jsonl").read_text().splitlines()
    eager_files = {
        path.name: path.read_bytes() for path in (directory / (eager.run or "")).iterdir()
    }

    resumed = invoke("run", "--resume", str(directory))
    assert resumed.exit_code == 0, resumed.output
    matrix = load_matrix(directory)
    assert [d.status for d in matrix.devices] == ["complete"] * 3
    assert matrix.devices[1].run == torchscript.run  # continued, not started again
    rounds_after = (killed / "journal.jsonl").read_text().splitlines()
    assert rounds_after[: len(rounds_before)] == rounds_before
    assert len(rounds_after) > len(rounds_before)
    # The complete device was not measured again: its run directory is byte for byte the same.
    assert {
        path.name: path.read_bytes() for path in (directory / (eager.run or "")).iterdir()
    } == eager_files


@pytest.mark.slow
def test_a_device_run_by_another_interpreter(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC + f"devices: [{{device: onnxruntime, python: {sys.executable}}}]\n")
    result = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    directory = _matrix_directory(result)
    (device,) = load_matrix(directory).devices
    assert (device.name, device.python, device.status) == (
        "onnxruntime",
        sys.executable,
        "complete",
    )
    assert device.run is not None and device.run.startswith("onnxruntime/")
    results = load_results(directory / device.run)
    assert results.measurement is not None and results.measurement.backend == "onnxruntime"
    assert "measured in" in result.output  # its progress, passed on


def test_a_device_whose_interpreter_fails_is_recorded(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC + "devices: [{device: eager, python: /bin/false}]\n")
    result = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 1
    (directory,) = (tmp_path / "runs").iterdir()
    (device,) = load_matrix(directory).devices
    assert device.status == "failed" and device.run is None
    assert device.error == "/bin/false -m ablate run exited with status 1"
    assert device.resume == f"ablate run --resume {directory} --devices eager"


def test_validate_estimates_the_devices_one_after_another(tiny_spec: Path) -> None:
    from ablate.runs.estimate import estimate_run
    from ablate.runs.runner import built_copies
    from ablate.services.matrix import matrix_estimate
    from ablate.spec import load_spec, with_overrides

    spec = load_spec(tiny_spec)
    copies = built_copies(ARCHITECTURES)
    eager = estimate_run(with_overrides(spec, backend="eager"), copies)
    torchscript = estimate_run(with_overrides(spec, backend="torchscript"), copies)
    devices = [parse_device("eager"), parse_device("torchscript"), parse_device("pixel1")]
    # Counting once: the second device's counting is not added.
    total = eager.total_seconds + torchscript.total_seconds - torchscript.count_seconds
    assert total < eager.total_seconds + torchscript.total_seconds
    assert matrix_estimate(spec, devices) == (
        f"the devices one after another: about {total:.0f} s with nothing cached, counting "
        f"once (eager {eager.total_seconds:.0f} s; torchscript {torchscript.total_seconds:.0f} "
        "s; pixel1 seconds (predicted))"
    )
    result = invoke("validate", str(tiny_spec))
    assert result.exit_code == 0
    assert "the devices one after another" not in result.output  # no devices: no matrix
