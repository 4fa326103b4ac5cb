"""The factor vocabulary: every design choice of the MobileNetV3 paper as a named knob.

Each factor applies to every base architecture, defaults to the base's own setting, and also
accepts the name of another built-in architecture, meaning "that architecture's setting".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ablate.architecture.description import (
    ACTIVATIONS,
    LAST_STAGE_WIDTHS,
    LAST_STAGES,
    SE_GATES,
    SQUEEZE_EXCITE_KINDS,
    UNIVERSAL_VARIANTS,
    Architecture,
    BlockKind,
    Expansion,
)
from ablate.architecture.heads import CONVENTIONS, HEADS
from ablate.architecture.tables import LAYOUTS
from ablate.architecture.taps import TAILS, tap_block

ACTIVATION_NAMES = tuple(ACTIVATIONS)
SE_GATE_NAMES = tuple(SE_GATES)
LAST_STAGE_NAMES = tuple(LAST_STAGES)
LAST_STAGE_WIDTH_NAMES = LAST_STAGE_WIDTHS
KERNEL_SIZES = (3, 5, 7)
WIDTH_RANGE = (0.1, 4.0)
RESOLUTION_RANGE = (32, 2048)


@dataclass(frozen=True)
class Factor:
    name: str
    meaning: str
    values: str


class _Named(Protocol):
    @property
    def meaning(self) -> str: ...


def _choices(table: Mapping[str, _Named]) -> str:
    """A table's names, then what each means: the help text follows the table."""
    meanings = "; ".join(f"{name}: {entry.meaning}" for name, entry in table.items())
    return f"{' | '.join(table)}; {meanings}"


FACTORS: dict[str, Factor] = {
    factor.name: factor
    for factor in (
        Factor(
            "width",
            "width multiplier of every channel count, rounded to multiples of 8 as the "
            "reference implementations do",
            f"a number in [{WIDTH_RANGE[0]}, {WIDTH_RANGE[1]}], e.g. 0.35, 0.75, 1.0, 1.4",
        ),
        Factor(
            "resolution",
            "input height and width in pixels (the network is resolution-agnostic; counts "
            "and latency use it)",
            f"an integer in [{RESOLUTION_RANGE[0]}, {RESOLUTION_RANGE[1]}], e.g. 160, 224, 320",
        ),
        Factor("num_classes", "classifier outputs", "a positive integer"),
        Factor(
            "activation",
            "nonlinearity of the stem, the blocks (after expansion and depthwise convs) and "
            "the last stage; V3 Section 5.2 uses h-swish only in the deep half",
            f"{' | '.join(ACTIVATION_NAMES)} everywhere; or a placement by depth "
            "{early: relu, late: hswish, from_channels: 80} (the paper's h-swish@80) or "
            "{early: ..., late: ..., from_block: 7} (1-based), optional stem: NAME (default: "
            "the base's stem activation; the last stage takes `late`); or a per-block list",
        ),
        Factor(
            "se",
            "squeeze-and-excite after the depthwise conv of each block (V3 Section 5.3); in a "
            "universal block just before the projection",
            "on | off (YAML true/false too), or a per-block list of on/off (null for a plain "
            "or fused conv)",
        ),
        Factor(
            "se_ratio",
            "SE bottleneck as a fraction of the expanded channels, rounded to a multiple of 8",
            "a number in (0, 1], e.g. 0.25 (V3) or 0.5",
        ),
        Factor(
            "se_gate",
            "the gate of SE: hard sigmoid (V3) or sigmoid (MnasNet)",
            " | ".join(SE_GATE_NAMES),
        ),
        Factor(
            "kernel",
            "depthwise kernel of the blocks (both of a universal block's); the stem and plain "
            "or fused convs keep theirs",
            "3 | 5 | 7, or a per-block list (null for a block without a depthwise conv)",
        ),
        Factor(
            "expansion",
            "expansion ratio of the inverted bottlenecks, universal and fused ones too "
            "(expanded / input channels)",
            "a number in [1, 16] for all bottlenecks, or a per-block list (null for a block "
            "without an expansion)",
        ),
        Factor(
            "uib",
            "MobileNetV4's universal inverted bottleneck variant: which optional depthwise "
            "convs each universal block has, before and after the expansion (an added conv "
            "takes the block's kernel); uib: NAME also sets kernel: NAME unless kernel is "
            "given, and a V1-V3 bottleneck of NAME counts as an ib",
            f"{_choices(UNIVERSAL_VARIANTS)}; or a per-block list (null for a block that is not "
            "universal)",
        ),
        Factor(
            "stem_channels",
            "output channels of the first 3x3 conv (V3 Section 5.1: 16 instead of 32)",
            "a positive integer, e.g. 16 or 32",
        ),
        Factor(
            "last_stage",
            "what follows the last block (V3 Section 5.1, Figure 5)",
            _choices(LAST_STAGES),
        ),
        Factor(
            "last_stage_width",
            "how the width multiplier applies to the last stage's final channels (1280; "
            "1024 in V3-Small): the MobileNetV3 paper's small-width rows keep them unscaled "
            "(TensorFlow's finegrain_classification_mode)",
            f"{' | '.join(LAST_STAGE_WIDTH_NAMES)}; scaled: with the width (torchvision's "
            "V3); kept: unscaled below width 1, scaled above (the V2 reference); fixed: never "
            "scaled (TensorFlow's V3 finegrain_classification_mode)",
        ),
        Factor(
            "layout",
            "channels, depths and strides of the stages (block kinds included)",
            "the name of a built-in architecture",
        ),
        Factor(
            "backbone",
            "every backbone factor at once (layout, stem_channels, kernel, expansion, uib, se, "
            "se_ratio, se_gate, activation, last_stage), each unless given on its own",
            "the name of a built-in architecture",
        ),
        Factor("head", "detectors only: the predictors and extra layers", _choices(HEADS)),
        Factor("tail", "detectors only: the layers between C4 and C5", _choices(TAILS)),
        Factor(
            "convention",
            "detectors only: whose reference to follow where TensorFlow's and torchvision's "
            "differ",
            _choices(CONVENTIONS),
        ),
    )
}


# A resolved architecture, described factor by factor (what results.json records).

def layout_key(architecture: Architecture) -> tuple[tuple[str, int, int], ...]:
    """What a layout is: each block's kind, output channels and stride."""
    return tuple((b.kind, b.out_channels, b.stride) for b in architecture.blocks)


# The block kinds each per-block factor acts on. A block of another kind has nothing the
# setting could change (a plain conv has no depthwise kernel, no expansion, no place for SE),
# so it keeps the layout's own; a universal FFN has no depthwise conv for `kernel` either
# (resolve.py). `activation` acts on every kind.
BLOCK_FACTOR_KINDS: Mapping[str, tuple[BlockKind, ...]] = {
    "kernel": ("separable", "bottleneck", "universal"),
    "expansion": ("bottleneck", "universal", "fused"),
    "se": SQUEEZE_EXCITE_KINDS,
    "uib": ("universal",),
}
# The V1-V3 kinds: a detector taps C4 at a bottleneck's depthwise conv (taps.py), so only
# layouts of these kinds are detector backbones.
DETECTOR_BLOCK_KINDS: tuple[BlockKind, ...] = ("separable", "bottleneck")


_LAYOUTS: dict[tuple[tuple[str, int, int], ...], str] = {}
# Classifiers first, so a detector's backbone is named after its classifier; a reduced tail
# (recorded as `detection.tail`) keeps the layout's name.
for _name, _layout in LAYOUTS.items():
    _LAYOUTS.setdefault(layout_key(_layout), _name)
for _name, _layout in LAYOUTS.items():
    if tap_block(_layout) is not None:
        for _tail in TAILS.values():
            _LAYOUTS.setdefault(layout_key(_tail.layout(_layout)), _LAYOUTS[layout_key(_layout)])


def _expansion(expansion: Expansion) -> float | str:
    return expansion.ratio if expansion.ratio is not None else f"{expansion.channels}ch"


def describe_factors(architecture: Architecture) -> dict[str, Any]:
    """Every factor's effective value; per-block factors as lists in block order."""
    squeeze_excite = next(
        (b.squeeze_excite for b in architecture.blocks if b.squeeze_excite is not None), None
    )
    return {
        "layout": _LAYOUTS.get(layout_key(architecture), "custom"),
        "width": architecture.width,
        "resolution": architecture.resolution,
        "num_classes": architecture.num_classes
        if LAST_STAGES[architecture.last_stage.kind].pools or architecture.detection is not None
        else None,
        "stem_channels": architecture.stem.channels,
        "kernel": [block.kernel_size for block in architecture.blocks],
        "expansion": [_expansion(block.expansion) for block in architecture.blocks],
        "se": [block.squeeze_excite is not None for block in architecture.blocks],
        "uib": [
            block.universal_variant if block.kind == "universal" else None
            for block in architecture.blocks
        ],
        "se_ratio": squeeze_excite.ratio if squeeze_excite else None,
        "se_gate": squeeze_excite.gate if squeeze_excite else None,
        "activation": {
            "stem": architecture.stem.activation,
            "blocks": [block.activation for block in architecture.blocks],
            "last_stage": architecture.last_stage_activation,
        },
        "last_stage": {
            "kind": architecture.last_stage.kind,
            "channels": architecture.last_stage.channels,
        },
        "last_stage_width": architecture.last_stage.width
        if architecture.last_stage.channels is not None
        else None,
        **_detection(architecture),
    }


def _detection(architecture: Architecture) -> dict[str, Any]:
    detection = architecture.detection
    if detection is None:
        return {}
    return {"head": detection.head, "tail": detection.tail, "convention": detection.convention}


# ``--set FACTOR=VALUE`` options: VALUE is read as YAML so numbers, lists and mappings work.

