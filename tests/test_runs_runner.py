"""`ablate run` end to end: results, the run directory, resume after a kill at any stage."""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ablate.runs.runner as runner_module
from ablate import __version__
from ablate.analysis.coalitions import CoalitionSpace
from ablate.cli import app
from ablate.errors import AblateError
from ablate.measurement.results import NoiseFlag, RatioEstimate, VariantResult
from ablate.runs.results import new_results, with_latencies
from ablate.runs.runner import count_unit, plan_units
from ablate.runs.schema import Delegation, Measurement, RuntimeRecord, Variant, load_results
from ablate.runs.storage import read_rounds
from ablate.services.experiment import run_experiment
from ablate.spec import load_spec_text
from ablate.spec.model import ExperimentSpec

TINY_SPEC = """\
name: tiny
base: mobilenet_v3_small
input: {resolution: 64}
measure: {settle_s: 0, budget_s: 3, warmup_s: 0.1, min_rounds: 12, max_rounds: 24, target_ci: 0.001}
baseline: published
variants:
  published: {}
  relu: {activation: relu}
  same-as-published: {kernel: mobilenet_v3_small}
  no-se: {se: off}
"""


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_run_writes_a_complete_run_directory(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])  # the last line
    assert directory.parent == out and directory.name.endswith("-tiny")
    assert {path.name for path in directory.iterdir()} == {
        "spec.yaml",
        "resolved_spec.json",
        "environment.json",
        "journal.jsonl",
        "results.json",
    }  # no `lock`: the run let go of its directory
    assert (directory / "spec.yaml").read_text() == TINY_SPEC
    resolved = json.loads((directory / "resolved_spec.json").read_text())
    assert resolved["measure"]["threads"] == 1 and resolved["input"]["batch"] == 1
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["threads"] == 1 and environment["packages"]["torch"]
    results = load_results(directory)
    assert results.status == "complete" and not results.quick
    assert [v.name for v in results.variants] == ["published", "relu", "same-as-published", "no-se"]
    published, relu, same, no_se = results.variants
    # Identical architectures are counted and timed once.
    assert same.measured_as == "published" and same.latency == published.latency
    assert published.latency is not None and published.latency.ratio_to_baseline is None
    assert relu.latency is not None and relu.latency.ratio_to_baseline is not None
    low, high = relu.latency.ci95_ms
    assert low <= relu.latency.median_ms <= high
    # Counts: an activation swap changes no MAC; SE off removes MACs and parameters.
    assert relu.macs == published.macs and relu.params == published.params
    assert no_se.macs < published.macs and no_se.params < published.params
    assert sum(block.macs for block in published.blocks) == published.macs
    shares = [block.time_share for block in published.blocks]
    assert all(share is not None for share in shares) and abs(sum(shares) - 1) < 0.05
    rounds = read_rounds(directory / "journal.jsonl", {"published", "relu", "no-se"})
    assert results.measurement is not None and results.measurement.rounds == len(rounds)
    assert 12 <= len(rounds) <= 24
    assert results.measurement.stop_on == "ratios"  # no attribution: each ratio is judged


ATTRIBUTION_SPEC = """\
name: tiny-why
input: {resolution: 64}
measure: {settle_s: 0, budget_s: 20, warmup_s: 0.1, min_rounds: 8, max_rounds: 200, target_ci: 0.2}
attribution: {from: mobilenet_v2, to: mobilenet_v3_small, factors: [layout, kernel]}
"""


@pytest.mark.slow
def test_an_attribution_run_stops_when_its_shapley_values_are_precise(tmp_path: Path) -> None:
    spec = tmp_path / "why.yaml"
    spec.write_text(ATTRIBUTION_SPEC)
    directory = run_experiment(spec_path=spec, out_dir=tmp_path / "runs")
    results = load_results(directory)
    measurement = results.measurement
    assert measurement is not None and results.attribution is not None
    assert results.spec["measure"]["stop_on"] == "attribution"  # `auto`, resolved
    assert (measurement.stop_on, measurement.stop_reason) == ("attribution", "target")
    # +/-20 points of V2's time: reached in the minimum rounds, or within a few checks.
    assert 8 <= measurement.rounds < 200
    effects = [*results.attribution.shapley, results.attribution.total]
    for effect in effects:
        assert effect.latency is not None
        low, high = effect.latency.interval_percent
        assert (high - low) / 2 <= 20.0
    # The ratios were not what had to be precise: none is flagged as too wide.
    for variant in results.variants:
        assert variant.latency is not None
        assert "wide_interval" not in {flag.name for flag in variant.latency.flags}
        # 4 coalitions are few: the end models' extra timings would cost half a round.
        assert variant.latency.timings_per_round == 1


@pytest.mark.slow
def test_an_attribution_with_many_coalitions_times_its_end_models_five_times_a_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 coalitions count as many here, so that a 2-factor attribution takes the path that
    # why_v3_faster's 128 take; the end models decide the total, every other coalition once.
    monkeypatch.setattr(runner_module, "MANY_VARIANTS", 3)
    spec = tmp_path / "why.yaml"
    spec.write_text(ATTRIBUTION_SPEC.replace("max_rounds: 200", "max_rounds: 10"))
    directory = run_experiment(spec_path=spec, out_dir=tmp_path / "runs")
    results = load_results(directory)
    space = CoalitionSpace(("layout", "kernel"))
    ends = {space.variant_name(0), space.variant_name(space.full_mask)}
    timings = {
        variant.name: variant.latency.timings_per_round
        for variant in results.variants
        if variant.latency is not None
    }
    assert timings == {name: 5 if name in ends else 1 for name in timings} and len(timings) == 4
    lines = [json.loads(line) for line in (directory / "journal.jsonl").read_text().splitlines()]
    assert results.measurement is not None and len(lines) == results.measurement.rounds
    for line in lines:
        assert set(line["timings"]) == ends
        for name in ends:
            assert len(line["timings"][name]) == 5
            assert line["seconds"][name] == sorted(line["timings"][name])[2]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, not even `except Exception`."""


@pytest.mark.slow
def test_resume_after_a_kill_during_measurement(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    real_append = runner_module.append_round

    def append_then_die(
        path: Path, index: int, seconds: dict[str, float], **journal: float
    ) -> None:
        real_append(path, index, seconds, **journal)
        if index == 7:
            raise Killed

    monkeypatch.setattr(runner_module, "append_round", append_then_die)
    with pytest.raises(Killed):
        run_experiment(spec_path=tiny_spec, out_dir=out)
    (directory,) = out.iterdir()
    assert load_results(directory).status == "counted"  # counts were saved before measuring
    names = {"published", "relu", "no-se"}
    before = read_rounds(directory / "journal.jsonl", names)
    assert len(before) == 8

    monkeypatch.setattr(runner_module, "append_round", real_append)
    import ablate.counting.engine as engine

    def no_recount(*args: object, **kwargs: object) -> None:
        raise AssertionError("counting was redone after resume")

    monkeypatch.setattr(engine, "count_model", no_recount)
    assert run_experiment(spec_path=tiny_spec, out_dir=out, resume=True) == directory
    after = read_rounds(directory / "journal.jsonl", names)
    assert after[:8] == before and len(after) > 8
    results = load_results(directory)
    assert results.status == "complete"
    assert results.measurement is not None and results.measurement.rounds == len(after)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
@pytest.mark.parametrize(
    ("save_interval_s", "saved", "recounted"),
    [(0.0, ["published", "same-as-published"], 2), (3600.0, [], 3)],
)
def test_resume_after_a_kill_during_counting(
    tiny_spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    save_interval_s: float,
    saved: list[str],
    recounted: int,
) -> None:
    """Counting saves at most every COUNT_SAVE_INTERVAL_S; a resumed run counts what the
    last save lacks, and only that."""
    import ablate.counting.engine as engine

    monkeypatch.setattr(runner_module, "COUNT_SAVE_INTERVAL_S", save_interval_s)
    out = tmp_path / "runs"
    real_count = engine.count_model
    calls: list[int] = []

    def count_then_die(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_count(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "count_model", count_then_die)
    with pytest.raises(Killed):
        run_experiment(spec_path=tiny_spec, out_dir=out)
    (directory,) = out.iterdir()
    partial = json.loads((directory / "results.json").read_text())
    assert partial["status"] == "counting"
    # Saving after every unit: the first distinct architecture (published and its twin).
    assert [v["name"] for v in partial["variants"]] == saved

    calls.clear()
    monkeypatch.setattr(
        engine, "count_model", lambda *a, **k: (calls.append(1), real_count(*a, **k))[1]
    )
    run_experiment(spec_path=tiny_spec, out_dir=out, resume=True)
    assert len(calls) == recounted  # relu and no-se only, when published was saved
    assert load_results(directory).status == "complete"


def test_resume_needs_an_unfinished_run_of_an_unchanged_spec(
    tiny_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--out", str(out), "--resume"])
    assert result.exit_code == 2
    assert f"error: {out}: no unfinished run of 'tiny' to resume" in result.output
    directory = out / "20260101-000000-tiny"
    directory.mkdir(parents=True)
    (directory / "resolved_spec.json").write_text(json.dumps({"name": "tiny", "other": 1}))
    with pytest.raises(AblateError, match="the spec of 'tiny' changed since this run started"):
        run_experiment(spec_path=tiny_spec, out_dir=out, resume=True)


def test_resume_reports_a_corrupt_results_file(tiny_spec: Path, tmp_path: Path) -> None:
    from ablate.spec import load_spec

    out = tmp_path / "runs"
    directory = out / "20260101-000000-tiny"
    directory.mkdir(parents=True)
    resolved = load_spec(tiny_spec).to_json()
    (directory / "resolved_spec.json").write_text(json.dumps(resolved))
    (directory / "results.json").write_text('{"schema": "ablate.results/1", "status": ')
    result = CliRunner().invoke(app, ["run", str(tiny_spec), "--out", str(out), "--resume"])
    assert result.exit_code == 2
    assert "results.json:1: not valid JSON" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_quick_run_of_a_shipped_experiment(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", "experiments/hswish.yaml", "--quick", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    results = load_results(Path(result.output.strip().splitlines()[-1]))
    assert results.quick and results.status == "complete"
    assert len(results.variants) == 8
    assert len({variant.measured_as for variant in results.variants}) == 7
    assert all(variant.latency is not None for variant in results.variants)
    assert results.measurement is not None and results.measurement.budget_s <= 10


# -- the one constructor of the results, shared by the runner and `ablate ingest` ---------------


def _timed(name: str, median_ms: float, flags: tuple[NoiseFlag, ...] = ()) -> VariantResult:
    ratio = None if name == "published" else RatioEstimate(median_ms / 10.0, (0.9, 1.1))
    return VariantResult(
        name=name,
        median_ms=median_ms,
        iqr_ms=0.5,
        ci95_ms=(median_ms - 0.25, median_ms + 0.25),
        rounds=12,
        instances=3,
        iterations_per_round=2,
        warmup_runs=4,
        ratio_to_baseline=ratio,
        significant=None if ratio is None else True,
        flags=flags,
        samples_ms=(median_ms,) * 12,
    )


def _record(runtime: str) -> RuntimeRecord:
    return RuntimeRecord(
        runtime=runtime,
        versions={runtime: "1.0"},
        precision="fp32",
        export_seconds=1.5,
        export_cached=False,
        program_bytes=1234,
        delegation=Delegation(
            delegate="XNNPACK", delegated={"conv": 3}, outside={}, fp32={}, flagged=False
        ),
    )


@pytest.fixture(scope="module")
def tiny_counts() -> tuple[ExperimentSpec, list[Variant]]:
    """TINY_SPEC and its four variants as counting leaves them (three distinct units)."""
    spec = load_spec_text(TINY_SPEC, "tiny.yaml")
    counted = [v for unit in plan_units(spec) for v in count_unit(unit, spec, "fp32")[1]]
    return spec, counted


def test_a_new_run_starts_from_its_spec_and_environment(
    tiny_counts: tuple[ExperimentSpec, list[Variant]],
) -> None:
    spec, _ = tiny_counts
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    results = new_results(spec, {"threads": 1, "backend": "eager"})
    created = dt.datetime.fromisoformat(results.created)
    assert before <= created <= dt.datetime.now(dt.timezone.utc)
    assert (results.status, results.experiment) == ("counting", "tiny")
    assert results.baseline == "published" and results.description is None
    assert results.ablate_version == __version__ and not results.quick
    assert results.spec == spec.to_json() and results.spec["measure"]["max_rounds"] == 24
    assert results.environment == {"threads": 1, "backend": "eager"}
    assert results.variants == [] and results.measurement is None and results.attribution is None


def test_every_variant_takes_the_latency_and_runtime_of_the_unit_it_was_timed_as(
    tiny_counts: tuple[ExperimentSpec, list[Variant]],
) -> None:
    spec, counted = tiny_counts
    assert [(v.name, v.measured_as) for v in counted] == [
        ("published", "published"),
        ("same-as-published", "published"),
        ("relu", "relu"),
        ("no-se", "no-se"),
    ]
    drift = NoiseFlag("drift", "+3% from the first to the last third")
    latencies = [_timed("published", 10.0), _timed("relu", 12.0, (drift,)), _timed("no-se", 8.0)]
    measurement = Measurement(
        stop_reason="budget",
        rounds=12,
        elapsed_s=3.0,
        backend="executorch",
        device="cpu",
        batch=1,
        threads=1,
        target_ci=0.001,
        budget_s=3.0,
        seed=0,
    )
    results = new_results(
        spec,
        {},
        status="profiled",
        variants=counted,
        latencies=latencies,
        runtimes={"relu": _record("executorch")},
        measurement=measurement,
    )
    assert results.status == "profiled" and results.measurement == measurement
    by_name = {v.name: v for v in results.variants}
    assert list(by_name) == ["published", "same-as-published", "relu", "no-se"]
    medians = {name: v.latency.median_ms for name, v in by_name.items() if v.latency}
    assert medians == {"published": 10.0, "same-as-published": 10.0, "relu": 12.0, "no-se": 8.0}
    relu = by_name["relu"].latency
    assert relu is not None and relu.ratio_to_baseline is not None
    assert relu.ratio_to_baseline.median == pytest.approx(1.2)
    assert [(f.name, f.detail) for f in relu.flags] == [(drift.name, drift.detail)]
    assert by_name["published"].latency.ratio_to_baseline is None  # type: ignore[union-attr]
    assert by_name["relu"].runtime == _record("executorch")
    assert [by_name[n].runtime for n in ("published", "same-as-published", "no-se")] == [None] * 3
    # The counts are the counted ones, untouched.
    assert [v.macs for v in results.variants] == [v.macs for v in counted]
    # A unit left untimed is a bug of the caller, never a variant without a latency.
    with pytest.raises(ValueError, match="no latency for the timed units no-se, relu"):
        with_latencies(counted, latencies[:1], {})


def test_the_results_model_is_built_in_one_place() -> None:
    package = Path(runner_module.__file__).parent.parent
    builders = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Results":
                builders.add(path.relative_to(package).as_posix())
    assert builders == {"runs/results.py"}
