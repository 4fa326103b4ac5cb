"""The count metrics: one table, from which every list of metrics in ablate is derived.

The counting engine computes each metric; this table says what it is called, its unit and
convention, where it appears and how it is formatted. The counting summaries (totals, per
layer, per op kind), `inspect`, the results model's fields, the `compare` tables, the Markdown
report, the CSV and JSON exports and the attribution's metric list all iterate it, so adding a
metric is: its counting rule (`counting.records.RULES`) and a row here. A results file written
before a metric existed reads it as missing (None, shown "n/a"), and a table column that is
missing for every row is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["count", "bytes"]


@dataclass(frozen=True)
class Metric:
    key: str  # the counting rule's, the CountResult total's and the results.json key
    label: str  # column heading
    unit: Unit  # counts are shown in millions (M), bytes in megabytes (MB = 1e6 bytes)
    convention: str  # what is counted, as the totals table says it
    digits: int = 1  # decimals of the M / MB figure in tables
    stored: bool = True  # a field of every variant in results.json
    compared: bool = False  # a column of `compare`, the report and the exports
    per_block: bool = False  # also counted, compared and stored for every block
    attributable: bool = False  # attributed factor by factor (exact integer Shapley shares)
    headline: bool = False  # its change gets a column of its own in the report
    counted: bool = True  # a total of the counting pass (params come from the weights)

    @property
    def symbol(self) -> str:
        """The unit its tables show it in: M (1e6) for counts, MB (1e6 bytes) for bytes."""
        return "MB" if self.unit == "bytes" else "M"


METRICS: tuple[Metric, ...] = (
    Metric(
        "params",
        "params",
        "count",
        "weights and biases, BN scale and shift included, buffers not",
        digits=2,
        compared=True,
        per_block=True,
        attributable=True,
        counted=False,
    ),
    Metric(
        "macs",
        "MACs",
        "count",
        "MACs of conv + linear (FlopCounterMode / 2; torchvision 'GFLOPS')",
        compared=True,
        per_block=True,
        attributable=True,
        headline=True,
    ),
    Metric(
        "flops",
        "FLOPs",
        "count",
        "FLOPs: 2 x MACs + elementwise ops, BN unfolded",
        compared=True,
        per_block=True,
        attributable=True,
    ),
    Metric(
        "flops_folded",
        "FLOPs folded",
        "count",
        "FLOPs: 2 x MACs + elementwise ops, BN folded",
        attributable=True,
    ),
    Metric("madds_folded", "MAdds", "count", "MAdds, papers: BN folded, ReLU/ReLU6 free"),
    Metric(
        "madds_unfolded",
        "MAdds unfolded",
        "count",
        "MAdds, eager graph: BN and every op",
        stored=False,
    ),
    Metric(
        "bytes_unfused",
        "bytes unfused",
        "bytes",
        "bytes, every aten op (eager)",
        compared=True,
        per_block=True,
        attributable=True,
    ),
    Metric(
        "bytes_fused",
        "bytes fused",
        "bytes",
        "bytes, conv+BN+activation fused",
        compared=True,
        per_block=True,
        attributable=True,
    ),
    Metric(
        "activation_peak_bytes",
        "activation peak",
        "bytes",
        "bytes, live activations peak",
        digits=2,
        compared=True,
    ),
)

BY_KEY = {metric.key: metric for metric in METRICS}
STORED = tuple(metric for metric in METRICS if metric.stored)
COMPARED = tuple(metric for metric in METRICS if metric.compared)
PER_BLOCK = tuple(metric for metric in METRICS if metric.per_block)
ATTRIBUTABLE = tuple(metric for metric in METRICS if metric.attributable)
COUNTED = tuple(metric for metric in METRICS if metric.counted)
# The op costs the counting pass totals layer by layer: the columns of the per-layer, per-kind
# and per-block tables and, of those attributed, of the Shapley table.
PER_LAYER = tuple(metric for metric in PER_BLOCK if metric.counted)


def metric(key: str) -> Metric:
    return BY_KEY[key]
