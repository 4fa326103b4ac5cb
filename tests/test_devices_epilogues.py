"""Epilogue costs: activations (and adds) that run inside a fused conv's kernel, priced per
output byte by activation (ONNX Runtime's MLAS applies a Clip or HardSwish as a pass over each
output tile; a ReLU is free in registers), and the form choice when kernels are timed."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.counting.kinds import Kind
from ablate.devices import fit as fitting
from ablate.devices.costs import FORMS, is_kernel, op_features, runs_inside
from ablate.devices.fit import Observation, fit_profile
from ablate.devices.observations import count_variant
from ablate.devices.predict import predict_records
from ablate.devices.properties import device_properties
from tests.synthetic_kernels import assert_chosen_over, exact_observations
from tests.test_devices_elementwise_kinds import NETWORKS as KIND_NETWORKS

EPILOGUES = FORMS["kernel_sizes_bytes_epilogues"]
TILED = FORMS["kernel_sizes_bytes_tiled_stem"]
EPILOGUE_TERMS = [term.name for term in EPILOGUES.terms if term.inside]
MATRIX_VECTOR = FORMS["kernel_sizes_bytes_epilogues_matrix_vector"]


def _index(name: str) -> int:
    return EPILOGUES.term_names.index(name)


def test_the_epilogue_form_is_the_tiled_stem_form_plus_one_term_per_activation() -> None:
    assert EPILOGUES.kernels
    shared = [name for name in EPILOGUES.term_names if name not in EPILOGUE_TERMS]
    assert shared == list(TILED.term_names)
    assert EPILOGUE_TERMS == [
        "epilogue_relu_bytes",
        "epilogue_clamp_bytes",
        "epilogue_hswish_bytes",
        "epilogue_gate_bytes",
        "epilogue_add_bytes",
    ]
    assert all(term.feature == "bytes" for term in EPILOGUES.terms if term.inside)
    # No other base form but its matrix-vector variant counts what runs inside a kernel.
    assert [
        name
        for name, form in FORMS.items()
        if form.cache_bytes is None
        and form.channel_block is None
        and any(t.inside for t in form.terms)
    ] == [EPILOGUES.name, MATRIX_VECTOR.name]


def test_a_fused_relu6_is_charged_its_output_bytes_on_the_clamp_epilogue_only() -> None:
    records = count_variant("mobilenet_v2", {"resolution": 96})[1].records
    relu6 = [record for record in records if record.kind == Kind.RELU6]
    # The stem, block 0's depthwise conv, two per inverted residual (16 blocks), the last conv.
    assert len(relu6) == 1 + 1 + 2 * 16 + 1
    clamp = _index("epilogue_clamp_bytes")
    for record in relu6:
        assert record.fused_into is not None and runs_inside(record, "fused")
        assert not is_kernel(record, "fused")
        features = op_features(record, EPILOGUES, "fused")
        assert record.bytes_written == 4 * record.output_elements
        assert features[clamp] == pytest.approx(record.bytes_written / 1e9)
        assert np.count_nonzero(features) == 1
        # Unfused, the ReLU6 is a kernel of its own: elementwise traffic and a launch, no
        # epilogue.
        unfused = op_features(record, EPILOGUES, "unfused")
        assert not runs_inside(record, "unfused")
        assert unfused[clamp] == 0 and unfused[_index("elementwise_ops")] == 1
    # The stem's ReLU6: 16 x 48 x 48 fp32 outputs at 96 px (width 1.0 gives 32 channels).
    stem = relu6[0]
    assert stem.output_shape == (1, 32, 48, 48)
    assert op_features(stem, EPILOGUES, "fused")[clamp] == pytest.approx(32 * 48 * 48 * 4 / 1e9)
    # What runs as a kernel is costed as the tiled-stem form costs it.
    shared = [EPILOGUES.term_names.index(name) for name in TILED.term_names]
    for record in records:
        mine, theirs = op_features(record, EPILOGUES, "fused"), op_features(record, TILED, "fused")
        assert np.array_equal(mine[shared], theirs)


def test_an_absorbed_hswish_moves_from_its_own_kernel_to_the_hswish_epilogue() -> None:
    records = count_variant("mobilenet_v3_small", {"resolution": 96})[1].records
    hswish = [r for r in records if r.kind == Kind.HARDSWISH and is_kernel(r, "fused")]
    assert hswish
    absorbed = frozenset({Kind.HARDSWISH})
    epilogue, ops = _index("epilogue_hswish_bytes"), _index("elementwise_ops")
    for record in hswish:
        own = op_features(record, EPILOGUES, "fused")
        assert own[ops] == 1 and own[epilogue] == 0
        inside = op_features(record, EPILOGUES, "fused", absorbed)
        assert inside[epilogue] == pytest.approx(record.bytes_written / 1e9)
        assert np.count_nonzero(inside) == 1
    # Views and allocations run nowhere, absorbed or not.
    for record in records:
        if record.kind in (Kind.VIEW, Kind.ALLOCATE, Kind.DROPOUT):
            assert not runs_inside(record, "fused", frozenset({record.kind}))


# A made-up device that runs every h-swish inside the conv before it and pays for it, and
# for a ReLU6, a pass over the conv's output (ms/GB); a ReLU is free.
TRUTH = {
    "stem_tiled_macs": 80.0,
    "pointwise_macs": 25.0,
    "depthwise3_macs": 150.0,
    "depthwise5_macs": 110.0,
    "depthwise7_macs": 95.0,
    "linear_macs": 60.0,
    "conv_bytes": 20.0,
    "elementwise_bytes": 40.0,
    "conv_ops": 0.004,
    "elementwise_ops": 0.002,
    "epilogue_clamp_bytes": 30.0,
    "epilogue_hswish_bytes": 45.0,
}
NETWORKS = (
    ("mobilenet_v3_small", {"resolution": 96}),
    ("mobilenet_v3_small", {"resolution": 128, "kernel": 7, "se": "off"}),
    ("mobilenet_v3_small", {"width": 0.5, "resolution": 160, "kernel": 3}),
    ("mobilenet_v3_small", {"width": 0.75, "resolution": 112, "kernel": 5, "activation": "relu"}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 96}),
    ("mobilenet_v2", {"width": 0.5, "resolution": 128, "kernel": 5}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 112, "kernel": 7, "activation": "hswish"}),
    ("mobilenet_v1", {"width": 0.25, "resolution": 128}),
    ("mobilenet_v3_large", {"width": 0.35, "resolution": 96, "kernel": 7}),
    ("mobilenet_v3_large", {"width": 0.5, "resolution": 96, "se": "off", "kernel": 3}),
)


@pytest.fixture(scope="module")
def observations() -> list[Observation]:
    return exact_observations(NETWORKS, EPILOGUES, TRUTH, frozenset({Kind.HARDSWISH}))


def test_known_epilogue_costs_are_recovered_and_the_form_is_chosen(
    observations: list[Observation],
) -> None:
    profile = fit_profile(observations, name="epilogues", description="known epilogue costs")
    # Only the epilogue form predicts held-out networks exactly: with every kernel timed the
    # lowest leave-one-out error wins, however many coefficients it has.
    assert profile.form == EPILOGUES.name
    assert profile.quality.selection == fitting.SELECTION[True]
    assert [entry.kind for entry in profile.absorbed] == ["hardswish"]
    assert profile.quality.loo_max_abs_error < 1e-6
    values = {parameter.name: parameter.value for parameter in profile.parameters}
    for name, true in TRUTH.items():
        assert values[name] == pytest.approx(true, rel=1e-5), name
    assert values["epilogue_relu_bytes"] == pytest.approx(0.0, abs=1e-6)
    for observation in observations:
        predicted = predict_records(profile, observation.records).ms
        assert predicted == pytest.approx(observation.latency_ms, rel=1e-6)
    # Forcing the tiled-stem form, which prices no epilogue, leaves a real error.
    tiled = fit_profile(observations, name="tiled", description="", form_name=TILED.name)
    assert tiled.quality.selection == "given"
    assert tiled.quality.loo_max_abs_error > 0.01


def _design(features: np.ndarray, latency: np.ndarray) -> fitting._Design:
    rows = len(latency)
    return fitting._Design(features, latency, latency, np.arange(rows), rows)


def test_kernel_rows_choose_the_lowest_error_and_whole_networks_the_one_standard_error_form() -> (
    None
):
    """Two forms whose leave-one-out errors differ by less than one standard error: on
    whole-network rows the simpler wins; with every network's kernels timed, the lower error."""
    generator = np.random.default_rng(3)
    rows = 24
    size = generator.uniform(1, 3, rows)
    other = generator.uniform(0, 1, rows)
    latency = 2.0 * size + 0.1 * other + generator.normal(0, 0.12, rows)
    simple, richer = FORMS["macs"], FORMS["roofline_sum"]
    designs = {
        simple.name: _design(np.column_stack([size, np.ones(rows)]), latency),
        richer.name: _design(np.column_stack([size, other, np.ones(rows)]), latency),
    }
    loo = {name: fitting.leave_one_out(design) for name, design in designs.items()}
    errors = {name: fitting._relative_errors(value, latency) for name, value in loo.items()}
    better = np.mean(errors[richer.name])
    assert better < np.mean(errors[simple.name])
    assert np.mean(errors[simple.name]) <= better + np.std(errors[richer.name], ddof=1) / np.sqrt(
        rows
    )
    chosen, _ = fitting._select([simple, richer], designs, latency)
    assert chosen is simple
    chosen, _ = fitting._select([simple, richer], designs, latency, kernels_timed=True)
    assert chosen is richer
    # A tie (a richer form whose extra term the fit leaves at 0) goes to the simpler.
    tied = {
        simple.name: designs[simple.name],
        richer.name: _design(np.column_stack([size, np.zeros(rows), np.ones(rows)]), latency),
    }
    chosen, _ = fitting._select([simple, richer], tied, latency, kernels_timed=True)
    assert chosen is simple


def test_the_matrix_vector_variant_splits_rates_overheads_and_bandwidths() -> None:
    replaced = {
        "pointwise_macs": ["pointwise_gemm_macs"],
        "linear_macs": ["matrix_vector_macs"],
        "elementwise_bytes": [
            "sigmoid_bytes", "pool_bytes", "binary_bytes", "other_elementwise_bytes"
        ],
        "conv_ops": ["other_conv_ops", "matrix_vector_ops"],
    }  # fmt: skip
    expected = [new for name in EPILOGUES.term_names for new in replaced.get(name, [name])]
    assert list(MATRIX_VECTOR.term_names) == expected
    assert MATRIX_VECTOR.kernels and MATRIX_VECTOR.term_names[-1] == "outside_ops"


def test_se_convs_and_the_classifier_pay_the_matrix_vector_rate_and_overhead() -> None:
    records = count_variant("mobilenet_v3_small", {"resolution": 96})[1].records
    column = {name: index for index, name in enumerate(MATRIX_VECTOR.term_names)}
    charged: dict[str, list[int]] = {name: [] for name in column}
    for record in records:
        if not is_kernel(record, "fused"):
            continue
        features = op_features(record, MATRIX_VECTOR, "fused")
        for name, index in column.items():
            if features[index]:
                charged[name].append(record.index)
        if record.kind in (Kind.CONV_POINTWISE, Kind.LINEAR):
            one_pixel = record.kind is Kind.LINEAR or record.output_shape[2:] == (1, 1)
            macs = "matrix_vector_macs" if one_pixel else "pointwise_gemm_macs"
            assert features[column[macs]] == pytest.approx(record.macs / 1e9)
            overhead = "matrix_vector_ops" if one_pixel else "other_conv_ops"
            assert (features[column[overhead]], features[column["conv_bytes"]] > 0) == (1, True)
        if record.kind is Kind.SE_POOL:
            assert features[column["pool_bytes"]] > 0 and features[column["elementwise_ops"]] == 1
    # V3-Small: 9 SE blocks of two 1-pixel convs, and two linear layers (576 -> 1024 -> 1000).
    assert len(charged["matrix_vector_ops"]) == 2 * 9 + 2
    assert len(charged["matrix_vector_macs"]) == 2 * 9 + 2
    # Every other conv: the stem, 11 depthwise, and the pointwise convs over more than one
    # pixel (block 0 has no expansion: 1 + 2 x 10, and the last stage's 96 -> 576).
    assert len(charged["other_conv_ops"]) == 1 + 11 + 1 + 2 * 10 + 1
    assert len(charged["pool_bytes"]) == 9 + 1  # SE's squeezes and the global pool
    assert len(charged["binary_bytes"]) == 9 + 6  # SE's multiplies and the residual adds


# A made-up ONNX Runtime: matrix-vector products at the weights' bandwidth with an overhead of
# their own, every h-swish run inside the conv before it, and SE's pool and multiply priced by
# kind (ms/GMAC, ms/GB, ms per kernel).
MATRIX_VECTOR_TRUTH = {
    **{
        name: value
        for name, value in TRUTH.items()
        if name not in ("pointwise_macs", "linear_macs", "elementwise_bytes", "conv_ops")
    },
    "pointwise_gemm_macs": 25.0,
    "matrix_vector_macs": 140.0,
    "sigmoid_bytes": 70.0,
    "pool_bytes": 90.0,
    "binary_bytes": 55.0,
    "other_elementwise_bytes": 30.0,
    "other_conv_ops": 0.004,
    "matrix_vector_ops": 0.009,
}


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_known_matrix_vector_costs_are_recovered_and_that_form_is_chosen() -> None:
    # The elementwise kinds' networks: enough swish and sigmoid gates to resolve their
    # bandwidth in every bootstrap resample.
    observations = exact_observations(
        KIND_NETWORKS, MATRIX_VECTOR, MATRIX_VECTOR_TRUTH, frozenset({Kind.HARDSWISH})
    )
    profile = assert_chosen_over(observations, MATRIX_VECTOR, MATRIX_VECTOR_TRUTH, rival=EPILOGUES)
    assert [entry.kind for entry in profile.absorbed] == ["hardswish"]
    # The matrix report reads the overhead from the other convs' term.
    assert device_properties(profile).overhead_us == pytest.approx(1e3 * 0.004)
