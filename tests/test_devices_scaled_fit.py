"""A profile for a runtime that times no kernel, from one that ran the same kernel library
(issue 27: LiteRT borrows ExecuTorch's kernel costs): the reference's costs times one scale,
fitted to whole-network latencies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.devices.fit import fit_profile, fit_scaled
from ablate.devices.predict import predict_records
from ablate.devices.profile import write_profile
from ablate.errors import AblateError
from tests.test_devices_kernel_fit import FORM, _observations, counted  # noqa: F401

SCALE = 0.8


@pytest.fixture(scope="module")
def reference(counted: list):  # noqa: F811
    return fit_profile(
        _observations(counted, noise=0.0, profiler_overhead=0.0),
        name="reference",
        description="exact kernels",
        form_name=FORM.name,
    )


def _scaled_rows(counted: list, noise: float) -> list:  # noqa: F811
    """The same networks on a runtime SCALE times as fast, timed whole (no kernels)."""
    generator = np.random.default_rng(1)
    rows = _observations(counted, noise=0.0, profiler_overhead=0.0, kernels=False)
    return [
        type(row)(
            **{
                **row.__dict__,
                "latency_ms": row.latency_ms * SCALE * (1 + generator.normal(0, noise)),
            }
        )
        for row in rows
    ]


def test_an_exact_scale_is_recovered_and_every_coefficient_carries_it(
    counted: list,  # noqa: F811
    reference,
) -> None:
    rows = _scaled_rows(counted, noise=0.0)
    profile = fit_scaled(rows, reference, name="borrowed", description="scaled")
    assert profile.form == reference.form
    for mine, theirs in zip(profile.coefficients, reference.coefficients, strict=True):
        assert mine == pytest.approx(SCALE * theirs, rel=1e-9)
    assert profile.quality.loo_max_abs_error == pytest.approx(0.0, abs=1e-9)
    assert profile.quality.kernel_rows == 0
    assert "times one scale, 0.800 [0.800, 0.800]" in profile.quality.selection
    for row in rows:
        assert predict_records(profile, row.records).ms == pytest.approx(row.latency_ms, rel=1e-9)
    assert [row.name for row in profile.rows] == [row.name for row in rows]
    assert profile.absorbed == reference.absorbed


def test_a_noisy_scale_is_within_its_interval(counted: list, reference) -> None:  # noqa: F811
    rows = _scaled_rows(counted, noise=0.03)
    profile = fit_scaled(rows, reference, name="borrowed", description="scaled")
    scale = profile.coefficients[0] / reference.coefficients[0]
    assert scale == pytest.approx(SCALE, rel=0.03)
    low, high = (float(x) for x in profile.quality.selection.split("[")[1].split("]")[0].split(","))
    assert low <= SCALE <= high
    # Leave one architecture out: every row is predicted from the others' scale, within
    # what 3% noise on ten rows allows.
    assert 0 < profile.quality.loo_median_abs_error < 0.05


def test_fewer_than_two_networks_are_refused(counted: list, reference) -> None:  # noqa: F811
    message = "a scale needs the latencies of at least 2 networks"
    with pytest.raises(AblateError, match=message):
        fit_scaled([], reference, name="borrowed", description="scaled")
    with pytest.raises(AblateError, match=message):
        fit_scaled(_scaled_rows(counted, 0.0)[:1], reference, name="b", description="s")


def test_fit_device_like_refuses_an_unknown_profile_and_a_form_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference
) -> None:
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(tmp_path / "devices"))
    run = tmp_path / "run"
    run.mkdir()
    runner = CliRunner()
    result = runner.invoke(app, ["fit-device", "x", "--from", str(run), "--like", "nosuch"])
    assert result.exit_code == 2
    assert "nosuch" in result.output and "Traceback" not in result.output
    write_profile(reference, tmp_path / "devices" / "reference.json")
    result = runner.invoke(
        app, ["fit-device", "x", "--from", str(run), "--like", "reference", "--form", "macs"]
    )
    assert result.exit_code == 2
    assert "--form and --like: give one" in result.output


def test_calibrate_like_an_unknown_profile_is_refused_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(tmp_path / "devices"))
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        ["calibrate", "--backend", "eager", "--name", "x", "--out", str(out), "--like", "nosuch"],
    )
    assert result.exit_code == 2
    assert "nosuch" in result.output
    assert not out.exists()


def test_a_written_scaled_profile_reads_back(tmp_path: Path, counted: list, reference) -> None:  # noqa: F811
    profile = fit_scaled(_scaled_rows(counted, 0.0), reference, name="b", description="s")
    path = tmp_path / "b.json"
    write_profile(profile, path)
    assert json.loads(path.read_text())["quality"]["selection"] == profile.quality.selection
