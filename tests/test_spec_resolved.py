"""The resolved spec (`to_json`), immutability, and command-line overrides."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ablate.errors import InputFileError
from ablate.measurement.backends import BACKENDS
from ablate.spec import ExperimentSpec, load_spec_text, with_overrides

TEXT = (
    "name: mixed\n"
    "description: every section\n"
    "input: {resolution: 192}\n"
    "measure: {budget_s: 30, threads: 2}\n"
    "baseline: published\n"
    "variants:\n"
    "  published: {}\n"
    "  hswish@16: {activation: {early: relu, late: hswish, from_channels: 16}}\n"
    "  v2: {base: mobilenet_v2, kernel: [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5]}\n"
    "grid:\n"
    "  se: [on, off]\n"
    "attribution:\n"
    "  from: mobilenet_v2\n"
    "  to: mobilenet_v3_small\n"
    "  factors: [layout, kernel]\n"
)


def comparable(spec: ExperimentSpec) -> list[tuple[object, ...]]:
    return [
        (variant.name, variant.base, variant.factors, variant.source_key_path, variant.architecture)
        for variant in spec.variants
    ]


def test_resolved_spec_has_every_default_filled_in() -> None:
    resolved = load_spec_text(TEXT).to_json()
    assert resolved == {
        "name": "mixed",
        "description": "every section",
        "base": "mobilenet_v3_large",
        "input": {"resolution": 192, "batch": 1},
        "measure": {
            "backend": "eager",
            "precision": "fp32",
            "device": "cpu",
            "threads": 2,
            "channels_last": False,
            "target_ci": 0.01,
            # `auto` resolved: the spec has an attribution section.
            "stop_on": "attribution",
            "budget_s": 30.0,
            "warmup_s": 10.0,
            "settle_s": 0.2,
            "min_rounds": 20,
            "max_rounds": None,
            "seed": 0,
            "quick": False,
            "kernels": False,
        },
        "baseline": "published",
        "variants": {
            "published": {"base": "mobilenet_v3_large", "resolution": 192},
            "hswish@16": {
                "base": "mobilenet_v3_large",
                "activation": {"early": "relu", "late": "hswish", "from_channels": 16},
                "resolution": 192,
            },
            "v2": {
                "base": "mobilenet_v2",
                "kernel": [3] * 16 + [5],
                "resolution": 192,
            },
        },
        "grid": {"se": [True, False]},
        "attribution": {
            "from": "mobilenet_v2",
            "to": "mobilenet_v3_small",
            "factors": ["layout", "kernel"],
            "method": "auto",
            "permutations": 1000,
            "seed": 0,
        },
    }


def test_resolved_spec_is_json_and_loads_back_as_the_same_spec() -> None:
    spec = load_spec_text(TEXT)
    text = json.dumps(spec.to_json())  # JSON is YAML
    again = load_spec_text(text)
    assert again.to_json() == spec.to_json()
    assert comparable(again) == comparable(spec)
    assert again.baseline == spec.baseline


def test_resolved_spec_is_a_copy() -> None:
    spec = load_spec_text(TEXT)
    resolved = spec.to_json()
    resolved["variants"]["v2"]["kernel"].append(7)
    resolved["grid"]["se"].clear()
    assert spec.to_json()["variants"]["v2"]["kernel"][-1] == 5
    assert spec.grid == {"se": (True, False)}
    assert spec.variant("v2").to_json()["factors"]["kernel"] == [3] * 16 + [5]


def test_variant_json() -> None:
    variant = load_spec_text(TEXT).variant("se=off")
    assert variant.to_json() == {
        "name": "se=off",
        "base": "mobilenet_v3_large",
        "factors": {"se": False, "resolution": 192},
        "source_key_path": "grid",
    }


def test_specs_are_frozen_and_keep_the_text() -> None:
    spec = load_spec_text(TEXT, "given.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.measure.threads = 4  # type: ignore[misc]
    assert spec.source_text == TEXT
    assert spec.source_path is None and spec.source_label == "given.yaml"


def test_unknown_variant_lookup() -> None:
    with pytest.raises(KeyError, match="unknown variant 'nope'"):
        load_spec_text(TEXT).variant("nope")


# -- overrides -------------------------------------------------------------------------


def test_overrides_replace_measure_settings_only() -> None:
    spec = load_spec_text(TEXT)
    changed = with_overrides(
        spec, backend="torchscript", threads=1, quick=True, budget_s=5, kernels=True
    )
    assert (changed.measure.backend, changed.measure.threads) == ("torchscript", 1)
    assert changed.measure.kernels is True and spec.measure.kernels is False
    assert changed.measure.quick is True and changed.measure.budget_s == 5.0
    assert changed.measure.target_ci == spec.measure.target_ci
    assert comparable(changed) == comparable(spec)
    assert changed.to_json()["measure"]["backend"] == "torchscript"
    assert with_overrides(spec) is spec


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"threads": 0},
            "spec.yaml: measure.threads: must be at least 1 (got 0) (command-line override)",
        ),
        (
            {"backend": "tensorrt"},
            "spec.yaml: measure.backend: unknown backend (got 'tensorrt') (command-line "
            f"override); valid: {', '.join(BACKENDS.names())}",
        ),
        (
            {"target_ci": 0.7},
            "spec.yaml: measure.target_ci: must be less than 0.5 (got 0.7) (command-line override)",
        ),
        (
            {"max_rounds": 10},
            "spec.yaml: measure.max_rounds: must be at least min_rounds (20) (got 10) "
            "(command-line override)",
        ),
    ],
)
def test_overrides_are_validated_like_the_file(overrides: dict, expected: str) -> None:
    spec = load_spec_text(TEXT, "spec.yaml")
    with pytest.raises(InputFileError) as caught:
        with_overrides(spec, **overrides)
    assert str(caught.value) == expected


# -- what the target judges (measure.stop_on) ------------------------------------------

NO_ATTRIBUTION = "name: plain\nvariants:\n  a: {}\n  b: {se: off}\n"


@pytest.mark.parametrize(
    ("text", "given", "resolved"),
    [
        (TEXT, None, "attribution"),
        (TEXT, "ratios", "ratios"),
        (TEXT, "attribution", "attribution"),
        (NO_ATTRIBUTION, None, "ratios"),
        (NO_ATTRIBUTION, "auto", "ratios"),
        (NO_ATTRIBUTION, "ratios", "ratios"),
    ],
)
def test_stop_on_auto_is_resolved_by_whether_there_is_an_attribution(
    text: str, given: str | None, resolved: str
) -> None:
    if given is not None:
        text = text.replace("name: ", f"measure: {{stop_on: {given}}}\nname: ", 1)
        text = text.replace("measure: {budget_s: 30, threads: 2}\n", "")
    spec = load_spec_text(text)
    assert spec.measure.stop_on == resolved
    # The resolved value is what is stored, and it loads back unchanged.
    assert load_spec_text(json.dumps(spec.to_json())).measure.stop_on == resolved


@pytest.mark.parametrize(
    ("measure", "expected"),
    [
        (
            "{stop_on: attribution}",
            "spec.yaml:1: measure.stop_on: the spec has no attribution section to judge "
            "(got 'attribution'); valid: auto, ratios",
        ),
        (
            "{stop_on: shapley}",
            "spec.yaml:1: measure.stop_on: unknown stop_on (got 'shapley'); valid: auto, "
            "ratios, attribution",
        ),
    ],
)
def test_stop_on_errors_name_the_key_and_the_choices(measure: str, expected: str) -> None:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(f"measure: {measure}\n{NO_ATTRIBUTION}", "spec.yaml")
    assert str(caught.value) == expected


def test_overrides_keep_the_resolved_stop_on() -> None:
    for text, resolved in ((TEXT, "attribution"), (NO_ATTRIBUTION, "ratios")):
        assert with_overrides(load_spec_text(text), budget_s=5).measure.stop_on == resolved
