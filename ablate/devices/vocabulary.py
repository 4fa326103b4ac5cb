"""The device vocabulary: what a spec's `devices:` list and `ablate run --devices` may name.

A device is where a matrix's latencies come from:

- ``BACKEND`` or ``BACKEND/PRECISION``, a backend of `measurement.backends.BACKENDS` (the
  precision defaults to fp32, so ``executorch`` and ``executorch/fp32`` are one device):
  measured on this machine, or by another Python interpreter where the spec names one
  (``{device: litert, python: /path/to/python}``: LiteRT cannot share ExecuTorch's
  environment);
- a device profile (`ablate devices`): every latency predicted, nothing timed.

A backend's name wins over a user profile of the same name. In a spec a device may also name
a calibrated profile (``{device: executorch, profile: host-et}``) whose coefficients describe
it in the matrix report, instead of a profile fitted to its own run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ablate.errors import AblateError, format_key_path

if TYPE_CHECKING:
    from ablate.spec.model import ExperimentSpec

DEFAULT_PRECISION = "fp32"
PRECISION_SEPARATOR = "/"
# A device measured on a cluster node, BACKEND[/PRECISION]@NODE_DEVICE ("eager@eager-host-lab-7"),
# or on a phone, BACKEND[/PRECISION]@SERIAL: a phone's serial is its cluster device's name.
NODE_SEPARATOR = "@"


class DeviceNameError(AblateError):
    """A device (or the profile it names) the vocabulary does not have: ``key`` is the
    mapping key at fault (``device`` or ``profile``), ``choices`` the valid names."""

    def __init__(self, key: str, reason: str, value: str, choices: Sequence[str]):
        self.key = key
        self.reason = reason
        self.value = value
        self.choices = tuple(choices)
        valid = f"; valid: {', '.join(self.choices)}" if self.choices else ""
        super().__init__(f"{reason} (got {value!r}){valid}")


@dataclass(frozen=True)
class DeviceChoice:
    name: str  # canonical: "eager", "executorch/int8", "pixel1"
    kind: Literal["backend", "profile"]
    backend: str | None = None
    precision: str | None = None
    profile: str | None = None  # the profile that predicts a "profile" device
    python: str | None = None  # the interpreter that runs it, where not this one
    calibrated: str | None = None  # the profile whose coefficients describe it in a report
    node: str | None = None  # the cluster device that measures it (`ablate node`), if any
    # The adb serial of the phone that times it (`measurement.phone`): here through this
    # host's adb, or on a cluster through the node that advertises the phone.
    phone: str | None = None

    @property
    def slug(self) -> str:
        """Its directory name in a matrix directory."""
        return device_slug(self.name)


def device_slug(name: str) -> str:
    return name.replace(PRECISION_SEPARATOR, "-").replace(NODE_SEPARATOR, "-on-")


def backend_device_name(backend: str, precision: str) -> str:
    """The canonical name of a backend at a precision: the precision only where not fp32."""
    if precision == DEFAULT_PRECISION:
        return backend
    return f"{backend}{PRECISION_SEPARATOR}{precision}"


def device_names() -> list[str]:
    """Every name the vocabulary accepts here, backends first (each precision it offers
    beyond fp32 as BACKEND/PRECISION), then the device profiles."""
    from ablate.devices.profile import available_profiles
    from ablate.measurement.backends import BACKENDS

    names = [
        backend_device_name(backend.name, precision)
        for backend in BACKENDS.descriptors()
        for precision in backend.precisions
    ]
    return [*names, *(name for name in available_profiles() if name not in names)]


def parse_device(
    name: str,
    *,
    python: str | None = None,
    calibrated: str | None = None,
    node: str | None = None,
    phone: str | None = None,
) -> DeviceChoice:
    """The device ``name`` means; a `DeviceNameError` naming the valid choices if none."""
    from ablate.devices.profile import available_profiles
    from ablate.measurement.backends import BACKENDS, PRECISIONS

    profiles = available_profiles()
    if calibrated is not None and calibrated not in profiles:
        raise DeviceNameError("profile", "no such device profile", calibrated, list(profiles))
    backend, separator, precision = name.partition(PRECISION_SEPARATOR)
    if backend in BACKENDS:
        precision = precision if separator else DEFAULT_PRECISION
        offered = BACKENDS.get(backend).precisions
        if precision not in PRECISIONS:
            raise DeviceNameError("device", "unknown precision", name, PRECISIONS)
        if precision not in offered:
            choices = [backend_device_name(backend, p) for p in offered]
            raise DeviceNameError("device", f"{backend} has no {precision}", name, choices)
        if node is not None and python is not None:
            raise DeviceNameError(
                "node",
                "a cluster node runs its device in its own environment: give node or "
                "python, not both",
                node,
                (),
            )
        if phone is not None and (node is not None or python is not None):
            other = "node" if node is not None else "python"
            raise DeviceNameError(
                other,
                "a phone is driven by the node that has it (its serial names the cluster "
                "device): give phone alone",
                node if node is not None else python,
                (),
            )
        if phone is not None and BACKENDS.get(backend).program is None:
            choices = [b.name for b in BACKENDS.descriptors() if b.program is not None]
            raise DeviceNameError("device", "a phone runs a backend's program", name, choices)
        own = backend_device_name(backend, precision)
        at = node if phone is None else phone
        return DeviceChoice(
            own if at is None else f"{own}{NODE_SEPARATOR}{at}",
            "backend",
            backend=backend,
            precision=precision,
            python=python,
            calibrated=calibrated,
            node=node,
            phone=phone,
        )
    if name in profiles:
        for key, value in (("python", python), ("node", node), ("phone", phone)):
            if value is not None:
                raise DeviceNameError(
                    key, "a profile predicts in this process: only a backend names one", name, ()
                )
        return DeviceChoice(name, "profile", profile=name, calibrated=calibrated)
    raise DeviceNameError("device", "unknown device", name, device_names())


def parse_device_list(text: str) -> list[DeviceChoice]:
    """``--devices a,b,c``: each name parsed, no device twice; errors name the option."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise AblateError(f"--devices {text!r}: an empty name; give NAME,NAME,...")
    chosen = []
    for name in names:
        try:
            chosen.append(parse_device(name))
        except DeviceNameError as error:
            raise AblateError(f"--devices: {error}") from None
    repeated = first_repeat(chosen)
    if repeated is not None:
        later, earlier = repeated
        raise AblateError(
            f"--devices: {names[later]!r} is the same device as {names[earlier]!r}; "
            "give each device once"
        )
    return chosen


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def first_repeat(devices: Sequence[_Named]) -> tuple[int, int] | None:
    """(index, earlier index) of the first device given twice: a matrix keys its runs by
    device, and two runs of one device would be pooled by whoever read them."""
    seen: dict[str, int] = {}
    for index, device in enumerate(devices):
        if device.name in seen:
            return index, seen[device.name]
        seen[device.name] = index
    return None


def spec_devices(spec: ExperimentSpec) -> tuple[DeviceChoice, ...] | None:
    """The spec's `devices:` (None if it has none), each device once; a name the vocabulary
    lacks is one line naming the spec file, its line, the key path and the valid choices."""
    from ablate.spec.source import SpecSource, parse_yaml

    if spec.devices is None:
        return None
    chosen = []
    for entry in spec.devices:
        try:
            chosen.append(
                parse_device(
                    entry.device,
                    python=entry.python,
                    calibrated=entry.profile,
                    node=entry.node,
                    phone=entry.phone,
                )
            )
        except DeviceNameError as error:
            source = SpecSource(spec.source_label, parse_yaml(spec.source_text, spec.source_label))
            path = (*entry.path, error.key) if entry.mapping else entry.path
            value = {
                "device": entry.device,
                "python": entry.python,
                "profile": entry.profile,
                "node": entry.node,
                "phone": entry.phone,
            }
            raise source.bad_value(path, error.reason, value[error.key], error.choices) from None
    repeated = first_repeat(chosen)
    if repeated is not None:
        later, earlier = (spec.devices[index] for index in repeated)
        source = SpecSource(spec.source_label, parse_yaml(spec.source_text, spec.source_label))
        raise source.bad_value(
            later.path, f"the same device as {format_key_path(earlier.path)}", later.device
        )
    return tuple(chosen)


def check_device_available(device: DeviceChoice) -> None:
    """Raises, in one line, if ``device`` cannot run: its backend missing here (naming the
    extra to install), or the interpreter it names missing. Cheap: nothing is imported from
    the other interpreter, whose backend its own run checks."""
    import os
    from pathlib import Path

    from ablate.measurement.backends import check_backend_available

    if device.kind != "backend" or device.node is not None:
        return  # a cluster node's device: the node advertises it, and its run checks it there
    assert device.backend is not None and device.precision is not None
    if device.python is None:
        try:
            check_backend_available(device.backend, device.precision)
        except AblateError as error:
            raise AblateError(f"device {device.name}: {error}") from None
        return
    interpreter = Path(device.python)
    if not interpreter.is_file() or not os.access(interpreter, os.X_OK):
        raise AblateError(
            f"device {device.name}: python {device.python}: no such executable file "
            "(name the interpreter of the environment that has its backend)"
        )
