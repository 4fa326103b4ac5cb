"""Modules of the MobileNet family, structured as the reference implementations build them.

The forward passes contain exactly the reference's operations (torchvision's
``Conv2dNormActivation``, ``InvertedResidual`` and ``SqueezeExcitation``): nothing is added
per call, so measured latency belongs to the architecture, not to this code.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional

from ablate.architecture.description import ACTIVATIONS, SE_GATES
from ablate.errors import UnknownNameError


def activation_module(name: str) -> nn.Module:
    """The in-place module of activation `name` (see `description.ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise UnknownNameError("activation", name, ACTIVATIONS)
    module = getattr(nn, ACTIVATIONS[name])
    # In place where torch offers it (as the reference builds them); GELU, say, has no form.
    if "inplace" in inspect.signature(module).parameters:
        return module(inplace=True)
    return module()


def gate_module(name: str) -> nn.Module:
    if name not in SE_GATES:
        raise UnknownNameError("SE gate", name, SE_GATES)
    return getattr(nn, SE_GATES[name])()


class ConvBatchNormActivation(nn.Sequential):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        activation: str | None,
        batch_norm_epsilon: float,
    ):
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            bn=nn.BatchNorm2d(out_channels, eps=batch_norm_epsilon),
        )
        if activation is not None:
            layers["act"] = activation_module(activation)
        super().__init__(layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, gate: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate_module(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = functional.adaptive_avg_pool2d(x, 1)
        scale = self.gate(self.expand(self.act(self.reduce(scale))))
        return scale * x


class Block(nn.Sequential):
    """A depthwise-separable or inverted-bottleneck block; residual when shapes allow."""

    def __init__(self, layers: OrderedDict[str, nn.Module], residual: bool):
        super().__init__(layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.residual:
            out += x
        return out


class MobileNet(nn.Sequential):
    """stem -> blocks -> last_stage -> classifier, each an ``nn.Sequential``."""


def initialize(model: nn.Module) -> None:
    """The reference initialisation, so activations have realistic magnitudes."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
