"""`ablate run`: build, count and measure every variant of a spec, saving after each stage.

Stages: counting (results.json after every distinct architecture), measuring (every round
appended to the journal as it is taken), profiling, attribution. A run killed at any point
loses only the work in flight; `resume=True` redoes nothing that was saved. The state is the
typed results model throughout: what is saved is what every reader validates.
"""

from __future__ import annotations

import platform
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ablate import __version__
from ablate.errors import AblateError, RunInterrupted, WriteError
from ablate.files import write_json_atomic, write_text_atomic
from ablate.measurement.results import ATTRIBUTION, CACHE_STATES, cache_state_of
from ablate.metrics import ATTRIBUTABLE
from ablate.runs.entries import (
    PRECISION_BYTES,
    count_entry,
    measurement_entry,
    op_time_entry,
    runtime_profile_entry,
    with_time_shares,
)
from ablate.runs.results import new_results, with_latencies
from ablate.runs.schema import (
    RESULTS_NAME,
    ImportedModule,
    KernelTimes,
    Latency,
    Measurement,
    Results,
    RuntimeProfile,
    RuntimeRecord,
    Status,
    Variant,
    load_results,
)
from ablate.runs.storage import (
    ENVIRONMENT_NAME,
    JOURNAL_NAME,
    MEASURED_ELSEWHERE_KEY,
    PREDICTED_SAMPLES_NAME,
    RESOLVED_SPEC_NAME,
    SPEC_NAME,
    Journal,
    append_round,
    hold_run_directory,
    read_journal,
    read_rounds,
    repair_journal,
    saved_rounds,
    set_journal_aside,
)

if TYPE_CHECKING:
    from ablate.analysis.bootstrap import LatencyTable
    from ablate.analysis.record import Attribution
    from ablate.architecture.imported import Network
    from ablate.architecture.rows import LayerRow
    from ablate.counting.records import CountResult, OpRecord
    from ablate.measurement.engine import CheckCallback, PrecisionTarget, RoundCallback
    from ablate.measurement.kernels import KernelTimer
    from ablate.measurement.phone import Phone
    from ablate.measurement.profile import OpProfile
    from ablate.measurement.results import CacheState
    from ablate.measurement.setup import MeasurementSetup
    from ablate.spec.model import ExperimentSpec

PROFILE_RUNS = 5
# Attribution-sized runs (hundreds of variants) keep one built copy each: memory and build
# time grow with the copies, and the placement effects average out over the coalitions.
MANY_VARIANTS = 16
# An attribution measuring more than MANY_VARIANTS coalitions times its two end models this
# often a round (engine.RoundPlan says why). For why_v3_faster's 128 that is 8 timings more
# per round (6%). On its first runs the total came out 1.4-1.8 times narrower than with one
# timing on the same rounds (benchmarks/end_model_timings.py), worth 2-3 times the rounds;
# a median of 3 gave less, and timings within a round share part of their noise, so more
# than 5 would buy little.
END_MODEL_TIMINGS = 5
QUICK_PROFILE_RUNS = 1
# Warm-up comes out of the measurement budget: with many variants each gets a small slice.
WARMUP_SHARE_OF_BUDGET = 0.2
MINIMUM_WARMUP_S = 0.05
# A resumed measurement whose budget is spent still takes a round (the engine always does),
# then stops on the budget: it must not start over with the whole budget.
SPENT_BUDGET_S = 1e-6
# Counting saves its progress at most this often: writing results.json takes time linear in
# the variants counted, so saving after each of 128 took 30 s of why_v3_faster's 39 s of
# counting. A crash loses at most this much counting, which a resumed run redoes.
COUNT_SAVE_INTERVAL_S = 10.0
# The profiling stage saves its progress at most this often, for the reason counting does: a
# resumed run profiles (and times the kernels of) only what the last save lacks.
PROFILE_SAVE_INTERVAL_S = 10.0
# The packages whose versions a run records, besides every backend's own (its descriptor's).
PACKAGES = ("torch", "numpy", "scipy", "fvcore", "ptflops", "typer", "pydantic")


class RunProgress(Protocol):
    """What a run tells the person watching it; the runner reports, a display decides how."""

    def note(self, text: str) -> None: ...

    def counting(self, variant: str, done: int, total: int) -> None: ...

    def measuring(
        self, round_index: int, judged: str, interval: float | None, seconds_left: float
    ) -> None:
        """After each round: `interval` is the widest half-width the stopping rule last judged
        (a fraction; None before its first check), `judged` what it judges (`stop_on`)."""

    def close(self) -> None: ...


class SilentProgress:
    def note(self, text: str) -> None:
        pass

    def counting(self, variant: str, done: int, total: int) -> None:
        pass

    def measuring(
        self, round_index: int, judged: str, interval: float | None, seconds_left: float
    ) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class PredictedLatencies:
    """What a predictor gives instead of a measurement, by unit name."""

    latencies: dict[str, Latency]
    measurement: Measurement  # its stop_reason is "predicted", predicted_on names the device
    # Each unit's latency under every resample of the predictor's uncertainty (the same
    # resamples for every unit, so that differences keep their pairing), in ms.
    samples_ms: dict[str, list[float]]


class LatencyPredictor(Protocol):
    """Stands in for the measurement (`ablate run --device`): latencies from the counts."""

    def predict(
        self, records: Mapping[str, Sequence[OpRecord]], *, baseline: str, threads: int
    ) -> PredictedLatencies: ...


@dataclass(frozen=True)
class Unit:
    """One distinct architecture: built, counted and timed once for all its variants."""

    name: str  # the first variant that resolves to it
    architecture: Network  # ablate's description, or an imported module
    variants: tuple[str, ...]


def plan_units(spec: ExperimentSpec) -> list[Unit]:
    return [
        Unit(names[0], architecture, tuple(names))
        for architecture, names in spec.architecture_groups().items()
    ]


def environment_record(setup: MeasurementSetup) -> dict[str, Any]:
    import dataclasses

    from ablate.measurement.activations import ACTIVATIONS_NOTE, BUILD_SEED
    from ablate.measurement.backends import recorded_distributions
    from ablate.measurement.setup import collect_environment

    versions = {}
    for package in (*PACKAGES, *recorded_distributions()):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        **dataclasses.asdict(collect_environment(setup)),
        "machine": platform.machine(),
        "backend": setup.backend,
        "precision": setup.precision,
        "device": setup.device,
        "batch": setup.batch,
        "ablate_version": __version__,
        "packages": versions,
        # Every timed and profiled network is built this way (measurement.activations).
        "weights": f"seeded (seed {BUILD_SEED}), {ACTIVATIONS_NOTE}",
    }


def phone_device_name(serial: str) -> str:
    """The device a live phone run's measurement names."""
    return f"phone {serial}"


# What a live phone run keeps of the host that drove it.
_HOST_KEYS = (
    "cpu_model",
    "cpu_identity",
    "cpu_flags",
    "cpu_caches",
    "device_name",
    "operating_system",
)


def phone_environment(host: dict[str, Any], phone: Mapping[str, Any]) -> dict[str, Any]:
    """A live phone run's environment record: the phone where the numbers come from (the keys
    an ingested phone run has, `services.ingest.device_environment`), the driving host kept
    under ``host``."""
    return {
        **host,
        "cpu_model": phone.get("soc"),
        # The host's CPU identity, flags and caches describe the host, not the phone: they
        # move under "host" with the rest of it (adb's getprop gives none of them).
        "cpu_identity": "",
        "cpu_flags": [],
        "cpu_caches": "",
        "device_name": phone.get("model") or phone["serial"],
        "logical_cores": None,
        "operating_system": phone.get("operating_system"),
        "machine": phone.get("abi"),
        "device": phone_device_name(phone["serial"]),
        "host": {key: host.get(key) for key in _HOST_KEYS},
        MEASURED_ELSEWHERE_KEY: dict(phone),
    }


@dataclass(frozen=True)
class CountedArchitecture:
    """What counting one architecture gives, whatever the precision its entries scale to."""

    counts: CountResult
    rows: list[LayerRow]
    described: dict[str, Any]  # every factor's effective value
    imported: ImportedModule | None = None  # what an imported module's results record of it


@dataclass
class SharedWork:
    """What the runs of a device matrix share, done by the first device's run and read by the
    others': the counts by (architecture, batch), the same on every device of one spec; and
    the eager per-op profiles by (architecture, threads, device, runs), which time the
    PyTorch modules on this machine whichever backend the run measures (`op_time_shares` says
    `eager`), so that a second device would only time them again."""

    counts: dict[tuple[Network, int], CountedArchitecture] = field(default_factory=dict)
    profiles: dict[tuple[Network, int, str, int], OpProfile] = field(default_factory=dict)


def count_unit(
    unit: Unit, spec: ExperimentSpec, precision: str, shared: SharedWork | None = None
) -> tuple[CountResult, list[Variant]]:
    """Build and count one distinct architecture (or take it from ``shared``): its counts,
    and the results entry of every variant of `spec` that resolves to it."""
    from ablate.architecture.imported import ImportedModel, build_network
    from ablate.counting.engine import count_model
    from ablate.counting.networks import group_function, network_rows
    from ablate.variants.factors import describe_factors

    network = unit.architecture
    key = (network, spec.input.batch)
    counted = None if shared is None else shared.counts.get(key)
    if counted is None:
        model = build_network(network)
        resolution = network.resolution
        shape = (spec.input.batch, 3, resolution, resolution)
        imported = isinstance(network, ImportedModel)
        counted = CountedArchitecture(
            counts=count_model(model, shape, group_of=group_function(network)),
            rows=network_rows(network, model),
            # An imported module has no factors: only the input size it was run at.
            described={"resolution": resolution} if imported else describe_factors(network),
            imported=ImportedModule(**network.provenance()) if imported else None,
        )
        if shared is not None:
            shared.counts[key] = counted
    specs = {variant.name: variant for variant in spec.variants}
    entries = [
        count_entry(
            name=name,
            base=specs[name].base,
            factors=specs[name].factors,
            resolved_factors=counted.described,
            measured_as=unit.name,
            counts=counted.counts,
            rows=counted.rows,
            element_bytes=PRECISION_BYTES[precision],
            reference=specs[name].reference,
            group_of=group_function(network),
            imported=counted.imported,
        )
        for name in unit.variants
    ]
    return counted.counts, entries


def built_copies(architectures: int) -> int:
    """Separately built copies of each architecture that the rounds cycle through."""
    from ablate.measurement.setup import INSTANCES

    return 1 if architectures > MANY_VARIANTS else INSTANCES


def measurement_setup(spec: ExperimentSpec) -> MeasurementSetup:
    from ablate.measurement.setup import MeasurementSetup

    return MeasurementSetup(
        backend=spec.measure.backend,
        device=spec.measure.device,
        threads=spec.measure.threads,
        batch=spec.input.batch,
        channels_last=spec.measure.channels_last,
        precision=spec.measure.precision,
    )


def runtime_profile(
    model: Any, images: Any, setup: MeasurementSetup, *, runs: int
) -> RuntimeProfile | None:
    """The setup's mobile runtime's own per-kernel times of `model`'s program (read from the
    export cache), where its Python API has a profiler; None elsewhere."""
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.programs import runtime_op_times

    runtime = BACKENDS.get(setup.backend)
    if runtime.profiler is None:
        return None
    ops = runtime_op_times(
        runtime, model, images, setup.precision, runs=runs, threads=setup.threads
    )
    if ops is None:
        return None
    return runtime_profile_entry(ops, profiler=runtime.profiler.name, runs=runs)


def kernel_times(
    timer: KernelTimer, model: Any, images: Any, setup: MeasurementSetup, *, runs: int
) -> KernelTimes:
    """Every kernel of `model` in execution order, as the setup's backend timed it."""
    events = timer(model, images, precision=setup.precision, runs=runs, threads=setup.threads)
    return KernelTimes.of_events(setup.backend, runs, events)


def rerun_command(
    spec_path: Path,
    out_dir: Path,
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    quick: bool = False,
    force: bool = False,
    device: str | None = None,
    prior: str = "stated",
    cluster: str | None = None,
    phone: str | None = None,
    allow_import: bool = False,
) -> list[str]:
    """The `ablate run` command line that gives the same resolved spec, passes the same
    checks and measures (or predicts) the same way (add --resume)."""
    command = ["ablate", "run", str(spec_path), "--out", str(out_dir)]
    if backend is not None:
        command += ["--backend", backend]
    if precision is not None:
        command += ["--precision", precision]
    if threads is not None:
        command += ["--threads", str(threads)]
    if quick:
        command.append("--quick")
    if force:
        command.append("--force")
    if device is not None:
        command += ["--device", device]
        if prior != "stated":
            command += ["--prior", prior]
    if cluster is not None:
        command += ["--cluster", cluster]
    if phone is not None:
        command += ["--phone", phone]
    if allow_import:
        from ablate.spec.imports import ALLOW_IMPORT_FLAG

        command.append(ALLOW_IMPORT_FLAG)
    return command


class Run:
    """One run directory's state, as the results model, and the stages that advance it.

    `clock` (seconds, for the measurement budget and the journal's elapsed time) is injectable
    so that tests drive the budget with a simulated clock; by default the engine's own.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        directory: Path,
        progress: RunProgress,
        predictor: LatencyPredictor | None = None,
        *,
        clock: Callable[[], float] | None = None,
        shared: SharedWork | None = None,
        phone: str | None = None,
    ):
        self.spec = spec
        self.clock = clock
        self.directory = directory
        self.progress = progress
        self.units = plan_units(spec)
        self.unit_of = {name: unit for unit in self.units for name in unit.variants}
        self.setup = measurement_setup(spec)
        self.results_path = directory / RESULTS_NAME
        self.results: Results | None = None
        self.predictor = predictor  # predict the latencies instead of measuring them
        self.records: dict[str, list[OpRecord]] = {}  # per unit, kept from counting
        self.rerun: Sequence[str] = ()
        self.resume_arguments: Sequence[str] = ()
        self.shared = shared  # what a matrix's device runs share (counts, eager profiles)
        # The serial of the phone that times the programs (`measurement.phone`), or None.
        self.phone_serial = phone
        self._phone: Phone | None = None

    @property
    def state(self) -> Results:
        assert self.results is not None, "start() first"
        return self.results

    @property
    def predicted(self) -> bool:
        """Whether the latencies are predictions (so later stages time nothing), on resume too."""
        measurement = self.state.measurement
        return measurement is not None and measurement.predicted_on is not None

    # -- state ---------------------------------------------------------------------------

    def start(self, resume: bool) -> None:
        from ablate.measurement.setup import configure_torch

        # Before anything is recorded or built: the environment record states these settings.
        configure_torch(self.setup)
        if resume and self.results_path.exists():
            self.results = load_results(self.results_path)
            return
        resolved = self.spec.to_json()
        environment = environment_record(self.setup)
        if self.phone_serial is not None:
            environment = phone_environment(environment, self.phone().record())
        # The resolved spec first: it is what `--resume` finds a run by, and without
        # results.json a resumed run starts over in the same directory, writing the rest.
        write_json_atomic(self.directory / RESOLVED_SPEC_NAME, resolved)
        write_text_atomic(self.directory / SPEC_NAME, self.spec.source_text)
        write_json_atomic(self.directory / ENVIRONMENT_NAME, environment)
        self.save(new_results(self.spec, environment))

    def update(self, status: Status | None = None, **changes: Any) -> None:
        """Replace fields of the results (and the status) and save them atomically."""
        if status is not None:
            changes["status"] = status
        self.save(self.state.model_copy(update=changes))

    def save(self, results: Results | None = None) -> None:
        """Write `results` (default: the current state), then hold them as the state: what
        a run holds is what its directory keeps, even when the write fails."""
        results = self.state if results is None else results
        write_json_atomic(self.results_path, results.to_json())
        self.results = results

    def updated_variants(self, change: Mapping[str, dict[str, Any]]) -> list[Variant]:
        """The variants with each unit's `change` applied to every variant of the unit."""
        return [
            variant.model_copy(update=change[self.unit_of[variant.name].name])
            if self.unit_of[variant.name].name in change
            else variant
            for variant in self.state.variants
        ]

    # -- stages ----------------------------------------------------------------------------

    def count(self) -> None:
        done = {variant.name for variant in self.state.variants}
        counted: list[Variant] = []
        saved = time.monotonic()
        for position, unit in enumerate(self.units):
            if set(unit.variants) <= done:
                continue
            self.progress.counting(unit.name, position, len(self.units))
            counts, added = count_unit(unit, self.spec, self.setup.precision, self.shared)
            self.records[unit.name] = list(counts.records)
            counted.extend(added)
            if time.monotonic() - saved >= COUNT_SAVE_INTERVAL_S:
                self.update(variants=[*self.state.variants, *counted])
                counted, saved = [], time.monotonic()
        order = {variant.name: index for index, variant in enumerate(self.spec.variants)}
        self.progress.counting("done", len(self.units), len(self.units))
        variants = sorted([*self.state.variants, *counted], key=lambda v: order[v.name])
        self.update("counted", variants=variants)

    def measure(self) -> None:
        if self.predictor is not None:
            self.predict()
            return
        from ablate.measurement.calibration import cached_calibration
        from ablate.measurement.engine import StoppingPolicy, measure_latency

        names = [unit.name for unit in self.units]
        baseline = self.unit_of[self.spec.baseline].name
        journal = self.directory / JOURNAL_NAME
        # A torn last line (a kill or a full disk mid-append) goes before anything is appended:
        # left in place, the next round would be written onto it.
        if repair_journal(journal):
            self.progress.note(f"{journal}: dropped a torn last line (a round cut short)")
        recorded = read_journal(journal, set(names))
        settings = self.spec.measure.effective()
        timing_state = cache_state_of(settings.settle_s)
        state = recorded.cache_state
        if state is not None and state != timing_state:
            # Pooled with this session's, they would give each variant a median of two
            # regimes (up to 50% apart, docs/measuring.md); kept whole, beside the new one.
            aside = set_journal_aside(journal, state)
            self.progress.note(
                f"{journal}: its {len(recorded.rounds)} rounds were timed with {state} caches "
                f"({CACHE_STATES[state]}); kept as {aside.name}, and the measurement starts again"
            )
            recorded = Journal([], 0.0)
        prior = recorded.rounds
        budget_s = max(settings.budget_s - recorded.elapsed_s, SPENT_BUDGET_S)
        if prior:
            self.progress.note(
                f"resuming the measurement after {len(prior)} journal rounds, "
                f"{budget_s:.1f} s of the {settings.budget_s:g} s budget left"
            )
        phone = None if self.phone_serial is None else self.phone()
        if phone is None:
            runnables, runtimes = self._prepare(built_copies(len(self.units)))
        else:
            runnables, runtimes = self._phone_programs()
        on_round, on_check = self._round_recorder(
            journal, budget_s, recorded.elapsed_s, timing_state
        )
        result = measure_latency(
            runnables,
            baseline=baseline,
            setup=self.setup,
            block_timer=None if phone is None else phone.block_timer(),
            stopping=StoppingPolicy(
                target_ci=settings.target_ci,
                budget_seconds=budget_s,
                minimum_rounds=settings.min_rounds,
                maximum_rounds=settings.max_rounds,
                judged=self._judged(),
            ),
            warmup=self._warmup_policy(settings.warmup_s, budget_s, len(names)),
            clock=self.clock,
            on_round=on_round,
            on_check=on_check,
            prior_rounds=prior,
            timings_per_round=self._timings_per_round(),
            seed=settings.seed,
            settle_s=settings.settle_s,
        )
        # The roofline calibration is this host's: no statement about a phone.
        calibration = (
            None
            if phone is not None
            else cached_calibration(threads=self.setup.threads, device=self.setup.device)
        )
        # The run's budget and its whole measuring time, not this session's share of them.
        update: dict[str, Any] = {
            "budget_s": settings.budget_s,
            "elapsed_s": recorded.elapsed_s + result.elapsed_s,
        }
        if phone is not None:
            update["device"] = phone_device_name(phone.serial)
        measurement = measurement_entry(result, calibration).model_copy(update=update)
        variants = with_latencies(self.state.variants, result.variants, runtimes)
        self.update("measured", variants=variants, measurement=measurement)

    def _prepare(self, copies: int) -> tuple[dict[str, list[Any]], dict[str, RuntimeRecord]]:
        """Every unit's runnables, `copies` separately built copies of one realistic network
        each; and, for the backends that export a program, what they made of it."""
        import copy

        from ablate.measurement.activations import realistic_module
        from ablate.measurement.backends import prepare_runnable
        from ablate.measurement.export_pool import export_pool
        from ablate.measurement.setup import example_input

        started = time.perf_counter()
        models, images = {}, {}
        with export_pool(self.setup.backend, self.setup.precision, len(self.units)) as pool:
            for position, unit in enumerate(self.units):
                self.progress.counting(f"preparing {unit.name}", position, len(self.units))
                models[unit.name] = realistic_module(unit.architecture)
                images[unit.name] = example_input(self.setup, unit.architecture.resolution)
                if pool is not None:
                    pool.submit(models[unit.name], images[unit.name], unit.name)
            if pool is not None:
                pool.wait(lambda done, total: self.progress.counting("exporting", done, total))
        runnables: dict[str, list[Any]] = {}
        runtimes: dict[str, RuntimeRecord] = {}
        exported, cached = 0.0, 0
        for position, unit in enumerate(self.units):
            self.progress.counting(f"loading {unit.name}", position, len(self.units))
            model = models.pop(unit.name)
            runnables[unit.name] = [
                prepare_runnable(
                    model if index == 0 else copy.deepcopy(model), images[unit.name], self.setup
                )
                for index in range(copies)
            ]
            first = runnables[unit.name][0]
            if hasattr(first, "record"):
                record = RuntimeRecord.model_validate(first.record(pool))
                runtimes[unit.name] = record
                cached += record.export_cached
                exported += 0.0 if record.export_cached else record.export_seconds
        self.progress.note(
            f"prepared {len(self.units)} architectures in {time.perf_counter() - started:.1f} s"
            + (
                f" ({exported:.1f} s exporting, {cached} from the export cache"
                + (f", {pool.workers} export processes" if pool and pool.exported else "")
                + ")"
                if runtimes
                else ""
            )
        )
        return runnables, runtimes

    def phone(self) -> Phone:
        """The run's phone, connected (binary pushed) on first use."""
        from ablate.measurement.backends import BACKENDS
        from ablate.measurement.phone import phone_target

        assert self.phone_serial is not None
        if self._phone is None:
            phone = phone_target(self.phone_serial, BACKENDS.get(self.setup.backend))
            phone.connect()
            self._phone = phone
        return self._phone

    def _phone_programs(self) -> tuple[dict[str, list[Any]], dict[str, RuntimeRecord]]:
        """Every unit's program for the phone (one each: the phone runs the same bytes
        whichever host copy made them), and the mobile runtimes' records of them."""
        from ablate.measurement.activations import realistic_module
        from ablate.measurement.backends import BACKENDS
        from ablate.measurement.phone import PhoneProgram
        from ablate.measurement.setup import example_input

        runtime = BACKENDS.get(self.setup.backend)
        assert runtime.program is not None  # phone_target refuses a backend without one
        suffix = runtime.program.suffix
        if runtime.mobile:  # exported through the pool and the export cache, as on the host
            prepared, runtimes = self._prepare(1)
            programs = {
                name: [PhoneProgram(name, copies[0].artifact.program, suffix)]
                for name, copies in prepared.items()
            }
            return programs, runtimes
        programs = {}
        for position, unit in enumerate(self.units):
            self.progress.counting(f"exporting {unit.name}", position, len(self.units))
            model = realistic_module(unit.architecture)
            images = example_input(self.setup, unit.architecture.resolution)
            data, _ = runtime.program.export(model, images, self.setup.precision)
            programs[unit.name] = [PhoneProgram(unit.name, data, suffix)]
        return programs, {}

    @staticmethod
    def _warmup_policy(warmup_s: float, budget_s: float, variants: int) -> Any:
        from ablate.measurement.clock import WarmupPolicy

        share = max(MINIMUM_WARMUP_S, WARMUP_SHARE_OF_BUDGET * budget_s / variants)
        return WarmupPolicy(maximum_seconds=min(warmup_s, share))

    def _round_recorder(
        self, journal: Path, budget_s: float, prior_elapsed_s: float, cache_state: CacheState
    ) -> tuple[RoundCallback, CheckCallback]:
        """The engine's callbacks: per round, journal it and report progress; per stopping
        check, keep the widest judged interval, which the progress shows from then on.

        Each line records the measuring time so far (this session's, from just before the
        engine's warm-up, plus the sessions before), which a resumed run takes off its budget.
        """
        clock = self.clock or time.perf_counter
        started = clock()
        widest: list[float | None] = [None]
        judged = self.spec.measure.stop_on

        def on_round(
            index: int, seconds: Mapping[str, float], timings: Mapping[str, Sequence[float]]
        ) -> None:
            session_s = clock() - started
            append_round(
                journal,
                index,
                seconds,
                cache_state=cache_state,
                elapsed_s=prior_elapsed_s + session_s,
                timings=timings,
            )
            self.progress.measuring(index, judged, widest[0], budget_s - session_s)

        def on_check(widths: Mapping[str, float]) -> None:
            widest[0] = max(widths.values(), default=None)

        return on_round, on_check

    def predict(self) -> None:
        """The predictor's latencies instead of a measurement: nothing is timed."""
        from ablate.architecture.imported import build_network
        from ablate.counting.engine import count_model
        from ablate.counting.networks import group_function

        assert self.predictor is not None
        for unit in self.units:
            if unit.name not in self.records:  # resumed after counting: count again, in memory
                resolution = unit.architecture.resolution
                shape = (self.setup.batch, 3, resolution, resolution)
                group_of = group_function(unit.architecture)
                counted = count_model(build_network(unit.architecture), shape, group_of=group_of)
                self.records[unit.name] = list(counted.records)
        predicted = self.predictor.predict(
            {unit.name: self.records[unit.name] for unit in self.units},
            baseline=self.unit_of[self.spec.baseline].name,
            threads=self.setup.threads,
        )
        points = {name: latency.median_ms for name, latency in predicted.latencies.items()}
        write_json_atomic(
            self.directory / PREDICTED_SAMPLES_NAME,
            {"point_ms": points, "samples_ms": predicted.samples_ms},
        )
        self.update(
            "measured",
            variants=self.updated_variants(
                {name: {"latency": latency} for name, latency in predicted.latencies.items()}
            ),
            measurement=predicted.measurement,
        )

    def profile(self) -> None:
        if self.predicted:  # per-op profiling times the model: a predicted run does not
            self.update("profiled")
            return
        from ablate.counting.networks import group_function
        from ablate.measurement.activations import realistic_module
        from ablate.measurement.backends import backend_fuses
        from ablate.measurement.calibration import cached_calibration
        from ablate.measurement.profile import profile_operators
        from ablate.measurement.setup import example_input

        calibration = cached_calibration(threads=self.setup.threads, device=self.setup.device)
        runs = QUICK_PROFILE_RUNS if self.spec.measure.quick else PROFILE_RUNS
        fused = backend_fuses(self.setup.backend)
        timer = self._kernel_timer()
        timed = {variant.measured_as: variant for variant in self.state.variants}
        changes: dict[str, dict[str, Any]] = {}
        saved = time.monotonic()
        for position, unit in enumerate(self.units):
            done = timed[unit.name]
            # Profiled by an earlier session of this run, and saved: `--resume` keeps it.
            if done.op_time_shares is not None and (timer is None or done.kernels is not None):
                continue
            self.progress.counting(f"profiling {unit.name}", position, len(self.units))
            key = (unit.architecture, self.setup.threads, self.setup.device, runs)
            profile = None if self.shared is None else self.shared.profiles.get(key)
            model = images = None
            if profile is None or done.runtime is not None or timer is not None:
                model = realistic_module(unit.architecture)
                images = example_input(self.setup, unit.architecture.resolution)
            if profile is None:
                profile = profile_operators(
                    model,
                    images,
                    runs=runs,
                    device=self.setup.device,
                    group_of=group_function(unit.architecture),
                )
                if self.shared is not None:
                    self.shared.profiles[key] = profile
            shares = op_time_entry(profile)
            changes[unit.name] = {
                "op_time_shares": shares,
                "blocks": with_time_shares(done.blocks, shares.by_block, calibration, fused=fused),
            }
            if done.runtime is not None and self.phone_serial is None:
                measured = runtime_profile(model, images, self.setup, runs=runs)
                changes[unit.name]["runtime"] = done.runtime.model_copy(
                    update={"profile": measured}
                )
            if timer is not None:
                changes[unit.name]["kernels"] = kernel_times(
                    timer, model, images, self.setup, runs=runs
                )
            if time.monotonic() - saved >= PROFILE_SAVE_INTERVAL_S:
                self.update(variants=self.updated_variants(changes))
                changes, saved = {}, time.monotonic()
        self.update("profiled", variants=self.updated_variants(changes))

    def _kernel_timer(self) -> KernelTimer | None:
        """The backend's kernel timer when the spec asks for kernel times (`measure.kernels`);
        None otherwise, said once when the backend has none."""
        from ablate.measurement.backends import BACKENDS

        if not self.spec.measure.kernels:
            return None
        if self.phone_serial is not None:
            self.progress.note(
                "a live phone run times whole networks only; a phone's kernel times come from "
                "a bundle's profile pass (ablate export, measure.sh, ingest)"
            )
            return None
        timer = BACKENDS.get(self.setup.backend).kernel_timer
        if timer is None:
            self.progress.note(
                f"{self.setup.backend} gives no per-kernel times: a device profile fitted from "
                "this run rests on whole-network latencies only"
            )
        return timer

    def attribute(self) -> None:
        if self.spec.attribution is None:
            self.update("complete")
            return
        self.update("complete", attribution=self._attribution())

    def _attribution(self) -> Attribution:
        from ablate.analysis.attribution import attribute
        from ablate.analysis.coalitions import CoalitionSpace

        attribution = self.spec.attribution
        assert attribution is not None
        space = CoalitionSpace(attribution.factors)
        masks, units = self._coalition_units()
        by_name = {variant.name: variant for variant in self.state.variants}

        def metric(key: str) -> Any:
            by_mask = {mask: by_name[space.variant_name(mask)].count(key) for mask in masks}
            return lambda mask: by_mask[mask]

        # A metric that some coalition lacks (counted by a version before the metric) is left
        # out of the attribution rather than attributed as zero.
        attributed = [
            row.key
            for row in ATTRIBUTABLE
            if all(by_name[space.variant_name(mask)].count(row.key) is not None for mask in masks)
        ]

        table = None
        latency: list[list[float]] | None = None
        if self.predicted:
            table = self._predicted_latency_table(dict(zip(masks, units, strict=True)))
        else:
            rounds = read_rounds(self.directory / JOURNAL_NAME, {u.name for u in self.units})
            latency = [[entry[unit] for unit in units] for entry in rounds]

        return attribute(
            attribution.factors,
            {key: metric(key) for key in attributed},
            latency,
            from_name=attribution.from_architecture,
            to_name=attribution.to_architecture,
            latency_masks=masks,
            path_order=attribution.factors,
            method=attribution.method,
            permutation_count=attribution.permutations,
            sampling_seed=attribution.seed,
            latency_table_given=table,
        )

    def _coalition_units(self) -> tuple[list[int], list[str]]:
        """The attribution's measured coalitions (mask order) and the unit timing each."""
        from ablate.analysis.coalitions import CoalitionSpace

        assert self.spec.attribution is not None
        space = CoalitionSpace(self.spec.attribution.factors)
        names = {variant.name for variant in self.spec.variants}
        masks = [mask for mask in space.masks() if space.variant_name(mask) in names]
        return masks, [self.unit_of[space.variant_name(mask)].name for mask in masks]

    def _timings_per_round(self) -> dict[str, int]:
        """The attribution's end models, timed END_MODEL_TIMINGS times a round (RoundPlan
        says why) when they are few among many coalitions; every other unit once."""
        if self.spec.attribution is None:
            return {}
        from ablate.analysis.coalitions import CoalitionSpace

        masks, units = self._coalition_units()
        if len(masks) <= MANY_VARIANTS:
            return {}
        full = CoalitionSpace(self.spec.attribution.factors).full_mask
        ends = {unit for mask, unit in zip(masks, units, strict=True) if mask in (0, full)}
        return dict.fromkeys(sorted(ends), END_MODEL_TIMINGS)

    def _judged(self) -> PrecisionTarget | None:
        """What the target judges: None (each ratio) or the attribution's latency shares."""
        if self.spec.measure.stop_on != ATTRIBUTION:
            return None
        import numpy as np

        from ablate.analysis.attribution import latency_half_widths
        from ablate.measurement.engine import PrecisionTarget

        assert self.spec.attribution is not None
        plan = self.spec.attribution.plan()
        masks, units = self._coalition_units()

        def widths(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
            rounds = np.column_stack([np.asarray(samples[unit], dtype=float) for unit in units])
            return latency_half_widths(plan, rounds, masks)

        return PrecisionTarget(ATTRIBUTION, widths)

    def _predicted_latency_table(self, unit_of_mask: Mapping[int, str]) -> LatencyTable:
        """The attribution's latency table, its resamples the predictor's (not rounds)."""
        import json

        import numpy as np

        from ablate.analysis.bootstrap import BootstrapSettings, LatencyTable

        saved = json.loads((self.directory / PREDICTED_SAMPLES_NAME).read_text())
        masks = np.array(sorted(unit_of_mask), dtype=np.int64)
        samples = np.array([saved["samples_ms"][unit_of_mask[int(m)]] for m in masks]).T
        return LatencyTable(
            masks=masks,
            medians_milliseconds=np.array([saved["point_ms"][unit_of_mask[int(m)]] for m in masks]),
            resampled_milliseconds=samples,
            round_count=samples.shape[0],
            settings=BootstrapSettings(resamples=samples.shape[0]),
        )

    STAGES = (
        ("counting", "count", "counted"),
        ("counted", "measure", "measured"),
        ("measured", "profile", "profiled"),
        ("profiled", "attribute", "complete"),
    )

    def execute(
        self,
        resume: bool,
        rerun: Sequence[str] = (),
        resume_arguments: Sequence[str] = ("--resume",),
    ) -> None:
        """Own the run directory, start (or reopen) the run and take every stage its status
        has not passed.

        `rerun` is the command line that started it (without --resume): an interruption or
        a file that cannot be written ends in one line that says what was kept and the
        command that continues from there (`rerun` and `resume_arguments`).
        """
        self.rerun = rerun
        self.resume_arguments = resume_arguments
        with hold_run_directory(self.directory):
            try:
                self._take_stages(resume)
            except KeyboardInterrupt:
                raise RunInterrupted(f"interrupted: {self._continuation()}") from None
            except WriteError as error:
                raise error.with_hint(self._continuation()) from None

    def _continuation(self) -> str:
        """What the directory keeps and the command that continues it (or starts over)."""
        rerun = self.rerun
        if not (self.directory / RESOLVED_SPEC_NAME).is_file():
            again = f"; run again with: {shlex.join(rerun)}" if rerun else ""
            return f"nothing was saved in {self.directory}{again}"
        if self.results is None:
            kept = f"{self.directory} keeps the spec, nothing counted yet"
        else:
            if self.results.status == "counting":
                counted = {self.unit_of[variant.name].name for variant in self.results.variants}
                detail = f"{len(counted)} of {len(self.units)} architectures counted"
            else:
                rounds = saved_rounds(self.directory / JOURNAL_NAME)
                plural = "round" if rounds == 1 else "rounds"
                detail = f"{rounds} measurement {plural} in {JOURNAL_NAME}"
            kept = f"{self.directory} keeps the run so far (status {self.results.status}, {detail})"
        if not rerun:
            return kept
        return f"{kept}; continue it with: {shlex.join([*rerun, *self.resume_arguments])}"

    def _take_stages(self, resume: bool) -> None:
        self.start(resume)
        status = self.state.status
        for before, stage, after in self.STAGES:
            if status == before:
                started = time.perf_counter()
                try:
                    getattr(self, stage)()
                except MemoryError:
                    raise self._out_of_memory(stage) from None
                except RuntimeError as error:
                    if "alloc" not in str(error) and "out of memory" not in str(error):
                        raise
                    raise self._out_of_memory(stage) from None
                self.progress.note(f"{after} in {time.perf_counter() - started:.1f} s")
                status = after

    def _out_of_memory(self, stage: str) -> AblateError:
        # The continuation repeats the options (--out, --quick, --force...): without them
        # `--resume` would look elsewhere, or find the spec changed, or refuse the size again.
        return AblateError(
            f"out of memory while {stage.removesuffix('e')}ing (free memory or measure fewer "
            f"variants); {self._continuation()}"
        )
