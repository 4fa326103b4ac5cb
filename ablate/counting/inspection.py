"""What `ablate models` and `ablate inspect` report: an architecture's summary, and its layer
rows with their counts. Pure data: built by `services.inspect`, rendered by `report.console`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.architecture.imported import ImportedModel, Network
from ablate.architecture.rows import LayerRow
from ablate.metrics import PER_LAYER

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
    """The counting records of one table row (a block, the stem, a classifier layer): every
    counting rule's total, and the shares of the model's totals of the per-layer metrics."""

    totals: Mapping[str, int]  # by metric key, every rule of `counting.records.RULES`
    shares: Mapping[str, float]  # in [0, 1], by key of `metrics.PER_LAYER`

    @property
    def intensity_fused(self) -> float:
        """FLOPs per byte as an inference engine runs the row (BN folded, conv+act fused)."""
        fused = self.totals["bytes_fused"]
        return self.totals["flops_folded"] / fused if fused else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **{metric.key: self.totals[metric.key] for metric in PER_LAYER},
            "intensity_fused": self.intensity_fused,
            **{f"{key}_share": share for key, share in self.shares.items()},
        }


@dataclass(frozen=True)
class Inspection:
    model: str  # a built-in's name, or an imported module's import path
    factors: dict[str, Any]
    architecture: Network
    layers: list[LayerRow]
    params: int
    counts: CountResult
    row_counts: list[RowCounts]
    crosscheck: CrosscheckResult | None = None
    args: dict[str, Any] | None = None  # an imported module's factory's keyword arguments

    def to_json(self) -> dict[str, Any]:
        counts = self.counts.to_json()
        network = self.architecture
        imported = isinstance(network, ImportedModel)
        data = {
            "model": self.model,
            "factors": self.factors,
            **({"args": self.args} if self.args is not None else {}),
            "resolution": network.resolution,
            # A width multiplier is ablate's: an imported module has none.
            "width": None if imported else network.width,
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


def rows_counts(rows: Sequence[LayerRow], counts: CountResult) -> list[RowCounts]:
    """Each record goes to the row whose module contains it, else to the row that ran last
    (e.g. the classifier's activation belongs with the linear layer before it)."""
    from ablate.counting.records import RULES

    members: list[list[OpRecord]] = [[] for _ in rows]
    current = 0
    for record in counts.records:
        for index, row in enumerate(rows):
            if record.module_path == row.module or record.module_path.startswith(row.module + "."):
                current = index
                break
        members[current].append(record)

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    result = []
    for records in members:
        totals = {key: rule(records) for key, rule in RULES.items()}
        shares = {m.key: share(totals[m.key], counts.totals[m.key]) for m in PER_LAYER}
        result.append(RowCounts(totals=totals, shares=shares))
    return result
