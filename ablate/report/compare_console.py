"""Rich renderers of `ablate compare`: pure functions of the results, returning renderables.

One run: a header (what, where, how long), the counts table, the latency table, one table of
differing blocks per variant, the legend and the generated summary. Two runs: the environment
differences first, then every variant's latency in both runs.

Each entry point escapes the results it is given for rich markup (`escaping.console_text`):
every table cell and text here is read as markup, so only this module's own text styles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ablate.metrics import COMPARED, PER_LAYER, Metric
from ablate.report.changes import BlockChange, CountChange
from ablate.report.compare import (
    Comparison,
    LatencyChange,
    PairedVariant,
    RunComparison,
    VariantComparison,
    compare_runs,
    compare_variants,
    present_metrics,
)
from ablate.report.escaping import console_text, escaped
from ablate.report.fidelity import fidelity_sentence, latency_fidelity
from ablate.report.formatting import (
    CONVENTIONS,
    NOT_AVAILABLE,
    UNKNOWN_OPS_NOTE,
    change_percent,
    environment_text,
    latency_text,
    metric_change,
    percent,
    percent_interval,
    signed_megabytes,
    signed_milliseconds,
    target_phrase,
    unknown_op_text,
)
from ablate.report.layout import empty_headers, fitted, without_columns, without_empty_columns
from ablate.report.summary import comparison_summary, machine_phrase
from ablate.runs.schema import STOP_REASONS, Results


def _markup(text: str, style: str = "") -> Text:
    """Rich text read as markup, as rich reads every table cell: the results' strings in it
    arrive escaped (`escaping.console_text`), so only this module's own text can style."""
    return Text.from_markup(text, style=style, emoji=False)


OPPOSITE_MARK = "◆ opposite"
MACS_FLAT_MARK = "● MACs flat"
FLIP_MARK = "⇅ flips"
APPROXIMATE_MARK = "≈"
LEGEND = (
    f"{OPPOSITE_MARK}: MACs and latency move in opposite directions (latency significantly). "
    f"{MACS_FLAT_MARK}: latency moved significantly, MACs did not. "
    "sig.: the 95% interval of the ratio to the baseline excludes 1.0. "
    f"{APPROXIMATE_MARK}: re-based on a baseline the run did not pair with; ratio = quotient "
    "of the two paired ratios to the measured baseline, interval = conservative quotient of "
    "the two 95% intervals (coverage at least 90%); rerun with that baseline for an exact one."
)


def header_lines(results: Results, comparison: Comparison) -> list[str]:
    """The lines above the tables: what is compared, on what, how the measurement ended."""
    lines = [
        f"{results.experiment}: {len(results.variants)} variants against {comparison.baseline}"
    ]
    if results.description:
        lines.append(results.description)
    if comparison.rebased:
        lines.append(
            f"Re-based: the run was measured against {comparison.measured_baseline}; latency "
            f"changes against {comparison.baseline} are approximate ({APPROXIMATE_MARK})."
        )
    lines.append(f"Machine: {machine_phrase(results)}")
    measurement = results.measurement
    if measurement is not None and measurement.predicted_on is not None:
        lines.append(
            f"Latency predicted on {measurement.predicted_on} (not measured): intervals from "
            f"the profile's {measurement.rounds} bootstrap resamples; see `ablate devices`"
        )
    elif measurement is not None:
        lines.append(
            f"Measurement: {measurement.rounds} rounds in {measurement.elapsed_s:.1f} s, stopped "
            f"on {measurement.stop_reason} ({STOP_REASONS[measurement.stop_reason]}), target "
            f"{target_phrase(measurement.target_ci, measurement.stop_on)}"
        )
    if results.status != "complete":
        lines.append(f"Status: {results.status} (the run did not finish every stage)")
    return lines


def quick_warning(results: Results) -> str | None:
    if not results.quick:
        return None
    return "QUICK RUN: smoke-test timings (few rounds, loose target); do not draw conclusions."


def significance(latency: LatencyChange | None) -> str:
    if latency is None:
        return NOT_AVAILABLE
    if latency.significant is None:
        return "-"
    mark = APPROXIMATE_MARK if latency.approximate else ""
    return f"{mark}{'yes' if latency.significant else 'no'}"


def disagreement_mark(row: VariantComparison) -> str:
    return {"opposite": OPPOSITE_MARK, "macs_flat": MACS_FLAT_MARK, None: ""}[row.disagreement]


def flags_text(row: VariantComparison) -> str:
    return ", ".join(flag.name for flag in row.flags)


def extrapolated_text(row: VariantComparison) -> str:
    """`dense_macs 105x, pointwise_macs 3.35x` (`beyond` where no fitted row has the term)."""
    return ", ".join(
        f"{entry.term} {'beyond' if entry.times_outside is None else f'{entry.times_outside:.3g}x'}"
        for entry in row.extrapolated
    )


def extrapolation_lines(comparison: Comparison) -> list[str]:
    """`- variant: term: detail`, one line per term on which a prediction extrapolates."""
    return [
        f"- {row.name}: {entry.term}: {entry.detail}"
        for row in comparison.rows
        for entry in row.extrapolated
    ]


EXTRAPOLATION_HEADING = (
    "Extrapolated (the device profile's rows never reached these networks: the profile cannot "
    "tell how they compare)"
)


def noise_flag_lines(comparison: Comparison) -> list[str]:
    """`- variant: name: detail`, one line per flag."""
    return [
        f"- {row.name}: {flag.name}: {flag.detail}" for row in comparison.rows for flag in row.flags
    ]


def unknown_op_lines(comparison: Comparison) -> list[str]:
    """`- variants: op xN at modules`, one line per op and the variants that run it alike."""
    variants: dict[tuple[str, int, tuple[str, ...]], list[str]] = {}
    for row in comparison.rows:
        for operator, unknown in row.unknown_ops.items():
            key = (operator, unknown.calls, tuple(unknown.modules))
            variants.setdefault(key, []).append(row.name)
    return [
        f"- {', '.join(names)}: {unknown_op_text(operator, calls, modules)}"
        for (operator, calls, modules), names in variants.items()
    ]


def unknown_ops_text(comparison: Comparison) -> Text | None:
    """The unknown ops of every variant under a heading; None when every op was counted."""
    lines = unknown_op_lines(comparison)
    if not lines:
        return None
    return _markup(f"Unknown ops ({UNKNOWN_OPS_NOTE}):\n" + "\n".join(lines), style="bold red")


def counts_table(comparison: Comparison) -> Table:
    table = Table(
        title=f"Counts per forward pass (change vs {comparison.baseline})",
        caption="M = 1e6; MB = 1e6 bytes; unfused = eager ops, fused = conv+BN+act as one kernel",
    )
    table.add_column("variant")
    shown = present_metrics(COMPARED, comparison.rows)
    for metric in shown:
        table.add_column(metric.label, justify="right")
    for row in comparison.rows:
        cells = (metric_change(metric, row.counts[metric.key]) for metric in shown)
        table.add_row(_name(row), *cells)
    return table


def latency_table(comparison: Comparison) -> Table:
    table = Table(title=f"Latency (median [95% interval]) vs {comparison.baseline}")
    table.add_column("variant")
    for column in ("median ms [95% CI]", "Δ ms", "Δ % [95% CI]", "sig.", "MACs Δ"):
        table.add_column(column, justify="right")
    table.add_column("MACs vs latency")
    table.add_column("noise flags")
    table.add_column("extrapolated")
    for row in comparison.rows:
        latency = row.latency
        if latency is None:
            table.add_row(_name(row), "not measured", *[""] * 7)
            continue
        approximate = APPROXIMATE_MARK if latency.approximate else ""
        table.add_row(
            _name(row),
            latency_text(latency.median_ms, latency.ci95_ms),
            "0" if row.is_baseline else signed_milliseconds(latency.delta_ms),
            "-" if latency.ratio_ci95 is None else approximate + _percent_with_interval(latency),
            significance(latency),
            change_percent(row.counts["macs"]),
            disagreement_mark(row),
            flags_text(row),
            extrapolated_text(row),
        )
    return without_columns(table, empty_headers([table]))  # e.g. no noise flags in the run


def run_renderables(comparison: Comparison) -> list[RenderableType]:
    """What `ablate run` prints when it ends: the latency table, any unknown ops and, for a
    predicted run, where the profile extrapolates."""
    comparison = escaped(comparison, console_text)
    unknown = unknown_ops_text(comparison)
    parts: list[RenderableType] = [fitted(latency_table(comparison))]
    if unknown is not None:
        parts.append(unknown)
    extrapolated = extrapolation_lines(comparison)
    if extrapolated:
        parts.append(_markup(f"{EXTRAPOLATION_HEADING}:\n" + "\n".join(extrapolated)))
    return parts


def _percent_with_interval(latency: LatencyChange) -> str:
    return f"{percent(latency.percent)} {percent_interval(latency.percent_ci95)}"


def _name(row: VariantComparison) -> str:
    if row.is_baseline:
        return f"{row.name} (baseline)"
    if row.same_architecture:
        return f"{row.name} (= baseline's architecture)"
    return row.name


def _share(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{100 * value:.1f}%"


def _bytes_delta(change: CountChange) -> str:
    if change.delta is None:
        return NOT_AVAILABLE
    if change.delta == 0:
        return "0"
    share = "new" if change.percent is None else percent(change.percent, 0)
    return f"{signed_megabytes(change.delta, 2)} ({share})"


def _before_after(change: CountChange) -> str:
    if change.baseline is None or change.value is None:
        return NOT_AVAILABLE
    return f"{change.baseline / 1e6:.2f}→{change.value / 1e6:.2f}"


def block_metrics(blocks: Iterable[BlockChange]) -> tuple[Metric, ...]:
    """The per-layer metrics of the block tables, less those no block has on either side."""
    sides = [side for block in blocks for side in (block.baseline, block.variant) if side]
    return tuple(m for m in PER_LAYER if any(side.count(m.key) is not None for side in sides))


def _metric_cells(block: BlockChange, metric: Metric) -> list[str]:
    """The headline metric both ways and its change; a count's change in %, bytes' in MB."""
    change = block.count(metric.key)
    if metric.headline:
        return [_before_after(change), change_percent(change)]
    return [_bytes_delta(change) if metric.unit == "bytes" else change_percent(change)]


def block_cells(block: BlockChange, metrics: Sequence[Metric] = PER_LAYER) -> list[str]:
    """Cells of one differing block; shared by the console and Markdown tables."""
    time_delta = block.time_delta_ms
    return [
        block.name,
        block.status,
        *(cell for metric in metrics for cell in _metric_cells(block, metric)),
        f"{block.intensity_fused:.1f}",
        NOT_AVAILABLE if block.bound is None else block.bound.removesuffix("-bound"),
        f"{_share(block.baseline_time.share)}→{_share(block.variant_time.share)}",
        NOT_AVAILABLE if time_delta is None else signed_milliseconds(time_delta),
        OPPOSITE_MARK if block.opposite else "",
    ]


def block_columns(metrics: Sequence[Metric] = PER_LAYER) -> tuple[str, ...]:
    """Headings of `block_cells`."""
    headings = [
        (f"{m.label}, {m.symbol}", f"{m.label} Δ") if m.headline else (f"{m.label} Δ",)
        for m in metrics
    ]
    return (
        "block",
        "status",
        *(heading for pair in headings for heading in pair),
        "FLOPs/B fused",
        "roofline",
        "time share",
        "est. Δ ms",
        "MACs vs time",
    )


def block_caption(comparison: Comparison) -> str:
    estimate = (
        "est. Δ ms = profiled time share x median latency, each model's own"
        if comparison.time_estimates
        else "no ms estimate: the profile is eager, the latency is not"
    )
    return (
        "A side without the block counts 0; FLOPs/B: FLOPs (BN folded) per byte, fused view; "
        f"roofline: this machine's bound; time share: of the profiled (eager) forward time; "
        f"{estimate}"
    )


OPERATOR_LIMIT = 4
OPERATOR_MIN_POINTS = 0.5  # smaller share moves are within one profile's noise


def operator_share_lines(row: VariantComparison, comparison: Comparison) -> list[str]:
    """The operators whose share of the profiled time moved most: the eager profile's aten ops
    and, where the runtime profiled its program, the runtime's kernels."""
    lines = []
    for title, shares in (
        ("Operator time shares that moved most (profiled, eager)", row.operator_shares),
        (
            f"Kernel time shares that moved most ({comparison.runtime_profiler})",
            row.runtime_operator_shares,
        ),
    ):
        moved = [s for s in shares if abs(s.delta_points) >= OPERATOR_MIN_POINTS]
        if moved:
            shown = ", ".join(
                f"{share.operator} {_share(share.baseline)}→{_share(share.value)} "
                f"({share.delta_points:+.1f} pp)"
                for share in moved[:OPERATOR_LIMIT]
            )
            lines.append(f"{title}: {shown}.")
    return lines


def blocks_table(row: VariantComparison, comparison: Comparison) -> Table:
    factors = ", ".join(row.changed_factors) or "none"
    table = Table(
        title=f"{row.name} vs {comparison.baseline}: {len(row.blocks)} blocks differ "
        f"(factors changed: {factors})",
        caption=block_caption(comparison),
    )
    metrics = block_metrics(row.blocks)
    for column in block_columns(metrics):
        table.add_column(column, justify="left" if column in ("block", "status") else "right")
    for block in row.blocks:
        table.add_row(*block_cells(block, metrics))
    return table


def comparison_renderables(results: Results, baseline: str | None = None) -> list[RenderableType]:
    results = escaped(results, console_text)
    baseline = None if baseline is None else console_text(baseline)
    comparison = compare_variants(results, baseline)
    parts: list[RenderableType] = [_markup("\n".join(header_lines(results, comparison)))]
    warning = quick_warning(results)
    if warning:
        parts.append(_markup(warning, style="bold yellow"))
    parts.append(fitted(counts_table(comparison)))
    unknown = unknown_ops_text(comparison)
    if unknown is not None:
        parts.append(unknown)
    if comparison.measured:
        parts.append(fitted(latency_table(comparison)))
    referenced = latency_fidelity(results, comparison.baseline)
    if referenced is not None:
        parts.append(_markup(fidelity_sentence(referenced, results)))
    differing = [row for row in comparison.rows if row.blocks and not row.is_baseline]
    # A column empty in every block table of the run (no roofline uncalibrated) is left out.
    tables = without_empty_columns([blocks_table(row, comparison) for row in differing])
    for row, table in zip(differing, tables, strict=True):
        parts.append(fitted(table))
        parts.extend(_markup(line) for line in operator_share_lines(row, comparison))
    parts.append(_markup(f"{CONVENTIONS}\n{LEGEND}", style="dim"))
    flags = noise_flag_lines(comparison)
    if flags:
        parts.append(_markup("Noise flags:\n" + "\n".join(flags)))
    extrapolated = extrapolation_lines(comparison)
    if extrapolated:
        parts.append(_markup(f"{EXTRAPOLATION_HEADING}:\n" + "\n".join(extrapolated)))
    parts.append(_markup("Summary", style="bold"))
    parts.extend(_markup(paragraph) for paragraph in comparison_summary(results, comparison))
    return parts


# -- two runs ---------------------------------------------------------------------------------


def _run_label(index: int, results: Results) -> str:
    label = f"run {index}: {results.experiment}, created {results.created}, "
    measurement = results.measurement
    if measurement is None:
        return label + "not measured"
    quick = ", quick" if results.quick else ""
    return label + (
        f"{machine_phrase(results)}{quick}; {measurement.rounds} rounds, stopped on "
        f"{measurement.stop_reason}"
    )


def environment_table(comparison: RunComparison) -> Table:
    table = Table(title="Environment differences")
    for column in ("setting", "run 1", "run 2"):
        table.add_column(column)
    for difference in comparison.environment:
        table.add_row(
            difference.key,
            environment_text(difference.first),
            environment_text(difference.second),
        )
    return table


def _ratio_cell(row: VariantComparison | None) -> str:
    if row is None:
        return "absent"
    latency = row.latency
    if latency is None:
        return "not measured"
    if latency.ratio_ci95 is None:
        return "baseline" if row.is_baseline else "= baseline"
    approximate = APPROXIMATE_MARK if latency.approximate else ""
    return (
        f"{approximate}{percent(latency.percent)} {percent_interval(latency.percent_ci95)} "
        f"{significance(latency)}"
    )


def _median_cell(row: VariantComparison | None) -> str:
    if row is None:
        return "absent"
    if row.latency is None:
        return "not measured"
    return latency_text(row.latency.median_ms, row.latency.ci95_ms)


def paired_cells(pair: PairedVariant) -> list[str]:
    """Cells of one variant in both runs; shared by the console and Markdown tables."""
    ratio = pair.median_ratio
    return [
        pair.name,
        _median_cell(pair.first),
        _median_cell(pair.second),
        NOT_AVAILABLE if ratio is None else f"{ratio:.3f}",
        _ratio_cell(pair.first),
        _ratio_cell(pair.second),
        FLIP_MARK if pair.verdict_changed else "",
    ]


def paired_columns(comparison: RunComparison) -> tuple[str, ...]:
    one, two = comparison.first.baseline, comparison.second.baseline
    return (
        "variant",
        "run 1 ms [95% CI]",
        "run 2 ms [95% CI]",
        "run 2 / run 1 (medians)",
        f"run 1 Δ % vs {one} [95% CI] sig.",
        f"run 2 Δ % vs {two} [95% CI] sig.",
        "verdict",
    )


def paired_table(comparison: RunComparison) -> Table:
    table = Table(title="Latency in both runs, each against its own baseline")
    for column in paired_columns(comparison):
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right")
    for pair in comparison.variants:
        table.add_row(*paired_cells(pair))
    return table


def run_comparison_renderables(
    first: Results, second: Results, baseline: str | None = None
) -> list[RenderableType]:
    first, second = escaped(first, console_text), escaped(second, console_text)
    baseline = None if baseline is None else console_text(baseline)
    comparison = compare_runs(first, second, baseline)
    lines = [_run_label(1, first), _run_label(2, second)]
    parts: list[RenderableType] = [_markup("\n".join(lines))]
    for index, results in enumerate((first, second), start=1):
        warning = quick_warning(results)
        if warning:
            parts.append(_markup(f"run {index}: {warning}", style="bold yellow"))
    if comparison.environment:
        parts.append(fitted(environment_table(comparison)))
    else:
        parts.append(_markup("Environment differences: none recorded."))
    parts.append(fitted(paired_table(comparison)))
    flips = [pair.name for pair in comparison.variants if pair.verdict_changed]
    notes = [
        f"{FLIP_MARK}: significantly faster than the baseline in one run and slower in the "
        "other. run 2 / run 1 is the ratio of the two medians, unpaired (the runs were not "
        "interleaved), so it has no interval.",
        LEGEND,
    ]
    if flips:
        notes.insert(0, f"The verdict flips between the runs for: {', '.join(flips)}.")
    parts.append(_markup("\n".join(notes), style="dim"))
    return parts


def print_renderables(parts: Sequence[RenderableType], console: Console | None = None) -> None:
    """Print `parts`; a bare table as a table where it fits, row by row where not."""
    fitting = (fitted(part) if isinstance(part, Table) else part for part in parts)
    (console or Console()).print(Group(*fitting))
