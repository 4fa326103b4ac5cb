"""A fixed cost per kind of kernel: eager PyTorch's oneDNN call costs about 80 µs per
depthwise conv and 15-20 per pointwise conv whatever their size, where one `conv_ops` charged
every conv the same (docs/calibration.md)."""

from __future__ import annotations

import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, op_features
from ablate.devices.observations import count_variant
from tests.synthetic_kernels import assert_chosen_over, exact_observations
from tests.test_devices_elementwise_kinds import NETWORKS
from tests.test_devices_elementwise_kinds import TRUTH as KINDS_TRUTH

OVERHEADS = FORMS["kernel_sizes_bytes_kind_overheads"]
KINDS = FORMS["kernel_sizes_bytes_elementwise_kinds"]
CONV_OVERHEADS = ("pointwise_ops", "depthwise_ops", "dense_ops", "linear_ops")
ELEMENTWISE_OVERHEADS = ("norm_ops", "activation_ops", "pool_ops", "binary_ops", "other_ops")


def test_each_kernel_pays_the_overhead_of_its_kind_once() -> None:
    assert OVERHEADS.kernels
    # The elementwise-kinds form's rates and bandwidths (its stem untiled, no image term),
    # with the two overheads split by kind.
    assert set(OVERHEADS.term_names) ^ set(KINDS.term_names) == {
        "stem_tiled_macs",
        "stem_macs",
        "image_bytes",
        "conv_ops",
        "elementwise_ops",
        *CONV_OVERHEADS,
        *ELEMENTWISE_OVERHEADS,
    }
    # Unfused V3-Large, as eager PyTorch runs it: a batch norm after every conv.
    _, counted = count_variant("mobilenet_v3_large", {"resolution": 96})
    columns = [
        OVERHEADS.term_names.index(name) for name in (*CONV_OVERHEADS, *ELEMENTWISE_OVERHEADS)
    ]
    charged: dict[str, set[Kind]] = {}
    counts: dict[str, int] = {}
    for record in counted.records:
        split = op_features(record, OVERHEADS, "unfused")[columns]
        shared = op_features(record, KINDS, "unfused")
        both = (
            shared[KINDS.term_names.index("conv_ops")]
            + shared[KINDS.term_names.index("elementwise_ops")]
        )
        assert split.sum() == both  # one kernel, one overhead: the one of its kind
        for name, value in zip((*CONV_OVERHEADS, *ELEMENTWISE_OVERHEADS), split, strict=True):
            if value:
                charged.setdefault(name, set()).add(record.kind)
                counts[name] = counts.get(name, 0) + 1
    assert charged == {
        "pointwise_ops": {Kind.CONV_POINTWISE},
        "depthwise_ops": {Kind.CONV_DEPTHWISE},
        "dense_ops": {Kind.CONV_DENSE},
        "linear_ops": {Kind.LINEAR},
        "norm_ops": {Kind.BATCH_NORM},
        "activation_ops": {Kind.RELU, Kind.HARDSWISH, Kind.HARDSIGMOID},
        "pool_ops": {Kind.SE_POOL, Kind.GLOBAL_POOL},
        "binary_ops": {Kind.SE_MULTIPLY, Kind.RESIDUAL_ADD},
    }
    # V3-Large: a stem, 15 depthwise convs, 2 linear layers, 8 SE blocks (two 1x1 convs each).
    assert (counts["dense_ops"], counts["depthwise_ops"], counts["linear_ops"]) == (1, 15, 2)


# A device on which a depthwise conv's call costs 80 µs and a pointwise one's 15, as eager
# PyTorch's do on this host: the elementwise-kinds test's rates and bandwidths (its stem
# untiled) with an overhead per kind of kernel.
TRUTH = {
    **{
        name: cost
        for name, cost in KINDS_TRUTH.items()
        if name not in ("stem_tiled_macs", "image_bytes", "conv_ops", "elementwise_ops")
    },
    "stem_macs": KINDS_TRUTH["stem_tiled_macs"],
    "pointwise_ops": 0.015,
    "depthwise_ops": 0.08,
    "dense_ops": 0.1,
    "linear_ops": 0.01,
    "activation_ops": 0.002,
    "pool_ops": 0.004,
    "binary_ops": 0.001,
}


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_known_overheads_per_kind_are_recovered_and_the_form_chosen() -> None:
    observations = exact_observations(NETWORKS, OVERHEADS, TRUTH)
    # One overhead per conv and one per elementwise kernel cannot price them apart.
    assert_chosen_over(observations, OVERHEADS, TRUTH, rival=KINDS)
