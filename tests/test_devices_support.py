"""What a profile's rows resolved, priors for what they did not, and flagged extrapolation.

Issue 26: on `pixel1`, SSD-V1 came out faster than SSDLite-V1 because the dense-conv rate,
unresolved by classifier rows whose only dense conv is the stem, was 0, and nothing said so.
The stem now has a rate of its own (`stem_macs`): `dense_macs` is the dense convs after it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ablate.cli import app
from ablate.counting import count_model
from ablate.counting.kinds import Kind
from ablate.counting.records import OpRecord
from ablate.devices.costs import FORMS, PRIORS, group_features, op_features
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
from tests.test_devices import BLOCK_IN_CHANNELS, STEM_IN_CHANNELS, _record

runner = CliRunner()
CONV_KINDS = FORMS["conv_kinds"]
STEM, DENSE, POINTWISE = (
    CONV_KINDS.term_names.index(name) for name in ("stem_macs", "dense_macs", "pointwise_macs")
)
# ms/GMAC for the stem, the dense convs after it, pointwise, depthwise, linear; ms per kernel.
# As on pixel1, the rows resolve neither of the first two: the stem is the same in every row
# (and costs nothing here), and no row has a dense conv after it.
TRUTH = np.array([0.0, 0.0, 150.0, 1200.0, 400.0, 0.05])
STEM_MACS = 100_000  # the same stem in every row


def _network(
    pointwise: int, depthwise: int, linear: int, blocks: int, stem: int = STEM_MACS, dense: int = 0
) -> tuple[OpRecord, ...]:
    """A stem conv, `blocks` pointwise + depthwise pairs, a dense conv after them if `dense`
    (as a regular SSD's extra layers), one linear layer."""
    records: list[OpRecord] = []
    if stem:
        records.append(
            _record(0, Kind.CONV_DENSE, "stem", macs=stem, moved=1000, in_channels=STEM_IN_CHANNELS)
        )
    for block in range(blocks):
        group = f"blocks.{block}"
        for kind, macs in ((Kind.CONV_POINTWISE, pointwise), (Kind.CONV_DEPTHWISE, depthwise)):
            records.append(
                _record(
                    len(records),
                    kind,
                    group,
                    macs=macs // blocks,
                    moved=1000,
                    in_channels=BLOCK_IN_CHANNELS,
                )
            )
    if dense:
        records.append(
            _record(
                len(records),
                Kind.CONV_DENSE,
                "extras",
                macs=dense,
                moved=1000,
                in_channels=BLOCK_IN_CHANNELS,
            )
        )
    records.append(_record(len(records), Kind.LINEAR, "classifier", macs=linear, moved=1000))
    return tuple(records)


def _rows(noise: float = 0.0, count: int = 16, truth: np.ndarray = TRUTH) -> list[Observation]:
    """Networks that vary every feature but the stem's MACs (the same in every row)."""
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
        latency = float(features @ truth) * (1 + generator.normal(0, noise))
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


# -- the stem and the dense convs after it ----------------------------------------------------


def test_the_stem_counts_under_its_own_term_and_later_dense_convs_under_dense_macs() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),  # the stem
        torch.nn.Conv2d(32, 16, 3, padding=1, bias=False),  # a dense conv after it
    )
    records = count_model(model.eval(), (1, 3, 16, 16)).records
    stem, dense = (record for record in records if record.kind == Kind.CONV_DENSE)
    # 8x8 outputs of 32 channels, 3x3x3 each; then 8x8 of 16 channels, 3x3x32 each.
    assert (stem.macs, dense.macs) == (8 * 8 * 32 * 27, 8 * 8 * 16 * 288)
    assert (stem.kernel, stem.stride, stem.in_channels) == ((3, 3), 2, 3)
    assert (dense.kernel, dense.stride, dense.in_channels) == ((3, 3), 1, 32)
    names = CONV_KINDS.term_names
    for record, term in ((stem, "stem_macs"), (dense, "dense_macs")):
        features = dict(zip(names, op_features(record, CONV_KINDS, "fused"), strict=True))
        assert features[term] == record.macs / 1e9
        other = "dense_macs" if term == "stem_macs" else "stem_macs"
        assert features[other] == 0.0
        assert features["ops"] == 1.0
    groups = group_features(records, CONV_KINDS, "fused")
    total = dict(zip(names, sum(groups.values()), strict=True))
    assert total["stem_macs"] == pytest.approx(8 * 8 * 32 * 27 / 1e9)
    assert total["dense_macs"] == pytest.approx(8 * 8 * 16 * 288 / 1e9)
    assert total["pointwise_macs"] == total["depthwise_macs"] == total["linear_macs"] == 0.0


# -- what the rows resolved -------------------------------------------------------------------


def test_resolution_needs_an_interval_off_zero_and_a_feature_that_varies() -> None:
    features = np.array(
        [
            # varies, interval off 0 | varies, interval at 0 | same everywhere | absent |
            # the same but for float noise | varies
            [1.0, 1.0, 0.5, 0.0, 0.002, 64.0],
            [3.0, 2.0, 0.5, 0.0, 0.002 * (1 + 1e-9), 80.0],
        ]
    )
    ci95 = [(100.0, 200.0), (0.0, 50.0), (10.0, 20.0), (0.0, 0.0), (200.0, 300.0), (0.001, 0.01)]
    verdicts = resolution(CONV_KINDS, features, ci95)
    assert [resolved for resolved, _ in verdicts] == [True, False, False, False, False, True]
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
        "95% interval 200 .. 300 ms/GMAC excludes 0; 2 MMAC in every row: not separable from a "
        "fixed cost"
    )
    assert verdicts[5][1] == (
        "95% interval 0.001 .. 0.01 ms/op excludes 0; 64 kernels .. 80 kernels over the rows"
    )


def test_a_term_with_a_zero_coefficient_and_no_variation_is_unresolved() -> None:
    # Exact latencies: the stem costs nothing (TRUTH) and is the same in every row.
    profile = fit_profile(_rows(noise=0.0), name="exact", description="t", form_name="conv_kinds")
    assert profile.raw is not None
    assert profile.raw.parameters[STEM].name == "stem_macs"
    assert profile.raw.parameters[STEM].value == pytest.approx(0.0, abs=1e-6)
    stem = _support(profile, "stem_macs")
    assert stem.resolved is False
    assert stem.feature_range == pytest.approx((STEM_MACS / 1e9, STEM_MACS / 1e9))
    assert stem.why.endswith("100 kMAC in every row: not separable from a fixed cost")
    # No row has a dense conv after its stem: nothing to fit, the raw rate is 0.
    assert profile.raw.parameters[DENSE].value == 0.0
    dense = _support(profile, "dense_macs")
    assert dense.resolved is False
    assert dense.feature_range == (0.0, 0.0)
    assert dense.why.endswith("no fitted row has any")
    for name in ("pointwise_macs", "depthwise_macs", "linear_macs", "ops"):
        assert _support(profile, name).resolved, name
    # Ranges are the rows' own: the largest pointwise feature of any row, and shares in [0, 1].
    rows = _rows(noise=0.0)
    largest = max(
        sum(group_features(o.records, CONV_KINDS, "fused").values())[POINTWISE] for o in rows
    )
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
    dense, pointwise = synthetic.parameters[DENSE], synthetic.parameters[POINTWISE]
    # Tied in the fit: the same value, the same bootstrap, hence the same interval.
    assert dense.value == pointwise.value == pytest.approx(150.0, rel=0.03)
    assert dense.ci95 == pointwise.ci95
    assert all(sample[DENSE] == sample[POINTWISE] for sample in synthetic.bootstrap.coefficients)
    assert dense.readable.endswith("(prior: pointwise_macs's rate)")
    # The raw fit is kept, and is what `--prior none` predicts with.
    raw = synthetic.without_priors()
    assert raw.priors == [] and raw.raw is None
    assert raw.parameters[DENSE].value == 0.0
    assert synthetic.raw is not None
    assert raw.rows[0].fitted_ms == synthetic.raw.fitted_ms[0]
    # No row has a dense conv after its stem, so the tie moves nothing the rows fit: every
    # other coefficient and every row's prediction are the raw fit's.
    assert [p.value for i, p in enumerate(raw.parameters) if i != DENSE] == [
        p.value for i, p in enumerate(synthetic.parameters) if i != DENSE
    ]
    assert synthetic.raw.fitted_ms == [row.fitted_ms for row in synthetic.rows]
    # A prediction that uses the prior says so; one whose only dense conv is the stem does not.
    with_dense = predict_records(synthetic, _network(10**7, 10**6, 10**6, 8, dense=STEM_MACS))
    assert with_dense.priors == (rule.statement,)
    assert with_dense.terms_ms["dense_macs"] == pytest.approx(STEM_MACS / 1e9 * dense.value)
    stem_only = predict_records(synthetic, _network(10**7, 10**6, 10**6, 8))
    assert stem_only.priors == ()
    assert stem_only.terms_ms["dense_macs"] == 0.0
    raw_dense = predict_records(raw, _network(10**7, 10**6, 10**6, 8, dense=STEM_MACS))
    assert raw_dense.priors == ()
    assert raw_dense.terms_ms["dense_macs"] == 0.0


def test_no_prior_where_the_rows_resolve_the_rate() -> None:
    truth = TRUTH.copy()
    truth[DENSE] = 300.0
    generator = np.random.default_rng(3)
    observations = []
    for index in range(16):
        records = _network(
            pointwise=int(generator.uniform(2e6, 2e8)),
            depthwise=int(generator.uniform(2e5, 2e7)),
            linear=int(generator.uniform(1e5, 3e6)),
            blocks=int(generator.integers(4, 20)),
            dense=int(generator.uniform(1e6, 5e7)),  # after the stem, and varies: resolvable
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
    assert profile.parameters[DENSE].value == pytest.approx(300.0, rel=1e-6)


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
        _network(tenth["pointwise_macs"], tenth["depthwise_macs"], tenth["linear_macs"], 1),
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
    # A dense conv after the stem, which no row has, costing far less than the profile's
    # median error at the prior's rate (the top of its interval included).
    network = _network(10**8, 10**7, 10**6, 8, dense=5 * STEM_MACS)
    prediction = predict_records(synthetic, network)
    median = synthetic.quality.loo_median_abs_error
    dense = synthetic.parameters[DENSE]
    assert 0 < prediction.terms_ms["dense_macs"] / prediction.ms < median
    assert 5 * STEM_MACS / 1e9 * dense.ci95[1] < median * prediction.ms
    assert prediction.extrapolated == ()
    # The stem 5x every row's: free at its fitted rate, but the top of its interval (the rows
    # hardly bound it) could move the prediction by more than the median error: flagged.
    stem = synthetic.parameters[STEM]
    bigger_stem = predict_records(synthetic, _network(10**8, 10**7, 10**6, 8, stem=5 * STEM_MACS))
    assert bigger_stem.terms_ms["stem_macs"] == stem.value == 0.0
    assert 5 * STEM_MACS / 1e9 * stem.ci95[1] >= median * bigger_stem.ms
    assert bigger_stem.extrapolated is not None
    (entry,) = bigger_stem.extrapolated
    assert (entry.term, entry.times_outside) == ("stem_macs", pytest.approx(5.0))
    assert entry.detail == "500 kMAC, 5x the largest fitted row's 100 kMAC"


def test_real_weight_on_an_unresolved_term_is_flagged() -> None:
    # A stem that costs time but is the same in every row: a fixed cost to the fit, its rate
    # unresolved. In a network nearly all stem, at 2.5x the rows' (inside the range margin),
    # the prediction rests on that rate.
    truth = TRUTH.copy()
    truth[STEM] = 2000.0
    profile = fit_profile(
        _rows(noise=0.01, truth=truth), name="stem", description="t", form_name="conv_kinds"
    )
    stem = _support(profile, "stem_macs")
    assert not stem.resolved and stem.share_range[1] < 0.05
    assert stem.feature_range[1] * RANGE_MARGIN > 2.5 * STEM_MACS / 1e9
    prediction = predict_records(profile, _network(10**4, 10**3, 10**3, 1, stem=250_000))
    assert prediction.extrapolated is not None
    (entry,) = prediction.extrapolated
    assert entry.term == "stem_macs"
    share = prediction.terms_ms["stem_macs"] / prediction.ms
    assert share > RANGE_MARGIN * stem.share_range[1]
    assert entry.detail == (
        f"{share:.0%} of this prediction (its rate unresolved by the fit), against at most "
        f"{stem.share_range[1]:.1%} of any fitted row's"
    )
    assert entry.times_outside == pytest.approx(share / stem.share_range[1])


def test_a_network_nearly_all_dense_conv_rests_on_the_prior_and_says_so(
    synthetic: Profile,
) -> None:
    # As SSD-V1 on pixel1: a dense conv after the stem, which no row has, carries most of the
    # time at the prior's rate. No row's range to be a factor outside of: no factor.
    prediction = predict_records(synthetic, _network(10**4, 10**3, 10**3, 1, dense=250_000))
    assert prediction.extrapolated is not None
    (entry,) = prediction.extrapolated
    assert entry.term == "dense_macs"
    share = prediction.terms_ms["dense_macs"] / prediction.ms
    assert share > 0.1
    assert entry.detail == (
        f"250 kMAC; no fitted row has any; {share:.0%} of this prediction (dense convs costed "
        "at the pointwise rate: not measured on this device), against at most 0.0% of any "
        "fitted row's"
    )
    assert entry.times_outside is None


def test_the_raw_fit_flags_what_the_prior_would_have_costed(synthetic: Profile) -> None:
    # `--prior none`: the raw dense rate, 0 as no row has any, costs a big dense conv nothing;
    # the range check still names it, its 0 .. 0 interval bounding nothing.
    raw = synthetic.without_priors()
    assert raw.parameters[DENSE].ci95 == (0.0, 0.0)
    prediction = predict_records(raw, _network(10**7, 10**6, 10**6, 8, dense=50 * STEM_MACS))
    assert prediction.terms_ms["dense_macs"] == 0.0
    assert prediction.extrapolated is not None
    assert [entry.model_dump() for entry in prediction.extrapolated] == [
        {"term": "dense_macs", "detail": "5 MMAC; no fitted row has any", "times_outside": None}
    ]


# -- profiles on disk: older files, tampered files --------------------------------------------


def _without_support(data: dict[str, Any]) -> dict[str, Any]:
    """A profile of this schema without its optional parts: no support, priors or raw fit."""
    old = copy.deepcopy(data)
    for key in ("support", "priors", "raw"):
        old.pop(key, None)
    return old


def test_a_profile_without_support_loads_and_its_predictions_say_they_were_not_checked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.json"
    write_json_atomic(path, _without_support(json.loads(shipped_path("pixel1").read_text())))
    profile = load_profile(str(path))
    assert profile.support is None and profile.priors == [] and profile.raw is None
    assert load_profile(str(path), "none") == profile  # nothing to take away
    prediction = predict_records(profile, _network(10**7, 10**6, 10**6, 8, dense=STEM_MACS))
    assert prediction.extrapolated is None
    assert prediction.priors == ()
    assert prediction.to_json()["extrapolated"] is None
    environment = {"ABLATE_DEVICES_DIR": str(tmp_path), "COLUMNS": "400"}
    listing = runner.invoke(app, ["devices", "--json"], env=environment)
    assert listing.exit_code == 0, listing.output
    old = next(entry for entry in json.loads(listing.output) if entry["name"] == "old")
    assert old["support"] is None and old["priors"] == []
    shipped = next(entry for entry in json.loads(listing.output) if entry["name"] == "pixel1")
    assert [entry["resolved"] for entry in shipped["support"]] == [
        False,  # stem_macs
        False,  # dense_macs
        True,  # pointwise_macs
        True,  # depthwise_macs
        False,  # linear_macs
        False,  # ops
    ]
    table = runner.invoke(app, ["devices"], env=environment)
    assert table.exit_code == 0, table.output
    assert "not recorded (refit to record it)" in table.output
    assert "dense_macs (dense convs costed at the pointwise rate: not measured on this device)" in (
        table.output
    )


HINT = "; written by an older ablate: fit it again (ablate fit-device)"


@pytest.mark.parametrize(
    ("schema", "hint"),
    [
        # /1: the stem was part of dense_macs, and every per-kind form had one term fewer.
        ("ablate.device/1", HINT),
        ("onnx.profile/3", ""),
        (None, ""),
    ],
    ids=["older ablate", "not a device profile", "no schema"],
)
def test_a_profile_of_another_schema_is_refused_in_one_line(
    tmp_path: Path, schema: str | None, hint: str
) -> None:
    data = json.loads(shipped_path("pixel1").read_text())
    data["schema"] = schema
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["predict", "mobilenet_v3_small", "--device", str(path)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {path}: schema: unsupported schema {schema!r}{hint}; valid: ablate.device/2\n"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda data: data.update(
                parameters=[
                    data["parameters"][0],
                    {**data["parameters"][1], "value": 1.0},
                    {**data["parameters"][2], "value": 150.0},
                    *data["parameters"][3:],
                ]
            ),
            "priors[0]: dense_macs is 1, not pointwise_macs's rate 150: the prior is not applied",
        ),
        (
            lambda data: data.pop("raw"),
            "raw: missing: a profile with priors keeps the fit without them",
        ),
        (
            lambda data: data["support"].pop(3),
            "support: the file has support for stem_macs, dense_macs, pointwise_macs, "
            "linear_macs, ops; cost model 'conv_kinds' has these terms, in this order; valid: "
            "stem_macs, dense_macs, pointwise_macs, depthwise_macs, linear_macs, ops",
        ),
        (
            lambda data: data["support"][2].update(share_range=[0.2, 1.5]),
            "support[2].share_range[1]: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            lambda data: data["priors"][0].update(rate_of="bytes"),
            "priors[0].rate_of: 'bytes' is no term of cost model 'conv_kinds'; valid: "
            "stem_macs, dense_macs, pointwise_macs, depthwise_macs, linear_macs, ops",
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
    # Classifier rows: the stem's MACs vary, but its interval reaches 0; no dense conv follows
    # the stem; the linear layers and the kernel count move with everything else.
    assert resolved == {
        "stem_macs": False,
        "dense_macs": False,
        "pointwise_macs": True,
        "depthwise_macs": True,
        "linear_macs": False,
        "ops": False,
    }
    assert _support(profile, "dense_macs").why.endswith("; no fitted row has any")
    assert [prior.term for prior in profile.priors] == ["dense_macs"]
    assert profile.raw is not None and profile.raw.parameters[DENSE].value == 0.0
    # The fit leaves the stem free on pixel1, with the prior and without: its rate is 0.
    assert profile.parameters[STEM].value == profile.raw.parameters[STEM].value == 0.0
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

    profile = load_profile("pixel1")
    # Each at its own default resolution (300 and 320), as in experiments/detection.yaml.
    ssd = predict_variant("ssd_mobilenet_v1", {}, "pixel1")
    ssdlite = predict_variant("ssdlite_mobilenet_v1", {}, "pixel1")
    # 349.3 against 232.3 ms: SSD-V1's 161.5 ms of dense convs (below) on top of 187.8 ms for
    # the rest. Before the prior: 187.8 ms, faster than SSDLite-V1.
    assert ssd.ms / ssdlite.ms == pytest.approx(1.5038, rel=1e-3)
    # Its 16 dense convs after the stem (predictors, extra layers), 1.116198144 GMAC: the
    # 1.135638144 GMAC dense_macs had before the stem had its own term, less the stem's
    # 150x150x32 outputs of 3x3x3 MACs (19.44 MMAC). They cost time at the prior (the
    # pointwise rate), and the prediction says so; the stem is free on pixel1 (rate 0).
    dense = profile.parameters[DENSE].value
    assert ssd.terms_ms["dense_macs"] == pytest.approx(1.116198144 * dense, rel=1e-9)
    assert ssd.terms_ms["dense_macs"] > 0.4 * ssd.ms
    assert ssd.terms_ms["stem_macs"] == 0.0
    assert ssd.priors == ("dense convs costed at the pointwise rate: not measured on this device",)
    assert ssdlite.priors == ()  # its only dense conv is the stem
    assert ssd.extrapolated is not None
    flagged = {entry.term: entry for entry in ssd.extrapolated}
    assert set(flagged) == {"dense_macs", "pointwise_macs"}
    # No classifier row has a dense conv after its stem: no range to be a factor outside of.
    assert flagged["dense_macs"].times_outside is None
    assert flagged["dense_macs"].detail.startswith(
        "1.12 GMAC; no fitted row has any; 46% of this prediction (dense convs costed at the "
        "pointwise rate"
    )
    # 1.0323 GMAC of pointwise convs against the largest row's 308.4 MMAC (large 224/1.25).
    largest = _support(profile, "pointwise_macs").feature_range[1]
    assert largest == pytest.approx(0.308376768)
    pointwise_gmac = ssd.terms_ms["pointwise_macs"] / profile.parameters[POINTWISE].value
    assert flagged["pointwise_macs"].times_outside == pytest.approx(pointwise_gmac / largest)
    assert flagged["pointwise_macs"].times_outside == pytest.approx(3.3474, rel=1e-4)
    # The raw fit still has the failure the issue reported, now flagged: its dense rate is 0
    # because no row has any, which bounds nothing.
    raw = predict_variant("ssd_mobilenet_v1", {}, "pixel1", prior="none")
    assert raw.ms < ssdlite.ms and raw.terms_ms["dense_macs"] == 0.0
    assert raw.ms == pytest.approx(ssd.ms - ssd.terms_ms["dense_macs"])
    assert raw.extrapolated is not None
    raw_flagged = {entry.term: entry for entry in raw.extrapolated}
    assert raw_flagged["dense_macs"].detail == "1.12 GMAC; no fitted row has any"
    assert raw_flagged["dense_macs"].times_outside is None


@pytest.mark.slow
def test_table_6_rows_keep_their_errors_with_the_prior() -> None:
    from ablate.devices.api import predict_variant

    errors = {}
    for name, (model, factors, published) in TABLE_6.items():
        prediction = predict_variant(model, {"resolution": 320, **factors}, "pixel1")
        errors[name] = prediction.ms / published - 1
    # The full-width rows are within 5.2% (issue 26's criterion; V3-Small reduced is the worst,
    # 5.1% fast). The stem has its own rate, so the prior ties only the dense convs after the
    # stem, which no classifier row has: the fit is the same with it as without. The narrow
    # ones are 11-33% fast: the extra layers and predictors, which do not narrow, dominate
    # them as in no row of the profile.
    assert max(abs(errors[name]) for name in FULL_WIDTH) <= 0.052, errors
    narrow = [errors[name] for name in TABLE_6 if name not in FULL_WIDTH]
    assert all(-0.33 <= error <= -0.11 for error in narrow), errors


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
