"""Matrix-vector products and h-swish's extra cost per byte: at batch 1 SE's convs (one pixel
per image) read each weight once, as a linear layer does, where a pointwise conv over an image
is a matrix multiply; and eager PyTorch's hardswish_ costs more per byte than a clamp. One
rate for both kinds of pointwise conv, and one bandwidth for both activations, put eager's
share gaps and V3-Large / V2 ratio where the kernels say they are not (docs/calibration.md)."""

from __future__ import annotations

import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, PRIORS, Form, op_features
from ablate.devices.observations import count_variant
from ablate.devices.properties import device_properties
from tests.synthetic_kernels import assert_chosen_over, exact_observations
from tests.test_devices_elementwise_kinds import NETWORKS
from tests.test_devices_kind_overheads import TRUTH as OVERHEADS_TRUTH

MATRIX_VECTOR = FORMS["kernel_sizes_bytes_kind_overheads_matrix_vector"]
OVERHEADS = FORMS["kernel_sizes_bytes_kind_overheads"]


def _summed(model: str, form: Form, term: str) -> tuple[float, set[Kind], int]:
    """The term's feature over the network's unfused records (MACs, bytes or kernels), the
    kinds it charged and how many records."""
    _, counted = count_variant(model, {})
    column = form.term_names.index(term)
    total, kinds, records = 0.0, set(), 0
    for record in counted.records:
        value = op_features(record, form, "unfused")[column]
        if value:
            total += value * 1e9
            kinds.add(record.kind)
            records += 1
    return total, kinds, records


def test_se_convs_and_linear_layers_are_the_matrix_vector_products() -> None:
    assert MATRIX_VECTOR.kernels
    assert set(MATRIX_VECTOR.term_names) ^ set(OVERHEADS.term_names) == {
        "pointwise_macs",
        "linear_macs",
        "pointwise_gemm_macs",
        "matrix_vector_macs",
        "hard_activation_extra_bytes",
    }
    # V3-Large's 8 SE blocks squeeze C channels to S (C / 4 rounded to 8) and back, 2 C S MACs
    # each; its head is two linear layers, 960 -> 1280 -> 1000 (MobileNetV3 Table 1).
    se = 2 * (72 * 24 + 2 * 120 * 32 + 480 * 120 + 2 * 672 * 168 + 2 * 960 * 240)
    head = 960 * 1280 + 1280 * 1000
    macs, kinds, records = _summed("mobilenet_v3_large", MATRIX_VECTOR, "matrix_vector_macs")
    assert (round(macs), kinds, records) == (se + head, {Kind.CONV_POINTWISE, Kind.LINEAR}, 18)
    # Every pointwise and linear MAC is in one of the two terms: the old form's two in sum.
    gemm, _, _ = _summed("mobilenet_v3_large", MATRIX_VECTOR, "pointwise_gemm_macs")
    pointwise, _, _ = _summed("mobilenet_v3_large", OVERHEADS, "pointwise_macs")
    linear, _, _ = _summed("mobilenet_v3_large", OVERHEADS, "linear_macs")
    assert round(gemm + macs) == round(pointwise + linear)
    assert round(linear) == head
    # V2 has no SE, and its 1280-channel conv runs over 7 x 7 pixels: only the classifier.
    assert round(_summed("mobilenet_v2", MATRIX_VECTOR, "matrix_vector_macs")[0]) == 1280 * 1000


def test_hard_activations_pay_an_extra_cost_per_byte_beyond_the_shared_bandwidth() -> None:
    _, counted = count_variant("mobilenet_v3_large", {"resolution": 96})
    extra = MATRIX_VECTOR.term_names.index("hard_activation_extra_bytes")
    shared = MATRIX_VECTOR.term_names.index("other_elementwise_bytes")
    charged = set()
    for record in counted.records:
        features = op_features(record, MATRIX_VECTOR, "unfused")
        if record.kind in (Kind.HARDSWISH, Kind.HARDSIGMOID):
            assert features[extra] == features[shared] > 0
            charged.add(record.kind)
        else:
            assert features[extra] == 0
    assert charged == {Kind.HARDSWISH, Kind.HARDSIGMOID}


def test_a_dense_conv_borrows_the_pointwise_gemm_rate() -> None:
    assert any(
        rule.term == "dense_macs" and rule.rate_of == "pointwise_gemm_macs" for rule in PRIORS
    )


# A device that runs every batch norm and activation as a kernel of its own (eager PyTorch's
# unfused view), whose SE convs and linear layers run at 40 ms/GMAC (25 GMAC/s) against 6 for
# the pointwise GEMMs, and whose h-swish costs 10 ms/GB beyond a clamp's 15: the per-kind
# overheads test's costs with those three and a batch norm's call.
TRUTH = {
    **{
        name: cost
        for name, cost in OVERHEADS_TRUTH.items()
        if name not in ("pointwise_macs", "linear_macs")
    },
    "pointwise_gemm_macs": OVERHEADS_TRUTH["pointwise_macs"],
    "matrix_vector_macs": 40.0,
    "hard_activation_extra_bytes": 10.0,
    "norm_ops": 0.003,
}


# Slow: fits every candidate form with leave-one-out and its nested selection (seconds).
@pytest.mark.slow
def test_known_matrix_vector_and_hswish_costs_are_recovered_and_the_form_chosen() -> None:
    assert TRUTH["pointwise_gemm_macs"] == 6.0
    observations = exact_observations(NETWORKS, MATRIX_VECTOR, TRUTH, view="unfused")
    # One rate for every pointwise conv, one bandwidth for h-swish and a clamp: no exact fit.
    profile = assert_chosen_over(
        observations, MATRIX_VECTOR, TRUTH, rival=OVERHEADS, view="unfused"
    )
    # A matrix report reads the pointwise rate from the GEMM term, the elementwise bandwidth
    # from the clamps' (h-swish's extra apart) and the overhead from the pointwise convs'.
    properties = device_properties(profile)
    assert properties.depthwise_to_pointwise == pytest.approx(TRUTH["depthwise3_macs"] / 6.0)
    assert properties.elementwise_gb_per_s == pytest.approx(1e3 / TRUTH["other_elementwise_bytes"])
    assert properties.overhead_us == pytest.approx(1e3 * TRUTH["pointwise_ops"])
