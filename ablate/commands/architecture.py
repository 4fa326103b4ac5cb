"""`ablate models`, `ablate factors`, `ablate inspect`: options in, one library call, render.

Only typer and the standard library at import time: torch loads inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="FACTOR=VALUE",
        help="Factor setting, VALUE read as YAML (kernel=5, se=off, kernel=[3,5,...]). Repeatable.",
    ),
]


def models_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", metavar="SPEC", help="Also list the architectures: section of this spec."
        ),
    ] = None,
) -> None:
    """List the built-in architectures with their parameters and block counts."""
    from ablate.report.console import print_models
    from ablate.services.inspect import list_models

    rows = list_models(spec)
    if json_output:
        typer.echo(json.dumps([row.to_json() for row in rows], indent=2))
    else:
        print_models(rows)


def factors_command() -> None:
    """List the factors that `--set` and experiment specs accept."""
    from ablate.report.console import print_factors
    from ablate.variants.factors import FACTORS

    print_factors(list(FACTORS.values()))


def inspect_command(
    model: Annotated[str, typer.Argument(help="A built-in architecture (see `ablate models`).")],
    set_options: SetOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    crosscheck: Annotated[
        bool, typer.Option("--crosscheck", help="fvcore's and ptflops' totals beside ours.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the counted input.")] = 1,
) -> None:
    """Per-block table (paper Table 1 style): parameters, MACs, FLOPs, bytes, intensity."""
    from ablate.report.console import print_inspection
    from ablate.services.inspect import inspect_model
    from ablate.spec.source import parse_set_options

    inspection = inspect_model(
        model=model,
        factors=parse_set_options(set_options or []),
        batch=batch,
        crosscheck=crosscheck,
    )
    if json_output:
        typer.echo(json.dumps(inspection.to_json(), indent=2))
    else:
        print_inspection(inspection)
