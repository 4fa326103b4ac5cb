"""The metric table drives the counting summaries and every rendering; a metric that a results
file predates reads as missing: "n/a" in its cells, its column left out where no row has it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from report_golden import modified_results, render_text
from torch import nn

from ablate.counting import count_model
from ablate.metrics import COMPARED, COUNTED, PER_LAYER
from ablate.report.compare import compare_variants
from ablate.report.compare_console import blocks_table, comparison_renderables, counts_table
from ablate.report.console import kinds_table, layers_table
from ablate.report.markdown import render_markdown
from ablate.report.write import comparison_csv, comparison_json
from ablate.runs.schema import Results
from ablate.services.inspect import rows_counts


def _strip(document: dict[str, Any], key: str, *, blocks: bool = False) -> None:
    """`key` gone from every variant (and block), as a file written before it existed."""
    for variant in document["variants"]:
        variant.pop(key, None)
        if blocks:
            for block in variant["blocks"]:
                block.pop(key, None)


def _without(key: str, *, blocks: bool = False, fixture: str = "hswish_eager") -> Results:
    return modified_results(fixture, lambda document: _strip(document, key, blocks=blocks))


def _headers(text: str, title: str) -> str:
    """The line of column headings of the Markdown table that follows `title`."""
    after = text.split(title, 1)[1]
    return next(line for line in after.splitlines() if line.startswith("| "))


def test_a_metric_the_file_predates_reads_as_missing_and_its_column_is_left_out() -> None:
    results = _without("activation_peak_bytes")
    assert all(variant.count("activation_peak_bytes") is None for variant in results.variants)
    assert results.variants[0].count("macs") == results.variants[0].macs > 0
    comparison = compare_variants(results)
    assert comparison.rows[1].counts["activation_peak_bytes"].missing

    console = render_text([counts_table(comparison)])
    assert "activation peak" not in console and "bytes fused" in console
    markdown = render_markdown(results, plots={})
    assert "activation peak" not in _headers(markdown, "## Results")
    assert "| bytes fused |" in _headers(markdown, "## Results")

    # The exports keep every column of the table: empty in CSV, null in JSON.
    rows = list(csv.DictReader(io.StringIO(comparison_csv(results))))
    assert [row["activation_peak_bytes"] for row in rows] == ["", "", "", ""]
    assert [row["activation_peak_delta_pct"] for row in rows] == ["", "", "", ""]
    document = json.loads(comparison_json(results))
    assert {row["activation_peak_bytes"] for row in document["rows"]} == {None}
    assert "activation_peak_bytes" in document["conventions"]


def test_a_metric_missing_from_one_variant_is_n_a_in_its_cells() -> None:
    def strip_one(document: dict[str, Any]) -> None:
        del document["variants"][2]["flops"]

    results = modified_results("hswish_eager", strip_one)
    comparison = compare_variants(results)
    row = comparison.row("v3_hswish_at_16")
    assert row.counts["flops"].percent is None and row.counts["flops"].delta is None
    assert row.counts["flops"].direction == 0
    table = render_text([counts_table(comparison)])
    line = next(line for line in table.splitlines() if "v3_hswish_at_16" in line)
    assert "n/a" in line
    table_text = render_markdown(results, plots={}).split("## Results", 1)[1]
    markdown_row = next(
        line for line in table_text.splitlines() if line.startswith("| v3_hswish_at_16 |")
    )
    assert "| n/a |" in markdown_row
    # every part of `compare` still renders: the summary's prose reads around the gap
    assert render_text(comparison_renderables(results))


def test_a_per_block_metric_the_file_predates_leaves_the_block_tables() -> None:
    results = _without("bytes_fused", blocks=True)
    comparison = compare_variants(results)
    row = comparison.row("v3_relu")
    assert row.blocks, "the fixture's variant differs block by block"
    assert row.blocks[0].count("bytes_fused").missing
    table = render_text([blocks_table(row, comparison)])
    assert "bytes fused Δ" not in table and "bytes unfused Δ" in table
    markdown = render_markdown(results, plots={})
    assert "bytes fused Δ" not in _headers(markdown, "### v3_relu vs v3_published")
    assert "MACs, M" in _headers(markdown, "### v3_relu vs v3_published")


def test_a_metric_the_attribution_predates_leaves_the_shapley_table() -> None:
    def strip_bytes_fused(document: dict[str, Any]) -> None:
        attribution = document["attribution"]
        for effect in [*attribution["shapley"], attribution["total"]]:
            del effect["metrics"]["bytes_fused"]

    with_it = render_markdown(modified_results("why_eager", lambda document: None), plots={})
    without = render_markdown(modified_results("why_eager", strip_bytes_fused), plots={})
    title = "| factor | latency Δ ms"
    assert "| bytes fused Δ |" in _headers(with_it, "## Attribution")
    headings = _headers(without, "## Attribution")
    assert headings.startswith(title)
    assert "bytes fused Δ" not in headings and "| bytes unfused Δ |" in headings


def test_the_counting_summaries_iterate_the_table() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    result = count_model(model, (1, 3, 8, 8))
    assert list(result.totals) == [metric.key for metric in COUNTED]
    conv = result.by_kind["conv_dense"]
    assert list(conv.totals) == [metric.key for metric in PER_LAYER]
    # 64 positions x 9 taps x 3 in x 8 out, as an attribute and as the table's total
    assert conv.macs == conv.totals["macs"] == result.macs == 64 * 9 * 3 * 8
    layer = result.layers[0]
    assert set(layer.shares) == {metric.key for metric in PER_LAYER}
    assert layer.share("macs") == 1.0  # the conv is layer "0", the only one with MACs
    headings = [str(column.header) for column in layers_table(result).columns]
    assert headings[1 : 1 + len(PER_LAYER)] == [f"{m.label} ({m.symbol})" for m in PER_LAYER]
    assert headings[-len(PER_LAYER) :] == [f"{m.label} %" for m in PER_LAYER]
    kinds = [str(column.header) for column in kinds_table(result).columns]
    assert kinds[3:] == [f"{m.label} ({m.symbol})" for m in PER_LAYER]


def test_inspect_rows_total_every_rule_and_add_up_to_the_model() -> None:
    from ablate.architecture.builder import build_module, layer_rows
    from ablate.variants.resolve import resolve_architecture

    architecture = resolve_architecture("mobilenet_v3_small", {"resolution": 64})
    module = build_module(architecture)
    counts = count_model(module, (1, 3, 64, 64))
    rows = rows_counts(layer_rows(architecture, module), counts)
    for metric in COUNTED:
        if metric.key in rows[0].totals:
            assert sum(row.totals[metric.key] for row in rows) == counts.totals[metric.key]
    data = rows[0].to_json()
    assert [key for key in data if key in {m.key for m in COMPARED}] == [
        m.key for m in PER_LAYER
    ]
    assert {f"{m.key}_share" for m in PER_LAYER} <= set(data)
