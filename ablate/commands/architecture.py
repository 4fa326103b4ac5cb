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

AllowImportOption = Annotated[
    bool,
    typer.Option(
        "--allow-import",
        help="Import the Python module a spec's model: (or MODEL given as package.module:"
        "factory) names and run its code; without it such a spec or model is refused.",
    ),
]
ArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        metavar="KEY=VALUE",
        help="A keyword argument of an imported MODEL's factory, VALUE read as YAML "
        "(width=16). Repeatable.",
    ),
]
ResolutionOption = Annotated[
    int | None,
    typer.Option(
        "--resolution",
        min=1,
        help="Input size of an imported MODEL (default 224); a built-in takes --set resolution=N.",
        show_default=False,
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


ModelArgument = Annotated[
    str,
    typer.Argument(
        help="A built-in architecture (see `ablate models`), or a module's factory as "
        "package.module:factory (with --allow-import)."
    ),
]


def inspect_command(
    model: ModelArgument,
    set_options: SetOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    crosscheck: Annotated[
        bool, typer.Option("--crosscheck", help="fvcore's and ptflops' totals beside ours.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the counted input.")] = 1,
    allow_import: AllowImportOption = False,
    arg_options: ArgOption = None,
    resolution: ResolutionOption = None,
) -> None:
    """Per-block table (paper Table 1 style): parameters, MACs, FLOPs, bytes, intensity."""
    from ablate.report.console import print_inspection
    from ablate.services.inspect import inspect_model, model_choice
    from ablate.spec.source import parse_set_options

    choice = model_choice(
        model,
        factors=parse_set_options(set_options or []),
        args=parse_set_options(arg_options or [], option="--arg"),
        resolution=resolution,
        allow_import=allow_import,
    )
    inspection = inspect_model(choice, batch=batch, crosscheck=crosscheck)
    if json_output:
        typer.echo(json.dumps(inspection.to_json(), indent=2))
    else:
        print_inspection(inspection)
