"""Per-op profile: attribution to modules and blocks, order, join with the counting records.

Only structure is asserted (which op, where, in which order, shares summing to one), never
a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import ablate
from ablate.counting.engine import count_model
from ablate.measurement.profile import (
    OpProfile,
    OpTiming,
    join_with_counts,
    operator_packet,
    profile_operators,
)

INPUT_SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return ablate.build_model("mobilenet_v3_small", width=0.25, resolution=32)


@pytest.fixture(scope="module")
def profiled(model: torch.nn.Module) -> OpProfile:
    torch.set_flush_denormal(True)
    return profile_operators(model, torch.randn(INPUT_SHAPE), runs=3)


def test_ops_are_attributed_to_their_innermost_module_in_execution_order(profiled: OpProfile):
    first = profiled.timings[0]
    assert (first.index, first.module_path, first.group, first.operator) == (
        0,
        "stem.conv",
        "stem",
        "aten::conv2d",
    )
    assert [timing.index for timing in profiled.timings] == list(range(len(profiled.timings)))
    assert profiled.timings[-1].group == "classifier"
    assert {timing.operator for timing in profiled.timings} >= {
        "aten::conv2d",
        "aten::batch_norm",
        "aten::hardswish_",
        "aten::linear",
    }
    # Only outermost ops: what conv2d calls internally is inside conv2d's time.
    assert not any("mkldnn" in timing.operator for timing in profiled.timings)
    assert all(timing.time_us > 0 for timing in profiled.timings)
    assert profiled.runs == 3


def test_ops_join_one_to_one_with_the_counting_records(model: torch.nn.Module, profiled: OpProfile):
    records = count_model(model, INPUT_SHAPE).records
    pairs = join_with_counts(profiled.timings, records)
    assert len(records) == len(profiled.timings)
    assert all(timing is not None for _, timing in pairs)
    assert all(
        record.module_path == timing.module_path and record.group == timing.group
        for record, timing in pairs
        if timing is not None
    )


def test_shares_by_block_follow_execution_order_and_sum_to_one(profiled: OpProfile):
    groups = profiled.by_group()
    names = [share.name for share in groups]
    assert names[0] == "stem"
    assert names[1:4] == ["blocks.0", "blocks.1", "blocks.2"]
    assert names[-2:] == ["last_stage", "classifier"]
    assert sum(share.share for share in groups) == pytest.approx(1.0)
    assert sum(share.time_us for share in groups) == pytest.approx(profiled.total_us)


def test_shares_by_operator_are_largest_first_and_sum_to_one(profiled: OpProfile):
    shares = profiled.by_operator()
    assert [share.share for share in shares] == sorted((s.share for s in shares), reverse=True)
    assert sum(share.share for share in shares) == pytest.approx(1.0)


def test_profiling_leaves_no_hooks_behind(model: torch.nn.Module, profiled: OpProfile):
    assert all(
        not module._forward_pre_hooks and not module._forward_hooks for module in model.modules()
    )


def test_operator_names_of_profiler_and_dispatcher_normalise_alike():
    assert operator_packet("aten::conv2d") == "aten.conv2d"
    assert operator_packet("aten.conv2d.default") == "aten.conv2d"
    assert operator_packet("aten.add_.Tensor") == operator_packet("aten::add_")


@dataclass
class Record:
    module_path: str
    operator: str


def test_join_skips_a_missing_op_without_shifting_the_rest():
    timings = [
        OpTiming(0, "a", "a", "aten::conv2d", 5.0),
        OpTiming(1, "a", "a", "aten::relu_", 1.0),
        OpTiming(2, "b", "b", "aten::add", 2.0),
    ]
    records = [
        Record("a", "aten.conv2d.default"),
        Record("a", "aten.batch_norm.default"),  # profiled nowhere
        Record("a", "aten.relu_.default"),
        Record("b", "aten.add.Tensor"),
    ]
    matched = [timing.index if timing else None for _, timing in join_with_counts(timings, records)]
    assert matched == [0, None, 1, 2]
