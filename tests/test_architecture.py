"""Built-in architectures: exact reference parameter counts, shapes, width rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ablate
from ablate.architecture.builder import build_module
from ablate.architecture.description import make_divisible
from ablate.architecture.layers import Block, SqueezeExcitation
from ablate.architecture.tables import ARCHITECTURES, decode_block
from tests.conftest import parameter_count

# Exact reference counts (width 1.0, 224x224, 1000 classes, BN weights counted, buffers not):
# the torchvision 0.29 and timm 1.0 implementations of the papers' Tables (MobileNets Table 1,
# MobileNetV2 Table 2, MobileNetV3 Tables 1 and 2).
REFERENCE_PARAMS = {
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "mnasnet_a1": 3_887_038,
}


@pytest.mark.parametrize(("name", "params"), REFERENCE_PARAMS.items())
def test_reference_parameter_counts(name: str, params: int) -> None:
    assert parameter_count(ablate.build_model(name)) == params


@pytest.mark.parametrize("name", REFERENCE_PARAMS)
@pytest.mark.parametrize("resolution", [96, 160, 224, 320])
def test_output_shape_at_several_resolutions(name: str, resolution: int) -> None:
    model = ablate.build_model(name, num_classes=10)
    with torch.inference_mode():
        assert model(torch.randn(2, 3, resolution, resolution)).shape == (2, 10)


@pytest.mark.parametrize(("resolution", "side"), [(224, 7), (160, 5), (320, 10), (225, 8)])
def test_feature_extractor_output_stride_32(resolution: int, side: int) -> None:
    model = ablate.build_model("mobilenet_v3_large", last_stage="none")
    with torch.inference_mode():
        assert model(torch.randn(1, 3, resolution, resolution)).shape == (1, 160, side, side)


def test_built_model_is_in_eval_mode() -> None:
    model = ablate.build_model("mobilenet_v2")
    assert not any(module.training for module in model.modules())


def test_make_divisible_matches_reference_rounding() -> None:
    # Nearest multiple of 8, never below 8, bumped when more than 10% below the value.
    assert make_divisible(16 * 0.35) == 8  # 5.6 -> 8 (never below the divisor)
    assert make_divisible(24 * 0.5) == 16  # 12 + 4 = 16 -> 16
    assert make_divisible(20) == 24  # 24 (ties go up via int(v + 4) // 8)
    assert make_divisible(92) == 96  # 96 // 8 * 8
    assert make_divisible(36) == 40  # 40 // 8 * 8 = 40
    assert make_divisible(1280 * 0.75) == 960
    assert make_divisible(72 * 0.35) == 24  # 25.2 -> 24 (not below 22.68)
    assert make_divisible(10.0) == 16  # 14 // 8 * 8 = 8 < 9, so +8


# An independent transcription of the reference implementations' channel arithmetic
# (torchvision mobilenetv2.py / mobilenetv3.py), to compare conv shapes at every width.
V3_LARGE_CONFIG = [  # (in, kernel, exp, out, se, stride)
    (16, 3, 16, 16, False, 1), (16, 3, 64, 24, False, 2), (24, 3, 72, 24, False, 1),
    (24, 5, 72, 40, True, 2), (40, 5, 120, 40, True, 1), (40, 5, 120, 40, True, 1),
    (40, 3, 240, 80, False, 2), (80, 3, 200, 80, False, 1), (80, 3, 184, 80, False, 1),
    (80, 3, 184, 80, False, 1), (80, 3, 480, 112, True, 1), (112, 3, 672, 112, True, 1),
    (112, 5, 672, 160, True, 2), (160, 5, 960, 160, True, 1), (160, 5, 960, 160, True, 1),
]
V3_SMALL_CONFIG = [
    (16, 3, 16, 16, True, 2), (16, 3, 72, 24, False, 2), (24, 3, 88, 24, False, 1),
    (24, 5, 96, 40, True, 2), (40, 5, 240, 40, True, 1), (40, 5, 240, 40, True, 1),
    (40, 5, 120, 48, True, 1), (48, 5, 144, 48, True, 1), (48, 5, 288, 96, True, 2),
    (96, 5, 576, 96, True, 1), (96, 5, 576, 96, True, 1),
]
V2_CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]


def reference_v3_shapes(config: list[tuple], last: int, width: float) -> list[tuple[int, ...]]:
    def adjust(channels: float) -> int:
        return make_divisible(channels * width)

    shapes: list[tuple[int, ...]] = [(adjust(config[0][0]), 3, 3, 3)]
    for inp, kernel, exp, out, se, _ in config:
        inp, exp, out = adjust(inp), adjust(exp), adjust(out)
        if exp != inp:
            shapes.append((exp, inp, 1, 1))
        shapes.append((exp, 1, kernel, kernel))
        if se:
            squeeze = make_divisible(exp // 4)
            shapes += [(squeeze, exp, 1, 1), (exp, squeeze, 1, 1)]
        shapes.append((out, exp, 1, 1))
    last_in = adjust(config[-1][3])
    shapes.append((6 * last_in, last_in, 1, 1))
    shapes += [(adjust(last), 6 * last_in), (1000, adjust(last))]
    return shapes


def reference_v2_shapes(width: float) -> list[tuple[int, ...]]:
    inp = make_divisible(32 * width)
    shapes: list[tuple[int, ...]] = [(inp, 3, 3, 3)]
    for t, c, n, _ in V2_CONFIG:
        out = make_divisible(c * width)
        for _ in range(n):
            hidden = round(inp * t)  # the reference: int(round(inp * t))
            if t != 1:
                shapes.append((hidden, inp, 1, 1))
            shapes += [(hidden, 1, 3, 3), (out, hidden, 1, 1)]
            inp = out
    last = make_divisible(1280 * max(1.0, width))
    return [*shapes, (last, inp, 1, 1), (1000, last)]


def weight_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [
        tuple(module.weight.shape)
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]


WIDTHS = [0.25, 0.35, 0.5, 0.6, 0.75, 0.875, 1.0, 1.1, 1.25, 1.3, 1.4, 2.0]


@pytest.mark.parametrize("width", WIDTHS)
def test_width_rounding_matches_reference_v3(width: float) -> None:
    large = ablate.build_model("mobilenet_v3_large", width=width)
    small = ablate.build_model("mobilenet_v3_small", width=width)
    assert weight_shapes(large) == reference_v3_shapes(V3_LARGE_CONFIG, 1280, width)
    assert weight_shapes(small) == reference_v3_shapes(V3_SMALL_CONFIG, 1024, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_width_rounding_matches_reference_v2(width: float) -> None:
    assert weight_shapes(ablate.build_model("mobilenet_v2", width=width)) == (
        reference_v2_shapes(width)
    )


def test_v2_keeps_1280_channels_below_width_one() -> None:
    model = ablate.build_model("mobilenet_v2", width=0.5)
    assert model.last_stage.pointwise.conv.out_channels == 1280
    assert ablate.build_model("mobilenet_v2", width=1.4).classifier.output.in_features == 1792


def test_block_structure_follows_the_reference() -> None:
    model = ablate.build_model("mobilenet_v3_large")
    first, fourth, last = model.blocks[0], model.blocks[3], model.blocks[14]
    # Block 1: exp == in, so no expansion conv; stride 1 and 16 -> 16, so residual.
    assert list(first._modules) == ["depthwise", "project"] and first.residual
    assert list(fourth._modules) == ["expand", "depthwise", "se", "project"]
    assert not fourth.residual  # stride 2
    assert isinstance(fourth.se, SqueezeExcitation)
    assert fourth.se.reduce.out_channels == 24  # make_divisible(72 // 4 = 18) = 24
    assert isinstance(fourth.se.gate, nn.Hardsigmoid)
    assert last.residual and isinstance(last.depthwise.act, nn.Hardswish)
    assert "act" not in last.project._modules  # linear bottleneck


def test_v1_blocks_are_depthwise_separable_without_residual() -> None:
    model = ablate.build_model("mobilenet_v1")
    block = model.blocks[2]  # 128 -> 128, stride 1
    assert isinstance(block, Block) and not block.residual
    assert list(block._modules) == ["depthwise", "project"]
    assert isinstance(block.project.act, nn.ReLU)


def test_forward_has_no_extra_operations() -> None:
    # Beyond modules, V3-Large's reference forward has exactly one residual add per residual
    # block and, per SE block, one pool and one multiply: no reshapes, copies or extra calls.
    import operator
    from collections import Counter

    from torch.nn import functional

    model = ablate.build_model("mobilenet_v3_large")
    graph = torch.fx.symbolic_trace(model).graph
    calls = Counter(node.target for node in graph.nodes if node.op != "call_module")
    residual = sum(block.residual for block in model.blocks)
    squeeze_excite = sum(hasattr(block, "se") for block in model.blocks)
    assert (residual, squeeze_excite) == (10, 8)
    assert calls == Counter(
        {operator.add: residual, operator.mul: squeeze_excite,
         functional.adaptive_avg_pool2d: squeeze_excite, "input": 1, "output": 1}
    )


def test_decode_block_codes() -> None:
    (block,) = decode_block("ir_k5_e120_c40_s1_se_re", 40)
    assert (block.kernel_size, block.expansion.channels, block.out_channels) == (5, 120, 40)
    assert block.squeeze_excite is not None and block.activation == "relu"
    repeats = decode_block("ir_k3_t6_c24_s2_r6_x2", 16)
    assert [b.stride for b in repeats] == [2, 1]
    assert [b.expansion.ratio for b in repeats] == [6.0, 6.0]
    (stem_width,) = decode_block("ir_k3_e16_c16_s1_re", 16)
    assert stem_width.expansion.ratio == 1.0  # exp == in: no expansion conv
    with pytest.raises(ValueError, match="malformed block code"):
        decode_block("ir_k3_c16", 16)


def test_tables_hold_the_paper_block_counts() -> None:
    assert {name: len(a.blocks) for name, a in ARCHITECTURES.items()} == {
        "mobilenet_v1": 13, "mobilenet_v2": 17, "mobilenet_v3_large": 15,
        "mobilenet_v3_small": 11, "mnasnet_a1": 16,
        # timm's block strings, each repeat one block (the 960 conv is the last stage's).
        "mobilenet_v4_conv_small": 16, "mobilenet_v4_conv_medium": 22,
        # A detector's backbone keeps its classifier's blocks.
        "ssdlite_mobilenet_v1": 13, "ssdlite_mobilenet_v2": 17,
        "ssdlite_mobilenet_v3_large": 15, "ssdlite_mobilenet_v3_small": 11,
        "ssdlite_mnasnet_a1": 16, "ssd_mobilenet_v1": 13,
        "ssdlite_mobilenet_v3_large_reduced": 15, "ssdlite_mobilenet_v3_small_reduced": 11,
    }


def test_build_module_is_deterministic_in_structure() -> None:
    first = build_module(ARCHITECTURES["mobilenet_v3_small"])
    second = build_module(ARCHITECTURES["mobilenet_v3_small"])
    assert weight_shapes(first) == weight_shapes(second)
