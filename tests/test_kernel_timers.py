"""Per-kernel timers (`Backend.kernel_timer`): every kernel a backend runs, in order, classified.

One small network, built from ablate's own layers, is timed on each backend: a 3x3 stem conv
(3 -> 8, stride 2) with BN and hardswish, then a residual block of a depthwise 3x3 with BN and
ReLU, a squeeze-excitation (pool, 1x1 reduce, ReLU, 1x1 expand, hardsigmoid gate, multiply)
and a 1x1 projection with BN. Its 15 counting records are, in order: conv, bn, hardswish,
depthwise conv, bn, relu, SE pool, conv, relu, conv, hardsigmoid, SE multiply, conv, bn, add.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from ablate.architecture.layers import Block, ConvBatchNormActivation, SqueezeExcitation
from ablate.counting import count_model
from ablate.errors import BackendUnavailableError, MeasurementError
from ablate.measurement.backends import BACKENDS
from ablate.measurement.host_backends import (
    eager_kernel_times,
    onnxruntime_kernel_times,
    onnxruntime_profile_events,
)
from ablate.measurement.kernels import KernelClass, KernelEvent
from ablate.measurement.profile import operator_packet
from ablate.measurement.runtimes.executorch import executorch_kernel_class, executorch_kernel_times

C = KernelClass
INPUT_SHAPE = (1, 3, 32, 32)


def _layer(
    inputs: int, outputs: int, kernel: int, *, activation: str | None, **options: Any
) -> ConvBatchNormActivation:
    return ConvBatchNormActivation(
        inputs, outputs, kernel, activation=activation, batch_norm_epsilon=1e-3, **options
    )


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    block = Block(
        OrderedDict(
            depthwise=_layer(8, 8, 3, groups=8, activation="relu"),
            se=SqueezeExcitation(8, 8, "hsigmoid"),
            project=_layer(8, 8, 1, activation=None),
        ),
        residual=True,
    )
    stem = _layer(3, 8, 3, stride=2, activation="hswish")
    return nn.Sequential(OrderedDict(stem=stem, block=block)).eval()


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0))


def _classes(events: list[KernelEvent]) -> list[KernelClass]:
    return [event.kind for event in events]


# -- which backends have one ---------------------------------------------------------------


def test_eager_onnxruntime_and_executorch_time_kernels_and_the_others_do_not():
    timers = {name: BACKENDS.get(name).kernel_timer for name in BACKENDS.names()}
    assert timers["eager"] is eager_kernel_times
    assert timers["onnxruntime"] is onnxruntime_kernel_times
    assert timers["executorch"] is executorch_kernel_times
    # LiteRT's interpreter has no op profiler in its Python API (registered without litert).
    assert timers["litert"] is None
    assert timers["torchscript"] is None and timers["compile"] is None


# -- eager -----------------------------------------------------------------------------------


def test_eager_gives_one_event_per_aten_op_naming_its_counting_record(
    model: nn.Module, example: torch.Tensor
):
    events = eager_kernel_times(model, example, precision="fp32", runs=3, threads=1)
    # Eager runs every op of the module on its own: BN (no class of its own: OTHER) after
    # each conv; the depthwise conv is told by its module (groups == in_channels).
    assert _classes(events) == [
        C.CONV, C.OTHER, C.HARDSWISH,
        C.DEPTHWISE, C.OTHER, C.CLAMP,
        C.MEAN, C.CONV, C.CLAMP, C.CONV, C.HARDSIGMOID, C.MULTIPLY,
        C.CONV, C.OTHER, C.ADD,
    ]  # fmt: skip
    records = count_model(model, INPUT_SHAPE).records
    assert [event.record for event in events] == [record.index for record in records]
    assert all(
        operator_packet(event.name) == operator_packet(records[event.record].operator)
        for event in events
        if event.record is not None
    )
    assert events[0].name == "aten::conv2d" and events[2].name == "aten::hardswish_"
    assert all(event.milliseconds > 0 and event.delegated for event in events)


def test_eager_restores_torch_thread_count(model: nn.Module, example: torch.Tensor):
    before = torch.get_num_threads()
    eager_kernel_times(model, example, precision="fp32", runs=1, threads=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("timer", [eager_kernel_times, onnxruntime_kernel_times])
def test_host_timers_refuse_int8_in_one_line(timer: Any, model: nn.Module, example: torch.Tensor):
    with pytest.raises(BackendUnavailableError, match="has no int8 yet"):
        timer(model, example, precision="int8", runs=3, threads=1)


@pytest.mark.parametrize(
    "timer", [eager_kernel_times, onnxruntime_kernel_times, executorch_kernel_times]
)
def test_timers_refuse_zero_runs_before_any_work(
    timer: Any, model: nn.Module, example: torch.Tensor
):
    with pytest.raises(MeasurementError, match=r"at least 1 run \(got 0\)"):
        timer(model, example, precision="fp32", runs=0, threads=1)


# -- ONNX Runtime ----------------------------------------------------------------------------


def test_onnxruntime_gives_its_nodes_in_order_with_fusions_applied(
    model: nn.Module, example: torch.Tensor
):
    pytest.importorskip("onnxruntime")
    events = onnxruntime_kernel_times(model, example, precision="fp32", runs=3, threads=1)
    # ONNX Runtime folds each BN into its conv and fuses the activation after it (stem's
    # hardswish, the depthwise's and SE reduce's ReLU, SE expand's hardsigmoid) and the
    # residual add into the projection conv; the depthwise conv is known by its weight
    # [8, 1, 3, 3]. On x86 the convs run in a blocked layout (NCHWc), and a ReorderOutput
    # node (LAYOUT) returns to NCHW before each op that does not, and a ReorderInput node
    # (RELAYOUT) back to NCHWc after it: where they appear depends on the CPU, so they are
    # checked apart.
    computing = [event for event in events if event.kind not in (C.LAYOUT, C.RELAYOUT)]
    assert _classes(computing) == [
        C.CONV, C.DEPTHWISE, C.MEAN, C.CONV, C.CONV, C.MULTIPLY, C.CONV,
    ]  # fmt: skip
    assert computing[0].name == "/stem/conv/Conv_output_0_nchwc"
    assert all(event.name.startswith("ReorderOutput") for event in events if event.kind is C.LAYOUT)
    relayout = [event.name for event in events if event.kind is C.RELAYOUT]
    assert all(name.startswith("ReorderInput") for name in relayout)
    assert all(event.milliseconds >= 0 and event.delegated for event in events)
    assert all(event.record is None for event in events)


def _node(name: str, op: str, start: int, duration: int, **arguments: Any) -> dict[str, Any]:
    return {
        "cat": "Node",
        "name": f"{name}_kernel_time",
        "ts": start,
        "dur": duration,
        "args": {"op_name": op, **arguments},
    }


def _run(start: int, duration: int) -> dict[str, Any]:
    return {"cat": "Session", "name": "model_run", "ts": start, "dur": duration}


DEPTHWISE_SHAPES = [{"float": [1, 16, 8, 8]}, {"float": [16, 1, 3, 3]}, {"float": [16]}]
GRAY_STEM_SHAPES = [{"float": [1, 1, 8, 8]}, {"float": [16, 1, 3, 3]}, {"float": [16]}]


def _trace(conv_times: list[int]) -> list[dict[str, Any]]:
    """A profile of len(conv_times) model runs of [depthwise Conv, Add], 100 µs apart; each
    node's fence events (cat "Node", no "_kernel_time") and the session's own ride along."""
    events: list[dict[str, Any]] = [{"cat": "Session", "name": "session_initialization"}]
    for run, conv_time in enumerate(conv_times):
        start = 1000 + 100 * run
        events.append({"cat": "Node", "name": "dw_fence_before", "ts": start + 1, "dur": 0})
        events.append(_node("dw", "Conv", start + 1, conv_time, input_type_shape=DEPTHWISE_SHAPES))
        events.append(_node("add", "Add", start + 50, 7))
        events.append(_run(start, 90))
    return events


def test_onnxruntime_profile_gives_per_node_medians_of_the_timed_runs():
    # The first run (300 µs) is left out; the median of 20, 40 and 10 µs is 20 µs.
    events = onnxruntime_profile_events(_trace([300, 20, 40, 10]), runs=3)
    assert events == [
        KernelEvent("dw", 0.02, True, C.DEPTHWISE),
        KernelEvent("add", 0.007, True, C.ADD),
    ]


def test_onnxruntime_conv_on_one_input_channel_is_dense_not_depthwise():
    trace = [_node("stem", "FusedConv", 1, 5, input_type_shape=GRAY_STEM_SHAPES), _run(0, 10)]
    trace += [_node("stem", "FusedConv", 21, 5, input_type_shape=GRAY_STEM_SHAPES), _run(20, 10)]
    assert [event.kind for event in onnxruntime_profile_events(trace, runs=1)] == [C.CONV]


def test_onnxruntime_quick_gelu_fusion_of_a_swish_is_a_silu():
    """ORT fuses x * sigmoid(x) into QuickGelu (alpha 1): the swish record's kernel."""
    trace = [_node("/act/Mul/QuickGeluFusion/", "QuickGelu", 1, 5), _run(0, 10)]
    trace += [_node("/act/Mul/QuickGeluFusion/", "QuickGelu", 21, 5), _run(20, 10)]
    assert onnxruntime_profile_events(trace, runs=1) == [
        KernelEvent("/act/Mul/QuickGeluFusion/", 0.005, True, C.SILU)
    ]


def test_onnxruntime_profile_with_other_than_runs_plus_one_model_runs_is_refused():
    with pytest.raises(MeasurementError, match="holds 3 model runs; 4 were run"):
        onnxruntime_profile_events(_trace([300, 20, 40]), runs=3)


def test_onnxruntime_profile_whose_runs_ran_different_nodes_is_refused():
    trace = _trace([300, 20, 40])
    trace[-2]["name"] = "other_kernel_time"  # the last run's Add
    with pytest.raises(MeasurementError, match="different nodes in different runs"):
        onnxruntime_profile_events(trace, runs=2)


# -- ExecuTorch ------------------------------------------------------------------------------


@pytest.mark.slow
def test_executorch_gives_xnnpack_operators_in_order_from_its_etdump(
    model: nn.Module, example: torch.Tensor
):
    pytest.importorskip("executorch")
    events = executorch_kernel_times(model, example, precision="fp32", runs=3, threads=1)
    # The program converts its input's and output's dim order outside the delegate (two
    # portable copies, run first), then runs one XNNPACK delegate call: transpose to NHWC;
    # stem conv + BN as one IGEMM, hardswish on its own; depthwise conv with its ReLU fused;
    # the SE pool as a mean; the SE's 1x1 convs as GEMMs (the ReLU fused); hardsigmoid
    # decomposed into add 3, clamp, divide; transposes around the multiply; the projection as
    # a GEMM, the residual add, and a transpose back to NCHW.
    assert _classes(events) == [
        C.LAYOUT, C.LAYOUT,
        C.LAYOUT, C.CONV, C.HARDSWISH, C.DEPTHWISE,
        C.MEAN, C.GEMM, C.GEMM,
        C.LAYOUT, C.ADD, C.CLAMP, C.DIVIDE, C.LAYOUT, C.MULTIPLY,
        C.GEMM, C.ADD, C.LAYOUT,
    ]  # fmt: skip
    assert [event.name for event in events[:4]] == [
        "_to_dim_order_copy.out",
        "_to_dim_order_copy.out",
        "Transpose (ND, X32)",
        "Convolution (NHWC, F32) IGEMM",
    ]
    assert [event.delegated for event in events] == [False, False] + [True] * 16
    assert all(event.milliseconds >= 0 and event.record is None for event in events)


@pytest.mark.parametrize(
    ("event_name", "expected"),
    [
        # fp32, as ExecuTorch 1.5's XNNPACK logs them
        ("Convolution (NHWC, F32) IGEMM #1", C.CONV),
        ("Convolution (NHWC, F32) GEMM #4", C.CONV),
        ("Convolution (NHWC, F32) DWConv #2", C.DEPTHWISE),
        ("Fully Connected (NC, F32) GEMM #3", C.GEMM),
        ("HardSwish (NC) #1", C.HARDSWISH),
        ("Sigmoid (NC) #2", C.SIGMOID),
        ("Mean (ND) Reduce2 #1", C.MEAN),
        ("Average Pooling (NHWC, F32) Average Pooling #1", C.AVERAGE_POOL),
        ("Max Pooling (NHWC, F32) #1", C.MAX_POOL),
        ("Add (ND) #2", C.ADD),
        ("Clamp (NC) #1", C.CLAMP),
        ("Divide (ND) #1", C.DIVIDE),
        ("Multiply (ND) #3", C.MULTIPLY),
        ("Transpose (ND, X32) #3", C.LAYOUT),
        ("Static Reshape (NC) #1", C.LAYOUT),
        # int8
        ("Convolution (NHWC, QC8) IGEMM #1", C.CONV),
        ("Convolution (NHWC, QC8) DWConv #1", C.DEPTHWISE),
        ("Fully Connected (NC, QS8, QC8W) GEMM #2", C.GEMM),
        ("Max Pooling (NHWC, S8) #1", C.MAX_POOL),
        ("Transpose (ND, X8) #1", C.LAYOUT),
        ("Convert (NC) #7", C.CONVERT),
        ("Invalid Unary Op #1", C.OTHER),  # int8 XNNPACK's name for a quantized activation
        # portable kernels, outside the delegate
        ("native_call__to_dim_order_copy.out", C.LAYOUT),
        ("native_call_mean.out", C.MEAN),
        ("native_call_add.out", C.ADD),
        ("native_call_softmax.out", C.OTHER),
    ],
)
def test_executorch_event_names_map_to_kernel_classes(event_name: str, expected: KernelClass):
    assert executorch_kernel_class(event_name) is expected
