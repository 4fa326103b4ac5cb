"""A run's results model, built in one place for a local run and for an ingested bundle.

A run starts from its spec and its environment record; counting adds the variants' counts,
measuring the latency of every timed unit. A unit stands for every variant that resolves to
its architecture, and each of them takes that unit's latency (`Variant.measured_as`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ablate import __version__
from ablate.runs.entries import latency_entry
from ablate.runs.schema import Measurement, Results, RuntimeRecord, Status, Variant

if TYPE_CHECKING:
    from ablate.measurement.results import VariantResult
    from ablate.spec.model import ExperimentSpec


def new_results(
    spec: ExperimentSpec,
    environment: Mapping[str, Any],
    *,
    status: Status = "counting",
    variants: Sequence[Variant] = (),
    latencies: Iterable[VariantResult] = (),
    runtimes: Mapping[str, RuntimeRecord] | None = None,
    measurement: Measurement | None = None,
) -> Results:
    """The results of a run of `spec`, created now: the counted `variants` (none yet when the
    run starts), each with its unit's latency when `latencies` (one per unit, by unit name)
    are given, and the programs' `runtimes` for the backends that export one."""
    latencies = list(latencies)
    if latencies:
        variants = with_latencies(variants, latencies, runtimes or {})
    return Results(
        status=status,
        ablate_version=__version__,
        experiment=spec.name,
        description=spec.description,
        quick=spec.measure.quick,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        spec=spec.to_json(),
        environment=dict(environment),
        baseline=spec.baseline,
        measurement=measurement,
        variants=list(variants),
        attribution_reference=None if spec.attribution is None else spec.attribution.reference,
    )


def with_latencies(
    variants: Sequence[Variant],
    latencies: Iterable[VariantResult],
    runtimes: Mapping[str, RuntimeRecord],
) -> list[Variant]:
    """`variants`, each with the latency of the unit it was timed as and that unit's runtime
    record (None where the backend exported no program). Every unit must have a latency."""
    entries = {result.name: latency_entry(result) for result in latencies}
    missing = sorted({v.measured_as for v in variants} - set(entries))
    if missing:
        raise ValueError(f"no latency for the timed units {', '.join(missing)}")
    return [
        variant.model_copy(
            update={
                "latency": entries[variant.measured_as],
                "runtime": runtimes.get(variant.measured_as),
            }
        )
        for variant in variants
    ]
