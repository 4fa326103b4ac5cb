"""How well a calibrated profile predicts a full attribution, against a whole-network fit.

    ablate calibrate --backend eager --name host-eager        # the calibration run (kernels)
    ablate run experiments/why_v3_faster.yaml                 # the truth: 128 variants measured
    python benchmarks/calibration_accuracy.py CALIBRATION_RUN FULL_RUN [--json OUT.json]
    python benchmarks/calibration_accuracy.py LITERT_CAL LITERT_FULL --like host-et  # no kernels

Fits two profiles on the calibration run alone: *calibrated* (its per-kernel times, the form
chosen among every form by leave-one-network-out) and *whole-network* (the same run's
whole-network latencies only, today's `fit-device --from RUN`). With `--like PROFILE` the
calibrated profile is `fit-device --like PROFILE`'s instead: PROFILE's kernel costs times one
scale fitted to the run's latencies (LiteRT, whose Python API times no kernel, like an
ExecuTorch profile of the same host: both run XNNPACK). Each predicts every variant of
the full run, and the script prints, per profile, the three figures issue 27 judges by:

- per variant: median and worst |predicted / measured - 1|;
- per factor: the predicted Shapley share (in % of the from-model's time) against the
  measured one, the largest gap in points, and whether the signs agree wherever the measured
  interval excludes 0;
- the to / from ratio (V3-Large / V2), predicted against measured.

It first says how steady each run's latencies were (median IQR, flags, "unsteady" where half
or more moved while measured): a judgement against an unsteady run measures the machine as
much as the profile.

Shares are computed the same way on both sides (exact Shapley values of the per-variant
medians, over the from-model's median); the measured intervals come from the full run's own
paired attribution.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ablate.analysis.coalitions import CoalitionSpace
from ablate.analysis.shapley import shapley_values
from ablate.counting.records import OpRecord
from ablate.devices.costs import FORMS
from ablate.devices.fit import Observation, fit_profile, fit_scaled
from ablate.devices.observations import count_variant, run_gemm_tile, run_observations
from ablate.devices.predict import predict_records
from ablate.devices.profile import Profile, load_profile
from ablate.errors import AblateError
from ablate.measurement.statistics import mostly_moved, moved
from ablate.runs.schema import Results, load_results


@dataclass(frozen=True)
class Truth:
    """The full run's measured medians per coalition, and its attribution's intervals."""

    factors: tuple[str, ...]
    measured: np.ndarray  # ms, by coalition mask
    records: list[tuple[OpRecord, ...]]  # by coalition mask
    intervals: dict[str, tuple[float, float]]  # factor -> Shapley interval, % of from
    backend: str


@dataclass(frozen=True)
class Judged:
    profile: str
    form: str
    median_error: float
    worst_error: float
    shares: dict[str, float]  # factor -> predicted share, % of the from-model
    largest_gap: float  # points
    signs_agree: bool
    ratio: float
    ratio_error: float


@dataclass(frozen=True)
class Steadiness:
    """How steady a run's latencies were: a judgement against an unsteady run measures the
    machine as much as the profile (eager's full run of 11:28, 2026-12-07: every latency's
    IQR above 10% of its median, V2 11% slower than in the steady run 20 min before)."""

    latencies: int
    median_iqr: float  # the median over the latencies of IQR / median
    flagged: dict[str, int]  # flag name -> latencies carrying it
    moved: int  # latencies with a flag that says they moved (`MOVED_FLAGS`)

    @property
    def unsteady(self) -> bool:
        # The rule a profile fitted on the run applies to itself (`Profile.unsteady`).
        return mostly_moved(self.moved, self.latencies)

    def describe(self) -> str:
        flags = ", ".join(f"{name} {count}" for name, count in sorted(self.flagged.items()))
        verdict = " (unsteady: half or more moved)" if self.unsteady else ""
        return (
            f"{self.latencies} latencies, median IQR {100 * self.median_iqr:.1f}% of the "
            f"median, flagged: {flags or 'none'}{verdict}"
        )


def steadiness(results: Results) -> Steadiness:
    latencies = [variant.latency for variant in results.variants if variant.latency is not None]
    flagged: dict[str, int] = {}
    for latency in latencies:
        for name in {flag.name for flag in latency.flags}:
            flagged[name] = flagged.get(name, 0) + 1
    count = sum(1 for latency in latencies if moved(flag.name for flag in latency.flags))
    iqr = [latency.iqr_ms / latency.median_ms for latency in latencies if latency.median_ms > 0]
    return Steadiness(len(latencies), float(np.median(iqr)) if iqr else 0.0, flagged, count)


def _truth(path: Path, results: Results) -> Truth:
    attribution = results.attribution
    if attribution is None or results.measurement is None:
        raise SystemExit(f"{path}: needs a measured run with an attribution (why_v3_faster)")
    space = CoalitionSpace(attribution.factors)
    by_name = {variant.name: variant for variant in results.variants}
    counted: dict[str, tuple[OpRecord, ...]] = {}
    measured, records = [], []
    for mask in space.masks():
        variant = by_name[space.variant_name(int(mask))]
        timed = by_name[variant.measured_as]
        assert timed.latency is not None
        measured.append(timed.latency.median_ms)
        if timed.name not in counted:
            counted[timed.name] = count_variant(
                timed.base, timed.factors, results.measurement.batch
            )[1].records
        records.append(counted[timed.name])
    intervals = {}
    for effect in attribution.shapley:
        assert effect.latency is not None
        intervals[effect.label] = effect.latency.interval_percent
    backend = f"{results.measurement.backend} {results.measurement.precision}"
    return Truth(tuple(attribution.factors), np.array(measured), records, intervals, backend)


def _shares(values: np.ndarray, factors: tuple[str, ...]) -> dict[str, float]:
    shapley = shapley_values(values, factors)
    return {
        factor: float(100 * value / values[0])
        for factor, value in zip(factors, shapley, strict=True)
    }


# A predicted share below this (points of the from-model's time) shows as 0.00 and has no
# sign: a cost the model puts at 0 (ONNX Runtime's absorbed activations) is not "agreeing"
# with a measured negative share because rounding left it at -1e-15.
SIGN_FLOOR = 0.005


def signs_agree(shares: dict[str, float], intervals: dict[str, tuple[float, float]]) -> bool:
    """Whether every predicted share has the sign of the measured one, wherever the measured
    interval excludes 0."""
    for factor, (low, high) in intervals.items():
        if low <= 0 <= high:
            continue
        predicted = shares[factor]
        if abs(predicted) < SIGN_FLOOR or (predicted > 0) != (low > 0):
            return False
    return True


def judge(profile: Profile, truth: Truth) -> Judged:
    predicted = np.array([predict_records(profile, records).ms for records in truth.records])
    errors = np.abs(predicted / truth.measured - 1)
    measured_shares = _shares(truth.measured, truth.factors)
    shares = _shares(predicted, truth.factors)
    gaps = [abs(shares[factor] - measured_shares[factor]) for factor in truth.factors]
    signs = signs_agree(shares, truth.intervals)
    ratio = float(predicted[-1] / predicted[0])
    measured_ratio = float(truth.measured[-1] / truth.measured[0])
    return Judged(
        profile=profile.name,
        form=profile.form,
        median_error=float(np.median(errors)),
        worst_error=float(np.max(errors)),
        shares=shares,
        largest_gap=float(max(gaps)),
        signs_agree=signs,
        ratio=ratio,
        ratio_error=ratio / measured_ratio - 1,
    )


def _whole_network(observations: list[Observation]) -> list[Observation]:
    return [
        replace(observation, kernels=(), profiled_ms=None, kernel_match=None)
        for observation in observations
    ]


def calibrated_profile(
    observations: list[Observation],
    view: str,
    batch: int,
    *,
    form: str | None = None,
    like: Profile | None = None,
    gemm_tile: tuple[int, int] | None = None,
) -> Profile:
    """The profile judged as *calibrated*: fitted to the run's kernels (the form chosen by
    leave-one-out, among the forms of the run's GEMM tile where it is known, or `form`), or
    `like`'s kernel costs times one scale fitted to the run."""
    if like is not None:
        return fit_scaled(
            observations, like, name="calibrated", description=f"{like.name}'s kernel costs"
        )
    return fit_profile(
        observations,
        name="calibrated",
        description="kernels",
        view=view,  # type: ignore[arg-type]  # run_observations returns a View
        batch=batch,
        form_name=form,
        gemm_tile=gemm_tile,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="the calibration run (measure.kernels)")
    parser.add_argument("full", type=Path, help="the measured attribution run to predict")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--form",
        choices=list(FORMS),
        metavar="FORM",
        help="fit the calibrated profile with this form instead of choosing by CV",
    )
    choice.add_argument(
        "--like",
        metavar="PROFILE",
        help="the calibrated profile: PROFILE's kernel costs times one scale fitted to the run",
    )
    arguments = parser.parse_args()

    reference = load_profile(arguments.like) if arguments.like else None
    observations, view, batch = run_observations([arguments.calibration])
    timed = sum(1 for observation in observations if observation.kernels)
    fits = {
        "calibrated": calibrated_profile(
            observations,
            view,
            batch,
            form=arguments.form,
            like=reference,
            gemm_tile=run_gemm_tile([arguments.calibration]),
        ),
        "whole-network": fit_profile(
            _whole_network(observations),
            name="whole-network",
            description="latencies",
            view=view,
            batch=batch,
        ),
    }
    full = load_results(arguments.full)
    truth = _truth(arguments.full, full)
    measured_shares = _shares(truth.measured, truth.factors)
    measured_ratio = float(truth.measured[-1] / truth.measured[0])
    print(
        f"{arguments.full} ({truth.backend}): {len(truth.measured)} coalitions; calibration "
        f"{arguments.calibration}: {len(observations)} networks, {timed} with kernel times"
    )
    steady = {
        "calibration": steadiness(load_results(arguments.calibration)),
        "full run": steadiness(full),
    }
    for label, state in steady.items():
        print(f"{label}: {state.describe()}")
    judged = {label: judge(profile, truth) for label, profile in fits.items()}
    print(
        "| profile | form | variants: median / worst error | largest share gap (points) "
        "| signs agree | ratio (measured " + f"{measured_ratio:.3f}) |"
    )
    print("|---|---|---|---|---|---|")
    for label, result in judged.items():
        print(
            f"| {label} | {result.form} | {100 * result.median_error:.1f}% / "
            f"{100 * result.worst_error:.1f}% | {result.largest_gap:.2f} | "
            f"{'yes' if result.signs_agree else 'no'} | {result.ratio:.3f} "
            f"({100 * result.ratio_error:+.1f}%) |"
        )
    print()
    print("| factor | measured share [95%] | " + " | ".join(judged) + " |")
    print("|---|---|" + "---|" * len(judged))
    for factor in truth.factors:
        low, high = truth.intervals[factor]
        cells = " | ".join(f"{result.shares[factor]:+.2f}%" for result in judged.values())
        print(f"| {factor} | {measured_shares[factor]:+.2f}% [{low:+.2f}, {high:+.2f}] | {cells} |")
    if arguments.json is not None:
        document: dict[str, Any] = {
            "calibration": str(arguments.calibration),
            "full": str(arguments.full),
            "backend": truth.backend,
            "measured_shares": measured_shares,
            "measured_ratio": measured_ratio,
            "steadiness": {label: state.__dict__ for label, state in steady.items()},
            "profiles": {label: result.__dict__ for label, result in judged.items()},
        }
        arguments.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    try:
        main()
    except AblateError as error:  # a missing run, a run of the wrong kind, an unknown profile
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
