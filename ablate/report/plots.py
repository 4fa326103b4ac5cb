"""The report's figures as PNG files: latency vs MACs, latency changes, block time shares, and
the attribution waterfall.

Each `draw_*` is a pure function of the results returning a matplotlib `Figure` on the Agg
canvas (no pyplot, no global state); `write_report_plots` saves them atomically beside the
report and returns the file names it wrote, for the Markdown renderer to link.
matplotlib is imported inside the functions: the CLI stays quick when no figure is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.analysis.attribution_view import AttributionView, parse_attribution
from ablate.analysis.block_diff import merged_order
from ablate.analysis.compare import Comparison, compare_variants
from ablate.files import atomic_path, write_bytes_atomic
from ablate.report.waterfall import LATENCY_AXIS_LABEL, MACS_AXIS_LABEL, write_waterfall
from ablate.runs.schema import Results

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LATENCY_VS_MACS = "latency_vs_macs"
LATENCY_DELTA = "latency_delta"
BLOCK_TIME_SHARES = "block_time_shares"
WATERFALL = "waterfall"

_SLOWER = "#e76f51"
_FASTER = "#2a9d8f"
_UNCLEAR = "#adb5bd"
_BASELINE = "#264653"
_DPI = 110


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas, not pyplot: no global state, no display backend.
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def draw_latency_vs_macs(results: Results) -> Figure | None:
    """Median latency against MACs, one point per measured variant, 95% intervals as bars."""
    measured = [variant for variant in results.variants if variant.latency is not None]
    if not measured:
        return None
    figure = _figure(8.0, 5.5)
    axes = figure.subplots()
    for variant in measured:
        latency = variant.latency
        assert latency is not None
        low, high = latency.ci95_ms
        is_baseline = variant.name == results.baseline
        axes.errorbar(
            variant.macs / 1e6,
            latency.median_ms,
            yerr=[[latency.median_ms - low], [high - latency.median_ms]],
            fmt="s" if is_baseline else "o",
            color=_BASELINE if is_baseline else _SLOWER,
            capsize=4,
        )
        axes.annotate(
            variant.name + (" (baseline)" if is_baseline else ""),
            (variant.macs / 1e6, latency.median_ms),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=7,
        )
    axes.set_xlabel(MACS_AXIS_LABEL)
    axes.set_ylabel(f"{LATENCY_AXIS_LABEL}, 95% interval")
    axes.set_title(f"{results.experiment}: latency vs MACs")
    axes.grid(alpha=0.3)
    return figure


def _colour(direction: int) -> str:
    return {1: _SLOWER, -1: _FASTER, 0: _UNCLEAR}[direction]


def draw_latency_deltas(comparison: Comparison) -> Figure | None:
    """Each variant's latency change against the baseline in %, with its 95% interval."""
    rows = [
        row
        for row in comparison.rows
        if row.latency is not None and row.latency.ratio_ci95 is not None
    ]
    if not rows:
        return None
    figure = _figure(8.0, 1.2 + 0.45 * len(rows))
    axes = figure.subplots()
    positions = list(range(len(rows)))
    values, lower, upper, colours, hatches = [], [], [], [], []
    for row in rows:
        latency = row.latency
        assert latency is not None and latency.percent_ci95 is not None
        low, high = latency.percent_ci95
        values.append(latency.percent)
        lower.append(max(0.0, latency.percent - low))
        upper.append(max(0.0, high - latency.percent))
        colours.append(_colour(latency.direction))
        hatches.append("//" if latency.approximate else "")
    bars = axes.barh(positions, values, color=colours, height=0.6)
    for bar, hatch in zip(bars, hatches, strict=True):
        bar.set_hatch(hatch)
    axes.errorbar(values, positions, xerr=[lower, upper], fmt="none", ecolor="black", capsize=4)
    axes.axvline(0.0, color="black", lw=0.8)
    axes.set_yticks(positions, [row.name for row in rows], fontsize=8)
    axes.invert_yaxis()
    approximate = " (hatched: approximate, re-based)" if any(hatches) else ""
    axes.set_xlabel(
        f"latency change vs {comparison.baseline}, % (median of paired ratios, 95% interval)"
    )
    axes.set_title(f"Latency change per variant{approximate}; grey: interval includes 0")
    axes.grid(axis="x", alpha=0.3)
    return figure


def draw_block_time_shares(results: Results) -> Figure | None:
    """Stacked bars: each variant's profiled forward time split by block, in %."""
    profiled = [
        variant
        for variant in results.variants
        if any(block.time_share is not None for block in variant.blocks)
    ]
    if not profiled:
        return None
    order: list[str] = []
    for variant in profiled:
        order = merged_order(order, [block.name for block in variant.blocks])
    from matplotlib import colormaps

    palette = colormaps["viridis"].resampled(max(2, len(order)))
    figure = _figure(10.0, 1.6 + 0.5 * len(profiled))
    axes = figure.subplots()
    positions = list(range(len(profiled)))
    left = [0.0] * len(profiled)
    for index, name in enumerate(order):
        widths = []
        for variant in profiled:
            share = next((b.time_share for b in variant.blocks if b.name == name), None)
            widths.append(100.0 * (share or 0.0))
        axes.barh(positions, widths, left=left, color=palette(index), height=0.6, label=name)
        left = [start + width for start, width in zip(left, widths, strict=True)]
    axes.set_yticks(positions, [variant.name for variant in profiled], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("share of the profiled (eager) forward time, %")
    axes.set_xlim(0.0, max(100.0, *left))
    axes.set_title("Where the time goes, block by block")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, ncols=1)
    return figure


def write_png_atomic(figure: Figure, path: Path) -> Path:
    """Save `figure` as a PNG at `path`; a reader never sees half a file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def write_attribution_waterfall_png(view: AttributionView, path: Path) -> Path | None:
    """The Shapley waterfall (latency and MACs panels) of a results.json attribution."""
    start, end = view.from_values.latency, view.to_values.latency
    latencies = [effect.latency for effect in view.shapley]
    macs = [effect.metric("macs") for effect in view.shapley]
    start_macs, end_macs = view.from_values.metric("macs"), view.to_values.metric("macs")
    if start is None or end is None or start_macs is None or end_macs is None:
        return None
    if any(latency is None for latency in latencies) or any(value is None for value in macs):
        return None
    with atomic_path(path) as temporary:
        write_waterfall(
            temporary,
            factors=view.factors,
            latency_contributions_ms=[latency.ms for latency in latencies if latency],
            latency_intervals_ms=[latency.interval_ms for latency in latencies if latency],
            latency_start_ms=start.ms,
            latency_end_ms=end.ms,
            mac_contributions=[float(value or 0.0) for value in macs],
            macs_start=start_macs,
            macs_end=end_macs,
            from_label=view.from_name,
            to_label=view.to_name,
        )
    return path


def write_report_plots(
    results: Results,
    directory: Path,
    *,
    prefix: str = "",
    baseline: str | None = None,
    keys: Sequence[str] = (LATENCY_VS_MACS, LATENCY_DELTA, BLOCK_TIME_SHARES, WATERFALL),
) -> dict[str, str]:
    """Draw every figure the results support into `directory` as `{prefix}{key}.png`.

    Returns key -> file name (relative to `directory`) for the figures written; a figure the
    results cannot support (no latency, no profile, no attribution) is left out.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    figures = {
        LATENCY_VS_MACS: lambda: draw_latency_vs_macs(results),
        LATENCY_DELTA: lambda: draw_latency_deltas(compare_variants(results, baseline)),
        BLOCK_TIME_SHARES: lambda: draw_block_time_shares(results),
    }
    for key in keys:
        name = f"{prefix}{key}.png"
        if key == WATERFALL:
            if results.attribution is not None:
                view = parse_attribution(results.attribution)
                if write_attribution_waterfall_png(view, directory / name) is not None:
                    written[key] = name
            continue
        figure = figures[key]()
        if figure is not None:
            write_png_atomic(figure, directory / name)
            written[key] = name
    return written
