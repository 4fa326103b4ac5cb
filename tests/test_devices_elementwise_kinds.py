"""A bandwidth per kind of kernel without MACs: per byte a swish or a sigmoid (an exponential
per element) is not an add or an h-swish. On ExecuTorch fp32 one shared elementwise bandwidth
charged the calibration networks' swish kernels a third of their time and their h-swish,
adds and SE pools three to four times theirs (docs/calibration.md)."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, PRIORS, op_features
from ablate.devices.fit import fit_profile
from ablate.devices.observations import count_variant
from tests.synthetic_kernels import assert_recovered, exact_observations
from tests.test_devices_image_term import TRUTH as IMAGE_TRUTH

KINDS = FORMS["kernel_sizes_bytes_elementwise_kinds"]
IMAGE = FORMS["kernel_sizes_bytes_image"]
SPLIT = ("sigmoid_bytes", "pool_bytes", "binary_bytes", "other_elementwise_bytes")


def test_each_kernel_without_macs_is_charged_to_one_bandwidth_by_its_kind() -> None:
    assert KINDS.kernels
    assert [n for n in KINDS.term_names if n not in IMAGE.term_names] == list(SPLIT)
    assert [n for n in IMAGE.term_names if n not in KINDS.term_names] == ["elementwise_bytes"]
    # V2 with swish and SE behind sigmoid gates: every elementwise kind at once.
    _, counted = count_variant(
        "mobilenet_v2", {"resolution": 96, "activation": "swish", "se": "on", "se_gate": "sigmoid"}
    )
    columns = [KINDS.term_names.index(name) for name in SPLIT]
    elementwise = IMAGE.term_names.index("elementwise_bytes")
    charged: dict[str, set[Kind]] = {name: set() for name in SPLIT}
    for record in counted.records:
        mine, old = op_features(record, KINDS, "fused"), op_features(record, IMAGE, "fused")
        split = mine[columns]
        # What the shared bandwidth charged, one of the four now charges, and nothing else.
        assert split.sum() == pytest.approx(old[elementwise])
        assert np.count_nonzero(split) <= 1
        for name, value in zip(SPLIT, split, strict=True):
            if value:
                charged[name].add(record.kind)
    assert charged == {
        "sigmoid_bytes": {Kind.SILU, Kind.SIGMOID},
        "pool_bytes": {Kind.SE_POOL, Kind.GLOBAL_POOL},
        "binary_bytes": {Kind.SE_MULTIPLY, Kind.RESIDUAL_ADD},
        "other_elementwise_bytes": set(),  # V2's ReLU6s run inside the convs
    }
    _, large = count_variant("mobilenet_v3_large", {"resolution": 96})
    other = {
        record.kind
        for record in large.records
        if op_features(record, KINDS, "fused")[KINDS.term_names.index(SPLIT[3])]
    }
    assert other == {Kind.HARDSWISH, Kind.HARDSIGMOID}


def test_an_unmeasured_elementwise_kind_borrows_the_simplest_ones_bandwidth() -> None:
    borrowed = {rule.term: rule.rate_of for rule in PRIORS if rule.term in SPLIT}
    assert borrowed == dict.fromkeys(SPLIT[:3], "other_elementwise_bytes")


# A device on which a swish costs 8 times an add per byte and an SE pool half of one: the
# image test's made-up costs (ms/GMAC, ms/GB, ms/kernel) with its one elementwise bandwidth
# split four ways.
TRUTH = {
    **{name: cost for name, cost in IMAGE_TRUTH.items() if name != "elementwise_bytes"},
    "sigmoid_bytes": 80.0,
    "pool_bytes": 5.0,
    "binary_bytes": 10.0,
    "other_elementwise_bytes": IMAGE_TRUTH["elementwise_bytes"],
}
NETWORKS = (
    ("mobilenet_v3_small", {"resolution": 96, "stem_channels": 8}),
    ("mobilenet_v3_small", {"resolution": 128, "kernel": 7, "se": "off", "activation": "swish"}),
    ("mobilenet_v3_small", {"resolution": 96, "kernel": 3, "stem_channels": 32}),
    ("mobilenet_v3_small", {"width": 0.75, "resolution": 112, "kernel": 5, "activation": "relu"}),
    ("mobilenet_v2", {"resolution": 64, "stem_channels": 48, "activation": "swish"}),
    ("mobilenet_v2", {"width": 0.5, "resolution": 128, "kernel": 5, "stem_channels": 16}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 192, "kernel": 7, "activation": "hswish"}),
    ("mobilenet_v2", {"width": 0.5, "resolution": 96, "se": "on", "se_gate": "sigmoid"}),
    ("mobilenet_v1", {"resolution": 64, "stem_channels": 24}),
    ("mobilenet_v3_large", {"width": 0.35, "resolution": 96, "kernel": 7}),
    ("mobilenet_v3_large", {"width": 0.5, "resolution": 224, "se": "off", "kernel": 3}),
    # Enough swish, sigmoid, 5x5 and 7x7 networks that no bootstrap resample misses them all.
    ("mobilenet_v1", {"resolution": 96, "activation": "swish", "kernel": 5}),
    ("mobilenet_v3_large", {"width": 0.35, "resolution": 128, "activation": "swish", "kernel": 5}),
    ("mobilenet_v3_small", {"width": 0.5, "resolution": 160, "se_gate": "sigmoid", "kernel": 7}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 96, "activation": "swish", "kernel": 7}),
)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_known_elementwise_bandwidths_are_recovered_and_the_form_chosen() -> None:
    observations = exact_observations(NETWORKS, KINDS, TRUTH)
    profile = fit_profile(observations, name="kinds", description="known elementwise costs")
    assert profile.form == KINDS.name
    assert [prior.term for prior in profile.priors] == ["dense_macs"]  # no dense conv here
    assert_recovered(profile, observations, TRUTH)
    # One shared bandwidth cannot price a swish and an add apart: no fit is exact.
    shared = fit_profile(observations, name="shared", description="", form_name=IMAGE.name)
    assert shared.quality.loo_max_abs_error > 1e-3
