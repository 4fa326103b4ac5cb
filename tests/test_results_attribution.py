"""The attribution as the results model reads it back: every section, both schema versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_golden import fixture_path, fixture_results

from ablate.analysis.record import Attribution
from ablate.errors import InputFileError
from ablate.runs.schema import SCHEMA, SCHEMA_V1, load_results


def _attribution() -> Attribution:
    attribution = fixture_results("why_eager").attribution
    assert attribution is not None
    return attribution


def test_the_view_holds_every_section() -> None:
    view = _attribution()
    assert view.factors == ("stem_channels", "activation", "last_stage")
    assert (view.from_name, view.to_name, view.method) == ("mobilenet_v2", "v2+v3_choices", "exact")
    assert view.confidence_percent == 95
    assert [effect.label for effect in view.shapley] == list(view.factors)
    assert view.shapley_of("stem_channels").metric("macs") == -10_436_608
    assert len(view.added_to_from) == len(view.removed_from_to) == 3
    assert [step.coalition for step in view.path][-1] == "to:{stem_channels,activation,last_stage}"
    assert len(view.interactions) == 3
    # Shapley shares add up to the total, latency included.
    total = sum(effect.latency.ms for effect in view.shapley if effect.latency)
    assert view.total.latency is not None and total == pytest.approx(view.total.latency.ms)


def test_factors_are_split_by_the_side_of_zero_their_interval_lies_on() -> None:
    view = _attribution()
    assert [effect.label for effect in view.by_direction(-1)] == ["stem_channels"]
    assert [effect.label for effect in view.by_direction(1)] == ["last_stage", "activation"]
    assert view.by_direction(0) == ()


def test_interactions_notable_for_counts_are_not_latency_interactions() -> None:
    view = _attribution()
    notable = view.notable_interactions()
    assert [pair.factors for pair in notable] == [("stem_channels", "activation")]
    assert view.latency_interactions() == ()  # its latency interval includes zero
    assert "notable" not in view.notable_interactions()[0].effect.metrics


def test_version_1_results_read_as_the_same_model_as_version_2() -> None:
    old, new = fixture_path("why_eager_v1"), fixture_path("why_eager")
    assert json.loads(old.read_text())["schema"] == SCHEMA_V1
    assert json.loads(new.read_text())["schema"] == SCHEMA
    # The version-2 fixture also carries the spec's `attribution.reference`, which version 1
    # predates; everything else is the same model.
    assert load_results(old) == load_results(new).model_copy(update={"attribution_reference": None})


def test_results_written_and_read_back_are_equal(tmp_path: Path) -> None:
    results = fixture_results("why_eager")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results.to_json()), encoding="utf-8")
    assert load_results(path) == results


def _damaged(tmp_path: Path, fixture: str, damage) -> Path:
    document = json.loads(fixture_path(fixture).read_text(encoding="utf-8"))
    damage(document["attribution"])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda a: a.pop("shapley"), "attribution.shapley: missing"),
        (lambda a: a["shapley"].pop("activation"), "expected one Shapley value per factor"),
        (lambda a: a["total"].pop("ci95"), "attribution.total.ci95: missing"),
        (lambda a: a["path"][0].pop("coalition"), "attribution.path[0].coalition: missing"),
        (
            lambda a: a["total"]["ci95"].__setitem__("latency_ms", [1.0]),
            "attribution.total.latency.interval_ms",
        ),
    ],
)
def test_a_damaged_version_1_attribution_names_its_key_path(
    tmp_path: Path, damage, message: str
) -> None:
    path = _damaged(tmp_path, "why_eager_v1", damage)
    with pytest.raises(InputFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_results(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda a: a.pop("shapley"), "attribution.shapley: Field required"),
        (lambda a: a["shapley"].pop(1), "expected one Shapley value per factor"),
        (lambda a: a["path"][0].pop("coalition"), "attribution.path[0].coalition: Field required"),
        (
            lambda a: a["total"]["latency"].__setitem__("interval_ms", [1.0]),
            "attribution.total.latency.interval_ms",
        ),
        (lambda a: a["total"]["metrics"].__setitem__("macs", "many"), "expected a number"),
    ],
)
def test_a_damaged_attribution_names_its_key_path(tmp_path: Path, damage, message: str) -> None:
    path = _damaged(tmp_path, "why_eager", damage)
    with pytest.raises(InputFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_results(path)
