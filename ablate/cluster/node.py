"""What this host can measure, as a Ray node advertises it, and the `ray start` line to join.

A node advertises each device it can measure as a custom resource of one unit,
``ablate-device:NAME``: a backend installed here as ``BACKEND-host-HOSTNAME`` (its programs
timed on this host's CPU), and every phone that `adb devices` lists in the ``device`` state by
its serial. One unit each, so that a device runs one measurement at a time however many
tasks ask for it. Nothing here imports Ray: the line is for `ray start`, Ray's own CLI.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ablate.cluster.connection import DEVICE_RESOURCE_PREFIX
from ablate.errors import AblateError

ADB_ENVIRONMENT_VARIABLE = "ADB"  # the adb to ask, as measure.sh takes it
ADB_TIMEOUT_S = 20.0
DEFAULT_HEAD_PORT = 6379  # Ray's own default


@dataclass(frozen=True)
class NodeDevices:
    hostname: str
    backends: tuple[str, ...]  # installed here, each measurable on this host's CPU
    phones: tuple[str, ...]  # adb serials in the `device` state
    adb_note: str | None  # why no phone was asked for, where none was

    def device_names(self) -> list[str]:
        return [f"{backend}-host-{self.hostname}" for backend in self.backends] + list(self.phones)

    def resources(self) -> dict[str, int]:
        return {f"{DEVICE_RESOURCE_PREFIX}{name}": 1 for name in self.device_names()}

    def phone_note(self) -> str | None:
        """What a phone here lacks to be measured live (`measurement.phone`): the benchmark
        binary, which the node's environment names; None where nothing is missing."""
        from ablate.measurement.phone import BINARY_VARIABLE

        if not self.phones or os.environ.get(BINARY_VARIABLE):
            return None
        return (
            f"set {BINARY_VARIABLE} to the runtime's benchmark binary before --start: a run on "
            "these phones takes it from the node's environment"
        )


def parse_adb_devices(output: str) -> list[str]:
    """The serials of `adb devices` output that are ready (``device``), in its order; those
    offline or unauthorized cannot measure."""
    serials = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "device" and not line.startswith("List of devices"):
            serials.append(parts[0])
    return serials


def attached_phones(adb: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """(serials, note): the phones `adb devices` lists as ready; the note says why none were
    asked for (no adb) or what adb said when it failed."""
    command = adb or os.environ.get(ADB_ENVIRONMENT_VARIABLE) or shutil.which("adb")
    if command is None:
        return (), "no adb on PATH (set ADB=/path/to/adb to list phones)"
    try:
        done = subprocess.run(
            [command, "devices"], capture_output=True, text=True, timeout=ADB_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return (), f"{command} devices failed ({error})"
    if done.returncode != 0:
        return (), f"{command} devices exited with status {done.returncode}"
    return tuple(parse_adb_devices(done.stdout)), None


def discover(adb: str | None = None) -> NodeDevices:
    """The backends installed here and the phones attached."""
    from ablate.measurement.backends import BACKENDS

    backends = []
    for backend in BACKENDS.descriptors():
        try:
            backend.check_available("fp32")
        except AblateError:
            continue
        backends.append(backend.name)
    phones, note = attached_phones(adb)
    return NodeDevices(socket.gethostname(), tuple(backends), phones, note)


def ray_start_command(
    devices: NodeDevices, *, address: str | None, cpus: int | None = None
) -> list[str]:
    """`ray start` for this host: a worker joining the head at ``address``, or (None) the
    head itself; its devices as custom resources."""
    command = ["ray", "start"]
    if address is None:
        command += ["--head", f"--port={DEFAULT_HEAD_PORT}"]
    else:
        command.append(f"--address={address}")
    if cpus is not None:
        command.append(f"--num-cpus={cpus}")
    resources = devices.resources()
    if resources:
        command.append(f"--resources={json.dumps(resources, sort_keys=True)}")
    return command


def command_line(command: Sequence[str]) -> str:
    return shlex.join(command)
