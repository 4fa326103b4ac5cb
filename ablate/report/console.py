"""Rich renderers: pure functions of result objects, printing to a console."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ablate.inspection import Inspection, ModelSummary
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
    _console(console).print(models_table(rows))


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
    _console(console).print(factors_table(factors))


def inspection_table(inspection: Inspection) -> Table:
    architecture = inspection.architecture
    settings = ", ".join(f"{k}={v}" for k, v in inspection.factors.items()) or "as published"
    table = Table(
        title=f"{inspection.model} ({settings}) at {architecture.resolution}x"
        f"{architecture.resolution}, width {architecture.width:g}",
        caption=f"{inspection.params:,} parameters (BN weights counted, buffers not). MACs: "
        "conv + linear multiply-accumulates; MB = 10^6 bytes moved, eager (every aten op) or "
        "fused (conv + BN + clamp activation as one kernel); bytes % of the eager total.",
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
        ("MACs (M)", "right"),
        ("MB eager", "right"),
        ("MB fused", "right"),
        ("FLOPs/B fused", "right"),
        ("MACs %", "right"),
        ("bytes %", "right"),
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
            f"{counts.macs / 1e6:.2f}",
            f"{counts.bytes_unfused / 1e6:.2f}",
            f"{counts.bytes_fused / 1e6:.2f}",
            f"{counts.intensity_fused:.1f}",
            f"{counts.macs_share * 100:.1f}",
            f"{counts.bytes_unfused_share * 100:.1f}",
        )
    return table


def print_inspection(inspection: Inspection, console: Console | None = None) -> None:
    from ablate.counting.render import crosscheck_tables, kinds_table, totals_table

    console = _console(console)
    console.print(inspection_table(inspection))
    console.print(kinds_table(inspection.counts))
    console.print(totals_table(inspection.counts))
    if inspection.crosscheck is not None:
        for table in crosscheck_tables(inspection.crosscheck):
            console.print(table)
    if inspection.counts.unknown_ops:
        unknown = ", ".join(f"{op} x{calls}" for op, calls in inspection.counts.unknown_ops.items())
        console.print(f"[bold red]unknown ops (not counted, listed):[/] {unknown}")
