"""The counting pass: unknown ops, module attribution, grouping, FlopCounterMode, JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.counting import ROOT_GROUP, Kind, UnknownOp, block_group, count_model


class Cumulative(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.linear(x), dim=1)


def test_unknown_op_is_listed_with_where_it_ran_not_silently_zero() -> None:
    result = count_model(Cumulative().eval(), (2, 8))
    # cumsum runs in the root module's own forward, which the counts call "(model)"
    assert dict(result.unknown_ops) == {"aten.cumsum.default": UnknownOp(1, (ROOT_GROUP,))}
    unknown = [r for r in result.records if r.kind is Kind.UNKNOWN]
    assert len(unknown) == 1
    # its traffic is still shape-generic: reads 16 el and writes 16 el
    assert (unknown[0].bytes_read, unknown[0].bytes_written) == (64, 64)
    assert result.to_json()["unknown_ops"] == {
        "aten.cumsum.default": {"calls": 1, "modules": [ROOT_GROUP]}
    }
    assert result.by_kind["unknown"].operator_count == 1


class Erf(nn.Module):
    """An op without a rule, called three times: twice in a module of its own, once at the root."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.inner = Cumulative()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.special.erf(self.inner(torch.special.erf(self.linear(x))))
        return torch.special.erf(x)


def test_unknown_op_counts_every_call_and_each_module_once() -> None:
    result = count_model(Erf().eval(), (2, 8))
    assert dict(result.unknown_ops) == {
        "aten.erf.default": UnknownOp(3, (ROOT_GROUP,)),
        # cumsum runs in the forward of the module at "inner"
        "aten.cumsum.default": UnknownOp(1, ("inner",)),
    }


class Spectral(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x).abs()


def test_ops_reached_through_decomposition_are_reported_by_their_aten_name() -> None:
    result = count_model(Spectral(), (2, 8))
    assert "aten._fft_r2c.default" in result.unknown_ops


class Tiny(nn.Module):
    """stem / blocks / classifier as ablate builds them, plus a functional pool at the root."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 8, 1)),
        )
        self.classifier = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(x.mean((2, 3)))


def test_records_carry_module_paths_and_groups() -> None:
    result = count_model(Tiny().eval(), (1, 3, 8, 8))
    paths = [(r.module_path, r.group, r.kind) for r in result.records]
    assert paths == [
        ("stem.0", "stem", Kind.CONV_DENSE),
        ("stem.1", "stem", Kind.RELU),
        ("blocks.0.0", "blocks.0", Kind.CONV_DEPTHWISE),
        ("blocks.0.1", "blocks.0", Kind.RELU),
        ("blocks.1.0", "blocks.1", Kind.CONV_POINTWISE),
        ("", ROOT_GROUP, Kind.GLOBAL_POOL),
        ("classifier", "classifier", Kind.LINEAR),
    ]
    assert [layer.name for layer in result.layers] == [
        "stem",
        "blocks.0",
        "blocks.1",
        ROOT_GROUP,
        "classifier",
    ]
    assert sum(layer.macs for layer in result.layers) == result.macs
    assert sum(layer.share("macs") for layer in result.layers) == pytest.approx(1.0)
    assert result.layer("stem").share("macs") == pytest.approx(1_728 / result.macs)
    stem = result.layer("stem")
    # stem conv: 16 positions x 9 taps x 4 out x 3 in = 1728 MACs; ReLU 64 ops
    assert (stem.macs, stem.flops) == (1_728, 2 * 1_728 + 64)
    assert stem.intensity_unfused == pytest.approx(stem.flops / stem.bytes_unfused)


def test_custom_grouping() -> None:
    result = count_model(Tiny().eval(), (1, 3, 8, 8), group_of=lambda path: path or "root")
    assert [layer.name for layer in result.layers][:2] == ["stem.0", "stem.1"]
    assert result.records[5].group == "root"


def test_block_group() -> None:
    assert block_group("blocks.3.depthwise.conv") == "blocks.3"
    assert block_group("blocks.12") == "blocks.12"
    assert block_group("stem.conv") == "stem"
    assert block_group("last_stage.0.bn") == "last_stage"
    assert block_group("") == ROOT_GROUP


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() // 2


class BatchedMatmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight).transpose(1, 2) @ x


TINY_MODULES = {
    "conv 3x3": (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 9, 9)),
    "depthwise 5x5 s2": (nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8), (1, 8, 11, 11)),
    "grouped": (nn.Conv2d(8, 12, 3, groups=4), (1, 8, 6, 6)),
    "conv1d": (nn.Conv1d(4, 6, 3), (2, 4, 10)),
    "transposed": (nn.ConvTranspose2d(4, 6, 3, stride=2), (1, 4, 5, 5)),
    "linear 3d input": (nn.Linear(7, 5), (2, 3, 7)),
    "linear no bias": (nn.Linear(7, 5, bias=False), (4, 7)),
    "matmul and bmm": (BatchedMatmul(), (2, 3, 6)),
    "tiny net": (Tiny(), (1, 3, 8, 8)),
}


@pytest.mark.parametrize("name", list(TINY_MODULES))
def test_macs_equal_flop_counter_mode_over_two(name: str) -> None:
    module, shape = TINY_MODULES[name]
    module = module.eval()
    result = count_model(module, shape)
    assert result.macs == flop_counter_macs(module, shape)
    assert not result.unknown_ops


def test_transposed_conv_macs_by_hand() -> None:
    module, shape = TINY_MODULES["transposed"]
    # every one of the 25 input positions scatters through 9 taps x 4 in x 6 out
    assert count_model(module.eval(), shape).macs == 25 * 9 * 4 * 6


def test_json_is_plain_with_integer_counts() -> None:
    result = count_model(Tiny().eval(), (1, 3, 8, 8))
    data = json.loads(json.dumps(result.to_json(include_records=True)))
    for key in (
        "macs",
        "flops",
        "flops_folded",
        "madds_folded",
        "madds_unfolded",
        "elementwise_ops",
        "bytes_unfused",
        "bytes_fused",
        "activation_peak_bytes",
    ):
        assert isinstance(data[key], int), key
        assert data[key] == getattr(result, key)
    assert set(data) >= {"by_kind", "layers", "unknown_ops", "records"}
    assert data["by_kind"]["relu"] == {
        "operator_count": 2,
        "macs": 0,
        "elementwise_ops": 64 + 64,
        "elementwise_madds": 128,
        "flops": 128,
        "bytes_unfused": 2 * (64 + 64) * 4,
        "bytes_fused": 0,
    }
    # layers carry every rule's total and the shares of the per-layer metrics
    assert {"madds_folded", "flops_folded", "macs_share", "bytes_fused_share"} <= set(
        data["layers"][0]
    )
    assert data["layers"][0]["name"] == "stem"
    assert all(isinstance(layer["macs"], int) for layer in data["layers"])
    assert len(data["records"]) == len(result.records)


def test_counting_is_deterministic_and_leaves_no_hooks() -> None:
    model = Tiny().eval()
    first = count_model(model, (1, 3, 8, 8))
    second = count_model(model, (1, 3, 8, 8))
    assert first.to_json(include_records=True) == second.to_json(include_records=True)
    from torch.nn.modules import module as module_globals

    assert not module_globals._global_forward_pre_hooks
    assert not module_globals._global_forward_hooks


def test_matmul_decomposes_into_counted_products() -> None:
    result = count_model(BatchedMatmul().eval(), (2, 3, 6))
    products = [(r.operator, r.kind, r.macs) for r in result.records if r.macs]
    # x @ W folds the batch into rows: (6 x 6) @ (6 x 5) -> 6 * 6 * 5 MACs, a weight product;
    # then (2, 5, 3) @ (2, 3, 6) between activations -> 2 * 5 * 3 * 6
    assert products == [
        ("aten.mm.default", Kind.LINEAR, 180),
        ("aten.bmm.default", Kind.MATMUL, 180),
    ]
