"""What a profile's rows resolved, priors for what they did not, and flagged extrapolation.

Issue 26: on `pixel1`, SSD-V1 came out faster than SSDLite-V1 because the dense-conv rate,
unresolved by classifier rows whose only dense conv is the stem, was 0, and nothing said so.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, PRIORS, group_features
from ablate.devices.fit import Observation, fit_profile
from ablate.devices.predict import predict_records
from ablate.devices.profile import (
    Profile,
    TermSupport,
    load_profile,
    profile_from_json,
    shipped_path,
)
from ablate.devices.support import RANGE_MARGIN, resolution
from ablate.files import write_json_atomic
from ablate.runs.schema import Extrapolation
from tests.test_devices import _record

runner = CliRunner()
CONV_KINDS = FORMS["conv_kinds"]
# ms/GMAC for dense, pointwise, depthwise, linear; ms per kernel.
TRUTH = np.array([0.0, 150.0, 1200.0, 400.0, 0.05])
STEM_MACS = 100_000  # the same dense stem in every row


def _network(pointwise: int, depthwise: int, linear: int, blocks: int, dense: int = STEM_MACS):
    """A stem dense conv, `blocks` pointwise + depthwise pairs, one linear layer."""
    records = [_record(0, Kind.CONV_DENSE, "stem", macs=dense, moved=1000)]
    for block in range(blocks):
        group = f"blocks.{block}"
        records.append(
            _record(len(records), Kind.CONV_POINTWISE, group, macs=pointwise // blocks, moved=1000)
        )
        records.append(
            _record(len(records), Kind.CONV_DEPTHWISE, group, macs=depthwise // blocks, moved=1000)
        )
    records.append(_record(len(records), Kind.LINEAR, "classifier", macs=linear, moved=1000))
    return tuple(records)


def _rows(noise: float = 0.0, count: int = 16) -> list[Observation]:
    """Networks that vary every feature but the dense stem's MACs (the same in every row)."""
    generator = np.random.default_rng(7)
    observations = []
    for index in range(count):
        records = _network(
            pointwise=int(np.exp(generator.uniform(np.log(2e6), np.log(2e8)))),
            depthwise=int(np.exp(generator.uniform(np.log(2e5), np.log(2e7)))),
            linear=int(np.exp(generator.uniform(np.log(1e5), np.log(3e6)))),
            blocks=int(generator.integers(4, 20)),
        )
        features = sum(group_features(records, CONV_KINDS, "fused").values())
        latency = float(features @ TRUTH) * (1 + generator.normal(0, noise))
        observations.append(
            Observation(f"net{index}", "synthetic", {}, latency, "synthetic", index, records)
        )
    return observations


@pytest.fixture(scope="module")
def synthetic() -> Profile:
    return fit_profile(_rows(noise=0.01), name="synthetic", description="t", form_name="conv_kinds")


def _support(profile: Profile, name: str) -> TermSupport:
    assert profile.support is not None
    return next(entry for entry in profile.support if entry.name == name)


# -- what the rows resolved -------------------------------------------------------------------


def test_resolution_needs_an_interval_off_zero_and_a_feature_that_varies() -> None:
    features = np.array(
        [
            # varies, interval off 0 | varies, interval at 0 | same everywhere | absent
            [1.0, 1.0, 0.5, 0.0, 64.0],
            [3.0, 2.0, 0.5, 0.0, 80.0],
        ]
    )
    ci95 = [(100.0, 200.0), (0.0, 50.0), (10.0, 20.0), (0.0, 0.0), (0.001, 0.01)]
    verdicts = resolution(CONV_KINDS, features, ci95)
    assert [resolved for resolved, _ in verdicts] == [True, False, False, False, True]
    assert (
        verdicts[0][1]
        == "95% interval 100 .. 200 ms/GMAC excludes 0; 1 GMAC .. 3 GMAC over the rows"
    )
    assert (
        verdicts[1][1] == "95% interval 0 .. 50 ms/GMAC includes 0; 1 GMAC .. 2 GMAC over the rows"
    )
    assert verdicts[2][1] == (
        "95% interval 10 .. 20 ms/GMAC excludes 0; 500 MMAC in every row: not separable from a "
        "fixed cost"
    )
    assert verdicts[3][1] == "95% interval 0 .. 0 ms/GMAC includes 0; no fitted row has any"
    assert verdicts[4][1] == (
        "95% interval 0.001 .. 0.01 ms/op excludes 0; 64 kernels .. 80 kernels over the rows"
    )


def test_a_term_with_a_zero_coefficient_and_no_variation_is_unresolved() -> None:
    # Exact latencies: the dense stem costs nothing (TRUTH) and is the same in every row.
    profile = fit_profile(_rows(noise=0.0), name="exact", description="t", form_name="conv_kinds")
    assert profile.raw is not None
    assert profile.raw.parameters[0].name == "dense_macs"
    assert profile.raw.parameters[0].value == pytest.approx(0.0, abs=1e-6)
    dense = _support(profile, "dense_macs")
    assert dense.resolved is False
    assert dense.feature_range == pytest.approx((STEM_MACS / 1e9, STEM_MACS / 1e9))
    assert dense.why.endswith("100 kMAC in every row: not separable from a fixed cost")
    for name in ("pointwise_macs", "depthwise_macs", "linear_macs", "ops"):
        assert _support(profile, name).resolved, name
    # Ranges are the rows' own: the largest pointwise feature of any row, and shares in [0, 1].
    rows = _rows(noise=0.0)
    largest = max(sum(group_features(o.records, CONV_KINDS, "fused").values())[1] for o in rows)
    assert _support(profile, "pointwise_macs").feature_range[1] == pytest.approx(largest)
    low, high = _support(profile, "pointwise_macs").share_range
    assert 0 < low < high < 1


# -- priors -----------------------------------------------------------------------------------


def test_a_prior_is_applied_and_recorded(synthetic: Profile) -> None:
    rule = next(rule for rule in PRIORS if rule.term == "dense_macs")
    assert [prior.model_dump() for prior in synthetic.priors] == [
        {
            "term": "dense_macs",
            "rate_of": "pointwise_macs",
            "statement": "dense convs costed at the pointwise rate: not measured on this device",
            "reason": rule.reason,
        }
    ]
    dense, pointwise = synthetic.parameters[0], synthetic.parameters[1]
    # Tied in the fit: the same value, the same bootstrap, hence the same interval.
    assert dense.value == pointwise.value == pytest.approx(150.0, rel=0.03)
    assert dense.ci95 == pointwise.ci95
    assert all(sample[0] == sample[1] for sample in synthetic.bootstrap.coefficients)
    assert dense.readable.endswith("(prior: pointwise_macs's rate)")
    # The raw fit is kept, and is what `--prior none` predicts with.
    raw = synthetic.without_priors()
    assert raw.priors == [] and raw.raw is None
    assert raw.parameters[0].value != pytest.approx(pointwise.value, rel=0.03)
    assert synthetic.raw is not None
    assert raw.rows[0].fitted_ms == synthetic.raw.fitted_ms[0]
    # A prediction that uses the prior says so; one that does not, does not.
    with_stem = predict_records(synthetic, _network(10**7, 10**6, 10**6, 8))
    assert with_stem.priors == (rule.statement,)
    assert with_stem.terms_ms["dense_macs"] == pytest.approx(STEM_MACS / 1e9 * dense.value)
    without = predict_records(synthetic, _network(10**7, 10**6, 10**6, 8, dense=0))
    assert without.priors == ()
    assert predict_records(raw, _network(10**7, 10**6, 10**6, 8)).priors == ()


def test_no_prior_where_the_rows_resolve_the_rate() -> None:
    truth = TRUTH.copy()
    truth[0] = 300.0
    generator = np.random.default_rng(3)
    observations = []
    for index in range(16):
        records = _network(
            pointwise=int(generator.uniform(2e6, 2e8)),
            depthwise=int(generator.uniform(2e5, 2e7)),
            linear=int(generator.uniform(1e5, 3e6)),
            blocks=int(generator.integers(4, 20)),
            dense=int(generator.uniform(1e6, 5e7)),  # varies: resolvable
        )
        features = sum(group_features(records, CONV_KINDS, "fused").values())
        observations.append(
            Observation(
                f"n{index}", "synthetic", {}, float(features @ truth), "synthetic", index, records
            )
        )
    profile = fit_profile(observations, name="resolved", description="t", form_name="conv_kinds")
    assert _support(profile, "dense_macs").resolved
    assert profile.priors == [] and profile.raw is None
    assert profile.parameters[0].value == pytest.approx(300.0, rel=1e-6)


# -- extrapolation ----------------------------------------------------------------------------


def test_a_prediction_10x_outside_a_features_range_is_flagged(synthetic: Profile) -> None:
    largest = _support(synthetic, "pointwise_macs").feature_range[1]  # GMAC
    inside = predict_records(synthetic, _network(int(largest * 1e9), 10**6, 10**6, 8))
    assert inside.extrapolated == ()
    # At 2.9x: within the margin.
    near = predict_records(synthetic, _network(int(2.9 * largest * 1e9), 10**6, 10**6, 8))
    assert near.extrapolated == ()
    far = predict_records(synthetic, _network(int(10 * largest * 1e9), 10**6, 10**6, 8))
    assert far.extrapolated is not None
    assert [entry.term for entry in far.extrapolated] == ["pointwise_macs"]
    (entry,) = far.extrapolated
    assert entry.times_outside == pytest.approx(10.0, rel=1e-6)
    assert entry.detail.startswith(f"{10 * largest:.3g} GMAC, 10x the largest fitted row's")
    # Below the smallest row's, too: a network a tenth of every row in each conv kind.
    low = {
        name: _support(synthetic, name).feature_range[0]
        for name in ("pointwise_macs", "depthwise_macs", "linear_macs")
    }
    tenth = {name: int(value * 1e9 / 10) for name, value in low.items()}
    below = predict_records(
        synthetic,
        _network(tenth["pointwise_macs"], tenth["depthwise_macs"], tenth["linear_macs"], 1, 0),
    )
    assert below.extrapolated is not None
    flagged = {entry.term: entry for entry in below.extrapolated}
    assert set(flagged) == set(low)
    for name, value in low.items():
        assert flagged[name].times_outside == pytest.approx(value * 1e9 / tenth[name])
        assert "below the smallest fitted row's" in flagged[name].detail


def test_a_term_too_small_to_matter_is_not_flagged_however_far_outside(
    synthetic: Profile,
) -> None:
    # A dense stem 5x every row's, costing far less than the profile's median error.
    stem = 5 * STEM_MACS
    prediction = predict_records(synthetic, _network(10**8, 10**7, 10**6, 8, dense=stem))
    share = prediction.terms_ms["dense_macs"] / prediction.ms
    assert share < synthetic.quality.loo_median_abs_error
    assert prediction.extrapolated == ()


def test_real_weight_on_an_unresolved_term_is_flagged(synthetic: Profile) -> None:
    # Dense MACs at 2.5x the rows' (inside the range margin), in a network that is nearly
    # all dense conv: the prediction rests on the prior's rate.
    dense = _support(synthetic, "dense_macs")
    assert dense.share_range[1] < 0.05
    prediction = predict_records(synthetic, _network(10**4, 10**3, 10**3, 1, dense=250_000))
    assert prediction.extrapolated is not None
    (entry,) = prediction.extrapolated
    assert entry.term == "dense_macs"
    share = prediction.terms_ms["dense_macs"] / prediction.ms
    assert share > RANGE_MARGIN * dense.share_range[1]
    assert entry.detail == (
        f"{share:.0%} of this prediction (dense convs costed at the pointwise rate: not "
        f"measured on this device), against at most {dense.share_range[1]:.1%} of any fitted "
        "row's"
    )
    assert entry.times_outside == pytest.approx(share / dense.share_range[1])


def test_the_raw_fit_flags_what_the_prior_would_have_costed(synthetic: Profile) -> None:
    # `--prior none`: the raw dense rate, near 0, costs a big dense conv nothing; the range
    # check still names it.
    raw = synthetic.without_priors()
    prediction = predict_records(raw, _network(10**7, 10**6, 10**6, 8, dense=50 * STEM_MACS))
    assert prediction.extrapolated is not None
    terms = [entry.term for entry in prediction.extrapolated]
    assert terms == ["dense_macs"]
    assert prediction.extrapolated[0].times_outside == pytest.approx(50.0)


# -- profiles on disk: older files, tampered files --------------------------------------------


def _older(data: dict[str, Any]) -> dict[str, Any]:
    """A profile as written before issue 26: no support, priors or raw fit."""
    old = copy.deepcopy(data)
    for key in ("support", "priors", "raw"):
        old.pop(key, None)
    return old


def test_an_older_profile_loads_and_its_predictions_say_they_were_not_checked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.json"
    write_json_atomic(path, _older(json.loads(shipped_path("pixel1").read_text())))
    profile = load_profile(str(path))
    assert profile.support is None and profile.priors == [] and profile.raw is None
    assert load_profile(str(path), "none") == profile  # nothing to take away
    prediction = predict_records(profile, _network(10**7, 10**6, 10**6, 8))
    assert prediction.extrapolated is None
    assert prediction.to_json()["extrapolated"] is None
    environment = {"ABLATE_DEVICES_DIR": str(tmp_path), "COLUMNS": "400"}
    listing = runner.invoke(app, ["devices", "--json"], env=environment)
    assert listing.exit_code == 0, listing.output
    old = next(entry for entry in json.loads(listing.output) if entry["name"] == "old")
    assert old["support"] is None and old["priors"] == []
    shipped = next(entry for entry in json.loads(listing.output) if entry["name"] == "pixel1")
    assert [entry["resolved"] for entry in shipped["support"]] == [False, True, True, False, False]
    table = runner.invoke(app, ["devices"], env=environment)
    assert table.exit_code == 0, table.output
    assert "not recorded (refit to record it)" in table.output
    assert "dense_macs (dense convs costed at the pointwise rate: not measured on this device)" in (
        table.output
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda data: data.update(
                parameters=[
                    {**data["parameters"][0], "value": 1.0},
                    {**data["parameters"][1], "value": 150.0},
                    *data["parameters"][2:],
                ]
            ),
            "priors[0]: dense_macs is 1, not pointwise_macs's rate 150: the prior is not applied",
        ),
        (
            lambda data: data.pop("raw"),
            "raw: missing: a profile with priors keeps the fit without them",
        ),
        (
            lambda data: data["support"].pop(2),
            "support: the file has support for dense_macs, pointwise_macs, linear_macs, ops; "
            "cost model 'conv_kinds' has these terms, in this order; valid: dense_macs, "
            "pointwise_macs, depthwise_macs, linear_macs, ops",
        ),
        (
            lambda data: data["support"][1].update(share_range=[0.2, 1.5]),
            "support[1].share_range[1]: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            lambda data: data["priors"][0].update(rate_of="bytes"),
            "priors[0].rate_of: 'bytes' is no term of cost model 'conv_kinds'; valid: "
            "dense_macs, pointwise_macs, depthwise_macs, linear_macs, ops",
        ),
        (
            lambda data: data["raw"]["loo_ms"].pop(),
            "raw.loo_ms: 22 values for 23 rows; one per row",
        ),
    ],
    ids=[
        "prior not applied",
        "raw missing",
        "support short",
        "share above 1",
        "bad prior term",
        "raw rows short",
    ],
)
def test_a_tampered_support_or_prior_is_one_line(
    change: Callable[[dict[str, Any]], Any], expected: str, tmp_path: Path
) -> None:
    data = json.loads(shipped_path("pixel1").read_text())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["predict", "mobilenet_v3_small", "--device", str(path)])
    assert result.exit_code == 2
    assert result.output == f"error: {path}: {expected}\n"


def test_an_unknown_prior_choice_is_one_line() -> None:
    result = runner.invoke(
        app, ["predict", "mobilenet_v3_small", "--device", "pixel1", "--prior", "physics"]
    )
    assert result.exit_code == 2
    assert result.output == "error: --prior 'physics': valid: stated, none\n"


def test_extrapolation_records_round_trip() -> None:
    entry = Extrapolation(term="dense_macs", detail="x", times_outside=105.0)
    assert Extrapolation.model_validate(entry.model_dump(mode="json")) == entry
    with pytest.raises(ValueError):
        Extrapolation(term="dense_macs", detail="x", times_outside=0.0)


def test_the_shipped_profile_records_what_its_rows_resolved() -> None:
    profile = load_profile("pixel1")
    assert profile.support is not None
    resolved = {entry.name: entry.resolved for entry in profile.support}
    # Classifier rows: the only dense conv is the stem, the linear layers and the kernel count
    # move with everything else.
    assert resolved == {
        "dense_macs": False,
        "pointwise_macs": True,
        "depthwise_macs": True,
        "linear_macs": False,
        "ops": False,
    }
    assert [prior.term for prior in profile.priors] == ["dense_macs"]
    assert profile.raw is not None and profile.raw.parameters[0].value == 0.0
    assert profile_from_json(copy.deepcopy(profile.to_json())) == profile


# -- the checks of issue 26 on the shipped profile ---------------------------------------------

# MobileNetV3 paper (arXiv:1905.02244) Table 6: SSDLite at 320x320, Pixel-1 ms; the spec and
# the variant settings of experiments/detection.yaml.
TABLE_6 = {
    "v1": ("ssdlite_mobilenet_v1", {}, 228.0),
    "v2": ("ssdlite_mobilenet_v2", {}, 162.0),
    "mnasnet": ("ssdlite_mnasnet_a1", {}, 174.0),
    "v3": ("ssdlite_mobilenet_v3_large", {}, 137.0),
    "v3_reduced": ("ssdlite_mobilenet_v3_large", {"tail": "reduced"}, 119.0),
    "v3_small": ("ssdlite_mobilenet_v3_small", {}, 52.0),
    "v3_small_reduced": ("ssdlite_mobilenet_v3_small", {"tail": "reduced"}, 43.0),
    "v2_0.35": ("ssdlite_mobilenet_v2", {"width": 0.35}, 66.0),
    "v2_0.5": ("ssdlite_mobilenet_v2", {"width": 0.5}, 79.0),
    "mnasnet_0.35": ("ssdlite_mnasnet_a1", {"width": 0.35}, 68.0),
    "mnasnet_0.5": ("ssdlite_mnasnet_a1", {"width": 0.5}, 85.0),
}
FULL_WIDTH = ("v1", "v2", "mnasnet", "v3", "v3_reduced", "v3_small", "v3_small_reduced")


@pytest.mark.slow
def test_ssd_v1_is_predicted_slower_than_ssdlite_v1_on_pixel1() -> None:
    from ablate.devices.api import predict_variant

    ssd = predict_variant("ssd_mobilenet_v1", {}, "pixel1")
    ssdlite = predict_variant("ssdlite_mobilenet_v1", {}, "pixel1")
    assert ssd.ms > ssdlite.ms * 1.3  # before the prior: 187.8 against 232.3 ms
    # Its dense convs (predictors, extra layers) cost time, at the prior, and it says so.
    dense = load_profile("pixel1").parameters[0].value
    assert ssd.terms_ms["dense_macs"] > 0.4 * ssd.ms
    assert ssd.terms_ms["dense_macs"] == pytest.approx(1.135627 * dense, rel=1e-3)
    assert ssd.priors == ("dense convs costed at the pointwise rate: not measured on this device",)
    assert ssd.extrapolated is not None
    flagged = {entry.term: entry for entry in ssd.extrapolated}
    assert flagged["dense_macs"].times_outside == pytest.approx(104.78, rel=1e-3)
    # The raw fit still has the failure the issue reported, now flagged.
    raw = predict_variant("ssd_mobilenet_v1", {}, "pixel1", prior="none")
    assert raw.ms < ssdlite.ms and raw.terms_ms["dense_macs"] == 0.0
    assert raw.extrapolated is not None
    assert "dense_macs" in {entry.term for entry in raw.extrapolated}


@pytest.mark.slow
def test_table_6_rows_keep_their_errors_with_the_prior() -> None:
    from ablate.devices.api import predict_variant

    errors = {}
    for name, (model, factors, published) in TABLE_6.items():
        prediction = predict_variant(model, {"resolution": 320, **factors}, "pixel1")
        errors[name] = prediction.ms / published - 1
    # Without the prior the full-width rows were within 5.2% (V3-Small reduced, -5.1%); the
    # tie of dense to pointwise convs moves the rates the rows fit around it, and V3-Small
    # reduced is now 5.8% fast. The narrow ones stay 12-34% fast: the extra layers and
    # predictors, which do not narrow, dominate them as in no row of the profile.
    assert max(abs(errors[name]) for name in FULL_WIDTH) <= 0.06, errors
    narrow = [errors[name] for name in TABLE_6 if name not in FULL_WIDTH]
    assert all(-0.34 <= error <= -0.12 for error in narrow), errors


@pytest.mark.slow
def test_the_head_saves_time_on_pixel1_as_in_the_eager_and_executorch_runs(
    tmp_path: Path,
) -> None:
    spec = (
        Path(__file__).resolve().parent.parent / "experiments" / "why_ssdlite_v3_small_faster.yaml"
    )
    result = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path), "--device", "pixel1"])
    assert result.exit_code == 0, result.output
    from ablate.runs.schema import load_results

    attribution = load_results(Path(result.output.strip().splitlines()[-1])).attribution
    assert attribution is not None
    head = attribution.shapley_of("head").latency
    assert head is not None
    # Eager: the head saves 27% of SSD-V1's time; ExecuTorch 33% (the README's runs). Before
    # the prior: +18.4 ms [-129.0, +19.4].
    assert head.interval_ms[1] < 0
    assert -0.40 < head.percent / 100 < -0.20
