"""Atomic file writes: a reader (or a killed writer) sees the old file or the new one, never
half of one. Every file ablate writes goes through here, and so does every byte: a write that
fails (a full disk, a read-only directory) is a `WriteError` naming the file, one line in the
CLI, never a traceback.

New files honour the umask (0644 with umask 022), as a plain `open` would: `mkstemp`'s 0600
would make results unreadable to the rest of a team sharing a run directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.errors import InputFileError, WriteError

# Newly created files: the umask takes its bits off, as for `open(path, "w")`.
_NEW_FILE_MODE = 0o666
_TEMPORARY_ATTEMPTS = 100


def _write(descriptor: int, data: memoryview) -> int:
    """The one system call that puts bytes on disk (tests replace it to fill the disk)."""
    return os.write(descriptor, data)


def write_all(descriptor: int, data: bytes) -> None:
    """All of `data`: a short write (a disk filling up) continues until it fails outright."""
    view = memoryview(data)
    while view:
        written = _write(descriptor, view)
        if written <= 0:  # a full disk is reported as ENOSPC; never loop on nothing written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _create_temporary(path: Path) -> tuple[int, Path]:
    for _ in range(_TEMPORARY_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(temporary, flags, _NEW_FILE_MODE), temporary
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", str(path))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    Any OSError on the way (the block's own writes included) is a WriteError naming ``path``.
    """
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = _create_temporary(path)
        os.close(descriptor)
        yield temporary
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except WriteError:
        _discard(temporary)
        raise
    except OSError as error:
        _discard(temporary)
        raise WriteError(path, error) from None
    except BaseException:
        _discard(temporary)
        raise


def _discard(temporary: Path | None) -> None:
    if temporary is None:
        return
    with contextlib.suppress(OSError):  # the original error is the one to report
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        try:
            write_all(descriptor, data)
        finally:
            os.close(descriptor)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    # NaN and Infinity are not JSON: other readers refuse them, so a value that is not finite
    # is a bug to stop at (ValueError), never a file to write.
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def append_line(path: Path, line: str) -> None:
    """One line appended and fsynced before returning: what a journal needs to survive a kill.

    The file is created honouring the umask. A write cut short (a kill, a full disk) leaves
    a torn last line, which `truncate_torn_tail` removes before the next append.
    """
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags, _NEW_FILE_MODE)
        try:
            write_all(descriptor, (line + "\n").encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise WriteError(path, error) from None


def truncate_torn_tail(path: Path) -> int:
    """Cut a line-oriented file back to its last complete line; returns the bytes dropped.

    Truncation (fsynced) rather than a rewrite: the complete lines are never copied, so a
    failure here cannot lose them, and the cut is idempotent if it is interrupted.
    """
    try:
        with path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            keep = _end_of_last_line(handle, size)
            if keep == size:
                return 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return size - keep
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise WriteError(path, error) from None


def _end_of_last_line(handle: Any, size: int) -> int:
    """The offset just past the last newline (0 when there is none), reading from the end."""
    chunk = 1 << 16
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        block = handle.read(end - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def read_json(path: Path, missing: str = "no such file") -> Any:
    """The JSON document at `path`; a missing, unreadable or malformed file is one
    InputFileError naming it (and the line, for bad JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, missing) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read ({error.__class__.__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON ({error.msg})", line=error.lineno) from None
