"""Listed variants: factors, the resolution default, resolved architectures, factor errors
mapped to key paths and lines, the baseline."""

from __future__ import annotations

import pytest

from ablate.architecture.description import ACTIVATIONS
from ablate.architecture.tables import ARCHITECTURES
from ablate.errors import InputFileError
from ablate.spec import load_spec_text
from ablate.variants.resolve import resolve_architecture

ARCHITECTURE_CHOICES = (
    "mobilenet_v1, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, mnasnet_a1, "
    "mobilenet_v4_conv_small, mobilenet_v4_conv_medium, "
    "ssdlite_mobilenet_v1, ssdlite_mobilenet_v2, ssdlite_mobilenet_v3_large, "
    "ssdlite_mobilenet_v3_small, ssdlite_mobilenet_v3_large_reduced, "
    "ssdlite_mobilenet_v3_small_reduced, ssdlite_mnasnet_a1, ssd_mobilenet_v1"
)


def error_of(text: str) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(text, "spec.yaml")
    return caught.value


def message(text: str) -> str:
    return str(error_of(text))


def test_example_variants() -> None:
    spec = load_spec_text(
        "name: hswish-placement\n"
        "base: mobilenet_v3_large\n"
        "baseline: published\n"
        "variants:\n"
        "  published: {}\n"
        "  relu: {activation: relu}\n"
        "  hswish@16: {activation: {early: relu, late: hswish, from_channels: 16}}\n"
        "  v2: {base: mobilenet_v2}\n"
        "  small: {resolution: 160}\n"
    )
    assert spec.variant_names == ("published", "relu", "hswish@16", "v2", "small")
    relu = spec.variant("relu")
    assert relu.base == "mobilenet_v3_large"
    assert relu.factors == {"activation": "relu", "resolution": 224}
    assert relu.source_key_path == "variants.relu"
    assert relu.architecture == resolve_architecture("mobilenet_v3_large", {"activation": "relu"})
    assert spec.variant("v2").base == "mobilenet_v2"
    assert "base" not in spec.variant("v2").factors
    assert spec.variant("v2").architecture == ARCHITECTURES["mobilenet_v2"]
    assert spec.variant("small").factors == {"resolution": 160}
    assert spec.variant("small").architecture.resolution == 160
    assert spec.baseline == "published" and spec.baseline_variant.name == "published"


def test_input_resolution_is_every_variants_default() -> None:
    spec = load_spec_text(
        "name: t\ninput: {resolution: 192}\nvariants:\n  a: {}\n  b: {resolution: 320}\n"
    )
    assert spec.variant("a").factors == {"resolution": 192}
    assert spec.variant("a").architecture.resolution == 192
    assert spec.variant("b").architecture.resolution == 320


def test_an_empty_entry_is_an_unchanged_variant() -> None:
    spec = load_spec_text("name: t\nvariants:\n  published:\n  other: {}\n")
    assert spec.variant("published").factors == spec.variant("other").factors
    assert spec.variant("published").architecture == ARCHITECTURES["mobilenet_v3_large"]


def test_identical_architectures_are_grouped_in_variant_order() -> None:
    spec = load_spec_text(
        "name: t\nvariants:\n"
        "  published: {}\n"
        "  placement: {activation: {early: relu, late: hswish, from_channels: 80}}\n"
        "  relu: {activation: relu}\n"
        "  searched: {kernel: mobilenet_v3_large}\n"
    )
    assert list(spec.architecture_groups().values()) == [
        ("published", "placement", "searched"),
        ("relu",),
    ]


def test_the_baseline_defaults_to_the_first_variant() -> None:
    assert load_spec_text("name: t\nvariants:\n  b: {}\n  a: {}\n").baseline == "b"


def test_the_baseline_must_be_a_variant() -> None:
    assert message("name: t\nbaseline: publshed\nvariants:\n  published: {}\n  relu: {}\n") == (
        "spec.yaml:2: baseline: not one of the variants (got 'publshed'); valid: published, relu"
    )


def test_at_least_one_variant() -> None:
    assert message("name: t\n") == (
        "spec.yaml: no variants: give at least one of variants, grid or attribution"
    )
    assert message("name: t\nvariants: {}\n") == (
        "spec.yaml:2: variants: no variants: give at least one of variants, grid or attribution"
    )


def test_variants_must_be_a_mapping_of_mappings() -> None:
    assert message("name: t\nvariants: [a, b]\n") == (
        "spec.yaml:2: variants: expected a mapping (got ['a', 'b'])"
    )
    assert message("name: t\nvariants:\n  relu: relu\n") == (
        "spec.yaml:3: variants.relu: expected a mapping (got 'relu')"
    )


def test_blank_variant_name() -> None:
    assert message("name: t\nvariants:\n  ' ': {}\n") == (
        "spec.yaml:3: variants. : a variant name must not be blank"
    )


# -- factor errors, mapped to the spec's key paths --------------------------------------


def test_unknown_factor() -> None:
    # A listed variant may also carry a `reference` (tests/test_spec_reference.py), or name
    # an imported module with its `args` (tests/test_imported_models.py).
    assert message("name: t\nvariants:\n  relu:\n    kernal: 3\n") == (
        "spec.yaml:4: variants.relu.kernal: unknown factor; valid: base, width, resolution, "
        "num_classes, activation, se, se_ratio, se_gate, kernel, expansion, uib, stem_channels, "
        "last_stage, last_stage_width, layout, backbone, head, tail, convention, model, args, "
        "reference"
    )


def test_bad_factor_value() -> None:
    assert message("name: t\nvariants:\n  k4:\n    kernel: 4\n") == (
        f"spec.yaml:4: variants.k4.kernel: unsupported depthwise kernel (got 4); valid: 3, 5, 7, "
        f"{ARCHITECTURE_CHOICES}"
    )


def test_bad_item_of_a_per_block_list_in_flow_style() -> None:
    kernels = ", ".join(["3"] * 14 + ["9"])
    error = error_of(f"name: t\nvariants:\n  relu:\n    kernel: [{kernels}]\n")
    assert (error.line, error.key_path) == (4, "variants.relu.kernel[14]")
    assert "unsupported depthwise kernel (got 9)" in str(error)


def test_bad_item_of_a_per_block_list_in_block_style_names_its_line() -> None:
    items = "".join(f"      - {3 if index != 3 else 4}\n" for index in range(15))
    error = error_of(f"name: t\nvariants:\n  relu:\n    kernel:\n{items}")
    assert str(error).startswith(
        "spec.yaml:8: variants.relu.kernel[3]: unsupported depthwise kernel (got 4)"
    )


def test_per_block_list_of_the_wrong_length() -> None:
    assert message("name: t\nvariants:\n  a: {kernel: [3, 5]}\n") == (
        "spec.yaml:3: variants.a.kernel: a per-block list needs 15 entries for the "
        "mobilenet_v3_large layout, got 2 (got [3, 5])"
    )


def test_nested_factor_key() -> None:
    text = (
        "name: t\nvariants:\n  h:\n    activation:\n      early: relu\n      late: hswish\n"
        "      from_block: 99\n"
    )
    assert message(text) == (
        "spec.yaml:7: variants.h.activation.from_block: expected a block number in [1, 16] "
        "(1-based) (got 99)"
    )
    assert message(
        "name: t\nvariants:\n  h:\n    activation: {early: relu, late: tanh,\n"
        "      from_block: 3}\n"
    ) == (
        "spec.yaml:4: variants.h.activation.late: unknown activation (got 'tanh'); valid: "
        + ", ".join(ACTIVATIONS)
    )


def test_variant_base() -> None:
    assert message("name: t\nvariants:\n  v2:\n    base: mobilenet_v9\n") == (
        f"spec.yaml:4: variants.v2.base: unknown architecture (got 'mobilenet_v9'); valid: "
        f"{ARCHITECTURE_CHOICES}"
    )


def test_setting_without_effect() -> None:
    assert message("name: t\nvariants:\n  v:\n    se: off\n    se_ratio: 0.5\n") == (
        "spec.yaml:5: variants.v.se_ratio: has no effect: no SE block (got 0.5)"
    )


def test_factor_value_of_the_wrong_type() -> None:
    assert message("name: t\nvariants:\n  w:\n    width: 'wide'\n") == (
        f"spec.yaml:4: variants.w.width: expected a number in [0.1, 4] (got 'wide'); valid: "
        f"{ARCHITECTURE_CHOICES}"
    )
