"""The built-in architectures, transcribed from the papers' tables as data.

One stage per line; a comment names the input resolution at 224x224. Block codes, decoded once
into frozen records by ``decode_block`` (the notation follows timm's ``_efficientnet_builder``):

    ir | ds          inverted bottleneck | depthwise-separable (dw + BN + act, pw + BN + act)
    k<N>             depthwise kernel
    e<N> | t<R>      expansion: V3 "exp size" in channels | V2 ratio t of the input channels
    c<N>             output channels (width 1.0)
    s<N>             stride of the first repeat
    se               squeeze-and-excite after the depthwise conv
    re | r6 | hs     ReLU | ReLU6 | h-swish after the expansion and depthwise convs
    x<N>             repeats (later repeats have stride 1)

A V3 block whose exp size equals its input channels has no expansion conv: it is decoded as
ratio 1 so that a different stem width keeps that meaning (V3 Section 5.1 varies the stem).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ablate.architecture.description import (
    NO_EXPANSION,
    Architecture,
    Block,
    Detection,
    Expansion,
    LastStage,
    SqueezeExcite,
    Stem,
)
from ablate.architecture.taps import TAILS, with_tail

ACTIVATION_CODES = {"re": "relu", "r6": "relu6", "hs": "hswish", "sw": "swish"}
_BLOCK_CODE = re.compile(
    r"^(?P<kind>ir|ds)_k(?P<kernel>\d+)(?:_e(?P<exp>\d+)|_t(?P<ratio>[\d.]+))?"
    r"_c(?P<out>\d+)_s(?P<stride>\d+)(?P<se>_se)?_(?P<act>re|r6|hs|sw)(?:_x(?P<repeats>\d+))?$"
)


V3_SQUEEZE_EXCITE = SqueezeExcite(0.25, "hsigmoid")


@dataclass(frozen=True)
class ArchitectureTable:
    name: str
    paper: str
    stem: Stem
    stages: tuple[tuple[str, ...], ...]
    last_stage: LastStage
    last_stage_activation: str
    batch_norm_epsilon: float
    # What `se` in a block code means: V3's hard-sigmoid SE unless the paper says otherwise.
    squeeze_excite: SqueezeExcite = V3_SQUEEZE_EXCITE


@dataclass(frozen=True)
class DetectorTable:
    """A backbone table with an SSD-family head (see ablate/architecture/detection.py)."""

    name: str
    paper: str
    backbone: ArchitectureTable
    head: str  # a name of heads.HEADS
    resolution: int
    tail: str = "full"  # a name of taps.TAILS
    # COCO in the TensorFlow configs: 90 classes + background.
    num_classes: int = 91


def decode_block(
    code: str, input_channels: int, squeeze_excite: SqueezeExcite | None = None
) -> list[Block]:
    match = _BLOCK_CODE.match(code)
    if match is None:
        raise ValueError(f"malformed block code {code!r}")
    out_channels = int(match["out"])
    repeats = int(match["repeats"] or 1)
    blocks = []
    for repeat in range(repeats):
        if match["ratio"] is not None:
            expansion = Expansion(ratio=float(match["ratio"]))
        elif match["exp"] is not None and int(match["exp"]) != input_channels:
            expansion = Expansion(channels=int(match["exp"]))
        else:
            expansion = NO_EXPANSION
        blocks.append(
            Block(
                kind="bottleneck" if match["kind"] == "ir" else "separable",
                kernel_size=int(match["kernel"]),
                expansion=expansion,
                out_channels=out_channels,
                stride=int(match["stride"]) if repeat == 0 else 1,
                squeeze_excite=(squeeze_excite or V3_SQUEEZE_EXCITE)
                if match["se"]
                else None,
                activation=ACTIVATION_CODES[match["act"]],
            )
        )
        input_channels = out_channels
    return blocks


def decode(table: ArchitectureTable) -> Architecture:
    blocks: list[Block] = []
    channels = table.stem.channels
    for stage in table.stages:
        for code in stage:
            decoded = decode_block(code, channels, table.squeeze_excite)
            blocks.extend(decoded)
            channels = decoded[-1].out_channels
    return Architecture(
        name=table.name,
        stem=table.stem,
        blocks=tuple(blocks),
        last_stage=table.last_stage,
        last_stage_activation=table.last_stage_activation,
        batch_norm_epsilon=table.batch_norm_epsilon,
    )


MOBILENET_V1 = ArchitectureTable(
    name="mobilenet_v1",
    paper="MobileNets (arXiv:1704.04861) Table 1",
    stem=Stem(channels=32, kernel_size=3, stride=2, activation="relu"),
    stages=(
        ("ds_k3_c64_s1_re",),                         # 112x112 in
        ("ds_k3_c128_s2_re", "ds_k3_c128_s1_re"),     # 112x112 in
        ("ds_k3_c256_s2_re", "ds_k3_c256_s1_re"),     # 56x56 in
        ("ds_k3_c512_s2_re", "ds_k3_c512_s1_re_x5"),  # 28x28 in
        ("ds_k3_c1024_s2_re", "ds_k3_c1024_s1_re"),   # 14x14 in
    ),
    last_stage=LastStage("v1", dropout=0.0),
    last_stage_activation="relu",
    batch_norm_epsilon=1e-5,
)

MOBILENET_V2 = ArchitectureTable(
    name="mobilenet_v2",
    paper="MobileNetV2 (arXiv:1801.04381) Table 2",
    stem=Stem(channels=32, kernel_size=3, stride=2, activation="relu6"),
    stages=(
        ("ir_k3_t1_c16_s1_r6",),       # 112x112 in
        ("ir_k3_t6_c24_s2_r6_x2",),    # 112x112 in
        ("ir_k3_t6_c32_s2_r6_x3",),    # 56x56 in
        ("ir_k3_t6_c64_s2_r6_x4",),    # 28x28 in
        ("ir_k3_t6_c96_s1_r6_x3",),    # 14x14 in
        ("ir_k3_t6_c160_s2_r6_x3",),   # 14x14 in
        ("ir_k3_t6_c320_s1_r6",),      # 7x7 in
    ),
    # 1x1 conv to 1280 at 7x7, pool, dropout 0.2, linear.
    last_stage=LastStage("v2", channels=1280, dropout=0.2, width="kept"),
    last_stage_activation="relu6",
    batch_norm_epsilon=1e-5,
)

MOBILENET_V3_LARGE = ArchitectureTable(
    name="mobilenet_v3_large",
    paper="Searching for MobileNetV3 (arXiv:1905.02244) Table 1",
    stem=Stem(channels=16, kernel_size=3, stride=2, activation="hswish"),
    stages=(
        ("ir_k3_e16_c16_s1_re",),                                              # 112x112 in
        ("ir_k3_e64_c24_s2_re", "ir_k3_e72_c24_s1_re"),                        # 112x112 in
        ("ir_k5_e72_c40_s2_se_re", "ir_k5_e120_c40_s1_se_re_x2"),              # 56x56 in
        ("ir_k3_e240_c80_s2_hs", "ir_k3_e200_c80_s1_hs", "ir_k3_e184_c80_s1_hs_x2"),  # 28x28
        ("ir_k3_e480_c112_s1_se_hs", "ir_k3_e672_c112_s1_se_hs"),              # 14x14 in
        ("ir_k5_e672_c160_s2_se_hs", "ir_k5_e960_c160_s1_se_hs_x2"),           # 14x14 in
    ),
    # Section 5.1, efficient last stage: 1x1 conv to 960, pool, 1280 with h-swish, classifier.
    last_stage=LastStage("v3", channels=1280, dropout=0.2),
    last_stage_activation="hswish",
    batch_norm_epsilon=1e-3,
)

MOBILENET_V3_SMALL = ArchitectureTable(
    name="mobilenet_v3_small",
    paper="Searching for MobileNetV3 (arXiv:1905.02244) Table 2",
    stem=Stem(channels=16, kernel_size=3, stride=2, activation="hswish"),
    stages=(
        ("ir_k3_e16_c16_s2_se_re",),                                          # 112x112 in
        ("ir_k3_e72_c24_s2_re", "ir_k3_e88_c24_s1_re"),                       # 56x56 in
        ("ir_k5_e96_c40_s2_se_hs", "ir_k5_e240_c40_s1_se_hs_x2",              # 28x28 in
         "ir_k5_e120_c48_s1_se_hs", "ir_k5_e144_c48_s1_se_hs"),
        ("ir_k5_e288_c96_s2_se_hs", "ir_k5_e576_c96_s1_se_hs_x2"),            # 14x14 in
    ),
    # Table 2: conv to 576 (no SE, as in the reference code), pool, 1024 with h-swish.
    last_stage=LastStage("v3", channels=1024, dropout=0.2),
    last_stage_activation="hswish",
    batch_norm_epsilon=1e-3,
)

MNASNET_A1 = ArchitectureTable(
    name="mnasnet_a1",
    paper="MnasNet (arXiv:1807.11626) Figure 7(a), as timm's semnasnet_100",
    stem=Stem(channels=32, kernel_size=3, stride=2, activation="relu"),
    stages=(
        # SepConv 3x3 -> 16: dw + BN + ReLU, linear 1x1 (no residual: 32 != 16).
        ("ir_k3_t1_c16_s1_re",),           # 112x112 in
        ("ir_k3_t6_c24_s2_re_x2",),        # 112x112 in
        ("ir_k5_t3_c40_s2_se_re_x3",),     # 56x56 in
        ("ir_k3_t6_c80_s2_re_x4",),        # 28x28 in
        ("ir_k3_t6_c112_s1_se_re_x2",),    # 14x14 in
        ("ir_k5_t6_c160_s2_se_re_x3",),    # 14x14 in
        ("ir_k3_t6_c320_s1_re",),          # 7x7 in
    ),
    last_stage=LastStage("v2", channels=1280, dropout=0.2),
    last_stage_activation="relu",
    batch_norm_epsilon=1e-5,
    # SE bottleneck: 1/4 of the block's input channels, sigmoid gate (MnasNet Section 4).
    squeeze_excite=SqueezeExcite(0.25, "sigmoid", reference="input"),
)

TABLES: dict[str, ArchitectureTable] = {
    table.name: table
    for table in (MOBILENET_V1, MOBILENET_V2, MOBILENET_V3_LARGE, MOBILENET_V3_SMALL, MNASNET_A1)
}

# V3 paper Section 6.3 and Table 6: SSDLite at 320x320 on COCO. ssd_mobilenet_v1 is the
# regular SSD the SSDLite rows replace (TensorFlow's ssd_mobilenet_v1_coco, 300x300).
_TABLE_6 = "Searching for MobileNetV3 (arXiv:1905.02244) Table 6"
DETECTOR_TABLES: dict[str, DetectorTable] = {
    table.name: table
    for table in (
        DetectorTable("ssdlite_mobilenet_v1", _TABLE_6, MOBILENET_V1, "ssdlite", 320),
        DetectorTable("ssdlite_mobilenet_v2", _TABLE_6, MOBILENET_V2, "ssdlite", 320),
        DetectorTable("ssdlite_mobilenet_v3_large", _TABLE_6, MOBILENET_V3_LARGE, "ssdlite", 320),
        DetectorTable("ssdlite_mobilenet_v3_small", _TABLE_6, MOBILENET_V3_SMALL, "ssdlite", 320),
        # The dagger rows; torchvision's ssdlite320_mobilenet_v3_large has the reduced tail too.
        DetectorTable(
            "ssdlite_mobilenet_v3_large_reduced", _TABLE_6, MOBILENET_V3_LARGE, "ssdlite", 320,
            tail="reduced",
        ),
        DetectorTable(
            "ssdlite_mobilenet_v3_small_reduced", _TABLE_6, MOBILENET_V3_SMALL, "ssdlite", 320,
            tail="reduced",
        ),
        DetectorTable("ssdlite_mnasnet_a1", _TABLE_6, MNASNET_A1, "ssdlite", 320),
        DetectorTable(
            "ssd_mobilenet_v1", "SSD (arXiv:1512.02325) on MobileNets, TensorFlow's "
            "ssd_mobilenet_v1_coco", MOBILENET_V1, "ssd", 300,
        ),
    )
}


def decode_detector(table: DetectorTable, *, full_tail: bool = False) -> Architecture:
    """The detector, with its tail unless ``full_tail`` (the stages as the table gives them)."""
    architecture = dataclasses.replace(
        decode(table.backbone),
        name=table.name,
        resolution=table.resolution,
        num_classes=table.num_classes,
        detection=Detection(head=table.head, tail=table.tail),
    )
    if full_tail:
        return architecture
    return with_tail(architecture, TAILS[table.tail])


ARCHITECTURES: dict[str, Architecture] = {
    **{name: decode(table) for name, table in TABLES.items()},
    **{name: decode_detector(table) for name, table in DETECTOR_TABLES.items()},
}
# What `layout: NAME` means: the stages of the table, before any tail (the `tail` factor
# applies one).
LAYOUTS: dict[str, Architecture] = {
    **ARCHITECTURES,
    **{name: decode_detector(table, full_tail=True) for name, table in DETECTOR_TABLES.items()},
}
PAPERS: dict[str, str] = {
    name: table.paper for name, table in (*TABLES.items(), *DETECTOR_TABLES.items())
}
