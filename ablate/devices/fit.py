"""Fitting a device profile: non-negative least squares, form choice by cross-validation.

The fit minimises squared *relative* errors (each row divided by its latency), because the
quality asked of a profile is relative (a 2 ms error is small for a 70 ms network and large
for a 5 ms one) and the rows span more than a decade of latency.

Candidate forms are compared by leave-one-architecture-out error on the rows given (rows that
resolve to one architecture leave together, so a duplicate cannot predict itself). The
simplest form within one standard error of the best mean error wins (the one-standard-error
rule): extra rates that the rows cannot tell apart only add variance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from ablate import __version__
from ablate.counting.records import OpRecord
from ablate.devices.costs import FORMS, Form, View, group_features, readable, total_features
from ablate.devices.profile import SCHEMA, Profile, ProfileError, profile_from_json
from ablate.errors import AblateError, InputFileError

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
# Leave-one-out needs a fit on every subset of all but one architecture: a form is a candidate
# only when that subset still has more architectures than the form has coefficients.
SPARE_ARCHITECTURES = 2


@dataclass(frozen=True)
class Observation:
    """One measured latency of one variant, with its counting records."""

    name: str
    model: str
    factors: dict[str, Any]
    latency_ms: float
    source: str
    architecture_key: Any  # hashable: rows with equal keys are the same network
    records: tuple[OpRecord, ...]


def _design(observations: Sequence[Observation], form: Form, view: View) -> np.ndarray:
    return np.array(
        [
            total_features(group_features(o.records, form, view), len(form.terms))
            for o in observations
        ]
    )


def fit_coefficients(features: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising sum((features @ c / latency - 1)^2)."""
    relative = features / latency[:, None]
    # Columns span GMAC (1e-1), GB (1e-2) and ops (1e2): scale them to unit norm so that
    # NNLS's tolerance means the same for every term.
    scale = np.linalg.norm(relative, axis=0)
    used = scale > 0
    coefficients = np.zeros(features.shape[1])
    if used.any():
        solution, _ = nnls(relative[:, used] / scale[used], np.ones(len(latency)), maxiter=5000)
        coefficients[used] = solution / scale[used]
    return coefficients


def _group_ids(observations: Sequence[Observation]) -> np.ndarray:
    ids: dict[Any, int] = {}
    return np.array([ids.setdefault(o.architecture_key, len(ids)) for o in observations])


def leave_one_out(features: np.ndarray, latency: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's prediction from a fit on every other architecture."""
    predicted = np.empty(len(latency))
    for group in np.unique(groups):
        held = groups == group
        coefficients = fit_coefficients(features[~held], latency[~held])
        predicted[held] = features[held] @ coefficients
    return predicted


def _relative_errors(predicted: np.ndarray, latency: np.ndarray) -> np.ndarray:
    return np.abs(predicted / latency - 1.0)


def _eligible(forms: Sequence[Form], architectures: int) -> list[Form]:
    """The forms leave-one-out can judge on this many architectures; never none: with too few
    to judge any, the form with the fewest coefficients is the only one left to fit."""
    eligible = [form for form in forms if architectures >= len(form.terms) + SPARE_ARCHITECTURES]
    return eligible or [min(forms, key=lambda form: len(form.terms))]


def _select(
    forms: Sequence[Form],
    designs: dict[str, np.ndarray],
    latency: np.ndarray,
    groups: np.ndarray,
) -> tuple[Form, dict[str, np.ndarray]]:
    """The one-standard-error choice among ``forms``; also each form's LOO predictions."""
    loo = {form.name: leave_one_out(designs[form.name], latency, groups) for form in forms}
    errors = {name: _relative_errors(predicted, latency) for name, predicted in loo.items()}
    means = {name: float(np.mean(error)) for name, error in errors.items()}
    best = min(means, key=means.__getitem__)
    threshold = means[best] + float(np.std(errors[best], ddof=1) / np.sqrt(len(latency)))
    within = [form for form in forms if means[form.name] <= threshold]
    chosen = min(within, key=lambda form: (len(form.terms), means[form.name]))
    return chosen, loo


def _nested_loo(
    forms: Sequence[Form],
    designs: dict[str, np.ndarray],
    latency: np.ndarray,
    groups: np.ndarray,
) -> np.ndarray:
    """Leave-one-out of the whole procedure: the form is chosen again without the row.

    A fold has one architecture fewer than the fit: at the fewest architectures a fit accepts,
    no form can be judged within the fold, and the fold fits the smallest form.
    """
    predicted = np.empty(len(latency))
    for group in np.unique(groups):
        held = groups == group
        rest = {name: design[~held] for name, design in designs.items()}
        eligible = _eligible(forms, len(np.unique(groups[~held])))
        form, _ = _select(eligible, rest, latency[~held], groups[~held])
        coefficients = fit_coefficients(rest[form.name], latency[~held])
        predicted[held] = designs[form.name][held] @ coefficients
    return predicted


def _bootstrap(
    features: np.ndarray, latency: np.ndarray, groups: np.ndarray, residuals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients refitted per resample of the architectures, and a residual per resample."""
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    unique = np.unique(groups)
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        drawn = generator.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([np.flatnonzero(groups == group) for group in drawn])
        samples.append(fit_coefficients(features[rows], latency[rows]))
    draws = generator.choice(residuals, size=BOOTSTRAP_RESAMPLES, replace=True)
    return np.array(samples), draws


def check_observations(
    observations: Sequence[Observation], forms: Sequence[Form], origin: str = "rows"
) -> None:
    architectures = len({o.architecture_key for o in observations})
    smallest = min(len(form.terms) for form in forms)
    needed = smallest + SPARE_ARCHITECTURES
    if architectures < needed:
        raise AblateError(
            f"{origin}: fewer rows than parameters: {len(observations)} rows, "
            f"{architectures} distinct architectures; the smallest cost model has "
            f"{smallest} parameters and leave-one-out needs at least {needed} architectures"
        )


def fit_profile(
    observations: Sequence[Observation],
    *,
    name: str,
    description: str,
    view: View = "fused",
    batch: int = 1,
    dtype: str = "float32",
    form_name: str | None = None,
    origin: str = "rows",
) -> Profile:
    """Choose the form by cross-validation (or take ``form_name``), fit it, bootstrap it."""
    forms = list(FORMS.values()) if form_name is None else [FORMS[form_name]]
    check_observations(observations, forms, origin)
    latency = np.array([o.latency_ms for o in observations])
    groups = _group_ids(observations)
    architectures = len(np.unique(groups))
    forms = _eligible(forms, architectures)
    designs = {form.name: _design(observations, form, view) for form in forms}
    form, loo = _select(forms, designs, latency, groups)
    if form_name is None:
        selection = (
            "the fewest coefficients within one standard error of the lowest leave-one-out "
            "mean relative error"
        )
    else:
        selection = "given"
    features = designs[form.name]
    coefficients = fit_coefficients(features, latency)
    fitted = features @ coefficients
    loo_predicted = loo[form.name]
    nested = _nested_loo(forms, designs, latency, groups) if form_name is None else loo_predicted
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero prediction: refused below
        residuals = latency / loo_predicted - 1.0
    spread, drawn_residuals = _bootstrap(features, latency, groups, residuals)
    parameters = [
        {
            "name": term.name,
            "meaning": term.meaning,
            "value": float(coefficients[index]),
            "unit": term.unit,
            "ci95": [
                float(np.percentile(spread[:, index], 2.5)),
                float(np.percentile(spread[:, index], 97.5)),
            ],
            "readable": readable(term, float(coefficients[index])),
        }
        for index, term in enumerate(form.terms)
    ]
    candidates = []
    for candidate in forms:
        error = _relative_errors(loo[candidate.name], latency)
        candidates.append(
            {
                "form": candidate.name,
                "meaning": candidate.meaning,
                "terms": list(candidate.term_names),
                "loo_mean_abs_error": float(np.mean(error)),
                "loo_median_abs_error": float(np.median(error)),
                "loo_max_abs_error": float(np.max(error)),
            }
        )
    loo_error = _relative_errors(loo_predicted, latency)
    nested_error = _relative_errors(nested, latency)
    quality = {
        "rows": len(observations),
        "architectures": architectures,
        "loo_median_abs_error": float(np.median(loo_error)),
        "loo_max_abs_error": float(np.max(loo_error)),
        "nested_loo_median_abs_error": float(np.median(nested_error)),
        "nested_loo_max_abs_error": float(np.max(nested_error)),
        "in_sample_max_abs_error": float(np.max(_relative_errors(fitted, latency))),
        "selection": selection,
        "candidates": candidates,
    }
    rows = [
        {
            "name": o.name,
            "model": o.model,
            "factors": o.factors,
            "latency_ms": o.latency_ms,
            "fitted_ms": float(fitted[index]),
            "loo_ms": float(loo_predicted[index]),
            "source": o.source,
        }
        for index, o in enumerate(observations)
    ]
    data = {
        "schema": SCHEMA,
        "name": name,
        "description": description,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "ablate_version": __version__,
        "view": view,
        "batch": batch,
        "dtype": dtype,
        "form": form.name,
        "parameters": parameters,
        "quality": quality,
        "bootstrap": {
            "seed": BOOTSTRAP_SEED,
            "coefficients": spread.tolist(),
            "residuals": [float(residual) for residual in drawn_residuals],
        },
        "rows": rows,
    }
    # Checked as a profile read from a file is: what is written is what can be read back.
    try:
        return profile_from_json(data)
    except ProfileError as error:
        raise InputFileError(
            origin,
            f"the profile fitted from it is not usable: {error.key_path}: {error.message}",
            choices=error.choices,
        ) from None
