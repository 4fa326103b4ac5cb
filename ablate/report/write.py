"""`ablate report`'s formats, from a run's results: Markdown (with its figures), the comparison
as JSON, or its main table as CSV; written to a file (atomically) or, with '-', returned for
stdout. Which run, and which formats, the service (`services.experiment`) decides.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablate.metrics import COMPARED, PER_BLOCK, Metric
from ablate.report.changes import BlockChange
from ablate.report.compare import Comparison, VariantComparison, compare_variants
from ablate.report.escaping import csv_line
from ablate.runs.schema import Results

STDOUT = "-"
REPORT_STEM = "report"
REPORT_FORMATS = {"markdown": "md", "json": "json", "csv": "csv"}


def write_format(
    name: str,
    results: Results,
    run_directory: Path,
    destination: str,
    baseline: str | None,
    versus: Results | None,
) -> tuple[str, str | None]:
    """Format `name` (a key of REPORT_FORMATS) of `results`: (STDOUT, the text to print) for
    STDOUT, else written to `destination`: (destination, None)."""
    from ablate.files import write_text_atomic

    if name == "markdown":
        text = _markdown(results, run_directory, destination, baseline, versus)
    elif name == "json":
        text = comparison_json(results, baseline)
    else:
        text = comparison_csv(results, baseline)
    if destination == STDOUT:
        return STDOUT, text
    write_text_atomic(Path(destination), text)
    return destination, None


def _markdown(
    results: Results,
    run_directory: Path,
    destination: str,
    baseline: str | None,
    versus: Results | None,
) -> str:
    """The report text, its figures written beside it (beside the run for stdout)."""
    from ablate.report.markdown import render_markdown
    from ablate.report.plots import write_report_plots

    if destination == STDOUT:
        # No file to sit beside: the figures go into the run, linked from where we stand.
        names = write_report_plots(
            results, run_directory, prefix=f"{REPORT_STEM}-", baseline=baseline
        )
        plots = {key: os.path.relpath(run_directory / name) for key, name in names.items()}
    else:
        path = Path(destination)
        plots = write_report_plots(results, path.parent, prefix=f"{path.stem}-", baseline=baseline)
    return render_markdown(results, plots=plots, baseline=baseline, versus=versus)


# Machine-readable exports of the comparison: JSON (rows and block changes) and CSV (rows).
#
# Column names carry their unit: `_ms`, `_pct` (percent of the baseline), `_bytes`; counts
# (`params`, `macs` = conv+linear multiply-accumulates, `flops` = 2 x MACs + elementwise ops)
# are plain integers. Missing values are JSON null and empty CSV cells. A list is a JSON list
# and one CSV cell, its items joined by ';' (`CSV_ITEMS` names an item where it is structured).

COMPARISON_SCHEMA = "ablate.comparison/1"


def export_column(metric: Metric) -> str:
    """A metric's export column: counts keep their key, byte metrics say they are bytes."""
    if metric.unit == "bytes" and not metric.key.endswith("_bytes"):
        return f"{metric.key}_bytes"
    return metric.key


_COUNT_COLUMNS = {metric.key: export_column(metric) for metric in COMPARED}
CSV_COLUMNS = (
    "variant",
    "is_baseline",
    "measured_as",
    *_COUNT_COLUMNS.values(),
    *(f"{column.removesuffix('_bytes')}_delta_pct" for column in _COUNT_COLUMNS.values()),
    "latency_median_ms",
    "latency_ci95_low_ms",
    "latency_ci95_high_ms",
    "latency_rounds",
    "latency_delta_ms",
    "latency_ratio",
    "latency_delta_pct",
    "latency_delta_ci95_low_pct",
    "latency_delta_ci95_high_pct",
    "significant",
    "approximate",
    "macs_vs_latency",
    "noise_flags",
    "latency_extrapolated",
)
# How a structured item of a list column reads in its CSV cell: an extrapolation by its term
# (its detail and distance are JSON's).
CSV_ITEMS: dict[str, Callable[[Any], str]] = {"latency_extrapolated": lambda entry: entry["term"]}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def comparison_row(row: VariantComparison) -> dict[str, Any]:
    """One flat row: every column of `CSV_COLUMNS`."""
    data: dict[str, Any] = {
        "variant": row.name,
        "is_baseline": row.is_baseline,
        "measured_as": row.measured_as,
    }
    for metric, column in _COUNT_COLUMNS.items():
        data[column] = row.counts[metric].value
    for metric, column in _COUNT_COLUMNS.items():
        data[f"{column.removesuffix('_bytes')}_delta_pct"] = _round(row.counts[metric].percent)
    latency = row.latency
    interval = None if latency is None else latency.percent_ci95
    data.update(
        {
            "latency_median_ms": None if latency is None else _round(latency.median_ms),
            "latency_ci95_low_ms": None if latency is None else _round(latency.ci95_ms[0]),
            "latency_ci95_high_ms": None if latency is None else _round(latency.ci95_ms[1]),
            "latency_rounds": None if latency is None else latency.rounds,
            "latency_delta_ms": None if latency is None else _round(latency.delta_ms),
            "latency_ratio": None if latency is None else _round(latency.ratio),
            "latency_delta_pct": None if latency is None else _round(latency.percent),
            "latency_delta_ci95_low_pct": None if interval is None else _round(interval[0]),
            "latency_delta_ci95_high_pct": None if interval is None else _round(interval[1]),
            "significant": None if latency is None else latency.significant,
            "approximate": None if latency is None else latency.approximate,
            "macs_vs_latency": row.disagreement,
            "noise_flags": [flag.name for flag in row.flags],
            # [] where a prediction stays inside the profile's rows; null where nothing was
            # checked (a measurement, or a profile that records no support).
            "latency_extrapolated": None
            if latency is None or latency.extrapolated is None
            else [entry.model_dump() for entry in latency.extrapolated],
        }
    )
    return data


def block_row(block: BlockChange) -> dict[str, Any]:
    data: dict[str, Any] = {"block": block.name, "status": block.status}
    for metric in PER_BLOCK:
        change = block.count(metric.key)
        column = export_column(metric)
        data[f"baseline_{column}"] = change.baseline
        data[column] = change.value
    data.update(
        {
            "intensity_fused_flops_per_byte": _round(block.intensity_fused, 4),
            "bound": block.bound,
            "baseline_time_share": _round(block.baseline_time.share),
            "time_share": _round(block.variant_time.share),
            "time_delta_ms_estimate": _round(block.time_delta_ms),
            "macs_vs_time_opposite": block.opposite,
        }
    )
    return data


def comparison_document(comparison: Comparison) -> dict[str, Any]:
    return {
        "schema": COMPARISON_SCHEMA,
        "experiment": comparison.experiment,
        "baseline": comparison.baseline,
        "measured_baseline": comparison.measured_baseline,
        "rebased": comparison.rebased,
        "quick": comparison.quick,
        "status": comparison.status,
        "backend": comparison.backend,
        "conventions": {
            **{metric.key: metric.convention for metric in COMPARED},
            "latency": "median per forward pass, 95% interval; delta from the paired ratio",
            "latency_extrapolated": (
                "the terms on which a predicted latency leaves the rows its device profile was "
                "fitted on, with how far (times_outside null: no row has the term); [] none, "
                "null not checked (a measurement)"
            ),
        },
        "rows": [comparison_row(row) for row in comparison.rows],
        # Ops without a counting rule (counted as zero), per variant that ran any.
        "unknown_ops": {
            row.name: {op: unknown.model_dump() for op, unknown in row.unknown_ops.items()}
            for row in comparison.rows
            if row.unknown_ops
        },
        "blocks": {
            row.name: [block_row(block) for block in row.blocks]
            for row in comparison.rows
            if not row.is_baseline
        },
    }


def comparison_json(results: Results, baseline: str | None = None) -> str:
    document = comparison_document(compare_variants(results, baseline))
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _csv_value(column: str, value: Any) -> Any:
    if isinstance(value, list):
        item = CSV_ITEMS.get(column, str)
        return ";".join(item(entry) for entry in value)
    return value


def comparison_csv(results: Results, baseline: str | None = None) -> str:
    """The main table as CSV; every cell through `escaping.csv_field`, so a name that starts
    like a formula reads as text in a spreadsheet."""
    comparison = compare_variants(results, baseline)
    lines = [csv_line(CSV_COLUMNS)]
    for row in comparison.rows:
        data = comparison_row(row)
        lines.append(csv_line(_csv_value(column, data[column]) for column in CSV_COLUMNS))
    return "".join(lines)
