"""`ablate run SPEC --device NAME`: a run's latency entries predicted by a profile.

Nothing is timed. Each distinct network's latency entry is the profile's prediction; the
interval is the prediction interval (coefficients and residual scatter); ratios to the
baseline and the attribution's intervals come from the coefficient bootstrap, evaluated for
every variant with the same coefficients, so shared uncertainty cancels in differences as
paired rounds make it cancel in a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ablate.counting.records import OpRecord
from ablate.devices.costs import group_features, total_features
from ablate.devices.predict import predict_records, profile_form
from ablate.devices.profile import Profile
from ablate.runs.runner import PredictedLatencies
from ablate.runs.schema import Flag, Latency, Measurement, Ratio


def predicted_backend(profile: Profile) -> str:
    return f"predicted on {profile.name}"


def coefficient_samples_ms(profile: Profile, records: Sequence[OpRecord]) -> list[float]:
    """The network's latency under each bootstrap resample of the coefficients (no residual)."""
    form = profile_form(profile)
    total = total_features(
        group_features(records, form, profile.view, profile.absorbed_kinds), len(form.terms)
    )
    return [float(value) for value in np.array(profile.bootstrap.coefficients) @ total]


def predicted_entry(
    profile: Profile,
    records: Sequence[OpRecord],
    samples: Sequence[float],
    baseline_samples: Sequence[float] | None,
    baseline_ms: float | None,
    raw: bool = False,
) -> Latency:
    """A variant's latency for a predicted network (``baseline_*`` None: it is the baseline);
    ``raw``: the profile is its raw fit (`--prior none`)."""
    prediction = predict_records(profile, records)
    values = np.array(prediction.samples_ms)
    ratio = None
    significant = None
    # A valid profile still predicts 0 ms for a network that none of its non-zero terms cover
    # (its one rate is for linear layers, say, and the network has none): no ratio to such a
    # baseline, rather than a division by zero.
    if (
        baseline_samples is not None
        and baseline_ms is not None
        and baseline_ms > 0
        and min(baseline_samples) > 0
    ):
        ratios = np.array(samples) / np.array(baseline_samples)
        low, high = np.percentile(ratios, [2.5, 97.5])
        ratio = Ratio(median=prediction.ms / baseline_ms, ci95=(float(low), float(high)))
        significant = bool(low > 1.0 or high < 1.0)
    quartiles = np.percentile(values, [25, 75])
    detail = (
        f"predicted on {profile.name} from its cost model, not measured "
        f"(leave-one-out error: median {100 * profile.quality.loo_median_abs_error:.1f}%,"
        f" worst {100 * profile.quality.loo_max_abs_error:.1f}%)"
    )
    if prediction.priors:
        detail += "; " + "; ".join(prediction.priors)
    if raw:
        detail += "; raw fit (--prior none): no prior stands in for an unresolved rate"
    if prediction.extrapolated is None:
        detail += (
            "; extrapolation not checked: the profile does not record what its rows resolved "
            "(refit it with `ablate fit-device`)"
        )
    return Latency(
        median_ms=prediction.ms,
        iqr_ms=float(quartiles[1] - quartiles[0]),
        ci95_ms=prediction.interval_ms,
        rounds=len(values),
        ratio_to_baseline=ratio,
        significant=significant,
        flags=[Flag(name="predicted", detail=detail)],
        extrapolated=None if prediction.extrapolated is None else list(prediction.extrapolated),
    )


def predicted_measurement(profile: Profile, threads: int) -> Measurement:
    return Measurement(
        stop_reason="predicted",
        rounds=len(profile.bootstrap.coefficients),
        elapsed_s=0.0,
        backend=predicted_backend(profile),
        device=profile.name,
        batch=profile.batch,
        threads=threads,
        target_ci=0.0,
        cache_state=None,
        budget_s=0.0,
        seed=profile.bootstrap.seed,
        roofline_calibration=None,
        predicted_on=profile.name,
    )


class ProfilePredictor:
    """The runner's predictor for `ablate run --device NAME`."""

    def __init__(self, profile: Profile, prior: str = "stated") -> None:
        self.raw = prior == "none"
        self.profile = profile.without_priors() if self.raw else profile

    def predict(
        self, records: Mapping[str, Sequence[OpRecord]], *, baseline: str, threads: int
    ) -> PredictedLatencies:
        samples = {name: coefficient_samples_ms(self.profile, ops) for name, ops in records.items()}
        reference = predicted_entry(
            self.profile, records[baseline], samples[baseline], None, None, self.raw
        )
        latencies = {
            name: reference
            if name == baseline
            else predicted_entry(
                self.profile, ops, samples[name], samples[baseline], reference.median_ms, self.raw
            )
            for name, ops in records.items()
        }
        return PredictedLatencies(
            latencies=latencies,
            measurement=predicted_measurement(self.profile, threads),
            samples_ms=samples,
        )
