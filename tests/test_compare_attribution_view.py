"""Reading the results.json `attribution` object back for the reports."""

from __future__ import annotations

import copy

import pytest
from report_golden import fixture_results

from ablate.analysis.attribution_view import parse_attribution
from ablate.errors import InputFileError


def _attribution() -> dict:
    attribution = fixture_results("why_eager").attribution
    assert attribution is not None
    return copy.deepcopy(attribution)


def test_the_view_holds_every_section() -> None:
    view = parse_attribution(_attribution())
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
    view = parse_attribution(_attribution())
    assert [effect.label for effect in view.by_direction(-1)] == ["stem_channels"]
    assert [effect.label for effect in view.by_direction(1)] == ["last_stage", "activation"]
    assert view.by_direction(0) == ()


def test_interactions_notable_for_counts_are_not_latency_interactions() -> None:
    view = parse_attribution(_attribution())
    assert [pair.factors for pair in view.notable_interactions] == [("stem_channels", "activation")]
    assert view.latency_interactions == ()  # its latency interval includes zero
    assert "notable" not in view.notable_interactions[0].effect.metrics


@pytest.mark.parametrize(
    ("damage", "key_path"),
    [
        (lambda a: a.pop("shapley"), "attribution.shapley: missing"),
        (lambda a: a["shapley"].pop("activation"), "attribution.shapley: expected one entry"),
        (lambda a: a["total"].pop("ci95"), "attribution.total.ci95: missing"),
        (lambda a: a["path"][0].pop("coalition"), "attribution.path[0].coalition: missing"),
        (
            lambda a: a["total"]["ci95"].__setitem__("latency_ms", [1.0]),
            "attribution.total: expected [low, high]",
        ),
    ],
)
def test_a_damaged_attribution_names_its_key_path(damage, key_path: str) -> None:
    attribution = _attribution()
    damage(attribution)
    with pytest.raises(InputFileError, match=key_path.replace("[", r"\[").replace("]", r"\]")):
        parse_attribution(attribution)
