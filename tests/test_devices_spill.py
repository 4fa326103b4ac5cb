"""Weights read again from beyond the cache: a matrix-vector product (SE's 1-pixel convs, a
linear layer) uses each weight once, so where a network's traffic per pass exceeds the cache
its weights come from further out and it pays for them; the spill variants of the per-kernel
forms price that, and leave-one-out picks the cache."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.counting.kinds import Kind
from ablate.devices.costs import (
    BASE_FORMS,
    FORMS,
    SPILL_CACHES_MIB,
    form_choices,
    group_features,
    is_kernel,
    network_traffic,
    op_features,
    spill_share,
    spill_variants,
    total_features,
)
from ablate.devices.observations import count_variant
from ablate.devices.predict import predict_records
from tests.synthetic_kernels import assert_chosen_over, exact_observations
from tests.test_devices_elementwise_kinds import NETWORKS as KIND_NETWORKS
from tests.test_devices_epilogues import MATRIX_VECTOR, MATRIX_VECTOR_TRUTH

MIB = 2**20
SPILL_16 = FORMS[f"{MATRIX_VECTOR.name}_spill_16mib"]


def test_the_share_beyond_the_cache() -> None:
    assert spill_share(96 * MIB, 48 * MIB) == pytest.approx(0.5)
    assert spill_share(64 * MIB, 16 * MIB) == pytest.approx(0.75)
    # A pass that fits the cache spills nothing; a form without a cache neither.
    assert spill_share(48 * MIB, 48 * MIB) == 0.0
    assert spill_share(10 * MIB, 48 * MIB) == 0.0
    assert spill_share(96 * MIB, None) == 0.0


def test_every_per_kernel_form_has_one_variant_per_cache_and_no_other_form_has_any() -> None:
    assert SPILL_CACHES_MIB == (8, 16, 32, 48, 64)
    bases = [FORMS[name] for name in BASE_FORMS]
    assert all(form.cache_bytes is None for form in bases)
    for form in bases:
        variants = spill_variants(form)
        if not form.kernels:
            assert variants == []
            continue
        assert [variant.cache_bytes for variant in variants] == [
            mebibytes * MIB for mebibytes in SPILL_CACHES_MIB
        ]
        for variant in variants:
            # The base's terms, the spill term before the time outside the kernels.
            assert variant.term_names == (
                *form.term_names[:-1],
                "matrix_vector_spill_bytes",
                "outside_ops",
            )
            assert variant.kernels and variant.gemm_tile == form.gemm_tile
            assert spill_variants(variant) == []
    # With their unblocked variants (tests/test_devices_unblocked.py) the forms are these.
    spilled = [name for name, form in FORMS.items() if form.cache_bytes and not form.channel_block]
    kernel_forms = sum(1 for form in bases if form.kernels)
    assert len(spilled) == kernel_forms * len(SPILL_CACHES_MIB)
    assert form_choices().startswith("macs, roofline_sum, ")


def test_v3_large_classifier_and_se_convs_pay_for_their_weights_beyond_the_cache() -> None:
    records = count_variant("mobilenet_v3_large", {})[1].records
    traffic = network_traffic(records, "fused")
    assert traffic == sum(record.fused_bytes for record in records)
    assert 70 * MIB < traffic < 90 * MIB  # 78.3 MiB: past a 48 MiB cache
    share = 1 - 48 * MIB / traffic
    form = FORMS[f"{MATRIX_VECTOR.name}_spill_48mib"]
    spill = form.term_names.index("matrix_vector_spill_bytes")
    charged = []
    for record in records:
        if not is_kernel(record, "fused"):
            continue
        features = op_features(record, form, "fused", traffic_bytes=traffic)
        if features[spill]:
            charged.append(record)
            assert features[spill] == pytest.approx(record.weight_bytes_read * share / 1e9)
        elif record.kind in (Kind.CONV_POINTWISE, Kind.CONV_DEPTHWISE, Kind.CONV_DENSE):
            # A conv over more than one pixel reuses its weights: no spill.
            assert record.output_shape[2:] != (1, 1)
    # 8 SE blocks of two 1-pixel convs, and the two linear layers (960 -> 1280 -> 1000).
    assert len(charged) == 2 * 8 + 2
    classifier = charged[-1]
    assert classifier.kind is Kind.LINEAR
    assert classifier.weight_bytes_read == 4 * (1280 * 1000 + 1000)  # fp32 weights and bias
    # Grouped by block, the features hold the same spill: the network's traffic is counted
    # once, over all of its records.
    total = total_features(group_features(records, form, "fused"), len(form.terms))
    assert total[spill] == pytest.approx(sum(r.weight_bytes_read for r in charged) * share / 1e9)


def test_a_network_whose_pass_fits_the_cache_spills_nothing() -> None:
    records = count_variant("mobilenet_v3_small", {"resolution": 96})[1].records
    assert network_traffic(records, "fused") < 16 * MIB  # 13.7 MiB
    form = SPILL_16
    total = total_features(group_features(records, form, "fused"), len(form.terms))
    assert total[form.term_names.index("matrix_vector_spill_bytes")] == 0.0
    # Every other feature is the base form's.
    base = total_features(group_features(records, MATRIX_VECTOR, "fused"), len(MATRIX_VECTOR.terms))
    others = [form.term_names.index(name) for name in MATRIX_VECTOR.term_names]
    assert np.array_equal(total[others], base)


# The made-up ONNX Runtime of the matrix-vector test, whose matrix-vector weights come from
# beyond a 16 MiB cache at 60 ms/GB where the pass is larger.
SPILL_TRUTH = {**MATRIX_VECTOR_TRUTH, "matrix_vector_spill_bytes": 60.0}


@pytest.mark.slow  # fits every candidate form with leave-one-out (seconds): CI runs it
def test_a_known_spill_is_recovered_and_its_cache_chosen() -> None:
    # 8-39 MiB of traffic per pass: 7 of the 15 networks spill past 16 MiB, by 0.08-0.59.
    observations = exact_observations(
        KIND_NETWORKS, SPILL_16, SPILL_TRUTH, frozenset({Kind.HARDSWISH})
    )
    spilled = [
        spill_share(network_traffic(o.records, "fused"), SPILL_16.cache_bytes) > 0
        for o in observations
    ]
    assert sum(spilled) == 7
    profile = assert_chosen_over(observations, SPILL_16, SPILL_TRUTH, rival=MATRIX_VECTOR)
    # Leave-one-out compared the chosen base with each of its caches: only 16 MiB is exact.
    errors = {c.form: c.loo_max_abs_error for c in profile.quality.candidates}
    for variant in spill_variants(MATRIX_VECTOR):
        assert (errors[variant.name] < 1e-6) == (variant is SPILL_16), variant.name
    # A V3-Large (78 MiB) is predicted with its spill: the truth's price to the microsecond.
    records = count_variant("mobilenet_v3_large", {})[1].records
    truth = np.array([SPILL_TRUTH.get(name, 0.0) for name in SPILL_16.term_names])
    absorbed = frozenset({Kind.HARDSWISH})
    groups = group_features(records, SPILL_16, "fused", absorbed)
    expected = total_features(groups, len(truth)) @ truth
    assert predict_records(profile, records).ms == pytest.approx(expected, rel=1e-6)
