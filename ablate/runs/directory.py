"""Where runs live: `DIR/<timestamp>-<name>/`, the latest one, the unfinished one to resume."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ablate.errors import AblateError
from ablate.runs.schema import RESULTS_NAME

SPEC_NAME = "spec.yaml"
RESOLVED_SPEC_NAME = "resolved_spec.json"
ENVIRONMENT_NAME = "environment.json"


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
