"""Waterfall charts: from the `from` model's value to the `to` model's, one bar per factor.

Two panels side by side share the factor order - latency (with bootstrap intervals) and
MACs - so the reader sees where the MAC count and the measured time disagree.
matplotlib is imported inside the functions: the CLI stays quick when no chart is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.errors import AblateError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ablate.analysis.record import Attribution

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
    if attribution.from_values.latency is None or attribution.to_values.latency is None:
        raise AblateError("a waterfall needs latency measurements in the attribution")
    if macs_metric not in attribution.total.metrics:
        raise AblateError(
            f"a waterfall needs the metric {macs_metric!r}; the attribution has "
            f"{', '.join(attribution.total.metrics) or 'none'}"
        )
    shapley = attribution.shapley
    latencies = [effect.latency for effect in shapley if effect.latency is not None]
    return write_waterfall(
        output_path,
        factors=attribution.factors,
        latency_contributions_ms=[latency.milliseconds for latency in latencies],
        latency_intervals_ms=[
            (latency.interval_milliseconds.low, latency.interval_milliseconds.high)
            for latency in latencies
        ],
        latency_start_ms=attribution.from_values.latency.milliseconds,
        latency_end_ms=attribution.to_values.latency.milliseconds,
        mac_contributions=[float(effect.metrics[macs_metric]) for effect in shapley],
        macs_start=float(attribution.from_values.metrics[macs_metric]),
        macs_end=float(attribution.to_values.metrics[macs_metric]),
        from_label=attribution.from_name,
        to_label=attribution.to_name,
    )


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
