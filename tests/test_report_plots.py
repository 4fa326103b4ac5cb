"""The report's figures: real PNGs written by matplotlib, checked by their header, not pixels."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from matplotlib.transforms import Bbox
from report_golden import FIXTURE_RUNS, counts_only, fixture_results, modified_results

from ablate.report.compare import compare_variants
from ablate.report.plots import (
    BLOCK_TIME_SHARES,
    LATENCY_DELTA,
    LATENCY_VS_MACS,
    WATERFALL,
    draw_block_time_shares,
    draw_latency_deltas,
    draw_latency_vs_macs,
    write_report_plots,
)
from ablate.runs.schema import Results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    assert b"Matplotlib" in data  # the Software text chunk
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_every_figure_of_an_attribution_run(tmp_path: Path) -> None:
    written = write_report_plots(fixture_results("why_eager"), tmp_path, prefix="report-")
    assert written == {
        LATENCY_VS_MACS: "report-latency_vs_macs.png",
        LATENCY_DELTA: "report-latency_delta.png",
        BLOCK_TIME_SHARES: "report-block_time_shares.png",
        WATERFALL: "report-waterfall.png",
    }
    for name in written.values():
        width, height = assert_png(tmp_path / name)
        assert width > 400 and height > 100
    # Atomic writes leave no temporary files behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(written.values())


def test_no_waterfall_without_attribution_and_rebased_deltas(tmp_path: Path) -> None:
    results = fixture_results("hswish_compile")
    written = write_report_plots(results, tmp_path, baseline="mobilenet_v2")
    assert WATERFALL not in written and LATENCY_DELTA in written
    assert_png(tmp_path / written[LATENCY_DELTA])


def test_counts_only_runs_draw_nothing(tmp_path: Path) -> None:
    results = modified_results("why_eager", counts_only)
    assert draw_latency_vs_macs(results) is None
    assert draw_latency_deltas(compare_variants(results)) is None
    assert draw_block_time_shares(results) is None
    assert write_report_plots(results, tmp_path / "new") == {}
    assert list((tmp_path / "new").iterdir()) == []


def test_figures_are_bare_agg_figures() -> None:
    figure = draw_latency_vs_macs(fixture_results("hswish_eager"))
    assert figure is not None
    assert type(figure.canvas).__name__ == "FigureCanvasAgg"
    (axes,) = figure.axes
    assert "MACs (conv+linear), M" in axes.get_xlabel()
    assert "95% interval" in axes.get_ylabel()


def _label_boxes(results: Results) -> list[tuple[str, Bbox]]:
    figure = draw_latency_vs_macs(results)
    assert figure is not None
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    (axes,) = figure.axes
    frame = axes.get_window_extent(renderer)
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in axes.texts]
    for name, box in boxes:  # inside the axes, where the drawing is
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, name
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, name
    return boxes


def _overlapping(boxes: list[tuple[str, Bbox]]) -> list[tuple[str, str]]:
    return [
        (first, second)
        for index, (first, one) in enumerate(boxes)
        for second, other in boxes[index + 1 :]
        if one.overlaps(other)
    ]


@pytest.mark.parametrize("name", FIXTURE_RUNS)
def test_scatter_labels_do_not_overlap(name: str) -> None:
    results = fixture_results(name)
    boxes = _label_boxes(results)
    assert sorted(label.removesuffix(" (baseline)") for label, _ in boxes) == sorted(
        variant.name for variant in results.variants
    )
    assert _overlapping(boxes) == []


def test_scatter_labels_of_crowded_points_do_not_overlap() -> None:
    def crowded(document: dict[str, Any]) -> None:
        # Eight points 0.004 ms apart on two MAC values: labels at one offset would stack.
        for index, variant in enumerate(document["variants"]):
            variant["macs"] = 300_000_000 + (index % 2) * 1_000_000
            median = 17.0 + 0.004 * index
            variant["latency"].update(median_ms=median, ci95_ms=[median - 0.1, median + 0.1])

    boxes = _label_boxes(modified_results("why_eager", crowded))
    assert len(boxes) == 8 and _overlapping(boxes) == []
