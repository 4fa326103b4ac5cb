"""`ablate node`: what this host can measure, and the `ray start` line that joins it to a
cluster with those devices as resources. Options in, one library call, render."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ablate.errors import AblateError


def node_command(
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="HEAD:PORT",
            help="The head to join (default: start this host as the head).",
            show_default=False,
        ),
    ] = None,
    cpus: Annotated[
        int | None,
        typer.Option(
            "--cpus", min=0, help="CPUs the node offers for exports (default: Ray counts them)."
        ),
    ] = None,
    start: Annotated[
        bool, typer.Option("--start", help="Run the line instead of printing it.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Discover this host's backends and `adb devices`; print (or --start) its `ray start`."""
    import shutil
    import subprocess

    from ablate.cluster.node import command_line, discover, ray_start_command

    devices = discover()
    command = ray_start_command(devices, address=address, cpus=cpus)
    if json_output:
        payload = {
            "hostname": devices.hostname,
            "devices": devices.device_names(),
            "resources": devices.resources(),
            "adb": devices.adb_note,
            "phones": devices.phone_note(),
            "command": command,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(f"# {devices.hostname}: " + (", ".join(devices.device_names()) or "no devices"))
        for note in (devices.adb_note, devices.phone_note()):
            if note:
                typer.echo(f"# phones: {note}")
        typer.echo(command_line(command))
    if start:
        if shutil.which("ray") is None:
            raise AblateError("--start needs ray's CLI: pip install -e '.[cluster]'")
        raise typer.Exit(subprocess.run(command).returncode)
