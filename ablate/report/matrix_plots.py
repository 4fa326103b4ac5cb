"""The matrix report's heatmap: each factor's Shapley value on each device, in % of the `from`
model's time, as the Shapley table shows it.

A diverging colormap centred on 0 (red costs time, blue saves it), every cell annotated with
its value, a cell whose sign differs from the majority outlined, a cell resting on an
extrapolated prediction hatched. Every device is a column: one without results is grey and
says why, so a failed device is never missing from the picture. matplotlib is imported
inside the functions, as `plots` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ablate.report.escaping import escaped, plot_text
from ablate.report.matrix_model import MatrixReport
from ablate.report.plots import write_png_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MISSING = "#e9ecef"
_OUTLINE = "#111111"


def draw_shapley_heatmap(report: MatrixReport) -> Figure | None:
    """The heatmap of `report` (escaped for matplotlib by the caller); None without factors."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not report.factors or not report.attributed:
        return None
    devices, factors = report.devices, report.factors
    values = np.full((len(factors), len(devices)), np.nan)
    for column, device in enumerate(devices):
        for row, factor in enumerate(factors):
            share = device.shares.get(factor)
            if share is not None:
                values[row, column] = share.percent
    largest = float(np.nanmax(np.abs(values))) if not np.all(np.isnan(values)) else 0.0
    limit = largest if largest > 0 else 1.0
    figure = Figure(
        figsize=(max(5.0, 1.5 * len(devices) + 2.5), max(2.5, 0.6 * len(factors) + 1.8)),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = colormaps["RdBu_r"].with_extremes(bad=_MISSING)
    # Symmetric limits put 0 at the middle of the colormap: white is no change.
    image = axes.imshow(
        np.ma.masked_invalid(values), cmap=colours, vmin=-limit, vmax=limit, aspect="auto"
    )
    for column, device in enumerate(devices):
        for row, factor in enumerate(factors):
            share = device.shares.get(factor)
            if share is None:
                text = device.status if not device.has_results else "n/a"
                axes.text(column, row, text, ha="center", va="center", fontsize=8, color="#495057")
                continue
            low, high = share.interval
            strong = abs(share.percent) > 0.6 * limit
            axes.text(
                column,
                row,
                f"{share.percent:+.1f}\n[{low:+.1f}, {high:+.1f}]",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if strong else "black",
            )
            if share.marked or share.extrapolated:
                axes.add_patch(
                    Rectangle(
                        (column - 0.5, row - 0.5),
                        1,
                        1,
                        fill=False,
                        edgecolor=_OUTLINE if share.marked else "#6c757d",
                        linewidth=2.5 if share.marked else 0.0,
                        hatch="//" if share.extrapolated else None,
                    )
                )
    axes.set_xticks(range(len(devices)), [device.name for device in devices], rotation=30)
    axes.set_yticks(range(len(factors)), list(factors))
    from_name = report.from_name or "from"
    figure.colorbar(image, ax=axes, label=f"Shapley value, % of {from_name}'s time")
    title = f"{report.name}: where {report.to_name or 'to'} gains or loses, device by device"
    axes.set_title(title, fontsize=10)
    shares = [share for device in devices for share in device.shares.values()]
    legend = []
    if any(share.marked for share in shares):
        legend.append("outlined: its sign differs from the majority")
    if any(share.extrapolated for share in shares):
        legend.append("hatched: a prediction that extrapolates")
    if legend:
        axes.set_xlabel("; ".join(legend), fontsize=8)
    return figure


def write_shapley_heatmap(report: MatrixReport, path: Path) -> Path | None:
    """Draw the heatmap into `path` (a PNG); None where there is nothing to draw."""
    figure = draw_shapley_heatmap(escaped(report, plot_text))
    if figure is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png_atomic(figure, path)
