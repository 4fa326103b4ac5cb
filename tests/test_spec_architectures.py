"""A spec's own `architectures:`: the built-ins' block tables as data, their errors, and the
round trip of every built-in classifier through that form."""

from __future__ import annotations

import pytest
import yaml

from ablate.architecture.builder import build_module
from ablate.architecture.description import Expansion, SqueezeExcite
from ablate.architecture.table_data import architecture_yaml
from ablate.architecture.tables import ARCHITECTURES, TABLES
from ablate.counting import count_model
from ablate.errors import InputFileError
from ablate.spec import load_spec_text
from tests.conftest import parameter_count

# Line 3 is `tiny:`, line 5 `stages:`, lines 6-7 its two stages.
TINY = """name: own
architectures:
  tiny:
    stem: {channels: 16, kernel: 3, stride: 2, activation: hswish}
    stages:
      - [ir_k3_e16_c16_s2_se_re]
      - [ir_k3_e72_c24_s2_re, ir_k3_e88_c24_s1_re_x2]
    last_stage: {kind: v3, channels: 1024}
    last_stage_activation: hswish
base: tiny
variants:
  tiny: {}
  tiny_k5: {kernel: 5}
  small_on_tiny: {base: mobilenet_v3_small, layout: tiny}
"""


def message(text: str) -> str:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(text, "spec.yaml")
    return str(caught.value)


def test_a_spec_architecture_is_a_base_and_a_layout() -> None:
    spec = load_spec_text(TINY)
    tiny, tiny_k5, small_on_tiny = (variant.architecture for variant in spec.variants)
    assert tiny.stem.channels == 16 and tiny.stem.stride == 2 and tiny.resolution == 224
    # e16 on 16 input channels: no expansion conv (ratio 1); e72 on 16: 72 channels.
    assert [block.expansion for block in tiny.blocks] == [
        Expansion(ratio=1.0),
        Expansion(channels=72),
        Expansion(channels=88),
        Expansion(channels=88),
    ]
    assert [block.stride for block in tiny.blocks] == [2, 2, 1, 1]
    assert [block.out_channels for block in tiny.blocks] == [16, 24, 24, 24]
    assert tiny.blocks[0].squeeze_excite == SqueezeExcite(0.25, "hsigmoid")
    assert tiny.last_stage.channels == 1024 and tiny.num_classes == 1000
    assert [block.kernel_size for block in tiny_k5.blocks] == [5, 5, 5, 5]
    # V3-Small's per-block settings mapped onto tiny's four blocks.
    assert len(small_on_tiny.blocks) == 4
    assert small_on_tiny.last_stage.channels == 1024


def spec_with(entry: str, resolution: str = "") -> str:
    """A spec whose architecture `tiny` has the stem and stages above plus `entry` lines."""
    lines = TINY.splitlines()
    return (
        "\n".join(
            [
                *lines[:3],
                *([f"    {resolution}"] if resolution else []),
                *lines[3:9],
                *([f"    {entry}"] if entry else []),
                *lines[9:],
            ]
        )
        + "\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 100 -> 50 after the stem, 25 after the first stage: stride 2 cannot halve 25.
        (
            spec_with("", resolution="resolution: 100"),
            "spec.yaml:8: architectures.tiny.stages[1][0]: stride 2 does not divide the 25x25 "
            "feature map it applies to (resolution 100) (got 'ir_k3_e72_c24_s2_re')",
        ),
        (
            spec_with("", resolution="resolution: 225"),
            "spec.yaml:5: architectures.tiny.stem.stride: does not divide the resolution 225 "
            "(got 2)",
        ),
        (
            TINY.replace("ir_k3_e88_c24_s1_re_x2", "ir_k3_e88_c24_s1_xx"),
            "spec.yaml:7: architectures.tiny.stages[1][1]: malformed block code "
            "(got 'ir_k3_e88_c24_s1_xx')",
        ),
        (
            TINY.replace("ir_k3_e88_c24_s1_re_x2", "zz_k3_c24_s1_re"),
            "spec.yaml:7: architectures.tiny.stages[1][1]: malformed block code "
            "(got 'zz_k3_c24_s1_re')",
        ),
        # uir takes a ratio, never an exp size.
        (
            TINY.replace("ir_k3_e88_c24_s1_re_x2", "uir_a3_k5_e88_c24_s1_re"),
            "spec.yaml:7: architectures.tiny.stages[1][1]: malformed block code "
            "(got 'uir_a3_k5_e88_c24_s1_re')",
        ),
        (
            spec_with("depth: 3"),
            "spec.yaml:10: architectures.tiny.depth: unknown key; valid: paper, stem, stages, "
            "last_stage, last_stage_activation, batch_norm_epsilon, squeeze_excite, "
            "resolution, classes",
        ),
        (
            TINY.replace("activation: hswish}", "activation: hswish, pad: 1}"),
            "spec.yaml:4: architectures.tiny.stem.pad: unknown key; valid: channels, kernel, "
            "stride, activation, width",
        ),
        (
            TINY.replace("    last_stage_activation: hswish\n", ""),
            "spec.yaml:3: architectures.tiny.last_stage_activation: missing required key",
        ),
        (
            TINY.replace("kernel: 3, ", ""),
            "spec.yaml:4: architectures.tiny.stem.kernel: missing required key",
        ),
        (
            TINY.replace("{kind: v3, channels: 1024}", "{kind: v3}"),
            "spec.yaml:8: architectures.tiny.last_stage.channels: missing: a v3 last stage "
            "needs its channels",
        ),
        (
            TINY.replace("{kind: v3,", "{kind: v9,"),
            "spec.yaml:8: architectures.tiny.last_stage.kind: unknown value (got 'v9'); "
            "valid: v1, v2, v3, none, v4",
        ),
        (
            TINY.replace("channels: 16,", "channels: 0,"),
            "spec.yaml:4: architectures.tiny.stem.channels: expected a positive integer (got 0)",
        ),
        (
            TINY.replace("activation: hswish}", "activation: gelu}"),
            "spec.yaml:4: architectures.tiny.stem.activation: unknown value (got 'gelu'); "
            "valid: relu, relu6, hswish, swish",
        ),
        (
            spec_with("squeeze_excite: {ratio: 2}"),
            "spec.yaml:10: architectures.tiny.squeeze_excite.ratio: expected a ratio in (0, 1] "
            "(got 2)",
        ),
        (
            spec_with("stages: []").replace(
                "    stages:\n      - [ir_k3_e16_c16_s2_se_re]\n"
                "      - [ir_k3_e72_c24_s2_re, ir_k3_e88_c24_s1_re"
                "_x2]\n",
                "",
            ),
            "spec.yaml:7: architectures.tiny.stages: expected a non-empty list of stages (got [])",
        ),
        (
            TINY.replace("- [ir_k3_e16_c16_s2_se_re]", "- ir_k3_e16_c16_s2_se_re"),
            "spec.yaml:6: architectures.tiny.stages[0]: expected a non-empty list of block "
            "codes (got 'ir_k3_e16_c16_s2_se_re')",
        ),
        (
            TINY.replace("  tiny:\n    stem", "  mobilenet_v2:\n    stem").replace(
                "base: tiny", "base: mobilenet_v2"
            ),
            "spec.yaml:3: architectures.mobilenet_v2: a built-in architecture has this name "
            "(got 'mobilenet_v2')",
        ),
        (
            TINY.replace("base: tiny", "base: tinny"),
            "spec.yaml:10: base: unknown architecture (got 'tinny')",
        ),
        (
            TINY.replace("[ir_k3_e16_c16_s2_se_re]", "[ir_k3_e16_c16_s2_se_re, 7]"),
            "spec.yaml:6: architectures.tiny.stages[0][1]: expected a block code (got 7)",
        ),
        (
            spec_with("paper: 3"),
            "spec.yaml:10: architectures.tiny.paper: expected a string (got 3)",
        ),
        (
            spec_with("batch_norm_epsilon: 0"),
            "spec.yaml:10: architectures.tiny.batch_norm_epsilon: expected a number in (0, 1) "
            "(got 0)",
        ),
        (
            spec_with("classes: 1.5"),
            "spec.yaml:10: architectures.tiny.classes: expected a positive integer (got 1.5)",
        ),
        (
            TINY.replace("channels: 1024}", "channels: 1024, dropout: 1}"),
            "spec.yaml:8: architectures.tiny.last_stage.dropout: expected a dropout rate in "
            "[0, 1) (got 1)",
        ),
        (
            TINY.replace("channels: 1024}", "channels: 1024, width: wide}"),
            "spec.yaml:8: architectures.tiny.last_stage.width: unknown value (got 'wide'); "
            "valid: scaled, kept, fixed",
        ),
        (
            TINY.replace("{kind: v3, channels: 1024}", "{kind: v4, channels: 1280}"),
            "spec.yaml:8: architectures.tiny.last_stage.conv_channels: missing: a v4 last stage "
            "needs its conv_channels",
        ),
        (
            TINY.replace("{kind: v3, channels: 1024}", "v3"),
            "spec.yaml:8: architectures.tiny.last_stage: expected a mapping (got 'v3')",
        ),
        (
            spec_with("squeeze_excite: {gate: relu}"),
            "spec.yaml:10: architectures.tiny.squeeze_excite.gate: unknown value (got 'relu'); "
            "valid: hsigmoid, sigmoid",
        ),
        (
            spec_with("squeeze_excite: {reference: output}"),
            "spec.yaml:10: architectures.tiny.squeeze_excite.reference: unknown value (got "
            "'output'); valid: expanded, input",
        ),
    ],
)
def test_errors_name_file_line_and_key_path(text: str, expected: str) -> None:
    assert message(text).startswith(expected)


def test_defaults_and_optional_keys() -> None:
    text = spec_with("squeeze_excite: {ratio: 0.5, gate: sigmoid, reference: input}")
    text = text.replace("channels: 1024}", "channels: 1024, dropout: 0.1, width: fixed}")
    tiny = load_spec_text(text.replace("base: tiny", "base: tiny\ninput: {resolution: 160}"))
    architecture = tiny.variants[0].architecture
    assert architecture.blocks[0].squeeze_excite == SqueezeExcite(0.5, "sigmoid", "input")
    assert (architecture.last_stage.dropout, architecture.last_stage.width) == (0.1, "fixed")
    assert architecture.resolution == 160 and architecture.batch_norm_epsilon == 1e-5
    defaults = load_spec_text(TINY).variants[0].architecture
    assert (defaults.last_stage.dropout, defaults.last_stage.width) == (0.2, "scaled")


def test_an_architecture_entry_must_be_a_mapping() -> None:
    text = "name: own\narchitectures:\n  tiny: 3\nvariants:\n  a: {}\n"
    assert message(text) == "spec.yaml:3: architectures.tiny: expected a mapping (got 3)"


def round_trip(name: str) -> dict[str, object]:
    return {
        "name": "round_trip",
        "architectures": {"own": architecture_yaml(name)},
        "base": "own",
        # A spec's input size overrides every variant's (MNv4-Conv-M's own is 256).
        "input": {"resolution": ARCHITECTURES[name].resolution},
        "variants": {"own": {}},
    }


@pytest.mark.parametrize("name", list(TABLES))
def test_every_built_in_classifier_round_trips(name: str) -> None:
    text = yaml.safe_dump(round_trip(name), sort_keys=False)
    (variant,) = load_spec_text(text).variants
    assert variant.architecture == ARCHITECTURES[name]


# Reference counts at 224x224 (tests/test_counting_models.py, tests/test_architecture.py).
@pytest.mark.parametrize(
    ("name", "params", "macs"),
    [("mobilenet_v2", 3_504_872, 300_774_272), ("mobilenet_v3_large", 5_483_032, 216_589_760)],
)
def test_round_tripped_counts_match_the_built_ins(name: str, params: int, macs: int) -> None:
    (variant,) = load_spec_text(yaml.safe_dump(round_trip(name))).variants
    model = build_module(variant.architecture)
    assert parameter_count(model) == params
    assert count_model(model, (1, 3, 224, 224)).macs == macs


def attribution_spec(to: str) -> str:
    """TINY, its copy `wide` with 5x5 kernels and ReLU, an attribution from one to `to`."""
    lines = TINY.splitlines()
    wide = [
        line.replace("tiny:", "wide:").replace("_k3_", "_k5_").replace("_hs", "_re")
        for line in lines[2:9]
    ]
    attribution = f"attribution: {{from: tiny, to: {to}, factors: [kernel, activation]}}"
    return "\n".join([*lines[:9], *wide, attribution]) + "\n"


def test_an_attribution_runs_between_spec_architectures() -> None:
    spec = load_spec_text(attribution_spec("wide"))
    assert spec.attribution is not None
    kernels = {
        variant.name: [block.kernel_size for block in variant.architecture.blocks]
        for variant in spec.variants
    }
    # Exact Shapley over two factors: all four coalitions, from [3] * 4 to [5] * 4.
    assert sorted(kernels.values()) == [[3] * 4, [3] * 4, [5] * 4, [5] * 4]
    message_text = message(attribution_spec("wdie"))
    assert message_text.startswith(
        "spec.yaml:17: attribution.to: unknown architecture (got 'wdie'); valid: mobilenet_v1,"
    )
    assert message_text.endswith("ssd_mobilenet_v1, tiny, wide")


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large"])
def test_a_round_tripped_classifier_is_a_detectors_backbone(name: str) -> None:
    # The detector tables hold the classifiers' tables themselves, so a classifier written out
    # stands for its built-in as `backbone:` of any detector.
    document = {
        **round_trip(name),
        "input": {"resolution": 320},
        "variants": {
            "own": {"base": "ssdlite_mobilenet_v1", "backbone": "own"},
            "built_in": {"base": "ssdlite_mobilenet_v1", "backbone": name},
        },
    }
    own, built_in = load_spec_text(yaml.safe_dump(document)).variants
    assert own.architecture == built_in.architecture
    assert own.architecture.detection is not None
    # V1's detector with the classifier's blocks, SSDLite on top.
    assert [block.kernel_size for block in own.architecture.blocks] == [
        block.kernel_size for block in ARCHITECTURES[name].blocks
    ]
    assert own.architecture.detection.head == "ssdlite"


def test_the_resolved_spec_writes_each_architecture_out_in_full() -> None:
    resolved = load_spec_text(TINY).to_json()
    tiny = resolved["architectures"]["tiny"]
    # The defaults filled in, as for every other section of the resolved spec.
    assert tiny["last_stage"] == {"kind": "v3", "dropout": 0.2, "width": "scaled", "channels": 1024}
    assert (tiny["resolution"], tiny["classes"], tiny["batch_norm_epsilon"]) == (224, 1000, 1e-5)
    assert tiny["squeeze_excite"] == {"ratio": 0.25, "gate": "hsigmoid", "reference": "expanded"}
    # Read back, it is the same spec; a spec without the section has no such key.
    assert load_spec_text(yaml.safe_dump(resolved)).to_json() == resolved
    assert "architectures" not in load_spec_text("name: t\nvariants:\n  a: {}\n").to_json()
