"""The record of the machine and settings a measurement ran under."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from ablate.measurement.results import Environment
from ablate.measurement.setup import MeasurementSetup, allocator_is_steady


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
