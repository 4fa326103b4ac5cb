"""`ablate validate SPEC`: load and check an experiment spec without building or timing.

Only typer and the standard library at import time: the spec package loads inside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def validate_command(
    spec: Annotated[
        Path, typer.Argument(help="An experiment spec (YAML), e.g. experiments/hswish.yaml.")
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the resolved spec (defaults filled in).")
    ] = False,
) -> None:
    """Check a spec: keys, types, values, every variant's architecture. Nothing is run."""
    from ablate.spec import load_spec
    from ablate.spec.summary import summary_line, variant_lines

    experiment = load_spec(spec)
    if json_output:
        typer.echo(json.dumps(experiment.to_json(), indent=2))
        return
    typer.echo(summary_line(experiment))
    for line in variant_lines(experiment):
        typer.echo(line)
