"""What `ablate models` and `ablate inspect` compute: pure data, rendered elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ablate.architecture.description import Architecture
from ablate.architecture.summary import LayerRow


@dataclass(frozen=True)
class ModelSummary:
    name: str
    paper: str
    params: int
    blocks: int
    resolution: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paper": self.paper,
            "params": self.params,
            "blocks": self.blocks,
            "resolution": self.resolution,
        }


@dataclass(frozen=True)
class Inspection:
    model: str
    factors: dict[str, Any]
    architecture: Architecture
    layers: list[LayerRow]
    params: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "factors": self.factors,
            "resolution": self.architecture.resolution,
            "width": self.architecture.width,
            "params": self.params,
            "layers": [row.to_json() for row in self.layers],
            **self.extra,
        }


def list_models() -> list[ModelSummary]:
    from ablate.architecture.builder import build_module
    from ablate.architecture.tables import ARCHITECTURES, TABLES

    summaries = []
    for name, architecture in ARCHITECTURES.items():
        model = build_module(architecture)
        summaries.append(
            ModelSummary(
                name=name,
                paper=TABLES[name].paper,
                params=sum(parameter.numel() for parameter in model.parameters()),
                blocks=len(architecture.blocks),
                resolution=architecture.resolution,
            )
        )
    return summaries


def inspect_model(*, model: str, factors: dict[str, Any]) -> Inspection:
    from ablate.architecture.builder import build_module
    from ablate.architecture.summary import layer_rows
    from ablate.variants.resolve import resolve_architecture

    architecture = resolve_architecture(model, factors)
    module = build_module(architecture)
    return Inspection(
        model=model,
        factors=factors,
        architecture=architecture,
        layers=layer_rows(architecture, module),
        params=sum(parameter.numel() for parameter in module.parameters()),
    )
