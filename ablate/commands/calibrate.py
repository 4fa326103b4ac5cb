"""`ablate calibrate`: options in, one library call (`calibrate_machine`), render.

Only typer and the standard library at import time: torch loads inside the command.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer


def calibrate_command(
    threads: Annotated[int, typer.Option(min=1, help="Threads to calibrate for.")] = 1,
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    force: Annotated[
        bool, typer.Option("--force", help="Measure again, ignoring the cache.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure peak fp32 FLOP/s and memory bandwidth once; `bench` then shows the roofline."""
    from rich.console import Console

    from ablate.measurement.calibrate import calibrate_machine
    from ablate.measurement.render import calibration_report

    outcome = calibrate_machine(threads=threads, device=device, force=force)
    if json_output:
        data = dataclasses.asdict(outcome.calibration)
        data.update(path=str(outcome.path), source=outcome.source)
        typer.echo(json.dumps(data, indent=2))
    else:
        Console().print(calibration_report(outcome))
