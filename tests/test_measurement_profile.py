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
    Span,
    _outermost_spans,
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


# -- the raw-trace path (CPU): the same answer as torch's FunctionEvent tree, faster ------


def test_raw_spans_give_what_the_function_event_tree_gives(model: torch.nn.Module) -> None:
    # One recorded profile, read both ways: every op, path, group, order and time agree.
    from torch.profiler import ProfilerActivity, profile, record_function

    from ablate.measurement.profile import (
        _RUN_MARKER,
        _cpu_spans,
        _module_scopes,
        _outermost_ops,
        _outermost_spans,
    )

    images = torch.randn(INPUT_SHAPE)
    with (
        torch.inference_mode(),
        _module_scopes(model),
        profile(activities=[ProfilerActivity.CPU]) as profiler,
    ):
        for _ in range(3):
            with record_function(_RUN_MARKER):
                model(images)
    spans = _cpu_spans(profiler)
    assert spans is not None  # this torch exposes the raw trace
    fast = _outermost_spans(spans)
    tree = _outermost_ops(profiler.events(), cuda=False)
    assert len(fast) == len(tree) == 3
    for fast_run, tree_run in zip(fast, tree, strict=True):
        assert len(fast_run) == len(tree_run) > 50
        for ours, theirs in zip(fast_run, tree_run, strict=True):
            assert (ours.index, ours.module_path, ours.group, ours.operator) == (
                theirs.index,
                theirs.module_path,
                theirs.group,
                theirs.operator,
            )
            assert ours.time_us == pytest.approx(theirs.time_us, abs=1e-3)


def _span(start: int, end: int, name: str, thread: int = 1) -> Span:
    return Span(thread, start, end, name)


def test_raw_spans_nesting_by_hand() -> None:
    # Two runs on thread 1; a module with a conv2d that calls convolution inside it; an op of
    # the root module (no module span); an op outside any run; a zero-length span; and a run
    # on thread 2, whose spans overlap thread 1's in time but never nest with them.
    spans = [
        _span(0, 100, "ablate.run"),
        _span(5, 50, "ablate.module::blocks.0"),
        _span(6, 40, "ablate.module::blocks.0.conv"),
        _span(7, 30, "aten::conv2d"),
        _span(8, 29, "aten::convolution"),  # inside conv2d: its time is conv2d's
        _span(41, 41, "[memory]"),
        _span(42, 49, "aten::add"),  # blocks.0's own op
        _span(60, 70, "aten::flatten"),  # the root module's own op
        _span(60, 60, "aten::empty"),  # zero length, starts with flatten: inside it
        _span(120, 130, "aten::relu"),  # outside any run: not counted
        _span(200, 300, "ablate.run"),
        _span(210, 220, "ablate.module::classifier"),
        _span(211, 215, "aten::linear"),
        _span(10, 90, "ablate.run", thread=2),
        _span(15, 25, "aten::mul", thread=2),
    ]
    runs = _outermost_spans(reversed(spans))  # input order does not matter
    assert [
        [(t.index, t.module_path, t.group, t.operator, t.time_us) for t in run] for run in runs
    ] == [
        [
            (0, "blocks.0.conv", "blocks.0", "aten::conv2d", 0.023),
            (1, "blocks.0", "blocks.0", "aten::add", 0.007),
            (2, "", "(model)", "aten::flatten", 0.01),
        ],
        [(0, "", "(model)", "aten::mul", 0.01)],
        [(0, "classifier", "classifier", "aten::linear", 0.004)],
    ]
