"""Generated variants: the grid's full factorial and the attribution's coalitions."""

from __future__ import annotations

import pytest

from ablate.analysis.coalitions import CoalitionSpace
from ablate.analysis.plan import plan_attribution
from ablate.architecture.tables import ARCHITECTURES
from ablate.errors import InputFileError
from ablate.spec import defaults, load_spec_text
from ablate.spec.expand import render_value

V2_TO_V3 = "[layout, stem_channels, kernel, expansion, se, activation, last_stage]"


def error_of(text: str) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(text, "spec.yaml")
    return caught.value


def message(text: str) -> str:
    return str(error_of(text))


def attribution(factors: str = "[kernel, se]", extra: str = "") -> str:
    return (
        "name: t\n"
        "attribution:\n"
        "  from: mobilenet_v2\n"
        "  to: mobilenet_v3_large\n"
        f"  factors: {factors}\n"
        f"{extra}"
    )


# -- grid ------------------------------------------------------------------------------


def test_grid_is_a_full_factorial_with_stable_names() -> None:
    spec = load_spec_text("name: t\ngrid:\n  kernel: [3, 5]\n  se: [on, off]\n")
    assert spec.variant_names == (
        "kernel=3,se=on",
        "kernel=3,se=off",
        "kernel=5,se=on",
        "kernel=5,se=off",
    )
    variant = spec.variant("kernel=5,se=off")
    assert variant.base == "mobilenet_v3_large"
    assert variant.factors == {"kernel": 5, "se": False, "resolution": 224}
    assert variant.source_key_path == "grid"
    assert spec.baseline == "kernel=3,se=on"
    assert spec.grid == {"kernel": (3, 5), "se": (True, False)}


def test_grid_variants_follow_the_listed_ones_and_may_switch_base() -> None:
    spec = load_spec_text(
        "name: t\nbase: mobilenet_v2\nvariants:\n  published: {}\n"
        "grid:\n  base: [mobilenet_v2, mobilenet_v3_small]\n  width: [0.5, 1.0]\n"
    )
    assert spec.variant_names == (
        "published",
        "base=mobilenet_v2,width=0.5",
        "base=mobilenet_v2,width=1.0",
        "base=mobilenet_v3_small,width=0.5",
        "base=mobilenet_v3_small,width=1.0",
    )
    small = spec.variant("base=mobilenet_v3_small,width=1.0")
    assert small.base == "mobilenet_v3_small"
    assert small.factors == {"width": 1.0, "resolution": 224}
    assert small.architecture == ARCHITECTURES["mobilenet_v3_small"]


def test_values_are_rendered_compactly() -> None:
    assert render_value(True) == "on" and render_value(False) == "off"
    assert render_value(0.25) == "0.25" and render_value(None) == "null"
    assert render_value([3, 5, 7]) == "[3,5,7]"
    assert render_value({"early": "relu", "late": "hswish", "from_channels": 80}) == (
        "{early:relu,late:hswish,from_channels:80}"
    )
    spec = load_spec_text(
        "name: t\ngrid:\n  activation:\n    - relu\n"
        "    - {early: relu, late: hswish, from_channels: 112}\n"
    )
    assert spec.variant_names == (
        "activation=relu",
        "activation={early:relu,late:hswish,from_channels:112}",
    )


def test_grid_unknown_factor() -> None:
    assert message("name: t\ngrid:\n  kernal: [3]\n") == (
        "spec.yaml:3: grid.kernal: unknown factor; valid: base, width, resolution, num_classes, "
        "activation, se, se_ratio, se_gate, kernel, expansion, uib, stem_channels, last_stage, "
        "last_stage_width, layout, backbone, head, tail, convention"
    )


def test_grid_values_must_be_a_non_empty_list() -> None:
    assert message("name: t\ngrid:\n  kernel: []\n") == (
        "spec.yaml:3: grid.kernel: must not be empty (got [])"
    )
    assert message("name: t\ngrid:\n  kernel: 3\n") == (
        "spec.yaml:3: grid.kernel: expected a list (got 3)"
    )


def test_grid_value_listed_twice() -> None:
    assert message("name: t\ngrid:\n  kernel: [3, 5, 3]\n") == (
        "spec.yaml:3: grid.kernel[2]: listed twice (first at [0]) (got 3)"
    )


def test_grid_bad_value_names_the_value_and_the_variant() -> None:
    text = "name: t\ngrid:\n  se: [on, off]\n  kernel:\n    - 3\n    - 4\n"
    assert message(text) == (
        "spec.yaml:6: grid.kernel[1]: in variant 'se=on,kernel=4': unsupported depthwise "
        "kernel (got 4); valid: 3, 5, 7, mobilenet_v1, mobilenet_v2, mobilenet_v3_large, "
        "mobilenet_v3_small, mnasnet_a1, mobilenet_v4_conv_small, mobilenet_v4_conv_medium, "
        "ssdlite_mobilenet_v1, ssdlite_mobilenet_v2, "
        "ssdlite_mobilenet_v3_large, ssdlite_mobilenet_v3_small, "
        "ssdlite_mobilenet_v3_large_reduced, ssdlite_mobilenet_v3_small_reduced, "
        "ssdlite_mnasnet_a1, ssd_mobilenet_v1"
    )


def test_grid_combination_without_effect() -> None:
    error = error_of("name: t\ngrid:\n  se: [on, off]\n  se_ratio: [0.5]\n")
    assert (error.line, error.key_path) == (4, "grid.se_ratio[0]")
    assert "in variant 'se=off,se_ratio=0.5': has no effect: no SE block (got 0.5)" in str(error)


def test_grid_name_collision_with_a_listed_variant() -> None:
    assert message("name: t\nvariants:\n  kernel=3: {}\ngrid:\n  kernel: [3, 5]\n") == (
        "spec.yaml:4: grid: variant name taken twice: also defined by variants.kernel=3 "
        "(got 'kernel=3')"
    )


def test_grid_size_is_limited() -> None:
    values = "[" + ", ".join(str(32 + 8 * index) for index in range(40)) + "]"
    text = f"name: t\ngrid:\n  resolution: {values}\n  stem_channels: {values}\n"
    assert message(text) == (
        f"spec.yaml:2: grid: the grid has 1600 combinations, more than the "
        f"{defaults.MAX_GRID_VARIANTS} allowed; split the experiment"
    )


# -- attribution -----------------------------------------------------------------------


def test_exact_attribution_has_every_coalition() -> None:
    spec = load_spec_text(attribution(V2_TO_V3))
    space = CoalitionSpace(V2_TO_V3.strip("[]").split(", "))
    assert len(spec.variants) == 128
    assert spec.variant_names == tuple(space.variant_name(int(mask)) for mask in space.masks())
    assert spec.baseline == "to:{}"
    assert spec.attribution is not None and spec.attribution.plan().method == "exact"
    for mask in (0, 5, 127):
        variant = spec.variant(space.variant_name(mask))
        assert variant.base == "mobilenet_v2"
        assert variant.source_key_path == "attribution"
        sides = space.settings(mask)
        expected = {
            factor: "mobilenet_v3_large" if side == "to" else "mobilenet_v2"
            for factor, side in sides.items()
        }
        assert variant.factors == {**expected, "resolution": 224}
    # All of V2's settings is V2; all of V3-Large's is V3-Large (resolution included).
    assert spec.variant("to:{}").architecture == ARCHITECTURES["mobilenet_v2"]
    full = space.variant_name(space.full_mask)
    assert spec.variant(full).architecture == ARCHITECTURES["mobilenet_v3_large"]


def test_attribution_defaults() -> None:
    spec = load_spec_text(attribution())
    assert spec.attribution is not None
    assert spec.attribution.to_json() == {
        "from": "mobilenet_v2",
        "to": "mobilenet_v3_large",
        "factors": ["kernel", "se"],
        "method": defaults.ATTRIBUTION_METHOD,
        "permutations": defaults.PERMUTATIONS,
        "seed": defaults.ATTRIBUTION_SEED,
    }


def test_sampled_attribution_has_the_plans_required_coalitions() -> None:
    extra = "  method: sampled\n  permutations: 4\n  seed: 3\n"
    spec = load_spec_text(attribution(V2_TO_V3, extra))
    plan = plan_attribution(
        V2_TO_V3.strip("[]").split(", "), method="sampled", permutation_count=4, sampling_seed=3
    )
    assert spec.variant_names == plan.required_variant_names()
    assert len(spec.variants) < 128


def test_auto_samples_beyond_eight_factors() -> None:
    nine = V2_TO_V3.replace("]", ", width, num_classes]")
    spec = load_spec_text(attribution(nine, "  permutations: 4\n"))
    assert spec.attribution is not None and spec.attribution.plan().method == "sampled"
    assert message(attribution(nine, "  method: exact\n")) == (
        "spec.yaml:6: attribution.method: exact needs all 2^n coalitions: at most 8 factors, "
        "got 9; use sampled or auto (got 'exact')"
    )


def test_attribution_baseline_and_listed_variants_together() -> None:
    spec = load_spec_text(attribution() + "variants:\n  v3: {base: mobilenet_v3_large}\n")
    assert spec.variant_names == ("v3", "to:{}", "to:{kernel}", "to:{se}", "to:{kernel,se}")
    assert spec.baseline == "to:{}"
    assert load_spec_text(attribution() + "baseline: 'to:{se}'\n").baseline == "to:{se}"


def test_attribution_name_collision() -> None:
    assert message(attribution() + "variants:\n  'to:{}': {}\n") == (
        "spec.yaml:2: attribution: variant name taken twice: also defined by variants.to:{} "
        "(got 'to:{}')"
    )


def test_attribution_input_resolution() -> None:
    spec = load_spec_text(attribution() + "input: {resolution: 160}\n")
    assert all(variant.factors["resolution"] == 160 for variant in spec.variants)
    spec = load_spec_text(attribution("[resolution, kernel]") + "input: {resolution: 160}\n")
    assert spec.variant("to:{}").factors["resolution"] == "mobilenet_v2"


@pytest.mark.parametrize(
    ("factors", "extra", "expected"),
    [
        (
            "[kernel, se, kernal]",
            "",
            "spec.yaml:5: attribution.factors[2]: unknown factor (got 'kernal'); valid: width, "
            "resolution, num_classes, activation, se, se_ratio, se_gate, kernel, expansion, uib, "
            "stem_channels, last_stage, last_stage_width, layout, backbone, head, tail, convention",
        ),
        (
            "[kernel, se, kernel]",
            "",
            "spec.yaml:5: attribution.factors[2]: listed twice (first at [0]) (got 'kernel')",
        ),
        ("[]", "", "spec.yaml:5: attribution.factors: must not be empty (got [])"),
        (
            "[kernel]",
            "  permutations: 7\n",
            "spec.yaml:6: attribution.permutations: must be even (each order is paired with its "
            "reverse) (got 7)",
        ),
        (
            "[kernel]",
            "  permutations: 2\n",
            "spec.yaml:6: attribution.permutations: must be at least 4 (got 2)",
        ),
        (
            "[kernel]",
            "  method: best\n",
            "spec.yaml:6: attribution.method: unknown method (got 'best'); valid: auto, exact, "
            "sampled",
        ),
    ],
)
def test_attribution_settings(factors: str, extra: str, expected: str) -> None:
    assert message(attribution(factors, extra)) == expected


def test_attribution_from_and_to() -> None:
    assert message("name: t\nattribution:\n  to: mobilenet_v3_large\n  factors: [kernel]\n") == (
        "spec.yaml:2: attribution.from: missing required key"
    )
    text = "name: t\nattribution: {from: mobilenet_v2, to: mobilenet_v2, factors: [kernel]}\n"
    assert message(text) == (
        "spec.yaml:2: attribution.to: must differ from `from` (got 'mobilenet_v2')"
    )
    text = "name: t\nattribution:\n  from: v2\n  to: mobilenet_v3_large\n  factors: [kernel]\n"
    assert message(text) == (
        "spec.yaml:3: attribution.from: unknown architecture (got 'v2'); valid: mobilenet_v1, "
        "mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, mnasnet_a1, "
        "mobilenet_v4_conv_small, mobilenet_v4_conv_medium, ssdlite_mobilenet_v1, "
        "ssdlite_mobilenet_v2, ssdlite_mobilenet_v3_large, ssdlite_mobilenet_v3_small, "
        "ssdlite_mobilenet_v3_large_reduced, ssdlite_mobilenet_v3_small_reduced, "
        "ssdlite_mnasnet_a1, ssd_mobilenet_v1"
    )


def test_attribution_mixture_that_cannot_be_built_names_the_factor_and_coalition() -> None:
    # V2 has no SE block, so V3-Large's SE ratio on V2's (absent) SE has no effect.
    assert message(attribution("[se, se_ratio]")) == (
        "spec.yaml:5: attribution.factors[1]: in variant 'to:{}': has no effect: no SE block "
        "(got 'mobilenet_v2')"
    )
