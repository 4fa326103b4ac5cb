"""Rows to fit on: from a table of published latencies (CSV) or from measured runs.

Table format (``--from-table``): one header line, then one row per variant; lines starting
with ``#`` are comments (citations). Columns:

    model       a built-in architecture (required)
    set         factor settings, ``FACTOR=VALUE`` separated by ``;`` (VALUE read as YAML,
                as ``--set`` reads it), e.g. ``width=0.5; last_stage_width=fixed``
    latency_ms  the measured latency in milliseconds, 1e-6 to 8.64e7 (required)
    name        the row's name (default: model and settings)
    source      where the number comes from, e.g. "V3 paper Table 9"
    params_m    the source's parameter count in millions (checked by the tests, not fitted)
    madds_m     the source's MAdds in millions (informative)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.devices.costs import View
from ablate.devices.fit import Observation
from ablate.devices.profile import latency_problem
from ablate.errors import AblateError, InputFileError

if TYPE_CHECKING:
    from ablate.architecture.description import Architecture
    from ablate.counting.records import CountResult, OpRecord
    from ablate.devices.matching import KernelMatch
    from ablate.runs.schema import KernelTimes

TABLE_COLUMNS = ("name", "model", "set", "latency_ms", "source", "params_m", "madds_m")
REQUIRED_COLUMNS = ("model", "latency_ms")


def count_variant(
    model: str, factors: dict[str, Any], batch: int = 1
) -> tuple[Architecture, CountResult]:
    """Resolve, build and count one variant (shapes only: nothing is timed)."""
    import torch

    from ablate.architecture.builder import build_module
    from ablate.counting import count_model
    from ablate.variants.resolve import resolve_architecture

    # Random weights otherwise drive activations into denormal slow paths; counts need shapes.
    torch.set_flush_denormal(True)
    architecture = resolve_architecture(model, factors)
    module = build_module(architecture)
    resolution = architecture.resolution
    return architecture, count_model(module, (batch, 3, resolution, resolution))


# Counts by (architecture, batch), for the process: a device matrix fits one profile per
# device's run, and every device ran the same architectures (128 of them count in ~40 s).
_COUNTED: dict[tuple[Any, int], CountResult] = {}
_COUNTED_AT_MOST = 1024


class _Counter:
    """Counts each distinct architecture once (once per process, up to `_COUNTED_AT_MOST`)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.cache: dict[Any, CountResult] = {}

    def observation(
        self,
        *,
        name: str,
        model: str,
        factors: dict[str, Any],
        latency_ms: float,
        source: str,
        kernels: KernelTimes | None = None,
        view: View = "fused",
        flags: tuple[str, ...] = (),
    ) -> Observation:
        from ablate.variants.resolve import resolve_architecture

        architecture = resolve_architecture(model, factors)
        if architecture not in self.cache:
            key = (architecture, self.batch)
            if key not in _COUNTED:
                if len(_COUNTED) >= _COUNTED_AT_MOST:
                    _COUNTED.clear()
                _COUNTED[key] = count_variant(model, factors, self.batch)[1]
            self.cache[architecture] = _COUNTED[key]
        records = self.cache[architecture].records
        match = None if kernels is None else _matched(kernels, records, view)
        return Observation(
            name=name,
            model=model,
            factors=factors,
            latency_ms=latency_ms,
            source=source,
            architecture_key=architecture,
            records=records,
            kernels=() if match is None else match.with_fused_records(),
            fused_by_runtime=() if match is None else match.fused_by_runtime(),
            profiled_ms=None if match is None else match.total_ms,
            kernel_match=None if match is None else match.summary(),
            flags=flags,
        )


def _matched(kernels: KernelTimes, records: Sequence[OpRecord], view: View) -> KernelMatch:
    """The run's kernel times of one network joined to its counting records."""
    from ablate.devices.matching import match_kernels
    from ablate.measurement.kernels import KernelEvent, stored_kernel_class

    events = [
        KernelEvent(
            name=entry.name,
            milliseconds=entry.milliseconds,
            delegated=entry.delegated,
            kind=stored_kernel_class(entry.kind, entry.name),
            record=entry.record,
        )
        for entry in kernels.events
    ]
    return match_kernels(events, records, view)


def parse_settings(text: str) -> dict[str, Any]:
    from ablate.spec.source import parse_set_options

    parts = [part.strip() for part in text.split(";") if part.strip()]
    return parse_set_options(parts, option="set")


def read_table_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data line of the table, columns checked."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read ({error.__class__.__name__})") from None
    numbered = [
        (number, line)
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise InputFileError(path, "no header line", choices=TABLE_COLUMNS)
    header_line, header_text = numbered[0]
    header = [column.strip() for column in next(csv.reader([header_text]))]
    for column in header:
        if column not in TABLE_COLUMNS:
            raise InputFileError(
                path, f"unknown column {column!r}", line=header_line, choices=TABLE_COLUMNS
            )
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise InputFileError(
                path, f"missing column {column!r}", line=header_line, choices=TABLE_COLUMNS
            )
    rows = []
    for number, text in numbered[1:]:
        values = next(csv.reader([text]))
        if len(values) != len(header):
            raise InputFileError(
                path,
                f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}",
                line=number,
            )
        rows.append(
            (number, {key: value.strip() for key, value in zip(header, values, strict=True)})
        )
    return rows


def _latency(path: Path, number: int, text: str) -> float:
    if not text:
        raise InputFileError(path, "missing latency", line=number, key_path="latency_ms")
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(
            path, f"latency {text!r} is not a number", line=number, key_path="latency_ms"
        ) from None
    problem = latency_problem(value)
    if problem is not None:
        raise InputFileError(path, f"{problem} (got {text})", line=number, key_path="latency_ms")
    return value


def table_observations(path: Path, batch: int = 1) -> list[Observation]:
    """Every row of a latency table, resolved and counted; bad input names file and line."""
    from ablate.variants.resolve import ARCHITECTURE_NAMES, resolve_architecture

    counter = _Counter(batch)
    observations = []
    for number, row in read_table_rows(path):
        model = row["model"]
        if model not in ARCHITECTURE_NAMES:
            raise InputFileError(
                path,
                f"unknown architecture {model!r}",
                line=number,
                key_path="model",
                choices=ARCHITECTURE_NAMES,
            )
        try:
            factors = parse_settings(row.get("set", ""))
            resolve_architecture(model, factors)
        except AblateError as error:
            raise InputFileError(path, str(error), line=number, key_path="set") from None
        latency = _latency(path, number, row["latency_ms"])
        label = row.get("set", "").replace(" ", "")
        observations.append(
            counter.observation(
                name=row.get("name") or (f"{model}[{label}]" if label else model),
                model=model,
                factors=factors,
                latency_ms=latency,
                source=row.get("source") or f"{path.name}:{number}",
            )
        )
    return observations


def run_gemm_tile(paths: Sequence[Path]) -> tuple[int, int] | None:
    """The GEMM tile every one of the runs' programs computed in: their backend's on the CPU
    the run's environment names (XNNPACK's f32 tile for ExecuTorch and LiteRT), for fp32
    runs; None where a run says otherwise, says too little, or the runs disagree."""
    from ablate.runs.schema import load_results

    tiles = {gemm_tile_of(load_results(path)) for path in paths}
    return tiles.pop() if len(tiles) == 1 else None


def gemm_tile_of(results: Any) -> tuple[int, int] | None:
    """A run's GEMM tile (`run_gemm_tile`): its backend's (`Backend.gemm_tile`) on the CPU
    its environment names, for an fp32 run."""
    from ablate.measurement.backends import BACKENDS

    measurement = results.measurement
    if measurement is None or measurement.precision != "fp32":
        return None
    if measurement.backend not in BACKENDS:
        return None
    tile_on = BACKENDS.get(measurement.backend).gemm_tile
    environment = results.environment or {}
    flags = environment.get("cpu_flags")
    machine = environment.get("machine")
    if tile_on is None or not isinstance(flags, list) or not isinstance(machine, str):
        return None
    return tile_on(machine, flags, str(environment.get("cpu_identity", "")))


def run_observations(paths: Sequence[Path]) -> tuple[list[Observation], View, int]:
    """The measured variants of runs (one row per distinct network), their view and batch."""
    from ablate.measurement.backends import backend_fuses
    from ablate.runs.schema import load_results

    observations: list[Observation] = []
    settings: set[tuple[View, int]] = set()
    counters: dict[int, _Counter] = {}
    for path in paths:
        results = load_results(path)
        if results.measurement is None:
            raise InputFileError(
                path,
                "the run has no measured latencies (status "
                f"{results.status!r}); fit from a run that measured",
                key_path="measurement",
            )
        if results.measurement.predicted_on is not None:
            raise InputFileError(
                path,
                f"the run's latencies are predictions on {results.measurement.predicted_on}, "
                "not measurements",
                key_path="measurement.predicted_on",
            )
        view: View = "fused" if backend_fuses(results.measurement.backend) else "unfused"
        batch = results.measurement.batch
        settings.add((view, batch))
        counter = counters.setdefault(batch, _Counter(batch))
        for index, variant in enumerate(results.variants):
            if variant.name != variant.measured_as or variant.latency is None:
                continue
            if variant.imported is not None:
                # Its counts come again from its base and factors, which an imported module
                # does not have; and importing it here would run its code unasked.
                raise InputFileError(
                    path,
                    f"an imported module ({variant.imported.path}): a device profile is fitted "
                    "from runs of ablate's own architectures",
                    key_path=f"variants[{index}].imported",
                )
            problem = latency_problem(variant.latency.median_ms)
            if problem is not None:
                raise InputFileError(
                    path,
                    f"{problem} (got {variant.latency.median_ms})",
                    key_path=f"variants[{index}].latency.median_ms",
                )
            observations.append(
                counter.observation(
                    name=variant.name,
                    model=variant.base,
                    factors=variant.factors,
                    latency_ms=variant.latency.median_ms,
                    source=f"{path}:{variant.name}",
                    kernels=variant.kernels,
                    view=view,
                    flags=tuple(flag.name for flag in variant.latency.flags),
                )
            )
    if len(settings) > 1:
        raise AblateError(
            "--from: the runs differ in backend view or batch "
            f"({', '.join(f'{v} batch {b}' for v, b in sorted(settings))}); fit one kind at a time"
        )
    view, batch = settings.pop()
    return observations, view, batch
