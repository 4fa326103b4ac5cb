"""The report's figures as PNG files: latency vs MACs, latency changes, block time shares, and
the attribution waterfall.

Each `draw_*` is a pure function of the results returning a matplotlib `Figure` on the Agg
canvas (no pyplot, no global state); `write_report_plots` saves them atomically beside the
report and returns the file names it wrote, for the Markdown renderer to link.
matplotlib is imported inside the functions: the CLI stays quick when no figure is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.analysis.record import Attribution
from ablate.errors import AblateError
from ablate.files import atomic_path, write_bytes_atomic
from ablate.report.changes import merged_order
from ablate.report.compare import Comparison, compare_variants
from ablate.report.escaping import escaped, plot_text
from ablate.runs.schema import Results

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

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
    measured = [
        variant
        for variant in results.variants
        if variant.latency is not None and variant.macs is not None
    ]
    if not measured:
        return None
    figure = _figure(8.0, 5.5)
    axes = figure.subplots()
    labels = []
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
        name = variant.name + (" (baseline)" if is_baseline else "")
        labels.append((name, (variant.macs / 1e6, latency.median_ms)))
    axes.set_xlabel(MACS_AXIS_LABEL)
    axes.set_ylabel(f"{LATENCY_AXIS_LABEL}, 95% interval")
    axes.set_title(f"{results.experiment}: latency vs MACs")
    axes.grid(alpha=0.3)
    place_labels(figure, axes, labels)
    return figure


# Where a point's label may go, in points from the point, nearest first: the four diagonals,
# then above, below and to the sides, then the same farther out (with a line to the point).
_LABEL_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0))
_LABEL_DISTANCES = (5.0, 14.0, 24.0, 36.0)
_MARKER_POINTS = 4.0  # half the side of the box a point's marker takes


def place_labels(
    figure: Figure, axes: Axes, labels: Sequence[tuple[str, tuple[float, float]]]
) -> None:
    """Each label beside its point, at the nearest offset where its box overlaps no label
    placed before it, no marker and nothing outside the axes; where every offset overlaps,
    the one that overlaps least. The labels are left out of the layout, which is fixed first,
    so that the boxes measured here are the boxes drawn."""
    from matplotlib.transforms import Bbox

    figure.canvas.draw()  # the constrained layout settles the axes before anything is measured
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = axes.get_window_extent(renderer)
    pixels = figure.dpi / 72  # per point
    markers = []
    for _, xy in labels:
        x, y = axes.transData.transform(xy)
        size = _MARKER_POINTS * pixels
        markers.append(Bbox.from_extents(x - size, y - size, x + size, y + size))
    placed: list[Bbox] = []
    for index, (text, xy) in enumerate(labels):
        others = placed + [box for other, box in enumerate(markers) if other != index]
        best: tuple[float, Annotation, Bbox] | None = None
        for distance in _LABEL_DISTANCES:
            for dx, dy in _LABEL_DIRECTIONS:
                annotation = axes.annotate(
                    text,
                    xy,
                    xytext=(dx * distance, dy * distance),
                    textcoords="offset points",
                    ha={1: "left", 0: "center", -1: "right"}[dx],
                    va={1: "bottom", 0: "center", -1: "top"}[dy],
                    fontsize=7,
                    arrowprops=None
                    if distance == _LABEL_DISTANCES[0]
                    else {"arrowstyle": "-", "color": "0.6", "linewidth": 0.5},
                )
                annotation.set_in_layout(False)
                box = annotation.get_window_extent(renderer)
                cost = sum(_overlap(box, other) for other in others)
                cost += box.width * box.height - _overlap(box, frame)  # outside the axes
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, annotation, box)
                else:
                    annotation.remove()
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        placed.append(best[2])


def _overlap(first: Bbox, second: Bbox) -> float:
    """The area two display boxes share."""
    width = min(first.x1, second.x1) - max(first.x0, second.x0)
    height = min(first.y1, second.y1) - max(first.y0, second.y0)
    return max(width, 0.0) * max(height, 0.0)


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


def waterfall_ready(attribution: Attribution, macs_metric: str = "macs") -> bool:
    """Whether every bar of the waterfall has its latency and MACs value."""
    effects = (attribution.from_values, attribution.to_values, *attribution.shapley)
    return all(e.latency is not None and macs_metric in e.metrics for e in effects)


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
    # Labels are text from the results: shown as written, never typeset as mathtext.
    shown = escaped(results, plot_text)
    shown_baseline = None if baseline is None else plot_text(baseline)
    figures = {
        LATENCY_VS_MACS: lambda: draw_latency_vs_macs(shown),
        LATENCY_DELTA: lambda: draw_latency_deltas(compare_variants(shown, shown_baseline)),
        BLOCK_TIME_SHARES: lambda: draw_block_time_shares(shown),
    }
    for key in keys:
        name = f"{prefix}{key}.png"
        if key == WATERFALL:
            if results.attribution is not None and waterfall_ready(results.attribution):
                write_attribution_waterfall(results.attribution, directory / name)
                written[key] = name
            continue
        figure = figures[key]()
        if figure is not None:
            write_png_atomic(figure, directory / name)
            written[key] = name
    return written


# Waterfall charts: from the `from` model's value to the `to` model's, one bar per factor.
#
# Two panels side by side share the factor order - latency (with bootstrap intervals) and
# MACs - so the reader sees where the MAC count and the measured time disagree.
# matplotlib is imported inside the functions: the CLI stays quick when no chart is drawn.

LATENCY_AXIS_LABEL = "latency, ms (median)"
MACS_AXIS_LABEL = "MACs (conv+linear), M"

_DECREASE_COLOUR = "#2a9d8f"
_INCREASE_COLOUR = "#e76f51"
_ENDPOINT_COLOUR = "#6c757d"
_MACS_PER_MILLION = 1e6


@dataclass(frozen=True)
class _Panel:
    start: float
    end: float
    contributions: tuple[float, ...]
    intervals: tuple[tuple[float, float], ...] | None
    axis_label: str
    title: str
    unit: str


def write_waterfall(
    output_path: str | Path,
    *,
    factors: Sequence[str],
    latency_contributions_ms: Sequence[float],
    latency_intervals_ms: Sequence[tuple[float, float]] | None,
    latency_start_ms: float,
    latency_end_ms: float,
    mac_contributions: Sequence[float],
    macs_start: float,
    macs_end: float,
    from_label: str = "from",
    to_label: str = "to",
    title: str | None = None,
) -> Path:
    """Draw the two-panel waterfall as a PNG at `output_path` and return the path.

    Contributions are per factor, in `factors` order, and should sum to end - start
    (Shapley values do). Latency intervals are (low, high) bounds of each contribution in
    ms; MACs are raw counts, drawn in millions.
    """
    names = tuple(factors)
    latency = _Panel(
        start=_finite(latency_start_ms, "latency start"),
        end=_finite(latency_end_ms, "latency end"),
        contributions=_values(latency_contributions_ms, len(names), "latency contributions"),
        intervals=_intervals(latency_intervals_ms, len(names)),
        axis_label=LATENCY_AXIS_LABEL,
        title="Latency",
        unit="ms",
    )
    macs = _Panel(
        start=_finite(macs_start, "MACs start") / _MACS_PER_MILLION,
        end=_finite(macs_end, "MACs end") / _MACS_PER_MILLION,
        contributions=tuple(
            value / _MACS_PER_MILLION
            for value in _values(mac_contributions, len(names), "MAC contributions")
        ),
        intervals=None,
        axis_label=MACS_AXIS_LABEL,
        title="MACs",
        unit="M",
    )

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas, not pyplot: no global state, no display backend.
    figure = Figure(figsize=(max(10.0, 1.6 * (len(names) + 2)), 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    latency_axes, macs_axes = figure.subplots(1, 2)
    tick_labels = (from_label, *names, to_label)
    _draw_panel(latency_axes, latency, tick_labels)
    _draw_panel(macs_axes, macs, tick_labels)
    figure.suptitle(title or f"{from_label} → {to_label}: where the change comes from")
    path = Path(output_path)
    figure.savefig(path, format="png", dpi=110)
    return path


def write_attribution_waterfall(
    attribution: Attribution, output_path: str | Path, *, macs_metric: str = "macs"
) -> Path:
    """The waterfall of an attribution's Shapley values; it needs latency and `macs_metric`."""
    attribution = escaped(attribution, plot_text)  # its names label the bars
    start, end = attribution.from_values.latency, attribution.to_values.latency
    if start is None or end is None:
        raise AblateError("a waterfall needs latency measurements in the attribution")
    if macs_metric not in attribution.total.metrics:
        raise AblateError(
            f"a waterfall needs the metric {macs_metric!r}; the attribution has "
            f"{', '.join(attribution.total.metrics) or 'none'}"
        )
    shapley = attribution.shapley
    latencies = [effect.latency for effect in shapley if effect.latency is not None]
    path = Path(output_path)
    with atomic_path(path) as temporary:
        write_waterfall(
            temporary,
            factors=attribution.factors,
            latency_contributions_ms=[latency.ms for latency in latencies],
            latency_intervals_ms=[latency.interval_ms for latency in latencies],
            latency_start_ms=start.ms,
            latency_end_ms=end.ms,
            mac_contributions=[float(effect.metrics[macs_metric]) for effect in shapley],
            macs_start=float(attribution.from_values.metrics[macs_metric]),
            macs_end=float(attribution.to_values.metrics[macs_metric]),
            from_label=attribution.from_name,
            to_label=attribution.to_name,
        )
    return path


def _draw_panel(axes: Axes, panel: _Panel, tick_labels: Sequence[str]) -> None:
    count = len(panel.contributions)
    levels = [panel.start]
    for contribution in panel.contributions:
        levels.append(levels[-1] + contribution)

    axes.bar(0, panel.start, color=_ENDPOINT_COLOUR, width=0.6)
    axes.bar(count + 1, panel.end, color=_ENDPOINT_COLOUR, width=0.6)
    colours = [
        _DECREASE_COLOUR if contribution < 0 else _INCREASE_COLOUR
        for contribution in panel.contributions
    ]
    positions = list(range(1, count + 1))
    axes.bar(positions, panel.contributions, bottom=levels[:-1], color=colours, width=0.6)
    if panel.intervals is not None:
        # The interval is of the contribution, so it sits around the bar's far end.
        lower = [
            max(0.0, c - low)
            for c, (low, _) in zip(panel.contributions, panel.intervals, strict=True)
        ]
        upper = [
            max(0.0, high - c)
            for c, (_, high) in zip(panel.contributions, panel.intervals, strict=True)
        ]
        axes.errorbar(
            positions, levels[1:], yerr=[lower, upper], fmt="none", ecolor="black", capsize=4
        )
    # Dashed steps joining each bar's end to the next bar's start.
    for position, level in enumerate(levels):
        axes.plot([position + 0.3, position + 0.7], [level, level], color="black", lw=0.6, ls="--")

    for position, contribution in zip(positions, panel.contributions, strict=True):
        top = max(levels[position - 1], levels[position])
        axes.annotate(
            f"{contribution:+.3g}",
            (position, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    for position, value in ((0, panel.start), (count + 1, panel.end)):
        axes.annotate(
            f"{value:.4g} {panel.unit}",
            (position, value),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )

    axes.set_xticks(range(count + 2), tick_labels, rotation=30, ha="right")
    axes.set_ylabel(panel.axis_label)
    axes.set_title(panel.title)
    low = min(0.0, *levels, panel.end)
    high = max(0.0, *levels, panel.end)
    # Headroom so the value labels above the tallest bar stay inside the axes.
    axes.set_ylim(low, high + 0.08 * (high - low or 1.0))
    axes.grid(axis="y", alpha=0.3)


def _finite(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise AblateError(f"waterfall: {what} must be a finite number, got {value!r}")
    return number


def _values(values: Sequence[float], count: int, what: str) -> tuple[float, ...]:
    numbers = tuple(_finite(value, what) for value in values)
    if len(numbers) != count:
        raise AblateError(f"waterfall: {what} has {len(numbers)} values for {count} factors")
    return numbers


def _intervals(
    intervals: Sequence[tuple[float, float]] | None, count: int
) -> tuple[tuple[float, float], ...] | None:
    if intervals is None:
        return None
    pairs = tuple(
        (_finite(low, "latency interval"), _finite(high, "latency interval"))
        for low, high in intervals
    )
    if len(pairs) != count:
        raise AblateError(
            f"waterfall: latency intervals has {len(pairs)} pairs for {count} factors"
        )
    if any(low > high for low, high in pairs):
        raise AblateError("waterfall: each latency interval must be (low, high) with low <= high")
    return pairs
