"""The built-in architectures, transcribed from the papers' tables as data.

One stage per line; a comment names the input resolution at 224x224. Block codes, decoded once
into frozen records by ``decode_block`` (the notation follows timm's ``_efficientnet_builder``):

    ir | ds          inverted bottleneck | depthwise-separable (dw + BN + act, pw + BN + act)
    uir | er | cn    MobileNetV4: universal inverted bottleneck | fused IB | plain conv
    a<N>             uir: depthwise kernel before the expansion, 0 for none ("start")
    k<N>             depthwise kernel (uir: after the expansion, 0 for none; er, cn: the conv's)
    e<N> | t<R>      expansion: V3 "exp size" in channels | V2 ratio t of the input channels
                     (uir, er: a ratio t, as timm's e; cn: none)
    c<N>             output channels (width 1.0)
    s<N>             stride of the first repeat
    se               squeeze-and-excite after the depthwise conv
    re | r6 | hs     ReLU | ReLU6 | h-swish after the expansion and depthwise convs
    x<N>             repeats (later repeats have stride 1)

A V3 block whose exp size equals its input channels has no expansion conv: it is decoded as
ratio 1 so that a different stem width keeps that meaning (V3 Section 5.1 varies the stem).
A universal block always has its expansion conv, even at ratio 1 (timm's pw_exp).

MobileNetV4's codes are timm's (``_gen_mobilenet_v4``) with ``t`` for its ``e`` and the
repeats last: timm's ``uir_r2_a3_k5_s1_e4_c256`` is ``uir_a3_k5_t4_c256_s1_re_x2``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ablate.architecture.description import (
    NO_EXPANSION,
    Architecture,
    Block,
    BlockKind,
    Detection,
    Expansion,
    LastStage,
    SqueezeExcite,
    Stem,
)
from ablate.architecture.taps import TAILS, with_tail

ACTIVATION_CODES = {"re": "relu", "r6": "relu6", "hs": "hswish", "sw": "swish"}
_BLOCK_CODE = re.compile(
    r"^(?P<kind>ir|ds|uir|er|cn)(?:_a(?P<start>\d+))?_k(?P<kernel>\d+)"
    r"(?:_e(?P<exp>\d+)|_t(?P<ratio>[\d.]+))?"
    r"_c(?P<out>\d+)_s(?P<stride>\d+)(?P<se>_se)?_(?P<act>re|r6|hs|sw)(?:_x(?P<repeats>\d+))?$"
)
BLOCK_CODE_KINDS: dict[str, BlockKind] = {
    "ir": "bottleneck",
    "ds": "separable",
    "uir": "universal",
    "er": "fused",
    "cn": "conv",
}


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
    # The input size the reference reports its counts at (MNv4-Conv-M: 256).
    resolution: int = 224
    num_classes: int = 1000


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
    if match is None or not _fits_its_kind(match):
        raise ValueError(f"malformed block code {code!r}")
    kind = BLOCK_CODE_KINDS[match["kind"]]
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
                kind=kind,
                kernel_size=int(match["kernel"]),
                expansion=expansion,
                out_channels=out_channels,
                stride=int(match["stride"]) if repeat == 0 else 1,
                squeeze_excite=(squeeze_excite or V3_SQUEEZE_EXCITE)
                if match["se"]
                else None,
                activation=ACTIVATION_CODES[match["act"]],
                start_kernel_size=int(match["start"] or 0),
            )
        )
        input_channels = out_channels
    return blocks


def _fits_its_kind(match: re.Match[str]) -> bool:
    """The options a kind takes: a start kernel only on uir, a ratio on uir and er, no
    expansion on cn, SE only on the V1-V3 kinds (timm builds none into MobileNetV4)."""
    kind = match["kind"]
    if (match["start"] is not None) != (kind == "uir"):
        return False
    if kind in ("uir", "er"):
        return match["ratio"] is not None and match["se"] is None
    if kind == "cn":
        return match["exp"] is None and match["ratio"] is None and match["se"] is None
    return True


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
        resolution=table.resolution,
        num_classes=table.num_classes,
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

# MobileNetV4's head (timm's head_norm=True): the 1x1 conv to 960 (timm's last `cn` block,
# scaled with the width), pool, a 1x1 conv to 1280 without bias + BN + act (never scaled:
# timm's num_features), the classifier. timm's default drop rate is 0: no dropout module.
_MOBILENET_V4_HEAD = LastStage("v4", channels=1280, dropout=0.0, width="fixed", conv_channels=960)
# timm keeps the stem's 32 below width 1 (fix_stem), scales it above.
_MOBILENET_V4_STEM = Stem(channels=32, kernel_size=3, stride=2, activation="relu", width="kept")
_MOBILENET_V4 = "MobileNetV4 (arXiv:2404.10518), as timm 1.0's"

MOBILENET_V4_CONV_SMALL = ArchitectureTable(
    name="mobilenet_v4_conv_small",
    paper=f"{_MOBILENET_V4} mobilenetv4_conv_small",
    stem=_MOBILENET_V4_STEM,
    stages=(
        ("cn_k3_c32_s2_re", "cn_k1_c32_s1_re"),                               # 112x112 in
        ("cn_k3_c96_s2_re", "cn_k1_c64_s1_re"),                               # 56x56 in
        ("uir_a5_k5_t3_c96_s2_re",                                            # 28x28 in
         "uir_a0_k3_t2_c96_s1_re_x4",
         "uir_a3_k0_t4_c96_s1_re"),
        ("uir_a3_k3_t6_c128_s2_re",                                           # 14x14 in
         "uir_a5_k5_t4_c128_s1_re",
         "uir_a0_k5_t4_c128_s1_re",
         "uir_a0_k5_t3_c128_s1_re",
         "uir_a0_k3_t4_c128_s1_re_x2"),
    ),
    last_stage=_MOBILENET_V4_HEAD,
    last_stage_activation="relu",
    batch_norm_epsilon=1e-5,
)

MOBILENET_V4_CONV_MEDIUM = ArchitectureTable(
    name="mobilenet_v4_conv_medium",
    paper=f"{_MOBILENET_V4} mobilenetv4_conv_medium",
    stem=_MOBILENET_V4_STEM,
    stages=(
        ("er_k3_t4_c48_s2_re",),                                              # 112x112 in
        ("uir_a3_k5_t4_c80_s2_re", "uir_a3_k3_t2_c80_s1_re"),                 # 56x56 in
        ("uir_a3_k5_t6_c160_s2_re",                                           # 28x28 in
         "uir_a3_k3_t4_c160_s1_re_x2",
         "uir_a3_k5_t4_c160_s1_re",
         "uir_a3_k3_t4_c160_s1_re",
         "uir_a3_k0_t4_c160_s1_re",
         "uir_a0_k0_t2_c160_s1_re",
         "uir_a3_k0_t4_c160_s1_re"),
        ("uir_a5_k5_t6_c256_s2_re",                                           # 14x14 in
         "uir_a5_k5_t4_c256_s1_re",
         "uir_a3_k5_t4_c256_s1_re_x2",
         "uir_a0_k0_t4_c256_s1_re",
         "uir_a3_k0_t4_c256_s1_re",
         "uir_a3_k5_t2_c256_s1_re",
         "uir_a5_k5_t4_c256_s1_re",
         "uir_a0_k0_t4_c256_s1_re_x2",
         "uir_a5_k0_t2_c256_s1_re"),
    ),
    last_stage=_MOBILENET_V4_HEAD,
    last_stage_activation="relu",
    batch_norm_epsilon=1e-5,
    # timm's default input size for it (mobilenetv4_conv_medium.e500_r256_in1k).
    resolution=256,
)

TABLES: dict[str, ArchitectureTable] = {
    table.name: table
    for table in (
        MOBILENET_V1,
        MOBILENET_V2,
        MOBILENET_V3_LARGE,
        MOBILENET_V3_SMALL,
        MNASNET_A1,
        MOBILENET_V4_CONV_SMALL,
        MOBILENET_V4_CONV_MEDIUM,
    )
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
