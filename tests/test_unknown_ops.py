"""Ops without a counting rule are loud: `run`, `compare`, the report and the exports name
each op, how often and where it ran, and say that it counts as zero."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from report_golden import fixture_results, modified_results, render_text
from test_devices_runs import no_timing  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from ablate.cli import app
from ablate.counting.handles import HANDLES
from ablate.report.compare import compare_variants
from ablate.report.compare_console import (
    comparison_renderables,
    run_renderables,
    unknown_op_lines,
)
from ablate.report.markdown import render_markdown
from ablate.report.write import comparison_json
from ablate.runs.schema import UnknownOp, load_results

MODULES = [f"blocks.{index}.block.2.act" for index in range(5)]


def _unknown(document: dict[str, Any]) -> None:
    variants = document["variants"]
    for variant in variants[1:3]:
        variant["unknown_ops"] = {"aten.gelu.default": {"calls": 5, "modules": MODULES}}
    variants[3]["unknown_ops"] = {"aten.erf.default": 2}  # as files that kept calls only


def test_compare_lists_each_unknown_op_with_where_it_ran() -> None:
    results = modified_results("hswish_eager", _unknown)
    assert results.variants[3].unknown_ops == {"aten.erf.default": UnknownOp(calls=2, modules=[])}
    assert unknown_op_lines(compare_variants(results)) == [
        "- v3_relu, v3_hswish_at_16: aten.gelu.default x5 at blocks.0.block.2.act, "
        "blocks.1.block.2.act, blocks.2.block.2.act and 2 more modules",
        "- mobilenet_v2: aten.erf.default x2 (modules not recorded)",
    ]
    text = render_text(comparison_renderables(results))
    assert "Unknown ops (ops with no counting rule, counted as zero in every total):" in text
    assert "aten.gelu.default x5 at blocks.0.block.2.act" in text
    # right below the counts they falsify
    assert text.index("Unknown ops") < text.index("Latency (median")


def test_the_report_and_the_json_export_list_them_too() -> None:
    results = modified_results("hswish_eager", _unknown)
    markdown = render_markdown(results, plots={})
    section = markdown.split("Unknown ops (ops with no counting rule", 1)[1]
    assert "- v3_relu, v3_hswish_at_16: aten.gelu.default x5" in section
    assert section.index("mobilenet_v2: aten.erf.default x2") < section.index("## ")
    document = json.loads(comparison_json(results))
    assert document["unknown_ops"]["v3_relu"] == {
        "aten.gelu.default": {"calls": 5, "modules": MODULES}
    }
    assert set(document["unknown_ops"]) == {"v3_relu", "v3_hswish_at_16", "mobilenet_v2"}


def test_a_run_without_unknown_ops_renders_no_trace_of_them() -> None:
    results = fixture_results("hswish_eager")
    comparison = compare_variants(results)
    assert unknown_op_lines(comparison) == []
    assert len(run_renderables(comparison)) == 1  # the latency table alone
    assert "Unknown ops" not in render_markdown(results, plots={})
    assert json.loads(comparison_json(results))["unknown_ops"] == {}


SPEC = """\
name: unknown
base: mobilenet_v3_small
input: {resolution: 64}
baseline: published
variants:
  published: {}
  relu: {activation: relu}
"""


def test_run_compare_and_report_say_which_ops_went_uncounted(
    no_timing: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Take h-swish's rule away: V3-Small's h-swish layers now run an op nothing counts.
    for operator in (torch.ops.aten.hardswish, torch.ops.aten.hardswish_):
        monkeypatch.delitem(HANDLES.handles, operator)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    run = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "pixel1"]
    )
    assert run.exit_code == 0, run.output
    directory = Path(run.stdout.strip().splitlines()[-1])
    results = load_results(directory)
    published, relu = results.variants
    assert set(published.unknown_ops) == {"aten.hardswish_.default"}
    unknown = published.unknown_ops["aten.hardswish_.default"]
    assert unknown.modules[0] == "stem.act" and len(unknown.modules) == unknown.calls
    assert relu.unknown_ops == {}  # every op of the ReLU variant has its rule
    line = f"- published: aten.hardswish_.default x{unknown.calls} at stem.act"
    assert line in run.stdout

    compared = CliRunner().invoke(app, ["compare", str(directory)])
    assert compared.exit_code == 0, compared.output
    assert line in compared.stdout
    report = CliRunner().invoke(app, ["report", str(directory), "--markdown"])
    assert report.exit_code == 0, report.output
    assert line in (directory / "report.md").read_text(encoding="utf-8")
