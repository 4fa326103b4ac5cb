"""The detector factors: ``head``, ``tail``, ``convention`` and ``backbone``.

Torch-free, like the rest of the resolver; the vocabularies are the tables of
ablate/architecture/heads.py (heads, conventions) and taps.py (tails).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ablate.architecture.description import Architecture, Detection
from ablate.architecture.heads import CONVENTIONS, HEADS
from ablate.architecture.taps import TAILS
from ablate.errors import FactorError

DETECTOR_FACTORS = ("head", "tail", "convention")
# What `backbone: NAME` sets at once (each only where not given on its own). Width and
# resolution stay separate: Table 6 varies them on their own.
BACKBONE_FACTORS = (
    "layout",
    "stem_channels",
    "kernel",
    "expansion",
    "uib",
    "se",
    "se_ratio",
    "se_gate",
    "activation",
    "last_stage",
)




def expand_backbone(
    factors: Mapping[str, Any], architectures: Mapping[str, Architecture]
) -> dict[str, Any]:
    """``backbone: NAME`` -> every backbone factor from NAME, where not set on its own."""
    expanded = dict(factors)
    if "backbone" not in expanded:
        return expanded
    name = expanded.pop("backbone")
    if not isinstance(name, str) or name not in architectures:
        raise FactorError("backbone", name, "unknown architecture", tuple(architectures))
    has_squeeze_excite = any(block.squeeze_excite for block in architectures[name].blocks)
    for factor in BACKBONE_FACTORS:
        # SE's ratio and gate would be an error ("no effect") on a backbone without SE.
        if factor in ("se_ratio", "se_gate") and (not has_squeeze_excite or "se" in factors):
            continue
        expanded.setdefault(factor, name)
    return expanded


def resolve_detection(
    base: Architecture, factors: Mapping[str, Any], architectures: Mapping[str, Architecture]
) -> Detection | None:
    """The base's detection settings with ``head``, ``tail`` and ``convention`` applied."""
    detectors = tuple(name for name, a in architectures.items() if a.detection is not None)
    if base.detection is None:
        for factor in DETECTOR_FACTORS:
            if factor in factors:
                raise FactorError(
                    factor,
                    factors[factor],
                    f"has no effect: {base.name} is a classifier, it has no feature taps or "
                    f"tail; use a detector",
                    detectors,
                )
        return None

    def setting(factor: str, names: Mapping[str, object]) -> str:
        value = factors.get(factor, getattr(base.detection, factor))
        if isinstance(value, str) and value in detectors:
            detection = architectures[value].detection
            assert detection is not None
            return str(getattr(detection, factor))
        if not isinstance(value, str) or value not in names:
            raise FactorError(factor, value, f"unknown {factor}", (*names, *detectors))
        return value

    head, convention = setting("head", HEADS), setting("convention", CONVENTIONS)
    if not CONVENTIONS[convention].builds(head):
        # A reference with no such head to follow: silently using the paper's convention
        # would mislabel the network.
        built = CONVENTIONS[convention].heads or ()
        following = tuple(name for name, entry in CONVENTIONS.items() if entry.builds(head))
        raise FactorError(
            "convention",
            convention,
            f"{convention} builds no {head} head on a MobileNet (only {', '.join(built)}); "
            f"use head: {' or '.join(built)}, or convention: {' or '.join(following)}",
            following,
        )
    return dataclasses.replace(
        base.detection, head=head, tail=setting("tail", TAILS), convention=convention
    )
