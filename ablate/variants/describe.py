"""A resolved architecture, described factor by factor (what results.json records)."""

from __future__ import annotations

from typing import Any

from ablate.architecture.description import Architecture, Expansion
from ablate.architecture.tables import ARCHITECTURES


def _layout_key(architecture: Architecture) -> tuple[tuple[str, int, int], ...]:
    return tuple((b.kind, b.out_channels, b.stride) for b in architecture.blocks)


_LAYOUTS = {_layout_key(architecture): name for name, architecture in ARCHITECTURES.items()}


def _expansion(expansion: Expansion) -> float | str:
    return expansion.ratio if expansion.ratio is not None else f"{expansion.channels}ch"


def describe_factors(architecture: Architecture) -> dict[str, Any]:
    """Every factor's effective value; per-block factors as lists in block order."""
    squeeze_excite = next(
        (b.squeeze_excite for b in architecture.blocks if b.squeeze_excite is not None), None
    )
    return {
        "layout": _LAYOUTS.get(_layout_key(architecture), "custom"),
        "width": architecture.width,
        "resolution": architecture.resolution,
        "num_classes": architecture.num_classes if architecture.last_stage.kind != "none" else None,
        "stem_channels": architecture.stem.channels,
        "kernel": [block.kernel_size for block in architecture.blocks],
        "expansion": [_expansion(block.expansion) for block in architecture.blocks],
        "se": [block.squeeze_excite is not None for block in architecture.blocks],
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
    }
