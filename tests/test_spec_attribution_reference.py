"""`attribution.reference`: the published change per factor (and of the whole attribution),
read, checked, carried into the results and quoted by the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import InputFileError
from ablate.spec import load_spec, load_spec_text
from ablate.spec.schema import PublishedChange

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def spec_with(reference: str) -> str:
    return (
        "name: t\n"
        "attribution:\n"
        "  from: mobilenet_v2\n"
        "  to: mobilenet_v3_large\n"
        "  factors: [stem_channels, last_stage]\n"
        f"  reference: {reference}\n"
    )


def message(reference: str) -> str:
    with pytest.raises(InputFileError) as caught:
        load_spec_text(spec_with(reference), "spec.yaml")
    return str(caught.value)


def test_changes_are_signed_and_keep_the_reference_units() -> None:
    spec = load_spec_text(
        spec_with(
            "{last_stage: {latency_ms: -7, madds_m: -30, source: 'V3 5.1'}, "
            "stem_channels: {madds_m: 0, source: s}, "
            "total: {latency_ms: -13, params_m: 2.0, madds_m: -81, source: T3}}"
        )
    )
    assert spec.attribution is not None and spec.attribution.reference is not None
    reference = spec.attribution.reference
    assert reference["last_stage"].figures() == {"latency_ms": -7.0, "madds_m": -30.0}
    assert reference["stem_channels"].figures() == {"madds_m": 0.0}  # a zero change is a change
    assert reference["total"].figures() == {"latency_ms": -13.0, "params_m": 2.0, "madds_m": -81.0}
    # Not part of the attribution: the same variants as without it.
    plain = load_spec_text(spec_with("null"))
    assert plain.attribution is not None and plain.attribution.reference is None
    assert spec.variant_names == plain.variant_names


def test_the_resolved_spec_keeps_it_and_loads_again() -> None:
    spec = load_spec_text(spec_with("{last_stage: {latency_ms: -7, source: 'V3 5.1'}}"))
    resolved = spec.to_json()
    assert resolved["attribution"]["reference"] == {
        "last_stage": {"latency_ms": -7.0, "source": "V3 5.1"}
    }
    assert "reference" not in load_spec_text(spec_with("null")).to_json()["attribution"]
    again = load_spec_text(yaml.safe_dump(resolved))
    assert again.attribution is not None and again.attribution.reference == {
        "last_stage": PublishedChange(latency_ms=-7, source="V3 5.1")
    }


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (
            "{lats_stage: {latency_ms: -7, source: x}}",
            "spec.yaml:6: attribution.reference.lats_stage: unknown factor (got 'lats_stage'); "
            "valid: stem_channels, last_stage, total",
        ),
        (
            "{kernel: {latency_ms: -7, source: x}}",
            "spec.yaml:6: attribution.reference.kernel: not one of the attribution's factors "
            "(got 'kernel'); valid: stem_channels, last_stage, total",
        ),
        (
            "{last_stage: {source: x}}",
            "spec.yaml:6: attribution.reference.last_stage: give at least one figure; "
            "valid: latency_ms, params_m, madds_m",
        ),
        (
            "{last_stage: {latency_s: -0.007, source: x}}",
            "spec.yaml:6: attribution.reference.last_stage.latency_s: unknown key; "
            "valid: latency_ms, params_m, madds_m, source",
        ),
        (
            "{last_stage: {latency_ms: .inf, source: x}}",
            "spec.yaml:6: attribution.reference.last_stage.latency_ms: expected a finite number "
            "(got inf)",
        ),
        (
            "{last_stage: {latency_ms: '-7', source: x}}",
            "spec.yaml:6: attribution.reference.last_stage.latency_ms: expected a number "
            "(got '-7')",
        ),
        (
            "{last_stage: {latency_ms: -7}}",
            "spec.yaml:6: attribution.reference.last_stage.source: missing required key",
        ),
        (
            "{last_stage: {latency_ms: -7, source: '<b>'}}",
            "spec.yaml:6: attribution.reference.last_stage.source: 1-200 characters, no control "
            "characters and none of < > & | ` \\ (got '<b>')",
        ),
        (
            "[last_stage]",
            "spec.yaml:6: attribution.reference: expected a mapping (got ['last_stage'])",
        ),
        (
            "{last_stage: -7}",
            "spec.yaml:6: attribution.reference.last_stage: expected a mapping (got -7)",
        ),
    ],
)
def test_a_bad_reference_is_one_line_with_the_key_path(reference: str, expected: str) -> None:
    assert message(reference) == expected


def test_a_bad_reference_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_with("{se: {latency_ms: 1, source: x}}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "attribution.reference.se: not one of the attribution's factors" in result.output
    assert "Traceback" not in result.output


def test_why_v3_faster_carries_the_papers_figures() -> None:
    """MobileNetV3 Section 5.1, Tables 3 and 5, as the report quoted them before c8b7d2e."""
    spec = load_spec(EXPERIMENTS / "why_v3_faster.yaml")
    assert spec.attribution is not None and spec.attribution.reference is not None
    figures = {key: change.figures() for key, change in spec.attribution.reference.items()}
    assert figures == {
        "last_stage": {"latency_ms": -7.0, "madds_m": -30.0},
        "stem_channels": {"latency_ms": -2.0, "madds_m": -10.0},
        "activation": {"latency_ms": 0.9},  # Table 5: 51.4 - 50.5 ms
        "total": {"latency_ms": -13.0, "params_m": 2.0, "madds_m": -81.0},  # 64 -> 51, 300 -> 219
    }


def test_v2_to_v3_carries_the_end_models_published_figures() -> None:
    spec = load_spec(EXPERIMENTS / "v2_to_v3.yaml")
    references = {v.name: v.reference for v in spec.variants if v.reference is not None}
    assert {name: ref.figures() for name, ref in references.items()} == {
        "v2": {"latency_ms": 64.0, "params_m": 3.4, "madds_m": 300.0},
        "v3_large": {"latency_ms": 51.0, "params_m": 5.4, "madds_m": 219.0},
    }


def test_a_run_carries_it_into_the_results_model() -> None:
    from ablate.runs.results import new_results

    spec = load_spec_text(spec_with("{last_stage: {latency_ms: -7, source: 'V3 5.1'}}"))
    results = new_results(spec, {"cpu_model": "x"})
    assert results.attribution_reference == {
        "last_stage": PublishedChange(latency_ms=-7, source="V3 5.1")
    }
    assert results.to_json()["attribution_reference"]["last_stage"]["latency_ms"] == -7.0
    without = new_results(load_spec_text(spec_with("null")), {})
    assert without.attribution_reference is None
