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


# The ISA extensions that decide which kernels a runtime dispatches to: XNNPACK, oneDNN and
# MLAS pick their int8/fp32 micro-kernels from these at start-up, so two CPUs with one
# marketing name but different flags (AVX2 only versus AVX-512 VNNI) run different code and
# give different latency ratios. Other flags do not change kernel choice and would only
# make two equivalent machines look different.
KERNEL_FLAGS = frozenset(
    {
        # x86
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512dq",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
        # ARM (/proc/cpuinfo says "asimddp" for the dot-product extension)
        "asimd",
        "asimddp",
        "i8mm",
        "bf16",
        "sve",
        "sve2",
        "fphp",
        "asimdhp",
    }
)
_IDENTITY_KEYS = (
    (("vendor_id", ""), ("cpu family", "family"), ("model", "model"), ("stepping", "stepping")),
    (
        ("CPU implementer", "implementer"),
        ("CPU part", "part"),
        ("CPU variant", "variant"),
        ("CPU revision", "revision"),
    ),
)
# The cache "type" file's words, in the order a reader expects within one level.
_CACHE_TYPES = {"Data": (0, "d"), "Instruction": (1, "i"), "Unified": (2, "")}


def _first_processor(cpuinfo_text: str) -> dict[str, str]:
    """The first processor's entries: every processor repeats them, and on ARM some (the
    model name, Hardware) come after the per-core blocks, so later keys fill gaps only."""
    fields: dict[str, str] = {}
    for line in cpuinfo_text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_identity(cpuinfo_text: str) -> str:
    """Vendor, family, model and stepping ("AuthenticAMD family 25 model 17 stepping 1"), or
    the ARM implementer/part/variant/revision: unlike the marketing name, these tell apart
    two generations that a cloud VM calls by the same name."""
    fields = _first_processor(cpuinfo_text)
    for keys in _IDENTITY_KEYS:
        words = [f"{label} {fields[key]}".strip() for key, label in keys if fields.get(key)]
        if words:
            return " ".join(words)
    return ""


def cpu_flags(cpuinfo_text: str) -> tuple[str, ...]:
    """The first processor's kernel-deciding flags (see KERNEL_FLAGS), sorted."""
    fields = _first_processor(cpuinfo_text)
    line = fields.get("flags") or fields.get("Features") or ""
    return tuple(sorted(set(line.split()) & KERNEL_FLAGS))


def cpu_caches(cache_root: Path) -> str:
    """The cache sizes under `cache_root` (Linux: /sys/devices/system/cpu/cpu0/cache), e.g.
    "L1d 32K, L1i 32K, L2 1024K, L3 32768K": which layers' weights stay resident depends on
    them. An index whose files cannot be read is left out rather than guessed."""
    caches: list[tuple[int, int, str]] = []
    try:
        indexes = sorted(cache_root.glob("index*"))
    except OSError:
        return ""
    for index in indexes:
        try:
            level = int((index / "level").read_text().strip())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        order, suffix = _CACHE_TYPES.get(kind, (3, ""))
        caches.append((level, order, f"L{level}{suffix} {size}"))
    return ", ".join(text for _, _, text in sorted(caches))


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def collect_environment(setup: MeasurementSetup) -> Environment:
    import torch

    device_name = cpu_model()
    cpuinfo = _read_text(Path("/proc/cpuinfo"))
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
        cpu_identity=cpu_identity(cpuinfo),
        cpu_flags=cpu_flags(cpuinfo),
        cpu_caches=cpu_caches(Path("/sys/devices/system/cpu/cpu0/cache")),
    )


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0
