"""The shipped experiments load, have the expected variants, and fit their time budgets."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ablate.architecture.tables import ARCHITECTURES
from ablate.spec import ExperimentSpec, load_spec

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# file -> (variants, distinct architectures, baseline)
EXPECTED = {
    "hswish.yaml": (8, 7, "published"),
    "host_profile.yaml": (16, 16, "s-1.0-224"),
    "calibrate.yaml": (39, 39, "s-0.5-160"),
    "se.yaml": (5, 5, "published"),
    "kernels.yaml": (3, 3, "published"),
    "expansion.yaml": (5, 5, "v3_published"),
    "last_stage.yaml": (4, 4, "published"),
    "v2_to_v3.yaml": (9, 8, "v2"),
    "why_v3_faster.yaml": (128, 128, "to:{}"),
    "why_v3_faster_matrix.yaml": (128, 128, "to:{}"),
    "why_v3_small_faster.yaml": (128, 128, "to:{}"),
    "detection.yaml": (12, 12, "v2"),
    "paper_latency.yaml": (11, 10, "v2"),
    "why_ssdlite_v3_small_faster.yaml": (16, 16, "to:{}"),
    "why_v3_faster_detection.yaml": (256, 256, "to:{}"),
    "why_v4_faster.yaml": (128, 128, "to:{}"),
}
# Wall-clock limits on 2 cores: the latency budget plus the longest warm-up of every distinct
# architecture must leave this share of the limit for building and counting.
FIVE_MINUTES, FIFTEEN_MINUTES = 300.0, 900.0
SHARE_FOR_BUILD_AND_COUNT = 0.15


def load(name: str) -> ExperimentSpec:
    return load_spec(EXPERIMENTS / name)


def test_every_shipped_spec_is_expected() -> None:
    assert sorted(path.name for path in EXPERIMENTS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_spec_loads(name: str) -> None:
    spec = load(name)
    variants, distinct, baseline = EXPECTED[name]
    assert spec.name == Path(name).stem
    assert (len(spec.variants), len(spec.architecture_groups()), spec.baseline) == (
        variants,
        distinct,
        baseline,
    )
    assert spec.description
    limit = FIFTEEN_MINUTES if spec.attribution else FIVE_MINUTES
    worst = spec.measure.budget_s + len(spec.architecture_groups()) * spec.measure.warmup_s
    assert worst <= limit * (1 - SHARE_FOR_BUILD_AND_COUNT)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_spec_cites_the_paper(name: str) -> None:
    comments = [line for line in load(name).source_text.splitlines() if line.startswith("#")]
    assert any("Table" in line or "Section" in line for line in comments)


def test_the_calibration_spec_switches_every_cost_on_and_off() -> None:
    spec = load("calibrate.yaml")
    architectures = [variant.architecture for variant in spec.variants]
    blocks = [block for architecture in architectures for block in architecture.blocks]
    assert len(spec.variants) <= 40
    assert {(b.kernel_size, b.stride) for b in blocks} == {
        (kernel, stride) for kernel in (3, 5, 7) for stride in (1, 2)
    }
    assert {b.activation for b in blocks} == {"relu", "relu6", "hswish", "swish"}
    gates = {b.squeeze_excite.gate if b.squeeze_excite else None for b in blocks}
    assert gates == {None, "hsigmoid", "sigmoid"}
    assert {a.last_stage.kind for a in architectures} == {"v1", "v2", "v3"}
    assert {a.stem.channels for a in architectures} == {8, 16, 32, 48}
    assert (min(a.width for a in architectures), max(a.width for a in architectures)) == (
        0.25,
        1.25,
    )
    resolutions = {a.resolution for a in architectures}
    assert (min(resolutions), max(resolutions)) == (96, 320)
    assert {a.num_classes for a in architectures} == {10, 100, 1000}


def test_the_calibration_spec_runs_convs_over_channels_off_a_multiple_of_4() -> None:
    # ONNX Runtime runs them outside its channel-blocked layout: the unblocked terms'
    # networks, with 3x3 and 5x5 depthwise convs among them.
    from ablate.counting.kinds import Kind
    from ablate.devices.observations import count_variant

    spec = load("calibrate.yaml")
    sizes = set()
    for name in ("v2-0.75-192-e2.3", "s-1.0-192-e2.3", "m-0.75-256-e2.3"):
        variant = spec.variant(name)
        records = count_variant(variant.base, variant.factors)[1].records
        unblocked = [r for r in records if r.kind is Kind.CONV_DEPTHWISE and r.in_channels % 4 != 0]
        assert unblocked, name
        sizes |= {r.kernel for r in unblocked}
    assert sizes == {(3, 3), (5, 5)}
    # Beside the 36 networks of 2026-12-07.
    others = [v for v in spec.variants if "-e2." not in v.name]
    assert len(others) == 36


def test_the_calibration_spec_holds_none_of_the_networks_it_is_judged_on() -> None:
    judged = {variant.architecture for variant in load("why_v3_faster.yaml").variants}
    assert not judged & {variant.architecture for variant in load("calibrate.yaml").variants}


def test_hswish_published_placement_is_hswish_at_80() -> None:
    spec = load("hswish.yaml")
    assert spec.variant("published").architecture == ARCHITECTURES["mobilenet_v3_large"]
    blocks = [block.activation for block in spec.variant("hswish@112").architecture.blocks]
    assert blocks == ["relu"] * 10 + ["hswish"] * 5
    swish_at_80 = spec.variant("swish@80").architecture
    assert swish_at_80.stem.activation == "swish"
    assert [block.activation for block in swish_at_80.blocks] == ["relu"] * 6 + ["swish"] * 9


def test_v2_to_v3_path_ends_at_v3_large() -> None:
    spec = load("v2_to_v3.yaml")
    assert spec.variant("v2").architecture == ARCHITECTURES["mobilenet_v2"]
    assert spec.variant("+last_stage").architecture == ARCHITECTURES["mobilenet_v3_large"]
    steps = [variant.factors for variant in spec.variants[1:-1]]
    for before, after in itertools.pairwise(steps):
        assert len(after) == len(before) + 1 and before.items() <= after.items()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("why_v3_faster.yaml", "mobilenet_v3_large"),
        ("why_v3_small_faster.yaml", "mobilenet_v3_small"),
    ],
)
def test_attribution_specs_span_v2_to_the_target(name: str, target: str) -> None:
    spec = load(name)
    assert spec.attribution is not None
    assert spec.attribution.factors == (
        "layout",
        "stem_channels",
        "kernel",
        "expansion",
        "se",
        "activation",
        "last_stage",
    )
    assert spec.attribution.plan().method == "exact"
    assert spec.variant("to:{}").architecture == ARCHITECTURES["mobilenet_v2"]
    full = "to:{layout,stem_channels,kernel,expansion,se,activation,last_stage}"
    assert spec.variant(full).architecture == ARCHITECTURES[target]
