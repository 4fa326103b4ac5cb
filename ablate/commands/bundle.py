"""`ablate export` and `ablate ingest`: time a spec's networks on a phone, read them back as a run.

Only typer, the standard library and the backend registry (its descriptors, which import
nothing heavy) at import time: the exporters load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ablate.commands.devices import ClusterOption
from ablate.measurement.backends import PRECISIONS, backends_offering, exportable_backends

# "onnxruntime (.onnx) | executorch (.pte) | ...": what each backend's program file is.
_PROGRAM_FILES = " | ".join(
    f"{runtime.name} ({runtime.program.suffix})"
    for runtime in exportable_backends()
    if runtime.program is not None
)


def export_command(
    spec: Annotated[Path, typer.Argument(help="Experiment spec (YAML).")],
    backend: Annotated[
        str,
        typer.Option(help=f"Runtime of the phone: {_PROGRAM_FILES}."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The bundle directory to write (new or empty).")
    ],
    precision: Annotated[
        str,
        typer.Option(
            help=f"{' | '.join(PRECISIONS)} (int8 on {', '.join(backends_offering('int8'))})."
        ),
    ] = "fp32",
    cluster: ClusterOption = None,
) -> None:
    """Export every distinct network of SPEC once, with a manifest and the driver measure.sh."""
    from ablate.services.bundle_export import export_bundle
    from ablate.services.bundle_format import DRIVER_NAME

    manifest = export_bundle(spec, output, backend=backend, precision=precision, cluster=cluster)
    typer.echo(f"wrote {manifest.parent}; measure with: sh {manifest.parent / DRIVER_NAME}")


def ingest_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory `ablate export` wrote.")],
    timings: Annotated[Path, typer.Argument(help="The timings.csv measure.sh wrote.")],
    device_name: Annotated[
        str | None,
        typer.Option(help="What to call the device in reports (default: its model name)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory of run directories.")] = Path(
        "runs"
    ),
) -> None:
    """Turn a bundle's timings into a run directory (results, journal, attribution)."""
    from ablate.services.ingest import ingest

    directory = ingest(
        bundle,
        timings,
        device_name=device_name,
        out_dir=out,
        note=lambda text: typer.echo(f"note: {text}", err=True),
    )
    typer.echo(str(directory))
