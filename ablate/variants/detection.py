"""The detector factors: ``head``, ``tail``, ``convention`` and ``backbone``.

Torch-free, like the rest of the resolver; the taps and the tail itself are in
ablate/architecture/taps.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, get_args

from ablate.architecture.description import (
    Architecture,
    Convention,
    Detection,
    HeadKind,
    TailKind,
)
from ablate.errors import FactorError

HEAD_NAMES: tuple[str, ...] = get_args(HeadKind)
TAIL_NAMES: tuple[str, ...] = get_args(TailKind)
CONVENTION_NAMES: tuple[str, ...] = get_args(Convention)
DETECTOR_FACTORS = ("head", "tail", "convention")
# What `backbone: NAME` sets at once (each only where not given on its own). Width and
# resolution stay separate: Table 6 varies them on their own.
BACKBONE_FACTORS = (
    "layout",
    "stem_channels",
    "kernel",
    "expansion",
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

    def setting(factor: str, names: tuple[str, ...]) -> str:
        value = factors.get(factor, getattr(base.detection, factor))
        if isinstance(value, str) and value in detectors:
            detection = architectures[value].detection
            assert detection is not None
            return str(getattr(detection, factor))
        if value not in names:
            raise FactorError(factor, value, f"unknown {factor}", (*names, *detectors))
        return str(value)

    head, convention = setting("head", HEAD_NAMES), setting("convention", CONVENTION_NAMES)
    if convention == "torchvision" and head != "ssdlite":
        # torchvision's only MobileNet detector is ssdlite320_mobilenet_v3_large: it has no
        # SSD-head convention to follow, and silently using the paper's would mislabel it.
        raise FactorError(
            "convention",
            convention,
            f"torchvision builds no {head} head on a MobileNet (only SSDLite); use head: "
            f"ssdlite, or convention: paper",
            ("paper",),
        )
    return dataclasses.replace(
        base.detection,
        head=head,  # type: ignore[arg-type]  # checked in setting
        tail=setting("tail", TAIL_NAMES),  # type: ignore[arg-type]
        convention=convention,  # type: ignore[arg-type]
    )







