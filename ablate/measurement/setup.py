"""How a model is run for timing (backend, device, threads, batch, layout), and the process
settings that must hold while it is timed."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.errors import BackendUnavailableError, MeasurementError
from ablate.measurement.results import Environment

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda")
# Two builds of one model differ by up to ~1% from where their weights land in memory; the
# rounds cycle through separately built copies so that this widens the interval instead of
# biasing it.
INSTANCES = 3


@dataclass(frozen=True)
class MeasurementSetup:
    backend: str = "eager"
    precision: str = "fp32"  # int8 on the mobile backends (see measurement.programs)
    device: str = "cpu"
    # One thread by default: multi-threaded timings on a shared machine measure the neighbours.
    threads: int = 1
    batch: int = 1
    channels_last: bool = False
    # Randomly initialised weights produce denormal activations, whose slow paths would be
    # timed instead of the architecture.
    flush_denormal: bool = True
    # Keep freed activation buffers in the heap (glibc): see `steady_allocator`.
    steady_allocator: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise MeasurementError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.threads < 1:
            raise MeasurementError(f"threads must be at least 1 (got {self.threads})")
        if self.batch < 1:
            raise MeasurementError(f"batch must be at least 1 (got {self.batch})")


def configure_torch(setup: MeasurementSetup) -> None:
    """Applies the process-wide settings; call before preparing and timing any variant.

    Flush-to-zero is a per-thread CPU flag set on the calling thread: with one thread (the
    default) that is the thread doing the work.
    """
    import torch

    torch.set_num_threads(setup.threads)
    torch.set_flush_denormal(setup.flush_denormal)
    if setup.steady_allocator:
        steady_allocator()
    if setup.device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "device 'cuda' was asked for, but torch sees no CUDA device on this machine"
        )


def example_input(setup: MeasurementSetup, resolution: int) -> torch.Tensor:
    """A seeded fp32 image batch on the setup's device, in the setup's memory layout."""
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(setup.batch, 3, resolution, resolution, generator=generator)
    if setup.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images.to(setup.device)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
_allocator_is_steady = False


def allocator_is_steady() -> bool:
    """Whether `steady_allocator` took effect in this process (for the environment record)."""
    return _allocator_is_steady


def steady_allocator() -> bool:
    """Stops glibc from returning freed memory to the kernel; True if it applied.

    Eager PyTorch allocates and frees every activation on every forward pass. By default
    glibc serves large blocks with fresh mmaps and trims the heap, so a forward can pay page
    faults and zeroing for megabytes of activations, depending on the process's allocation
    history: MobileNetV2 measured 40% slower in a young process than later in the same one
    (V3-Large / V2 = 0.64, then 0.87). With mmap off and trimming off, buffers are reused
    from the heap, as in a long-running server. Process-wide; a no-op without glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    global _allocator_is_steady
    _allocator_is_steady = bool(mallopt(_M_MMAP_MAX, 0)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    )
    return _allocator_is_steady


def release_memory() -> None:
    """Gives back what finished measurements leave behind in this process, so that the next
    device of a matrix has the machine's memory: TorchScript keeps every traced class, and
    with it each frozen module's weights, in its registry until that is cleared (128 traced
    MobileNets held 8 GB here); and with `steady_allocator` glibc keeps every freed block, so
    its arenas are trimmed by hand. Only between runs: nothing traced may be in use."""
    import gc
    import sys

    if "torch" in sys.modules:
        import torch
        from torch.jit import _state

        _state._jit_caching_layer.clear()
        _state._jit_function_overload_caching.clear()
        _state._clear_class_state()
        torch._C._jit_clear_class_registry()
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


# The record of the machine and settings a measurement ran under.

def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13"); platform.processor() is often just "x86_64"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def collect_environment(setup: MeasurementSetup) -> Environment:
    import torch

    device_name = cpu_model()
    if setup.device == "cuda" and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
    return Environment(
        cpu_model=cpu_model(),
        logical_cores=os.cpu_count() or 0,
        operating_system=platform.platform(),
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        # What torch actually runs with, which is what the numbers depend on.
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        flush_denormal=setup.flush_denormal,
        steady_allocator=allocator_is_steady(),
        channels_last=setup.channels_last,
        device_name=device_name,
        load_average=_load_average(),
    )


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0
