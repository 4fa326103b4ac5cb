"""Pure functions from counting results to rich tables and JSON dicts.

Every numeric header names its unit and convention: "MACs" are multiply-accumulates, "FLOPs"
are 2 x MACs + elementwise ops, "MAdds" count one per MAC and one per elementwise element,
and bytes are in MB (10^6 bytes).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ablate.counting.crosscheck import CrosscheckResult, PeerCount
from ablate.counting.records import CountResult

_MEGA = 1_000_000


def _millions(value: int) -> str:
    return f"{value / _MEGA:,.2f}"


def _megabytes(value: int) -> str:
    return f"{value / _MEGA:,.2f}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}"


def _intensity(value: float) -> str:
    return f"{value:.2f}"


def count_json(result: CountResult, *, include_records: bool = False) -> dict[str, Any]:
    return result.to_json(include_records=include_records)


def crosscheck_json(result: CrosscheckResult) -> dict[str, Any]:
    return result.to_json()


def layers_table(result: CountResult, *, title: str | None = None) -> Table:
    """Per layer (block): MACs, FLOPs, bytes in both views, intensity, shares of the total."""
    shape = "x".join(str(size) for size in result.input_shape)
    table = Table(
        title=title or f"Cost per layer, input {shape}, {result.dtype}",
        caption="FLOPs = 2 x MACs + elementwise ops; MB = 10^6 bytes; fused = conv+BN+act "
        "as one kernel (BN folded, so its FLOPs are left out of the fused intensity)",
    )
    table.add_column("layer")
    for header in (
        "MACs (M)",
        "FLOPs (M)",
        "bytes unfused (MB)",
        "bytes fused (MB)",
        "FLOPs/byte unfused",
        "FLOPs/byte fused",
        "MACs %",
        "FLOPs %",
        "bytes unfused %",
        "bytes fused %",
    ):
        table.add_column(header, justify="right")
    for layer in result.layers:
        table.add_row(
            layer.name,
            _millions(layer.macs),
            _millions(layer.flops),
            _megabytes(layer.bytes_unfused),
            _megabytes(layer.bytes_fused),
            _intensity(layer.intensity_unfused),
            _intensity(layer.intensity_fused),
            _percent(layer.macs_share),
            _percent(layer.flops_share),
            _percent(layer.bytes_unfused_share),
            _percent(layer.bytes_fused_share),
        )
    table.add_section()
    table.add_row(
        "total",
        _millions(result.macs),
        _millions(result.flops),
        _megabytes(result.bytes_unfused),
        _megabytes(result.bytes_fused),
        _intensity(result.flops / result.bytes_unfused if result.bytes_unfused else 0.0),
        _intensity(result.flops_folded / result.bytes_fused if result.bytes_fused else 0.0),
        "100.0",
        "100.0",
        "100.0",
        "100.0",
    )
    return table


def kinds_table(result: CountResult, *, title: str | None = None) -> Table:
    """Totals by op kind, in order of first appearance."""
    table = Table(
        title=title or "Cost by op kind",
        caption="elementwise ops at the documented per-element costs; MB = 10^6 bytes",
    )
    table.add_column("kind")
    for header in (
        "ops",
        "MACs (M)",
        "elementwise ops (M)",
        "FLOPs (M)",
        "bytes unfused (MB)",
        "bytes fused (MB)",
    ):
        table.add_column(header, justify="right")
    for kind, summary in result.by_kind.items():
        table.add_row(
            kind,
            str(summary.operator_count),
            _millions(summary.macs),
            _millions(summary.elementwise_ops),
            _millions(summary.flops),
            _megabytes(summary.bytes_unfused),
            _megabytes(summary.bytes_fused),
        )
    if result.unknown_ops:
        table.add_section()
        for operator, calls in result.unknown_ops.items():
            table.add_row(f"unknown: {operator}", str(calls), "?", "?", "?", "", "")
    return table


def totals_table(result: CountResult, *, title: str | None = None) -> Table:
    """The totals people confuse, side by side, each with its convention."""
    table = Table(title=title or "Totals")
    table.add_column("total")
    table.add_column("value (M)", justify="right")
    table.add_column("convention")
    rows = (
        ("macs", result.macs, "MACs of conv + linear (FlopCounterMode / 2; torchvision 'GFLOPS')"),
        ("madds_folded", result.madds_folded, "MAdds, papers: BN folded, ReLU/ReLU6 free"),
        ("madds_unfolded", result.madds_unfolded, "MAdds, eager graph: BN and every op"),
        ("flops", result.flops, "FLOPs: 2 x MACs + elementwise ops, BN unfolded"),
        ("flops_folded", result.flops_folded, "FLOPs: 2 x MACs + elementwise ops, BN folded"),
        ("bytes_unfused", result.bytes_unfused, "bytes, every aten op (eager)"),
        ("bytes_fused", result.bytes_fused, "bytes, conv+BN+activation fused"),
        ("activation_peak_bytes", result.activation_peak_bytes, "bytes, live activations peak"),
    )
    for name, value, convention in rows:
        table.add_row(name, _millions(value), convention)
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
            "" if term.peer_value is None else _millions(term.peer_value),
            _millions(term.reconstructed),
        )
    table.add_section()
    total = "failed" if peer.total is None else _millions(peer.total)
    table.add_row("total", peer.error or "", total, _millions(peer.reconstructed_total))
    if peer.residual is not None:
        table.add_row("unexplained residual", "total - rebuilt terms", _millions(peer.residual), "")
        table.add_row(
            "difference from our macs",
            "peer total - conv+linear MACs",
            _millions(peer.total - result.ours.macs) if peer.total is not None else "",
            "",
        )
    if peer.skipped_ops:
        skipped = ", ".join(f"{name} x{calls}" for name, calls in peer.skipped_ops.items())
        table.add_row("counted as zero", skipped, "", "")
    return table


def crosscheck_tables(result: CrosscheckResult) -> tuple[Table, Table]:
    """One table per peer: its terms, their rebuild from our records, and the residual."""
    return _peer_table(result.fvcore, result), _peer_table(result.ptflops, result)
