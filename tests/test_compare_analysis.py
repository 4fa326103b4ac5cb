"""compare_variants / compare_runs / block changes: the numbers behind every renderer."""

from __future__ import annotations

from typing import Any

import pytest
from report_golden import counts_only, fixture_results, modified_results

from ablate.errors import AblateError
from ablate.report.changes import CountChange, block_changes, merged_order
from ablate.report.compare import compare_runs, compare_variants, environment_differences
from ablate.runs.schema import BlockCounts


def _block(name: str, macs: int, share: float | None = None, **extra: Any) -> BlockCounts:
    values: dict[str, Any] = {
        "name": name,
        "params": 10,
        "macs": macs,
        "flops": 2 * macs,
        "bytes_unfused": 1000,
        "bytes_fused": 500,
        "intensity_fused": 4.0,
        "time_share": share,
        **extra,
    }
    return BlockCounts(**values)


def test_count_change_deltas_and_percent() -> None:
    assert CountChange(200, 150).delta == -50
    assert CountChange(200, 150).percent == -25.0
    assert CountChange(200, 150).direction == -1
    assert CountChange(0, 5).percent is None
    assert CountChange(7, 7).direction == 0


def test_every_variant_against_the_measured_baseline() -> None:
    results = fixture_results("hswish_eager")
    comparison = compare_variants(results)
    assert comparison.baseline == "v3_published" and not comparison.rebased
    assert [row.name for row in comparison.rows] == [v.name for v in results.variants]
    baseline = comparison.row("v3_published")
    assert baseline.is_baseline and baseline.blocks == ()
    assert baseline.latency is not None and baseline.latency.ratio_ci95 is None
    assert baseline.latency.significant is None and baseline.disagreement is None

    v2 = comparison.row("mobilenet_v2")
    recorded = results.variant("mobilenet_v2")
    assert v2.counts["macs"] == CountChange(216_589_760, 300_774_272)
    assert v2.counts["bytes_fused"].value == recorded.bytes_fused
    assert v2.latency is not None
    assert recorded.latency is not None and recorded.latency.ratio_to_baseline is not None
    assert v2.latency.ratio == recorded.latency.ratio_to_baseline.median
    assert v2.latency.ratio_ci95 == recorded.latency.ratio_to_baseline.ci95
    assert v2.latency.significant is True and not v2.latency.approximate
    assert v2.latency.delta_ms == pytest.approx(
        recorded.latency.median_ms - results.variant("v3_published").latency.median_ms
    )
    assert "layout" in v2.changed_factors and "activation" in v2.changed_factors


def test_macs_flat_and_noise_flags() -> None:
    comparison = compare_variants(fixture_results("hswish_eager"))
    relu = comparison.row("v3_relu")
    assert relu.counts["macs"].delta == 0
    assert relu.latency is not None and relu.latency.direction == -1
    assert relu.disagreement == "macs_flat"
    noisy = comparison.row("v3_hswish_at_16")
    assert noisy.latency is not None and noisy.latency.significant is False
    assert noisy.disagreement is None  # not significant: no direction to disagree with
    assert {flag.name for flag in noisy.flags} == {"high_iqr", "wide_interval"}
    assert relu.changed_factors == ("activation",)


def test_opposite_directions_are_found() -> None:
    comparison = compare_variants(fixture_results("hswish_compile"))
    v2 = comparison.row("mobilenet_v2")
    assert v2.counts["macs"].direction == 1
    assert v2.latency is not None and v2.latency.direction == -1
    assert v2.disagreement == "opposite"
    assert comparison.quick and comparison.backend == "compile"


def test_rebased_latency_is_the_quotient_of_the_paired_ratios() -> None:
    results = fixture_results("hswish_eager")
    comparison = compare_variants(results, "mobilenet_v2")
    assert comparison.rebased and comparison.measured_baseline == "v3_published"
    v2 = results.variant("mobilenet_v2").latency
    relu = results.variant("v3_relu").latency
    assert v2 is not None and relu is not None
    assert v2.ratio_to_baseline is not None and relu.ratio_to_baseline is not None
    row = comparison.row("v3_relu").latency
    assert row is not None and row.approximate
    assert row.ratio == pytest.approx(relu.ratio_to_baseline.median / v2.ratio_to_baseline.median)
    low, high = row.ratio_ci95 or (0, 0)
    assert low == pytest.approx(relu.ratio_to_baseline.ci95[0] / v2.ratio_to_baseline.ci95[1])
    assert high == pytest.approx(relu.ratio_to_baseline.ci95[1] / v2.ratio_to_baseline.ci95[0])
    assert row.significant is True
    # The measured baseline itself, against the new one: 1 / r_B, its interval inverted.
    published = comparison.row("v3_published").latency
    assert published is not None and published.approximate
    assert published.ratio == pytest.approx(1 / v2.ratio_to_baseline.median)
    assert comparison.row("mobilenet_v2").is_baseline


def test_unknown_baseline_is_one_line_with_the_choices() -> None:
    with pytest.raises(AblateError, match=r"--baseline: no variant 'v4'.*valid: v3_published"):
        compare_variants(fixture_results("hswish_eager"), "v4")


def test_a_variant_timed_as_the_baseline_equals_it_by_construction() -> None:
    def twin(document: dict[str, Any]) -> None:
        copy = dict(document["variants"][0], name="published_again", measured_as="v3_published")
        document["variants"].append(copy)

    comparison = compare_variants(modified_results("hswish_eager", twin))
    row = comparison.row("published_again")
    assert row.same_architecture and not row.is_baseline
    assert row.latency is not None and row.latency.ratio == 1.0
    assert row.latency.significant is None and row.blocks == ()


def test_counts_only_runs_compare_without_latency() -> None:
    comparison = compare_variants(modified_results("why_eager", counts_only))
    assert not comparison.measured and comparison.backend is None
    row = comparison.row("to:{stem_channels}")
    assert row.latency is None and row.disagreement is None
    assert [block.name for block in row.blocks] == ["stem", "blocks.0"]
    assert all(block.time_delta_ms is None for block in row.blocks)


def test_blocks_added_and_removed_keep_execution_order() -> None:
    comparison = compare_variants(fixture_results("hswish_eager"))
    v2 = comparison.row("mobilenet_v2")
    status = {block.name: block.status for block in v2.blocks}
    assert status["blocks.15"] == status["blocks.16"] == "added"
    assert [block.name for block in v2.blocks][-4:] == [
        "blocks.15",
        "blocks.16",
        "last_stage",
        "classifier",
    ]
    added = next(block for block in v2.blocks if block.name == "blocks.16")
    assert added.count("macs").baseline == 0 and added.count("macs").percent is None
    # Reversed, the same blocks are removed, in the baseline's order.
    reverse = compare_variants(fixture_results("hswish_eager"), "mobilenet_v2")
    published = reverse.row("v3_published")
    assert [b.name for b in published.blocks if b.status == "removed"] == [
        "blocks.15",
        "blocks.16",
    ]


def test_merged_order_places_removed_blocks_after_their_predecessor() -> None:
    assert merged_order(["stem", "a", "b", "c"], ["stem", "c", "d"]) == [
        "stem",
        "a",
        "b",
        "c",
        "d",
    ]
    assert merged_order(["x", "stem"], ["stem"]) == ["x", "stem"]


def test_identical_blocks_are_left_out_and_time_is_estimated_only_when_asked() -> None:
    before = [_block("stem", 100, 0.5), _block("blocks.0", 200, 0.5)]
    after = [_block("stem", 100, 0.4), _block("blocks.0", 150, 0.6)]
    changes = block_changes(
        before, after, baseline_median_ms=10.0, variant_median_ms=12.0, estimate=True
    )
    assert [change.name for change in changes] == ["blocks.0"]
    (change,) = changes
    assert change.baseline_time.estimate_ms == pytest.approx(5.0)
    assert change.variant_time.estimate_ms == pytest.approx(7.2)
    assert change.time_delta_ms == pytest.approx(2.2)
    assert change.share_delta_points == pytest.approx(10.0)
    assert change.opposite  # MACs -25%, time +44%
    fused = block_changes(
        before, after, baseline_median_ms=10.0, variant_median_ms=12.0, estimate=False
    )
    assert fused[0].time_delta_ms is None and not fused[0].opposite


def test_small_block_time_moves_are_noise() -> None:
    before = [_block("blocks.0", 200, 0.5)]
    after = [_block("blocks.0", 150, 0.51)]
    (change,) = block_changes(
        before, after, baseline_median_ms=10.0, variant_median_ms=10.0, estimate=True
    )
    assert change.time_direction == 0 and not change.opposite


def test_two_runs_list_environment_differences_and_flips() -> None:
    eager, compiled = fixture_results("hswish_eager"), fixture_results("hswish_compile")
    differences = {d.key: (d.first, d.second) for d in environment_differences(eager, compiled)}
    assert differences["backend"] == ("eager", "compile")
    assert differences["quick"] == (False, True)
    assert "cpu_model" not in differences
    assert next(iter(differences)) == "backend"  # the settings that matter most come first
    comparison = compare_runs(eager, compiled)
    flips = [pair.name for pair in comparison.variants if pair.verdict_changed]
    assert flips == ["mobilenet_v2"]
    pair = comparison.variants[0]
    assert pair.median_ratio == pytest.approx(8.599 / 14.101, rel=1e-3)


def test_a_run_timed_in_warm_caches_and_one_from_before_list_the_difference() -> None:
    # The fixtures were recorded before `cache_state` existed: their timings followed the
    # round's previous variant.
    older = fixture_results("hswish_eager")
    assert older.measurement is not None and older.measurement.cache_state == "rotating"

    def warm(document: dict[str, Any]) -> None:
        document["measurement"]["cache_state"] = "warm"

    newer = modified_results("hswish_eager", warm)
    differences = {d.key: (d.first, d.second) for d in environment_differences(older, newer)}
    assert differences == {"cache_state": ("rotating", "warm")}


def test_two_runs_match_variants_by_name() -> None:
    def rename(document: dict[str, Any]) -> None:
        document["variants"][-1]["name"] = "v2_renamed"
        document["variants"][-1]["measured_as"] = "v2_renamed"

    comparison = compare_runs(
        fixture_results("hswish_eager"), modified_results("hswish_compile", rename)
    )
    by_name = {pair.name: pair for pair in comparison.variants}
    assert by_name["mobilenet_v2"].second is None and by_name["v2_renamed"].first is None
    assert by_name["mobilenet_v2"].median_ratio is None
    assert not by_name["mobilenet_v2"].verdict_changed


def test_a_run_still_counting_its_baseline_says_so() -> None:
    def counting(document: dict[str, Any]) -> None:
        counts_only(document)
        document["status"] = "counting"
        document["variants"] = document["variants"][1:]

    results = modified_results("hswish_eager", counting)
    with pytest.raises(AblateError, match="baseline 'v3_published' is not counted yet"):
        compare_variants(results)
    assert compare_variants(results, "v3_relu").baseline == "v3_relu"

    def empty(document: dict[str, Any]) -> None:
        counting(document)
        document["variants"] = []

    with pytest.raises(AblateError, match="no variant counted yet"):
        compare_variants(modified_results("hswish_eager", empty))


def test_operator_time_shares_are_compared_largest_move_first() -> None:
    relu = compare_variants(fixture_results("hswish_eager")).row("v3_relu")
    moves = {share.operator: share for share in relu.operator_shares}
    assert moves["aten::hardswish_"].value == 0.0 and moves["aten::hardswish_"].baseline > 0
    assert moves["aten::relu_"].delta_points > 0
    sizes = [abs(share.delta_points) for share in relu.operator_shares]
    assert sizes == sorted(sizes, reverse=True)
    counted = compare_variants(modified_results("hswish_eager", counts_only)).row("v3_relu")
    assert counted.operator_shares == ()
