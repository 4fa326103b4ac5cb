"""`bench` and `roofline` commands and their rendering, with a simulated clock.

The models run for real (tiny ones), but every time reading comes from a fake clock, so
nothing asserts or depends on real timings.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from rich.console import Console
from typer.testing import CliRunner

from ablate.commands.measure import bench_command, roofline_command
from ablate.errors import AblateError
from ablate.measurement import calibration as calibrate_module
from ablate.measurement.calibration import Calibration, CalibrationKey
from ablate.measurement.results import NoiseFlag, RatioEstimate, VariantResult
from ablate.report.bench_console import flag_notes, latency_table, share_table, verdict
from ablate.services import bench as bench_module

TINY = ["--set", "width=0.25", "--set", "resolution=32"]
TINY2 = ["--set2", "width=0.25", "--set2", "resolution=32"]
WIDE = {"COLUMNS": "200"}  # rich wraps tables at the terminal width


def step_clock(step: float = 0.01):
    """Each reading is `step` later than the last: every block 'takes' exactly `step`."""
    counter = itertools.count()
    return lambda: next(counter) * step


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> typer.Typer:
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        bench_module, "run_bench", functools.partial(bench_module.run_bench, clock=step_clock())
    )
    application = typer.Typer()
    application.command("bench")(bench_command)
    application.command("roofline")(roofline_command)
    return application


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_bench_json_for_a_pair(app: typer.Typer):
    result = CliRunner().invoke(
        app, ["bench", "mobilenet_v3_small", *TINY, *TINY2, "--set2", "se=off", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    latency = data["latency"]
    names = [variant["name"] for variant in latency["variants"]]
    assert names == [
        "mobilenet_v3_small[width=0.25,resolution=32]",
        "mobilenet_v3_small[width=0.25,resolution=32,se=false]",
    ]
    assert latency["baseline"] == names[0]
    assert latency["stop_reason"] == "target"  # a constant clock: zero-width intervals
    assert latency["rounds"] == 20  # the minimum
    assert [variant["instances"] for variant in latency["variants"]] == [3, 3]
    assert (latency["backend"], latency["device"], latency["threads"], latency["batch"]) == (
        "eager",
        "cpu",
        1,
        1,
    )
    assert latency["variants"][1]["ratio_to_baseline"]["median"] == pytest.approx(1.0)
    assert latency["variants"][1]["significant"] is False
    # Each timing after untimed calls, as a spec's runs (the constant clock never reaches
    # 0.2 s: the 30-call limit ends each settling).
    assert (latency["cache_state"], latency["settle_s"]) == ("settled", 0.2)
    assert data["calibrated"] is False
    assert [b["variant"] for b in data["breakdowns"]] == names
    assert data["breakdowns"][0]["by_block"][0]["name"] == "stem"


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_bench_a_a_labels_and_table(app: typer.Typer):
    result = CliRunner().invoke(
        app, ["bench", "mobilenet_v3_small", *TINY, "--vs", "mobilenet_v3_small", *TINY2], env=WIDE
    )
    assert result.exit_code == 0, result.output
    for text in (
        "mobilenet_v3_small[width=0.25,resolution=32] #2",
        "Latency per forward pass",
        "no significant difference",
        "every interval reached the target",
        "Time share by block",
        "Time share by op",
        "aten::conv2d",
        "No roofline: run `ablate roofline`",
    ):
        assert text in result.stdout


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_bench_shows_the_roofline_once_calibrated(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
):
    def fake_measure(key: CalibrationKey) -> Calibration:
        return Calibration(key, 100e9, 20e9, 1024, 2**20)

    monkeypatch.setattr(calibrate_module, "measure_calibration", fake_measure)
    calibrated = CliRunner().invoke(app, ["roofline"], env=WIDE)
    assert calibrated.exit_code == 0, calibrated.output
    assert "100.0 GFLOP/s" in calibrated.stdout and "Measured and cached" in calibrated.stdout

    result = CliRunner().invoke(app, ["bench", "mobilenet_v3_small", *TINY, "--json"])
    data = json.loads(result.stdout)
    roofline = data["breakdowns"][0]["roofline"]
    assert data["calibrated"] is True
    assert roofline["blocks"][0]["name"] == "stem"
    assert roofline["blocks"][0]["bound"] in ("memory-bound", "compute-bound")
    assert roofline["measured_ms"] == pytest.approx(data["latency"]["variants"][0]["median_ms"])


def test_bench_user_errors_are_ablate_errors():
    with pytest.raises(AblateError, match="unknown backend 'nope'"):
        bench_module.run_bench(model="mobilenet_v3_small", backend="nope", clock=step_clock())
    with pytest.raises(AblateError, match="target CI"):
        bench_module.run_bench(model="mobilenet_v3_small", target_ci=0, clock=step_clock())


def test_bench_precision_is_checked_before_anything_is_built():
    from ablate.cli import app

    result = CliRunner().invoke(app, ["bench", "mobilenet_v3_small", *TINY, "--precision", "int8"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: backend 'eager' measures fp32 only; precision 'int8' needs one of: executorch, "
        "litert"
    ]
    fp16 = ["--backend", "executorch", "--precision", "fp16"]
    result = CliRunner().invoke(app, ["bench", "mobilenet_v3_small", *TINY, *fp16])
    assert result.exit_code == 2 and "unknown precision 'fp16'; valid: fp32, int8" in result.output


def test_bench_builds_models_as_a_run_does():
    """Seeded weights and re-estimated batch norm: every build of a model is the same network,
    so a mobile backend's instances share one exported program."""
    choice = bench_module.ModelChoice("mobilenet_v3_small", {"width": 0.25, "resolution": 32})
    (first, resolution), (second, _) = bench_module._build(choice), bench_module._build(choice)
    assert resolution == 32
    one, two = first.state_dict(), second.state_dict()
    assert all(torch.equal(one[name], two[name]) for name in one)
    variances = [v for name, v in one.items() if name.endswith("running_var")]
    assert not all(torch.all(v == 1) for v in variances)  # re-estimated, not the defaults


@pytest.mark.slow
def test_bench_int8_on_executorch_shares_one_export_per_model(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("executorch")
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "2")
    arguments = ["--backend", "executorch", "--precision", "int8", "--json"]
    result = CliRunner().invoke(
        app, ["bench", "mobilenet_v3_small", *TINY, *TINY2, "--set2", "se=off", *arguments]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    latency = data["latency"]
    assert (latency["backend"], latency["precision"]) == ("executorch", "int8")
    assert [variant["instances"] for variant in latency["variants"]] == [3, 3]
    # Two models, three instances each: two programs exported, the other four read back; the
    # runtime's per-kernel profile reads them back too.
    assert len(list((tmp_path / "exports").glob("executorch-int8-*.export"))) == 2
    for breakdown in data["breakdowns"]:
        profile = breakdown["runtime_profile"]
        assert (profile["profiler"], profile["runs"]) == ("ETDump", breakdown["profiled_runs"])
        assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
        # XNNPACK's int8 kernels: a QC8 weight type (per-channel symmetric int8) in the name.
        assert any(op["delegated"] and "QC8" in op["name"] for op in profile["ops"])


def test_command_modules_do_not_import_torch():
    code = (
        "import sys, ablate.commands.measure, ablate.commands.measure; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def variant(name: str, ratio: float | None, significant: bool | None) -> VariantResult:
    return VariantResult(
        name=name,
        median_ms=10.0,
        iqr_ms=0.2,
        ci95_ms=(9.9, 10.1),
        rounds=50,
        instances=1,
        iterations_per_round=1,
        warmup_runs=10,
        ratio_to_baseline=None
        if ratio is None
        else RatioEstimate(ratio, (ratio - 0.005, ratio + 0.005)),
        significant=significant,
        flags=(NoiseFlag("high_iqr", "IQR is 14% of the median"),) if ratio == 0.93 else (),
        samples_ms=(10.0,) * 50,
    )


def test_verdicts():
    from ablate.runs.entries import latency_entry

    assert verdict(latency_entry(variant("b", None, None))).plain == "baseline"
    assert verdict(latency_entry(variant("s", 1.031, True))).plain == "3.1% slower"
    assert verdict(latency_entry(variant("f", 0.93, True))).plain == "7.0% faster"
    assert verdict(latency_entry(variant("n", 1.004, False))).plain == "no significant difference"


def test_latency_table_marks_flagged_variants():
    from ablate.measurement.results import Environment, LatencyResult

    environment = Environment(
        "CPU", 2, "Linux", "3.11", "2.13", 1, 1, True, True, False, "CPU", 3.5
    )
    result = LatencyResult(
        baseline="base",
        variants=(variant("base", None, None), variant("fast", 0.93, True)),
        stop_reason="target",
        rounds=50,
        elapsed_s=1.0,
        backend="eager",
        device="cpu",
        batch=1,
        threads=1,
        target_ci=0.01,
        budget_s=60.0,
        seed=0,
        environment=environment,
    )
    rendered = bench_module.bench_results(bench_module.BenchReport(result, (), calibrated=False))
    console = Console(record=True, width=160)
    console.print(latency_table(rendered))
    text = console.export_text()
    assert "fast !" in text and "base !" not in text
    assert "0.9300 [0.9250, 0.9350]" in text
    assert "10.000 [9.900, 10.100]" in text
    notes = flag_notes(rendered)
    assert notes is not None
    assert "fast: high_iqr" in notes.plain
    assert "busy machine: load average 3.5 on 2 cores" in notes.plain


def test_share_table_keeps_factor_settings_in_headers():
    table = share_table("shares", [("m[se=false]", [("stem", 0.25), ("blocks.0", 0.75)])])
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "m[se=false]" in text  # not swallowed as a markup tag
    assert "75.0%" in text


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_bench_shows_the_runtime_kernel_shares_beside_the_eager_ones():
    from ablate.report.bench_console import bench_report
    from ablate.runs.schema import RuntimeOpTime, RuntimeProfile

    report = bench_module.run_bench(
        model="mobilenet_v3_small", factors={"width": 0.25, "resolution": 32}, clock=step_clock()
    )
    kernels = [
        RuntimeOpTime(
            name="Fully Connected (NC, F32) GEMM",
            delegated=True,
            instances=9,
            milliseconds=0.9,
            share=0.9,
        ),
        RuntimeOpTime(
            name="_to_dim_order_copy.out", delegated=False, instances=2, milliseconds=0.1, share=0.1
        ),
    ]
    profiled = dataclasses.replace(
        report.breakdowns[0],
        runtime_profile=RuntimeProfile(profiler="ETDump", runs=10, ops=kernels),
    )
    console = Console(record=True, width=160)
    profiled_report = dataclasses.replace(report, breakdowns=(profiled,))
    console.print(bench_report(bench_module.bench_results(profiled_report)))
    text = console.export_text()
    assert "Time share by op (profiled, eager)" in text  # the eager shares stay
    assert "Time share by kernel (profiled, eager fp32, ETDump)" in text
    assert "_to_dim_order_copy.out (outside the delegate)" in text and "90.0%" in text
    # Without a runtime profile (eager here, LiteRT), no kernel table.
    console = Console(record=True, width=160)
    console.print(bench_report(bench_module.bench_results(report)))
    assert "Time share by kernel" not in console.export_text()
