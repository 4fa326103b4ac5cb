"""What `ablate models` and `ablate inspect` compute (`counting.inspection` holds the records);
rendered elsewhere."""

from __future__ import annotations

from typing import Any

from ablate.counting.inspection import Inspection, ModelSummary, rows_counts


def list_models() -> list[ModelSummary]:
    from ablate.architecture.builder import build_module
    from ablate.architecture.tables import ARCHITECTURES, PAPERS

    summaries = []
    for name, architecture in ARCHITECTURES.items():
        model = build_module(architecture)
        summaries.append(
            ModelSummary(
                name=name,
                paper=PAPERS[name],
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
