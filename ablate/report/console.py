"""Rich renderers: pure functions of result objects, printing to a console."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from ablate.architecture.imported import ImportedModel
from ablate.counting.crosscheck import CrosscheckResult, PeerCount
from ablate.counting.records import CountResult
from ablate.metrics import COUNTED, PER_LAYER, Metric
from ablate.report.formatting import (
    UNKNOWN_OPS_NOTE,
    intensity,
    share_percent,
    table_millions,
    unknown_op_text,
)
from ablate.report.layout import fitted
from ablate.spec.expand import render_value
from ablate.spec.model import ExperimentSpec, VariantSpec

if TYPE_CHECKING:
    from ablate.counting.inspection import Inspection, ModelSummary
    from ablate.variants.factors import Factor


def _console(console: Console | None) -> Console:
    return console or Console()


def models_table(rows: Sequence[ModelSummary]) -> Table:
    table = Table(title="Built-in architectures (width 1.0, 1000 classes)")
    table.add_column("name")
    table.add_column("params", justify="right")
    table.add_column("blocks", justify="right")
    table.add_column("source")
    for row in rows:
        table.add_row(row.name, f"{row.params:,}", str(row.blocks), row.paper)
    return table


def print_models(rows: Sequence[ModelSummary], console: Console | None = None) -> None:
    _console(console).print(fitted(models_table(rows)))


def factors_table(factors: Sequence[Factor]) -> Table:
    table = Table(
        title="Factors (default: the base architecture's own setting; every factor "
        "also takes an architecture name)"
    )
    table.add_column("factor")
    table.add_column("meaning")
    table.add_column("values")
    for factor in factors:
        table.add_row(factor.name, factor.meaning, factor.values)
    return table


def print_factors(factors: Sequence[Factor], console: Console | None = None) -> None:
    _console(console).print(fitted(factors_table(factors)))


def inspection_table(inspection: Inspection) -> Table:
    architecture = inspection.architecture
    resolution = architecture.resolution
    if isinstance(architecture, ImportedModel):  # its arguments; a width is ablate's
        title = f"{architecture.label} at {resolution}x{resolution}"
    else:
        settings = ", ".join(f"{k}={v}" for k, v in inspection.factors.items()) or "as published"
        title = (
            f"{inspection.model} ({settings}) at {resolution}x{resolution}, "
            f"width {architecture.width:g}"
        )
    table = Table(
        title=title,
        caption=f"{inspection.params:,} parameters (BN weights counted, buffers not). MACs: "
        "conv + linear multiply-accumulates; FLOPs: 2 x MACs + elementwise ops; MB = 10^6 "
        "bytes moved, unfused (every aten op) or fused (conv + BN + clamp activation as one "
        "kernel); % of the model's MACs.",
    )
    for column, justify in (
        ("#", "right"),
        ("input", "right"),
        ("operator", "left"),
        ("exp", "right"),
        ("out", "right"),
        ("SE", "center"),
        ("NL", "left"),
        ("s", "right"),
        ("params", "right"),
        *((_header(metric), "right") for metric in PER_LAYER),
        ("FLOPs/B fused", "right"),
        ("MACs %", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row, counts in zip(inspection.layers, inspection.row_counts, strict=True):
        table.add_row(
            row.layer,
            f"{row.input_height}²×{row.input_channels}",
            row.operator,
            "" if row.expanded_channels is None else str(row.expanded_channels),
            str(row.out_channels),
            "✓" if row.squeeze_excite else "-",
            row.activation or "-",
            str(row.stride),
            f"{row.params:,}",
            *(table_millions(counts.totals[metric.key]) for metric in PER_LAYER),
            f"{counts.intensity_fused:.1f}",
            share_percent(counts.shares["macs"]),
        )
    return table


def print_inspection(inspection: Inspection, console: Console | None = None) -> None:

    console = _console(console)
    console.print(fitted(inspection_table(inspection)))
    console.print(fitted(kinds_table(inspection.counts)))
    console.print(fitted(totals_table(inspection.counts)))
    if inspection.crosscheck is not None:
        for table in crosscheck_tables(inspection.crosscheck):
            console.print(fitted(table))
    if inspection.counts.unknown_ops:
        lines = [
            f"- {unknown_op_text(op, unknown.calls, unknown.modules)}"
            for op, unknown in inspection.counts.unknown_ops.items()
        ]
        console.print(f"Unknown ops ({UNKNOWN_OPS_NOTE}):", style="bold red")
        console.print("\n".join(lines), markup=False, highlight=False)


# Pure functions from counting results to rich tables and JSON dicts.
#
# Every numeric header names its unit and convention: "MACs" are multiply-accumulates, "FLOPs"
# are 2 x MACs + elementwise ops, "MAdds" count one per MAC and one per elementwise element,
# and bytes are in MB (10^6 bytes).

def _header(metric: Metric) -> str:
    return f"{metric.label} ({metric.symbol})"


def layers_table(result: CountResult, *, title: str | None = None) -> Table:
    """Per layer (block): every per-layer metric (MACs, FLOPs, bytes in both views), the
    intensity, and each metric's share of the total."""
    shape = "x".join(str(size) for size in result.input_shape)
    table = Table(
        title=title or f"Cost per layer, input {shape}, {result.dtype}",
        caption="FLOPs = 2 x MACs + elementwise ops; MB = 10^6 bytes; fused = conv+BN+act "
        "as one kernel (BN folded, so its FLOPs are left out of the fused intensity)",
    )
    table.add_column("layer")
    for header in (
        *(_header(metric) for metric in PER_LAYER),
        "FLOPs/byte unfused",
        "FLOPs/byte fused",
        *(f"{metric.label} %" for metric in PER_LAYER),
    ):
        table.add_column(header, justify="right")
    for layer in result.layers:
        table.add_row(
            layer.name,
            *(table_millions(layer.totals[metric.key]) for metric in PER_LAYER),
            intensity(layer.intensity_unfused),
            intensity(layer.intensity_fused),
            *(share_percent(layer.share(metric.key)) for metric in PER_LAYER),
        )
    table.add_section()
    totals = result.totals
    table.add_row(
        "total",
        *(table_millions(totals[metric.key]) for metric in PER_LAYER),
        intensity(totals["flops"] / totals["bytes_unfused"] if totals["bytes_unfused"] else 0.0),
        intensity(totals["flops_folded"] / totals["bytes_fused"] if totals["bytes_fused"] else 0.0),
        *("100.0" for _ in PER_LAYER),
    )
    return table


def kinds_table(result: CountResult, *, title: str | None = None) -> Table:
    """Totals by op kind, in order of first appearance."""
    table = Table(
        title=title or "Cost by op kind",
        caption="elementwise ops at the documented per-element costs; MB = 10^6 bytes",
    )
    table.add_column("kind")
    for header in ("ops", "elementwise ops (M)", *(_header(metric) for metric in PER_LAYER)):
        table.add_column(header, justify="right")
    for kind, summary in result.by_kind.items():
        table.add_row(
            kind,
            str(summary.operator_count),
            table_millions(summary.elementwise_ops),
            *(table_millions(summary.totals[metric.key]) for metric in PER_LAYER),
        )
    if result.unknown_ops:
        # Their traffic follows from shapes; their arithmetic has no rule.
        table.add_section()
        for operator, unknown in result.unknown_ops.items():
            unknowable = ("" if metric.unit == "bytes" else "?" for metric in PER_LAYER)
            table.add_row(f"unknown: {operator}", str(unknown.calls), "?", *unknowable)
    return table


def totals_table(result: CountResult, *, title: str | None = None) -> Table:
    """The totals people confuse, side by side, each with its convention."""
    table = Table(title=title or "Totals")
    table.add_column("total")
    table.add_column("value (M)", justify="right")
    table.add_column("convention")
    for metric in COUNTED:
        table.add_row(metric.key, table_millions(result.totals[metric.key]), metric.convention)
    return table


def _peer_table(peer: PeerCount, result: CrosscheckResult) -> Table:
    table = Table(title=f"{peer.counter} beside ours", caption="counts in millions (M)")
    table.add_column("term")
    table.add_column("peer's rule")
    table.add_column(f"{peer.counter} (M)", justify="right")
    table.add_column("rebuilt from our records (M)", justify="right")
    for term in peer.terms:
        table.add_row(
            term.label,
            term.rule,
            "" if term.peer_value is None else table_millions(term.peer_value),
            table_millions(term.reconstructed),
        )
    table.add_section()
    total = "failed" if peer.total is None else table_millions(peer.total)
    table.add_row("total", peer.error or "", total, table_millions(peer.reconstructed_total))
    if peer.residual is not None:
        residual = table_millions(peer.residual)
        table.add_row("unexplained residual", "total - rebuilt terms", residual, "")
        table.add_row(
            "difference from our macs",
            "peer total - conv+linear MACs",
            table_millions(peer.total - result.ours.macs) if peer.total is not None else "",
            "",
        )
    if peer.skipped_ops:
        skipped = ", ".join(f"{name} x{calls}" for name, calls in peer.skipped_ops.items())
        table.add_row("counted as zero", skipped, "", "")
    return table


def crosscheck_tables(result: CrosscheckResult) -> tuple[Table, Table]:
    """One table per peer: its terms, their rebuild from our records, and the residual."""
    return _peer_table(result.fvcore, result), _peer_table(result.ptflops, result)


# What `ablate validate` prints: a one-line verdict and one line per variant.

def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summary_line(spec: ExperimentSpec) -> str:
    """``SPEC: OK, N variants (M distinct architectures), baseline X``."""
    variants = _count(len(spec.variants), "variant")
    architectures = _count(len(spec.architecture_groups()), "distinct architecture")
    return f"{spec.source_label}: OK, {variants} ({architectures}), baseline {spec.baseline}"


def _settings(variant: VariantSpec, spec: ExperimentSpec) -> str:
    if variant.imported is not None:  # an imported module: its factory's arguments
        arguments = ", ".join(f"{k}={render_value(v)}" for k, v in variant.imported.args.items())
        return f"args {arguments}" if arguments else "no args"
    # Settings that change nothing are left out: the resolution default (on every variant)
    # and a factor set to the base's own name (as attribution variants have on the `from` side).
    shown = {
        factor: value
        for factor, value in variant.factors.items()
        if not (factor == "resolution" and value == spec.input.resolution) and value != variant.base
    }
    settings = ", ".join(f"{key}={render_value(value)}" for key, value in shown.items())
    return settings or "as published"


def variant_lines(spec: ExperimentSpec) -> list[str]:
    """Name, base, settings; the baseline and repeated architectures marked."""
    measured_as = {
        name: names[0] for names in spec.architecture_groups().values() for name in names
    }
    name_width = max(len(variant.name) for variant in spec.variants)
    base_width = max(len(variant.base) for variant in spec.variants)
    lines = []
    for variant in spec.variants:
        notes = []
        if variant.name == spec.baseline:
            notes.append("baseline")
        if measured_as[variant.name] != variant.name:
            notes.append(f"same architecture as {measured_as[variant.name]}")
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(
            f"  {variant.name:<{name_width}}  {variant.base:<{base_width}}  "
            f"{_settings(variant, spec)}{note}"
        )
    return lines
