"""SSD and SSDLite detectors: Table 6 counts, torchvision's exact count, feature taps, the
reduced tail, the detector factors and their errors, a detector run end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import ablate
from ablate.architecture.tables import ARCHITECTURES
from ablate.architecture.taps import check_taps
from ablate.cli import app
from ablate.counting import count_model
from ablate.errors import FactorError
from ablate.runs.schema import load_results
from ablate.variants.resolve import resolve_architecture
from tests.conftest import parameter_count

# MobileNetV3 paper Table 6 (SSDLite, COCO, 320x320): params in millions, MAdds in billions.
TABLE_6 = [
    ("V1", "ssdlite_mobilenet_v1", {}, 5.1, 1.3),
    ("V2", "ssdlite_mobilenet_v2", {}, 4.3, 0.80),
    ("MnasNet", "ssdlite_mnasnet_a1", {}, 4.88, 0.84),
    ("V3", "ssdlite_mobilenet_v3_large", {}, 4.97, 0.62),
    ("V3 reduced tail", "ssdlite_mobilenet_v3_large", {"tail": "reduced"}, 3.22, 0.51),
    ("V2 0.35", "ssdlite_mobilenet_v2", {"width": 0.35}, 0.93, 0.16),
    ("V2 0.5", "ssdlite_mobilenet_v2", {"width": 0.5}, 1.54, 0.27),
    ("MnasNet 0.35", "ssdlite_mnasnet_a1", {"width": 0.35}, 1.02, 0.18),
    ("MnasNet 0.5", "ssdlite_mnasnet_a1", {"width": 0.5}, 1.68, 0.29),
    ("V3-Small", "ssdlite_mobilenet_v3_small", {}, 2.49, 0.21),
    ("V3-Small reduced tail", "ssdlite_mobilenet_v3_small", {"tail": "reduced"}, 1.77, 0.16),
]
TOLERANCE = 0.05
# torchvision 0.29 ssdlite320_mobilenet_v3_large(num_classes=91), parameters
# (../shared/reference/mobilenet-facts.md).
TORCHVISION_SSDLITE_PARAMS = 3_440_060
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def counts(name: str, **factors: Any) -> tuple[int, int, int]:
    architecture = resolve_architecture(name, factors)
    model = ablate.build_model(name, **factors)
    size = architecture.resolution
    result = count_model(model, (1, 3, size, size))
    return parameter_count(model), result.macs, result.madds_folded


@pytest.mark.parametrize(
    ("name", "factors", "params", "madds"),
    [row[1:] for row in TABLE_6],
    ids=[row[0] for row in TABLE_6],
)
def test_table_6_rows_within_tolerance(
    name: str, factors: dict[str, Any], params: float, madds: float
) -> None:
    ours_params, macs, madds_folded = counts(name, **factors)
    assert ours_params == pytest.approx(params * 1e6, rel=TOLERANCE)
    # The paper's MAdds fold BN and count h-swish and SE; plain conv MACs agree as well.
    assert madds_folded == pytest.approx(madds * 1e9, rel=TOLERANCE)
    assert macs == pytest.approx(madds * 1e9, rel=TOLERANCE)


def test_reduced_tail_built_ins_are_the_tail_factor() -> None:
    for name in ("ssdlite_mobilenet_v3_large", "ssdlite_mobilenet_v3_small"):
        assert resolve_architecture(name, {"tail": "reduced"}) == ARCHITECTURES[f"{name}_reduced"]
        assert resolve_architecture(f"{name}_reduced") == ARCHITECTURES[f"{name}_reduced"]
        # Back to the full tail: the same network (channel expansions read as ratios now).
        full = ablate.build_model(f"{name}_reduced", tail="full")
        assert shapes(full) == shapes(ablate.build_model(name))


def test_torchvision_convention_reproduces_ssdlite320_exactly() -> None:
    model = ablate.build_model("ssdlite_mobilenet_v3_large_reduced", convention="torchvision")
    assert parameter_count(model) == TORCHVISION_SSDLITE_PARAMS
    # The paper convention differs only by the anchors of the lowest map (C4, 672 channels):
    # 3 instead of 6 anchors x (4 box + 91 class) outputs of two 1x1 convs with bias.
    paper = ablate.build_model("ssdlite_mobilenet_v3_large_reduced")
    assert parameter_count(model) - parameter_count(paper) == 3 * (4 + 91) * (672 + 1)
    # The facts' torchvision-style figures: 0.58B MACs with the reduced tail, 5.20M and
    # 0.69B with the full tail.
    _, macs, _ = counts("ssdlite_mobilenet_v3_large_reduced", convention="torchvision")
    assert macs == pytest.approx(0.58e9, rel=0.01)
    params, macs, _ = counts("ssdlite_mobilenet_v3_large", convention="torchvision")
    assert params == pytest.approx(5.20e6, rel=0.01) and macs == pytest.approx(0.69e9, rel=0.01)


def test_torchvision_convention_structure() -> None:
    model = ablate.build_model("ssdlite_mobilenet_v3_large_reduced", convention="torchvision")
    # torchvision's _extra_block: 1x1 to out // 2, 3x3 depthwise stride 2, 1x1 up, all BN.
    assert [(e.reduce.conv.out_channels, e.expand.conv.out_channels) for e in model.extras] == [
        (256, 512), (128, 256), (128, 256), (64, 128)
    ]
    assert all(isinstance(e.depthwise.bn, nn.BatchNorm2d) for e in model.extras)
    outputs = [head.classes.output.out_channels for head in model.heads]
    assert outputs == [6 * 91] * 6
    boxes, logits = run(model, 320)
    # 6 anchors on 20x20, 10x10, 5x5, 3x3, 2x2 and 1x1 maps: torchvision's 3,234 boxes.
    assert boxes.shape == (1, 3234, 4) and logits.shape == (1, 3234, 91)


def test_paper_convention_outputs() -> None:
    boxes, logits = run(ablate.build_model("ssdlite_mobilenet_v3_small"), 320)
    anchors = 20 * 20 * 3 + 6 * (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1)
    assert boxes.shape == (1, anchors, 4) and logits.shape == (1, anchors, 91)
    _, logits = run(ablate.build_model("ssdlite_mobilenet_v3_small", num_classes=21), 320)
    assert logits.shape == (1, anchors, 21)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def run(model: nn.Module, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return model(torch.zeros(1, 3, size, size))


def taps(model: nn.Module, size: int) -> tuple[torch.Size, torch.Size]:
    """Shapes of C4 (the input of the C4 block's depthwise conv) and C5 (the backbone's end)."""
    seen: dict[str, torch.Size] = {}

    def c4(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["c4"] = args[0].shape

    def c5(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["c5"] = output.shape

    hooks = [
        model.blocks[model.tap].depthwise.register_forward_pre_hook(c4),
        model.last_conv.register_forward_hook(c5),
    ]
    run(model, size)
    for hook in hooks:
        hook.remove()
    return seen["c4"], seen["c5"]


@pytest.mark.parametrize(
    ("name", "factors", "c4", "c5"),
    [
        # V3 Section 6.3: C4 is the expansion of the 13th bottleneck (Large), 9th (Small).
        ("ssdlite_mobilenet_v3_large", {}, 672, 960),
        ("ssdlite_mobilenet_v3_large", {"tail": "reduced"}, 672, 480),
        ("ssdlite_mobilenet_v3_small", {}, 288, 576),
        ("ssdlite_mobilenet_v3_small", {"tail": "reduced"}, 288, 288),
        # TensorFlow's layer_15/expansion_output and layer_19 (the 1280 conv).
        ("ssdlite_mobilenet_v2", {}, 576, 1280),
        ("ssdlite_mobilenet_v2", {"tail": "reduced"}, 576, 640),
        # The expansion of the first 160-channel MBConv (112 x 6), the 1280 conv.
        ("ssdlite_mnasnet_a1", {}, 672, 1280),
        # V1: Conv2d_11_pointwise and Conv2d_13_pointwise (no conv before pooling).
        ("ssdlite_mobilenet_v1", {}, 512, 1024),
        ("ssdlite_mobilenet_v1", {"tail": "reduced"}, 512, 512),
        ("ssd_mobilenet_v1", {}, 512, 1024),
    ],
)
def test_feature_taps_are_c4_stride_16_and_c5_stride_32(
    name: str, factors: dict[str, Any], c4: int, c5: int
) -> None:
    size = resolve_architecture(name, factors).resolution
    c4_shape, c5_shape = taps(ablate.build_model(name, **factors), size)
    side_16, side_32 = -(-size // 16), -(-size // 32)  # 320: 20, 10; 300: 19, 10
    assert tuple(c4_shape) == (1, c4, side_16, side_16)
    assert tuple(c5_shape) == (1, c5, side_32, side_32)


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        # Paper layers 13-15 (0-based blocks 12-14) and the conv before pooling; the C4 block
        # keeps its expansion, depthwise and SE (672 channels), only its projection halves.
        ("ssdlite_mobilenet_v3_large", {"blocks.12.project", "blocks.13", "blocks.14"}),
        ("ssdlite_mobilenet_v3_small", {"blocks.8.project", "blocks.9", "blocks.10"}),
        ("ssdlite_mobilenet_v2", {"blocks.13.project", "blocks.14", "blocks.15", "blocks.16"}),
    ],
)
def test_reduced_tail_halves_exactly_the_tail(name: str, changed: set[str]) -> None:
    full = shapes(ablate.build_model(name))
    reduced = shapes(ablate.build_model(name, tail="reduced"))
    assert set(full) == set(reduced)
    differing = {key for key in full if full[key] != reduced[key]}
    # After the tail, C5's consumers change too: the first extra layer and C5's predictors.
    expected = (*changed, "last_conv", "extras.0.reduce.conv", "heads.1.")
    assert differing and all(key.startswith(expected) for key in differing)
    assert all(any(key.startswith(prefix) for key in differing) for prefix in expected)
    for key in differing:
        if key.startswith("blocks.") and key.endswith("project.conv.weight"):
            assert reduced[key][0] * 2 == full[key][0]  # output channels halved


def test_reduced_tail_channels_of_v3_large() -> None:
    model = ablate.build_model("ssdlite_mobilenet_v3_large", tail="reduced")
    # _reduce_consecutive_layers(defs, 13, 16): outputs 80, expansions 6 x 80 = 480, SE
    # squeeze make_divisible(480 / 4) = 120, and the 1x1 conv 6 x 80 = 480.
    assert [block.project.conv.out_channels for block in model.blocks[12:]] == [80, 80, 80]
    assert [block.depthwise.conv.out_channels for block in model.blocks[12:]] == [672, 480, 480]
    assert model.blocks[13].se.reduce.out_channels == 120
    assert model.last_conv.conv.out_channels == 480


def test_ssd_head_is_regular_convs() -> None:
    model = ablate.build_model("ssd_mobilenet_v1")
    assert resolve_architecture("ssd_mobilenet_v1").resolution == 300
    # Extra layer: 1x1 to half, then a regular 3x3 stride-2 conv to the full depth.
    first = model.extras[0]
    assert (first.reduce.conv.out_channels, first.conv.conv.out_channels) == (256, 512)
    assert first.conv.conv.groups == 1 and first.conv.conv.stride == (2, 2)
    # Predictors: 3x3 convs with bias; 3 anchors on C4 (512 channels), 6 on C5 (1024).
    head = model.heads[0]
    assert isinstance(head.boxes, nn.Conv2d) and head.boxes.kernel_size == (3, 3)
    assert (head.boxes.out_channels, head.classes.out_channels) == (3 * 4, 3 * 91)
    assert parameter_count(model.heads[1]) == 1024 * 9 * 6 * 95 + 6 * 95
    # SSDLite on the same backbone: the head alone is what changes.
    lite = ablate.build_model("ssd_mobilenet_v1", head="ssdlite")
    assert shapes(lite.blocks) == shapes(model.blocks)
    assert parameter_count(lite) == parameter_count(ablate.build_model("ssdlite_mobilenet_v1"))


def test_every_count_matches_flop_counter_on_a_detector() -> None:
    model = ablate.build_model("ssdlite_mobilenet_v3_large")
    result = count_model(model, (1, 3, 320, 320))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 320, 320))
    assert result.macs == counter.get_total_flops() // 2
    assert min(result.flops, result.flops_folded, result.madds_folded, result.bytes_fused) > 0
    assert result.bytes_unfused > result.bytes_fused > 0
    assert result.activation_peak_bytes > 0


def test_backbone_factor_sets_every_backbone_factor() -> None:
    target = "ssdlite_mobilenet_v3_small_reduced"
    factors = {factor: target for factor in ("head", "backbone", "tail", "resolution")}
    assert resolve_architecture("ssd_mobilenet_v1", factors) == ARCHITECTURES[target]
    assert resolve_architecture("mobilenet_v2", {"backbone": "mobilenet_v3_large"}) == (
        ARCHITECTURES["mobilenet_v3_large"]
    )
    # A factor given on its own wins over the backbone's.
    mixed = resolve_architecture("mobilenet_v2", {"backbone": "mobilenet_v3_large", "se": "off"})
    assert all(block.squeeze_excite is None for block in mixed.blocks)
    # On a backbone without SE, SE's ratio and gate are not set (they would have no effect).
    plain = resolve_architecture("mobilenet_v3_large", {"backbone": "mobilenet_v2"})
    assert plain == dataclasses.replace(ARCHITECTURES["mobilenet_v2"], resolution=224)


def test_describe_records_the_detector_settings() -> None:
    from ablate.variants.factors import describe_factors

    described = describe_factors(resolve_architecture("ssdlite_mobilenet_v3_large_reduced"))
    assert described["layout"] == "mobilenet_v3_large"
    assert (described["head"], described["tail"], described["convention"]) == (
        "ssdlite", "reduced", "paper"
    )
    assert described["num_classes"] == 91
    assert "head" not in describe_factors(ARCHITECTURES["mobilenet_v2"])


def test_mnasnet_squeeze_is_a_quarter_of_the_block_input() -> None:
    model = ablate.build_model("mnasnet_a1")
    # Blocks 4-6 (k5 e3 40, input 24 then 40): squeeze 6, then 10; sigmoid gates.
    squeezes = [model.blocks[index].se.reduce.out_channels for index in (3, 4, 5)]
    assert squeezes == [6, 10, 10]
    assert isinstance(model.blocks[3].se.gate, nn.Sigmoid)
    assert "expand" not in dict(model.blocks[0].named_children())  # SepConv: dw + linear 1x1


def one_error_line(arguments: list[str]) -> str:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["mobilenet_v2", "--set", "tail=reduced"], "tail: has no effect: mobilenet_v2 is a "
         "classifier"),
        (["mobilenet_v3_small", "--set", "head=ssdlite"], "head: has no effect"),
        (["ssdlite_mobilenet_v2", "--set", "head=yolo"], "head: unknown head (got 'yolo'); "
         "valid: ssd, ssdlite,"),
        (["ssdlite_mobilenet_v2", "--set", "tail=half"], "tail: unknown tail (got 'half'); "
         "valid: full, reduced,"),
        (["ssdlite_mobilenet_v2", "--set", "convention=tf"], "convention: unknown convention "
         "(got 'tf'); valid: paper, torchvision,"),
        (["ssdlite_mobilenet_v2", "--set", "tail=mobilenet_v2"], "tail: unknown tail"),
        (["ssdlite_mobilenet_v2", "--set", "backbone=resnet50"], "backbone: unknown "
         "architecture (got 'resnet50')"),
        # torchvision has no SSD head on a MobileNet, whichever way the pair is asked for.
        (["ssd_mobilenet_v1", "--set", "convention=torchvision"], "convention: torchvision "
         "builds no ssd head on a MobileNet (only ssdlite); use head: ssdlite, or convention: "
         "paper (got 'torchvision'); valid: paper"),
        (["ssdlite_mobilenet_v3_large", "--set", "convention=torchvision", "--set", "head=ssd"],
         "convention: torchvision builds no ssd head"),
    ],
)
def test_bad_detector_settings_get_one_line(arguments: list[str], expected: str) -> None:
    assert expected in one_error_line(["inspect", *arguments])


def test_a_backbone_without_a_c4_tap_is_refused() -> None:
    # A layout that never reaches output stride 32 has no stride-2 depthwise to tap before.
    small = ARCHITECTURES["ssdlite_mobilenet_v3_small"]
    shallow = dataclasses.replace(small, name="shallow", blocks=small.blocks[:8])
    with pytest.raises(FactorError, match="layout: has no C4 tap for a detector"):
        check_taps(shallow)
    assert check_taps(small) == 8


@pytest.mark.parametrize(
    ("variants", "key_path", "phrase"),
    [
        (
            "  one: {tail: reduced}\n  two: {base: mobilenet_v2, tail: reduced}\n",
            "variants.two.tail",
            "classifier",
        ),
        (
            "  lite: {}\n  tv: {convention: torchvision, head: ssd}\n",
            "variants.tv.convention",
            "torchvision builds no ssd head",
        ),
    ],
)
def test_bad_detector_setting_in_a_spec(
    tmp_path: Path, variants: str, key_path: str, phrase: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nbase: ssdlite_mobilenet_v2\nvariants:\n" + variants)
    line = one_error_line(["validate", str(spec)])
    assert "bad.yaml" in line and key_path in line and phrase in line


@pytest.mark.parametrize(
    "experiment",
    ["detection", "why_ssdlite_v3_small_faster", "why_v3_faster_detection"],
)
def test_detection_experiments_validate(experiment: str) -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "experiments" / f"{experiment}.yaml")])
    assert result.exit_code == 0, result.output


TINY_DETECTOR_SPEC = """\
name: tiny-detector
base: ssdlite_mobilenet_v3_small
input: {resolution: 96}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: lite
variants:
  lite: {}
  ssd: {head: ssd}
"""


@pytest.mark.slow
def test_a_detector_runs_quick(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_DETECTOR_SPEC)
    result = runner.invoke(app, ["run", str(spec), "--quick", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    results = load_results(Path(result.output.strip().splitlines()[-1]))
    assert results.quick and results.status == "complete"
    lite, ssd = results.variants
    assert lite.params == parameter_count(ablate.build_model("ssdlite_mobilenet_v3_small"))
    assert ssd.params > lite.params and ssd.macs > lite.macs > 0
    assert lite.resolved_factors["head"] == "ssdlite" and ssd.resolved_factors["head"] == "ssd"
    assert all(variant.latency is not None for variant in results.variants)
    names = [block.name for block in lite.blocks]
    assert {"stem", "blocks.0", "last_conv", "extras", "heads"} <= set(names)
