"""What ablate's on-disk caches share (exported programs, batch-norm statistics, calibrations):
a checksum over every entry's payload, and one account of the entries rebuilt and the writes
that failed, which the command prints once when it ends.

A cache holds ablate's own derived data, so neither a bad entry nor a cache that cannot be
written is an error: a bad entry (a flipped bit, a torn or foreign file, an older format) is
computed again and replaced, and a failed write (a full disk, a read-only directory) costs
only time, the next run computing the same again. Both are said, not hidden: `cache_notes`
collects them while a command runs, one line for all the rebuilt entries and one for the
failed writes, however many entries or reads there were.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ablate.errors import WriteError
from ablate.files import write_bytes_atomic

CHECKSUM = hashlib.sha256
CHECKSUM_BYTES = CHECKSUM().digest_size
# A line names this many entries, then says how many more.
_NAMED = 3


class BadEntry(ValueError):
    """A cache file that is there but cannot be used: the reason, for the note."""


def checksum(payload: bytes) -> bytes:
    return CHECKSUM(payload).digest()


def seal(magic: bytes, payload: bytes) -> bytes:
    """An entry file's bytes: `magic` (the cache and its format version), the checksum of
    `payload`, then `payload`."""
    return magic + checksum(payload) + payload


def unseal(magic: bytes, data: bytes, *, older: tuple[bytes, ...] = ()) -> bytes:
    """The payload of a `seal`ed entry; BadEntry when `data` is not one whose checksum holds.
    `older`: how files of the formats before this one start (a reason of their own)."""
    if not data.startswith(magic):
        if any(data.startswith(prefix) for prefix in older):
            raise BadEntry("an older format, without a checksum")
        raise BadEntry("cut short" if magic.startswith(data) else "not an entry of this cache")
    start = len(magic) + CHECKSUM_BYTES
    if len(data) < start:
        raise BadEntry("cut short")
    payload = data[start:]
    if checksum(payload) != data[len(magic) : start]:
        raise BadEntry("checksum mismatch")
    return payload


@dataclass
class CacheNotes:
    """The cache entries rebuilt and the cache writes that failed, each file once."""

    rebuilt: dict[Path, str] = field(default_factory=dict)  # entry -> why
    unwritable: dict[Path, str] = field(default_factory=dict)  # file -> the OS's reason

    def lines(self) -> list[str]:
        lines = []
        if self.rebuilt:
            count = len(self.rebuilt)
            entries = "entry" if count == 1 else "entries"
            named = [f"{path} ({reason})" for path, reason in self.rebuilt.items()]
            lines.append(f"note: rebuilt {count} bad cache {entries}: {_listed(named)}")
        if self.unwritable:
            count = len(self.unwritable)
            files = "file" if count == 1 else "files"
            named = [f"{path} ({reason})" for path, reason in self.unwritable.items()]
            lines.append(
                f"note: the cache could not be written, {count} {files}: {_listed(named)}; "
                "nothing lost, later runs compute them again"
            )
        return lines


def _listed(named: list[str]) -> str:
    more = len(named) - _NAMED
    return ", ".join(named[:_NAMED]) + (f" and {more} more" if more > 0 else "")


_notes = CacheNotes()


@contextmanager
def cache_notes() -> Iterator[CacheNotes]:
    """Collects this process's cache notes while the block runs (a command), apart from any
    collected before or around it."""
    global _notes
    outer, _notes = _notes, CacheNotes()
    try:
        yield _notes
    finally:
        _notes = outer


def note_rebuilt(path: Path, reason: str) -> None:
    _notes.rebuilt.setdefault(path, reason)


def note_unwritable(error: WriteError) -> None:
    _notes.unwritable.setdefault(Path(error.filename), error.strerror or "cannot write")


def store(path: Path, data: bytes) -> bool:
    """Writes an entry atomically; False, and a note, when the cache cannot be written."""
    try:
        write_bytes_atomic(path, data)
    except WriteError as error:
        note_unwritable(error)
        return False
    return True
