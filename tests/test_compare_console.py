"""`ablate compare` rendered to text at a fixed width, against golden files.

Regenerate after an intended change: ABLATE_REGENERATE_GOLDEN=1 pytest tests/test_compare_console.py
"""

from __future__ import annotations

import io

import pytest
from report_golden import (
    FIXTURE_RUNS,
    assert_golden,
    counts_only,
    fixture_results,
    modified_results,
    render_text,
)
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ablate.report.compare import compare_variants
from ablate.report.compare_console import (
    APPROXIMATE_MARK,
    FLIP_MARK,
    MACS_FLAT_MARK,
    OPPOSITE_MARK,
    comparison_renderables,
    latency_table,
    print_renderables,
    run_comparison_renderables,
)
from ablate.report.layout import EMPTY_CELLS, Fitted


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


# -- in a log or a pipe: 80 columns, no terminal ---------------------------------------------

LOG_WIDTH = 80


def render_log(parts: list[RenderableType]) -> str:
    console = Console(
        width=LOG_WIDTH, record=True, color_system=None, file=io.StringIO(), force_terminal=False
    )
    for part in parts:
        console.print(part)
    return console.export_text()


def _tables(parts: list[RenderableType]) -> list[Table]:
    return [part.table for part in parts if isinstance(part, Fitted)]


def _filled(cell: object) -> bool:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text.strip() not in EMPTY_CELLS


@pytest.mark.parametrize("name", FIXTURE_RUNS)
def test_a_log_keeps_every_variant_name_whole_and_no_empty_column(name: str) -> None:
    results = fixture_results(name)
    parts = comparison_renderables(results)
    text = render_log(parts)
    lines = text.splitlines()
    assert "…" not in text and max(map(len, lines)) <= LOG_WIDTH
    for variant in results.variants:
        # Its own line, whole, in the counts and in the latency rows (not `+stem_…`).
        assert sum(line.split(" (")[0] == variant.name for line in lines) >= 2, variant.name
    tables = _tables(parts)
    assert len(tables) >= 2  # counts, latency and the differing blocks: none left unfitted
    for table in tables:
        for column in table.columns[1:]:
            assert any(map(_filled, column.cells)), (table.title, column.header)
    # Three lines per 80 columns at most for a variant of why_v3_faster, not one per cell.
    if name.startswith("why"):
        latency = text[text.index("Latency (median") : text.index(" vs to:{}: ")]
        assert len(latency.splitlines()) <= 1 + 4 * len(results.variants)


def test_columns_empty_for_the_whole_run_are_left_out() -> None:
    compiled = comparison_renderables(fixture_results("hswish_compile"))
    headers = {
        str(column.header) for table in _tables(compiled) for column in table.columns
    }
    # No noise flags in that run, no block estimate (the profile is eager, the latency is not),
    # no block where MACs and time move apart: three columns of nothing.
    assert not headers & {"noise flags", "est. Δ ms", "MACs vs time"}
    assert {"MACs vs latency", "roofline", "time share"} <= headers
    eager = _tables(comparison_renderables(fixture_results("hswish_eager")))
    assert "noise flags" in {str(column.header) for column in eager[1].columns}


def test_a_table_that_fits_stays_a_table() -> None:
    parts = comparison_renderables(fixture_results("hswish_eager"))
    wide = render_text(parts)  # 160 columns
    assert "┃ variant                 ┃   median ms [95% CI] ┃" in wide
    narrow = render_log(parts)
    assert "┃" not in narrow
    assert (
        "v3_hswish_at_16\n  median ms [95% CI]: 14.68 [14.22, 15.01]; Δ ms: +0.577\n"
        "  Δ % [95% CI]: +3.8% [-0.4, +7.3]%; sig.: no; MACs Δ: unchanged\n"
        "  noise flags: high_iqr, wide_interval\n"
    ) in narrow


def test_what_run_prints_in_a_log_reads_well() -> None:
    results = fixture_results("why_eager")
    console = Console(width=LOG_WIDTH, record=True, file=io.StringIO(), force_terminal=False)
    print_renderables([latency_table(compare_variants(results))], console)
    text = console.export_text()
    assert "…" not in text and "┃" not in text
    assert text.startswith("Latency (median [95% interval]) vs to:{}\nto:{} (baseline)\n")
    for variant in results.variants:
        assert f"\n{variant.name}\n" in text or f"\n{variant.name} (" in text


def test_two_runs_in_a_log() -> None:
    parts = run_comparison_renderables(
        fixture_results("hswish_eager"), fixture_results("hswish_compile")
    )
    text = render_log(parts)
    assert "…" not in text
    assert "\nmobilenet_v2\n  run 1 ms [95% CI]: 16.97 [16.78, 17.12]" in text
