"""Keys, types, ranges and defaults of the spec document (everything except factor values)."""

from __future__ import annotations

import pytest

from ablate.errors import InputFileError
from ablate.measurement.backends import BACKENDS
from ablate.spec import defaults, load_spec_text

VARIANTS = "variants:\n  a: {}\n"


def error_of(text: str) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(text, "spec.yaml")
    return caught.value


def message(text: str) -> str:
    return str(error_of(text))


def measure_message(settings: str) -> str:
    return message(f"name: t\n{VARIANTS}measure:\n  {settings}\n")


def test_every_default_comes_from_the_defaults_module() -> None:
    spec = load_spec_text(f"name: t\n{VARIANTS}")
    assert spec.description is None
    assert spec.base == defaults.BASE
    assert (spec.input.resolution, spec.input.batch) == (defaults.RESOLUTION, defaults.BATCH)
    measure = spec.measure
    assert measure.backend == defaults.BACKEND
    assert measure.device == defaults.DEVICE
    assert measure.threads == defaults.THREADS
    assert measure.channels_last is defaults.CHANNELS_LAST
    assert measure.target_ci == defaults.TARGET_CI
    assert defaults.STOP_ON == "auto" and measure.stop_on == "ratios"  # no attribution here
    assert measure.budget_s == defaults.BUDGET_S
    assert measure.warmup_s == defaults.WARMUP_S
    assert measure.settle_s == defaults.SETTLE_S == 0.2
    assert measure.min_rounds == defaults.MIN_ROUNDS
    assert measure.max_rounds == defaults.MAX_ROUNDS
    assert measure.seed == defaults.MEASURE_SEED
    assert measure.quick is defaults.QUICK
    assert measure.kernels is defaults.KERNELS
    assert spec.attribution is None and spec.grid is None


def test_all_settings_given() -> None:
    spec = load_spec_text(
        "name: v3.study_1-b\n"
        "description: does h-swish pay?\n"
        "base: mobilenet_v2\n"
        "input: {resolution: 160, batch: 4}\n"
        "measure: {backend: torchscript, device: cuda, threads: 2, channels_last: true,\n"
        "          target_ci: 0.02, budget_s: 30, warmup_s: 2.5, settle_s: 0.5, min_rounds: 10,\n"
        "          max_rounds: 500, seed: 7, quick: true}\n"
        f"{VARIANTS}"
    )
    assert spec.name == "v3.study_1-b"
    assert spec.description == "does h-swish pay?"
    assert spec.base == "mobilenet_v2"
    assert (spec.input.resolution, spec.input.batch) == (160, 4)
    assert spec.measure.to_json() == {
        "backend": "torchscript",
        "precision": "fp32",
        "device": "cuda",
        "threads": 2,
        "channels_last": True,
        "target_ci": 0.02,
        "stop_on": "ratios",
        "budget_s": 30.0,
        "warmup_s": 2.5,
        "settle_s": 0.5,
        "min_rounds": 10,
        "max_rounds": 500,
        "seed": 7,
        "quick": True,
        "kernels": False,
    }
    assert isinstance(spec.measure.budget_s, float)  # an integer is a number of seconds too


# -- unknown keys ----------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    assert message("name: t\nvarients:\n  a: {}\n") == (
        "spec.yaml:2: varients: unknown key; valid: name, description, base, model, args, "
        "architectures, input, measure, baseline, variants, grid, attribution, devices"
    )


def test_unknown_measure_key() -> None:
    assert measure_message("thread: 2") == (
        "spec.yaml:5: measure.thread: unknown key; valid: backend, precision, device, "
        "threads, channels_last, target_ci, stop_on, budget_s, warmup_s, settle_s, min_rounds, "
        "max_rounds, seed, quick, kernels"
    )


def test_unknown_input_key() -> None:
    assert message(f"name: t\ninput: {{resolution: 224, size: 3}}\n{VARIANTS}") == (
        "spec.yaml:2: input.size: unknown key; valid: resolution, batch"
    )


def test_unknown_attribution_key() -> None:
    error = error_of(
        "name: t\nattribution:\n  from: mobilenet_v2\n  to: mobilenet_v3_large\n"
        "  factors: [kernel]\n  order: [kernel]\n"
    )
    assert (error.line, error.key_path) == (6, "attribution.order")
    assert error.choices == (
        "from",
        "to",
        "factors",
        "method",
        "permutations",
        "seed",
        "reference",
    )


# -- measure ---------------------------------------------------------------------------


def test_threads_must_be_positive() -> None:
    assert measure_message("threads: 0") == (
        "spec.yaml:5: measure.threads: must be at least 1 (got 0)"
    )


@pytest.mark.parametrize(
    ("value", "shown"), [("'2'", "'2'"), ("2.0", "2.0"), ("yes", "True"), ("[2]", "[2]")]
)
def test_threads_type_is_strict(value: str, shown: str) -> None:
    assert measure_message(f"threads: {value}") == (
        f"spec.yaml:5: measure.threads: expected an integer (got {shown})"
    )


def test_backend_choices_come_from_the_measurement_registry() -> None:
    error = error_of(f"name: t\n{VARIANTS}measure: {{backend: tensorrt}}\n")
    assert str(error) == (
        "spec.yaml:4: measure.backend: unknown backend (got 'tensorrt'); valid: eager, "
        "torchscript, onnxruntime, compile, executorch, litert"
    )
    assert error.choices == tuple(BACKENDS.names())


def test_device() -> None:
    assert measure_message("device: tpu") == (
        "spec.yaml:5: measure.device: unknown device (got 'tpu'); valid: cpu, cuda"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "must be greater than 0 (got 0)"),
        ("-0.01", "must be greater than 0 (got -0.01)"),
        ("0.5", "must be less than 0.5 (got 0.5)"),
        (".nan", "expected a finite number (got nan)"),
        ("'1%'", "expected a number (got '1%')"),
    ],
)
def test_target_ci_is_in_the_open_interval_0_to_half(value: str, reason: str) -> None:
    assert measure_message(f"target_ci: {value}") == f"spec.yaml:5: measure.target_ci: {reason}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "must be greater than 0 (got 0)"),
        ("-5", "must be greater than 0 (got -5)"),
        (".inf", "expected a finite number (got inf)"),
        ("null", "expected a number (got None)"),
    ],
)
def test_budget_must_be_positive_and_finite(value: str, reason: str) -> None:
    assert measure_message(f"budget_s: {value}") == f"spec.yaml:5: measure.budget_s: {reason}"


def test_rounds() -> None:
    assert measure_message("min_rounds: 5") == (
        "spec.yaml:5: measure.min_rounds: must be at least 6 (got 5)"
    )
    assert message(f"name: t\n{VARIANTS}measure:\n  min_rounds: 30\n  max_rounds: 10\n") == (
        "spec.yaml:6: measure.max_rounds: must be at least min_rounds (30) (got 10)"
    )


def test_booleans_are_strict() -> None:
    assert measure_message("quick: 'yes'") == (
        "spec.yaml:5: measure.quick: expected true or false (got 'yes')"
    )
    assert measure_message("channels_last: 1") == (
        "spec.yaml:5: measure.channels_last: expected true or false (got 1)"
    )


def test_seed_and_warmup() -> None:
    assert measure_message("seed: -1") == "spec.yaml:5: measure.seed: must be at least 0 (got -1)"
    assert measure_message("warmup_s: 0") == (
        "spec.yaml:5: measure.warmup_s: must be greater than 0 (got 0)"
    )
    assert measure_message("settle_s: -0.1") == (
        "spec.yaml:5: measure.settle_s: must be at least 0 (got -0.1)"
    )
    assert measure_message("settle_s: 11") == (
        "spec.yaml:5: measure.settle_s: must be at most 10 (got 11)"
    )


def test_section_given_as_null_or_scalar() -> None:
    assert message(f"name: t\n{VARIANTS}measure:\n") == (
        "spec.yaml:4: measure: expected a mapping (got None)"
    )
    assert message(f"name: t\n{VARIANTS}input: 224\n") == (
        "spec.yaml:4: input: expected a mapping (got 224)"
    )


def test_quick_caps_the_effective_settings() -> None:
    spec = load_spec_text(f"name: t\n{VARIANTS}measure: {{quick: true, budget_s: 300}}\n")
    effective = spec.measure.effective()
    assert effective.budget_s == defaults.QUICK_BUDGET_S
    assert effective.warmup_s == defaults.QUICK_WARMUP_S
    assert effective.settle_s == defaults.QUICK_SETTLE_S == 0.0  # one untimed call
    assert effective.min_rounds == defaults.QUICK_MIN_ROUNDS
    assert spec.measure.budget_s == 300  # the spec itself keeps what was written
    plain = load_spec_text(f"name: t\n{VARIANTS}")
    assert plain.measure.effective() is plain.measure


# -- input, name, base, description ----------------------------------------------------


def test_input() -> None:
    assert message(f"name: t\ninput: {{resolution: 16}}\n{VARIANTS}") == (
        "spec.yaml:2: input.resolution: must be at least 32 (got 16)"
    )
    assert message(f"name: t\ninput: {{resolution: 4096}}\n{VARIANTS}") == (
        "spec.yaml:2: input.resolution: must be at most 2048 (got 4096)"
    )
    assert message(f"name: t\ninput:\n  batch: 0\n{VARIANTS}") == (
        "spec.yaml:3: input.batch: must be at least 1 (got 0)"
    )


def test_name_is_required() -> None:
    assert message(VARIANTS) == "spec.yaml: name: missing required key"


@pytest.mark.parametrize("name", ["'my study'", "a/b", "'..'", "'.'", "ümlaut"])
def test_name_must_be_usable_as_a_directory(name: str) -> None:
    error = error_of(f"{VARIANTS}name: {name}\n")
    assert (error.line, error.key_path) == (3, "name")
    assert "expected letters, digits, '.', '_' or '-' only (it names a directory)" in str(error)


def test_name_type_and_length() -> None:
    assert message(f"name: 2024\n{VARIANTS}") == "spec.yaml:1: name: expected a string (got 2024)"
    assert message(f"name: {'x' * 101}\n{VARIANTS}").startswith(
        "spec.yaml:1: name: must be at most 100 characters (got 'xxx"
    )


def test_base_must_be_a_built_in_architecture() -> None:
    assert message(f"name: t\nbase: mobilenet_v4\n{VARIANTS}") == (
        "spec.yaml:2: base: unknown architecture (got 'mobilenet_v4'); valid: mobilenet_v1, "
        "mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, mnasnet_a1, "
        "mobilenet_v4_conv_small, mobilenet_v4_conv_medium, ssdlite_mobilenet_v1, "
        "ssdlite_mobilenet_v2, ssdlite_mobilenet_v3_large, ssdlite_mobilenet_v3_small, "
        "ssdlite_mobilenet_v3_large_reduced, ssdlite_mobilenet_v3_small_reduced, "
        "ssdlite_mnasnet_a1, ssd_mobilenet_v1"
    )


def test_description_must_be_text() -> None:
    assert message(f"name: t\ndescription: [a, b]\n{VARIANTS}") == (
        "spec.yaml:2: description: expected a string (got ['a', 'b'])"
    )


def test_long_values_are_shortened_in_messages() -> None:
    text = message(f"name: t\n{VARIANTS}measure:\n  threads: [{', '.join(['1'] * 60)}]\n")
    assert text.endswith("(got [1, 1, 1, 1, 1, 1, ...])")
    assert len(text) < 140


def test_the_first_problem_in_the_file_is_reported() -> None:
    text = f"name: t\n{VARIANTS}measure:\n  threads: 0\ninput:\n  batch: 0\n"
    assert message(text) == "spec.yaml:5: measure.threads: must be at least 1 (got 0)"
