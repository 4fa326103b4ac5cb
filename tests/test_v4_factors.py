"""The `uib` factor, the per-block factors on MobileNetV4's blocks, and the V3-Large <->
MobileNetV4-Conv-S mixtures of experiments/why_v4_faster.yaml."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

import ablate
from ablate.architecture.builder import layer_rows
from ablate.architecture.description import UNIVERSAL_VARIANTS
from ablate.architecture.tables import ARCHITECTURES
from ablate.counting import count_model
from ablate.errors import FactorError, InputFileError
from ablate.spec import load_spec, load_spec_text
from ablate.variants.factors import FACTORS, describe_factors
from ablate.variants.resolve import map_blocks, resolve_architecture
from tests.conftest import parameter_count
from tests.test_mobilenet_v4 import TIMM_COUNTS

V3, V4 = "mobilenet_v3_large", "mobilenet_v4_conv_small"
SPEC = Path(__file__).resolve().parent.parent / "experiments" / "why_v4_faster.yaml"
FACTOR_LIST = ("layout", "uib", "expansion", "se", "activation", "stem_channels", "last_stage")
# (parameters, conv + linear MACs) at 224: V3-Large's as torchvision's and timm's
# mobilenetv3_large_100 (tests/test_counting_models.py), MNv4-Conv-S's as timm 1.0.31's
# (tests/test_mobilenet_v4.py).
V3_COUNTS = (5_483_032, 216_589_760)
V4_COUNTS = TIMM_COUNTS[V4][1:]
# MNv4-Conv-S's own variants, null for its four plain convs.
V4_VARIANTS = [None] * 4 + [
    "extradw", "ib", "ib", "ib", "ib", "convnext", "extradw", "extradw", "ib", "ib", "ib", "ib"
]


def counts(base: str, **factors: object) -> tuple[int, int]:
    model = ablate.build_model(base, **factors)
    return parameter_count(model), count_model(model, (1, 3, 224, 224)).totals["macs"]


def coalition(members: tuple[str, ...]) -> dict[str, str]:
    return {factor: V4 if factor in members else V3 for factor in FACTOR_LIST}


# -- the experiment --------------------------------------------------------------------------


def test_the_experiment_attributes_v3_large_to_v4_small_over_seven_factors() -> None:
    spec = load_spec(SPEC)
    assert spec.attribution is not None
    assert spec.attribution.factors == FACTOR_LIST
    assert (spec.attribution.from_architecture, spec.attribution.to_architecture) == (V3, V4)
    # Every coalition is its own network: no factor is without effect anywhere.
    assert len(spec.variants) == len(spec.architecture_groups()) == 2 ** len(FACTOR_LIST)
    assert (spec.measure.budget_s, spec.measure.warmup_s) == (480, 2)


def test_both_ends_are_exactly_the_two_built_ins() -> None:
    spec = load_spec(SPEC)
    everything = "to:{" + ",".join(FACTOR_LIST) + "}"
    assert spec.variant("to:{}").architecture == ARCHITECTURES[V3]
    assert spec.variant(everything).architecture == ARCHITECTURES[V4]
    assert counts(V3, **coalition(())) == V3_COUNTS
    assert counts(V3, **coalition(FACTOR_LIST)) == V4_COUNTS
    # The other way round too: from MNv4-Conv-S every factor at V3-Large is V3-Large.
    assert resolve_architecture(V4, coalition(())) == ARCHITECTURES[V3]


def _build_and_run(members: tuple[str, ...]) -> None:
    architecture = resolve_architecture(V3, coalition(members))
    model = ablate.build_model(V3, **coalition(members))
    # The layer rows read every block off the built module and hold every parameter.
    assert sum(row.params for row in layer_rows(architecture, model)) == parameter_count(model)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize(
    "members",
    [
        *((factor,) for factor in FACTOR_LIST),
        *(tuple(f for f in FACTOR_LIST if f != factor) for factor in FACTOR_LIST),
    ],
    ids=[*FACTOR_LIST, *(f"all-but-{factor}" for factor in FACTOR_LIST)],
)
def test_each_factor_added_alone_and_removed_alone_builds(members: tuple[str, ...]) -> None:
    _build_and_run(members)


@pytest.mark.slow
def test_every_coalition_builds_runs_and_counts() -> None:
    # About 30 s: 128 builds, forward passes and counts at 224.
    for size in range(len(FACTOR_LIST) + 1):
        for members in itertools.combinations(FACTOR_LIST, size):
            _build_and_run(members)
            counted = count_model(ablate.build_model(V3, **coalition(members)), (1, 3, 224, 224))
            assert not counted.unknown_ops and counted.totals["macs"] > 0


# -- mapping V3-Large's settings onto MNv4-Conv-S's layout and back ----------------------------


def test_v3_settings_on_the_v4_layout_follow_the_stage_mapping() -> None:
    mixed = resolve_architecture(V3, {"layout": V4})
    v4 = ARCHITECTURES[V4]
    # V4's output-stride-16 stage (6 blocks) takes V3's (6 blocks) one to one; its
    # stride-32 stage (6) takes V3's three stride-32 blocks twice each.
    assert map_blocks(ARCHITECTURES[V3], v4)[4:] == [6, 7, 8, 9, 10, 11, 12, 12, 13, 13, 14, 14]
    blocks = mixed.blocks
    # The plain convs have nothing V3 could set but their activation (ReLU there in V3).
    assert [b[:5] for b in map(_fields, blocks[:4])] == [b[:5] for b in map(_fields, v4.blocks)][:4]
    assert [b.activation for b in blocks] == ["relu"] * 4 + ["hswish"] * 12
    # V3's bottlenecks are IBs; their kernels, SE and searched ratios (exp / input) follow.
    assert [b.universal_variant for b in blocks[4:]] == ["ib"] * 12
    assert [b.kernel_size for b in blocks[4:]] == [3] * 6 + [5] * 6
    assert [b.squeeze_excite is not None for b in blocks[4:]] == [False] * 4 + [True] * 8
    assert [b.expansion.ratio for b in blocks[4:]] == [6, 2.5, 2.3, 2.3] + [6] * 8


def test_v4_settings_on_the_v3_layout_follow_the_stage_mapping() -> None:
    mixed = resolve_architecture(V3, {"uib": V4, "expansion": V4, "se": V4})
    v3 = ARCHITECTURES[V3]
    # V3's first six blocks map onto V4's plain convs, which have no depthwise kernel and no
    # expansion: those blocks keep V3's own. SE goes everywhere: V4 has none.
    assert [b.kernel_size for b in mixed.blocks[:6]] == [b.kernel_size for b in v3.blocks[:6]]
    assert [b.expansion for b in mixed.blocks[:6]] == [b.expansion for b in v3.blocks[:6]]
    assert not any(b.squeeze_excite for b in mixed.blocks)
    # The others take V4's kernels (a ConvNext block's start kernel where it has no middle
    # one) with `uib: NAME`, and V4's ratios.
    assert [b.kernel_size for b in mixed.blocks[6:]] == [5, 3, 3, 3, 3, 3, 3, 5, 3]
    assert [b.expansion.ratio for b in mixed.blocks[6:]] == [3, 2, 2, 2, 2, 4, 6, 4, 4]
    assert {b.kind for b in mixed.blocks} == {"bottleneck"}


def _fields(block: object) -> tuple[object, ...]:
    return tuple(getattr(block, name) for name in ("kind", "kernel_size", "expansion",
                                                    "out_channels", "stride", "squeeze_excite"))


def test_layouts_of_every_kind_mix_both_ways() -> None:
    names = ["mobilenet_v1", "mobilenet_v2", "mnasnet_a1", V3, V4, "mobilenet_v4_conv_medium"]
    for base, layout in itertools.permutations(names, 2):
        mixed = resolve_architecture(base, {"layout": layout})
        assert [b.out_channels for b in mixed.blocks] == [
            b.out_channels for b in ARCHITECTURES[layout].blocks
        ]
        if V4 in (base, layout):  # building is what takes time: the small one's pairs
            model = ablate.build_model(base, layout=layout)
            with torch.inference_mode():
                assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000), (base, layout)


# -- the uib factor ------------------------------------------------------------------------------


def _with_variant(index: int, variant: str) -> list[str | None]:
    variants = list(V4_VARIANTS)
    variants[index] = variant
    return variants


# MNv4-Conv-S's sixth block (index 5): an IB 3x3 from 96 to 96 channels, expanded x2 to 192, at
# 14x14 (224 / 16). A depthwise 3x3 conv + BN on C channels has 9C + 2C parameters and 9C MACs
# per output pixel (196 here):
#   start dw on 96:   1,056 parameters, 169,344 MACs (added by extradw and convnext)
#   middle dw on 192: 2,112 parameters, 338,688 MACs (removed by convnext and ffn)
# The expansion and projection (96 x 192 each, 3,612,672 MACs each) stay.
IB_MACS = 2 * 3_612_672 + 338_688
START, MIDDLE = (1_056, 169_344), (2_112, 338_688)


@pytest.mark.parametrize(
    ("variant", "added", "removed", "layers"),
    [
        ("ib", (0, 0), (0, 0), ["expand", "depthwise", "project"]),
        ("extradw", START, (0, 0), ["start", "expand", "depthwise", "project"]),
        ("convnext", START, MIDDLE, ["start", "expand", "project"]),
        ("ffn", (0, 0), MIDDLE, ["expand", "project"]),
    ],
)
def test_each_variant_adds_and_removes_one_depthwise_conv_by_hand(
    variant: str, added: tuple[int, int], removed: tuple[int, int], layers: list[str]
) -> None:
    model = ablate.build_model(V4, uib=_with_variant(5, variant))
    block = model.blocks[5]
    assert [name for name, _ in block.named_children()] == layers
    assert parameter_count(model) == V4_COUNTS[0] + added[0] - removed[0]
    macs = count_model(block, (1, 96, 14, 14)).totals["macs"]
    assert macs == IB_MACS + added[1] - removed[1]
    if "start" in layers:
        # The added conv takes the block's 3x3, is linear (BN, no activation) and keeps the
        # stride 1 of a residual block.
        conv = block.start.conv
        assert (conv.kernel_size, conv.stride, conv.groups) == ((3, 3), (1, 1), 96)
        assert not hasattr(block.start, "act")
    assert block.residual


def test_the_variants_are_one_vocabulary() -> None:
    assert tuple(UNIVERSAL_VARIANTS) == ("ib", "convnext", "extradw", "ffn")
    values = FACTORS["uib"].values
    assert values.startswith(" | ".join(UNIVERSAL_VARIANTS) + "; ")
    for name, variant in UNIVERSAL_VARIANTS.items():
        assert f"{name}: {variant.meaning}" in values
    assert describe_factors(ARCHITECTURES[V4])["uib"] == V4_VARIANTS
    assert describe_factors(ARCHITECTURES[V3])["uib"] == [None] * 15


def test_one_variant_for_all_universal_blocks() -> None:
    resolved = resolve_architecture(V4, {"uib": "extradw"})
    assert [b.universal_variant for b in resolved.blocks[4:]] == ["extradw"] * 12
    # An added conv takes the block's kernel: IB 5x5 -> ExtraDW 5x5 5x5, ConvNext 3x3 -> 3x3 3x3.
    assert [(b.start_kernel_size, b.kernel_size) for b in resolved.blocks[4:]] == [
        (5, 5), (3, 3), (3, 3), (3, 3), (3, 3), (3, 3), (3, 3), (5, 5), (5, 5), (5, 5), (3, 3),
        (3, 3),
    ]
    assert resolved.blocks[:4] == ARCHITECTURES[V4].blocks[:4]
    # A stride-2 ConvNext block strides on its start conv, the only one it has.
    convnext = ablate.build_model(V4, uib="convnext").blocks[4]
    assert convnext.start.conv.stride == (2, 2)


def test_a_named_architecture_sets_variants_and_kernels_unless_kernel_is_given() -> None:
    v3_blocks = resolve_architecture(V4, {"uib": V3})
    # V3-Large's bottlenecks are IBs, with V3's kernels mapped stage by stage.
    assert [b.universal_variant for b in v3_blocks.blocks[4:]] == ["ib"] * 12
    assert v3_blocks == resolve_architecture(V4, {"uib": "ib", "kernel": V3})
    own_kernels = resolve_architecture(V4, {"uib": V3, "kernel": V4})
    assert [b.kernel_size for b in own_kernels.blocks[4:]] == [5, 3, 3, 3, 3, 3, 3, 5, 5, 5, 3, 3]
    # On a layout without universal blocks only the kernels remain.
    assert resolve_architecture("mobilenet_v2", {"uib": V4}) == resolve_architecture(
        "mobilenet_v2", {"kernel": V4}
    )


def test_kernel_and_se_reach_universal_blocks() -> None:
    # Every 3x3 depthwise conv of MNv4-Conv-S becomes 5x5: 16 more weights per channel on
    # 4 x 192 + 96 (ConvNext start) + 96 + 576 (ExtraDW) + 2 x 512 channels = 2,560: +40,960.
    five = ablate.build_model(V4, kernel=[None] * 4 + [5] * 12)
    assert parameter_count(five) == V4_COUNTS[0] + 40_960
    assert parameter_count(ablate.build_model(V4, kernel=5)) == V4_COUNTS[0] + 40_960
    # SE on the expanded channels before the projection, as timm's UniversalInvertedResidual
    # places it: 192 expanded, 48 squeezed: 192 x 48 + 48 + 48 x 192 + 192 = 18,672; in the
    # ConvNext block (no middle conv) after the expansion, 384 / 96: 74,208.
    se = [None] * 16
    se[5] = se[9] = "on"
    model = ablate.build_model(V4, se=[s or ("off" if i > 3 else None) for i, s in enumerate(se)])
    assert [name for name, _ in model.blocks[5].named_children()] == [
        "expand", "depthwise", "se", "project"
    ]
    assert [name for name, _ in model.blocks[9].named_children()] == [
        "start", "expand", "se", "project"
    ]
    assert parameter_count(model) == V4_COUNTS[0] + 18_672 + 74_208
    assert isinstance(model.blocks[5].se.gate, nn.Hardsigmoid)  # V3's gate: the default SE


def test_a_named_stem_keeps_its_width_rule() -> None:
    # timm keeps MNv4's 32-filter stem below width 1; V3-Large scales its 16.
    assert resolve_architecture(V3, {"stem_channels": V4}).stem.width == "kept"
    assert resolve_architecture(V3, {"stem_channels": 32}).stem.width == "scaled"
    model = ablate.build_model(V3, stem_channels=V4, width=0.5)
    assert model.stem.conv.out_channels == 32


UIB_ERRORS = [
    (
        {"uib": "dw"},
        "uib: unknown UIB variant (got 'dw'); valid: ib, convnext, extradw, ffn, mobilenet_v1",
    ),
    (
        {"uib": ["ib"] * 3},
        "uib: a per-block list needs 16 entries for the mobilenet_v4_conv_small layout, got 3",
    ),
    ({"uib": [*V4_VARIANTS[:15], "ibb"]}, "uib[15]: unknown UIB variant (got 'ibb')"),
    (
        {"uib": "ffn"},
        "uib: block 5 has stride 2, and an FFN has no depthwise conv to carry it (got 'ffn')",
    ),
    (
        {"uib": _with_variant(10, "ffn")},
        "uib[10]: block 11 has stride 2, and an FFN has no depthwise conv to carry it (got 'ffn')",
    ),
    (
        {"uib": ["ib"] * 16},
        "uib[0]: block 1 is a conv block, which has no UIB variant: give null (got 'ib')",
    ),
    (
        {"layout": V3, "uib": "extradw"},
        "uib: the mobilenet_v3_large layout has no universal inverted bottleneck (got 'extradw')",
    ),
    (
        {"layout": "mobilenet_v2", "uib": ["ib"] * 17},
        "uib: the mobilenet_v2 layout has no universal inverted bottleneck",
    ),
    (
        {"uib": _with_variant(9, "ffn"), "kernel": [None] * 4 + [5] * 12},
        "kernel[9]: block 10 is a universal ffn block, which has no depthwise conv: give null",
    ),
]


@pytest.mark.parametrize(("factors", "message"), UIB_ERRORS)
def test_uib_errors_are_one_line(factors: dict[str, object], message: str) -> None:
    with pytest.raises(FactorError) as raised:
        resolve_architecture(V4, factors)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_uib_errors_in_a_spec_name_file_line_and_key_path() -> None:
    text = f"name: t\nbase: {V4}\nvariants:\n  a:\n    uib: {_with_variant(10, 'ffn')}\n"
    with pytest.raises(InputFileError) as raised:
        load_spec_text(text.replace("None", "null"), "spec.yaml")
    assert str(raised.value).startswith(
        "spec.yaml:5: variants.a.uib[10]: block 11 has stride 2, and an FFN has no depthwise"
    )
    with pytest.raises(InputFileError) as raised:
        load_spec_text(f"name: t\nbase: {V3}\ngrid:\n  uib: [ib, extradw]\n", "spec.yaml")
    assert str(raised.value) == (
        "spec.yaml:4: grid.uib[0]: in variant 'uib=ib': the mobilenet_v3_large layout has no "
        "universal inverted bottleneck (got 'ib')"
    )
