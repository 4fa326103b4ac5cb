"""A profile's prediction for one counted network: latency, interval, per-block breakdown,
the priors it rests on and where it leaves the profile's rows (`support`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ablate.counting.records import OpRecord
from ablate.devices.costs import FORMS, Form, group_features, total_features
from ablate.devices.profile import Profile
from ablate.devices.support import extrapolations
from ablate.runs.schema import Extrapolation

INTERVAL = (2.5, 97.5)


@dataclass(frozen=True)
class BlockPrediction:
    name: str  # "stem", "blocks.0", ..., "last_stage", "classifier"
    ms: float
    ci95_ms: tuple[float, float]  # from the coefficients' uncertainty only
    terms_ms: dict[str, float]  # the block's time per term of the form

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ms": self.ms,
            "ci95_ms": list(self.ci95_ms),
            "terms_ms": self.terms_ms,
        }


@dataclass(frozen=True)
class Prediction:
    device: str
    ms: float  # the fitted coefficients' prediction
    interval_ms: tuple[float, float]  # 95% prediction interval: coefficients and residuals
    samples_ms: tuple[float, ...]  # one per bootstrap resample, residual included
    blocks: tuple[BlockPrediction, ...]
    terms_ms: dict[str, float]
    # Where the network leaves what the profile's rows resolved; None: the profile does not
    # record its support (a file written before it did), so nothing was checked.
    extrapolated: tuple[Extrapolation, ...] | None = ()
    priors: tuple[str, ...] = ()  # the statements of the priors this prediction uses

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "latency_ms": self.ms,
            "interval95_ms": list(self.interval_ms),
            "terms_ms": self.terms_ms,
            "extrapolated": None
            if self.extrapolated is None
            else [entry.model_dump(mode="json") for entry in self.extrapolated],
            "priors": list(self.priors),
            "blocks": [block.to_json() for block in self.blocks],
        }


def profile_form(profile: Profile) -> Form:
    # The form is known and its terms are the parameters': `profile_from_json` checked both.
    return FORMS[profile.form]


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, INTERVAL)
    return float(low), float(high)


def predict_records(profile: Profile, records: Sequence[OpRecord]) -> Prediction:
    form = profile_form(profile)
    coefficients = np.array(profile.coefficients)
    samples = np.array(profile.bootstrap.coefficients)
    residuals = np.array(profile.bootstrap.residuals)
    groups = group_features(records, form, profile.view, profile.absorbed_kinds)
    total = total_features(groups, len(form.terms))
    blocks = tuple(
        BlockPrediction(
            name=name,
            ms=float(features @ coefficients),
            ci95_ms=_interval(samples @ features),
            terms_ms={
                term.name: float(features[index] * coefficients[index])
                for index, term in enumerate(form.terms)
            },
        )
        for name, features in groups.items()
    )
    with_residuals = (samples @ total) * (1.0 + residuals)
    ms = float(total @ coefficients)
    found = extrapolations(profile, form, total, ms)
    priors = tuple(
        prior.statement for prior in profile.priors if total[form.term_names.index(prior.term)] > 0
    )
    return Prediction(
        device=profile.name,
        ms=ms,
        interval_ms=_interval(with_residuals),
        samples_ms=tuple(float(value) for value in with_residuals),
        blocks=blocks,
        terms_ms={
            term.name: float(total[index] * coefficients[index])
            for index, term in enumerate(form.terms)
        },
        extrapolated=None if found is None else tuple(found),
        priors=priors,
    )
