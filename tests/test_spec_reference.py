"""`variants.NAME.reference`: parsing, errors, and that it is no factor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.architecture.builder import build_module
from ablate.cli import app
from ablate.errors import InputFileError
from ablate.spec import load_spec, load_spec_text
from tests.conftest import parameter_count

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def spec_with(entry: str) -> str:
    return f"name: t\nbaseline: a\nvariants:\n  a: {{}}\n  b: {entry}\n"


def message(entry: str) -> str:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(spec_with(entry), "spec.yaml")
    return str(caught.value)


def test_reference_is_parsed_with_its_units_in_the_key_names() -> None:
    spec = load_spec_text(
        spec_with(
            "{width: 0.75, reference: {latency_ms: 39.8, params_m: 4, madds_m: 155, "
            "source: 'V3 paper Table 9'}}"
        )
    )
    reference = spec.variant("b").reference
    assert reference is not None
    assert (reference.latency_ms, reference.params_m, reference.madds_m) == (39.8, 4.0, 155.0)
    assert reference.source == "V3 paper Table 9"
    assert reference.figures() == {"latency_ms": 39.8, "params_m": 4.0, "madds_m": 155.0}
    assert spec.variant("a").reference is None
    # Not a factor: the factors are as without it.
    assert spec.variant("b").factors == {"width": 0.75, "resolution": 224}


def test_a_figure_may_stand_alone() -> None:
    spec = load_spec_text(spec_with("{reference: {madds_m: 219, source: T3}}"))
    reference = spec.variant("b").reference
    assert reference is not None and reference.figures() == {"madds_m": 219.0}


def test_reference_changes_neither_architecture_nor_grouping() -> None:
    spec = load_spec_text(
        spec_with("{reference: {latency_ms: 51.4, source: T5}}")
        + "  c: {reference: {latency_ms: 51, source: T3}}\n"
    )
    assert spec.variant("a").architecture == spec.variant("b").architecture
    assert list(spec.architecture_groups().values()) == [("a", "b", "c")]


def test_resolved_spec_keeps_the_reference_and_loads_again() -> None:
    spec = load_spec_text(spec_with("{se: off, reference: {latency_ms: 12.5, source: 'p. 3'}}"))
    resolved = spec.to_json()
    assert resolved["variants"]["b"] == {
        "base": "mobilenet_v3_large",
        "se": False,
        "resolution": 224,
        "reference": {"latency_ms": 12.5, "source": "p. 3"},
    }
    assert "reference" not in resolved["variants"]["a"]
    assert spec.variant("b").to_json()["reference"] == {"latency_ms": 12.5, "source": "p. 3"}
    again = load_spec_text(yaml.safe_dump(resolved))
    assert again.variant("b").reference == spec.variant("b").reference


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{reference: {latency_ms: -1, source: x}}",
            "spec.yaml:5: variants.b.reference.latency_ms: must be greater than 0 (got -1)",
        ),
        (
            "{reference: {latency_ms: 0, source: x}}",
            "spec.yaml:5: variants.b.reference.latency_ms: must be greater than 0 (got 0)",
        ),
        (
            "{reference: {latency_s: 0.05, source: x}}",
            "spec.yaml:5: variants.b.reference.latency_s: unknown key; "
            "valid: latency_ms, params_m, madds_m, source",
        ),
        (
            "{reference: {latency_ms: '51', source: x}}",
            "spec.yaml:5: variants.b.reference.latency_ms: expected a number (got '51')",
        ),
        (
            "{reference: {latency_ms: .nan, source: x}}",
            "spec.yaml:5: variants.b.reference.latency_ms: expected a finite number (got nan)",
        ),
        (
            "{reference: {latency_ms: 5}}",
            "spec.yaml:5: variants.b.reference.source: missing required key",
        ),
        (
            "{reference: {source: x}}",
            "spec.yaml:5: variants.b.reference: give at least one figure; "
            "valid: latency_ms, params_m, madds_m",
        ),
        ("{reference: 51.2}", "spec.yaml:5: variants.b.reference: expected a mapping (got 51.2)"),
        (
            "{reference: {latency_ms: 5, source: 'a|b'}}",
            "spec.yaml:5: variants.b.reference.source: 1-200 characters, no control characters "
            "and none of < > & | ` \\ (got 'a|b')",
        ),
        (
            "{reference: {latency_ms: 5, source: 3}}",
            "spec.yaml:5: variants.b.reference.source: expected a string (got 3)",
        ),
    ],
)
def test_bad_reference_is_one_line_with_the_key_path(entry: str, expected: str) -> None:
    assert message(entry) == expected


def test_grid_variants_take_no_reference() -> None:
    with pytest.raises(InputFileError) as caught:
        load_spec_text("name: t\ngrid:\n  reference: [1]\n", "spec.yaml")
    assert str(caught.value).startswith("spec.yaml:3: grid.reference: unknown factor; valid: base")


def test_bad_reference_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_with("{reference: {latency_ms: -3, source: x}}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "variants.b.reference.latency_ms: must be greater than 0 (got -3)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["paper_latency.yaml", "detection.yaml"])
def test_shipped_references_match_our_parameter_counts_within_5_percent(name: str) -> None:
    spec = load_spec(EXPERIMENTS / name)
    checked = []
    for variant in spec.variants:
        reference = variant.reference
        if reference is None or reference.params_m is None:
            continue
        params = parameter_count(build_module(variant.architecture))
        # The paper rounds to 0.1M (Table 6: 0.01M); that is inside the band.
        assert abs(params / (reference.params_m * 1e6) - 1) <= 0.05, (variant.name, params)
        checked.append(variant.name)
    assert len(checked) == {"paper_latency.yaml": 6, "detection.yaml": 11}[name]


def test_paper_latency_carries_every_published_latency() -> None:
    spec = load_spec(EXPERIMENTS / "paper_latency.yaml")
    latencies = {
        variant.name: variant.reference.latency_ms
        for variant in spec.variants
        if variant.reference is not None
    }
    # V3 paper Table 3 (and Table 9 for the 0.75 rows), Table 5: Pixel-1 ms.
    assert latencies == {
        "v2": 64,
        "v2_0.35": 16.6,
        "v3_large": 51,
        "v3_large_0.75": 39.8,
        "v3_small": 15.8,
        "v3_small_0.75": 12.8,
        "mnasnet_a1": 71,
        "t5_published": 51.4,
        "t5_relu": 50.5,
        "t5_hswish@16": 53.5,
        "t5_hswish@112": 51.0,
    }
    assert spec.baseline == "v2"
