"""Bytes in both views, the MAdds conventions, the activation peak and dtypes, by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.counting import Kind, count_model


def conv_bn_act(activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), activation)


def test_conv_bn_relu_fuses_into_one_kernel() -> None:
    result = count_model(conv_bn_act(nn.ReLU(inplace=True)).eval(), (1, 4, 6, 6))
    conv, norm, relu = result.records
    # conv: reads input 4*36 = 144 el + weight 8*4*9 = 288 el, writes 8*36 = 288 el
    assert (conv.bytes_read, conv.bytes_written) == (1_728, 1_152)
    # BN: reads 288 el + 4 x 8 parameters, writes 288 el; ReLU reads and writes 288 el
    assert (norm.bytes_read, norm.bytes_written) == (1_280, 1_152)
    assert (relu.bytes_read, relu.bytes_written) == (1_152, 1_152)
    assert result.bytes_unfused == 1_728 + 1_152 + 1_280 + 1_152 + 1_152 + 1_152
    # fused: the conv kernel reads input and weight, gains a folded bias (8 el), and writes
    # the activated output once; BN and ReLU cost nothing on their own
    assert conv.fused_bytes == 1_728 + 32 + 1_152
    assert (norm.fused_bytes, norm.fused_into) == (0, 0)
    assert (relu.fused_bytes, relu.fused_into) == (0, 0)
    assert result.bytes_fused == 2_912

    # MACs: 36 positions x 9 taps x 8 out x 4 in
    assert result.macs == 10_368
    # FLOPs: 2 x MACs + BN 2 x 288 + ReLU 288
    assert result.flops == 20_736 + 576 + 288
    assert result.flops_folded == 20_736 + 288
    # MAdds: BN folds away and the fused ReLU is the conv's clamp: MACs alone
    assert result.madds_folded == 10_368
    # unfolded: BN and ReLU one MAdd per element each
    assert result.madds_unfolded == 10_368 + 288 + 288


def test_hardswish_stays_a_kernel_of_its_own_when_fused() -> None:
    relu = count_model(conv_bn_act(nn.ReLU()).eval(), (1, 4, 6, 6))
    hardswish = count_model(conv_bn_act(nn.Hardswish()).eval(), (1, 4, 6, 6))
    # same MACs and the same eager traffic: both read 288 el and write 288 el
    assert hardswish.macs == relu.macs
    assert hardswish.bytes_unfused == relu.bytes_unfused
    # fused: the conv+BN kernel writes 288 el, then h-swish reads and writes them again
    conv, norm, activation = hardswish.records
    assert conv.fused_bytes == 1_728 + 32 + 1_152
    assert norm.fused_into == 0
    assert activation.fused_into is None
    assert activation.fused_bytes == 2_304
    assert hardswish.bytes_fused == relu.bytes_fused + 2_304
    # FLOPs: h-swish 5 per element against ReLU's 1: 4 x 288 more
    assert hardswish.flops - relu.flops == 4 * 288
    # MAdds: h-swish is one per element, not free
    assert hardswish.madds_folded == relu.madds_folded + 288


def test_conv_output_read_twice_is_not_fused() -> None:
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1, bias=False)
            self.norm = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.norm(y) + y

    result = count_model(Branch().eval(), (1, 2, 3, 3))
    assert all(record.fused_into is None for record in result.records)
    assert result.bytes_fused == result.bytes_unfused


def chain(inplace: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 1, bias=False), nn.ReLU(inplace=inplace), nn.Conv2d(8, 4, 1, bias=False)
    )


def test_activation_peak_in_place() -> None:
    result = count_model(chain(inplace=True).eval(), (1, 3, 4, 4))
    # input 3*16*4 = 192 B, conv1 out 8*16*4 = 512 B (ReLU writes it in place), conv2 out
    # 4*16*4 = 256 B. conv1: input + its output = 704; ReLU: 512; conv2: 512 + 256 = 768
    assert result.activation_peak_bytes == 768


def test_activation_peak_out_of_place() -> None:
    result = count_model(chain(inplace=False).eval(), (1, 3, 4, 4))
    # the ReLU allocates a second 512 B map while conv1's output is still being read
    assert result.activation_peak_bytes == 1_024


def test_activation_peak_keeps_a_residual_input_alive() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.expand = nn.Conv2d(2, 8, 1, bias=False)
            self.project = nn.Conv2d(8, 2, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.project(self.expand(x))

    result = count_model(Residual().eval(), (1, 2, 4, 4))
    # x = 2*16*4 = 128 B lives until the add; expand out 8*16*4 = 512; project out 128;
    # at the project conv: x + 512 + 128 = 768; at the add: x + 128 + sum 128 = 384
    assert result.activation_peak_bytes == 768


@pytest.mark.parametrize(
    ("dtype", "itemsize"), [(torch.float64, 8), (torch.bfloat16, 2), (torch.float16, 2)]
)
def test_bytes_follow_the_model_dtype(dtype: torch.dtype, itemsize: int) -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.Hardswish()).eval().to(dtype)
    result = count_model(model, (1, 4, 5, 5))
    assert result.dtype == str(dtype).removeprefix("torch.")
    conv, activation = result.records
    # conv reads 100 + 32 el and writes 200 el; h-swish reads and writes 200 el
    assert conv.bytes_read == 132 * itemsize
    assert conv.bytes_written == 200 * itemsize
    assert activation.bytes_unfused == 400 * itemsize
    assert conv.macs == 25 * 8 * 4
    assert activation.kind is Kind.HARDSWISH


def test_broadcast_operand_is_read_once_per_distinct_element() -> None:
    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x.mean((2, 3), keepdim=True).expand_as(x)

    result = count_model(Scale().eval(), (1, 3, 4, 4))
    multiply = result.records[-1]
    assert multiply.kind is Kind.SE_MULTIPLY
    # x is 48 el; the expanded mean holds only 3 distinct elements
    assert multiply.bytes_read == (48 + 3) * 4
