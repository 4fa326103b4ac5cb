"""benchmarks/calibration_accuracy.py's sign test: a share predicted at 0 has no sign."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).parent.parent / "benchmarks" / "calibration_accuracy.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibration_accuracy", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["calibration_accuracy"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("predicted", "interval", "agree"),
    [
        (-1.0, (-3.3, -2.6), True),
        (+1.0, (-3.3, -2.6), False),
        (-1e-15, (-3.3, -2.6), False),  # ONNX Runtime's absorbed activations: 0, not "-0"
        (0.0, (2.1, 2.7), False),
        (-0.004, (-3.3, -2.6), False),  # shows as -0.00
        (-0.006, (-3.3, -2.6), True),
        (+5.0, (-0.03, 0.52), True),  # the measured interval holds 0: no sign to agree with
        (-5.0, (-0.03, 0.52), True),
    ],
)
def test_a_share_agrees_only_with_a_sign_of_its_own(
    script: ModuleType, predicted: float, interval: tuple[float, float], agree: bool
) -> None:
    assert script.signs_agree({"f": predicted}, {"f": interval}) is agree


def test_every_factor_must_agree(script: ModuleType) -> None:
    intervals = {"a": (1.0, 2.0), "b": (-2.0, -1.0)}
    assert script.signs_agree({"a": 1.5, "b": -1.5}, intervals)
    assert not script.signs_agree({"a": 1.5, "b": 0.0}, intervals)


# Slow: fits the whole-network forms with leave-one-out and its nested selection (seconds).
@pytest.mark.slow
def test_like_judges_the_reference_costs_times_one_scale(script: ModuleType) -> None:
    """LiteRT's row: no kernel times, so the calibrated profile is an ExecuTorch profile's
    kernel costs times the one scale its latencies fix (`fit-device --like`)."""
    from dataclasses import replace

    from ablate.devices.costs import FORMS
    from ablate.devices.fit import fit_profile
    from ablate.devices.predict import predict_records
    from tests.synthetic_kernels import exact_observations
    from tests.test_devices_elementwise_kinds import NETWORKS, TRUTH

    form = FORMS["kernel_sizes_bytes_elementwise_kinds"]
    timed = exact_observations(NETWORKS, form, TRUTH)
    reference = fit_profile(timed, name="host-et", description="kernels")
    # The same networks on a runtime 10% slower, latencies only.
    slower = [
        replace(o, latency_ms=1.1 * o.latency_ms, kernels=(), profiled_ms=None, kernel_match=None)
        for o in timed
    ]
    judged = script.calibrated_profile(slower, "fused", 1, like=reference)
    assert judged.form == reference.form
    for observation in slower:
        predicted = predict_records(judged, observation.records).ms
        assert predicted == pytest.approx(observation.latency_ms, rel=1e-6)
    # Fitted on its own latencies instead, the calibrated profile is no scaled copy.
    own = script.calibrated_profile(slower, "fused", 1)
    assert own.form != reference.form


# A subprocess each (the script imports torch): in CI, not in the daily suite.
@pytest.mark.slow
def test_form_and_like_are_one_or_the_other() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, str(_PATH), "cal", "full", "--form", "macs", "--like", "host-et"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not allowed with argument --form" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--like", "no-such-profile"], "no-such-profile"),
        (["--form", "no_such_form"], "invalid choice: 'no_such_form'"),
        ([], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, arguments: list[str], says: str) -> None:
    import subprocess

    missing = [str(tmp_path / "calibration"), str(tmp_path / "full")]
    result = subprocess.run(
        [sys.executable, str(_PATH), *missing, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and says in result.stderr


def _latency(median: float, iqr: float, *flags: str) -> object:
    from types import SimpleNamespace

    from ablate.runs.schema import Flag, Latency

    latency = Latency(
        median_ms=median,
        iqr_ms=iqr,
        ci95_ms=(median, median),
        rounds=20,
        ratio_to_baseline=None,
        significant=None,
        flags=[Flag(name=name, detail="") for name in flags],
    )
    return SimpleNamespace(latency=latency)


def test_a_run_whose_latencies_mostly_moved_is_called_unsteady(script: ModuleType) -> None:
    from types import SimpleNamespace

    steady = script.steadiness(
        SimpleNamespace(
            variants=[
                _latency(10.0, 0.2),
                _latency(20.0, 1.0, "drift"),
                _latency(5.0, 0.2),
                SimpleNamespace(latency=None),  # a predicted or failed variant
            ]
        )
    )
    assert (steady.latencies, steady.flagged, steady.unsteady) == (3, {"drift": 1}, False)
    assert steady.median_iqr == pytest.approx(0.04)  # 2%, 5%, 4%
    assert steady.describe() == ("3 latencies, median IQR 4.0% of the median, flagged: drift 1")
    # Eager's full run of 11:28: every latency's IQR above 10% of its median.
    unsteady = script.steadiness(
        SimpleNamespace(
            variants=[_latency(17.0, 2.0, "high_iqr"), _latency(15.0, 1.8, "high_iqr", "drift")]
        )
    )
    assert unsteady.unsteady and unsteady.flagged == {"high_iqr": 2, "drift": 1}
    assert unsteady.moved == 2  # two latencies moved, one of them both ways
    assert unsteady.describe().endswith(
        "flagged: drift 1, high_iqr 2 (unsteady: half or more moved)"
    )
    # Half is enough, as for a profile fitted on the run; a flag that says nothing about the
    # level (a wide interval) is not a move.
    half = script.steadiness(
        SimpleNamespace(variants=[_latency(1.0, 0.0, "drift"), _latency(1.0, 0.0)])
    )
    assert half.unsteady
    wide = script.steadiness(
        SimpleNamespace(variants=[_latency(1.0, 0.0, "wide_interval"), _latency(1.0, 0.0)])
    )
    assert (wide.moved, wide.unsteady) == (0, False)
