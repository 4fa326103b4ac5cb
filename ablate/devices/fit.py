"""Fitting a device profile: non-negative least squares, form choice by cross-validation.

The fit minimises squared *relative* errors (each row divided by its latency), because the
quality asked of a profile is relative (a 2 ms error is small for a 70 ms network and large
for a 5 ms one) and the rows span more than a decade of latency.

Candidate forms are compared by leave-one-architecture-out error on the rows given (rows that
resolve to one architecture leave together, so a duplicate cannot predict itself). On
whole-network rows the simplest form within one standard error of the best mean error wins
(the one-standard-error rule): extra rates that a few dozen rows cannot tell apart only add
variance. Where every network's kernels were timed, thousands of kernel rows pin each rate
(the bootstrap intervals show it), and the form with the lowest mean error wins outright.

A rate the rows leave unresolved (`support.resolution`) would otherwise stay where NNLS put
it, often 0: a dense conv costing nothing is fine for classifiers whose one dense conv is the
stem, and absurd for a detector whose head is half dense convs. Where physics gives a rate
(`costs.PRIORS`: a dense conv at the pointwise rate, both GEMMs), the term is tied to it and
the rows fit every other coefficient around the tie; LOO, bootstrap and quality are those of
the tied fit, and the raw fit is stored beside it (`--prior none`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import nnls

from ablate import __version__
from ablate.counting.kinds import Kind
from ablate.counting.records import OpRecord
from ablate.devices.costs import (
    FORMS,
    NOTHING_ABSORBED,
    PRIORS,
    Absorbed,
    Form,
    PriorRule,
    View,
    group_features,
    is_kernel,
    network_traffic,
    op_features,
    readable,
    spill_variants,
    total_features,
    unblocked_variants,
)
from ablate.devices.predict import predict_records
from ablate.devices.profile import SCHEMA, Profile, ProfileError, profile_from_json
from ablate.devices.support import resolution, support_of
from ablate.errors import AblateError, InputFileError

BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
# Below this share of a network's mean kernel time, a kernel's error is weighed as if it took
# that much: a profiler reads 0 ms for the tiniest kernels, which must not weigh infinitely.
KERNEL_FLOOR = 0.1
# Leave-one-out needs a fit on every subset of all but one architecture: a form is a candidate
# only when that subset still has more architectures than the form has coefficients.
SPARE_ARCHITECTURES = 2


class KernelTiming(Protocol):
    """One kernel the runtime timed, matched to the counting records it ran
    (`matching.KernelRow`)."""

    @property
    def records(self) -> tuple[int, ...]: ...

    @property
    def milliseconds(self) -> float: ...


@dataclass(frozen=True)
class Observation:
    """One measured latency of one variant, with its counting records and, where the runtime
    timed them, its kernels."""

    name: str
    model: str
    factors: dict[str, Any]
    latency_ms: float
    source: str
    architecture_key: Any  # hashable: rows with equal keys are the same network
    records: tuple[OpRecord, ...]
    kernels: tuple[KernelTiming, ...] = ()
    # The sum of the kernel times as profiled, before they are scaled to the latency.
    profiled_ms: float | None = None
    kernel_match: str | None = None  # how the kernels joined the records, in one line
    # Kernel records of the view that the runtime ran inside the kernel before them.
    fused_by_runtime: tuple[int, ...] = ()
    # The measurement's flags on this latency (`measurement.statistics`: "drift", "high_iqr").
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Design:
    """The rows one form is fitted on: first a whole-network row per observation, then (for a
    per-kernel form) every timed kernel of every network.

    A row's error counts relative to its network's latency (``scale``): a network row's is its
    relative error, and a kernel row's is its share of the network's error, so a kernel
    weighs by its time and a network of many small kernels no more than one of few large ones.
    """

    features: np.ndarray  # rows x terms
    target: np.ndarray  # ms
    scale: np.ndarray  # ms: the latency of the row's network
    groups: np.ndarray  # the row's network (architecture)
    networks: int  # the first `networks` rows are the whole-network rows

    def without(self, group: int) -> _Design:
        return self.subset(self.groups != group)

    def subset(self, rows: np.ndarray) -> _Design:
        """The rows selected by a boolean mask or an index array (networks first)."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        network_rows = index[index < self.networks]
        kernel_rows = index[index >= self.networks]
        order = np.concatenate([network_rows, kernel_rows])
        return _Design(
            self.features[order],
            self.target[order],
            self.scale[order],
            self.groups[order],
            len(network_rows),
        )

    @property
    def network_features(self) -> np.ndarray:
        return self.features[: self.networks]

    @property
    def network_groups(self) -> np.ndarray:
        return self.groups[: self.networks]


# A kind is run inside the kernel before it (absorbed) on a device where its calibration saw
# that for at least this share of the kind's kernel records, and at least this many times.
ABSORBED_SHARE = 0.9
ABSORBED_AT_LEAST = 10


def absorbed_kinds(observations: Sequence[Observation], view: View) -> list[dict[str, Any]]:
    """The kinds the runtime ran inside the kernel before them, from the per-kernel matches:
    ONNX Runtime's FusedConv takes a conv's h-swish and residual add, XNNPACK only clamps
    (which the fused view already folds). Each with how often it was seen fused."""
    seen: Counter[Kind] = Counter()
    fused: Counter[Kind] = Counter()
    for observation in observations:
        if not observation.kernels:
            continue
        for record in observation.records:
            if is_kernel(record, view):
                seen[record.kind] += 1
        for index in observation.fused_by_runtime:
            fused[observation.records[index].kind] += 1
    return [
        {"kind": kind.value, "fused": fused[kind], "seen": seen[kind]}
        for kind in sorted(fused, key=lambda kind: kind.value)
        if fused[kind] >= ABSORBED_AT_LEAST and fused[kind] >= ABSORBED_SHARE * seen[kind]
    ]


def _network_features(
    observation: Observation, form: Form, view: View, absorbed: Absorbed
) -> np.ndarray:
    return total_features(
        group_features(observation.records, form, view, absorbed), len(form.terms)
    )


def _design(
    observations: Sequence[Observation],
    form: Form,
    view: View,
    groups: np.ndarray,
    absorbed: Absorbed = NOTHING_ABSORBED,
) -> _Design:
    latency = np.array([o.latency_ms for o in observations])
    features = [_network_features(o, form, view, absorbed) for o in observations]
    target, scale, row_groups = list(latency), list(latency), list(groups)
    if form.kernels:
        # A kernel's event does not hold the time the runtime spends outside it.
        inside_kernel = np.array([not term.outside for term in form.terms])
        for observation, group in zip(observations, groups, strict=True):
            timed = sum(kernel.milliseconds for kernel in observation.kernels)
            if timed <= 0:
                continue
            traffic = network_traffic(observation.records, view) if form.cache_bytes else 0.0
            # A profiler's own per-kernel cost inflates the sum (eager's and ONNX Runtime's
            # by up to 2x): such kernels are scaled down to the measured latency, keeping the
            # proportions the profiler saw. Kernels that sum to less are left as timed: the
            # rest of the latency ran outside them (ExecuTorch int8: 6-29% of it), which the
            # whole-network row and the `outside` term carry; scaled up, it would be charged
            # to every kernel by its time.
            factor = min(1.0, observation.latency_ms / timed)
            floor = KERNEL_FLOOR * observation.latency_ms / len(observation.kernels)
            for kernel in observation.kernels:
                row = np.zeros(len(form.terms))
                for index in kernel.records:
                    row += op_features(observation.records[index], form, view, absorbed, traffic)
                row *= inside_kernel
                milliseconds = kernel.milliseconds * factor
                features.append(row)
                target.append(milliseconds)
                # A kernel's error counts relative to sqrt(its time x the network's): if every
                # kernel is off by the same fraction, the network's kernels together weigh
                # what its whole-network row does, and each kernel by its time.
                scale.append(float(np.sqrt(max(milliseconds, floor) * observation.latency_ms)))
                row_groups.append(group)
    return _Design(
        np.array(features),
        np.array(target),
        np.array(scale),
        np.array(row_groups),
        len(observations),
    )


def fit_coefficients(
    features: np.ndarray,
    latency: np.ndarray,
    tie: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Non-negative coefficients minimising sum(((features @ c - latency) / scale)^2); scale
    defaults to latency (relative errors).

    ``tie`` (terms x free coefficients, 0/1) fits ``c = tie @ free``: a prior ties a term's
    rate to another's, and the rows then fit the rest around it.
    """
    if tie is not None:
        return tie @ fit_coefficients(features @ tie, latency, scale=scale)
    scale = latency if scale is None else scale
    relative = features / scale[:, None]
    # Columns span GMAC (1e-1), GB (1e-2) and ops (1e2): scale them to unit norm so that
    # NNLS's tolerance means the same for every term.
    norms = np.linalg.norm(relative, axis=0)
    used = norms > 0
    coefficients = np.zeros(features.shape[1])
    if used.any():
        solution, _ = nnls(relative[:, used] / norms[used], latency / scale, maxiter=5000)
        coefficients[used] = solution / norms[used]
    return coefficients


def _fit(design: _Design, tie: np.ndarray | None = None) -> np.ndarray:
    return fit_coefficients(design.features, design.target, tie, design.scale)


def _group_ids(observations: Sequence[Observation]) -> np.ndarray:
    ids: dict[Any, int] = {}
    return np.array([ids.setdefault(o.architecture_key, len(ids)) for o in observations])


def leave_one_out(design: _Design, tie: np.ndarray | None = None) -> np.ndarray:
    """Each network's prediction from a fit on every other architecture's rows."""
    predicted = np.empty(design.networks)
    groups = design.network_groups
    for group in np.unique(groups):
        coefficients = _fit(design.without(group), tie)
        predicted[groups == group] = design.network_features[groups == group] @ coefficients
    return predicted


def _relative_errors(predicted: np.ndarray, latency: np.ndarray) -> np.ndarray:
    return np.abs(predicted / latency - 1.0)


def _architectures_needed(form: Form, kernels_timed: bool) -> int:
    """Leave-one-out needs a fit on every subset of all but one architecture. Fitted on
    kernels, a form's rows are the kernels (dozens per network): the spare architectures
    suffice; on whole networks it needs more architectures than coefficients."""
    return (1 if form.kernels and kernels_timed else len(form.terms)) + SPARE_ARCHITECTURES


def _eligible(forms: Sequence[Form], architectures: int, kernels_timed: bool) -> list[Form]:
    """The forms leave-one-out can judge on this many architectures; never none: with too few
    to judge any, the form with the fewest coefficients is the only one left to fit."""
    eligible = [
        form for form in forms if architectures >= _architectures_needed(form, kernels_timed)
    ]
    return eligible or [min(forms, key=lambda form: len(form.terms))]


TIE = 1e-6  # mean relative errors this close are the same
SELECTION = {
    False: "the fewest coefficients within one standard error of the lowest leave-one-out "
    "mean relative error",
    True: "the per-kernel form of lowest leave-one-out mean relative error (every network's "
    "kernels timed)",
}


def _select(
    forms: Sequence[Form],
    designs: dict[str, _Design],
    latency: np.ndarray,
    kernels_timed: bool = False,
) -> tuple[Form, dict[str, np.ndarray]]:
    """The choice among ``forms`` (`SELECTION`); also each form's LOO predictions."""
    loo = {form.name: leave_one_out(designs[form.name]) for form in forms}
    errors = {name: _relative_errors(predicted, latency) for name, predicted in loo.items()}
    means = {name: float(np.mean(error)) for name, error in errors.items()}
    best = min(means, key=means.__getitem__)
    # ExecuTorch fp32, 2026-12-07: the one-standard-error rule took kernel_sizes_elementwise
    # (10 coefficients, LOO 10.4%), which predicts the full attribution at 5.6% / 11.1%, over
    # kernel_sizes_bytes_tiled_stem (12, 9.7%): 2.7% / 6.6% (docs/calibration.md).
    # With kernels timed, only a tie (a form whose extra terms the fit left at 0) goes to the
    # fewer coefficients.
    slack = TIE if kernels_timed else float(np.std(errors[best], ddof=1) / np.sqrt(len(latency)))
    threshold = means[best] + slack
    within = [form for form in forms if means[form.name] <= threshold]
    chosen = min(within, key=lambda form: (len(form.terms), means[form.name]))
    return chosen, loo


def _nested_loo(
    forms: Sequence[Form],
    designs: dict[str, _Design],
    latency: np.ndarray,
    groups: np.ndarray,
    kernels_timed: bool,
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
        rest = {name: design.without(group) for name, design in designs.items()}
        eligible = _eligible(forms, len(np.unique(groups[~held])), kernels_timed)
        form, _ = _select(eligible, rest, latency[~held], kernels_timed)
        coefficients = _fit(rest[form.name], tie_matrix(form, priors))
        predicted[held] = designs[form.name].network_features[held] @ coefficients
    return predicted


def _bootstrap(
    design: _Design, residuals: np.ndarray, tie: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients refitted per resample of the architectures (each with its kernels), and
    a residual per resample.

    Seeded alike for every fit: the fit with priors and the one without see the same
    resamples.
    """
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    unique = np.unique(design.network_groups)
    members = {group: np.flatnonzero(design.groups == group) for group in unique}
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        drawn = generator.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([members[group] for group in drawn])
        samples.append(_fit(design.subset(rows), tie))
    draws = generator.choice(residuals, size=BOOTSTRAP_RESAMPLES, replace=True)
    return np.array(samples), draws


def _kernels_timed(observations: Sequence[Observation]) -> bool:
    return all(o.kernels for o in observations)


def check_observations(
    observations: Sequence[Observation], forms: Sequence[Form], origin: str = "rows"
) -> None:
    architectures = len({o.architecture_key for o in observations})
    timed = _kernels_timed(observations)
    needed = min(_architectures_needed(form, timed) for form in forms)
    smallest = needed - SPARE_ARCHITECTURES
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
    design: _Design,
    latency: np.ndarray,
    loo: np.ndarray,
    nested: np.ndarray,
    tie: np.ndarray | None,
) -> _FormFit:
    coefficients = _fit(design, tie)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero prediction: refused later
        residuals = latency / loo - 1.0
    spread, draws = _bootstrap(design, residuals, tie)
    return _FormFit(
        coefficients, design.network_features @ coefficients, loo, nested, spread, draws
    )


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
    gemm_tile: tuple[int, int] | None = None,
) -> Profile:
    """Choose the form by cross-validation (or take ``form_name``), fit it, bootstrap it,
    judge which terms the rows resolved, and fit again with a prior (`costs.PRIORS`) for
    each unresolved rate that has one; the fit without priors is kept beside it.

    ``gemm_tile``: the GEMM tile the rows' runtime is known to compute in (XNNPACK's, from
    the CPU: `Backend.gemm_tile`); the forms of other tiles are then no candidates.
    Where 5 and 7 rows fit alike (leave-one-out 7.490% against 7.495% on an ExecuTorch fp32
    calibration of 2026-12-07), the CPU, not a hair of error, says which one ran."""
    forms = (
        [form for form in FORMS.values() if form.cache_bytes is None and form.channel_block is None]
        if form_name is None
        else [FORMS[form_name]]
    )
    if form_name is None and gemm_tile is not None:
        forms = [form for form in forms if form.gemm_tile in (None, gemm_tile)]
    check_observations(observations, forms, origin)
    latency = np.array([o.latency_ms for o in observations])
    groups = _group_ids(observations)
    architectures = len(np.unique(groups))
    timed = _kernels_timed(observations)
    if form_name is None:
        # A per-kernel form fits where every network's kernels were timed, and there only
        # they compete: a whole-network form interpolates the calibration networks' latencies
        # (eager, 2026-12-07: leave-one-out 4.7% against 6.5% for the best per-kernel form)
        # with rates the kernels contradict, and predicts the full attribution worse on
        # every eager pair of the day (shares off by 1.8-4.0 points against 1.1-2.3;
        # docs/calibration.md). A form given by name is fitted as asked (its whole-network
        # rows alone if no kernel was timed).
        forms = [form for form in forms if form.kernels == timed]
    forms = _eligible(forms, architectures, timed)
    absorbed = absorbed_kinds(observations, view)
    absorbed_set = frozenset(Kind(entry["kind"]) for entry in absorbed)
    designs: dict[str, _Design] = {}
    loo: dict[str, np.ndarray] = {}
    trial: list[Form] = []
    if form_name is None and timed:
        # The block first, on the richest base form against its unblocked variants (one per
        # channel block), then the base form at the block chosen so, then the spill. A base
        # chosen without the unblocked terms is chosen against convs it cannot price (the
        # synthetic test's `kernel_sizes`, over its true form); every base at every block
        # fits ONNX Runtime's calibration in 162 s on one core against 54 (2026-12-08).
        reference = max(forms, key=lambda form: len(form.terms))
        trial = [reference, *unblocked_variants(reference)]
        for candidate in trial:
            designs[candidate.name] = _design(observations, candidate, view, groups, absorbed_set)
        blocked, loo = _select(trial, designs, latency, timed)
        if blocked.channel_block is not None:
            forms = _eligible(
                [FORMS[f"{form.name}_unblocked_{blocked.channel_block}"] for form in forms],
                architectures,
                timed,
            )
    for candidate in forms:
        if candidate.name not in designs:
            designs[candidate.name] = _design(observations, candidate, view, groups, absorbed_set)
    form, chosen = _select(forms, designs, latency, timed)
    loo.update(chosen)
    if form_name is None and form.channel_block is not None:
        # The chosen base without the unblocked terms, kept where they buy nothing: a block
        # can win on the richest form by standing in for a cost that form lacks (exact rows
        # of known elementwise costs, no unblocked conv among them: the block of 16).
        plain = FORMS[form.name.removesuffix(f"_unblocked_{form.channel_block}")]
        if plain.name not in designs:
            designs[plain.name] = _design(observations, plain, view, groups, absorbed_set)
        form, chosen = _select([form, plain], designs, latency, timed)
        loo.update(chosen)
        forms.append(plain)
    forms += [candidate for candidate in trial if candidate not in forms]
    variants = spill_variants(form) if form_name is None else []
    if variants:
        # The chosen form against its spill variants (one per cache), chosen the same way:
        # a variant is kept only where it predicts the left-out networks better.
        for variant in variants:
            designs[variant.name] = _design(observations, variant, view, groups, absorbed_set)
        form, spilled = _select([form, *variants], designs, latency, timed)
        forms += variants
        loo.update(spilled)
    selection = SELECTION[timed] if form_name is None else "given"
    if form_name is None and gemm_tile is not None:
        selection += f"; pointwise GEMM tiles {gemm_tile[0]}x{gemm_tile[1]}, XNNPACK's on the CPU"
    design = designs[form.name]
    features = design.network_features
    loo_raw = loo[form.name]
    nested_raw = (
        _nested_loo(forms, designs, latency, groups, timed) if form_name is None else loo_raw
    )
    raw = _fit_form(design, latency, loo_raw, nested_raw, None)
    raw_ci95 = [_interval(raw.spread[:, index]) for index in range(len(form.terms))]
    verdicts = resolution(form, features, raw_ci95)
    priors = applicable_priors(form, verdicts)
    used = raw
    if priors:
        tie = tie_matrix(form, priors)
        loo_tied = leave_one_out(design, tie)
        nested_tied = (
            _nested_loo(forms, designs, latency, groups, timed, priors)
            if form_name is None
            else loo_tied
        )
        used = _fit_form(design, latency, loo_tied, nested_tied, tie)
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
                "kernel_rows": len(design.target) - design.networks,
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

    rows = _profile_rows(observations, used.fitted, used.loo)
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
        "absorbed": absorbed,
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


def _profile_rows(
    observations: Sequence[Observation], fitted: np.ndarray, loo: np.ndarray
) -> list[dict[str, Any]]:
    """A profile's rows: each observation with its fitted and left-out predictions."""
    return [
        {
            "name": o.name,
            "model": o.model,
            "factors": o.factors,
            "latency_ms": o.latency_ms,
            "fitted_ms": float(fitted[index]),
            "loo_ms": float(loo[index]),
            "source": o.source,
            "kernels": len(o.kernels),
            "profiled_ms": o.profiled_ms,
            "kernel_match": o.kernel_match,
            "flags": list(o.flags),
        }
        for index, o in enumerate(observations)
    ]


def fit_scaled(
    observations: Sequence[Observation],
    reference: Profile,
    *,
    name: str,
    description: str,
    origin: str = "rows",
) -> Profile:
    """A profile for a runtime whose kernels cannot be timed, from one that ran the same
    kernel library on the same machine: the reference's kernel costs times one scale, fitted
    to the rows' whole-network latencies.

    LiteRT's Python API times no kernel, but it runs XNNPACK as ExecuTorch does: 36 latencies
    cannot separate a rate per kernel size (the 7x7 depthwise rate is 19x the 3x3 one here),
    while they fix one scale well. The scale minimises the rows' squared relative errors; its
    interval and the profile's bootstrap come from resampling the architectures, its
    leave-one-out error from refitting without each row's architecture."""
    if len({o.architecture_key for o in observations}) < 2:
        # Leaving one network out needs another to fit the scale on.
        raise InputFileError(origin, "a scale needs the latencies of at least 2 networks")
    latency = np.array([o.latency_ms for o in observations])
    predicted = np.array([predict_records(reference, o.records).ms for o in observations])
    ratio = predicted / latency
    groups = _group_ids(observations)

    def scale(rows: np.ndarray) -> float:
        return float(np.sum(ratio[rows]) / np.sum(ratio[rows] ** 2))

    everything = np.arange(len(observations))
    fitted_scale = scale(everything)
    loo = np.array([predicted[i] * scale(everything[groups != groups[i]]) for i in everything])
    loo_error = _relative_errors(loo, latency)
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    unique = np.unique(groups)
    members = {group: np.flatnonzero(groups == group) for group in unique}
    scales = np.array(
        [
            scale(np.concatenate([members[g] for g in generator.choice(unique, len(unique))]))
            for _ in range(BOOTSTRAP_RESAMPLES)
        ]
    )
    residuals = generator.choice(latency / loo - 1, size=BOOTSTRAP_RESAMPLES, replace=True)
    low, high = _interval(scales)
    coefficients = np.array(reference.coefficients)
    # The reference's priors are in its coefficients already; the scale is this fit's only
    # parameter, so the profile states no priors of its own and keeps no fit without them.
    data = reference.model_dump(mode="json", by_alias=True, exclude={"raw", "priors"})
    for parameter in data["parameters"]:
        parameter["value"] *= fitted_scale
        parameter["ci95"] = [parameter["ci95"][0] * low, parameter["ci95"][1] * high]
    selection = (
        f"the kernel costs of {reference.name} ({reference.form}, priors included) times one "
        f"scale, {fitted_scale:.3f} [{low:.3f}, {high:.3f}], fitted to these rows' latencies"
    )
    data.update(
        name=name,
        description=description,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        ablate_version=__version__,
        quality={
            "rows": len(observations),
            "architectures": len(unique),
            "kernel_rows": 0,
            "loo_median_abs_error": float(np.median(loo_error)),
            "loo_max_abs_error": float(np.max(loo_error)),
            "nested_loo_median_abs_error": float(np.median(loo_error)),
            "nested_loo_max_abs_error": float(np.max(loo_error)),
            "in_sample_max_abs_error": float(
                np.max(_relative_errors(predicted * fitted_scale, latency))
            ),
            "selection": selection,
            "candidates": [],
        },
        bootstrap={
            "seed": BOOTSTRAP_SEED,
            "coefficients": [(coefficients * value).tolist() for value in scales],
            "residuals": [float(value) for value in residuals],
        },
        rows=_profile_rows(observations, predicted * fitted_scale, loo),
    )
    try:
        return profile_from_json(data)
    except ProfileError as error:
        raise InputFileError(
            origin,
            f"the profile scaled from {reference.name} is not usable: "
            f"{error.key_path}: {error.message}",
            choices=error.choices,
        ) from None
