"""What `ablate models` and `ablate inspect` compute (`counting.inspection` holds the records);
rendered elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.counting.inspection import Inspection, ModelSummary, rows_counts


def list_models(spec: str | Path | None = None) -> list[ModelSummary]:
    """The built-in architectures, then those of ``spec``'s `architectures:` section."""
    from ablate.architecture.builder import build_module
    from ablate.architecture.tables import ARCHITECTURES, PAPERS, decode
    from ablate.spec import load_spec

    listed = [(name, architecture, PAPERS[name]) for name, architecture in ARCHITECTURES.items()]
    if spec is not None:
        loaded = load_spec(spec)
        listed += [
            (name, decode(table), f"{loaded.source_label}: architectures.{name}")
            for name, table in loaded.architectures.items()
        ]
    summaries = []
    for name, architecture, paper in listed:
        model = build_module(architecture)
        summaries.append(
            ModelSummary(
                name=name,
                paper=paper,
                params=sum(parameter.numel() for parameter in model.parameters()),
                blocks=len(architecture.blocks),
                resolution=architecture.resolution,
            )
        )
    return summaries


def inspect_model(
    *, model: str, factors: dict[str, Any], batch: int = 1, crosscheck: bool = False
) -> Inspection:
    import torch

    from ablate.architecture.builder import build_module, layer_rows
    from ablate.counting import count_model
    from ablate.counting import crosscheck as run_crosscheck
    from ablate.variants.resolve import resolve_architecture

    # Counting needs shapes, not values: randomly initialised weights otherwise drive
    # activations into denormal slow paths that make one pass take seconds.
    torch.set_flush_denormal(True)
    architecture = resolve_architecture(model, factors)
    module = build_module(architecture)
    shape = (batch, 3, architecture.resolution, architecture.resolution)
    counts = count_model(module, shape)
    rows = layer_rows(architecture, module)
    return Inspection(
        model=model,
        factors=factors,
        architecture=architecture,
        layers=rows,
        params=sum(parameter.numel() for parameter in module.parameters()),
        counts=counts,
        row_counts=rows_counts(rows, counts),
        crosscheck=run_crosscheck(module, shape) if crosscheck else None,
    )
