"""MobileNetV4's blocks and built-ins against timm, the reference implementation.

Every reference number below was derived with timm 1.0.31 (on torch 2.14.1, in an environment
of its own: ablate does not depend on timm) from ``timm.create_model(NAME, pretrained=False)``
(``mobilenetv4_conv_small``, ``mobilenetv4_conv_medium``) or, for other widths, from
``timm.models.mobilenetv3._gen_mobilenet_v4(NAME, channel_multiplier)``:

- parameters: ``sum(p.numel() for p in model.parameters())`` (BN weights counted, buffers not);
- MACs: forward hooks on one 1x3xRxR input at timm's default resolution (224 for the small
  model, 256 for the medium one), conv ``out_h * out_w * out_c * in_c / groups * k * k``,
  linear ``in * out``. The same hook script gives 216,589,760 MACs on timm's
  ``mobilenetv3_large_100``, exactly ablate's conv + linear MACs of ``mobilenet_v3_large``
  (tests/test_cli_architecture.py), and on ablate-built models exactly the numbers below: the
  two conventions are the same;
- the conv sequences: the same hooks, recording each conv's (in, out, kernel, stride, groups)
  in the order the forward pass runs them (``TIMM_CONVS``).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ablate
from ablate.architecture.builder import BLOCK_BUILDERS, block_operator, layer_rows
from ablate.architecture.description import BLOCK_KINDS, make_divisible
from ablate.architecture.layers import Block
from ablate.architecture.tables import ARCHITECTURES, decode_block
from ablate.counting import count_model
from ablate.errors import FactorError
from ablate.variants.resolve import resolve_architecture
from tests.conftest import parameter_count

# name -> (timm's default resolution, parameters, conv + linear MACs), timm 1.0.31.
TIMM_COUNTS = {
    "mobilenet_v4_conv_small": (224, 3_774_024, 186_005_568),
    "mobilenet_v4_conv_medium": (256, 9_715_512, 1_080_244_224),
}

# Parameters of _gen_mobilenet_v4(NAME, channel_multiplier) in timm 1.0.31. Below width 1 timm
# keeps the stem's 32 channels (fix_stem); the 960 conv scales, the 1280 never does.
TIMM_PARAMS_AT_WIDTH = {
    ("mobilenet_v4_conv_small", 0.5): 2_238_952,
    ("mobilenet_v4_conv_small", 0.75): 2_933_912,
    ("mobilenet_v4_conv_small", 1.5): 5_897_080,
    ("mobilenet_v4_conv_medium", 0.5): 3_803_488,
    ("mobilenet_v4_conv_medium", 0.75): 6_343_320,
    ("mobilenet_v4_conv_medium", 1.5): 19_108_960,
}

# timm's convs in forward order, "IN>OUTkKsS" plus "dw" for a depthwise conv (groups == IN;
# every other conv has groups 1), then its classifier "fcIN>OUT". Ends with timm's last `cn`
# block (the 960 conv, ablate's last stage) and conv_head (960 -> 1280, ablate's hidden layer).
TIMM_CONVS = {
    "mobilenet_v4_conv_small": """
        3>32k3s2 32>32k3s2 32>32k1s1 32>96k3s2 96>64k1s1 64>64k5s1dw 64>192k1s1 192>192k5s2dw
        192>96k1s1 96>192k1s1 192>192k3s1dw 192>96k1s1 96>192k1s1 192>192k3s1dw 192>96k1s1
        96>192k1s1 192>192k3s1dw 192>96k1s1 96>192k1s1 192>192k3s1dw 192>96k1s1 96>96k3s1dw
        96>384k1s1 384>96k1s1 96>96k3s1dw 96>576k1s1 576>576k3s2dw 576>128k1s1 128>128k5s1dw
        128>512k1s1 512>512k5s1dw 512>128k1s1 128>512k1s1 512>512k5s1dw 512>128k1s1
        128>384k1s1 384>384k5s1dw 384>128k1s1 128>512k1s1 512>512k3s1dw 512>128k1s1
        128>512k1s1 512>512k3s1dw 512>128k1s1 128>960k1s1 960>1280k1s1 fc1280>1000
    """,
    "mobilenet_v4_conv_medium": """
        3>32k3s2 32>128k3s2 128>48k1s1 48>48k3s1dw 48>192k1s1 192>192k5s2dw 192>80k1s1
        80>80k3s1dw 80>160k1s1 160>160k3s1dw 160>80k1s1 80>80k3s1dw 80>480k1s1 480>480k5s2dw
        480>160k1s1 160>160k3s1dw 160>640k1s1 640>640k3s1dw 640>160k1s1 160>160k3s1dw
        160>640k1s1 640>640k3s1dw 640>160k1s1 160>160k3s1dw 160>640k1s1 640>640k5s1dw
        640>160k1s1 160>160k3s1dw 160>640k1s1 640>640k3s1dw 640>160k1s1 160>160k3s1dw
        160>640k1s1 640>160k1s1 160>320k1s1 320>160k1s1 160>160k3s1dw 160>640k1s1 640>160k1s1
        160>160k5s1dw 160>960k1s1 960>960k5s2dw 960>256k1s1 256>256k5s1dw 256>1024k1s1
        1024>1024k5s1dw 1024>256k1s1 256>256k3s1dw 256>1024k1s1 1024>1024k5s1dw 1024>256k1s1
        256>256k3s1dw 256>1024k1s1 1024>1024k5s1dw 1024>256k1s1 256>1024k1s1 1024>256k1s1
        256>256k3s1dw 256>1024k1s1 1024>256k1s1 256>256k3s1dw 256>512k1s1 512>512k5s1dw
        512>256k1s1 256>256k5s1dw 256>1024k1s1 1024>1024k5s1dw 1024>256k1s1 256>1024k1s1
        1024>256k1s1 256>1024k1s1 1024>256k1s1 256>256k5s1dw 256>512k1s1 512>256k1s1
        256>960k1s1 960>1280k1s1 fc1280>1000
    """,
}

# timm's `has_skip` of each block in order (its final 960 `cn` block, never residual, left out).
TIMM_RESIDUALS = {
    "mobilenet_v4_conv_small": [False] * 5 + [True] * 5 + [False] + [True] * 5,
    "mobilenet_v4_conv_medium": [False, False, True, False] + [True] * 7 + [False] + [True] * 10,
}


def _conv_sequence(model: nn.Module, resolution: int) -> list[str]:
    """The convs and linears a forward pass runs, in order, in TIMM_CONVS's notation."""
    sequence: list[str] = []

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(module, nn.Linear):
            sequence.append(f"fc{module.in_features}>{module.out_features}")
            return
        assert isinstance(module, nn.Conv2d)
        assert module.groups in (1, module.in_channels)
        depthwise = "dw" if module.groups == module.in_channels > 1 else ""
        sequence.append(
            f"{module.in_channels}>{module.out_channels}"
            f"k{module.kernel_size[0]}s{module.stride[0]}{depthwise}"
        )

    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, resolution, resolution))
    for handle in handles:
        handle.remove()
    return sequence


@pytest.mark.parametrize(("name", "counts"), TIMM_COUNTS.items())
def test_parameters_and_resolution_match_timm(name: str, counts: tuple[int, int, int]) -> None:
    resolution, params, _ = counts
    assert ARCHITECTURES[name].resolution == resolution
    assert parameter_count(ablate.build_model(name)) == params


@pytest.mark.parametrize(("name", "counts"), TIMM_COUNTS.items())
def test_macs_match_timm(name: str, counts: tuple[int, int, int]) -> None:
    resolution, _, macs = counts
    model = ablate.build_model(name)
    counted = count_model(model, (1, 3, resolution, resolution))
    assert counted.totals["macs"] == macs
    assert not counted.unknown_ops
    # torch's own FlopCounterMode (2 FLOPs per MAC) agrees.
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, resolution, resolution))
    assert counter.get_total_flops() // 2 == macs


@pytest.mark.parametrize(("name", "width"), TIMM_PARAMS_AT_WIDTH)
def test_parameters_match_timm_at_other_widths(name: str, width: float) -> None:
    model = ablate.build_model(name, width=width)
    assert parameter_count(model) == TIMM_PARAMS_AT_WIDTH[(name, width)]
    assert model.stem.conv.out_channels == (32 if width < 1 else make_divisible(32 * width))


@pytest.mark.parametrize("name", TIMM_CONVS)
def test_conv_sequence_and_residuals_match_timm(name: str) -> None:
    model = ablate.build_model(name)
    # Kernels, strides, groups and channels do not depend on the input size.
    assert _conv_sequence(model, 64) == TIMM_CONVS[name].split()
    assert [block.residual for block in model.blocks] == TIMM_RESIDUALS[name]


@pytest.mark.parametrize("name", TIMM_COUNTS)
def test_layer_rows_hold_every_parameter(name: str) -> None:
    architecture = resolve_architecture(name)
    model = ablate.build_model(name)
    rows = layer_rows(architecture, model)
    assert sum(row.params for row in rows) == parameter_count(model)
    # Stride 32 overall: the last block's output at 224 is 7x7, at 256 8x8.
    last_conv = next(row for row in rows if row.layer == "last conv")
    assert last_conv.input_height == architecture.resolution // 32
    assert (last_conv.out_channels, rows[-2].operator, rows[-2].out_channels) == (
        960,
        "conv2d 1x1",
        1280,
    )


def test_the_small_models_block_operators_follow_the_paper() -> None:
    blocks = ARCHITECTURES["mobilenet_v4_conv_small"].blocks
    assert [block_operator(block) for block in blocks] == [
        "conv2d 3x3",
        "conv2d 1x1",
        "conv2d 3x3",
        "conv2d 1x1",
        "uib extradw 5x5 5x5",
        *["uib ib 3x3"] * 4,
        "uib convnext 3x3",
        "uib extradw 3x3 3x3",
        "uib extradw 5x5 5x5",
        "uib ib 5x5",
        "uib ib 5x5",
        "uib ib 3x3",
        "uib ib 3x3",
    ]


def test_every_block_kind_has_a_builder() -> None:
    assert set(BLOCK_BUILDERS) == set(BLOCK_KINDS)


def _block(code: str, in_channels: int = 8) -> Block:
    (block,) = decode_block(code, in_channels)
    return BLOCK_BUILDERS[block.kind](block, in_channels, 1.0, 1e-5)


# One tiny block of each kind, 8 -> 8 channels, ratio 2 (16 expanded: make_divisible(16) = 16),
# counted by hand: a conv's weights in * out / groups * k * k (no bias), each BN 2 x channels.
#   start dw 3x3 on 8:   8 * 9 + 2 * 8 = 88
#   expand 1x1 8 -> 16:  8 * 16 + 2 * 16 = 160
#   dw 3x3 on 16:        16 * 9 + 2 * 16 = 176
#   project 1x1 16 -> 8: 16 * 8 + 2 * 8 = 144
#   fused 3x3 8 -> 16:   8 * 16 * 9 + 2 * 16 = 1,184
#   plain conv 3x3 8->8: 8 * 8 * 9 + 2 * 8 = 592
@pytest.mark.parametrize(
    ("code", "params", "layers"),
    [
        ("uir_a0_k3_t2_c8_s1_re", 160 + 176 + 144, ["expand", "depthwise", "project"]),
        (
            "uir_a3_k3_t2_c8_s1_re",
            88 + 160 + 176 + 144,
            ["start", "expand", "depthwise", "project"],
        ),
        ("uir_a3_k0_t2_c8_s1_re", 88 + 160 + 144, ["start", "expand", "project"]),
        ("uir_a0_k0_t2_c8_s1_re", 160 + 144, ["expand", "project"]),
        ("er_k3_t2_c8_s1_re", 1_184 + 144, ["expand", "project"]),
        ("cn_k3_c8_s1_re", 592, ["conv"]),
    ],
    ids=["ib", "extradw", "convnext", "ffn", "fused", "conv"],
)
def test_each_block_kinds_parameters_by_hand(code: str, params: int, layers: list[str]) -> None:
    module = _block(code)
    assert parameter_count(module) == params
    assert [name for name, _ in module.named_children()] == layers
    # Residual at stride 1 with equal channels, as timm's has_skip; never on a plain conv.
    assert module.residual == (not code.startswith("cn"))


def test_universal_block_activations_as_timm() -> None:
    # ExtraDW: the start dw is linear (BN, no activation); expansion and middle dw activate;
    # the projection is linear.
    module = _block("uir_a3_k3_t2_c8_s1_hs")
    acts = {name: hasattr(layer, "act") for name, layer in module.named_children()}
    assert acts == {"start": False, "expand": True, "depthwise": True, "project": False}
    assert isinstance(module.expand.act, nn.Hardswish)


@pytest.mark.parametrize(
    ("code", "strides"),
    [
        # The middle dw carries the stride when there is one, else the start dw (timm).
        ("uir_a3_k5_t2_c16_s2_re", {"start": 1, "expand": 1, "depthwise": 2, "project": 1}),
        ("uir_a3_k0_t2_c16_s2_re", {"start": 2, "expand": 1, "project": 1}),
        ("uir_a0_k3_t2_c16_s2_re", {"expand": 1, "depthwise": 2, "project": 1}),
        ("er_k3_t4_c16_s2_re", {"expand": 2, "project": 1}),
    ],
)
def test_the_stride_sits_where_timm_puts_it(code: str, strides: dict[str, int]) -> None:
    module = _block(code)
    assert {name: layer.conv.stride[0] for name, layer in module.named_children()} == strides
    assert not module.residual  # stride 2 and 8 -> 16 channels
    with torch.inference_mode():
        assert module(torch.zeros(1, 8, 16, 16)).shape == (1, 16, 8, 8)


def test_expansion_rounds_to_eight_as_timm() -> None:
    # timm: make_divisible(in_chs * exp_ratio); V2's bottleneck rounds (round(24 * 2.5) = 60).
    assert _block("uir_a0_k3_t2.5_c24_s1_re", 24).expand.conv.out_channels == 64
    assert _block("er_k3_t2.5_c24_s1_re", 24).expand.conv.out_channels == 64
    (bottleneck,) = decode_block("ir_k3_t2.5_c24_s1_re", 24)
    module = BLOCK_BUILDERS["bottleneck"](bottleneck, 24, 1.0, 1e-5)
    assert module.expand.conv.out_channels == 60
    # A universal block keeps its expansion conv at ratio 1 (timm's pw_exp), unlike V2's.
    assert isinstance(_block("uir_a0_k3_t1_c8_s1_re").expand, nn.Sequential)


def test_an_ffn_cannot_carry_a_stride() -> None:
    with pytest.raises(ValueError, match=r"without depthwise convs \(FFN\) cannot carry stride 2"):
        decode_block("uir_a0_k0_t2_c16_s2_re", 8)


@pytest.mark.parametrize(
    "code",
    [
        "uir_k3_t2_c8_s1_re",  # a universal block names its start kernel, a0 for none
        "ir_a3_k3_t6_c8_s1_re",  # only a universal block has a start dw
        "uir_a3_k3_e32_c8_s1_re",  # its expansion is a ratio of the input
        "uir_a3_k3_c8_s1_re",  # ... and it has one
        "uir_a3_k3_t2_c8_s1_se_re",  # no SE in MobileNetV4's blocks
        "cn_k3_t2_c8_s1_re",  # a plain conv has no expansion
    ],
)
def test_malformed_mobilenet_v4_codes(code: str) -> None:
    with pytest.raises(ValueError, match="malformed block code"):
        decode_block(code, 8)


# What the per-block factors cannot reach on the new kinds is refused, never dropped; what
# they do reach (kernels, expansions, SE, UIB variants, other layouts) is tests/test_v4_factors.py.
@pytest.mark.parametrize(
    ("base", "factors", "message"),
    [
        (
            "mobilenet_v4_conv_small",
            {"kernel": [5] * 16},
            "kernel[0]: block 1 is a conv block, which has no depthwise conv: give null (got 5)",
        ),
        (
            "mobilenet_v4_conv_small",
            {"expansion": [None] * 3 + [4] * 13},
            "expansion[3]: block 4 is a conv block, which has no expansion: give null",
        ),
        ("mobilenet_v4_conv_small", {"se": ["on"] * 16}, "se[0]: block 1 is a conv block, which"),
        (
            "ssdlite_mobilenet_v3_large",
            {"backbone": "mobilenet_v4_conv_small"},
            "layout: a detector's backbone has separable and bottleneck blocks only, not the "
            "conv and universal blocks of mobilenet_v4_conv_small",
        ),
        ("mobilenet_v4_conv_small", {"se_ratio": 0.5}, "se_ratio: has no effect: no SE block"),
    ],
)
def test_factors_that_do_not_reach_the_new_kinds_are_refused(
    base: str, factors: dict[str, object], message: str
) -> None:
    with pytest.raises(FactorError) as raised:
        resolve_architecture(base, factors)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_factors_that_apply_to_every_kind() -> None:
    published = resolve_architecture("mobilenet_v4_conv_small")
    # Its own settings by name are no change at all.
    for factors in ({"backbone": "mobilenet_v4_conv_small"}, {"kernel": "mobilenet_v4_conv_small"}):
        assert resolve_architecture("mobilenet_v4_conv_small", factors) == published
    swish = ablate.build_model("mobilenet_v4_conv_small", activation="hswish")
    assert parameter_count(swish) == 3_774_024
    assert not any(isinstance(module, nn.ReLU) for module in swish.modules())
    # V2's last stage instead: the 128 -> 960 conv + BN and the 960 -> 1280 conv + BN go, a
    # 128 -> 1280 conv + BN comes; the 1280 -> 1000 classifier stays.
    v2_tail = ablate.build_model("mobilenet_v4_conv_small", last_stage="v2")
    removed = (128 * 960 + 2 * 960) + (960 * 1280 + 2 * 1280)
    added = 128 * 1280 + 2 * 1280
    assert parameter_count(v2_tail) == 3_774_024 - removed + added == 2_584_264
    # MobileNetV4's last stage on V3-Large: its 960 -> 1280 linear with bias (1,280) becomes a
    # conv without bias + BN (2 x 1,280).
    v4_tail = ablate.build_model("mobilenet_v3_large", last_stage="mobilenet_v4_conv_small")
    assert parameter_count(v4_tail) == 5_483_032 + 1_280


def test_the_head_runs_on_the_pooled_map() -> None:
    model = ablate.build_model("mobilenet_v4_conv_small", resolution=96)
    hidden = model.classifier.hidden
    assert isinstance(hidden.conv, nn.Conv2d) and hidden.conv.bias is None
    assert isinstance(hidden.bn, nn.BatchNorm2d) and isinstance(hidden.act, nn.ReLU)
    assert list(OrderedDict(model.classifier.named_children())) == ["hidden", "flatten", "output"]
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 1000)


@pytest.mark.parametrize(("tail", "c5"), [("full", 960), ("reduced", 480)])
def test_a_detector_with_the_v4_last_stage_keeps_only_its_960_conv(tail: str, c5: int) -> None:
    # A detector's backbone ends with the conv before pooling; the reduced tail halves it.
    factors = {"last_stage": "v4", "tail": tail}
    model = ablate.build_model("ssdlite_mobilenet_v2", **factors)
    rows = layer_rows(resolve_architecture("ssdlite_mobilenet_v2", factors), model)
    assert next(row.out_channels for row in rows if row.layer == "last conv (C5)") == c5
    assert sum(row.params for row in rows) == parameter_count(model)
