"""Heads, conventions, tails and last stages are tables: the builders, the layer rows, the
resolver's checks and `ablate factors` all read the same entries."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

import ablate
from ablate.architecture.builder import layer_rows
from ablate.architecture.description import LAST_STAGES, LastStage, LastStageKind
from ablate.architecture.heads import CONVENTIONS, HEADS, Conv, Head
from ablate.architecture.tables import ARCHITECTURES
from ablate.architecture.taps import TAILS, with_tail
from ablate.errors import FactorError
from ablate.variants.factors import FACTORS, describe_factors
from ablate.variants.resolve import resolve_architecture
from tests.conftest import parameter_count


@pytest.mark.parametrize(
    ("factor", "table"),
    [("head", HEADS), ("tail", TAILS), ("convention", CONVENTIONS), ("last_stage", LAST_STAGES)],
)
def test_factor_help_lists_every_entry_with_its_meaning(factor: str, table: Any) -> None:
    values = FACTORS[factor].values
    assert values.startswith(" | ".join(table) + "; ")
    for name, entry in table.items():
        assert f"{name}: {entry.meaning}" in values


def test_the_tables_hold_the_references_names() -> None:
    # The references' names lead; a new entry goes after them.
    assert tuple(HEADS)[:2] == ("ssd", "ssdlite")
    assert tuple(TAILS)[:2] == ("full", "reduced")
    assert tuple(CONVENTIONS)[:2] == ("paper", "torchvision")
    assert tuple(LAST_STAGES)[:4] == ("v1", "v2", "v3", "none")
    # A last stage's source is a built-in whose stage is of that kind.
    for name, kind in LAST_STAGES.items():
        assert kind.source is None or ARCHITECTURES[kind.source].last_stage.kind == name


@pytest.mark.parametrize(
    ("factor", "value", "valid"),
    [("head", "yolo", HEADS), ("tail", "half", TAILS), ("convention", "tf", CONVENTIONS)],
)
def test_unknown_detector_setting_lists_the_table(factor: str, value: str, valid: Any) -> None:
    with pytest.raises(FactorError) as raised:
        resolve_architecture("ssdlite_mobilenet_v2", {factor: value})
    assert f"valid: {', '.join(valid)}, ssdlite_mobilenet_v1" in str(raised.value)


def test_a_list_is_no_head() -> None:
    with pytest.raises(FactorError, match=r"head: unknown head \(got \[1\]\)"):
        resolve_architecture("ssdlite_mobilenet_v2", {"head": [1]})


def test_a_convention_refuses_the_heads_it_has_no_reference_for() -> None:
    assert CONVENTIONS["torchvision"].builds("ssdlite")
    assert not CONVENTIONS["torchvision"].builds("ssd")
    assert CONVENTIONS["paper"].builds("ssd") and CONVENTIONS["paper"].builds("any-new-head")
    with pytest.raises(FactorError, match=r"\(only ssdlite\); use head: ssdlite, or "
                       r"convention: paper \(got 'torchvision'\); valid: paper$"):
        resolve_architecture("ssd_mobilenet_v1", {"convention": "torchvision"})


def test_head_labels_are_read_off_its_convs() -> None:
    lite, ssd = HEADS["ssdlite"], HEADS["ssd"]
    assert (lite.extra_operator, lite.predictor_operator) == ("1x1, dw 3x3, 1x1", "dw 3x3 + 1x1")
    assert (ssd.extra_operator, ssd.predictor_operator) == ("1x1, conv2d 3x3", "conv2d 3x3")
    assert (lite.extra_kernel, lite.extra_stride, lite.predictor_kernel) == (3, 2, 3)
    wide = Head("wide", "", (Conv("a", 5, stride=2, depthwise=True), Conv("b", 1)), ())
    assert (wide.extra_operator, wide.extra_kernel, wide.extra_stride) == (
        "1x1, dw 5x5, 1x1", 5, 2
    )


def test_detector_rows_follow_the_head() -> None:
    name = "ssd_mobilenet_v1"
    ssd = layer_rows(resolve_architecture(name), ablate.build_model(name))
    extra = next(row for row in ssd if row.layer == "extra 1")
    # 1x1 1024 -> 256 with BN, then a regular 3x3 stride-2 conv 256 -> 512 with BN.
    assert (extra.operator, extra.kernel_size, extra.stride, extra.activation) == (
        "1x1, conv2d 3x3", 3, 2, "relu6"
    )
    assert extra.params == 1024 * 256 + 2 * 256 + 256 * 9 * 512 + 2 * 512
    name = "ssdlite_mobilenet_v1"
    lite = layer_rows(resolve_architecture(name), ablate.build_model(name))
    predictors = next(row for row in lite if row.layer == "predictors 2")
    # C5 (1024 channels, 6 anchors): per predictor a 3x3 depthwise with BN, then a 1x1 with
    # bias to 6 x 4 box numbers and 6 x 91 logits.
    assert (predictors.operator, predictors.input_channels, predictors.out_channels) == (
        "box + class dw 3x3 + 1x1", 1024, 6 * 4 + 6 * 91
    )
    depthwise = 1024 * 9 + 2 * 1024
    assert predictors.params == 2 * depthwise + 1024 * 24 + 24 + 1024 * 546 + 546


DETECTOR_SETTINGS = [
    {"head": head, "tail": tail, "convention": convention}
    for head in HEADS
    for tail in TAILS
    for convention, entry in CONVENTIONS.items()
    if entry.builds(head)
]


@pytest.mark.parametrize(
    "factors", DETECTOR_SETTINGS, ids=lambda factors: "-".join(factors.values())
)
def test_every_table_entry_builds_runs_and_its_rows_hold_every_parameter(
    factors: dict[str, str],
) -> None:
    name = "ssdlite_mobilenet_v3_small"
    architecture = resolve_architecture(name, {**factors, "width": 0.5})
    model = ablate.build_model(name, **factors, width=0.5)
    assert {key: describe_factors(architecture)[key] for key in factors} == factors
    assert sum(row.params for row in layer_rows(architecture, model)) == parameter_count(model)
    with torch.inference_mode():
        boxes, logits = model(torch.zeros(1, 3, 96, 96))
    lowest = CONVENTIONS[factors["convention"]].lowest_map_anchors
    # 96 -> maps of 6, 3, 2, 1, 1, 1.
    anchors = 6 * 6 * lowest + 6 * (3 * 3 + 2 * 2 + 1 + 1 + 1)
    assert boxes.shape == (1, anchors, 4) and logits.shape == (1, anchors, 91)


@pytest.mark.parametrize("kind", LAST_STAGES)
def test_every_last_stage_builds_and_its_rows_hold_every_parameter(kind: str) -> None:
    architecture = resolve_architecture("mobilenet_v2", {"last_stage": kind})
    model = ablate.build_model("mobilenet_v2", last_stage=kind)
    rows = layer_rows(architecture, model)
    assert sum(row.params for row in rows) == parameter_count(model)
    pools = LAST_STAGES[kind].pools
    assert ("pool" in [row.layer for row in rows]) == pools
    with torch.inference_mode():
        output = model(torch.zeros(1, 3, 64, 64))
    assert output.shape == ((1, 1000) if pools else (1, 320, 2, 2))


def test_last_stage_conv_follows_its_kind() -> None:
    v2 = LastStage("v2", channels=1280, width="kept")
    assert LAST_STAGES["v2"].conv_channels(v2, 320, 0.5) == 1280
    assert LAST_STAGES["v2"].conv_channels(dataclasses.replace(v2, width="scaled"), 320, 0.5) == 640
    assert LAST_STAGES["v3"].conv_channels(LastStage("v3", channels=1280), 160, 1.0) == 960
    assert LAST_STAGES["v1"].conv_channels(LastStage("v1"), 1024, 1.0) is None
    assert not LAST_STAGES["none"].pools and LAST_STAGES["v3"].hidden
    with pytest.raises(ValueError, match="one 1x1 conv"):
        LastStageKind("both", "", conv_expansion=6, conv_to_channels=True)


def test_tails_act_on_layout_and_last_stage() -> None:
    base = ARCHITECTURES["ssdlite_mobilenet_v2"]
    assert with_tail(base, TAILS["full"]) == base
    reduced = with_tail(base, TAILS["reduced"])
    # V2's 1x1 conv before pooling is given in channels: the tail halves them; V3's 6x
    # follows the halved blocks by itself.
    assert reduced.last_stage.channels == 640
    v3 = ARCHITECTURES["ssdlite_mobilenet_v3_large"].last_stage
    assert TAILS["reduced"].last_stage(v3) == v3
    assert reduced.blocks[-1].out_channels == base.blocks[-1].out_channels // 2
