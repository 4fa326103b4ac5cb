"""The report's figures: real PNGs written by matplotlib, checked by their header, not pixels."""

from __future__ import annotations

import struct
from pathlib import Path

from report_golden import counts_only, fixture_results, modified_results

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
