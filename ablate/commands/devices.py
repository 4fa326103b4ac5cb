"""`ablate fit-device`, `calibrate`, `devices`, `predict`: options in, one library call, render.

Only typer and the standard library at import time: torch loads inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ablate.commands.architecture import SetOption
from ablate.devices import PRIOR_CHOICES
from ablate.measurement.backends import BACKENDS, PRECISIONS

if TYPE_CHECKING:
    from ablate.devices.profile import Profile

PriorOption = Annotated[
    str,
    typer.Option(
        "--prior",
        help=f"{' | '.join(PRIOR_CHOICES)}: the profile's stated priors stand in for the rates "
        "its rows left unresolved (e.g. dense convs at the pointwise rate), or none: its raw "
        "fit.",
    ),
]
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="ADDRESS",
        help="Export the mobile programs on this Ray cluster (auto: RAY_ADDRESS, else the one "
        "started on this host); needs the [cluster] extra. Default: this machine's cores.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", help="A device profile: a name from `ablate devices`, or a .json path."
    ),
]


def fit_device_command(
    name: Annotated[str, typer.Argument(help="The profile's name (its file name).")],
    runs: Annotated[
        list[Path] | None,
        typer.Option("--from", help="A measured run directory or results.json. Repeatable."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            "--from-table", help="CSV of variants and latencies (model, set, latency_ms, ...)."
        ),
    ] = None,
    form: Annotated[
        str | None,
        typer.Option(help="Fit this cost model instead of choosing by cross-validation."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write here instead of the user profile directory.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the profile.")] = False,
    like: Annotated[
        str | None,
        typer.Option(
            metavar="PROFILE",
            help="Take PROFILE's kernel costs and fit one scale to these latencies: for a "
            "runtime that times no kernel but runs PROFILE's kernel library on this machine "
            "(LiteRT like ExecuTorch: both XNNPACK).",
        ),
    ] = None,
) -> None:
    """Fit a device's per-op costs from measured latencies; write the profile."""
    from rich.console import Console

    from ablate.devices.api import fit_device
    from ablate.report.devices import candidates_table, profile_table, support_table

    profile, path = fit_device(name, runs=runs or (), table=table, form=form, out=out, like=like)
    _warn_if_unsteady(profile)
    if json_output:
        typer.echo(json.dumps(profile.to_json(), indent=2, allow_nan=False))
        return
    console = Console()
    console.print(profile_table(profile))
    console.print(support_table(profile))
    console.print(candidates_table(profile))
    console.print(f"wrote {path}")


def _warn_if_unsteady(profile: Profile) -> None:
    note = profile.unsteady()
    if note is not None:
        typer.echo(f"warning: {note}", err=True)


def calibrate_command(
    backend: Annotated[
        str, typer.Option(help=f"The backend to calibrate: {' | '.join(BACKENDS.names())}.")
    ],
    name: Annotated[str, typer.Option(help="The profile's name (its file name).")],
    precision: Annotated[
        str, typer.Option(help=f"{' | '.join(PRECISIONS)} (int8 on the mobile backends).")
    ] = "fp32",
    out: Annotated[Path, typer.Option("--out", help="Directory of run directories.")] = Path(
        "runs"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run: seconds per variant, a rough profile.")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR",
            help="Continue this calibration run (or fit it again, once complete).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Go ahead even when the estimate says the run exceeds this machine's memory or "
            "its minimum rounds exceed twice the budget.",
        ),
    ] = False,
    like: Annotated[
        str | None,
        typer.Option(
            metavar="PROFILE",
            help="Fit one scale on PROFILE's kernel costs instead of a cost model of its own "
            "(a backend without kernel times that runs PROFILE's kernels: litert like an "
            "executorch profile of this host).",
        ),
    ] = None,
) -> None:
    """Profile this host: run the calibration spec with every kernel timed, fit, write NAME."""
    from rich.console import Console

    from ablate.report.devices import profile_table, support_table
    from ablate.report.progress import run_progress
    from ablate.services.calibration import calibrate_device

    calibration = calibrate_device(
        backend=backend,
        name=name,
        precision=precision,
        out_dir=out,
        quick=quick,
        resume=resume,
        force=force,
        progress=run_progress(),
        like=like,
    )
    _warn_if_unsteady(calibration.profile)
    console = Console()
    console.print(profile_table(calibration.profile))
    console.print(support_table(calibration.profile))
    console.print(calibration.profile.summary(), highlight=False, markup=False)
    typer.echo(f"wrote {calibration.profile_path}")
    typer.echo(f"run: {calibration.run_directory}")


def devices_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the device profiles (shipped and yours) with their fit quality; name broken ones."""
    from rich.console import Console

    from ablate.devices.api import list_devices
    from ablate.errors import AblateError
    from ablate.report.devices import devices_table, support_table

    listing = list_devices()
    if json_output:
        profiles = [profile.to_json() for profile in listing.profiles]
        typer.echo(json.dumps(profiles, indent=2, allow_nan=False))
    else:
        console = Console()
        console.print(devices_table(listing.profiles))
        for profile in listing.profiles:
            console.print(support_table(profile.profile))
    # The readable ones are listed; each broken one is one line, and the exit code says so.
    for error in listing.unreadable:
        typer.echo(f"error: {error}", err=True)
    if listing.unreadable:
        raise typer.Exit(AblateError.exit_code)


def predict_command(
    model: Annotated[str, typer.Argument(help="A built-in architecture (see `ablate models`).")],
    device: DeviceOption,
    set_options: SetOption = None,
    prior: PriorOption = "stated",
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Predicted latency on a device, with a prediction interval and the per-block breakdown."""
    from rich.console import Console

    from ablate.devices.api import predict_variant
    from ablate.report.devices import prediction_notes, prediction_table
    from ablate.spec.source import parse_set_options

    factors = parse_set_options(set_options or [])
    prediction = predict_variant(model, factors, device, prior)
    if json_output:
        typer.echo(
            json.dumps(
                {"model": model, "factors": factors, "prior": prior, **prediction.to_json()},
                indent=2,
                allow_nan=False,
            )
        )
        return
    settings = ", ".join(f"{key}={value}" for key, value in factors.items())
    title = f"{model} ({settings})" if settings else model
    console = Console()
    console.print(prediction_table(title, prediction))
    for line in prediction_notes(prediction, raw=prior == "none"):
        console.print(line, highlight=False, markup=False)
