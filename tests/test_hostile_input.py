"""Hostile or oversized input, reproduced for real: alias bombs under a memory cap, specs too
big for the machine, markup in names, a runtime that is not installed. Each gets one line
and exit 2, and nothing is created."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.errors import FactorError, excerpt
from ablate.runs.estimate import (
    ArchitectureSize,
    RunEstimate,
    architecture_size,
    available_memory,
    estimate_run,
)
from ablate.spec import load_spec_text, with_overrides
from ablate.spec.source import MAX_EXPANDED_NODES, parse_set_options, parse_yaml
from ablate.variants.resolve import resolve_architecture

MEMORY_CAP = 3 * 2**30  # address space of the capped subprocesses


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def ablate(*arguments: str, cwd: Path, cap: bool = True, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "ablate", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_capped if cap else None,
        env=env,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def alias_bomb(levels: int = 9) -> str:
    """Nested 10x aliases: ~600 bytes that expand to 10**levels values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.slow
def test_an_alias_bomb_spec_is_refused_in_one_line_under_a_memory_cap(tmp_path: Path) -> None:
    text = "name: bomb\n" + alias_bomb() + "\nvariants:\n  v: {base: mobilenet_v2, kernel: *a8}\n"
    assert len(text) < 700
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    line = one_line(ablate("validate", str(path), cwd=tmp_path))
    assert line == (
        f"error: {path}: YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values; a "
        "spec needs no such repetition (write the values out, or use a grid)"
    )


@pytest.mark.slow
def test_an_alias_bomb_in_a_set_option_is_refused_in_one_short_line(tmp_path: Path) -> None:
    levels = [f"&a0 [{', '.join(['x'] * 10)}]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    value = "[" + ", ".join(levels) + "]"
    line = one_line(ablate("inspect", "mobilenet_v2", "--set", f"kernel={value}", cwd=tmp_path))
    assert "YAML aliases expand to more than" in line and len(line) < 200


def test_aliases_that_stay_small_still_load() -> None:
    document = parse_yaml("a: &x [1, 2]\nb: *x\n", "small.yaml")
    assert document.data == {"a": [1, 2], "b": [1, 2]}
    assert parse_set_options(["kernel=[&k 3, *k, 5]"]) == {"kernel": [3, 3, 5]}


def test_an_echoed_value_is_short_whatever_its_size() -> None:
    shared = ["x"] * 10
    for _ in range(8):  # 10**9 elements if expanded, a few hundred objects in memory
        shared = [shared] * 10
    text = excerpt(shared)
    assert len(text) <= 60 and text.endswith("...")
    error = FactorError("kernel", shared, "expected 3, 5 or 7")
    assert len(str(error)) < 120


@pytest.mark.parametrize(
    "name",
    ["<script>alert(1)</script>", "two\nlines", "a|b", "tick`s", "x" * 101],
)
def test_variant_names_with_markup_or_control_characters_are_refused(name: str) -> None:
    text = "name: t\nvariants:\n  " + json.dumps(name) + ": {}\n  plain: {}\n"
    with pytest.raises(Exception, match=r"a variant name takes 1-100 characters") as caught:
        load_spec_text(text, "spec.yaml")
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_results_with_markup_in_a_name_are_refused_by_every_reader(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "hswish_eager" / "results.json"
    document = json.loads(fixture.read_text(encoding="utf-8"))
    document["variants"][1]["name"] = "<img src=x onerror=alert(1)>"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    for command in ("compare", "report"):
        line = one_line(ablate(command, str(path), cwd=tmp_path, cap=False))
        assert "variants[1].name" in line and "should match pattern" in line
    assert not (tmp_path / "report.md").exists()


def test_the_estimate_counts_what_the_counting_engine_counts() -> None:
    # Exact reference counts at 224x224 (torchvision's implementations of the papers' tables).
    large = architecture_size(resolve_architecture("mobilenet_v3_large", {}))
    assert large.params == 5_483_032 and large.macs == 216_589_760
    v2 = architecture_size(resolve_architecture("mobilenet_v2", {}))
    assert v2.params == 3_504_872 and v2.macs == 300_774_272
    # V2's largest layer: the batch norm of the second block's expansion, which reads and
    # writes 96 channels at 112x112 (16 x t=6, before the stride-2 depthwise).
    assert v2.activation_peak_bytes == 2 * 96 * 112 * 112 * 4
    doubled = architecture_size(resolve_architecture("mobilenet_v2", {"resolution": 448}))
    assert doubled.activation_peak_bytes == 4 * v2.activation_peak_bytes


def _estimate(**changes: object) -> RunEstimate:
    values: dict = {
        "variants": 4,
        "architectures": 4,
        "estimated_on": 4,
        "copies": 3,
        "batch": 1,
        "process_bytes": 500_000_000,
        "weight_bytes": 1_000_000_000,
        "activation_bytes": 100_000_000,
        "count_seconds": 2.0,
        "minimum_measure_seconds": 30.0,
        "budget_seconds": 60.0,
        "available_bytes": 8_000_000_000,
    }
    return RunEstimate(**{**values, **changes})


def test_a_run_that_fits_is_summarised_and_not_refused() -> None:
    estimate = _estimate()
    assert estimate.memory_bytes == 1_600_000_000 and estimate.measure_seconds == 60.0
    assert estimate.refusal() is None
    assert estimate.summary() == (
        "4 distinct architectures for 4 variants; memory about 1.6 GB (3 built copies each) "
        "of 8.0 GB available; counting about 2 s, measuring at most about 60 s"
    )


def test_too_much_memory_or_too_little_budget_is_refused_with_the_figures() -> None:
    memory = _estimate(available_bytes=1_000_000_000).refusal()
    assert memory is not None and memory.startswith("needs about 1.6 GB of memory")
    assert "1.0 GB this process may use" in memory and "--force" in memory
    budget = _estimate(minimum_measure_seconds=400.0).refusal()
    assert budget is not None and "6.7 min, more than twice the 60 s budget" in budget
    assert _estimate(available_bytes=None).refusal() is None


def test_the_minimum_measuring_time_counts_each_timings_untimed_calls() -> None:
    from ablate.runs.estimate import _visit_seconds

    # A 7 ms model: one timed call after 0.2 s of untimed ones (30 calls would be 0.21 s).
    assert _visit_seconds(0.007, 0.2) == pytest.approx(0.207)
    # A 1 ms model stops settling after 30 calls; with settle_s 0, one untimed call.
    assert _visit_seconds(0.001, 0.2) == pytest.approx(0.031)
    assert _visit_seconds(0.001, 0.0) == pytest.approx(0.002)
    text = "name: s\nbase: mobilenet_v3_small\nvariants: {a: {}, b: {width: 0.5}}\n"
    settled = estimate_run(load_spec_text(text, "s.yaml"), copies=1)
    one_call = estimate_run(
        load_spec_text(text + "measure: {settle_s: 0}\n", "s.yaml"), copies=1
    )
    # Both models take well under 0.2 / 30 s a call here: 31 calls against 2 per visit.
    assert settled.minimum_measure_seconds == pytest.approx(
        one_call.minimum_measure_seconds * 31 / 2
    )


def test_a_spec_is_estimated_on_a_sample_of_a_large_grid() -> None:
    values = [0.35, 0.5, 0.75, 1.0]
    grid = {"width": values, "resolution": [96, 128, 160, 192, 224]}
    text = "name: g\nbase: mobilenet_v3_small\ngrid: " + json.dumps(grid) + "\n"
    estimate = estimate_run(load_spec_text(text, "g.yaml"), copies=1)
    assert (estimate.variants, estimate.architectures) == (20, 20)
    assert estimate.estimated_on == 16
    largest = architecture_size(
        resolve_architecture("mobilenet_v3_small", {"width": 1.0, "resolution": 224})
    )
    # The widest, largest-input variant is always among those estimated.
    assert estimate.activation_bytes == 2 * largest.activation_peak_bytes
    assert isinstance(largest, ArchitectureSize)


def test_a_mobile_backend_run_estimates_its_exports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ablate.runs.estimate import EXPORT_SECONDS

    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "2")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))  # no history: the defaults
    text = "name: e\nbase: mobilenet_v3_small\ngrid: {width: [0.35, 0.5, 0.75, 1.0]}\n"
    spec = load_spec_text(text, "e.yaml")
    assert estimate_run(spec, copies=1).export_seconds == 0.0  # eager exports nothing
    for precision in ("fp32", "int8"):
        measured = with_overrides(spec, backend="executorch", precision=precision)
        estimate = estimate_run(measured, copies=1)
        assert estimate.export_workers == 2
        assert estimate.export_seconds == 4 * EXPORT_SECONDS[precision] / 2
    summary = _estimate(export_seconds=140.0, export_workers=2).summary()
    assert summary.endswith(
        "counting about 2 s, exporting about 2.3-6.5 min (2 processes at 70 s a program, a "
        "default, load unknown; none for programs in the export cache), measuring at most "
        "about 60 s"
    )


def test_the_export_estimate_takes_this_hosts_recent_export_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default of 52 s an int8 program said 21-44 min for 36 programs that took 6.1 min on
    the host of 2026-12-07 (19 s each): the cache's entries tell how long this host takes."""
    from ablate.measurement.export_cache import (
        DelegationReport,
        ExportKey,
        ExportOrigin,
        recent_export_seconds,
        write_entry,
    )
    from ablate.runs.estimate import EXPORT_SECONDS, export_seconds_each

    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "2")
    directory = tmp_path / "exports"
    directory.mkdir()
    here = ExportOrigin.here()
    made = 0

    def entry(
        seconds: float,
        *,
        runtime: str = "executorch",
        precision: str = "int8",
        origin: ExportOrigin | None = here,
    ) -> Path:
        nonlocal made
        made += 1
        key = ExportKey(runtime, (("torch", "2"),), precision, (1, 3, 8, 8), str(made), "0", 1)
        path = directory / key.file_name()
        delegation = DelegationReport("XNNPACK", {"aten.convolution": 1})
        assert write_entry(path, key, b"program", delegation, seconds, origin)
        os.utime(path, (1_000_000 + made, 1_000_000 + made))  # each newer than the last
        return path

    assert export_seconds_each("executorch", "int8") == (EXPORT_SECONDS["int8"], 0)
    entry(10.0)
    entry(30.0)
    # Two of this host's programs are too few to go by.
    assert export_seconds_each("executorch", "int8") == (EXPORT_SECONDS["int8"], 0)
    entry(20.0)
    assert export_seconds_each("executorch", "int8") == (20.0, 3)
    # Not this host's int8 ExecuTorch programs: another host's, a cluster node's, another
    # precision's or runtime's, one written before entries named their host; and files that
    # are no entry (cut short inside the header, not an entry at all).
    entry(500.0, origin=ExportOrigin("another-host"))
    entry(400.0, origin=ExportOrigin(here.hostname, "node-1"))
    entry(1.0, precision="fp32")
    entry(2.0, runtime="litert")
    entry(300.0, origin=None)
    torn = entry(200.0)
    torn.write_bytes(torn.read_bytes()[:20])
    (directory / "executorch-int8-0000.export").write_bytes(b"not an entry")
    assert recent_export_seconds("executorch", "int8", newest=36) == [20.0, 30.0, 10.0]
    assert recent_export_seconds("executorch", "int8", newest=2) == [20.0, 30.0]
    assert recent_export_seconds("executorch", "fp32", newest=36) == [1.0]
    assert export_seconds_each("executorch", "int8") == (20.0, 3)

    text = "name: e\nbase: mobilenet_v3_small\ngrid: {width: [0.35, 0.5, 0.75, 1.0]}\n"
    spec = with_overrides(load_spec_text(text, "e.yaml"), backend="executorch", precision="int8")
    estimate = estimate_run(spec, copies=1)
    assert (estimate.export_seconds, estimate.export_history) == (4 * 20.0 / 2, 3)
    assert "(2 processes at 20 s a program, the median of this host's 3 latest exports, " in (
        estimate.summary()
    )
    fp32 = estimate_run(with_overrides(spec, precision="fp32"), copies=1)
    assert (fp32.export_seconds, fp32.export_history) == (4 * EXPORT_SECONDS["fp32"] / 2, 0)
    assert "at 16 s a program, a default, " in fp32.summary()


def test_the_export_estimate_is_a_range_that_follows_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 25: the estimate said 16 s an export where they took 45 s under load."""
    import ablate.runs.estimate as estimate_module
    from ablate.runs.estimate import (
        EXPORT_SLOWDOWN_UNDER_LOAD,
        LOAD_SWING,
        export_slowdown,
        machine_load,
    )

    assert (EXPORT_SLOWDOWN_UNDER_LOAD, LOAD_SWING) == (2.8, 1.5)
    # Each export process runs at full speed while the runnable processes fit the cores.
    assert export_slowdown(None, 2, 2) == export_slowdown(0.0, 2, 2) == 1.0
    assert export_slowdown(1.5, 4, 2) == 1.0  # 3.5 runnable on 4 cores
    assert export_slowdown(4.0, 2, 2) == 3.0  # 6 on 2
    assert export_slowdown(1.0, 1, 1) == 2.0
    assert export_slowdown(3.0, 0, 1) == 4.0  # no core known: one
    idle = _estimate(export_seconds=16.0, export_workers=2, load=0.0, cores=2)
    assert idle.export_range == pytest.approx((16.0, 44.8))
    assert (
        "exporting about 16-45 s (2 processes at 8 s a program, a default, load 0.0 on 2 "
        "cores; none for programs" in idle.summary()
    )
    busy = _estimate(export_seconds=16.0, export_workers=2, load=4.0, cores=2)
    assert busy.export_range == pytest.approx((48.0, 72.0))  # x3 now, half as much again
    assert (
        "exporting about 48-72 s (2 processes at 8 s a program, a default, load 4.0 on 2 "
        "cores;" in busy.summary()
    )
    one = _estimate(export_seconds=100.0, export_workers=1, load=2.5, cores=1)
    assert (
        "exporting about 5.8-8.8 min (1 process at 25 s a program, a default, load 2.5 on "
        "1 core;" in one.summary()
    )

    # The machine's load in proportion to the cores this process may use.
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 30.0, 20.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    assert machine_load() == (1.25, 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert machine_load() == (40.0, 2)

    def unknown() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unknown)
    assert machine_load() == (None, 2)

    monkeypatch.setattr(estimate_module, "machine_load", lambda: (4.0, 2))
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "2")
    text = "name: e\nbase: mobilenet_v3_small\ngrid: {width: [0.35, 0.5, 0.75, 1.0]}\n"
    spec = load_spec_text(text, "e.yaml")
    exported = estimate_run(with_overrides(spec, backend="executorch"), copies=1)
    assert (exported.load, exported.cores, exported.export_workers) == (4.0, 2, 2)
    assert exported.export_range == pytest.approx(
        (3.0 * exported.export_seconds, 4.5 * exported.export_seconds)
    )
    assert exported.total_high_seconds - exported.total_seconds == pytest.approx(
        1.5 * exported.export_seconds
    )
    eager = estimate_run(spec, copies=1)  # exports nothing: no load asked for, none shown
    assert eager.load is None and "load" not in eager.summary()


def test_a_run_estimates_preparing_and_profiling_each_network() -> None:
    from ablate.runs.estimate import (
        COUNT_SECONDS_FIXED,
        FORWARD_SECONDS_FIXED,
        FORWARD_SECONDS_PER_MAC,
        PROFILER_OVERHEAD,
        RUNTIME_PROFILE_SECONDS,
    )

    text = "name: e\nbase: mobilenet_v3_small\ngrid: {width: [0.35, 1.0]}\n"
    estimate = estimate_run(load_spec_text(text, "e.yaml"), copies=1)
    forwards = [
        FORWARD_SECONDS_FIXED
        + FORWARD_SECONDS_PER_MAC
        * architecture_size(resolve_architecture("mobilenet_v3_small", {"width": width})).macs
        for width in (0.35, 1.0)
    ]
    # Each network: built, then 2 x 8 batch-norm images; profiled: 1 + 5 + 1 passes, at 2x.
    assert estimate.prepare_seconds == pytest.approx(
        sum(COUNT_SECONDS_FIXED + 16 * forward for forward in forwards)
    )
    assert PROFILER_OVERHEAD == 2.0
    assert estimate.profile_seconds == pytest.approx(
        sum(COUNT_SECONDS_FIXED + 2.0 * 7 * forward for forward in forwards)
    )
    quick = estimate_run(load_spec_text(text + "measure: {quick: true}\n", "e.yaml"), copies=1)
    assert quick.profile_seconds == pytest.approx(
        sum(COUNT_SECONDS_FIXED + 2.0 * 3 * forward for forward in forwards)
    )
    # ExecuTorch's own profile of each program comes on top; LiteRT's Python API has none.
    for backend, runtime_profiling in (("executorch", 2 * RUNTIME_PROFILE_SECONDS), ("litert", 0)):
        on_runtime = estimate_run(
            load_spec_text(text + f"measure: {{backend: {backend}}}\n", "e.yaml"), copies=1
        )
        assert on_runtime.profile_seconds == pytest.approx(
            estimate.profile_seconds + runtime_profiling
        )
    staged = _estimate(prepare_seconds=150.0, profile_seconds=90.0, export_seconds=600.0)
    assert staged.total_seconds == 2.0 + 150.0 + 600.0 + 60.0 + 90.0
    assert staged.total_high_seconds == pytest.approx(2.0 + 150.0 + 2.8 * 600.0 + 60.0 + 90.0)
    assert staged.summary().endswith(
        "counting about 2 s, preparing at most about 2.5 min, exporting about 10.0-28.0 min "
        "(1 process at 2.5 min a program, a default, load unknown; none for programs in the "
        "export cache), measuring at most about 60 s, profiling about 90 s; in all about "
        "15.0-33.0 min with nothing cached"
    )


def test_available_memory_honours_an_address_space_limit(tmp_path: Path) -> None:
    code = "from ablate.runs.estimate import available_memory; print(available_memory())"
    capped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=_capped
    )
    assert capped.returncode == 0, capped.stderr
    assert 0 < int(capped.stdout) < MEMORY_CAP
    assert (available_memory() or 0) > 0


@pytest.mark.slow
def test_a_run_too_big_for_the_memory_cap_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(
        "name: huge\nvariants:\n  big: {width: 4.0, resolution: 2048}\n", encoding="utf-8"
    )
    line = one_line(ablate("run", str(spec), "--out", "runs", "--quick", cwd=tmp_path))
    assert line.startswith("error: this run needs about ") and "pass --force" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_running_out_of_memory_mid_run_is_one_line_and_resumable(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(
        "name: huge\nvariants:\n  big: {width: 4.0, resolution: 2048}\n", encoding="utf-8"
    )
    result = ablate("run", str(spec), "--out", "runs", "--quick", "--force", cwd=tmp_path)
    # The progress display shares stderr; the error is its last line and the only one.
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])
    line = errors[0]
    (run,) = (tmp_path / "runs").iterdir()
    assert line == (
        f"error: out of memory while counting (free memory or measure fewer variants); "
        f"{Path('runs') / run.name} keeps the run so far (status counting, 0 of 1 "
        f"architectures counted); continue it with: ablate run {spec} --out runs --quick "
        "--force --resume"
    )
    assert json.loads((run / "results.json").read_text())["status"] == "counting"


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_missing_runtime_is_named_before_any_run_directory_exists(tmp_path: Path) -> None:
    # A real absence: a package on the path that fails to import, as a missing one does.
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\nbase: mobilenet_v3_small\nmeasure: {backend: onnxruntime}\n"
        "variants:\n  a: {width: 0.35, resolution: 64}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    result = ablate("run", str(spec), "--out", "runs", cwd=tmp_path, cap=False, env=env)
    assert one_line(result) == (
        "error: backend 'onnxruntime' needs the Python package 'onnxruntime', which is not "
        "installed; install it with: pip install 'ablate[onnx]'"
    )
    assert not (tmp_path / "runs").exists()
