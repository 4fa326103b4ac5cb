"""The image term: runtimes convert (int8) and lay out (NCHW to NHWC) the network's input
before the stem, at a cost that follows the image and not the stem's channels (ExecuTorch
int8 here: about 11 ns per stem output pixel plus 7 per tile of 16 output channels)."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import FORMS, IMAGE_BYTES_PER_ELEMENT, op_features
from ablate.devices.observations import count_variant
from tests.synthetic_kernels import assert_chosen_over, exact_observations

IMAGE = FORMS["kernel_sizes_bytes_image"]
TILED = FORMS["kernel_sizes_bytes_tiled_stem"]


def test_only_the_stem_reads_the_image_and_every_other_feature_is_the_tiled_forms() -> None:
    assert IMAGE.kernels and IMAGE_BYTES_PER_ELEMENT == 4
    assert [name for name in IMAGE.term_names if name not in TILED.term_names] == ["image_bytes"]
    records = count_variant("mobilenet_v2", {"resolution": 96, "stem_channels": 16})[1].records
    column = IMAGE.term_names.index("image_bytes")
    charged = [r for r in records if op_features(r, IMAGE, "fused")[column] > 0]
    assert [(r.kind, r.group, r.output_shape[1]) for r in charged] == [
        (Kind.CONV_DENSE, "stem", 16)
    ]
    # 3 x 96 x 96 fp32 values, whatever the stem's 16 filters.
    assert op_features(charged[0], IMAGE, "fused")[column] == pytest.approx(3 * 96 * 96 * 4 / 1e9)
    shared = [IMAGE.term_names.index(name) for name in TILED.term_names]
    for record in records:
        mine, theirs = op_features(record, IMAGE, "fused"), op_features(record, TILED, "fused")
        assert np.array_equal(mine[shared], theirs)


# A device whose stem row holds the image's conversion at 20 ms/GB (50 GB/s), beside
# made-up kernel costs in the image form's units (ms/GMAC, ms/GB, ms/kernel).
TRUTH = {
    "stem_tiled_macs": 40.0,
    "pointwise_macs": 6.0,
    "depthwise3_macs": 55.0,
    "depthwise5_macs": 90.0,
    "depthwise7_macs": 600.0,
    "linear_macs": 20.0,
    "image_bytes": 20.0,
    "conv_bytes": 5.0,
    "elementwise_bytes": 15.0,
    "conv_ops": 0.001,
    "elementwise_ops": 0.002,
}
# Stems of 1, 2 and 3 tiles of 16 filters (stem_channels scales with the width) at several
# resolutions, so that the image and the stem's tiles vary apart.
NETWORKS = (
    ("mobilenet_v3_small", {"resolution": 96, "stem_channels": 8}),
    ("mobilenet_v3_small", {"resolution": 128, "kernel": 7, "se": "off"}),
    ("mobilenet_v3_small", {"resolution": 96, "kernel": 3, "stem_channels": 32}),
    ("mobilenet_v3_small", {"width": 0.75, "resolution": 112, "kernel": 5, "activation": "relu"}),
    ("mobilenet_v2", {"resolution": 64, "stem_channels": 48}),
    ("mobilenet_v2", {"width": 0.5, "resolution": 128, "kernel": 5, "stem_channels": 16}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 192, "kernel": 7}),
    ("mobilenet_v1", {"resolution": 64, "stem_channels": 24}),
    ("mobilenet_v3_large", {"width": 0.35, "resolution": 96, "kernel": 7}),
    ("mobilenet_v3_large", {"width": 0.5, "resolution": 224, "se": "off", "kernel": 3}),
)


def test_a_known_image_cost_is_recovered_and_its_form_chosen() -> None:
    observations = exact_observations(NETWORKS, IMAGE, TRUTH)
    # Without the term the stem's rate carries the image, and a 48-filter stem (3 tiles) is
    # charged three times an 8-filter one's conversion: no fit is exact.
    assert_chosen_over(observations, IMAGE, TRUTH, rival=TILED)
