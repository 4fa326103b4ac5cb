"""Each factor changes exactly what it should; V2 <-> V3-Large mixtures; every error path."""

from __future__ import annotations

import itertools

import pytest
import torch

import ablate
from ablate.architecture.tables import ARCHITECTURES
from ablate.errors import AblateError, FactorError
from ablate.variants.resolve import map_blocks, resolve_architecture, stages_by_output_stride
from tests.conftest import parameter_count

V3_LARGE_PARAMS = 5_483_032
V2_PARAMS = 3_504_872


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def test_se_off_removes_exactly_the_se_parameters() -> None:
    # SE params per block = exp*sq + sq (reduce) + sq*exp + exp (expand),
    # sq = make_divisible(exp // 4):
    # exp 72/sq 24: 3,552; exp 120/sq 32: 7,832 (x2); exp 480/sq 120: 115,800;
    # exp 672/sq 168: 226,632 (x2); exp 960/sq 240: 462,000 (x2). Sum 1,512,280.
    published = ablate.build_model("mobilenet_v3_large")
    without = ablate.build_model("mobilenet_v3_large", se="off")
    assert parameter_count(without) == V3_LARGE_PARAMS - 1_512_280
    removed = set(shapes(published)) - set(shapes(without))
    assert removed and all(".se." in name for name in removed)
    assert set(shapes(without)) < set(shapes(published))


def test_se_accepts_yaml_booleans_and_words() -> None:
    assert resolve_architecture("mobilenet_v3_large", {"se": False}) == resolve_architecture(
        "mobilenet_v3_large", {"se": "off"}
    )
    on = resolve_architecture("mobilenet_v2", {"se": True})
    assert all(block.squeeze_excite is not None for block in on.blocks)


def test_kernel_5_changes_only_depthwise_weights() -> None:
    # Blocks with 3x3 depthwise in V3-Large have 16+64+72+240+200+184+184+480+672 = 2,112
    # channels; 5x5 adds 25 - 9 = 16 weights per channel: +33,792.
    published = shapes(ablate.build_model("mobilenet_v3_large"))
    five = shapes(ablate.build_model("mobilenet_v3_large", kernel=5))
    assert sum(int(torch.tensor(s).prod()) for s in five.values() if len(s) == 4) - sum(
        int(torch.tensor(s).prod()) for s in published.values() if len(s) == 4
    ) == 33_792
    changed = {name for name in published if published[name] != five[name]}
    assert changed and all(name.endswith("depthwise.conv.weight") for name in changed)
    assert parameter_count(ablate.build_model("mobilenet_v3_large", kernel=5)) == (
        V3_LARGE_PARAMS + 33_792
    )
    assert ablate.build_model("mobilenet_v3_large", kernel=5).stem.conv.kernel_size == (3, 3)


@pytest.mark.parametrize("activation", ["relu", "relu6", "swish", "hswish"])
def test_activation_changes_no_parameter(activation: str) -> None:
    model = ablate.build_model("mobilenet_v3_large", activation=activation)
    assert shapes(model) == shapes(ablate.build_model("mobilenet_v3_large"))
    names = {type(module).__name__ for module in model.modules()}
    expected = {"relu": "ReLU", "relu6": "ReLU6", "swish": "SiLU", "hswish": "Hardswish"}
    assert expected[activation] in names
    others = set(expected.values()) - {expected[activation], "ReLU"}  # SE keeps its ReLU
    assert not names & others


def test_activation_placement_reproduces_the_paper() -> None:
    published = ARCHITECTURES["mobilenet_v3_large"]
    at_80 = {"early": "relu", "late": "hswish", "from_channels": 80}
    assert resolve_architecture("mobilenet_v3_large", {"activation": at_80}) == published
    by_block = {"early": "relu", "late": "hswish", "from_block": 7}
    assert resolve_architecture("mobilenet_v3_large", {"activation": by_block}) == published
    at_16 = resolve_architecture(
        "mobilenet_v3_large", {"activation": {**at_80, "from_channels": 16}}
    )
    assert [b.activation for b in at_16.blocks] == ["hswish"] * 15
    at_112 = resolve_architecture(
        "mobilenet_v3_large", {"activation": {**at_80, "from_channels": 112}}
    )
    assert [b.activation for b in at_112.blocks] == ["relu"] * 10 + ["hswish"] * 5
    assert at_112.stem.activation == "hswish"  # the stem keeps the base's (Section 5.2)
    relu_stem = resolve_architecture(
        "mobilenet_v3_large", {"activation": {**at_80, "stem": "relu"}}
    )
    assert relu_stem.stem.activation == "relu" and relu_stem.last_stage_activation == "hswish"


def test_activation_everywhere_includes_stem_and_last_stage() -> None:
    relu = resolve_architecture("mobilenet_v3_large", {"activation": "relu"})
    assert relu.stem.activation == relu.last_stage_activation == "relu"
    assert {block.activation for block in relu.blocks} == {"relu"}


def test_activation_per_block_list() -> None:
    names = ["relu"] * 5 + ["swish"] * 10
    resolved = resolve_architecture("mobilenet_v3_large", {"activation": names})
    assert [block.activation for block in resolved.blocks] == names
    assert resolved.stem.activation == "hswish"


def test_expansion_ratio_and_list() -> None:
    six = ablate.build_model("mobilenet_v3_large", expansion=6)
    # Block 2: input 16 x 6 = 96; block 8: input 80 x 6 = 480.
    assert six.blocks[1].depthwise.conv.out_channels == 96
    assert six.blocks[7].depthwise.conv.out_channels == 480
    ratios = [1, 4, 3, 3, 3, 3, 6, 2.5, 2.3, 2.3, 6, 6, 6, 6, 6]
    listed = ablate.build_model("mobilenet_v3_large", expansion=ratios)
    assert [block.depthwise.conv.out_channels for block in listed.blocks] == [
        16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960
    ]
    assert parameter_count(listed) == V3_LARGE_PARAMS


def test_stem_channels() -> None:
    # 32-filter stem: stem conv 3*9*32 + BN 64 = 928 (was 464); block 1 keeps "no expansion"
    # so its depthwise runs on 32 channels (32*9 + 64) and projects 32 -> 16 (512 + 32).
    model = ablate.build_model("mobilenet_v3_large", stem_channels=32)
    assert model.stem.conv.out_channels == 32
    assert model.blocks[0].depthwise.conv.out_channels == 32
    assert parameter_count(model.stem) == 928
    assert parameter_count(model.blocks[0]) == 32 * 9 + 64 + 32 * 16 + 32
    assert parameter_count(model) == V3_LARGE_PARAMS - 464 - 464 + 928 + 896


def test_last_stage_options() -> None:
    none = ablate.build_model("mobilenet_v3_large", last_stage="none")
    assert not hasattr(none, "classifier")
    # V3 last stage on V2: 320 -> 1920 conv + BN, 1920 -> 1280 linear, 1280 -> 1000 linear.
    v3_on_v2 = ablate.build_model("mobilenet_v2", last_stage="v3")
    tail = 320 * 1920 + 2 * 1920 + 1920 * 1280 + 1280 + 1280 * 1000 + 1000
    head = parameter_count(v3_on_v2.last_stage) + parameter_count(v3_on_v2.classifier)
    assert head == tail
    # V2 last stage on V3-Large: 160 -> 1280 conv + BN, linear 1280 -> 1000.
    v2_on_v3 = ablate.build_model("mobilenet_v3_large", last_stage="v2")
    head = parameter_count(v2_on_v3.last_stage) + parameter_count(v2_on_v3.classifier)
    assert head == 160 * 1280 + 2 * 1280 + 1280 * 1000 + 1000
    small_tail = resolve_architecture("mobilenet_v2", {"last_stage": "mobilenet_v3_small"})
    assert small_tail.last_stage.channels == 1024
    assert resolve_architecture("mobilenet_v3_small", {"last_stage": "v3"}).last_stage.channels == (
        1024
    )


def test_se_ratio_and_gate() -> None:
    half = ablate.build_model("mobilenet_v3_large", se_ratio=0.5, se_gate="sigmoid")
    assert half.blocks[3].se.reduce.out_channels == 40  # make_divisible(72 * 0.5 = 36) = 40
    assert isinstance(half.blocks[3].se.gate, torch.nn.Sigmoid)


MIXTURE_FACTORS = ["layout", "stem_channels", "kernel", "expansion", "se", "activation",
                   "last_stage"]


def test_all_factors_from_either_end_give_exactly_that_end() -> None:
    to_v3 = dict.fromkeys(MIXTURE_FACTORS, "mobilenet_v3_large")
    to_v2 = dict.fromkeys(MIXTURE_FACTORS, "mobilenet_v2")
    assert resolve_architecture("mobilenet_v2", to_v3) == ARCHITECTURES["mobilenet_v3_large"]
    assert resolve_architecture("mobilenet_v3_large", to_v2) == ARCHITECTURES["mobilenet_v2"]
    assert parameter_count(ablate.build_model("mobilenet_v2", **to_v3)) == V3_LARGE_PARAMS
    assert parameter_count(ablate.build_model("mobilenet_v3_large", **to_v2)) == V2_PARAMS
    assert resolve_architecture("mobilenet_v2", to_v2) == ARCHITECTURES["mobilenet_v2"]


@pytest.mark.slow
def test_every_v2_v3_mixture_builds_and_differs() -> None:
    resolved = set()
    for choice in itertools.product(("mobilenet_v2", "mobilenet_v3_large"), repeat=7):
        factors = dict(zip(MIXTURE_FACTORS, choice, strict=True))
        architecture = resolve_architecture("mobilenet_v2", factors)
        resolved.add(architecture)
        model = ablate.build_model("mobilenet_v2", **factors)
        with torch.inference_mode():
            assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert len(resolved) == 128


def test_stages_and_mapping_rule() -> None:
    v2, v3 = ARCHITECTURES["mobilenet_v2"], ARCHITECTURES["mobilenet_v3_large"]
    assert {s: len(i) for s, i in stages_by_output_stride(v2).items()} == {
        2: 1, 4: 2, 8: 3, 16: 7, 32: 4
    }
    assert {s: len(i) for s, i in stages_by_output_stride(v3).items()} == {
        2: 1, 4: 2, 8: 3, 16: 6, 32: 3
    }
    assert map_blocks(v3, v3) == list(range(15))
    # V3-Large -> V2 layout: stride-16 stage of 7 takes floor(j*6/7) of V3's 6 blocks (6..11),
    # stride-32 stage of 4 takes floor(j*3/4) of V3's 3 blocks (12..14).
    assert map_blocks(v3, v2) == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11, 12, 12, 13, 14]
    # V3-Small has no stride-2 stage: V2's first block takes the nearest (stride 4) stage.
    small = ARCHITECTURES["mobilenet_v3_small"]
    assert map_blocks(small, v2)[:3] == [0, 0, 0]


def test_kernels_from_another_architecture_follow_the_mapping() -> None:
    resolved = resolve_architecture("mobilenet_v2", {"kernel": "mobilenet_v3_large"})
    v3_kernels = [b.kernel_size for b in ARCHITECTURES["mobilenet_v3_large"].blocks]
    mapping = map_blocks(ARCHITECTURES["mobilenet_v3_large"], ARCHITECTURES["mobilenet_v2"])
    assert [b.kernel_size for b in resolved.blocks] == [v3_kernels[i] for i in mapping]


def test_expansion_from_another_layout_keeps_the_ratio() -> None:
    # V3-Large block 8 (input 80, exp 200: ratio 2.5) maps onto V2 block 9 (input 64): 160.
    resolved = ablate.build_model("mobilenet_v2", expansion="mobilenet_v3_large")
    assert resolved.blocks[8].depthwise.conv.out_channels == 160


def test_v1_takes_se_and_kernel() -> None:
    model = ablate.build_model("mobilenet_v1", se="on", kernel=5)
    assert all(hasattr(block, "se") for block in model.blocks)
    # V1 SE squeezes the depthwise channels: block 1 (32 channels) -> make_divisible(8) = 8.
    assert model.blocks[0].se.reduce.out_channels == 8


ERRORS = [
    ({"kernel": 4}, "kernel: unsupported depthwise kernel (got 4); valid: 3, 5, 7"),
    ({"width": -1}, "width: expected a number in [0.1, 4] (got -1)"),
    ({"width": "wide"}, "width: expected a number in [0.1, 4] (got 'wide')"),
    ({"resolution": 16}, "resolution: expected an integer in [32, 2048] (got 16)"),
    ({"activation": "tanh"}, "activation: unknown activation (got 'tanh'); valid: relu, relu6"),
    ({"kernel": [3, 5]}, "kernel: a per-block list needs 15 entries for the mobilenet_v3_large"),
    ({"kernel": [3] * 14 + [4]}, "kernel[14]: unsupported depthwise kernel (got 4)"),
    ({"colour": "red"}, "colour: unknown factor (got 'red'); valid: width, resolution"),
    ({"layout": "resnet50"}, "layout: unknown architecture (got 'resnet50'); valid: mobilenet_v1"),
    ({"se": "maybe"}, "se: expected on or off (got 'maybe'); valid: on, off"),
    ({"se": "off", "se_ratio": 0.5}, "se_ratio: has no effect: no SE block (got 0.5)"),
    ({"se_ratio": 2}, "se_ratio: expected a number in (0, 1] (got 2)"),
    ({"se_gate": "tanh"}, "se_gate: unknown SE gate (got 'tanh'); valid: hsigmoid, sigmoid"),
    ({"last_stage": "v5"},
     "last_stage: unknown last stage (got 'v5'); valid: v1, v2, v3, none, v4"),
    ({"last_stage": "none", "num_classes": 10}, "num_classes: has no effect with last_stage"),
    ({"num_classes": 0}, "num_classes: expected an integer in [1, 1e+07] (got 0)"),
    ({"expansion": 0.5}, "expansion: expected an expansion ratio in [1, 16] (got 0.5)"),
    ({"stem_channels": 12.5}, "stem_channels: expected an integer in [1, 4096] (got 12.5)"),
    ({"activation": {"early": "relu", "late": "hswish"}}, "give exactly one of from_block"),
    ({"activation": {"early": "relu", "late": "hswish", "from_block": 0}},
     "activation.from_block: expected a block number in [1, 16] (1-based) (got 0)"),
    ({"activation": {"early": "relu", "late": "hswish", "from_channels": 8, "depth": 1}},
     "activation.depth: unknown key (got 1); valid: early, late, from_block"),
    ({"activation": {"late": "hswish", "from_block": 3}}, "missing key 'early'"),
    ({"activation": {"early": "elu", "late": "hswish", "from_block": 3}},
     "activation.early: unknown activation (got 'elu')"),
    ({"activation": 3}, "activation: expected a name, a placement mapping or a per-block list"),
]


@pytest.mark.parametrize(("factors", "message"), ERRORS)
def test_invalid_values_raise_one_clear_error(factors: dict, message: str) -> None:
    with pytest.raises(FactorError) as raised:
        resolve_architecture("mobilenet_v3_large", factors)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_expansion_on_a_layout_without_bottlenecks() -> None:
    with pytest.raises(FactorError, match="mobilenet_v1 layout has no inverted bottleneck"):
        resolve_architecture("mobilenet_v1", {"expansion": 6})
    with pytest.raises(FactorError, match="mobilenet_v1 layout has no inverted bottleneck"):
        resolve_architecture("mobilenet_v2", {"layout": "mobilenet_v1", "expansion": [6] * 13})
    with pytest.raises(FactorError, match=r"expansion\[2\]: expected an expansion ratio"):
        resolve_architecture("mobilenet_v2", {"expansion": [6, 6, 0] + [6] * 14})


def test_unknown_base_architecture() -> None:
    with pytest.raises(AblateError, match=r"base: unknown architecture .*'mobilenet_v4'.*valid"):
        ablate.build_model("mobilenet_v4")


def _final_channels(base: str, **factors: object) -> int:
    model = ablate.build_model(base, **factors)
    if hasattr(model.classifier, "hidden"):
        return model.classifier.hidden.out_features
    return model.last_stage.pointwise.conv.out_channels


@pytest.mark.parametrize(
    ("base", "rule", "width", "expected"),
    [
        ("mobilenet_v3_large", None, 0.5, 640),  # torchvision: scaled
        ("mobilenet_v3_large", "kept", 0.5, 1280),
        ("mobilenet_v3_large", "kept", 1.25, 1600),  # kept scales above width 1
        ("mobilenet_v3_large", "fixed", 1.25, 1280),
        ("mobilenet_v3_small", "fixed", 0.35, 1024),
        ("mobilenet_v3_small", "mobilenet_v2", 0.35, 1024),  # V2's rule is kept
        ("mobilenet_v2", None, 0.35, 1280),  # the V2 reference keeps 1280 below width 1
        ("mobilenet_v2", "scaled", 0.5, 640),
        ("mobilenet_v2", None, 1.4, 1792),
    ],
)
def test_last_stage_width(base: str, rule: str | None, width: float, expected: int) -> None:
    factors: dict[str, object] = {"width": width}
    if rule is not None:
        factors["last_stage_width"] = rule
    assert _final_channels(base, **factors) == expected


def test_last_stage_width_errors() -> None:
    with pytest.raises(FactorError, match=r"last_stage_width: unknown last stage width rule "
                       r"\(got 'half'\); valid: scaled, kept, fixed, mobilenet_v1"):
        resolve_architecture("mobilenet_v3_large", {"last_stage_width": "half"})
    with pytest.raises(FactorError, match="has no effect with last_stage v1"):
        resolve_architecture("mobilenet_v1", {"last_stage_width": "kept"})
    with pytest.raises(FactorError, match="has no effect with last_stage none"):
        resolve_architecture("mobilenet_v2", {"last_stage": "none", "last_stage_width": "kept"})
