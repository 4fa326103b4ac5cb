"""The counting engine on ablate's built-in architectures and factor variants."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import ablate
from ablate.architecture.description import ACTIVATIONS, LAST_STAGES, SE_GATES
from ablate.counting import CountResult, Kind, count_model, crosscheck

# conv+linear MACs at 224x224, 1000 classes (FlopCounterMode / 2 on the reference
# implementations; torchvision's model docs print them as GFLOPS 0.301, 0.217, 0.057)
REFERENCE_MACS = {
    "mobilenet_v1": 568_740_352,
    "mobilenet_v2": 300_774_272,
    "mobilenet_v3_large": 216_589_760,
    "mobilenet_v3_small": 56_510_400,
    "mnasnet_a1": 311_579_072,
}


# The `resolution` factor leaves the module unchanged; the input size carries it.
def count(name: str, input_size: int = 224, **factors: Any) -> CountResult:
    return count_model(ablate.build_model(name, **factors), (1, 3, input_size, input_size))


def flop_counter_macs(name: str, input_size: int = 224, **factors: Any) -> int:
    model = ablate.build_model(name, **factors)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", list(REFERENCE_MACS))
def test_reference_mac_totals(name: str) -> None:
    result = count(name)
    assert result.macs == REFERENCE_MACS[name]
    assert result.macs == flop_counter_macs(name)
    assert not result.unknown_ops


VARIANTS = [
    ("mobilenet_v3_large", 224, {"kernel": 5}),
    ("mobilenet_v3_large", 224, {"se": "off"}),
    ("mobilenet_v3_large", 224, {"width": 0.5}),
    ("mobilenet_v2", 224, {"width": 0.5}),
    ("mobilenet_v2", 224, {"width": 1.4}),
    ("mobilenet_v3_small", 224, {"width": 1.4}),
    ("mobilenet_v3_large", 160, {"resolution": 160}),
    ("mobilenet_v3_large", 320, {"resolution": 320}),
    ("mobilenet_v2", 160, {"resolution": 160}),
    ("mobilenet_v1", 320, {"resolution": 320}),
    ("mobilenet_v3_small", 224, {"activation": "swish", "se_gate": "sigmoid"}),
]


@pytest.mark.parametrize(("name", "input_size", "factors"), VARIANTS)
def test_variants_match_flop_counter_mode(
    name: str, input_size: int, factors: dict[str, Any]
) -> None:
    result = count(name, input_size, **factors)
    assert result.macs == flop_counter_macs(name, input_size, **factors)
    assert not result.unknown_ops


def test_v3_large_paper_madds() -> None:
    result = count("mobilenet_v3_large")
    extra = sum(
        result.by_kind[kind.value].elementwise_madds
        for kind in (
            Kind.HARDSWISH,
            Kind.HARDSIGMOID,
            Kind.SE_POOL,
            Kind.SE_MULTIPLY,
            Kind.RESIDUAL_ADD,
            Kind.GLOBAL_POOL,
        )
    )
    # BN folds away and every ReLU is its conv's clamp: what remains is one MAdd per element
    # of h-swish (1,511,264), hard sigmoid (4,056), the SE pool and multiply (597,408 each),
    # the residual adds (423,360) and the global pool (47,040)
    assert result.madds_folded == result.macs + extra == 219_770_296
    # the paper's Table 3 says 219M
    assert abs(result.madds_folded - 219e6) / 219e6 < 0.005
    # unfolded: plus BN (4,399,808 elements) and the ReLUs (2,315,392)
    assert result.madds_unfolded == result.madds_folded + 4_399_808 + 2_315_392


def test_v3_large_structure() -> None:
    result = count("mobilenet_v3_large")
    kinds = {kind: summary.operator_count for kind, summary in result.by_kind.items()}
    # V3 paper Table 1: SE in blocks 4-6 and 11-15; 15 depthwise convs
    assert kinds["se_pool"] == kinds["se_multiply"] == 8
    assert kinds["global_pool"] == 1
    assert kinds["conv_depthwise"] == 15
    names = [layer.name for layer in result.layers]
    assert names == ["stem", *(f"blocks.{i}" for i in range(15)), "last_stage", "classifier"]
    assert {r.module_path for r in result.records if r.kind is Kind.SE_MULTIPLY} == {
        f"blocks.{i}.se" for i in (3, 4, 5, 10, 11, 12, 13, 14)
    }


def test_relu_for_hswish_changes_flops_and_fused_bytes_not_macs() -> None:
    published = count("mobilenet_v3_large")
    relu = count("mobilenet_v3_large", activation="relu")
    hardswish = published.by_kind["hardswish"]
    assert "hardswish" not in relu.by_kind
    assert relu.macs == published.macs
    # FLOPs: h-swish costs 5 ops per element and ReLU 1, over 1,511,264 elements
    assert hardswish.elementwise_madds == 1_511_264
    assert published.flops - relu.flops == 4 * 1_511_264
    # Fused view: a ReLU is the conv kernel's clamp; an h-swish is a kernel of its own that
    # reads and writes its 1,511,264 fp32 elements again
    assert published.bytes_fused - relu.bytes_fused == 2 * 4 * 1_511_264
    # Eager view: aten.hardswish and aten.relu both read their input once and write their
    # output once, so per-op traffic is the same. The eager cost of h-swish is arithmetic,
    # not bytes.
    assert published.bytes_unfused == relu.bytes_unfused
    # Per layer: the first h-swish block (blocks.6) gets cheaper in fused traffic
    assert relu.layer("blocks.6").bytes_fused < published.layer("blocks.6").bytes_fused
    assert relu.layer("blocks.0").bytes_fused == published.layer("blocks.0").bytes_fused


def test_crosscheck_v3_large() -> None:
    result = crosscheck(ablate.build_model("mobilenet_v3_large"))
    # the facts sheet: fvcore 226.0M = MACs + unfolded BN (2 x 4,399,808) + adaptive pooling
    assert result.fvcore.total == 216_589_760 + 8_799_616 + 644_448
    assert result.fvcore.residual == 0
    assert result.ptflops.total is not None
    assert result.ptflops.residual == 0


def _counted_alike(result: CountResult) -> None:
    assert not result.unknown_ops, dict(result.unknown_ops)
    assert result.macs > 0


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_of_the_vocabulary_has_a_counting_rule(name: str) -> None:
    model = ablate.build_model("mobilenet_v3_small", activation=name)
    # the vocabulary's module is really built, so its op is really counted
    assert any(type(module).__name__ == ACTIVATIONS[name] for module in model.modules())
    _counted_alike(count_model(model, (1, 3, 32, 32)))


@pytest.mark.parametrize("name", list(SE_GATES))
def test_every_se_gate_of_the_vocabulary_has_a_counting_rule(name: str) -> None:
    model = ablate.build_model("mobilenet_v3_small", se_gate=name)
    assert any(type(module).__name__ == SE_GATES[name] for module in model.modules())
    _counted_alike(count_model(model, (1, 3, 32, 32)))


@pytest.mark.parametrize("name", LAST_STAGES)
def test_every_last_stage_of_the_vocabulary_has_a_counting_rule(name: str) -> None:
    _counted_alike(count(name="mobilenet_v2", input_size=32, last_stage=name))
