"""This machine's peak FLOP/s and memory bandwidth, and their cache on disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ablate.errors import AblateError
from ablate.files import write_json_atomic

CACHE_ENVIRONMENT_VARIABLE = "ABLATE_CACHE_DIR"
_SCHEMA = "ablate.calibration/1"


class CalibrationCacheError(AblateError):
    """A calibration cache file that cannot be read back."""


@dataclass(frozen=True)
class CalibrationKey:
    """What a calibration is valid for: another CPU, thread count or torch is another roof."""

    cpu_model: str
    threads: int
    torch_version: str
    device: str = "cpu"

    def file_name(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"calibration-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


@dataclass(frozen=True)
class Calibration:
    key: CalibrationKey
    peak_flop_per_second: float  # best fp32 matmul throughput
    bandwidth_bytes_per_second: float  # best large-copy throughput, bytes read + written
    matrix_size: int
    copy_bytes: int


def cache_directory() -> Path:
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "ablate"


def cache_path(key: CalibrationKey, directory: Path | None = None) -> Path:
    return (directory or cache_directory()) / key.file_name()


def read_calibration(path: Path, key: CalibrationKey) -> Calibration | None:
    """The cached calibration for `key`; None when there is none.

    Raises CalibrationCacheError, naming the file, when it exists but cannot be read.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != _SCHEMA:
            raise ValueError(f"schema is {data.get('schema')!r}, expected {_SCHEMA!r}")
        calibration = Calibration(
            key=CalibrationKey(**data["key"]),
            peak_flop_per_second=float(data["peak_flop_per_second"]),
            bandwidth_bytes_per_second=float(data["bandwidth_bytes_per_second"]),
            matrix_size=int(data["matrix_size"]),
            copy_bytes=int(data["copy_bytes"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CalibrationCacheError(f"{path}: unreadable calibration cache ({error})") from None
    if calibration.peak_flop_per_second <= 0 or calibration.bandwidth_bytes_per_second <= 0:
        raise CalibrationCacheError(f"{path}: unreadable calibration cache (non-positive rates)")
    # A hash collision or a hand-copied file: a calibration for another machine is no cache hit.
    return calibration if calibration.key == key else None


def write_calibration(path: Path, calibration: Calibration) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    write_json_atomic(path, {"schema": _SCHEMA, **dataclasses.asdict(calibration)})
