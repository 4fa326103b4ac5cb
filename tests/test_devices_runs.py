"""`ablate run SPEC --device NAME`: counted and predicted, never timed; downstream works."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import ablate.measurement.backends
import ablate.measurement.clock
import ablate.measurement.engine
import ablate.measurement.profile
from ablate.cli import app
from ablate.devices.profile import load_profile, shipped_path
from ablate.runs.schema import load_results

SPEC = """\
name: predicted
base: mobilenet_v3_small
input: {resolution: 64}
baseline: published
variants:
  published: {}
  relu: {activation: relu}
  same-as-published: {kernel: mobilenet_v3_small}
  no-se: {se: off}
"""

ATTRIBUTION_SPEC = """\
name: predicted_attribution
input: {resolution: 64}
attribution:
  from: mobilenet_v2
  to: mobilenet_v3_large
  factors: [stem_channels, last_stage]
"""


class TimingCalled(AssertionError):
    pass


@pytest.fixture
def no_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every entry into timing code fails the test."""

    def fail(*args: object, **kwargs: object) -> None:
        raise TimingCalled("a predicted run timed something")

    monkeypatch.setattr(ablate.measurement.engine, "measure_latency", fail)
    monkeypatch.setattr(ablate.measurement.clock, "clock_block_timer", fail)
    monkeypatch.setattr(ablate.measurement.profile, "profile_operators", fail)
    monkeypatch.setattr(ablate.measurement.backends, "prepare_runnable", fail)


def test_the_fixture_catches_a_measured_run(no_timing: None, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "runs")])
    assert isinstance(result.exception, TimingCalled)


def test_a_run_with_device_predicts_and_never_times(no_timing: None, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "pixel1"]
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    assert not (directory / "journal.jsonl").exists()
    results = load_results(directory)
    assert results.status == "complete"
    assert results.measurement is not None
    assert results.measurement.backend == "predicted on pixel1"
    assert results.measurement.stop_reason == "predicted"
    assert results.measurement.predicted_on == "pixel1"
    assert results.measurement.elapsed_s == 0.0
    published, relu, same, no_se = results.variants
    assert no_se.latency is not None and no_se.latency.significant is not None
    assert same.latency == published.latency  # one network, predicted once
    assert published.latency is not None and relu.latency is not None
    assert published.latency.flags[0].name == "predicted"
    low, high = published.latency.ci95_ms
    assert low < published.latency.median_ms < high
    ratio = relu.latency.ratio_to_baseline
    assert ratio is not None
    assert ratio.median == pytest.approx(relu.latency.median_ms / published.latency.median_ms)
    assert ratio.ci95[0] <= ratio.median <= ratio.ci95[1]

    compared = CliRunner().invoke(app, ["compare", str(directory)])
    assert compared.exit_code == 0, compared.output
    report = CliRunner().invoke(app, ["report", str(directory), "--markdown"])
    assert report.exit_code == 0, report.output
    markdown = (directory / "report.md").read_text()
    assert "predicted on pixel1" in markdown
    assert "nothing was timed" in markdown
    assert "Counted on " in markdown and ", latency predicted on pixel1, " in markdown
    assert "Measured on" not in markdown
    assert "predicted on pixel1" in compared.output
    assert "Latency predicted on pixel1 (not measured)" in compared.output


def test_a_measured_schema_2_file_without_the_predicted_field_still_loads() -> None:
    fixture = Path(__file__).parent / "fixtures" / "hswish_eager" / "results.json"
    assert "predicted_on" not in json.loads(fixture.read_text())["measurement"]
    measurement = load_results(fixture).measurement
    assert measurement is not None
    assert measurement.predicted_on is None
    assert measurement.stop_reason != "predicted"


def test_a_predicted_attribution_has_intervals(no_timing: None, tmp_path: Path) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(ATTRIBUTION_SPEC)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "pixel1"]
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    attribution = load_results(directory).attribution
    assert attribution is not None
    resamples = len(load_profile("pixel1").bootstrap.coefficients)
    assert attribution.bootstrap is not None
    assert attribution.bootstrap.rounds == resamples
    assert attribution.bootstrap.resamples == resamples
    total = attribution.total.latency
    assert total is not None
    low, high = total.interval_ms
    assert low < total.ms < high
    # Shapley shares sum to the total, predicted as measured.
    shares = [effect.latency.ms for effect in attribution.shapley if effect.latency is not None]
    assert len(shares) == 2
    assert sum(shares) == pytest.approx(total.ms)


def test_a_predicted_run_resumed_without_device_still_times_nothing(
    no_timing: None, tmp_path: Path
) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(ATTRIBUTION_SPEC)
    runs = tmp_path / "runs"
    first = CliRunner().invoke(app, ["run", str(spec), "--out", str(runs), "--device", "pixel1"])
    assert first.exit_code == 0, first.output
    directory = Path(first.output.strip().splitlines()[-1])
    complete = load_results(directory)
    # As if killed after the prediction: the later stages are still to run.
    cut = complete.model_copy(update={"status": "measured", "attribution": None})
    (directory / "results.json").write_text(json.dumps(cut.to_json()))
    resumed = CliRunner().invoke(app, ["run", str(spec), "--out", str(runs), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    again = load_results(directory)
    assert again.status == "complete"
    assert again.attribution == complete.attribution  # from the saved resamples


def test_attribution_takes_rounds_or_a_table_not_both() -> None:
    from ablate.analysis.attribution import attribute
    from ablate.analysis.bootstrap import BootstrapSettings, LatencyTable
    from ablate.analysis.coalitions import AttributionError

    table = LatencyTable(
        masks=np.arange(4),
        medians_milliseconds=np.array([10.0, 9.0, 8.0, 6.0]),
        resampled_milliseconds=np.array([[10.0, 9.0, 8.0, 6.0], [11.0, 9.5, 8.5, 6.5]]),
        round_count=2,
        settings=BootstrapSettings(resamples=2),
    )
    with pytest.raises(AttributionError, match="not both"):
        attribute(
            ["a", "b"], latency_rounds=[[0.01, 0.009, 0.008, 0.006]] * 3, latency_table_given=table
        )
    result = attribute(["a", "b"], latency_table_given=table)
    assert result.total.latency is not None
    assert result.total.latency.ms == pytest.approx(-4.0)  # 6 - 10 ms
    # Percentiles 2.5 and 97.5 of the two resampled totals, -4.5 and -4.0, interpolated.
    assert result.total.latency.interval_ms == pytest.approx((-4.4875, -4.0125))
    # Shapley: a = ((9 - 10) + (6 - 8)) / 2, b = ((8 - 10) + (6 - 9)) / 2.
    shares = {effect.label: effect.latency.ms for effect in result.shapley if effect.latency}
    assert shares == pytest.approx({"a": -1.5, "b": -2.5})
    assert result.bootstrap is not None and result.bootstrap.rounds == 2


def test_an_unknown_device_fails_before_a_run_directory_exists(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "nokia3310"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: --device 'nokia3310': no such device profile")
    assert not (tmp_path / "runs").exists()


FIXTURES = Path(__file__).parent / "fixtures"


def test_fitting_rows_from_a_measured_run_take_its_medians_and_view() -> None:
    from ablate.devices.observations import run_observations

    eager = load_results(FIXTURES / "hswish_eager")
    observations, view, batch = run_observations([FIXTURES / "hswish_eager"])
    assert (view, batch) == ("unfused", 1)  # eager runs every aten op on its own
    assert [row.name for row in observations] == [v.name for v in eager.variants]
    assert [row.latency_ms for row in observations] == [
        v.latency.median_ms for v in eager.variants if v.latency is not None
    ]
    # The counts are the run's own: the same networks, recounted.
    assert [sum(r.macs for r in row.records) for row in observations] == [
        v.macs for v in eager.variants
    ]
    _, compiled_view, _ = run_observations([FIXTURES / "hswish_compile"])
    assert compiled_view == "fused"  # compile fuses conv + BN + activation


def test_fitting_refuses_mixed_views_and_predicted_runs(tmp_path: Path) -> None:
    from ablate.devices.observations import run_observations
    from ablate.errors import AblateError, InputFileError

    with pytest.raises(AblateError, match="differ in backend view or batch"):
        run_observations([FIXTURES / "hswish_eager", FIXTURES / "hswish_compile"])
    data = json.loads((FIXTURES / "hswish_eager" / "results.json").read_text())
    data["measurement"] = {**data["measurement"], "predicted_on": "pixel1"}
    predicted = tmp_path / "results.json"
    predicted.write_text(json.dumps(data))
    with pytest.raises(InputFileError) as error:
        run_observations([predicted])
    assert str(error.value) == (
        f"{predicted}: measurement.predicted_on: the run's latencies are predictions on "
        "pixel1, not measurements"
    )


def test_fit_device_from_a_run_of_exactly_four_architectures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 25: the fewest architectures fit-device asks for crashed the nested leave-one-out.
    monkeypatch.setenv("ABLATE_DEVICES_DIR", str(tmp_path))
    run = FIXTURES / "hswish_eager"
    measured = [v for v in load_results(run).variants if v.latency is not None]
    result = CliRunner().invoke(app, ["fit-device", "eager", "--from", str(run)])
    assert result.exit_code == 0, result.output
    profile = load_profile("eager")
    assert (profile.quality.rows, profile.quality.architectures) == (4, 4)
    assert (profile.form, profile.view) == ("macs", "unfused")
    assert [row.latency_ms for row in profile.rows] == [v.latency.median_ms for v in measured]


def test_a_run_median_out_of_range_is_refused_naming_the_run(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "hswish_eager" / "results.json").read_text())
    data["variants"][2]["latency"]["median_ms"] = 1e308
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["fit-device", "eager", "--from", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}: variants[2].latency.median_ms: latency must be a number of ms from "
        "1e-06 to 8.64e+07 (a nanosecond to a day) (got 1e+308)\n"
    )


def _zero_coefficients(data: dict[str, Any]) -> None:
    for parameter in data["parameters"]:
        parameter["value"] = 0.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Issue 25: a NaN coefficient gave median NaN and "+nan%" marked significant.
        (
            lambda data: data["parameters"][1].update(value=float("nan")),
            "parameters[1].value: Input should be a finite number (got nan)",
        ),
        # The coefficients the all-1e308 ms table fitted: all 0, a ZeroDivisionError mid-run.
        (_zero_coefficients, "parameters: every coefficient is 0: the profile predicts no time"),
    ],
)
def test_a_bad_profile_fails_a_run_before_its_directory_exists(
    no_timing: None, tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    data = json.loads(shipped_path("pixel1").read_text())
    change(data)
    profile = tmp_path / "bad.json"
    profile.write_text(json.dumps(data))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(runs), "--device", str(profile)]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {profile}: {expected}\n"
    assert not runs.exists()


# -- issue 26: predictions that extrapolate, priors, and what the report may conclude --------


def _pointwise_gmac(model: str, factors: dict[str, Any]) -> float:
    from ablate.devices.costs import FORMS, group_features
    from ablate.devices.observations import count_variant

    _, counts = count_variant(model, factors)
    form = FORMS["conv_kinds"]
    pointwise = form.term_names.index("pointwise_macs")
    return float(sum(group_features(counts.records, form, "fused").values())[pointwise])


def _profile_with_pointwise_range(tmp_path: Path, low: float, high: float) -> Path:
    """The shipped profile, its rows said to span ``low .. high`` GMAC of pointwise convs."""
    data = json.loads(shipped_path("pixel1").read_text())
    (pointwise,) = (entry for entry in data["support"] if entry["name"] == "pointwise_macs")
    pointwise["feature_range"] = [low, high]
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(data))
    return path


def test_a_predicted_run_says_where_it_extrapolates_and_draws_no_conclusion_there(
    no_timing: None, tmp_path: Path
) -> None:
    published = _pointwise_gmac("mobilenet_v3_small", {"resolution": 64})
    no_se = _pointwise_gmac("mobilenet_v3_small", {"resolution": 64, "se": "off"})
    assert no_se < published  # the SE block's two convs are pointwise
    # Rows that start at 3x the midpoint: no-se lies more than 3x below them, published not.
    middle = (published + no_se) / 2
    profile = _profile_with_pointwise_range(tmp_path, 3 * middle, 10 * middle)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", str(profile)]
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    variants = {variant.name: variant for variant in load_results(directory).variants}
    latencies = {
        name: variant.latency for name, variant in variants.items() if variant.latency is not None
    }
    assert len(latencies) == len(variants)
    assert latencies["published"].extrapolated == []
    assert latencies["no-se"].extrapolated is not None
    (entry,) = latencies["no-se"].extrapolated
    assert entry.term == "pointwise_macs"
    assert entry.times_outside == pytest.approx(3 * middle / no_se)
    assert "below the smallest fitted row's" in entry.detail
    # The classifiers' only dense conv is the stem, which has its own rate: no prior applies.
    assert all("costed at" not in latency.flags[0].detail for latency in latencies.values())
    # `run` prints it; `compare` lists it and keeps it out of the summary's findings.
    assert "no-se: pointwise_macs:" in " ".join(result.output.split())
    compared = CliRunner().invoke(app, ["compare", str(directory)], env={"COLUMNS": "300"})
    assert compared.exit_code == 0, compared.output
    text = " ".join(compared.output.split())
    assert (
        "The device profile cannot tell how these compare with published, as their "
        "predictions extrapolate: no-se (pointwise_macs:" in text
    )
    # relu, the one other variant the profile can judge, is the only one judged.
    assert "Not distinguishable from published (interval includes no change): relu." in text
    assert "no-se changes latency the most" not in text
    assert "Fastest of the predictions that do not extrapolate:" in text


def test_a_predicted_attribution_on_extrapolated_coalitions_is_no_finding(
    no_timing: None, tmp_path: Path
) -> None:
    # Rows that end far below every coalition's pointwise MACs: all of them extrapolate.
    profile = _profile_with_pointwise_range(tmp_path, 1e-6, 2e-6)
    spec = tmp_path / "a.yaml"
    spec.write_text(ATTRIBUTION_SPEC)
    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", str(profile)]
    )
    assert result.exit_code == 0, result.output
    directory = Path(result.output.strip().splitlines()[-1])
    results = load_results(directory)
    assert all(variant.latency and variant.latency.extrapolated for variant in results.variants)
    report = CliRunner().invoke(app, ["report", str(directory), "--markdown"])
    assert report.exit_code == 0, report.output
    markdown = (directory / "report.md").read_text()
    assert (
        "the device profile cannot tell how mobilenet_v3_large compares with mobilenet_v2: "
        "mobilenet_v2's prediction extrapolates (pointwise_macs:" in markdown
    )
    assert (
        "The profile cannot tell what each factor contributes either: 4 of the 4 coalitions' "
        "predictions extrapolate, and every Shapley value averages over all of them "
        "(pointwise_macs in 4, up to " in markdown
    )
    assert "Speeding it up" not in markdown and "Slowing it down" not in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| stem_channels |")]
    rows += [line for line in markdown.splitlines() if line.startswith("| **total** |")]
    assert len(rows) >= 2
    assert all("| cannot tell (extrapolated) |" in line for line in rows[:1] + rows[-1:])
    assert "Extrapolated (the device profile's rows never reached these networks" in markdown


# A regular SSD head is dense 3x3 convs after the stem, which no row of pixel1 has.
HEAD_SPEC = """\
name: heads
base: ssdlite_mobilenet_v3_small
input: {resolution: 64}
baseline: ssdlite
variants:
  ssdlite: {}
  ssd: {head: ssd}
"""


def test_prior_none_predicts_with_the_raw_fit_and_says_so(no_timing: None, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(HEAD_SPEC)
    outcomes = {}
    for prior in ("stated", "none"):
        command = ["run", str(spec), "--out", str(tmp_path / prior), "--device", "pixel1"]
        result = CliRunner().invoke(app, [*command, "--prior", prior])
        assert result.exit_code == 0, result.output
        variants = load_results(Path(result.output.strip().splitlines()[-1])).variants
        outcomes[prior] = {variant.name: variant.latency for variant in variants}
    stated, raw = outcomes["stated"]["ssd"], outcomes["none"]["ssd"]
    assert stated is not None and raw is not None
    profile = load_profile("pixel1")
    assert profile.raw is not None
    assert "raw fit (--prior none)" in raw.flags[0].detail
    assert "dense convs costed" not in raw.flags[0].detail
    assert "raw fit" not in stated.flags[0].detail
    assert "dense convs costed at the pointwise rate" in stated.flags[0].detail
    # The head's dense convs cost time with the prior and none in the raw fit (0 ms/GMAC), and
    # both say the prediction extrapolates on them.
    assert profile.raw.parameters[1].name == "dense_macs"
    assert profile.raw.parameters[1].value == 0.0
    assert raw.median_ms < stated.median_ms
    for latency in (stated, raw):
        assert latency.extrapolated is not None
        assert "dense_macs" in {entry.term for entry in latency.extrapolated}
    # SSDLite's only dense conv is the stem, which has its own rate: the same either way.
    stated_lite, raw_lite = outcomes["stated"]["ssdlite"], outcomes["none"]["ssdlite"]
    assert stated_lite is not None and raw_lite is not None
    assert "costed at" not in stated_lite.flags[0].detail
    assert stated_lite.median_ms == raw_lite.median_ms
    assert stated_lite.ci95_ms == raw_lite.ci95_ms


def test_results_written_before_the_extrapolation_check_still_load() -> None:
    fixture = FIXTURES / "hswish_eager" / "results.json"
    assert "extrapolated" not in fixture.read_text()
    results = load_results(fixture)
    assert all(v.latency is None or v.latency.extrapolated is None for v in results.variants)


def test_prior_without_a_device_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(runs), "--prior", "none"])
    assert result.exit_code == 2
    assert result.output == "error: --prior none: only with --device (it chooses a profile's fit)\n"
    assert not runs.exists()


def test_a_second_fit_from_runs_of_the_same_networks_counts_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device matrix fits one profile per device's run of the same spec: the architectures
    are counted once per process, not once per run."""
    from ablate.devices import observations

    calls: list[str] = []
    counted = observations.count_variant

    def counting(model: str, factors: dict, batch: int = 1) -> Any:
        calls.append(model)
        return counted(model, factors, batch)

    monkeypatch.setattr(observations, "count_variant", counting)
    monkeypatch.setattr(observations, "_COUNTED", {})
    first = observations._Counter(1).observation(
        name="a", model="mobilenet_v3_small", factors={"resolution": 64}, latency_ms=1.0, source="x"
    )
    second = observations._Counter(1).observation(
        name="a", model="mobilenet_v3_small", factors={"resolution": 64}, latency_ms=2.0, source="y"
    )
    assert calls == ["mobilenet_v3_small"]
    assert second.records is first.records
    observations._Counter(2).observation(
        name="b", model="mobilenet_v3_small", factors={"resolution": 64}, latency_ms=1.0, source="z"
    )
    assert calls == ["mobilenet_v3_small", "mobilenet_v3_small"]  # another batch: counted anew
