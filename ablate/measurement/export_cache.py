"""The cache of exported mobile programs (.pte, .tflite) on disk.

Exporting a MobileNet for a mobile runtime takes 15-30 s, timing it a few seconds: a study
of a hundred variants would spend most of its time exporting. Programs are cached under the
calibration cache's directory (`ablate.measurement.calibration.cache_directory`), one file
per program, keyed by everything the program depends on: the module (its structure, forward
code and every weight and buffer, since ablate's weights are random), the input shape, the
precision, the runtime and its package versions, ablate's version and the export recipe.

Each entry is one file, replaced atomically, so a reader sees a whole entry or none: a magic
(the format's version), the header's length and checksum, a JSON header (the key, the
delegation, the program's length and checksum), then the program bytes. A per-key OS lock
makes a second process wait for the first's export and then read it, rather than export the
same program again. An entry that fails a check (a flipped bit, cut short, not an entry, an
older format) is exported again, and the command says so (`cache_entries`); another key's
entry is a plain miss. A cache that cannot be written costs only time: the program is
exported all the same.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ablate.measurement.cache_entries import (
    CHECKSUM_BYTES,
    BadEntry,
    checksum,
    note_rebuilt,
    store,
)
from ablate.measurement.calibration import cache_directory

if TYPE_CHECKING:
    from torch import nn

# 2: the header carries its own checksum; a format-1 entry (its header unchecked) is rebuilt.
_SCHEMA = "ablate.export/2"
_MAGIC = b"ABLATEX2"
_OLDER_MAGIC = (b"ABLATEX1",)
_HEADER_LENGTH = struct.Struct("<Q")
_PREFIX_BYTES = len(_MAGIC) + _HEADER_LENGTH.size + CHECKSUM_BYTES
# A header is a few kB (the key, the delegation's op counts): a longer length is a bad field.
_MAX_HEADER_BYTES = 1 << 20
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class DelegationReport:
    """Which ops of an exported program run inside the runtime's delegate, by op name and
    count; `delegate` names it (XNNPACK), as the program says where the runtime can tell.

    `outside` holds the ops the runtime runs itself (its portable kernels), `fp32` the ops of
    an int8 program that compute in fp32. Either makes the program `flagged`: its time is not
    all the delegate's, or not all int8.
    """

    delegate: str
    delegated: Mapping[str, int] = field(default_factory=dict)
    outside: Mapping[str, int] = field(default_factory=dict)
    fp32: Mapping[str, int] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return bool(self.outside) or bool(self.fp32)

    def summary(self) -> str:
        """One line: 'all 98 ops in XNNPACK' (the delegate) or what is outside it."""
        total = sum(self.delegated.values())
        if not self.flagged:
            return f"all {total} ops in {self.delegate}"
        parts = []
        if self.outside:
            parts.append(f"outside {self.delegate}: {_counts_text(self.outside)}")
        if self.fp32:
            parts.append(f"fp32 in an int8 program: {_counts_text(self.fp32)}")
        return f"{total} ops in {self.delegate}; " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delegate": self.delegate,
            "delegated": dict(sorted(self.delegated.items())),
            "outside": dict(sorted(self.outside.items())),
            "fp32": dict(sorted(self.fp32.items())),
            "flagged": self.flagged,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DelegationReport:
        def counts(key: str) -> dict[str, int]:
            return {str(name): int(count) for name, count in data.get(key, {}).items()}

        return cls(str(data["delegate"]), counts("delegated"), counts("outside"), counts("fp32"))


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


@dataclass(frozen=True)
class ExportKey:
    """Everything an exported program depends on."""

    runtime: str
    versions: tuple[tuple[str, str], ...]  # (package, version), of the runtime and torch
    precision: str
    input_shape: tuple[int, ...]
    model_hash: str  # `module_fingerprint`
    ablate_version: str
    recipe: int  # bumped whenever the export code changes what it produces

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def file_name(self) -> str:
        return f"{self.runtime}-{self.precision}-{self.digest()}.export"

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "versions": [list(pair) for pair in self.versions],
            "precision": self.precision,
            "input_shape": list(self.input_shape),
            "model_hash": self.model_hash,
            "ablate_version": self.ablate_version,
            "recipe": self.recipe,
        }


@dataclass(frozen=True)
class ExportOrigin:
    """Where a program was exported: a host, and the Ray node on it when a cluster exported
    it (None: an ablate process of that host, not a cluster task)."""

    hostname: str
    node_id: str | None = None

    @classmethod
    def here(cls) -> ExportOrigin:
        import socket

        return cls(socket.gethostname())

    def to_dict(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "node_id": self.node_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportOrigin:
        node_id = data.get("node_id")
        return cls(str(data["hostname"]), None if node_id is None else str(node_id))


@dataclass(frozen=True)
class ExportArtifact:
    """An exported program and how it was made."""

    program: bytes
    delegation: DelegationReport
    export_seconds: float  # the export's own duration, when it was made (cached or not)
    cached: bool  # read from the cache rather than exported now
    seconds: float  # what getting it took now: the export, or reading the cache
    path: Path | None  # the cache entry; None when caching is off
    # Where it was exported; None for an entry written before entries recorded it.
    origin: ExportOrigin | None = None


def module_fingerprint(model: nn.Module) -> str:
    """A hash of what a module computes: its structure, its forward code, its tensors.

    Per submodule: its name, class, the source of its `forward`, and its public scalar
    attributes (strides, paddings, a block's `residual` flag: what `state_dict` misses); then
    every parameter and buffer, names, dtypes, shapes and bytes, so two randomly initialised
    builds of one architecture never share an entry; and any forward hooks (code and scalar
    closure values), which the export traces.
    """
    import torch

    digest = hashlib.sha256()
    for name, module in model.named_modules():
        kind = type(module)
        attributes = {
            key: value
            for key, value in sorted(vars(module).items())
            if not key.startswith("_") and key != "training" and _is_scalar(value)
        }
        digest.update(
            json.dumps([name, kind.__module__, kind.__qualname__, attributes], default=str).encode()
        )
        digest.update(_forward_source(kind).encode())
        # A hook changes what the exported graph computes; its code and closure values key it.
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for hook in hooks.values():
                digest.update(_hook_text(hook).encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _is_scalar(value: object) -> bool:
    if isinstance(value, tuple | list):
        return all(_is_scalar(item) for item in value)
    return isinstance(value, _SCALARS)


def _hook_text(hook: Callable[..., Any]) -> str:
    function = getattr(hook, "__func__", hook)
    closure = getattr(function, "__closure__", None) or ()
    values = [repr(cell.cell_contents) for cell in closure if _is_scalar(cell.cell_contents)]
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = getattr(function, "__qualname__", repr(function))
    return json.dumps([source, values])


@functools.cache
def _forward_source(kind: type) -> str:
    # Once per class: reading the source is most of a fingerprint's time (128 MobileNets, 3
    # fingerprints each: 60 s uncached), and a class's source does not change in a process.
    try:
        return inspect.getsource(kind.forward)
    except (OSError, TypeError):
        return f"{kind.__module__}.{kind.__qualname__}.forward"


def export_cache_directory(directory: Path | None = None) -> Path:
    return (directory or cache_directory()) / "exports"


Exporter = Callable[[], tuple[bytes, DelegationReport]]


def cached_export(
    key: ExportKey, export: Exporter, *, directory: Path | None = None, enabled: bool = True
) -> ExportArtifact:
    """The program for `key`: read from the cache, or made by `export` and stored.

    `directory` is the cache root (default: the calibration cache's); `enabled=False` always
    exports and stores nothing. A cache that cannot be written gives the program all the
    same, with no `path`.
    """
    if not enabled:
        return _export_now(key, export, None)
    path = export_cache_directory(directory) / key.file_name()
    started = time.perf_counter()
    artifact = read_entry(path, key)
    if artifact is None:
        with _lock(path):
            # Another process may have exported it while this one waited for the lock.
            artifact = read_entry(path, key)
            if artifact is None:
                return _export_now(key, export, path)
    return _replace_seconds(artifact, time.perf_counter() - started)


def _export_now(key: ExportKey, export: Exporter, path: Path | None) -> ExportArtifact:
    started = time.perf_counter()
    program, delegation = export()
    seconds = time.perf_counter() - started
    origin = ExportOrigin.here()
    if path is not None and not write_entry(path, key, program, delegation, seconds, origin):
        path = None
    return ExportArtifact(program, delegation, seconds, False, seconds, path, origin)


def _replace_seconds(artifact: ExportArtifact, seconds: float) -> ExportArtifact:
    return ExportArtifact(
        artifact.program,
        artifact.delegation,
        artifact.export_seconds,
        artifact.cached,
        seconds,
        artifact.path,
        artifact.origin,
    )


def write_entry(
    path: Path,
    key: ExportKey,
    program: bytes,
    delegation: DelegationReport,
    seconds: float,
    origin: ExportOrigin | None = None,
) -> bool:
    """Stores an entry; False (and a note) when the cache cannot be written."""
    header = json.dumps(
        {
            "schema": _SCHEMA,
            "key": key.to_dict(),
            "export_seconds": seconds,
            "delegation": delegation.to_dict(),
            "program_sha256": hashlib.sha256(program).hexdigest(),
            "program_bytes": len(program),
            "exported_on": None if origin is None else origin.to_dict(),
        }
    ).encode()
    prefix = _MAGIC + _HEADER_LENGTH.pack(len(header)) + checksum(header)
    return store(path, prefix + header + program)


def has_entry(path: Path, key: ExportKey) -> bool:
    """Whether `path` holds an entry made for `key`, of its full length, from its checked
    header alone: what deciding to export takes, without reading and hashing the program (tens
    of MB). A damaged program behind a whole header fails `read_entry` and is rebuilt then."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header, offset = _read_header(handle, size)
            return _made_for(header, key, size - offset)
    except FileNotFoundError:
        return False
    except (OSError, BadEntry) as error:
        note_rebuilt(path, _reason(error))
        return False


def read_entry(path: Path, key: ExportKey) -> ExportArtifact | None:
    """The entry at `path` if it is whole and made for `key`; None otherwise (a miss; a bad
    entry is noted as rebuilt, since every caller exports it again)."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header, offset = _read_header(handle, size)
            if not _made_for(header, key, size - offset):
                return None
            program = handle.read()
        if header["program_sha256"] != hashlib.sha256(program).hexdigest():
            raise BadEntry("program checksum mismatch")
        delegation = DelegationReport.from_dict(header["delegation"])
        export_seconds = float(header["export_seconds"])
        made_on = header.get("exported_on")
        origin = None if made_on is None else ExportOrigin.from_dict(made_on)
    except FileNotFoundError:
        return None
    except (OSError, BadEntry) as error:
        note_rebuilt(path, _reason(error))
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        # A header that passed its checksum but not its reading: written by another ablate.
        note_rebuilt(path, "header not of this format")
        return None
    return ExportArtifact(program, delegation, export_seconds, True, 0.0, path, origin)


def _reason(error: OSError | BadEntry) -> str:
    if isinstance(error, BadEntry):
        return str(error)
    return f"cannot read ({error.strerror or error})"


def _read_header(handle: BinaryIO, size: int) -> tuple[Any, int]:
    """A `size`-byte entry's checked JSON header and the offset its program starts at;
    BadEntry, with the reason, if the file is not a whole entry of this format."""
    prefix = handle.read(_PREFIX_BYTES)
    if not prefix.startswith(_MAGIC):
        if prefix.startswith(_OLDER_MAGIC):
            raise BadEntry("an older format, without a header checksum")
        raise BadEntry("cut short" if _MAGIC.startswith(prefix) else "not an export-cache entry")
    if len(prefix) < _PREFIX_BYTES:
        raise BadEntry("cut short")
    (length,) = _HEADER_LENGTH.unpack_from(prefix, len(_MAGIC))
    # Checked before reading: a flipped high bit would ask for exabytes.
    if length > min(size - _PREFIX_BYTES, _MAX_HEADER_BYTES):
        raise BadEntry(f"header length {length} out of range for a {size}-byte file")
    text = handle.read(length)
    if checksum(text) != prefix[-CHECKSUM_BYTES:]:
        raise BadEntry("header checksum mismatch")
    try:
        header = json.loads(text)
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except ValueError:
        raise BadEntry("header not of this format") from None
    return header, _PREFIX_BYTES + length


def _made_for(header: dict[str, Any], key: ExportKey, program_bytes: int) -> bool:
    """Whether a checked header is this format's entry for `key` (another key's is a plain
    miss); BadEntry when its program is not of the length the header says."""
    if header.get("schema") != _SCHEMA or header.get("key") != key.to_dict():
        return False
    expected = header.get("program_bytes")
    if expected != program_bytes:
        raise BadEntry(f"program of {program_bytes} bytes, its header says {expected}")
    return True


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock for one key; none where the OS has no flock (Windows) or
    the cache cannot be written (the entry's own write then says so)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.with_name(path.name + ".lock").open("a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def recent_export_seconds(
    runtime: str, precision: str, *, newest: int, directory: Path | None = None
) -> list[float]:
    """How long this host's `newest` latest exports for `runtime` in `precision` took, from the
    cache entries' headers (newest first; none when the cache holds none). What a run will
    spend exporting is best told by this machine's own recent exports: the same program took
    52 s on one host and 19 s on another, and an entry records its time as it was made, two
    at a time in the export pool. Entries another host or a cluster node made, and entries
    that fail their checks, are left out; nothing is read past a header."""
    import socket

    host = socket.gethostname()
    candidates = []
    for path in export_cache_directory(directory).glob(f"{runtime}-{precision}-*.export"):
        with contextlib.suppress(OSError):
            candidates.append((path.stat().st_mtime, path))
    seconds: list[float] = []
    for _, path in sorted(candidates, reverse=True):
        if len(seconds) == newest:
            break
        try:
            with path.open("rb") as handle:
                header, _ = _read_header(handle, os.fstat(handle.fileno()).st_size)
            key, origin = header["key"], header["exported_on"]
            if (key["runtime"], key["precision"]) != (runtime, precision) or origin is None:
                continue
            if origin["hostname"] != host or origin["node_id"] is not None:
                continue
            value = float(header["export_seconds"])
        except (OSError, BadEntry, ValueError, KeyError, TypeError):
            continue
        if 0 < value < float("inf"):
            seconds.append(value)
    return seconds
