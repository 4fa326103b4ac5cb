"""Where runs live: `DIR/<timestamp>-<name>/`, the latest one, the unfinished one to resume.

A run directory is created atomically (two processes starting at once get two directories)
and is owned by one process at a time: `hold_run_directory` takes an OS lock on its `lock`
file, which the kernel releases when the process ends, however it ends; the owner removes the
file as it lets go, so a finished run keeps only what it measured.

A run made elsewhere (`ablate ingest`) is written whole in a hidden staging directory and
renamed into its place: no listing sees it half-written, resume never adopts it, and a staging
directory whose writer died is removed when the next run directory is claimed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import itertools
import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError, InputFileError, RunLockedError, WriteError
from ablate.files import append_line, atomic_path, truncate_torn_tail, write_all
from ablate.measurement.results import CACHE_STATES, CacheState, round_value
from ablate.runs.schema import RESULTS_NAME

if TYPE_CHECKING:
    import numpy as np

SPEC_NAME = "spec.yaml"
RESOLVED_SPEC_NAME = "resolved_spec.json"
ENVIRONMENT_NAME = "environment.json"
# `ablate run --device`: every network's latency under each resample of the profile.
PREDICTED_SAMPLES_NAME = "predicted_samples.json"
LOCK_NAME = "lock"
# A run measured elsewhere and ingested says so in its environment record, under this key.
MEASURED_ELSEWHERE_KEY = "measured_on_device"
# `<prefix><run directory name>`: where such a run is written before it takes its name.
STAGING_PREFIX = ".staging-"

# `<YYYYmmdd-HHMMSS>-<name>` or, for the second and later run started in the same second,
# `<...>-<name>-<n>`. The name is matched lazily so that a trailing `-<digits>` is the suffix.
_RUN_DIRECTORY = re.compile(r"(\d{8}-\d{6})-(.+?)(?:-(\d+))?")


def check_out_dir(out_dir: Path, *, create: bool = False) -> None:
    """`out_dir` is a directory or not there yet; with `create`, no file stands where one of
    its missing parents would go (mkdir would refuse it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AblateError(
            f"{out_dir}: not a directory (--out names the directory that holds the runs)"
        )
    if create and not out_dir.exists():
        existing = next(parent for parent in out_dir.absolute().parents if parent.exists())
        if not existing.is_dir():
            raise AblateError(
                f"{out_dir}: cannot create the runs directory ({os.strerror(errno.ENOTDIR)})"
            )


def new_run_directory(out_dir: Path, name: str, now: dt.datetime | None = None) -> Path:
    """A new, empty directory of its own: mkdir is the test, so a concurrent run that picked
    the same name makes this one take the next suffix instead of failing or sharing it."""
    check_out_dir(out_dir)
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AblateError(
            f"{out_dir}: cannot create the runs directory ({error.strerror})"
        ) from None
    remove_abandoned_staging(out_dir)
    suffix = 1
    while True:
        candidate = out_dir / (f"{stamp}-{name}" if suffix == 1 else f"{stamp}-{name}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        except OSError as error:
            raise AblateError(
                f"{candidate}: cannot create the run directory ({error.strerror})"
            ) from None
        return candidate


@contextmanager
def staged_run_directory(out_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """A new run directory written whole: (staging, run directory). The block fills the hidden
    staging directory, which replaces the run directory's claimed, empty, place when the block
    succeeds, and is removed when it fails.

    The claimed directory is locked (flock on the directory) while the staging directory
    exists: a writer killed at any point leaves a staging directory whose lock nobody holds,
    which `remove_abandoned_staging` removes.
    """
    final = new_run_directory(out_dir, name)
    descriptor = _open_directory(final)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        staging = out_dir / f"{STAGING_PREFIX}{final.name}"
        try:
            staging.mkdir()  # the mode of a run directory: new_run_directory's mkdir, umask
            yield staging, final
            os.rename(staging, final)  # onto the empty claimed directory, atomically
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                final.rmdir()
            raise
    finally:
        os.close(descriptor)


def remove_abandoned_staging(out_dir: Path) -> list[Path]:
    """Removes every staging directory whose writer is gone, and the empty run directory it
    had claimed; a writer's lock keeps its own. Returns the staging directories removed."""
    removed = []
    try:
        stagings = [path for path in out_dir.iterdir() if path.name.startswith(STAGING_PREFIX)]
    except OSError:
        return removed
    for staging in stagings:
        final = out_dir / staging.name.removeprefix(STAGING_PREFIX)
        try:
            descriptor: int | None = _open_directory(final)
        except FileNotFoundError:
            descriptor = None  # its claimed directory is gone: no writer holds it
        except OSError:
            continue
        try:
            if descriptor is not None:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer at work
            if not staging.is_dir():
                continue  # renamed into its place meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    final.rmdir()  # only while still empty
            removed.append(staging)
        finally:
            if descriptor is not None:
                os.close(descriptor)
    return removed


def _open_directory(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _creation_order(run: Path) -> tuple[str, int, str]:
    """(timestamp, suffix, name): `-10` after `-2`, where the text order would put it first."""
    match = _RUN_DIRECTORY.fullmatch(run.name)
    if match is None:  # not named by ablate: before every run that is
        return ("", 0, run.name)
    stamp, name, suffix = match.groups()
    return (stamp, int(suffix) if suffix else 1, name)


def _run_directories(out_dir: Path) -> list[Path]:
    """Run directories, oldest first."""
    check_out_dir(out_dir)
    if not out_dir.is_dir():
        return []
    try:
        children = list(out_dir.iterdir())
    except OSError as error:
        raise AblateError(f"{out_dir}: cannot list the runs ({error.strerror})") from None
    runs = [
        path
        for path in children
        if not path.name.startswith(".") and (path / RESOLVED_SPEC_NAME).is_file()
    ]
    return sorted(runs, key=_creation_order)


def run_status(run: Path) -> str | None:
    """The run's status as its results.json says; None where there is none (yet) to read."""
    try:
        return json.loads((run / RESULTS_NAME).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _measured_elsewhere(run: Path) -> bool:
    """An ingested run: resuming it would time this machine into another device's rounds."""
    try:
        environment = json.loads((run / ENVIRONMENT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(environment, dict) and MEASURED_ELSEWHERE_KEY in environment


def unfinished_run(out_dir: Path, resolved_spec: dict[str, Any]) -> Path:
    """The latest run of this experiment, measured here, that did not complete; its spec must
    be unchanged."""
    name = resolved_spec["name"]
    for run in reversed(_run_directories(out_dir)):
        try:
            recorded = json.loads((run / RESOLVED_SPEC_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if recorded.get("name") != name or run_status(run) == "complete":
            continue
        if _measured_elsewhere(run):
            continue
        if recorded != resolved_spec:
            raise AblateError(
                f"{run}: the spec of {name!r} changed since this run started; run without "
                "--resume to start a fresh run"
            )
        return run
    raise AblateError(f"{out_dir}: no unfinished run of {name!r} to resume")


def resumable_run(run: Path, resolved_spec: dict[str, Any]) -> Path:
    """`run`, when it is an unfinished run measured here whose spec is `resolved_spec`."""
    check_run_spec(run, resolved_spec)
    if run_status(run) == "complete":
        raise AblateError(f"{run}: the run is complete: nothing to resume")
    return run


# Resolved-spec keys added after runs were first written, with the value every run started
# before them had implicitly: an older run resumes as long as the new key keeps that value.
ADDED_SPEC_KEYS: dict[tuple[str, ...], Any] = {("measure", "kernels"): False}


def with_added_keys(recorded: Any) -> Any:
    if not isinstance(recorded, dict):
        return recorded
    completed = json.loads(json.dumps(recorded))
    for path, value in ADDED_SPEC_KEYS.items():
        section = completed
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.setdefault(path[-1], value)
    return completed


def check_run_spec(run: Path, resolved_spec: dict[str, Any]) -> None:
    """Raises, in one line, unless `run` is a run measured here whose spec is `resolved_spec`."""
    try:
        recorded = json.loads((run / RESOLVED_SPEC_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise AblateError(
            f"{run}: not a run directory (no readable {RESOLVED_SPEC_NAME})"
        ) from None
    if _measured_elsewhere(run):
        raise AblateError(f"{run}: measured on another device (ingested): nothing to resume here")
    recorded = with_added_keys(recorded)
    if recorded != resolved_spec:
        key, there, here = first_difference(recorded, resolved_spec)
        raise AblateError(
            f"{run}: started with {key} {there!r}, not {here!r}; run without --resume to start "
            "a fresh run"
        )


def first_difference(recorded: Any, wanted: Any, path: str = "") -> tuple[str, Any, Any]:
    """The first key path at which two resolved specs differ, and the two values there."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        for key in [*wanted, *(key for key in recorded if key not in wanted)]:
            if recorded.get(key) != wanted.get(key):
                where = f"{path}.{key}" if path else str(key)
                return first_difference(recorded.get(key), wanted.get(key), where)
    return path or "the spec", recorded, wanted


def latest_run(out_dir: Path) -> Path:
    runs = [run for run in _run_directories(out_dir) if (run / RESULTS_NAME).is_file()]
    if not runs:
        raise AblateError(f"{out_dir}: no runs yet; start one with `ablate run SPEC`")
    return runs[-1]


# The measurement journal: one JSON line per round, appended and fsynced as it is taken:
# {"round": i, "seconds": {variant: s}, "cache_state": what the caches held (CACHE_STATES),
#  "elapsed_s": measuring time so far, all sessions}.
#
# A run killed mid-write (or a disk filling up) leaves at most a torn last line: reading drops
# it, and `repair_journal` cuts it off before a resumed run appends, so it never becomes a
# malformed line in the middle. Any other malformed line means the file was damaged and is
# reported, never guessed around. Journals from before `elapsed_s` read as 0 s elapsed, and
# those from before `cache_state` as "rotating" (how every round was timed then). One journal
# holds rounds of one cache state: they are pooled into one median each.

JOURNAL_NAME = "journal.jsonl"


@dataclass(frozen=True)
class Journal:
    rounds: list[dict[str, float]]  # oldest first
    elapsed_s: float  # measuring time (warm-up included) spent on them, over every session
    cache_state: CacheState | None = None  # what the caches held; None without rounds


def append_round(
    path: Path,
    index: int,
    seconds: Mapping[str, float],
    *,
    cache_state: CacheState,
    elapsed_s: float | None = None,
    timings: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """One round, as one line. `timings` keeps every timing of the variants timed more than
    once that round; `seconds` holds their median, which is all a resumed run reads."""
    entry: dict[str, Any] = {"round": index, "seconds": dict(seconds), "cache_state": cache_state}
    if timings:
        entry["timings"] = {name: list(values) for name, values in timings.items()}
    if elapsed_s is not None:
        entry["elapsed_s"] = round(elapsed_s, 6)
    append_line(path, json.dumps(entry, separators=(",", ":")))


def write_journal(
    path: Path, names: Sequence[str], seconds: np.ndarray, *, cache_state: CacheState
) -> None:
    """A whole journal at once, atomically and with one fsync, for rounds measured elsewhere:
    the lines `append_round` writes for round i, `seconds[i]` (a value per name)."""
    # One %-template for every line: json.dumps's keys, and floats as repr, which is how
    # json.dumps writes them.
    keys = ",".join(json.dumps(name).replace("%", "%%") + ":%r" for name in names)
    state = json.dumps(cache_state).replace("%", "%%")
    template = '{"round":%d,"seconds":{' + keys + '},"cache_state":' + state + "}\n"
    with atomic_path(path) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            for start in range(0, len(seconds), _JOURNAL_BLOCK_ROUNDS):
                rows = seconds[start : start + _JOURNAL_BLOCK_ROUNDS].tolist()
                text = "".join(
                    template % (index, *row) for index, row in enumerate(rows, start=start)
                )
                write_all(descriptor, text.encode("utf-8"))
        finally:
            os.close(descriptor)


# Rounds formatted per write: a few hundred kilobytes at a time, whatever the session's length.
_JOURNAL_BLOCK_ROUNDS = 10_000


def repair_journal(path: Path) -> int:
    """Cut a torn last line off (fsynced); returns the bytes dropped, 0 when it was whole."""
    return truncate_torn_tail(path)


def saved_rounds(path: Path) -> int:
    """Complete lines in the journal: what an interrupted run has kept, for telling the user."""
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def read_rounds(path: Path, expected_names: set[str]) -> list[dict[str, float]]:
    """Rounds recorded so far, oldest first; [] when the journal does not exist yet."""
    return read_journal(path, expected_names).rounds


def read_journal(path: Path, expected_names: set[str]) -> Journal:
    """The complete rounds and the measuring time they took; empty when there is no journal."""
    if not path.exists():
        return Journal([], 0.0)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read the journal ({error})") from None
    lines = text.split("\n")
    complete = lines[:-1]  # text after the last newline was never finished
    rounds: list[dict[str, float]] = []
    elapsed_s = 0.0
    cache_state: CacheState | None = None
    for number, line in enumerate(complete, start=1):
        try:
            entry = json.loads(line)
            seconds = entry["seconds"]
            index = entry["round"]
            elapsed = entry.get("elapsed_s", 0.0)
            state = entry.get("cache_state", "rotating")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise InputFileError(
                path, "malformed journal line (expected {round, seconds})", line=number
            ) from None
        if index != len(rounds):
            raise InputFileError(
                path, f"round {index} out of order (expected {len(rounds)})", line=number
            )
        if not isinstance(seconds, dict) or set(seconds) != expected_names:
            raise InputFileError(
                path,
                "round does not time the run's variants",
                line=number,
                key_path="seconds",
                choices=sorted(expected_names),
            )
        if not all(_positive_seconds(value) for value in seconds.values()):
            raise InputFileError(
                path,
                "round holds a non-positive or non-finite time",
                line=number,
                key_path="seconds",
            )
        if not _seconds_so_far(elapsed):
            raise InputFileError(
                path,
                "elapsed time is not a non-negative number of seconds",
                line=number,
                key_path="elapsed_s",
            )
        if state not in CACHE_STATES:
            raise InputFileError(
                path,
                f"unknown cache state {state!r}",
                line=number,
                key_path="cache_state",
                choices=sorted(CACHE_STATES),
            )
        if cache_state is not None and state != cache_state:
            raise InputFileError(
                path,
                f"round timed with {state} caches after rounds timed with {cache_state} ones",
                line=number,
                key_path="cache_state",
            )
        _check_timings(path, number, entry.get("timings", {}), seconds)
        rounds.append({name: float(value) for name, value in seconds.items()})
        elapsed_s = max(elapsed_s, float(elapsed))
        cache_state = state
    return Journal(rounds, elapsed_s, cache_state)


def set_journal_aside(path: Path, cache_state: CacheState) -> Path:
    """Rename a journal whose rounds were timed in `cache_state` to a free name beside it
    (journal.rotating.jsonl, then .2, ...): kept whole, and out of the measurement."""
    stem = path.name.removesuffix(".jsonl")
    for number in itertools.count(1):
        suffix = "" if number == 1 else f".{number}"
        aside = path.with_name(f"{stem}.{cache_state}{suffix}.jsonl")
        if not aside.exists():
            break
    try:
        os.rename(path, aside)
    except OSError as error:
        raise WriteError(aside, error) from None
    return aside


def _check_timings(path: Path, line: int, timings: object, seconds: Mapping[str, float]) -> None:
    """A round's repeated timings: each variant's list odd, positive, with `seconds` its median."""
    if not isinstance(timings, dict):
        raise InputFileError(path, "timings is not an object", line=line, key_path="timings")
    for name, values in timings.items():
        key_path = f"timings.{name}"
        if name not in seconds:
            raise InputFileError(
                path,
                "timings name a variant the round does not time",
                line=line,
                key_path=key_path,
                choices=sorted(seconds),
            )
        if not (
            isinstance(values, list)
            and len(values) % 2 == 1
            and all(_positive_seconds(value) for value in values)
        ):
            raise InputFileError(
                path,
                "timings are not an odd number of positive times",
                line=line,
                key_path=key_path,
            )
        if round_value(values) != seconds[name]:
            raise InputFileError(
                path,
                "the round's seconds are not the median of its timings",
                line=line,
                key_path=key_path,
            )


def _positive_seconds(value: object) -> bool:
    return _finite_number(value) and value > 0  # type: ignore[operator]


def _seconds_so_far(value: object) -> bool:
    return _finite_number(value) and value >= 0  # type: ignore[operator]


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The owner of a run directory. flock, not a PID file checked by hand: the kernel drops the
# lock with the last descriptor of the process that holds it, so a SIGKILL or a crash never
# leaves a stale lock behind (only, at worst, the file, which the next owner takes over). The
# owner removes the file before it lets go; a process that opened it before that and locks it
# after holds a lock on a file nobody sees, so every owner checks that its locked file is still
# the one at the path, and opens the path again when it is not.


@contextmanager
def hold_run_directory(directory: Path) -> Iterator[None]:
    """Own `directory` for the block, or raise RunLockedError naming the process that does."""
    path = directory / LOCK_NAME
    descriptor = _lock(path, directory)
    try:
        try:
            os.ftruncate(descriptor, 0)
            write_all(descriptor, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the PID only informs a second process; a full disk must not stop the run
        yield
    finally:
        # Still ours: nobody else takes a locked file's place. A directory removed under the
        # run, or read-only, keeps the file; the lock still goes with the descriptor.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(descriptor)


def _lock(path: Path, directory: Path) -> int:
    """A descriptor of `path` that this process holds the lock on."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise WriteError(path, error) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise RunLockedError(directory, holder) from None
        try:
            current = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            return descriptor
        os.close(descriptor)  # the previous owner removed it as we locked it: open it again


def _holder(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
