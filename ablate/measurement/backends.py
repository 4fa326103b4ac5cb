"""Backends: one descriptor each, in one registry, and the backends that run in PyTorch's process.

A backend's `Backend` descriptor holds everything the rest of ablate asks about it: its name,
whether it fuses, its precisions, the modules it imports and the extra that installs them,
the program file `ablate export` writes for it and the phone binary that times that file,
its per-op profiler and its delegate. `host_backends` registers eager PyTorch, TorchScript,
ONNX Runtime and torch.compile; every module of `ablate.measurement.runtimes` registers one
mobile runtime. The registry imports them the first time it is asked, so a new runtime is
one new file there.

A backend's factory turns a model and an example input into a runnable: a zero-argument
callable running one forward pass and returning its output (a tensor, or ONNX Runtime's list
of arrays: see `output_array`). All preparation (tracing, export, compilation, the first
call) happens in the factory, never inside a timed block.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ablate.errors import BackendUnavailableError, MissingDependencyError
from ablate.measurement.clock import Runnable
from ablate.measurement.setup import MeasurementSetup
from ablate.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

    from ablate.measurement.export_cache import DelegationReport
    from ablate.measurement.kernels import GemmTile, KernelEvent, KernelTimer

# fp32, or int8: static post-training quantization, on the backends whose descriptor lists it.
PRECISIONS = ("fp32", "int8")
# The module that registers the host's backends, and the package whose every module registers
# a mobile runtime (see `Backends`).
HOST_BACKENDS = "ablate.measurement.host_backends"
RUNTIMES_PACKAGE = "ablate.measurement.runtimes"


class BackendFactory(Protocol):
    def __call__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        threads: int,
        device: str,
        precision: str = "fp32",
    ) -> Runnable: ...


# (module, example input, precision) -> the program's bytes, and which of its ops the
# runtime's delegate runs (None for a runtime without one).
Exporter = Callable[[Any, Any, str], "tuple[bytes, DelegationReport | None]"]
# A per-op profile file the phone binary wrote -> its kernel events in execution order, and
# the runs each time summarises (None where the file does not say); one line naming the file
# (InputFileError) for a file that does not parse.
ProfileReader = Callable[["Path"], "tuple[list[KernelEvent], int | None]"]


@dataclass(frozen=True)
class OpTime:
    """One op kind's time in a forward pass: the median over runs, summed over its instances."""

    name: str  # the runtime's own kernel name ("Convolution (NHWC, F32) IGEMM"), or its op's
    milliseconds: float
    instances: int  # how many of these run per forward pass
    delegated: bool  # inside the runtime's delegate


class OpTimer(Protocol):
    def __call__(
        self, program: bytes, example_input: torch.Tensor, *, runs: int, threads: int
    ) -> list[OpTime]: ...


@dataclass(frozen=True)
class Profiler:
    """What times each op of a backend's program from Python."""

    name: str  # as results record it, e.g. "ETDump"
    op_times: OpTimer


@dataclass(frozen=True)
class ProgramFile:
    """The file `ablate export` writes for a backend, and the phone binary that times it."""

    suffix: str  # ".pte"
    export: Exporter
    binary: str  # which benchmark binary, and where it comes from: shown when none is set
    # The binary's flags, as measure.sh passes them: it fills in {model} and {runs}.
    arguments: str
    # The flags added to `arguments` with which the binary writes a per-op profile to
    # {profile} (measure.sh's profile pass, when the spec asks for kernel times), and the
    # file's suffix; None: the binary writes none.
    profile_arguments: str | None = None
    profile_suffix: str = ""
    profile_reader: ProfileReader | None = None  # reads that file back


@dataclass(frozen=True)
class Backend:
    """A way to run a model, and what the rest of ablate needs to know about it."""

    name: str
    factory: BackendFactory
    # Runs conv + BN + activation as one kernel, so its memory traffic is the fused view.
    fuses: bool
    precisions: tuple[str, ...] = ("fp32",)
    # Python modules it imports, their distributions (whose versions results record) and the
    # optional dependency group (pip extra) that installs them.
    modules: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()
    extra: str | None = None
    # Check `modules` by importing them, so that a broken install counts as missing; False
    # where that takes seconds (litert_torch): then finding them is the check.
    check_by_import: bool = True
    program: ProgramFile | None = None  # None: `ablate export` cannot write one
    # A mobile runtime: it runs `program` itself, loaded in the runtime's Python API, so the
    # program is exported ahead (in worker processes), cached, and recorded with each result.
    mobile: bool = False
    profiler: Profiler | None = None
    # Times each kernel in execution order (`measurement.kernels`); None: whole networks only.
    kernel_timer: KernelTimer | None = None
    # The delegate its programs run in, when the program cannot say (see DelegationReport).
    delegate: str | None = None
    # The output tile its fp32 GEMMs (pointwise convs) compute in on a CPU, from the CPU's
    # machine, ISA flags and identity as a run's environment records them; None where the
    # runtime's tiles are not known (the device fit then chooses among all of them).
    gemm_tile: GemmTile | None = None

    def __post_init__(self) -> None:
        if self.mobile and self.program is None:
            raise ValueError(f"mobile backend {self.name!r} has no program to run")
        if not set(self.precisions) <= set(PRECISIONS):
            raise ValueError(f"backend {self.name!r}: precisions must be among {PRECISIONS}")

    def check_available(self, precision: str = "fp32") -> None:
        """Raises, in one line, if this backend cannot run `precision` here: a missing module
        names the extra to install."""
        if precision not in PRECISIONS:
            raise BackendUnavailableError(
                f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
            )
        if precision not in self.precisions:
            raise BackendUnavailableError(f"backend {self.name!r} has no {precision} yet")
        found = module_importable if self.check_by_import else module_available
        for module in self.modules:
            if not found(module):
                raise MissingDependencyError(f"backend {self.name!r}", module, self.extra or "")


def module_available(module: str) -> bool:
    """Whether `module` is installed, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def module_importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


class Backends(Registry[Backend]):
    """The backend registry. The first question to it imports the host's backends
    (`HOST_BACKENDS`), then every module of the runtimes package (`RUNTIMES_PACKAGE`), each of
    which registers its runtime: adding one is adding a file. Those modules import their
    frameworks only inside functions, so this stays light enough for `ablate --help`."""

    def __init__(self) -> None:
        super().__init__("backend")
        self._discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(RUNTIMES_PACKAGE)
        runtimes = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
        modules = [HOST_BACKENDS, *(f"{RUNTIMES_PACKAGE}.{name}" for name in runtimes)]
        for module in modules:
            importlib.import_module(module)
        # Listed in that order whichever module a caller imported first; within a module, as
        # it registers them.
        rank = {module: position for position, module in enumerate(modules)}
        self._entries = dict(
            sorted(
                self._entries.items(),
                key=lambda entry: rank.get(entry[1].factory.__module__, len(rank)),
            )
        )

    def get(self, name: str) -> Backend:
        self._discover()
        return super().get(name)

    def names(self) -> list[str]:
        self._discover()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._discover()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return super().__iter__()

    def __len__(self) -> int:
        self._discover()
        return super().__len__()

    def descriptors(self) -> list[Backend]:
        return [self.get(name) for name in self.names()]


BACKENDS = Backends()


def register(descriptor: Backend) -> Backend:
    """Adds `descriptor` to the registry (a runtime module calls this once, at import)."""
    BACKENDS.add(descriptor.name, descriptor)
    return descriptor


def backend(name: str, *, fuses: bool, **fields: Any) -> Callable[[BackendFactory], BackendFactory]:
    """Registers the decorated factory as backend `name`, with the descriptor's other fields."""

    def decorator(factory: BackendFactory) -> BackendFactory:
        register(Backend(name, factory, fuses, **fields))
        return factory

    return decorator


def backend_fuses(name: str) -> bool:
    """Whether backend `name` fuses; a name this version does not know counts as unfused."""
    return name in BACKENDS and BACKENDS.get(name).fuses


def check_backend_available(name: str, precision: str = "fp32") -> None:
    """Raises, in one line, if backend `name` cannot run here at `precision`; cheap.

    For the CLI to call before any run directory is made: an unknown name raises
    UnknownNameError (with the valid names), a missing package MissingDependencyError (with
    the extra to install), an unsupported precision BackendUnavailableError.
    """
    chosen = BACKENDS.get(name)
    if chosen.precisions == ("fp32",) and precision != "fp32" and precision in PRECISIONS:
        raise BackendUnavailableError(
            f"backend {name!r} measures fp32 only; precision {precision!r} needs one of: "
            f"{', '.join(backends_offering(precision))}"
        )
    chosen.check_available(precision)


def backends_offering(precision: str) -> list[str]:
    """The names of the backends that measure `precision`."""
    return [backend.name for backend in BACKENDS.descriptors() if precision in backend.precisions]


def exportable_backends() -> list[Backend]:
    """The backends `ablate export` writes a program file for."""
    return [backend for backend in BACKENDS.descriptors() if backend.program is not None]


def recorded_distributions() -> tuple[str, ...]:
    """Every backend's distributions, once each in registration order: what a run records."""
    names = (name for descriptor in BACKENDS.descriptors() for name in descriptor.distributions)
    return tuple(dict.fromkeys(names))


def prepare_runnable(
    model: nn.Module, example_input: torch.Tensor, setup: MeasurementSetup
) -> Runnable:
    """Eval mode, device and memory layout from `setup`, then the backend's factory.

    `example_input` must already be on the device and in the layout (see `example_input`).
    """
    import torch

    chosen = BACKENDS.get(setup.backend)  # an unknown name fails before any work
    chosen.check_available(setup.precision)
    model = model.eval().to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return chosen.factory(
        model, example_input, threads=setup.threads, device=setup.device, precision=setup.precision
    )


def output_array(output: Any) -> np.ndarray:
    """A runnable's first output as a numpy array, whatever the backend returned."""
    import numpy as np

    if isinstance(output, list | tuple):
        output = output[0]
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    return np.asarray(output)
