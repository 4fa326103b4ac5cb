"""`ablate ingest`: a bundle's timings read back as a run directory like a local run's.

The same results model, journal and statistics (`measurement.statistics.summarise`), and the
attribution stage of the runner. The per-op profiles the driver's profile pass wrote beside
the timings become each variant's kernel times (`kernels`), as a local run's profiling stage
stores them, for `fit-device --from RUN`.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate import __version__
from ablate.errors import InputFileError, excerpt
from ablate.files import write_json_atomic, write_text_atomic
from ablate.measurement.results import NoiseFlag, VariantResult
from ablate.runs.storage import MEASURED_ELSEWHERE_KEY
from ablate.services.bundle_format import (
    DEVICE_RECORD_NAME,
    MANIFEST_NAME,
    PROFILES_DIRECTORY,
    TIMINGS_NAME,
    Bundle,
    Rounds,
    check_session,
    parse_timings,
    read_bundle,
    read_device_record,
    sha256_of,
)

if TYPE_CHECKING:
    from ablate.runs.schema import KernelTimes

THERMAL_DRIFT = "thermal_drift"
# Per round, the units in the order the driver timed them.
ROUND_ORDERS_NAME = "round_orders.json"


def _celsius(raw: object) -> float | None:
    """Thermal-zone readings are millidegrees on Linux and Android; some report degrees."""
    text = str(raw)
    try:
        if not text.isascii() or "_" in text:  # float() also reads '٣' and '1_0'
            raise ValueError
        value = float(text)
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
        MEASURED_ELSEWHERE_KEY: {
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
    note: Callable[[str], None] = lambda _: None,
) -> Path:
    """A run directory in `out_dir` from a bundle and its timings; returns its path.

    Everything is checked before anything is written; the run directory is written whole in
    a staging directory and renamed into its place (`staged_run_directory`), so a failure, or
    a kill, leaves nothing that a listing or a resume would take for a run. `note` hears what
    the person running it should know (networks without a per-op profile).
    """
    from ablate.runs.results import new_results
    from ablate.runs.runner import Run, SilentProgress
    from ablate.runs.schema import RESULTS_NAME, Measurement
    from ablate.runs.storage import (
        ENVIRONMENT_NAME,
        JOURNAL_NAME,
        RESOLVED_SPEC_NAME,
        SPEC_NAME,
        check_out_dir,
        staged_run_directory,
        write_journal,
    )
    from ablate.spec import load_spec_text, with_overrides

    check_out_dir(out_dir)
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
    _check_spec(bundle, spec)
    variants, runtimes = _manifest_records(bundle)
    profiles_directory = timings_path.parent / PROFILES_DIRECTORY
    profiles = read_profiles(bundle, record, profiles_directory)
    if spec.measure.kernels or record.get("profiles"):
        _note_unprofiled(bundle, profiles, note)
    variants = [
        variant.model_copy(update={"kernels": profiles[variant.measured_as].kernels})
        if variant.measured_as in profiles
        else variant
        for variant in variants
    ]
    name = device_name or record.get("model") or record.get("mode") or "device"
    settings = spec.measure.effective()
    results = summarise_rounds(
        rounds.samples(),
        baseline=bundle.baseline,
        target_ci=settings.target_ci,
        seed=settings.seed,
        iterations=int(record.get("iterations") or 1),
        warmup_runs=int(record.get("warmup_iterations") or 0),
    )
    environment = device_environment(record, str(name), bundle)
    heat = (
        environment[MEASURED_ELSEWHERE_KEY]["temperature_start_c"],
        environment[MEASURED_ELSEWHERE_KEY]["temperature_end_c"],
    )
    latencies = []
    for result in results:
        flag = thermal_flag(result, heat)
        latencies.append(result if flag is None else replace(result, flags=(*result.flags, flag)))
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
        # run_host.py times after an untimed call, benchmark_model after --warmup_runs=1;
        # executor_runner's mean over ITERATIONS includes its first execution.
        cache_state="warm",
        budget_s=settings.budget_s,
        seed=settings.seed,
    )
    state = new_results(
        spec,
        environment,
        status="profiled",
        variants=variants,
        latencies=latencies,
        runtimes=runtimes,
        measurement=measurement,
    )
    with staged_run_directory(out_dir, spec.name) as (staging, final):
        write_text_atomic(staging / SPEC_NAME, spec.source_text)
        write_json_atomic(staging / RESOLVED_SPEC_NAME, spec.to_json())
        write_json_atomic(staging / ENVIRONMENT_NAME, environment)
        shutil.copyfile(timings_path, staging / TIMINGS_NAME)
        if record:
            write_json_atomic(staging / DEVICE_RECORD_NAME, record)
        if profiles:
            (staging / PROFILES_DIRECTORY).mkdir()
            for profile in profiles.values():
                shutil.copyfile(profile.path, staging / PROFILES_DIRECTORY / profile.path.name)
        write_text_atomic(staging / ROUND_ORDERS_NAME, _orders_json(rounds))
        write_journal(staging / JOURNAL_NAME, rounds.names, rounds.seconds, cache_state="warm")
        run = Run(spec, staging, SilentProgress())
        run.results = state
        run.save()
        run.attribute()  # the runner's own stage: the same attribution as a local run
        assert (staging / RESULTS_NAME).is_file()
    return final


@dataclass(frozen=True)
class Profile:
    """A unit's per-op profile, as the driver wrote it, and the kernel times read from it."""

    path: Path
    kernels: KernelTimes


def read_profiles(bundle: Bundle, record: Mapping[str, Any], directory: Path) -> dict[str, Profile]:
    """By unit name, the per-op profile of each unit that the device record lists (the
    driver's profile pass) and that lies in `directory`, its sha256 checked against the
    record's and its kernels read by the runtime's profile reader. One line naming the file
    (InputFileError) for a profile that changed since or does not parse, or is a link; a
    listed profile that is not there is no profile (`_note_unprofiled` says so)."""
    from pydantic import ValidationError

    from ablate.measurement.backends import BACKENDS
    from ablate.runs.schema import KernelTimes

    listed = record.get("profiles") or {}
    program = BACKENDS.get(bundle.backend).program
    if not listed or program is None or program.profile_reader is None:
        return {}
    found: dict[str, Profile] = {}
    for unit in bundle.manifest["units"]:
        name = Path(unit["file"]).stem + program.profile_suffix
        path = directory / name
        if name not in listed:
            continue
        if path.is_symlink():
            raise InputFileError(path, "a symbolic link: the driver writes each profile itself")
        if not path.is_file():
            continue
        if sha256_of(path) != listed[name]:
            raise InputFileError(
                path,
                f"sha256 differs from {DEVICE_RECORD_NAME}'s: the profile changed since "
                "measure.sh wrote it; run measure.sh again",
            )
        events, runs = program.profile_reader(path)
        try:
            kernels = KernelTimes.of_events(
                bundle.backend, runs or record.get("profile_runs") or 1, events
            )
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InputFileError(path, f"{problem['msg']} (at {where})") from None
        found[unit["name"]] = Profile(path, kernels)
    return found


def _note_unprofiled(
    bundle: Bundle, profiles: Mapping[str, Profile], note: Callable[[str], None]
) -> None:
    """Once, which networks have no per-op profile, and what a fit makes of them."""
    missing = [name for name in bundle.unit_names if name not in profiles]
    if missing:
        note(
            f"no per-op profile for {len(missing)} of {len(bundle.unit_names)} networks "
            f"({excerpt(missing)}): a device profile fitted from this run (fit-device --from) "
            "uses their whole-network latencies"
        )


def _orders_json(rounds: Rounds) -> str:
    """`rounds.orders()` as JSON, a round a line, each distinct order encoded once."""
    distinct, index = rounds.distinct_orders()
    encoded = [json.dumps(order) for order in distinct]
    return "[\n" + ",\n".join([encoded[row] for row in index.tolist()]) + "\n]\n"


def _check_spec(bundle: Bundle, spec: Any) -> None:
    """The bundle's spec resolves here as it did at export, into the same units, each timed
    for the same variants: the manifest's records and the timings belong to this spec."""
    path = bundle.directory / MANIFEST_NAME
    units = _units(spec)
    if spec.to_json() != bundle.resolved_spec or [u.name for u in units] != bundle.unit_names:
        raise InputFileError(
            path,
            "the spec resolves differently in this ablate than in the one that exported the "
            f"bundle ({bundle.ablate_version}); export it again",
            key_path="spec",
        )
    for index, (unit, entry) in enumerate(zip(units, bundle.manifest["units"], strict=True)):
        if list(unit.variants) != entry["variants"]:
            raise InputFileError(
                path,
                f"lists {excerpt(entry['variants'])}; the spec times "
                f"{excerpt(list(unit.variants))} as this unit",
                key_path=f"units[{index}].variants",
            )
    unit_of = {variant: unit.name for unit in units for variant in unit.variants}
    listed = [variant["name"] for variant in bundle.variants]
    if sorted(listed) != sorted(unit_of):
        raise InputFileError(
            path,
            f"lists {len(listed)} variants; the spec has {len(unit_of)}: "
            f"{excerpt(sorted(unit_of))}",
            key_path="variants",
        )
    for index, variant in enumerate(bundle.variants):
        if variant["measured_as"] != unit_of[variant["name"]]:
            raise InputFileError(
                path,
                f"{excerpt(variant['measured_as'])}; the spec times {excerpt(variant['name'])} "
                f"as {excerpt(unit_of[variant['name']])}",
                key_path=f"variants[{index}].measured_as",
            )


def _manifest_records(bundle: Bundle) -> tuple[list[Any], dict[str, Any]]:
    """The manifest's variants and runtime records as the results model's; a field of the
    wrong type is one line naming its key."""
    from pydantic import ValidationError

    from ablate.runs.schema import RuntimeRecord, Variant

    def validated(model: Any, data: Any, key_path: str) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InputFileError(
                bundle.directory / MANIFEST_NAME,
                f"{problem['msg']} (at {where or 'the top'})",
                key_path=key_path,
            ) from None

    by_unit = {unit["name"]: index for index, unit in enumerate(bundle.manifest["units"])}
    variants = [
        validated(Variant, data, f"variants[{index}]") for index, data in enumerate(bundle.variants)
    ]
    runtimes = {
        name: validated(RuntimeRecord, data, f"units[{by_unit[name]}].runtime")
        for name, data in bundle.runtimes.items()
    }
    return variants, runtimes


def _units(spec: Any) -> list[Any]:
    from ablate.runs.runner import plan_units

    return plan_units(spec)
