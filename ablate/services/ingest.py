"""`ablate ingest`: a bundle's timings read back as a run directory like a local run's.

The same results model, journal and statistics (`measurement.statistics.summarise`), and the
attribution stage of the runner.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ablate import __version__
from ablate.errors import InputFileError
from ablate.files import write_json_atomic, write_text_atomic
from ablate.measurement.results import NoiseFlag, VariantResult
from ablate.services.bundle_format import (
    DEVICE_RECORD_NAME,
    MANIFEST_NAME,
    TIMINGS_NAME,
    Bundle,
    check_session,
    parse_timings,
    read_bundle,
    read_device_record,
)

THERMAL_DRIFT = "thermal_drift"


def _celsius(raw: object) -> float | None:
    """Thermal-zone readings are millidegrees on Linux and Android; some report degrees."""
    try:
        value = float(str(raw))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value / 1000 if abs(value) > 200 else value


def device_environment(record: Mapping[str, Any], device_name: str, bundle: Bundle) -> dict:
    """The run's environment record from the device record, keyed as reports read it."""
    start = _celsius(record.get("temperature_start_raw", ""))
    end = _celsius(record.get("temperature_end_raw", ""))
    return {
        "cpu_model": record.get("soc") or None,
        "device_name": device_name,
        "logical_cores": record.get("cores"),
        "operating_system": record.get("operating_system") or None,
        "machine": record.get("abi") or None,
        "threads": 1,
        "backend": bundle.backend,
        "precision": bundle.precision,
        "device": device_name,
        "batch": bundle.batch,
        "ablate_version": __version__,
        "bundle_ablate_version": bundle.ablate_version,
        "packages": bundle.runtime_versions,
        "weights": bundle.weights,
        "measured_on_device": {
            "mode": record.get("mode"),
            "model": record.get("model"),
            "manufacturer": record.get("manufacturer"),
            "serial": record.get("serial"),
            "governor": record.get("governor") or None,
            "pinned_cpu": record.get("cpu") if record.get("pinned") else None,
            "temperature_start_c": start,
            "temperature_end_c": end,
            "binary": record.get("binary"),
            "iterations_per_round": record.get("iterations"),
            "warmup_iterations": record.get("warmup_iterations"),
        },
    }


def summarise_rounds(
    samples: Mapping[str, Sequence[float]],
    *,
    baseline: str,
    target_ci: float,
    seed: int,
    iterations: int,
    warmup_runs: int,
) -> tuple[VariantResult, ...]:
    """`summarise` over the driver's rounds, with the warm-up it recorded (one instance)."""
    import numpy as np

    from ablate.measurement.clock import WarmupOutcome
    from ablate.measurement.statistics import NoiseThresholds, summarise

    warmups = {
        name: WarmupOutcome(
            runs=warmup_runs,
            stable=True,
            iterations_per_round=iterations,
            seconds_per_iteration=float(np.median(values)),
        )
        for name, values in samples.items()
    }
    return summarise(
        samples,
        baseline=baseline,
        target_ci=target_ci,
        warmups=warmups,
        thresholds=NoiseThresholds(),
        seed=seed,
    )


def thermal_flag(
    result: VariantResult, temperatures: tuple[float | None, float | None]
) -> NoiseFlag | None:
    """A `thermal_drift` flag when the latency drifted upward (later rounds slower)."""
    drift = next((flag for flag in result.flags if flag.name == "drift"), None)
    if drift is None or "+" not in drift.detail:
        return None
    start, end = temperatures
    heat = "" if start is None or end is None else f" ({start:.0f} °C -> {end:.0f} °C)"
    return NoiseFlag(
        name=THERMAL_DRIFT,
        detail=f"later rounds slower{heat}: the device probably throttled; let it cool, "
        "lower the budget or add a pause between rounds",
    )


def ingest(
    bundle_path: Path,
    timings_path: Path,
    *,
    device_name: str | None = None,
    out_dir: Path = Path("runs"),
) -> Path:
    """A run directory in `out_dir` from a bundle and its timings; returns its path.

    Everything is checked before anything is written; the run directory is built beside its
    final place and renamed into it, so a failure leaves nothing behind.
    """
    from ablate.runs.results import new_results
    from ablate.runs.runner import Run, SilentProgress
    from ablate.runs.schema import RESULTS_NAME, Measurement, RuntimeRecord, Variant
    from ablate.runs.storage import (
        ENVIRONMENT_NAME,
        JOURNAL_NAME,
        RESOLVED_SPEC_NAME,
        SPEC_NAME,
        append_round,
        new_run_directory,
    )
    from ablate.spec import load_spec_text, with_overrides

    bundle = read_bundle(bundle_path)
    rounds = parse_timings(timings_path, bundle)
    record_path = timings_path.parent / DEVICE_RECORD_NAME
    record = read_device_record(record_path)
    check_session(record, rounds.session, len(rounds.seconds), record_path)
    spec = with_overrides(
        load_spec_text(bundle.spec_text, bundle.spec_label),
        backend=bundle.backend,
        precision=bundle.precision,
    )
    if (
        spec.to_json() != bundle.resolved_spec
        or [u.name for u in _units(spec)] != bundle.unit_names
    ):
        raise InputFileError(
            bundle_path / MANIFEST_NAME,
            "the spec resolves differently in this ablate than in the one that exported the "
            f"bundle ({bundle.ablate_version}); export it again",
            key_path="spec",
        )
    name = device_name or record.get("model") or record.get("mode") or "device"
    samples = rounds.samples()
    settings = spec.measure.effective()
    iterations = int(record.get("iterations") or 1)
    results = summarise_rounds(
        samples,
        baseline=bundle.baseline,
        target_ci=settings.target_ci,
        seed=settings.seed,
        iterations=iterations,
        warmup_runs=int(record.get("warmup_iterations") or 0),
    )
    environment = device_environment(record, str(name), bundle)
    heat = (
        environment["measured_on_device"]["temperature_start_c"],
        environment["measured_on_device"]["temperature_end_c"],
    )
    latencies = []
    for result in results:
        flag = thermal_flag(result, heat)
        latencies.append(result if flag is None else replace(result, flags=(*result.flags, flag)))
    runtimes = {
        name: RuntimeRecord.model_validate(record) for name, record in bundle.runtimes.items()
    }
    stop = record.get("stop_reason")
    measurement = Measurement(
        stop_reason=stop if stop in ("budget", "max_rounds", "target") else "max_rounds",
        rounds=len(rounds.seconds),
        elapsed_s=float(record.get("elapsed_s") or 0.0),
        backend=bundle.backend,
        device=str(name),
        batch=int(environment["batch"]),
        threads=1,
        precision=bundle.precision,
        target_ci=settings.target_ci,
        budget_s=settings.budget_s,
        seed=settings.seed,
    )
    state = new_results(
        spec,
        environment,
        status="profiled",
        variants=[Variant.model_validate(data) for data in bundle.variants],
        latencies=latencies,
        runtimes=runtimes,
        measurement=measurement,
    )

    # The run's name is claimed first, atomically (a concurrent run takes the next suffix);
    # the run is written beside it and renamed onto the claimed, still empty, directory.
    final = new_run_directory(out_dir, spec.name)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        write_text_atomic(staging / SPEC_NAME, spec.source_text)
        write_json_atomic(staging / RESOLVED_SPEC_NAME, spec.to_json())
        write_json_atomic(staging / ENVIRONMENT_NAME, environment)
        shutil.copyfile(timings_path, staging / TIMINGS_NAME)
        if record:
            write_json_atomic(staging / DEVICE_RECORD_NAME, record)
        write_json_atomic(staging / "round_orders.json", rounds.orders)
        for index, seconds in enumerate(rounds.seconds):
            append_round(staging / JOURNAL_NAME, index, seconds)
        run = Run(spec, staging, SilentProgress())
        run.results = state
        run.save()
        run.attribute()  # the runner's own stage: the same attribution as a local run
        assert (staging / RESULTS_NAME).is_file()
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        final.rmdir()
        raise
    return final


def _units(spec: Any) -> list[Any]:
    from ablate.runs.runner import plan_units

    return plan_units(spec)
