"""What `ablate models` and `ablate inspect` compute: pure data, rendered elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.architecture.description import Architecture
from ablate.architecture.rows import LayerRow

if TYPE_CHECKING:
    from ablate.counting.crosscheck import CrosscheckResult
    from ablate.counting.records import CountResult, OpRecord

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
class RowCounts:
    """The counting records of one table row (a block, the stem, a classifier layer)."""

    macs: int
    flops: int
    flops_folded: int
    bytes_unfused: int
    bytes_fused: int
    macs_share: float
    bytes_unfused_share: float
    bytes_fused_share: float

    @property
    def intensity_fused(self) -> float:
        """FLOPs per byte as an inference engine runs the row (BN folded, conv+act fused)."""
        return self.flops_folded / self.bytes_fused if self.bytes_fused else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "bytes_unfused": self.bytes_unfused,
            "bytes_fused": self.bytes_fused,
            "intensity_fused": self.intensity_fused,
            "macs_share": self.macs_share,
            "bytes_unfused_share": self.bytes_unfused_share,
            "bytes_fused_share": self.bytes_fused_share,
        }


@dataclass(frozen=True)
class Inspection:
    model: str
    factors: dict[str, Any]
    architecture: Architecture
    layers: list[LayerRow]
    params: int
    counts: CountResult
    row_counts: list[RowCounts]
    crosscheck: CrosscheckResult | None = None

    def to_json(self) -> dict[str, Any]:
        counts = self.counts.to_json()
        data = {
            "model": self.model,
            "factors": self.factors,
            "resolution": self.architecture.resolution,
            "width": self.architecture.width,
            "params": self.params,
            **{key: value for key, value in counts.items() if key != "layers"},
            "layers": [
                {**row.to_json(), **row_counts.to_json()}
                for row, row_counts in zip(self.layers, self.row_counts, strict=True)
            ],
            "blocks": counts["layers"],
        }
        if self.crosscheck is not None:
            data["crosscheck"] = self.crosscheck.to_json()
        return data


def _is_batch_norm(record: OpRecord) -> bool:
    return record.kind.value == "batch_norm"


def rows_counts(rows: Sequence[LayerRow], counts: CountResult) -> list[RowCounts]:
    """Each record goes to the row whose module contains it, else to the row that ran last
    (e.g. the classifier's activation belongs with the linear layer before it)."""
    totals = [[0, 0, 0, 0, 0] for _ in rows]
    current = 0
    for record in counts.records:
        for index, row in enumerate(rows):
            if record.module_path == row.module or record.module_path.startswith(row.module + "."):
                current = index
                break
        bucket = totals[current]
        bucket[0] += record.macs
        bucket[1] += record.flops
        bucket[2] += 0 if _is_batch_norm(record) else record.flops
        bucket[3] += record.bytes_unfused
        bucket[4] += record.fused_bytes

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    return [
        RowCounts(
            macs=macs,
            flops=flops,
            flops_folded=folded,
            bytes_unfused=unfused,
            bytes_fused=fused,
            macs_share=share(macs, counts.macs),
            bytes_unfused_share=share(unfused, counts.bytes_unfused),
            bytes_fused_share=share(fused, counts.bytes_fused),
        )
        for macs, flops, folded, unfused, fused in totals
    ]


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
