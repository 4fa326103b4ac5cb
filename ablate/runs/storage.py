"""Where runs live: `DIR/<timestamp>-<name>/`, the latest one, the unfinished one to resume."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablate.errors import AblateError, InputFileError
from ablate.runs.schema import RESULTS_NAME

SPEC_NAME = "spec.yaml"
RESOLVED_SPEC_NAME = "resolved_spec.json"
ENVIRONMENT_NAME = "environment.json"
# `ablate run --device`: every network's latency under each resample of the profile.
PREDICTED_SAMPLES_NAME = "predicted_samples.json"


def new_run_directory(out_dir: Path, name: str, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    candidate = out_dir / f"{stamp}-{name}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = out_dir / f"{stamp}-{name}-{suffix}"
    candidate.mkdir(parents=True)
    return candidate


def _run_directories(out_dir: Path) -> list[Path]:
    if not out_dir.is_dir():
        return []
    # Timestamped names sort chronologically.
    return sorted(path for path in out_dir.iterdir() if (path / RESOLVED_SPEC_NAME).is_file())


def _status(run: Path) -> str | None:
    try:
        return json.loads((run / RESULTS_NAME).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def unfinished_run(out_dir: Path, resolved_spec: dict[str, Any]) -> Path:
    """The latest run of this experiment that did not complete; its spec must be unchanged."""
    name = resolved_spec["name"]
    for run in reversed(_run_directories(out_dir)):
        try:
            recorded = json.loads((run / RESOLVED_SPEC_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if recorded.get("name") != name or _status(run) == "complete":
            continue
        if recorded != resolved_spec:
            raise AblateError(
                f"{run}: the spec of {name!r} changed since this run started; run without "
                "--resume to start a fresh run"
            )
        return run
    raise AblateError(f"{out_dir}: no unfinished run of {name!r} to resume")


def latest_run(out_dir: Path) -> Path:
    runs = [run for run in _run_directories(out_dir) if (run / RESULTS_NAME).is_file()]
    if not runs:
        raise AblateError(f"{out_dir}: no runs yet; start one with `ablate run SPEC`")
    return runs[-1]


# The measurement journal: one JSON line per round, appended and flushed as it is taken.
#
# A run killed mid-write leaves at most a torn last line, which is dropped on reading; any
# other malformed line means the file was damaged and is reported, never guessed around.

JOURNAL_NAME = "journal.jsonl"


def append_round(path: Path, index: int, seconds: Mapping[str, float]) -> None:
    line = json.dumps({"round": index, "seconds": dict(seconds)}, separators=(",", ":"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_rounds(path: Path, expected_names: set[str]) -> list[dict[str, float]]:
    """Rounds recorded so far, oldest first; [] when the journal does not exist yet."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read the journal ({error})") from None
    lines = text.split("\n")
    complete, torn = lines[:-1], lines[-1]  # text after the last newline was never finished
    del torn
    rounds: list[dict[str, float]] = []
    for number, line in enumerate(complete, start=1):
        try:
            entry = json.loads(line)
            seconds = entry["seconds"]
            index = entry["round"]
        except (json.JSONDecodeError, KeyError, TypeError):
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
        if not all(
            isinstance(value, int | float) and math.isfinite(value) and value > 0
            for value in seconds.values()
        ):
            raise InputFileError(
                path,
                "round holds a non-positive or non-finite time",
                line=number,
                key_path="seconds",
            )
        rounds.append({name: float(value) for name, value in seconds.items()})
    return rounds
