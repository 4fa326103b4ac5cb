"""Device profiles checked when read and when fitted: bad numbers and shapes are one line.

Issue 25, item 6: a NaN coefficient gave "nan ms", an overflowing residual an interval of NaN,
an all-zero profile a ZeroDivisionError mid-run. Each bad file here is the shipped profile
with one thing broken, written as any JSON writer (NaN and Infinity tokens included) would.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, form_choices
from ablate.devices.fit import Observation, fit_profile
from ablate.devices.profile import load_profile, profile_from_json, shipped_path
from ablate.devices.runs import coefficient_samples_ms, predicted_entry
from ablate.errors import InputFileError
from ablate.files import write_json_atomic
from tests.test_devices import _record

runner = CliRunner()
PIXEL1 = json.loads(shipped_path("pixel1").read_text())
CONV_KINDS = "stem_macs, dense_macs, pointwise_macs, depthwise_macs, linear_macs, ops"


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _zero_coefficients(data: dict[str, Any]) -> None:
    for parameter in data["parameters"]:
        parameter["value"] = 0.0


# (what is broken, the change, the line after "error: FILE: ")
BROKEN = [
    (
        "NaN coefficient",
        _set("parameters", 1, "value", value=math.nan),
        "parameters[1].value: Input should be a finite number (got nan)",
    ),
    (
        "Infinity residual",
        _set("bootstrap", "residuals", 7, value=math.inf),
        "bootstrap.residuals[7]: Input should be a finite number (got inf)",
    ),
    (
        # Finite, and a prediction from it overflows: an interval of NaN, invalid JSON.
        "residual that overflows",
        _set("bootstrap", "residuals", 21, value=1e308),
        "bootstrap.residuals[21]: Input should be less than or equal to 1000000000000000 "
        "(got 1e+308)",
    ),
    (
        "negative coefficient",
        _set("parameters", 2, "value", value=-3.0),
        "parameters[2].value: Input should be greater than or equal to 0 (got -3.0)",
    ),
    (
        "NaN in a bootstrap resample",
        _set("bootstrap", "coefficients", 3, 0, value=math.nan),
        "bootstrap.coefficients[3][0]: Input should be a finite number (got nan)",
    ),
    (
        "a row's latency of 1e308 ms",
        _set("rows", 0, "latency_ms", value=1e308),
        "rows[0].latency_ms: Input should be less than or equal to 86400000 (got 1e+308)",
    ),
    (
        "five coefficients for a six-term form",
        lambda data: data["parameters"].pop(3),
        "parameters: the file has 5 terms (stem_macs, dense_macs, pointwise_macs, linear_macs, "
        f"ops); cost model 'conv_kinds' has 6, in this order; valid: {CONV_KINDS}",
    ),
    (
        "the form of another term list",
        _set("form", value="macs"),
        f"parameters: the file has 6 terms ({CONV_KINDS}); cost model 'macs' has 2, in this "
        "order; valid: macs, ops",
    ),
    (
        "an unknown form",
        _set("form", value="quantum"),
        "form: unknown cost model 'quantum'; valid: " + form_choices(),
    ),
    (
        "a bootstrap resample one coefficient short",
        lambda data: data["bootstrap"]["coefficients"][4].pop(),
        f"bootstrap.coefficients[4]: 5 coefficients; the cost model has 6: {CONV_KINDS}",
    ),
    (
        "one residual fewer than resamples",
        lambda data: data["bootstrap"]["residuals"].pop(),
        "bootstrap.residuals: 199 residuals for 200 coefficient resamples; one per resample",
    ),
    (
        "every coefficient 0",
        _zero_coefficients,
        "parameters: every coefficient is 0: the profile predicts no time",
    ),
    (
        "a unit from another term",
        _set("parameters", 5, "unit", value="ms/GB"),
        "parameters[5].unit: 'ms/GB' is not ops's unit; valid: ms/op",
    ),
    (
        "batch 0",
        _set("batch", value=0),
        "batch: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "a missing field",
        lambda data: data["quality"].pop("rows"),
        "quality.rows: Field required",
    ),
    (
        "a row count that disagrees",
        _set("quality", "rows", value=24),
        "quality.rows: 24, but the profile has 23 rows",
    ),
]


def _broken_profile(path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    data = copy.deepcopy(PIXEL1)
    change(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN and Infinity as tokens
    return path


@pytest.mark.parametrize(("case", "change", "expected"), BROKEN, ids=[case[0] for case in BROKEN])
def test_a_broken_profile_is_one_line_naming_file_and_key(
    tmp_path: Path,
    case: str,
    change: Callable[[dict[str, Any]], Any],
    expected: str,
) -> None:
    path = _broken_profile(tmp_path / "bad.json", change)
    result = runner.invoke(app, ["predict", "mobilenet_v3_small", "--device", str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    assert result.stdout == ""
    assert result.stderr == f"error: {path}: {expected}\n"


def test_the_shipped_profile_passes_every_check() -> None:
    assert profile_from_json(copy.deepcopy(PIXEL1)) == load_profile("pixel1")


def test_devices_lists_the_good_profiles_and_names_the_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(tmp_path))
    good = copy.deepcopy(PIXEL1)
    good["name"] = "phone"
    (tmp_path / "phone.json").write_text(json.dumps(good))
    bad = _broken_profile(tmp_path / "broken.json", BROKEN[0][1])
    (tmp_path / "zzz.json").write_text(json.dumps({**good, "name": "zzz"}))

    listed = runner.invoke(app, ["devices", "--json"])
    assert listed.exit_code == 2
    assert [entry["name"] for entry in json.loads(listed.stdout)] == ["pixel1", "phone", "zzz"]
    assert listed.stderr == (
        f"error: {bad}: parameters[1].value: Input should be a finite number (got nan)\n"
    )

    table = runner.invoke(app, ["devices"])
    assert table.exit_code == 2
    assert "phone" in table.stdout and "zzz" in table.stdout and "broken" not in table.stdout
    assert table.stderr == listed.stderr

    # The good ones still predict; the bad one by name is the same one line.
    assert runner.invoke(app, ["predict", "mobilenet_v3_small", "--device", "phone"]).exit_code == 0
    by_name = runner.invoke(app, ["predict", "mobilenet_v3_small", "--device", "broken"])
    assert by_name.exit_code == 2 and by_name.stderr == listed.stderr


def test_a_fit_that_predicts_nothing_is_refused_naming_its_rows() -> None:
    # Networks with no kernel at all (views only): every feature is 0, so every coefficient
    # is 0 and every leave-one-out residual is latency / 0.
    observations = [
        Observation(
            f"net{index}",
            "synthetic",
            {},
            1.0 + index,
            "synthetic",
            index,
            (_record(0, Kind.VIEW, "stem"),),
        )
        for index in range(4)
    ]
    with pytest.raises(InputFileError) as error:
        fit_profile(observations, name="empty", description="test", origin="empty.csv")
    assert str(error.value) == (
        "empty.csv: the profile fitted from it is not usable: bootstrap.residuals[0]: "
        "Input should be a finite number (got inf)"
    )


def test_a_baseline_predicted_at_0_ms_gets_no_ratio() -> None:
    # Valid: only the linear layers cost time. A network without one is predicted at 0 ms.
    data = copy.deepcopy(PIXEL1)
    linear = FORMS["conv_kinds"].term_names.index("linear_macs")
    for index, parameter in enumerate(data["parameters"]):
        if index != linear:
            parameter["value"] = 0.0
            for sample in data["bootstrap"]["coefficients"]:
                sample[index] = 0.0
    for sample in data["bootstrap"]["coefficients"]:
        sample[linear] = sample[linear] or 1.0
    profile = profile_from_json(data)
    convs = (_record(0, Kind.CONV_POINTWISE, "blocks.0", macs=10**6, moved=10**4),)
    classifier = (*convs, _record(1, Kind.LINEAR, "classifier", macs=10**6, moved=10**4))
    baseline = coefficient_samples_ms(profile, convs)
    assert set(baseline) == {0.0}
    samples = coefficient_samples_ms(profile, classifier)
    entry = predicted_entry(profile, classifier, samples, baseline, 0.0)
    linear_rate = data["parameters"][linear]["value"]  # ms per GMAC; 1e-3 GMAC here
    assert linear_rate > 0
    assert entry.median_ms == pytest.approx(linear_rate * 1e-3)
    assert entry.ratio_to_baseline is None and entry.significant is None


def test_json_never_carries_nan_or_infinity(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic(path, {"median_ms": math.nan})
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
