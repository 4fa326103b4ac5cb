"""The Markdown report on the stored fixture runs, against golden files.

Regenerate after an intended change: ABLATE_REGENERATE_GOLDEN=1 pytest tests/test_report_markdown.py
"""

from __future__ import annotations

from typing import Any

from report_golden import assert_golden, counts_only, fixture_results, modified_results

from ablate.report.markdown import render_markdown
from ablate.report.plots import BLOCK_TIME_SHARES, LATENCY_DELTA, LATENCY_VS_MACS, WATERFALL

PLOTS = {
    LATENCY_VS_MACS: "report-latency_vs_macs.png",
    LATENCY_DELTA: "report-latency_delta.png",
    BLOCK_TIME_SHARES: "report-block_time_shares.png",
    WATERFALL: "report-waterfall.png",
}


def _words(text: str) -> str:
    return " ".join(text.split())


def test_attribution_report_with_a_second_backend() -> None:
    text = render_markdown(
        fixture_results("why_eager"), plots=PLOTS, versus=fixture_results("why_compile")
    )
    assert_golden("report_why_eager_vs_compile.md", text)
    for name in PLOTS.values():
        assert f"]({name})" in text
    assert "## Attribution: mobilenet_v2 -> v2+v3_choices" in text
    assert "-30M MAdds; -7 ms, 11% of the running time (64 ms)" in text
    assert "-10M MAdds; -2 ms" in text
    assert "(51.4 vs 50.5 ms)" in text
    assert "### One factor at a time" in text and "### Cumulative path" in text
    assert "## Against a second run" in text
    words = _words(text)
    assert "Speeding it up (Shapley share, interval below zero): stem_channels" in words
    assert "On the compile backend" in words


def test_quick_run_report_marks_opposite_directions() -> None:
    text = render_markdown(fixture_results("hswish_compile"), plots={LATENCY_VS_MACS: "fig.png"})
    assert_golden("report_hswish_compile.md", text)
    assert "> **Quick run.**" in text
    assert "◆ opposite" in text
    assert "## Attribution" not in text  # no attribution in this run
    assert "](fig.png)" in text and "latency_delta" not in text


def test_the_renderer_is_a_pure_function() -> None:
    results = fixture_results("why_eager")
    assert render_markdown(results, plots=PLOTS) == render_markdown(results, plots=PLOTS)


def test_rebased_report_says_its_latency_is_approximate() -> None:
    text = render_markdown(fixture_results("hswish_eager"), plots={}, baseline="mobilenet_v2")
    assert "re-based from the run's measured baseline v3_published" in text
    assert "≈-19.0% [-19.5, -18.5]% | ≈yes" in text
    assert "## Figures" not in text


def test_counts_only_report() -> None:
    text = render_markdown(modified_results("why_eager", counts_only), plots={})
    assert "> **Status: counted.**" in text
    assert "not measured" in text and "| measurement | none yet: counts only |" in text
    assert "## Attribution" not in text


def test_the_published_pair_gets_the_papers_total() -> None:
    def published(document: dict[str, Any]) -> None:
        document["attribution"]["to"] = "mobilenet_v3_large"

    text = render_markdown(modified_results("why_eager", published), plots={})
    assert "300M -> 219M MAdds; 64 -> 51 ms (V3 Table 3, Pixel-1)" in text


def test_markdown_table_cells_escape_pipes() -> None:
    def piped(document: dict[str, Any]) -> None:
        document["variants"][1]["factors"] = {"note": "a|b"}

    text = render_markdown(modified_results("hswish_eager", piped), plots={})
    assert "note=a\\|b" in text


def test_the_target_row_says_what_the_target_judged() -> None:
    def judged_attribution(document: dict[str, Any]) -> None:
        document["measurement"]["stop_on"] = "attribution"

    ratios = render_markdown(fixture_results("why_eager"), plots={})
    attribution = render_markdown(modified_results("why_eager", judged_attribution), plots={})
    assert "| target interval | +/-1.0% of the ratio |" in ratios
    assert (
        "| target interval | +/-1.0 points of the `from` model's latency, for every latency "
        "Shapley value and the total |"
    ) in attribution
