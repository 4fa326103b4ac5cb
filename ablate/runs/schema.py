"""The results model: what `ablate run` builds and writes, and what every reader loads.

One pydantic model, `Results`, from the runner's first save to the last report; the
attribution inside it is the analysis package's own `Attribution`. Reading validates the
whole file, so a damaged or hand-edited file gets one line naming the file and the key path
instead of a traceback deep inside a renderer.

Counts: every stored metric of the metric table (`ablate.metrics`) is an optional field of its
own, on the variant and, for the per-block ones, on each block: a file written before a metric
existed reads it as None ("n/a" in every report), so adding a metric needs no new field here.
`unknown_ops` gives each op without a counting rule its calls and the modules it ran in; files
that recorded calls only (operator -> calls) read with no modules.

Schema versions: ``ablate.results/2`` is written. ``/1`` (before 0.2) stored the attribution
with each effect's metrics, latency and interval flattened into one object, under a key that
followed the confidence level; it is still read, converted on load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ablate.analysis.record import LATENCY_MS, LATENCY_PERCENT, Attribution
from ablate.errors import InputFileError, excerpt, format_key_path
from ablate.files import read_json
from ablate.measurement.kernels import KernelClass, KernelEvent
from ablate.measurement.results import ATTRIBUTION as ATTRIBUTION  # what `stop_on` can judge,
from ablate.measurement.results import RATIOS as RATIOS  # for the readers of results
from ablate.measurement.results import STOP_REASONS as MEASURED_STOP_REASONS
from ablate.measurement.results import CacheState, StopOn
from ablate.measurement.results import StopReason as MeasuredStopReason
from ablate.measurement.results import (  # for the reports
    describe_cache_state as describe_cache_state,
)
from ablate.metrics import PER_BLOCK, STORED, Metric
from ablate.spec.schema import VARIANT_NAME_PATTERN, PublishedChange, ReferenceSection

SCHEMA = "ablate.results/2"
SCHEMA_V1 = "ablate.results/1"
READABLE_SCHEMAS = (SCHEMA, SCHEMA_V1)
RESULTS_NAME = "results.json"
Status = Literal["counting", "counted", "measured", "profiled", "complete"]
# A run's latencies are measured (the engine's stop reasons) or `predicted` by a device
# profile (`ablate run --device`), where nothing is timed.
StopReason = Literal[MeasuredStopReason, "predicted"]
# Why a run's latencies are what they are, as every report words it.
STOP_REASONS: dict[StopReason, str] = {
    **MEASURED_STOP_REASONS,
    "predicted": "nothing was timed: a device profile's cost model predicted every variant",
}


# What results say about their backend, for the files written before they said it (the
# runner records it from the backend's descriptor, `measurement.backends`): whether it fuses
# (a name not listed did not), and the per-op profiler of each mobile runtime's Python API.
FUSES_BEFORE_RECORDED = {
    "eager": False,
    "torchscript": True,
    "onnxruntime": True,
    "compile": True,
    "executorch": True,
    "litert": True,
}
PROFILERS_BEFORE_RECORDED = {"executorch": "ETDump", "litert": None}
# The backend every per-op profile ran on before results said which: eager PyTorch.
EAGER_PROFILE = "eager"


# Names as specs allow them (see spec.schema); reports escape them like any other text.
VariantName = Annotated[str, Field(pattern=f"^{VARIANT_NAME_PATTERN.pattern}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ratio(_Strict):
    median: float
    ci95: tuple[float, float]


class Flag(_Strict):
    name: str
    detail: str


class Extrapolation(_Strict):
    """Where a predicted latency leaves what its device profile's rows resolved
    (`devices.support`): the term, how far outside in words, and the factor."""

    term: str  # the cost model's term, e.g. "dense_macs"
    detail: str
    times_outside: float | None = Field(None, gt=0, allow_inf_nan=False)  # None: no row has it


class Latency(_Strict):
    """Per-iteration latency over the measurement rounds, in milliseconds."""

    median_ms: float
    iqr_ms: float
    ci95_ms: tuple[float, float]
    rounds: int
    ratio_to_baseline: Ratio | None  # None for the baseline itself
    significant: bool | None  # the ratio interval excludes 1.0
    flags: list[Flag]
    # A round's value is the median of this many timings at random places in it (odd):
    # an attribution's end models, which decide its total, are timed more than once.
    timings_per_round: int = Field(1, ge=1)
    # Predicted latencies (`run --device`): each term on which the profile extrapolates, []
    # where it does not; None for a measurement, or a profile that does not record its support
    # (and files written before the check).
    extrapolated: list[Extrapolation] | None = None


def _count_fields(metrics: tuple[Metric, ...]) -> dict[str, Any]:
    """One optional int field per metric, in table order."""
    return {
        metric.key: (int | None, Field(None, description=metric.convention)) for metric in metrics
    }


class _Counted(_Strict):
    def count(self, key: str) -> int | None:
        """A metric by its key; None where the file was written before the metric existed."""
        value: int | None = getattr(self, key)
        return value


class _BlockName(_Counted):
    name: str  # "stem", "blocks.0", ..., "last_stage", "classifier"


# The name, then the per-block metrics of the table (`metrics.PER_BLOCK`).
_BlockCounts = create_model("_BlockCounts", __base__=_BlockName, **_count_fields(PER_BLOCK))


class BlockCounts(_BlockCounts):  # type: ignore[misc,valid-type]
    intensity_fused: float  # FLOPs per byte of the fused view
    time_share: float | None = None  # of the profiled forward time, in [0, 1]
    roofline_ms: float | None = None  # max(FLOPs / peak, fused bytes / bandwidth)
    bound: Literal["compute-bound", "memory-bound"] | None = None


class OpTimeShares(_Strict):
    """Shares of the profiled forward time, by block and by aten operator, in [0, 1]."""

    by_block: dict[str, float]
    by_operator: dict[str, float]
    # The backend whose forward passes were profiled: the shares split its latency only.
    backend: str = EAGER_PROFILE


class Delegation(_Strict):
    """Which ops ran inside the delegate, and which did not (op name -> count)."""

    delegate: str  # e.g. XNNPACK
    delegated: dict[str, int]
    outside: dict[str, int]  # run by the runtime's own kernels
    fp32: dict[str, int]  # computed in fp32 inside an int8 program
    flagged: bool  # some op ran outside the delegate or stayed fp32 in an int8 program


class RuntimeOpTime(_Strict):
    """One kind of the runtime's kernels in a forward pass of the exported program."""

    name: str  # the runtime's own name: "Convolution (NHWC, F32) DWConv", "mean.out"
    delegated: bool  # inside the delegate; False: the runtime's portable kernel
    instances: int  # how many run per forward pass
    milliseconds: float  # the median over the profiled runs, summed over the instances
    share: float  # of the summed time of every op, in [0, 1]

    @property
    def label(self) -> str:
        """The name, marked when the kernel ran outside the delegate."""
        return self.name if self.delegated else f"{self.name} (outside the delegate)"


class RuntimeProfile(_Strict):
    """Where the exported program's time goes, per kernel kind, by the runtime's own profiler.

    The runtime's kernels are not aten ops (XNNPACK runs a 1x1 convolution as a GEMM, with its
    activation fused), so these shares sit beside the eager profile's per-block and per-op
    shares rather than replace them. Profiling adds a little per op: read the shares.
    """

    profiler: str  # e.g. "ETDump"
    runs: int
    ops: list[RuntimeOpTime]  # slowest first

    @property
    def outside_share(self) -> float:
        """The share of the time spent outside the delegate."""
        return sum(op.share for op in self.ops if not op.delegated)


class ExportedOn(_Strict):
    hostname: str
    node_id: str | None = None  # the Ray node's id; None: exported by an ablate process


class RuntimeRecord(_Strict):
    """What a mobile backend made of a variant: its program, runtime and delegation, and, after
    the profiling stage, where the runtime spends its time (where its profiler allows)."""

    runtime: str
    versions: dict[str, str]
    precision: str
    export_seconds: float
    export_cached: bool
    program_bytes: int
    delegation: Delegation
    profile: RuntimeProfile | None = None
    # The per-op profiler of the runtime's Python API (e.g. ETDump); None: it has none.
    profiler: str | None
    # Where the program was exported: its host, and the Ray node when a cluster exported it
    # (`--cluster`); None for a program cached before the cache recorded it.
    exported_on: ExportedOn | None = None

    @model_validator(mode="before")
    @classmethod
    def _profiler_of_older_files(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "profiler" not in data:
            return {**data, "profiler": PROFILERS_BEFORE_RECORDED.get(data.get("runtime"))}
        return data


KERNEL_CLASSES = tuple(kind.value for kind in KernelClass)


class KernelTimeEntry(_Strict):
    """One kernel of a forward pass, as the backend's own profiler timed it
    (`measurement.kernels.KernelEvent`)."""

    name: str  # the runtime's own name, without its instance number
    milliseconds: float = Field(ge=0, allow_inf_nan=False)  # median over the profiled runs
    delegated: bool  # inside the runtime's delegate (always True where there is none)
    kind: str  # a `KernelClass` value: what matching reads it as
    record: int | None = Field(None, ge=0)  # the counting record it is, where the timer knows

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KERNEL_CLASSES:
            raise ValueError(f"unknown kernel class; valid: {', '.join(KERNEL_CLASSES)}")
        return value


class KernelTimes(_Strict):
    """Every kernel of one network's forward pass, in execution order (`measure.kernels`)."""

    timer: str  # the backend whose kernel timer produced them
    runs: int = Field(ge=1)  # profiled forward passes each time is the median of
    events: list[KernelTimeEntry]

    @classmethod
    def of_events(cls, timer: str, runs: int, events: Iterable[KernelEvent]) -> KernelTimes:
        """The record of a timer's (or a phone profile's) kernel events."""
        return cls(
            timer=timer,
            runs=runs,
            events=[
                KernelTimeEntry(
                    name=event.name,
                    milliseconds=event.milliseconds,
                    delegated=event.delegated,
                    kind=event.kind.value,
                    record=event.record,
                )
                for event in events
            ],
        )


class UnknownOp(_Strict):
    """An aten op with no counting rule: counted as zero; how often and where it ran."""

    calls: int
    modules: list[str]  # module paths, in order of first call; "(model)" for the root's forward


class ImportedModule(_Strict):
    """The module a variant imported (`model:` in its spec), as the run found it: enough to
    trace a result to the code that ran."""

    path: str  # package.module:factory
    args: dict[str, Any]  # the factory's keyword arguments
    # The installed distribution that provides the module, and its version; None for a
    # module that is not installed (one found on PYTHONPATH or in the current directory).
    distribution: str | None
    version: str | None
    file: str | None  # the source file that defines the factory
    sha256: str | None  # of that file, as it was when the run counted the module


class _VariantHead(_Counted):
    name: VariantName
    base: str
    factors: dict[str, Any]  # as given in the spec
    resolved_factors: dict[str, Any]  # every factor's effective value
    measured_as: VariantName  # the variant whose identical architecture was built and timed


# The head, then the stored metrics of the table (`metrics.STORED`), each with its convention.
_VariantCounts = create_model("_VariantCounts", __base__=_VariantHead, **_count_fields(STORED))


class Variant(_VariantCounts):  # type: ignore[misc,valid-type]
    by_kind: dict[str, dict[str, Any]]
    unknown_ops: dict[str, UnknownOp]
    blocks: list[BlockCounts]
    latency: Latency | None = None
    op_time_shares: OpTimeShares | None = None
    runtime: RuntimeRecord | None = None  # the exported program, on the mobile backends
    # Every kernel in execution order (`measure.kernels`); None where the spec did not ask,
    # the backend cannot time its kernels, or the file was written before they were stored.
    kernels: KernelTimes | None = None
    # The published figures the spec gave it (`variants.NAME.reference`); files written
    # before references existed have none.
    reference: ReferenceSection | None = None
    # The imported module that is its network (`model:`); None for ablate's own networks.
    imported: ImportedModule | None = None

    @field_validator("unknown_ops", mode="before")
    @classmethod
    def _calls_only(cls, value: Any) -> Any:
        """Files that recorded an unknown op's calls only (operator -> calls): no modules."""
        if not isinstance(value, Mapping):
            return value
        return {
            op: {"calls": entry, "modules": []} if isinstance(entry, int) else entry
            for op, entry in value.items()
        }


class Calibration(_Strict):
    peak_flop_per_second: float
    bandwidth_bytes_per_second: float


class Measurement(_Strict):
    stop_reason: StopReason
    rounds: int
    elapsed_s: float
    backend: str
    # The backend runs conv + BN + activation as one kernel: its traffic is the fused view.
    fuses: bool
    device: str
    batch: int
    threads: int
    precision: str = "fp32"  # int8: static post-training quantization (mobile backends)
    target_ci: float
    # What target_ci judged: each variant's ratio, or the attribution's Shapley values and total
    # (in fractions of the `from` model's latency).
    stop_on: StopOn = RATIOS
    # What the caches held when each timing started (CACHE_STATES); None where nothing was
    # timed (a prediction).
    cache_state: CacheState | None = "rotating"  # files written before it was recorded
    # Seconds of untimed calls before each timing (`measure.settle_s`) where it is "settled".
    settle_s: float | None = None
    budget_s: float
    seed: int
    roofline_calibration: Calibration | None = None
    # The device profile that predicted every latency instead of timing (`run --device`);
    # None for a measured run.
    predicted_on: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fuses_of_older_files(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "fuses" not in data:
            return {**data, "fuses": FUSES_BEFORE_RECORDED.get(data.get("backend"), False)}
        return data


class Results(_Strict):
    schema_name: Literal["ablate.results/2"] = Field(SCHEMA, alias="schema")
    status: Status
    ablate_version: str
    experiment: str
    description: str | None
    quick: bool
    created: str
    spec: dict[str, Any]
    environment: dict[str, Any]
    baseline: VariantName
    measurement: Measurement | None = None
    variants: list[Variant]
    attribution: Attribution | None = None
    # The spec's `attribution.reference`: factor (or `total`) -> the published change, shown
    # beside the Shapley values; files written before it existed have none.
    attribution_reference: dict[str, PublishedChange] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise InputFileError(
            RESULTS_NAME,
            "no such variant",
            key_path=name,
            choices=[v.name for v in self.variants],
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def load_results(path: Path) -> Results:
    if path.is_dir():
        path = path / RESULTS_NAME
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a JSON object at the top level")
    if data.get("schema") not in READABLE_SCHEMAS:
        raise InputFileError(
            path,
            f"unsupported schema {excerpt(data.get('schema'))}",
            key_path="schema",
            choices=READABLE_SCHEMAS,
        )
    try:
        if data["schema"] == SCHEMA_V1:
            data = _from_v1(data)
        return Results.model_validate(data)
    except _V1Damage as error:
        raise InputFileError(path, error.message, key_path=error.key_path) from None
    except ValidationError as error:
        first = error.errors()[0]
        message = (
            first["msg"]  # the input is the enclosing object: no use echoing it
            if first["type"] == "missing"
            else f"{first['msg']} (got {excerpt(first.get('input'))})"
        )
        raise InputFileError(path, message, key_path=format_key_path(first["loc"])) from None


# -- reading schema 1 ----------------------------------------------------------------------


class _V1Damage(Exception):
    def __init__(self, key_path: str, message: str):
        super().__init__(message)
        self.key_path = key_path
        self.message = message


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 document in the version-2 layout; the attribution is the only change."""
    converted = {**data, "schema": SCHEMA}
    if data.get("attribution") is not None:
        converted["attribution"] = _attribution_from_v1(data["attribution"])
    return converted


def _get(data: Any, key: str, path: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise _V1Damage(f"attribution.{path}.{key}" if path else f"attribution.{key}", "missing")
    return data[key]


def _effect_from_v1(label: str, data: Any, path: str, interval_key: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise _V1Damage(f"attribution.{path}", "expected an object")
    reserved = {LATENCY_MS, LATENCY_PERCENT, "factor", "factors", "coalition", "notable"}
    metrics = {
        key: value
        for key, value in data.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in reserved
    }
    effect: dict[str, Any] = {"label": label, "metrics": metrics}
    if LATENCY_MS in data:
        interval = _get(data, interval_key, path)
        effect["latency"] = {
            "ms": data[LATENCY_MS],
            "percent": _get(data, LATENCY_PERCENT, path),
            "interval_ms": _get(interval, LATENCY_MS, f"{path}.{interval_key}"),
            "interval_percent": _get(interval, LATENCY_PERCENT, f"{path}.{interval_key}"),
        }
    return effect


def _effects_from_v1(data: Any, path: str, key: str) -> list[dict[str, Any]]:
    if not isinstance(data, Mapping):
        raise _V1Damage(f"attribution.{path}", "expected an object of factor: effect")
    return [_effect_from_v1(label, value, f"{path}.{label}", key) for label, value in data.items()]


def _attribution_from_v1(data: Any) -> dict[str, Any]:
    bootstrap = data.get("bootstrap") if isinstance(data, Mapping) else None
    confidence = bootstrap.get("confidence", 0.95) if isinstance(bootstrap, Mapping) else 0.95
    key = f"ci{confidence * 100:g}"
    values = _get(data, "values", "")
    one_factor = _get(data, "one_factor", "")
    sampling = data.get("sampling_error")
    shapley = _effects_from_v1(_get(data, "shapley", ""), "shapley", key)
    if sampling:
        errors = sampling.get("standard_errors", {})
        for effect in shapley:
            effect["standard_errors"] = errors.get(effect["label"])
    return {
        "from": _get(data, "from", ""),
        "to": _get(data, "to", ""),
        "factors": _get(data, "factors", ""),
        "method": data.get("method", "exact"),
        "from_values": _effect_from_v1("from", _get(values, "from", "values"), "values.from", key),
        "to_values": _effect_from_v1("to", _get(values, "to", "values"), "values.to", key),
        "total": _effect_from_v1("total", _get(data, "total", ""), "total", key),
        "shapley": shapley,
        "added_to_from": _effects_from_v1(
            _get(one_factor, "added_to_from", "one_factor"), "one_factor.added_to_from", key
        ),
        "removed_from_to": _effects_from_v1(
            _get(one_factor, "removed_from_to", "one_factor"), "one_factor.removed_from_to", key
        ),
        "path": [
            {
                "coalition": _get(step, "coalition", f"path[{index}]"),
                "effect": _effect_from_v1(
                    _get(step, "factor", f"path[{index}]"), step, f"path[{index}]", key
                ),
            }
            for index, step in enumerate(_get(data, "path", ""))
        ],
        "interactions": [
            {
                "factors": _get(pair, "factors", f"interactions[{index}]"),
                "effect": _effect_from_v1(
                    "×".join(map(str, _get(pair, "factors", f"interactions[{index}]"))),
                    pair,
                    f"interactions[{index}]",
                    key,
                ),
                "share_of_total": pair.get("share_of_total") or {},
                "notable": bool(pair.get("notable", False)),
            }
            for index, pair in enumerate(_get(data, "interactions", ""))
        ],
        "interaction_threshold": data.get("interaction_threshold", 0.05),
        "bootstrap": bootstrap,
        "sampling": None
        if not sampling
        else {key: sampling[key] for key in ("permutations", "antithetic", "seed")},
        "notes": data.get("notes", []),
    }
