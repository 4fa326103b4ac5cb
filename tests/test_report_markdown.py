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
    # The published figures the spec gave each factor (`attribution.reference`) beside its
    # Shapley share; no total: the `to` end is not a published model and none was given.
    assert "| -1.61 MB | -2 ms; -10M MAdds (MobileNetV3 §5.1, Pixel-1) |" in text
    assert "| +11.24 MB | +0.9 ms (MobileNetV3 Table 5, Pixel-1: 51.4 vs 50.5 ms) |" in text
    assert "| +11.05 MB | -7 ms; -30M MAdds (MobileNetV3 §5.1, Pixel-1: 11% of 64 ms) |" in text
    assert "| +4.21 MB | +20.69 MB |  |" in text
    assert "### One factor at a time" in text and "### Cumulative path" in text
    assert "## Against a second run" in text
    words = _words(text)
    assert "Speeding it up (Shapley share, interval below zero): stem_channels" in words
    assert "On the compile backend" in words


def _published_ends(document: dict[str, Any]) -> None:
    """The spec's `reference` of the two published models, on the attribution's end models
    (the `from` end as the run's own variant, the `to` end on a variant timed as it)."""
    references = {
        "to:{}": {"latency_ms": 64, "madds_m": 300, "source": "V3 paper Table 3, Pixel-1"},
        "to:{stem_channels,activation,last_stage}": {
            "latency_ms": 51,
            "params_m": 5.4,
            "madds_m": 219,
            "source": "V3 paper Table 3, Pixel-1",
        },
    }
    for variant in document["variants"]:
        variant["reference"] = references.get(variant["name"])


def test_the_published_total_comes_from_the_specs_references() -> None:
    text = render_markdown(modified_results("why_eager", _published_ends), plots=PLOTS)
    assert (
        "| verdict | MACs Δ | FLOPs Δ | bytes unfused Δ | bytes fused Δ | published (the spec's "
        "references) |"
    ) in text
    # The figures both ends give (params only one), beside the total; each factor's own.
    assert (
        "| +20.69 MB | 64 ms -> 51 ms; 300M MAdds -> 219M MAdds (V3 paper Table 3, Pixel-1) |"
        in text
    )
    assert "| -1.61 MB | -2 ms; -10M MAdds (MobileNetV3 §5.1, Pixel-1) |" in text
    assert (
        "quotes the spec's references (`attribution.reference` for the factors and the two end "
        "models' `reference` for the total)"
    ) in _words(text)

    # One end without a reference and no `reference.total`: the factors' figures only.
    def from_end_only(document: dict[str, Any]) -> None:
        _published_ends(document)
        document["variants"][-1]["reference"] = None

    text = render_markdown(modified_results("why_eager", from_end_only), plots=PLOTS)
    assert "| +20.69 MB |  |" in text and "| -1.61 MB | -2 ms; -10M MAdds" in text

    # `attribution.reference.total`, a change, where the ends carry no reference; the ends'
    # references where both are given.
    def total(document: dict[str, Any]) -> None:
        document["attribution_reference"]["total"] = {
            "latency_ms": -13,
            "params_m": 2.0,
            "madds_m": -81,
            "source": "MobileNetV3 Table 3, Pixel-1",
        }

    text = render_markdown(modified_results("why_eager", total), plots=PLOTS)
    assert (
        "| +20.69 MB | -13 ms; +2M params; -81M MAdds (MobileNetV3 Table 3, Pixel-1) |" in text
    )
    assert "`attribution.reference.total` for the total" in _words(text)
    both = modified_results("why_eager", lambda d: (total(d), _published_ends(d)))
    assert "| +20.69 MB | 64 ms -> 51 ms; 300M MAdds" in render_markdown(both, plots=PLOTS)

    # A results file written before `attribution.reference`: no figures, no column.
    def older(document: dict[str, Any]) -> None:
        del document["attribution_reference"]

    text = render_markdown(modified_results("why_eager", older), plots=PLOTS)
    assert "published (" not in text and "MAdds;" not in text and "quotes the spec" not in text


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


def test_the_published_pair_gets_no_figures_the_spec_did_not_give() -> None:
    def published(document: dict[str, Any]) -> None:
        document["attribution"]["to"] = "mobilenet_v3_large"
        del document["attribution_reference"]

    text = render_markdown(modified_results("why_eager", published), plots={})
    assert "published (" not in text and "219M" not in text
    text = render_markdown(
        modified_results("why_eager", lambda d: (published(d), _published_ends(d))), plots={}
    )
    assert "64 ms -> 51 ms; 300M MAdds -> 219M MAdds (V3 paper Table 3, Pixel-1) |" in text


def test_markdown_table_cells_escape_pipes() -> None:
    def piped(document: dict[str, Any]) -> None:
        document["variants"][1]["factors"] = {"note": "a|b"}

    text = render_markdown(modified_results("hswish_eager", piped), plots={})
    assert "note=a\\|b" in text


def test_the_caches_row_says_what_each_timing_followed() -> None:
    def warm(document: dict[str, Any]) -> None:
        document["measurement"]["cache_state"] = "warm"

    def settled(document: dict[str, Any]) -> None:
        document["measurement"].update(cache_state="settled", settle_s=0.2)

    def predicted(document: dict[str, Any]) -> None:
        document["measurement"]["cache_state"] = None

    older = render_markdown(fixture_results("why_eager"), plots={})
    newer = render_markdown(modified_results("why_eager", warm), plots={})
    newest = render_markdown(modified_results("why_eager", settled), plots={})
    assert (
        "| caches | each timing right after the round's previous variant (runs before "
        "2026-12-07) |"
    ) in older
    assert (
        "| caches | each timing right after one untimed call of the same model (runs of "
        "2026-12-07) |"
    ) in newer
    assert "| caches | each timing after untimed calls of the same model for 0.2 s |" in newest
    assert "| caches |" not in render_markdown(modified_results("why_eager", predicted), plots={})


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


def test_the_machine_table_names_the_variants_timed_more_than_once_a_round() -> None:
    def end_models_repeated(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            if variant["name"] in ("to:{}", "to:{stem_channels,activation,last_stage}"):
                variant["latency"]["timings_per_round"] = 5

    assert "timed more than once" not in render_markdown(fixture_results("why_eager"), plots={})
    text = render_markdown(modified_results("why_eager", end_models_repeated), plots={})
    assert (
        "| timed more than once a round | to:{}, to:{stem_channels,activation,last_stage}: a "
        "round's value is the median of 5 timings at random places in it |"
    ) in text


def _runtime(profile: list[tuple[str, bool, float]] | None, runtime: str = "executorch") -> dict:
    """A runtime record; `profile`: (kernel, delegated, ms) per kernel kind."""
    outside = {"dim_order_ops._to_dim_order_copy": 2} if profile and not profile[-1][1] else {}
    record: dict[str, Any] = {
        "runtime": runtime,
        "versions": {runtime: "1.0"},
        "precision": "fp32",
        "export_seconds": 20.0,
        "export_cached": False,
        "program_bytes": 1000,
        "delegation": {
            "delegate": "XNNPACK",
            "delegated": {"aten.convolution": 10},
            "outside": outside,
            "fp32": {},
            "flagged": bool(outside),
        },
        "profile": None,
    }
    if profile is not None:
        total = sum(ms for _, _, ms in profile)
        record["profile"] = {
            "profiler": "ETDump",
            "runs": 5,
            "ops": [
                {"name": n, "delegated": d, "instances": 1, "milliseconds": ms, "share": ms / total}
                for n, d, ms in profile
            ],
        }
    return record


GEMM, DWCONV = "Fully Connected (NC, F32) GEMM", "Convolution (NHWC, F32) DWConv"


def test_a_runtime_profiled_run_reports_its_kernels_beside_the_eager_shares() -> None:
    profiles = {
        "v3_published": [
            (GEMM, True, 6.0),
            (DWCONV, True, 3.0),
            ("_to_dim_order_copy.out", False, 1.0),
        ],
        "v3_relu": [(GEMM, True, 7.5), (DWCONV, True, 2.5)],
        "v3_hswish_at_16": None,  # not profiled (yet)
        "mobilenet_v2": [(GEMM, True, 5.0), (DWCONV, True, 5.0)],
    }

    def on_executorch(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            variant["runtime"] = _runtime(profiles[variant["name"]])

    text = render_markdown(modified_results("hswish_eager", on_executorch), plots={})
    words = _words(text)
    assert "executorch's own profiler timed each program's kernels" in words
    assert (
        "| variant | delegation | ops delegated | outside | fp32 in int8 | time outside | export |"
        in text
    )
    # Op names are text from the runtime: an underscore that could open emphasis is escaped.
    flagged = "| v3_published | flagged | 10 | dim_order_ops.\\_to_dim_order_copy x2 | none |"
    assert f"{flagged} 10.0% | 20.0 s |" in text
    assert "| v3_relu | all delegated | 10 | none | none | 0.0% | 20.0 s |" in text
    assert "| v3_hswish_at_16 | all delegated | 10 | none | none | - | 20.0 s |" in text
    # The baseline and the first other variants, one column each; a kernel a variant never ran
    # shows "-".
    assert "### Kernel time shares (executorch ETDump, median of 5 runs)" in text
    assert "| kernel | v3_published | v3_relu | mobilenet_v2 |" in text
    assert f"| {GEMM} | 60.0% | 75.0% | 50.0% |" in text
    assert "| \\_to_dim_order_copy.out (outside the delegate) | 10.0% | - | - |" in text
    # Per variant, the kernel shares that moved most, largest move first.
    assert (
        "Kernel time shares that moved most (executorch ETDump): "
        f"{GEMM} 60.0%→75.0% (+15.0 pp), \\_to_dim_order_copy.out (outside the delegate) "
        f"10.0%→0.0% (-10.0 pp), {DWCONV} 30.0%→25.0% (-5.0 pp)."
    ) in words


def _unprofiled_on(runtime: str, **recorded: str | None) -> Any:
    """A results edit: every variant ran on `runtime`, with no runtime profile; `recorded`:
    what a file of this version records beside (its `profiler`), absent from older files."""

    def edit(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            variant["runtime"] = {**_runtime(None, runtime=runtime), **recorded}

    return edit


def test_a_runtime_without_a_profiler_says_the_shares_are_eager() -> None:
    results = modified_results("hswish_eager", _unprofiled_on("litert"))
    text = _words(render_markdown(results, plots={}))
    assert "come from the eager PyTorch profile: litert's Python API has no per-op profiler" in text
    assert "time outside" not in text
    assert "Kernel time shares" not in text


def test_a_runtime_this_version_does_not_know_still_renders() -> None:
    # The results say what the report needs: a later runtime with a profiler not run yet ...
    results = modified_results("hswish_eager", _unprofiled_on("someday", profiler="SomeTrace"))
    text = _words(render_markdown(results, plots={}))
    assert "Per-op time shares in this report come from the eager PyTorch profile." in text
    assert "no per-op profiler" not in text
    # ... and one without.
    results = modified_results("hswish_eager", _unprofiled_on("someday", profiler=None))
    text = _words(render_markdown(results, plots={}))
    assert "eager PyTorch profile: someday's Python API has no per-op profiler" in text
