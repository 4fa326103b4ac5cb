"""Exact counts of single ops on tiny modules: MACs, elementwise ops, bytes, kinds.

Every expectation is derived by hand in the comments; fp32 is 4 bytes per element.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.counting import Kind, OpRecord, count_model
from ablate.counting.kinds import ELEMENTWISE_COST


def single(model: nn.Module, shape: tuple[int, ...], kind: Kind) -> OpRecord:
    records = [r for r in count_model(model.eval(), shape).records if r.kind is kind]
    assert len(records) == 1, records
    return records[0]


def test_dense_3x3_conv() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    record = single(conv, (1, 3, 8, 8), Kind.CONV_DENSE)
    # 8x8 outputs x 9 taps x 8 out x 3 in = 64 * 9 * 24
    assert record.macs == 13_824
    assert record.elementwise_ops == 0
    # input 3*8*8 = 192 el, weight 8*3*3*3 = 216 el -> (192 + 216) * 4
    assert record.bytes_read == 1_632
    assert record.weight_bytes_read == 864
    # output 8*8*8 = 512 el
    assert record.bytes_written == 2_048
    assert record.output_elements == 512
    assert record.flops == 2 * 13_824
    # nothing to fuse with: the fused view moves the same bytes
    assert (record.fused_bytes, record.fused_into) == (record.bytes_unfused, None)


def test_depthwise_3x3_conv() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    record = single(conv, (1, 8, 10, 10), Kind.CONV_DEPTHWISE)
    # 10x10 outputs x 9 taps x 8 channels x 1 input channel per group
    assert record.macs == 7_200
    # input 800 el + weight 8*1*3*3 = 72 el -> 872 * 4; output 800 el
    assert record.bytes_read == 3_488
    assert record.bytes_written == 3_200


def test_depthwise_5x5_stride_2_with_padding_and_bias() -> None:
    conv = nn.Conv2d(16, 16, 5, stride=2, padding=2, groups=16, bias=True)
    record = single(conv, (1, 16, 14, 14), Kind.CONV_DEPTHWISE)
    assert record.output_shape == (1, 16, 7, 7)  # floor((14 + 4 - 5) / 2) + 1 = 7
    # 7x7 outputs x 25 taps x 16 channels; the bias adds no MAC (FlopCounterMode's rule)
    assert record.macs == 19_600
    # input 16*14*14 = 3136 el, weight 16*25 = 400 el, bias 16 el -> 3552 * 4
    assert record.bytes_read == 14_208
    assert record.weight_bytes_read == (400 + 16) * 4
    # output 16*7*7 = 784 el
    assert record.bytes_written == 3_136


def test_pointwise_conv_batch_two() -> None:
    conv = nn.Conv2d(16, 32, 1, bias=False)
    record = single(conv, (2, 16, 7, 7), Kind.CONV_POINTWISE)
    # 2 images x 49 positions x 32 out x 16 in
    assert record.macs == 50_176
    # input 2*16*49 = 1568 el, weight 512 el -> 2080 * 4; output 2*32*49 = 3136 el
    assert record.bytes_read == 8_320
    assert record.bytes_written == 12_544


def test_grouped_conv_kind() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
    record = single(conv, (1, 8, 4, 4), Kind.CONV_GROUPED)
    # 16 positions x 9 taps x 8 out x 4 in per group
    assert record.macs == 4_608


def test_linear() -> None:
    linear = nn.Linear(20, 10)
    record = single(linear, (4, 20), Kind.LINEAR)
    # 4 rows x 20 in x 10 out
    assert record.macs == 800
    # input 80 el, weight 200 el, bias 10 el -> 290 * 4; output 40 el
    assert record.bytes_read == 1_160
    assert record.bytes_written == 160


def test_activation_costs_per_element() -> None:
    # 1x4x5x5 = 100 elements through each activation
    cases = {
        nn.ReLU(): (Kind.RELU, 100),  # max
        nn.ReLU6(): (Kind.RELU6, 200),  # max, min
        nn.Hardswish(): (Kind.HARDSWISH, 500),  # add, max, min, * 1/6, * x
        nn.Hardsigmoid(): (Kind.HARDSIGMOID, 400),  # add, max, min, * 1/6
        nn.Sigmoid(): (Kind.SIGMOID, 400),  # negate, exp, add, reciprocal
        nn.SiLU(): (Kind.SILU, 500),  # sigmoid, * x
    }
    for module, (kind, ops) in cases.items():
        record = single(module, (1, 4, 5, 5), kind)
        assert record.elementwise_ops == ops
        assert record.elementwise_madds == 100
        assert record.macs == 0
        # reads 100 el and writes 100 el
        assert (record.bytes_read, record.bytes_written) == (400, 400)
    assert ELEMENTWISE_COST[Kind.HARDSWISH] == 5
    assert ELEMENTWISE_COST[Kind.HARDSIGMOID] == 4


def test_batch_norm_unfolded() -> None:
    norm = nn.BatchNorm2d(8)
    record = single(norm, (1, 8, 3, 3), Kind.BATCH_NORM)
    # 72 elements x (scale multiply + shift add)
    assert record.elementwise_ops == 144
    # input 72 el + weight, bias, running mean, running var (4 x 8 el) -> 104 * 4
    assert record.bytes_read == 416
    assert record.bytes_written == 288


class ResidualBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_residual_add() -> None:
    record = single(ResidualBlock(), (1, 4, 3, 3), Kind.RESIDUAL_ADD)
    # 36 elements, one add each; reads two 36-el tensors, writes one
    assert record.elementwise_ops == 36
    assert record.bytes_read == 288
    assert record.bytes_written == 144


class Bias(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def test_scalar_add_is_a_plain_add() -> None:
    record = single(Bias(), (1, 4, 3, 3), Kind.ADD)
    assert record.elementwise_ops == 36


class Gate(nn.Module):
    """A squeeze-excite in everything but name, so that only dataflow can tell."""

    def __init__(self) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(16, 8, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(8, 16, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


def test_squeeze_excite_block() -> None:
    result = count_model(Gate().eval(), (1, 16, 8, 8))
    kinds = [r.kind for r in result.records]
    assert kinds == [
        Kind.SE_POOL,  # found through dataflow: the pool reaches a channel-scale multiply
        Kind.CONV_POINTWISE,
        Kind.RELU,
        Kind.CONV_POINTWISE,
        Kind.HARDSIGMOID,
        Kind.SE_MULTIPLY,
    ]
    pool, reduce, relu, expand, gate, multiply = result.records
    # pool: 16 channels x a 64-element window = 1024 ops (63 adds and a divide per channel)
    assert pool.elementwise_ops == 1_024
    # 1x1 convs on a 1x1 map: 16 * 8 and 8 * 16 MACs
    assert (reduce.macs, expand.macs) == (128, 128)
    assert relu.elementwise_ops == 8
    assert gate.elementwise_ops == 16 * 4
    # the multiply scales 16*64 = 1024 elements
    assert multiply.elementwise_ops == 1_024
    assert result.macs == 256
    assert result.flops == 2 * 256 + 1_024 + 8 + 64 + 1_024
    # bytes: pool reads 1024 el, writes 16; reduce reads 16 + 128 + 8 el, writes 8;
    # relu 8 + 8; expand reads 8 + 128 + 16, writes 16; gate 16 + 16;
    # multiply reads 1024 + 16, writes 1024
    assert pool.bytes_unfused == (1_024 + 16) * 4
    assert reduce.bytes_unfused == (152 + 8) * 4
    assert multiply.bytes_read == 1_040 * 4
    assert result.bytes_unfused == (1_040 + 160 + 16 + 168 + 32 + 2_064) * 4
    # fused: the ReLU is the reduce conv's clamp, so its 8-el read and write and the conv's
    # 8-el write collapse into one 8-el write; the hard sigmoid is not a clamp and stays
    assert reduce.fused_bytes == (152 + 8) * 4
    assert (relu.fused_bytes, relu.fused_into) == (0, reduce.index)
    assert gate.fused_into is None
    assert result.bytes_fused == result.bytes_unfused - (8 + 8) * 4


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


def test_global_pool_that_feeds_a_classifier_is_not_an_se_pool() -> None:
    result = count_model(Classifier().eval(), (1, 8, 4, 4))
    assert [r.kind for r in result.records] == [Kind.GLOBAL_POOL, Kind.VIEW, Kind.LINEAR]
    pool, flatten, _ = result.records
    assert pool.elementwise_ops == 8 * 16
    # flatten of a contiguous map is a view: zero by rule
    assert (flatten.bytes_read, flatten.bytes_written, flatten.elementwise_ops) == (0, 0, 0)


def test_pools_priced_per_window() -> None:
    average = single(nn.AvgPool2d(2), (1, 2, 4, 4), Kind.AVG_POOL)
    # 2*2*2 = 8 outputs, each a 4-element window (3 adds and a divide)
    assert average.elementwise_ops == 32
    maximum = single(nn.MaxPool2d(3, stride=1, padding=1), (1, 1, 4, 4), Kind.MAX_POOL)
    # 16 outputs, 3x3 windows: 8 comparisons each
    assert maximum.elementwise_ops == 128


@pytest.mark.parametrize("inplace", [False, True])
def test_inplace_variants_count_like_out_of_place(inplace: bool) -> None:
    for module, kind in (
        (nn.ReLU(inplace=inplace), Kind.RELU),
        (nn.ReLU6(inplace=inplace), Kind.RELU6),
        (nn.Hardswish(inplace=inplace), Kind.HARDSWISH),
        (nn.Hardsigmoid(inplace=inplace), Kind.HARDSIGMOID),
        (nn.SiLU(inplace=inplace), Kind.SILU),
    ):
        record = single(module, (1, 2, 5, 5), kind)
        assert record.operator.split(".")[1].endswith("_") is inplace
        assert record.elementwise_ops == 50 * ELEMENTWISE_COST[kind]
        assert (record.bytes_read, record.bytes_written) == (200, 200)


class InplaceResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).add_(x)


def test_inplace_residual_add() -> None:
    record = single(InplaceResidual(), (1, 4, 3, 3), Kind.RESIDUAL_ADD)
    assert record.operator == "aten.add_.Tensor"
    assert record.elementwise_ops == 36
    assert (record.bytes_read, record.bytes_written) == (288, 144)


def test_every_inplace_variant_torch_has_is_in_the_table() -> None:
    from ablate.counting.handles import HANDLES

    aten = torch.ops.aten
    for name in (
        "relu",
        "relu6",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "silu",
        "sigmoid",
        "clamp",
        "clamp_min",
        "clamp_max",
        "add",
        "sub",
        "mul",
        "div",
        "dropout",
    ):
        for variant in (name, f"{name}_"):
            if hasattr(aten, variant):
                packet = getattr(aten, variant)
                for overload in packet.overloads():
                    assert getattr(packet, overload) in HANDLES, (variant, overload)


def test_adaptive_pool_windows_overlap() -> None:
    record = single(nn.AdaptiveAvgPool2d(2), (1, 3, 5, 5), Kind.AVG_POOL)
    # 5 -> 2 along each axis: windows [0, 3) and [2, 5), 3 + 3 = 6 per axis, 36 per channel
    assert record.elementwise_ops == 3 * 36
