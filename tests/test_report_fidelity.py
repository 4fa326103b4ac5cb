"""Fidelity to published figures: the maths by hand, the report section, the results file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from report_golden import (
    counts_only,
    fixture_results,
    modified_results,
    predicted,
    render_text,
)
from typer.testing import CliRunner

from ablate.cli import app
from ablate.report.compare_console import comparison_renderables
from ablate.report.fidelity import (
    LatencyPoint,
    count_references,
    fidelity,
    latency_fidelity,
    spearman,
)
from ablate.report.markdown import render_markdown
from ablate.runs.schema import Results, load_results

# -- the maths ------------------------------------------------------------------------------


def test_spearman_by_hand() -> None:
    # Ranks (1, 3, 2) against (1, 2, 3): d = (0, 1, -1), rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5.
    assert spearman([10, 20, 15], [10, 30, 40]) == pytest.approx(0.5)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # A tie takes the average rank: (1.5, 1.5, 3) against (1, 2, 3); deviations from 2 are
    # (-0.5, -0.5, 1) and (-1, 0, 1): rho = 1.5 / sqrt(1.5 * 2) = 0.8660.
    assert spearman([10, 10, 20], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3.0))


def test_spearman_needs_three_points_and_a_ranking() -> None:
    assert spearman([1, 2], [2, 1]) is None
    assert spearman([5, 5, 5], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [7, 7, 7]) is None
    with pytest.raises(ValueError, match="3 values against 2"):
        spearman([1, 2, 3], [1, 2])


def test_fidelity_by_hand() -> None:
    points = [
        LatencyPoint("a", 10.0, 20.0, "s"),
        LatencyPoint("b", 20.0, 60.0, "s"),
        LatencyPoint("c", 15.0, 80.0, "s"),
    ]
    result = fidelity(points, "a")
    a, b, c = result.rows
    # Ratios to a: measured 1, 2, 1.5; reference 1, 3, 4.
    assert (a.measured_ratio, b.measured_ratio, c.measured_ratio) == (1.0, 2.0, 1.5)
    assert (a.reference_ratio, b.reference_ratio, c.reference_ratio) == (1.0, 3.0, 4.0)
    assert b.relative == pytest.approx(2 / 3) and c.relative == pytest.approx(0.375)
    # ln(2/3) = -0.405465, ln(3/8) = -0.980829; a's error is 0 and left out of the summary.
    assert a.log_error == 0.0
    assert b.log_error == pytest.approx(-0.405465, abs=1e-6)
    assert c.log_error == pytest.approx(-0.980829, abs=1e-6)
    assert [row.name for row in result.compared] == ["b", "c"]
    # Median of 0.405465 and 0.980829: their mean, ln(4) / 2 = ln 2.
    assert result.median_abs_log_error == pytest.approx(math.log(2))
    assert result.worst is c
    assert result.spearman == pytest.approx(0.5)


def test_fidelity_is_normalised_to_the_named_variant() -> None:
    points = [LatencyPoint("a", 10.0, 20.0, "s"), LatencyPoint("b", 20.0, 60.0, "s")]
    result = fidelity(points, "b")
    assert [row.measured_ratio for row in result.rows] == [0.5, 1.0]
    assert result.rows[0].reference_ratio == pytest.approx(1 / 3)
    # ln(0.5 / (1/3)) = ln 1.5; two points give no Spearman.
    assert result.median_abs_log_error == pytest.approx(math.log(1.5))
    assert result.spearman is None
    only = fidelity(points[:1], "a")
    assert only.worst is None and only.median_abs_log_error is None


def test_fidelity_refuses_what_it_cannot_normalise() -> None:
    with pytest.raises(ValueError, match="'z' is not among"):
        fidelity([LatencyPoint("a", 1.0, 1.0, "s")], "z")
    with pytest.raises(ValueError, match="a: latencies must be positive"):
        fidelity([LatencyPoint("a", 0.0, 1.0, "s")], "a")


# -- the report -----------------------------------------------------------------------------

# hswish_eager's medians (ms): v3_published 14.101, v3_relu 13.750, v3_hswish_at_16 14.678,
# mobilenet_v2 16.972. With V3 paper Table 5 / Table 3 latencies as references:
# relu 13.750 / 14.101 = 0.975 against 50.5 / 51.4 = 0.982: ln(0.992) = -0.008;
# h-swish@16 1.041 against 53.5 / 51.4 = 1.041: 0.000; V2 1.204 against 64 / 51.4 = 1.245:
# ln(0.967) = -0.034. Both orders are relu < published < h-swish@16 < V2: Spearman 1.
# |log error| 0.0001, 0.0076, 0.0339: median 0.008, worst 0.034 (mobilenet_v2).
REFERENCES: dict[str, dict[str, Any]] = {
    "v3_published": {"latency_ms": 51.4, "source": "V3 paper Table 5"},
    "v3_relu": {"latency_ms": 50.5, "source": "V3 paper Table 5"},
    "v3_hswish_at_16": {"latency_ms": 53.5, "source": "V3 paper Table 5"},
    "mobilenet_v2": {
        "latency_ms": 64,
        "params_m": 3.4,
        "madds_m": 300,
        "source": "V3 paper Table 3",
    },
}


def with_references(document: dict[str, Any], references: dict[str, dict[str, Any]]) -> None:
    for variant in document["variants"]:
        if variant["name"] in references:
            variant["reference"] = references[variant["name"]]


def referenced(
    references: dict[str, dict[str, Any]] = REFERENCES, *, counted: bool = False
) -> Results:
    def change(document: dict[str, Any]) -> None:
        if counted:
            counts_only(document)
        with_references(document, references)

    return modified_results("hswish_eager", change)


def test_markdown_shows_ratios_and_the_fidelity_summary() -> None:
    text = render_markdown(referenced(), plots={})
    section = text.split("## Against the published figures", 1)[1]
    assert (
        "| v3_relu | 13.750 | 50.5 | 0.975 | 0.982 | 0.992 | -0.008 | V3 paper Table 5 |"
    ) in section
    assert "| **v3_published** | 14.101 | 51.4 | 1.000 | 1.000 | 1.000 | +0.000 |" in section
    assert "| mobilenet_v2 | 16.972 | 64 | 1.204 | 1.245 | 0.967 | -0.034 |" in section
    assert (
        "Spearman rank correlation 1.00 over 4 variants; |log error| median 0.008, worst 0.034 "
        "(mobilenet_v2) over the 3 other variants."
    ) in section
    # Counts: 3,504,872 parameters against 3.4M = 1.031; 301.05M MAdds against 300M = 1.004.
    assert "| mobilenet_v2 | 3.505 | 3.40 | 1.031 | 301.1 | 300.0 | 1.004 | V3 paper Table 3 |" in (
        section
    )
    # The section sits between the results table and the per-block differences.
    assert (
        text.index("## Results")
        < text.index("## Against the published")
        < text.index("## Per-block differences")
    )


def predicted_referenced(flagged: str) -> Results:
    """The referenced run as predicted on pixel1, `flagged`'s prediction extrapolating."""

    def change(document: dict[str, Any]) -> None:
        predicted(document, flagged)
        with_references(document, REFERENCES)

    return modified_results("hswish_eager", change)


EXTRAPOLATED_NOTE = (
    "extrapolated: the terms on which the prediction leaves the rows the device profile was "
    "fitted on (how far, under the results table); such a row against its reference is no "
    "finding."
)


def test_a_prediction_that_extrapolates_is_marked_against_the_published_figures() -> None:
    text = render_markdown(predicted_referenced("v3_relu"), plots={})
    section = text.split("## Against the published figures", 1)[1].split("Counts against", 1)[0]
    assert (
        "| v3_relu | 13.750 | 50.5 | 0.975 | 0.982 | 0.992 | -0.008 | V3 paper Table 5 "
        "| dense_macs, pointwise_macs |"
    ) in section
    assert (
        "| **v3_published** | 14.101 | 51.4 | 1.000 | 1.000 | 1.000 | +0.000 | V3 paper "
        "Table 5 |  |" in section
    )
    assert "| -0.034 | V3 paper Table 3 |  |" in section
    assert f"\n{EXTRAPOLATED_NOTE}\n" in section
    assert "rests on" not in section


def test_an_extrapolated_anchor_marks_every_ratio() -> None:
    text = render_markdown(predicted_referenced("v3_published"), plots={})
    section = text.split("## Against the published figures", 1)[1].split("Counts against", 1)[0]
    assert "| +0.000 | V3 paper Table 5 | dense_macs, pointwise_macs |" in section
    assert (
        f"{EXTRAPOLATED_NOTE} Every ratio here rests on v3_published's prediction, which "
        "extrapolates."
    ) in section


def test_measured_and_unflagged_predictions_get_no_extrapolated_column() -> None:
    for results in (referenced(), predicted_referenced("none of them")):
        section = render_markdown(results, plots={}).split("## Against the published", 1)[1]
        assert "| source |\n" in section and "extrapolated" not in section


def test_without_references_there_is_no_section() -> None:
    text = render_markdown(fixture_results("hswish_eager"), plots={})
    assert "Against the published figures" not in text
    assert latency_fidelity(fixture_results("hswish_eager"), "v3_published") is None
    assert count_references(fixture_results("hswish_eager")) == ()


def test_a_baseline_without_reference_normalises_to_the_first_referenced_variant() -> None:
    references = {name: REFERENCES[name] for name in ("v3_relu", "v3_hswish_at_16")}
    text = render_markdown(referenced(references), plots={})
    # h-swish@16 / relu: 14.678 / 13.750 = 1.068 against 53.5 / 50.5 = 1.059: ln = +0.008.
    assert "| v3_hswish_at_16 | 14.678 | 53.5 | 1.068 | 1.059 | 1.008 | +0.008 |" in text
    assert "Spearman rank correlation n/a (fewer than 3 variants or constant latencies)" in text
    assert (
        "The baseline v3_published has no measured latency with a reference, so ratios are to "
        "v3_relu."
    ) in text


def test_a_counted_run_shows_counts_and_says_nothing_is_measured() -> None:
    results = referenced(counted=True)
    view = latency_fidelity(results, "v3_published")
    assert view is not None and view.fidelity is None
    assert view.unmeasured == ("v3_published", "v3_relu", "v3_hswish_at_16", "mobilenet_v2")
    text = render_markdown(results, plots={})
    assert "No variant with a latency reference has a measured latency yet." in text
    assert "| mobilenet_v2 | 3.505 | 3.40 | 1.031 |" in text


def test_console_comparison_carries_the_fidelity_sentence() -> None:
    text = " ".join(render_text(comparison_renderables(referenced())).split())
    assert "Spearman rank correlation 1.00 over 4 variants; |log error| median 0.008" in text
    plain = " ".join(render_text(comparison_renderables(fixture_results("hswish_eager"))).split())
    assert "Spearman" not in plain


# -- through a run: spec -> results.json -> report --------------------------------------------

SPEC = """\
name: referenced
base: mobilenet_v3_small
input: {resolution: 96}
baseline: published
variants:
  published: {reference: {latency_ms: 15.8, params_m: 2.5, source: "V3 paper Table 3"}}
  again: {kernel: mobilenet_v3_small, reference: {latency_ms: 16, source: "said twice"}}
  relu: {activation: relu}
"""


def test_references_travel_from_the_spec_into_results_and_report(tmp_path: Path) -> None:
    spec = tmp_path / "referenced.yaml"
    spec.write_text(SPEC)
    # A device profile predicts latencies without timing anything: fast and deterministic.
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "pixel1"]
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    results = load_results(directory)
    published, again, relu = results.variants
    assert published.reference is not None and published.reference.latency_ms == 15.8
    assert published.reference.params_m == 2.5 and published.reference.madds_m is None
    # Timed as `published` (same architecture), still its own reference.
    assert again.measured_as == "published"
    assert again.reference is not None and again.reference.source == "said twice"
    assert relu.reference is None
    raw = (directory / "results.json").read_text()
    assert '"reference": null' in raw  # written for every variant, None where absent
    text = render_markdown(results, plots={})
    # Same architecture, same prediction: ratio 1 against 16 / 15.8, ln(15.8 / 16) = -0.013.
    assert "| again |" in text and "| 1.000 | 1.013 | 0.988 | -0.013 | said twice |" in text
    assert "predicted latencies normalised to published" in text
