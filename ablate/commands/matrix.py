"""`ablate matrix`: a device matrix assembled from existing runs of one spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ablate.errors import AblateError


def matrix_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Complete runs of one spec, each on another device (a backend, a profile's "
            "predictions, an ingested phone run): run directories or their results.json.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the matrix directory is made.")] = Path(
        "runs"
    ),
    calibrated: Annotated[
        list[str] | None,
        typer.Option(
            "--calibrated",
            help="DEVICE=PROFILE: the device's calibrated profile (`ablate calibrate`), whose "
            "kernel costs are its properties in the report (default: a profile fitted to its "
            "run). Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Tie existing runs of one spec into a matrix: DIR/<timestamp>-<name>-matrix/matrix.json
    names each run by its path (nothing is copied or measured); `ablate report` reads it."""
    from ablate.services.matrix import assemble_matrix

    pairs = {}
    for entry in calibrated or []:
        device, separator, profile = entry.partition("=")
        if not separator or not device or not profile:
            raise AblateError(
                f"--calibrated {entry!r}: expected DEVICE=PROFILE, e.g. eager=host-eager"
            )
        pairs[device] = profile
    directory, matrix = assemble_matrix(runs, out_dir=out, calibrated=pairs)
    for entry in matrix.devices:
        typer.echo(f"{entry.name}: {entry.run}")
    typer.echo(str(directory))
