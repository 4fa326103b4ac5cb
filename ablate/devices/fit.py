"""Fitting a device profile: non-negative least squares, form choice by cross-validation.

The fit minimises squared *relative* errors (each row divided by its latency), because the
quality asked of a profile is relative (a 2 ms error is small for a 70 ms network and large
for a 5 ms one) and the rows span more than a decade of latency.

Candidate forms are compared by leave-one-architecture-out error on the rows given (rows that
resolve to one architecture leave together, so a duplicate cannot predict itself). The
simplest form within one standard error of the best mean error wins (the one-standard-error
rule): extra rates that the rows cannot tell apart only add variance.

A rate the rows leave unresolved (`support.resolution`) would otherwise stay where NNLS put
it, often 0: a dense conv costing nothing is fine for classifiers whose one dense conv is the
stem, and absurd for a detector whose head is half dense convs. Where physics gives a rate
(`costs.PRIORS`: a dense conv at the pointwise rate, both GEMMs), the term is tied to it and
the rows fit every other coefficient around the tie; LOO, bootstrap and quality are those of
the tied fit, and the raw fit is stored beside it (`--prior none`).
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
from ablate.devices.costs import (
    FORMS,
    PRIORS,
    Form,
    PriorRule,
    View,
    group_features,
    readable,
    total_features,
)
from ablate.devices.profile import SCHEMA, Profile, ProfileError, profile_from_json
from ablate.devices.support import resolution, support_of
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


def fit_coefficients(
    features: np.ndarray, latency: np.ndarray, tie: np.ndarray | None = None
) -> np.ndarray:
    """Non-negative coefficients minimising sum((features @ c / latency - 1)^2).

    ``tie`` (terms x free coefficients, 0/1) fits ``c = tie @ free``: a prior ties a term's
    rate to another's, and the rows then fit the rest around it.
    """
    if tie is not None:
        return tie @ fit_coefficients(features @ tie, latency)
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


def leave_one_out(
    features: np.ndarray,
    latency: np.ndarray,
    groups: np.ndarray,
    tie: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's prediction from a fit on every other architecture."""
    predicted = np.empty(len(latency))
    for group in np.unique(groups):
        held = groups == group
        coefficients = fit_coefficients(features[~held], latency[~held], tie)
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
    priors: Sequence[PriorRule] = (),
) -> np.ndarray:
    """Leave-one-out of the whole procedure: the form is chosen again without the row.

    A fold has one architecture fewer than the fit: at the fewest architectures a fit accepts,
    no form can be judged within the fold, and the fold fits the smallest form. The priors
    of the whole fit apply in every fold whose form has their terms (judging what a fold
    resolved would take a bootstrap per fold).
    """
    predicted = np.empty(len(latency))
    for group in np.unique(groups):
        held = groups == group
        rest = {name: design[~held] for name, design in designs.items()}
        eligible = _eligible(forms, len(np.unique(groups[~held])))
        form, _ = _select(eligible, rest, latency[~held], groups[~held])
        coefficients = fit_coefficients(rest[form.name], latency[~held], tie_matrix(form, priors))
        predicted[held] = designs[form.name][held] @ coefficients
    return predicted


def _bootstrap(
    features: np.ndarray,
    latency: np.ndarray,
    groups: np.ndarray,
    residuals: np.ndarray,
    tie: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients refitted per resample of the architectures, and a residual per resample.

    Seeded alike for every fit: the fit with priors and the one without see the same
    resamples.
    """
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    unique = np.unique(groups)
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        drawn = generator.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([np.flatnonzero(groups == group) for group in drawn])
        samples.append(fit_coefficients(features[rows], latency[rows], tie))
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


@dataclass(frozen=True)
class _FormFit:
    """One form fitted on every row: its coefficients, their bootstrap, per-row predictions."""

    coefficients: np.ndarray
    fitted: np.ndarray
    loo: np.ndarray
    nested: np.ndarray  # leave-one-out of the whole procedure, form choice included
    spread: np.ndarray  # resamples x terms
    residual_draws: np.ndarray  # one relative residual per resample


def _fit_form(
    features: np.ndarray,
    latency: np.ndarray,
    groups: np.ndarray,
    loo: np.ndarray,
    nested: np.ndarray,
    tie: np.ndarray | None,
) -> _FormFit:
    coefficients = fit_coefficients(features, latency, tie)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero prediction: refused later
        residuals = latency / loo - 1.0
    spread, draws = _bootstrap(features, latency, groups, residuals, tie)
    return _FormFit(coefficients, features @ coefficients, loo, nested, spread, draws)


def _interval(values: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def applicable_priors(form: Form, verdicts: Sequence[tuple[bool, str]]) -> list[PriorRule]:
    """The priors for the terms the rows left unresolved, where the rate they borrow is
    resolved (a rate the rows did not pin down either is no fallback)."""
    resolved = {term.name: ok for term, (ok, _) in zip(form.terms, verdicts, strict=True)}
    return [
        rule
        for rule in PRIORS
        if rule.term in resolved
        and rule.rate_of in resolved
        and not resolved[rule.term]
        and resolved[rule.rate_of]
    ]


def tie_matrix(form: Form, priors: Sequence[PriorRule]) -> np.ndarray | None:
    """terms x free coefficients: each prior's term takes its ``rate_of``'s coefficient."""
    names = list(form.term_names)
    tied = {
        rule.term: rule.rate_of for rule in priors if rule.term in names and rule.rate_of in names
    }
    if not tied:
        return None
    free = [name for name in names if name not in tied]
    matrix = np.zeros((len(names), len(free)))
    for row, name in enumerate(names):
        matrix[row, free.index(tied.get(name, name))] = 1.0
    return matrix


def _parameters(form: Form, fit: _FormFit, priors: Sequence[PriorRule]) -> list[dict[str, Any]]:
    borrowed = {rule.term: rule.rate_of for rule in priors}
    parameters = []
    for index, term in enumerate(form.terms):
        value = float(fit.coefficients[index])
        text = readable(term, value)
        if term.name in borrowed:
            text += f" (prior: {borrowed[term.name]}'s rate)"
        parameters.append(
            {
                "name": term.name,
                "meaning": term.meaning,
                "value": value,
                "unit": term.unit,
                "ci95": list(_interval(fit.spread[:, index])),
                "readable": text,
            }
        )
    return parameters


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
    """Choose the form by cross-validation (or take ``form_name``), fit it, bootstrap it,
    judge which terms the rows resolved, and fit again with a prior (`costs.PRIORS`) for
    each unresolved rate that has one; the fit without priors is kept beside it."""
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
    loo_raw = loo[form.name]
    nested_raw = _nested_loo(forms, designs, latency, groups) if form_name is None else loo_raw
    raw = _fit_form(features, latency, groups, loo_raw, nested_raw, None)
    raw_ci95 = [_interval(raw.spread[:, index]) for index in range(len(form.terms))]
    verdicts = resolution(form, features, raw_ci95)
    priors = applicable_priors(form, verdicts)
    used = raw
    if priors:
        tie = tie_matrix(form, priors)
        loo_tied = leave_one_out(features, latency, groups, tie)
        nested_tied = (
            _nested_loo(forms, designs, latency, groups, priors) if form_name is None else loo_tied
        )
        used = _fit_form(features, latency, groups, loo_tied, nested_tied, tie)
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

    def summary(fit: _FormFit, rules: Sequence[PriorRule]) -> dict[str, Any]:
        """The parts of a profile that depend on the fit: with priors, or the raw one."""
        loo_error = _relative_errors(fit.loo, latency)
        nested_error = _relative_errors(fit.nested, latency)
        return {
            "parameters": _parameters(form, fit, rules),
            "quality": {
                "rows": len(observations),
                "architectures": architectures,
                "loo_median_abs_error": float(np.median(loo_error)),
                "loo_max_abs_error": float(np.max(loo_error)),
                "nested_loo_median_abs_error": float(np.median(nested_error)),
                "nested_loo_max_abs_error": float(np.max(nested_error)),
                "in_sample_max_abs_error": float(np.max(_relative_errors(fit.fitted, latency))),
                "selection": selection,
                "candidates": candidates,
            },
            "bootstrap": {
                "seed": BOOTSTRAP_SEED,
                "coefficients": fit.spread.tolist(),
                "residuals": [float(residual) for residual in fit.residual_draws],
            },
            "support": [
                entry.model_dump(mode="json")
                for entry in support_of(form, features, fit.coefficients, verdicts)
            ],
        }

    rows = [
        {
            "name": o.name,
            "model": o.model,
            "factors": o.factors,
            "latency_ms": o.latency_ms,
            "fitted_ms": float(used.fitted[index]),
            "loo_ms": float(used.loo[index]),
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
        **summary(used, priors),
        "rows": rows,
        "priors": [
            {
                "term": rule.term,
                "rate_of": rule.rate_of,
                "statement": rule.statement,
                "reason": rule.reason,
            }
            for rule in priors
        ],
    }
    if priors:
        data["raw"] = {
            **summary(raw, ()),
            "fitted_ms": [float(value) for value in raw.fitted],
            "loo_ms": [float(value) for value in raw.loo],
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
