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
