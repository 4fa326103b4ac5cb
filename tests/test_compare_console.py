"""`ablate compare` rendered to text at a fixed width, against golden files.

Regenerate after an intended change: ABLATE_REGENERATE_GOLDEN=1 pytest tests/test_compare_console.py
"""

from __future__ import annotations

from report_golden import assert_golden, counts_only, fixture_results, modified_results, render_text

from ablate.report.compare_console import (
    APPROXIMATE_MARK,
    FLIP_MARK,
    MACS_FLAT_MARK,
    OPPOSITE_MARK,
    comparison_renderables,
    run_comparison_renderables,
)


def test_one_run_against_its_baseline() -> None:
    text = render_text(comparison_renderables(fixture_results("hswish_eager")))
    assert_golden("compare_hswish_eager.txt", text)
    assert MACS_FLAT_MARK in text and "high_iqr, wide_interval" in text
    assert "QUICK RUN" not in text and APPROXIMATE_MARK + "yes" not in text


def test_quick_run_rebased_on_another_variant() -> None:
    results = fixture_results("hswish_compile")
    text = render_text(comparison_renderables(results, "mobilenet_v2"))
    assert_golden("compare_hswish_compile_vs_v2.txt", text)
    assert "QUICK RUN" in text
    assert "Re-based: the run was measured against v3_published" in text
    assert f"{APPROXIMATE_MARK}yes" in text


def _words(text: str) -> str:
    return " ".join(text.split())


def test_opposite_directions_are_marked_and_explained() -> None:
    text = render_text(comparison_renderables(fixture_results("hswish_compile")))
    assert OPPOSITE_MARK in text
    text = _words(text)
    assert "mobilenet_v2 has +38.9% MACs but is faster" in text
    assert "34 fewer ops per forward pass (185 -> 151)" in text


def test_two_runs_side_by_side() -> None:
    text = render_text(
        run_comparison_renderables(
            fixture_results("hswish_eager"), fixture_results("hswish_compile")
        )
    )
    assert_golden("compare_two_runs_hswish.txt", text)
    environment = text.index("Environment differences")
    assert environment < text.index("Latency in both runs")
    assert FLIP_MARK in text
    assert "The verdict flips between the runs for: mobilenet_v2." in _words(text)


def test_counts_only_run_has_no_latency_table() -> None:
    text = render_text(comparison_renderables(modified_results("why_eager", counts_only)))
    assert "Counts per forward pass" in text
    assert "Latency (median" not in text
    assert "Status: counted" in text
    assert "No variant has been measured yet" in _words(text)
