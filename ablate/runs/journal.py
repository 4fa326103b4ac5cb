"""The measurement journal: one JSON line per round, appended and flushed as it is taken.

A run killed mid-write leaves at most a torn last line, which is dropped on reading; any
other malformed line means the file was damaged and is reported, never guessed around.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from ablate.errors import InputFileError

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
